/* SPDX-License-Identifier: MIT */
/* Capabilities (libcap), securebits, no_new_privs and the credential calls a
   container's first process makes before exec.

   Lua functions:
     core.cap_names()          -> { "audit_control", ..., "wake_alarm" }: every capability
                                  of the running kernel, sorted by name
     core.cap_value(name)      -> number; nil, message, EINVAL when the kernel lacks it
     core.caps_get()           -> { bounding = names, effective = ..., permitted = ...,
                                    inheritable = ..., ambient = ... } of this process
     core.caps_set(sets)       -> true: apply exactly these five sets (an absent set is empty)
     core.securebits_get()     -> { "keep_caps", "noroot", ... }
     core.securebits_set(names) -> true: set exactly these securebits
     core.set_keepcaps(on)     -> true
     core.set_no_new_privs()   -> true
     core.get_no_new_privs()   -> boolean
     core.setresuid(r, e, s)   -> true (nil or -1 keeps an id)
     core.setresgid(r, e, s)   -> true
     core.setgroups(gids)      -> true
     core.umask(mask)          -> previous mask

   Capability names are lowercase without the CAP_ prefix ("net_admin"); a
   capability that libcap has no name for is its number as a string ("41").

   Order for a container that switches to another user: setgroups, setresgid,
   set_keepcaps(true) and setresuid (so that the permitted set survives the
   switch), then caps_set, which raises the effective set back to the permitted
   set before it drops anything. */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/securebits.h>

#include "core.h"

/* libcap stores each set in two 32-bit words, so it handles capabilities 0 to 63 only. */
#define MAX_CAPS 64

enum cap_set_index { SET_BOUNDING, SET_EFFECTIVE, SET_PERMITTED, SET_INHERITABLE, SET_AMBIENT,
                     SET_COUNT };

static const char *const set_names[] = { "bounding", "effective", "permitted", "inheritable",
                                         "ambient", NULL };

struct cap_entry {
  cap_value_t value;
  char name[32];
};

static int
kernel_cap_count (void)
{
  int n = (int) cap_max_bits ();

  return n > MAX_CAPS ? MAX_CAPS : n;
}

/* Write the name of cap without the "cap_" prefix into buf. */
static void
cap_short_name (cap_value_t cap, char *buf, size_t size)
{
  char *name = cap_to_name (cap);
  const char *s = name;

  if (name == NULL)
    {
      snprintf (buf, size, "%d", (int) cap);
      return;
    }
  if (strncmp (s, "cap_", 4) == 0)
    s += 4;
  snprintf (buf, size, "%s", s);
  cap_free (name);
}

static int
compare_entries (const void *a, const void *b)
{
  return strcmp (((const struct cap_entry *) a)->name, ((const struct cap_entry *) b)->name);
}

/* Fill entries with every capability of the running kernel, sorted by name. */
static int
sorted_caps (struct cap_entry entries[MAX_CAPS])
{
  int i, n = kernel_cap_count ();

  for (i = 0; i < n; i++)
    {
      entries[i].value = i;
      cap_short_name (i, entries[i].name, sizeof entries[i].name);
    }
  qsort (entries, (size_t) n, sizeof entries[0], compare_entries);
  return n;
}

/* Push the names of the capabilities in mask as a list sorted by name. */
static void
push_cap_list (lua_State *L, uint64_t mask)
{
  struct cap_entry entries[MAX_CAPS];
  int i, n = sorted_caps (entries);
  lua_Integer k = 0;

  lua_createtable (L, 0, 0);
  for (i = 0; i < n; i++)
    if (mask & (UINT64_C (1) << entries[i].value))
      {
        lua_pushstring (L, entries[i].name);
        lua_rawseti (L, -2, ++k);
      }
}

/* Return the capability number of the name at the top of the stack, or raise an
   error naming argument arg.  The result may be beyond what the kernel supports. */
static cap_value_t
check_cap_name (lua_State *L, int arg)
{
  const char *name;
  cap_value_t value;
  const char *p;

  if (lua_type (L, -1) != LUA_TSTRING)
    luaL_argerror (L, arg, "capability names must be strings");
  name = lua_tostring (L, -1);
  if (*name != '\0' && strspn (name, "0123456789") == strlen (name))
    {
      long n = strtol (name, NULL, 10);

      if (n >= MAX_CAPS)
        luaL_argerror (L, arg, lua_pushfstring (L, "unknown capability '%s'", name));
      return (cap_value_t) n;
    }
  for (p = name; *p != '\0'; p++)
    if (isupper ((unsigned char) *p))
      luaL_argerror (L, arg, lua_pushfstring (L, "unknown capability '%s': names are "
                                              "lowercase without CAP_, as in 'net_admin'", name));
  lua_pushfstring (L, "cap_%s", name);
  if (strncmp (name, "cap_", 4) == 0 || cap_from_name (lua_tostring (L, -1), &value) < 0
      || value < 0 || value >= MAX_CAPS)
    luaL_argerror (L, arg, lua_pushfstring (L, "unknown capability '%s'", name));
  lua_pop (L, 1);
  return value;
}

/* Push nil, a message naming cap, and EINVAL: the kernel is older than the capability. */
static int
fail_unsupported (lua_State *L, const char *op, cap_value_t cap)
{
  char name[32];

  cap_short_name (cap, name, sizeof name);
  luaL_pushfail (L);
  lua_pushfstring (L, "%s: capability '%s' is not supported by the running kernel, "
                   "whose last capability is %d", op, name, kernel_cap_count () - 1);
  lua_pushinteger (L, EINVAL);
  return 3;
}

static int
caps_cap_names (lua_State *L)
{
  struct cap_entry entries[MAX_CAPS];
  int i, n = sorted_caps (entries);

  lua_createtable (L, n, 0);
  for (i = 0; i < n; i++)
    {
      lua_pushstring (L, entries[i].name);
      lua_rawseti (L, -2, i + 1);
    }
  return 1;
}

static int
caps_cap_value (lua_State *L)
{
  cap_value_t cap;

  luaL_checkstring (L, 1);
  lua_settop (L, 1);
  cap = check_cap_name (L, 1);
  if (cap >= kernel_cap_count ())
    return fail_unsupported (L, "cap_value", cap);
  lua_pushinteger (L, cap);
  return 1;
}


/* {====================================================== reading the sets */

/* Read the five sets of this process into masks.  Returns 0, or -1 with errno set. */
static int
read_sets (uint64_t masks[SET_COUNT])
{
  int i, n = kernel_cap_count ();
  cap_t caps = cap_get_proc ();

  if (caps == NULL)
    return -1;
  memset (masks, 0, sizeof (uint64_t) * SET_COUNT);
  for (i = 0; i < n; i++)
    {
      uint64_t bit = UINT64_C (1) << i;
      cap_flag_value_t e = CAP_CLEAR, p = CAP_CLEAR, inh = CAP_CLEAR;

      cap_get_flag (caps, i, CAP_EFFECTIVE, &e);
      cap_get_flag (caps, i, CAP_PERMITTED, &p);
      cap_get_flag (caps, i, CAP_INHERITABLE, &inh);
      if (e == CAP_SET)
        masks[SET_EFFECTIVE] |= bit;
      if (p == CAP_SET)
        masks[SET_PERMITTED] |= bit;
      if (inh == CAP_SET)
        masks[SET_INHERITABLE] |= bit;
      if (cap_get_bound (i) > 0)
        masks[SET_BOUNDING] |= bit;
      if (cap_get_ambient (i) > 0)
        masks[SET_AMBIENT] |= bit;
    }
  cap_free (caps);
  return 0;
}

static int
caps_caps_get (lua_State *L)
{
  uint64_t masks[SET_COUNT];
  int s;

  if (read_sets (masks) < 0)
    return nsb_fail (L, errno, "cap_get_proc");
  lua_createtable (L, 0, SET_COUNT);
  for (s = 0; s < SET_COUNT; s++)
    {
      push_cap_list (L, masks[s]);
      lua_setfield (L, -2, set_names[s]);
    }
  return 1;
}

/* }====================================================== */


/* {====================================================== applying the sets */

/* Read the set named field of the table at idx into a mask.  An absent field is the empty set. */
static uint64_t
check_set_field (lua_State *L, int idx, const char *field)
{
  uint64_t mask = 0;
  lua_Integer i, n;

  if (lua_getfield (L, idx, field) == LUA_TNIL)
    {
      lua_pop (L, 1);
      return 0;
    }
  if (!lua_istable (L, -1))
    luaL_argerror (L, idx, lua_pushfstring (L, "'%s' must be a list of capability names", field));
  n = luaL_len (L, -1);
  for (i = 1; i <= n; i++)
    {
      lua_geti (L, -1, i);
      mask |= UINT64_C (1) << check_cap_name (L, idx);
      lua_pop (L, 1);
    }
  lua_pop (L, 1);
  return mask;
}

/* Return the lowest capability in mask (mask must not be 0). */
static cap_value_t
first_cap (uint64_t mask)
{
  return (cap_value_t) __builtin_ctzll (mask);
}

/* Raise when the request is inconsistent in itself, whatever the process holds. */
static void
check_set_consistency (lua_State *L, int idx, const uint64_t want[SET_COUNT])
{
  uint64_t stray;
  char name[32];

  stray = want[SET_EFFECTIVE] & ~want[SET_PERMITTED];
  if (stray != 0)
    {
      cap_short_name (first_cap (stray), name, sizeof name);
      luaL_argerror (L, idx, lua_pushfstring (L, "effective capability '%s' is not in the "
                                              "permitted set", name));
    }
  stray = want[SET_AMBIENT] & ~(want[SET_PERMITTED] & want[SET_INHERITABLE]);
  if (stray != 0)
    {
      cap_short_name (first_cap (stray), name, sizeof name);
      luaL_argerror (L, idx, lua_pushfstring (L, "ambient capability '%s' must also be in the "
                                              "permitted and inheritable sets", name));
    }
}

/* Fail when the process cannot reach the requested sets: the bounding and
   permitted sets only ever shrink. */
static int
check_reachable (lua_State *L, const uint64_t want[SET_COUNT], const uint64_t have[SET_COUNT])
{
  static const enum cap_set_index shrinking[] = { SET_BOUNDING, SET_PERMITTED };
  size_t i;

  for (i = 0; i < sizeof shrinking / sizeof shrinking[0]; i++)
    {
      enum cap_set_index s = shrinking[i];
      uint64_t missing = want[s] & ~have[s];
      char name[32];

      if (missing == 0)
        continue;
      cap_short_name (first_cap (missing), name, sizeof name);
      luaL_pushfail (L);
      lua_pushfstring (L, "caps_set: capability '%s' is not in the %s set of this process "
                       "and cannot be added", name, set_names[s]);
      lua_pushinteger (L, EPERM);
      return 3;
    }
  return 0;
}

/* Make the effective set equal to the permitted set. */
static int
raise_effective (void)
{
  cap_t caps = cap_get_proc ();
  int ret;

  if (caps == NULL)
    return -1;
  ret = cap_fill (caps, CAP_EFFECTIVE, CAP_PERMITTED);
  if (ret == 0)
    ret = cap_set_proc (caps);
  cap_free (caps);
  return ret;
}

static int
drop_bounding (lua_State *L, uint64_t keep, uint64_t have)
{
  int i, n = kernel_cap_count ();

  for (i = 0; i < n; i++)
    {
      uint64_t bit = UINT64_C (1) << i;
      char name[32];

      if ((have & bit) == 0 || (keep & bit) != 0)
        continue;
      if (prctl (PR_CAPBSET_DROP, (unsigned long) i, 0, 0, 0) == 0)
        continue;
      cap_short_name (i, name, sizeof name);
      return nsb_fail_path (L, errno, "prctl PR_CAPBSET_DROP", name);
    }
  return 0;
}

static int
set_epi (lua_State *L, const uint64_t want[SET_COUNT])
{
  static const struct { enum cap_set_index set; cap_flag_t flag; } flags[] = {
    { SET_EFFECTIVE, CAP_EFFECTIVE },
    { SET_PERMITTED, CAP_PERMITTED },
    { SET_INHERITABLE, CAP_INHERITABLE },
  };
  cap_t caps = cap_init ();
  int i, f, ret, err;

  if (caps == NULL)
    return nsb_fail (L, errno, "cap_init");
  for (f = 0; f < 3; f++)
    for (i = 0; i < MAX_CAPS; i++)
      if (want[flags[f].set] & (UINT64_C (1) << i))
        {
          cap_value_t v = i;

          cap_set_flag (caps, flags[f].flag, 1, &v, CAP_SET);
        }
  ret = cap_set_proc (caps);
  err = errno;
  cap_free (caps);
  if (ret < 0)
    return nsb_fail (L, err, "cap_set_proc");
  return 0;
}

static int
set_ambient (lua_State *L, uint64_t want)
{
  int i;

  if (prctl (PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
    return nsb_fail (L, errno, "prctl PR_CAP_AMBIENT_CLEAR_ALL");
  for (i = 0; i < MAX_CAPS; i++)
    {
      char name[32];

      if ((want & (UINT64_C (1) << i)) == 0)
        continue;
      if (prctl (PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, (unsigned long) i, 0, 0) == 0)
        continue;
      cap_short_name (i, name, sizeof name);
      return nsb_fail_path (L, errno, "prctl PR_CAP_AMBIENT_RAISE", name);
    }
  return 0;
}

static int
caps_caps_set (lua_State *L)
{
  uint64_t want[SET_COUNT], have[SET_COUNT], all;
  int s, n;

  luaL_checktype (L, 1, LUA_TTABLE);
  nsb_check_fields (L, 1, set_names);
  for (s = 0; s < SET_COUNT; s++)
    want[s] = check_set_field (L, 1, set_names[s]);
  check_set_consistency (L, 1, want);

  all = kernel_cap_count () == MAX_CAPS ? ~UINT64_C (0) : (UINT64_C (1) << kernel_cap_count ()) - 1;
  for (s = 0; s < SET_COUNT; s++)
    if (want[s] & ~all)
      return fail_unsupported (L, "caps_set", first_cap (want[s] & ~all));
  if (read_sets (have) < 0)
    return nsb_fail (L, errno, "cap_get_proc");
  if ((n = check_reachable (L, want, have)) != 0)
    return n;

  /* Dropping from the bounding set needs CAP_SETPCAP in the effective set.
     After a switch to a non-root user with keepcaps, the effective set is
     empty while the permitted set is kept, so raise it first. */
  if (raise_effective () < 0)
    return nsb_fail (L, errno, "cap_set_proc (raise effective to permitted)");

  /* The bounding set first, because the next step may drop CAP_SETPCAP. */
  if ((n = drop_bounding (L, want[SET_BOUNDING], have[SET_BOUNDING])) != 0)
    return n;

  if ((n = set_epi (L, want)) != 0)
    return n;

  /* Ambient last: the kernel raises an ambient capability only when it is
     already in both the permitted and the inheritable set. */
  if ((n = set_ambient (L, want[SET_AMBIENT])) != 0)
    return n;
  return nsb_ok (L);
}

/* }====================================================== */


/* {====================================================== securebits, no_new_privs */

static const struct nsb_flag securebits[] = {
  { "noroot", SECBIT_NOROOT },
  { "noroot_locked", SECBIT_NOROOT_LOCKED },
  { "no_setuid_fixup", SECBIT_NO_SETUID_FIXUP },
  { "no_setuid_fixup_locked", SECBIT_NO_SETUID_FIXUP_LOCKED },
  { "keep_caps", SECBIT_KEEP_CAPS },
  { "keep_caps_locked", SECBIT_KEEP_CAPS_LOCKED },
  { "no_cap_ambient_raise", SECBIT_NO_CAP_AMBIENT_RAISE },
  { "no_cap_ambient_raise_locked", SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED },
  { NULL, 0 }
};

static int
caps_securebits_get (lua_State *L)
{
  const struct nsb_flag *f;
  lua_Integer k = 0;
  int bits = prctl (PR_GET_SECUREBITS, 0, 0, 0, 0);

  if (bits < 0)
    return nsb_fail (L, errno, "prctl PR_GET_SECUREBITS");
  lua_createtable (L, 0, 0);
  for (f = securebits; f->name != NULL; f++)
    if ((unsigned long) bits & f->value)
      {
        lua_pushstring (L, f->name);
        lua_rawseti (L, -2, ++k);
      }
  return 1;
}

static int
caps_securebits_set (lua_State *L)
{
  unsigned long bits;

  luaL_checktype (L, 1, LUA_TTABLE);
  bits = nsb_check_flags (L, 1, securebits);
  if (prctl (PR_SET_SECUREBITS, bits, 0, 0, 0) < 0)
    return nsb_fail (L, errno, "prctl PR_SET_SECUREBITS");
  return nsb_ok (L);
}

static int
caps_set_keepcaps (lua_State *L)
{
  luaL_checktype (L, 1, LUA_TBOOLEAN);
  if (prctl (PR_SET_KEEPCAPS, (unsigned long) lua_toboolean (L, 1), 0, 0, 0) < 0)
    return nsb_fail (L, errno, "prctl PR_SET_KEEPCAPS");
  return nsb_ok (L);
}

static int
caps_set_no_new_privs (lua_State *L)
{
  if (prctl (PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    return nsb_fail (L, errno, "prctl PR_SET_NO_NEW_PRIVS");
  return nsb_ok (L);
}

static int
caps_get_no_new_privs (lua_State *L)
{
  int on = prctl (PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);

  if (on < 0)
    return nsb_fail (L, errno, "prctl PR_GET_NO_NEW_PRIVS");
  lua_pushboolean (L, on);
  return 1;
}

/* }====================================================== */


/* {====================================================== user and group ids */

/* An id argument: nil or -1 means "leave unchanged". */
static unsigned int
check_id (lua_State *L, int arg)
{
  lua_Integer id = luaL_optinteger (L, arg, -1);

  luaL_argcheck (L, id >= -1 && id < (lua_Integer) UINT32_MAX, arg, "id out of range");
  return (unsigned int) id;
}

static int
caps_setresuid (lua_State *L)
{
  unsigned int r = check_id (L, 1), e = check_id (L, 2), s = check_id (L, 3);

  if (setresuid (r, e, s) < 0)
    return nsb_fail (L, errno, lua_pushfstring (L, "setresuid %d %d %d", (int) r, (int) e, (int) s));
  return nsb_ok (L);
}

static int
caps_setresgid (lua_State *L)
{
  unsigned int r = check_id (L, 1), e = check_id (L, 2), s = check_id (L, 3);

  if (setresgid (r, e, s) < 0)
    return nsb_fail (L, errno, lua_pushfstring (L, "setresgid %d %d %d", (int) r, (int) e, (int) s));
  return nsb_ok (L);
}

static int
caps_setgroups (lua_State *L)
{
  lua_Integer i, n;
  gid_t *gids;

  luaL_checktype (L, 1, LUA_TTABLE);
  n = luaL_len (L, 1);
  luaL_argcheck (L, n <= 65536, 1, "more than 65536 groups");
  gids = lua_newuserdatauv (L, sizeof (gid_t) * (size_t) (n > 0 ? n : 1), 0);
  for (i = 1; i <= n; i++)
    {
      int isnum;
      lua_Integer gid;

      lua_geti (L, 1, i);
      gid = lua_tointegerx (L, -1, &isnum);
      if (!isnum || gid < 0 || gid >= (lua_Integer) UINT32_MAX)
        luaL_argerror (L, 1, "group ids must be integers from 0 to 4294967294");
      gids[i - 1] = (gid_t) gid;
      lua_pop (L, 1);
    }
  if (setgroups ((size_t) n, gids) < 0)
    return nsb_fail (L, errno, "setgroups");
  return nsb_ok (L);
}

static int
caps_umask (lua_State *L)
{
  lua_Integer mask = luaL_checkinteger (L, 1);

  luaL_argcheck (L, mask >= 0 && mask <= 0777, 1, "mask must be from 0 to 0777 (511)");
  lua_pushinteger (L, umask ((mode_t) mask));
  return 1;
}

/* }====================================================== */


static const luaL_Reg caps_functions[] = {
  { "cap_names", caps_cap_names },
  { "cap_value", caps_cap_value },
  { "caps_get", caps_caps_get },
  { "caps_set", caps_caps_set },
  { "securebits_get", caps_securebits_get },
  { "securebits_set", caps_securebits_set },
  { "set_keepcaps", caps_set_keepcaps },
  { "set_no_new_privs", caps_set_no_new_privs },
  { "get_no_new_privs", caps_get_no_new_privs },
  { "setresuid", caps_setresuid },
  { "setresgid", caps_setresgid },
  { "setgroups", caps_setgroups },
  { "umask", caps_umask },
  { NULL, NULL }
};

void
nsb_open_caps (lua_State *L)
{
  luaL_setfuncs (L, caps_functions, 0);
}
