/* SPDX-License-Identifier: MIT */
/* Seccomp filters (libseccomp) built from a Lua description.

   Lua functions:
     core.seccomp_load(profile)       -> true, skipped: load the filter into this process
     core.seccomp_count(profile)      -> number of rules, skipped
     core.seccomp_export(profile, path|fd [, "pfc"|"bpf"]) -> true, skipped
     core.seccomp_bpf(profile)        -> program, skipped: the filter as BPF bytes
     core.seccomp_load_bpf(program [, opts]) -> true: load such a program
     core.seccomp_arch_native()       -> "x86_64", "aarch64", ...
     core.seccomp_version()           -> libseccomp's version, "2.5.4"
   Each returns nil, message, errno when libseccomp or the kernel fails.
   skipped lists the syscall names libseccomp does not know, which the filter
   leaves out: profiles name syscalls of kernels newer than the library.

   A profile:
     { default = "errno", default_errno = "ENOSYS",
       arches = "native" | "all" | { "x86_64", "x86", ... },
       no_new_privs = true,
       rules = { { action = "errno", errno = "EPERM", syscalls = { "keyctl" },
                   args = { { index = 0, op = "masked_eq", value = mask, value2 = 0 } },
                   comment = "..." }, ... } }
   Actions: allow, errno, kill (the thread), kill_thread, kill_process, log, trap.
   An errno is a number or a name such as "EPERM"; it defaults to EPERM.
   Ops: eq, ne, lt, le, gt, ge, and masked_eq, which matches when
   (argument & value) == value2.  A rule's conditions must all hold.

   Loading a filter is the last step of a container's setup because the steps
   before it need syscalls the filter may block (mount, pivot_root, capset).
   The kernel accepts a filter only from a process with no_new_privs set or
   with CAP_SYS_ADMIN; no_new_privs = true (the default) sets it first. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>

#include "core.h"

#define FILTER_META "nsbuild.seccomp_filter"

/* A filter context owned by a userdata, so that an error raised halfway
   through a profile still releases it. */
struct filter {
  scmp_filter_ctx ctx;
};

static int
filter_gc (lua_State *L)
{
  struct filter *f = luaL_checkudata (L, 1, FILTER_META);

  if (f->ctx != NULL)
    seccomp_release (f->ctx);
  f->ctx = NULL;
  return 0;
}


/* {====================================================== profile fields */

struct name_value {
  const char *name;
  int value;
};

#define ERRNO_NAME(e) { #e, e }
static const struct name_value errno_names[] = {
  ERRNO_NAME (EPERM), ERRNO_NAME (ENOENT), ERRNO_NAME (ESRCH), ERRNO_NAME (EINTR),
  ERRNO_NAME (EIO), ERRNO_NAME (ENXIO), ERRNO_NAME (E2BIG), ERRNO_NAME (ENOEXEC),
  ERRNO_NAME (EBADF), ERRNO_NAME (ECHILD), ERRNO_NAME (EAGAIN), ERRNO_NAME (ENOMEM),
  ERRNO_NAME (EACCES), ERRNO_NAME (EFAULT), ERRNO_NAME (EBUSY), ERRNO_NAME (EEXIST),
  ERRNO_NAME (EXDEV), ERRNO_NAME (ENODEV), ERRNO_NAME (ENOTDIR), ERRNO_NAME (EISDIR),
  ERRNO_NAME (EINVAL), ERRNO_NAME (ENFILE), ERRNO_NAME (EMFILE), ERRNO_NAME (ENOTTY),
  ERRNO_NAME (ETXTBSY), ERRNO_NAME (EFBIG), ERRNO_NAME (ENOSPC), ERRNO_NAME (ESPIPE),
  ERRNO_NAME (EROFS), ERRNO_NAME (EMLINK), ERRNO_NAME (EPIPE), ERRNO_NAME (ERANGE),
  ERRNO_NAME (ENOSYS), ERRNO_NAME (ENOTSUP), ERRNO_NAME (EOPNOTSUPP),
  ERRNO_NAME (EAFNOSUPPORT), ERRNO_NAME (EPROTONOSUPPORT), ERRNO_NAME (ENOTSOCK),
  ERRNO_NAME (ENOMSG), ERRNO_NAME (ENODATA), ERRNO_NAME (ENOKEY), ERRNO_NAME (ENOTCONN),
  ERRNO_NAME (ECONNREFUSED), ERRNO_NAME (ENETUNREACH), ERRNO_NAME (EHOSTUNREACH),
  { NULL, 0 }
};

static const char *const profile_fields[] = { "default", "default_errno", "arches",
                                              "no_new_privs", "rules", NULL };
static const char *const rule_fields[] = { "action", "errno", "syscalls", "args", "comment",
                                           NULL };
static const char *const arg_fields[] = { "index", "op", "value", "value2", NULL };

static const char *const action_names[] = { "allow", "errno", "kill", "kill_thread",
                                            "kill_process", "log", "trap", NULL };
static const uint32_t action_values[] = { SCMP_ACT_ALLOW, 0, SCMP_ACT_KILL_THREAD,
                                          SCMP_ACT_KILL_THREAD, SCMP_ACT_KILL_PROCESS,
                                          SCMP_ACT_LOG, SCMP_ACT_TRAP };
#define ACTION_ERRNO 1

static const char *const op_names[] = { "eq", "ne", "lt", "le", "gt", "ge", "masked_eq", NULL };
static const enum scmp_compare op_values[] = { SCMP_CMP_EQ, SCMP_CMP_NE, SCMP_CMP_LT,
                                               SCMP_CMP_LE, SCMP_CMP_GT, SCMP_CMP_GE,
                                               SCMP_CMP_MASKED_EQ };

/* Read the errno field of the table at idx: a number from 0 to 4095 or a name. */
static int
check_errno_field (lua_State *L, int idx, const char *field, const char *where)
{
  const struct name_value *e;
  int type = lua_getfield (L, idx, field);
  int value = EPERM;

  if (type == LUA_TNUMBER && lua_isinteger (L, -1))
    {
      lua_Integer n = lua_tointeger (L, -1);

      /* The kernel passes on at most 4095 (MAX_ERRNO) as an error. */
      if (n < 0 || n > 4095)
        luaL_error (L, "%s: '%s' must be from 0 to 4095", where, field);
      value = (int) n;
    }
  else if (type == LUA_TSTRING)
    {
      for (e = errno_names; e->name != NULL; e++)
        if (strcmp (e->name, lua_tostring (L, -1)) == 0)
          break;
      if (e->name == NULL)
        luaL_error (L, "%s: unknown errno name '%s' (use a number)", where, lua_tostring (L, -1));
      value = e->value;
    }
  else if (type != LUA_TNIL)
    luaL_error (L, "%s: '%s' must be an errno number or name", where, field);
  lua_pop (L, 1);
  return value;
}

/* Read an action and its errno from the fields action_field and errno_field. */
static uint32_t
check_action (lua_State *L, int idx, const char *action_field, const char *errno_field,
              const char *where)
{
  const char *const *a;
  const char *name;

  if (lua_getfield (L, idx, action_field) != LUA_TSTRING)
    luaL_error (L, "%s: '%s' must be one of allow, errno, kill, kill_thread, kill_process, "
                "log, trap", where, action_field);
  name = lua_tostring (L, -1);
  for (a = action_names; *a != NULL; a++)
    if (strcmp (*a, name) == 0)
      break;
  if (*a == NULL)
    luaL_error (L, "%s: unknown action '%s' (use allow, errno, kill, kill_thread, "
                "kill_process, log or trap)", where, name);
  lua_pop (L, 1);
  if (a - action_names == ACTION_ERRNO)
    return SCMP_ACT_ERRNO ((uint32_t) check_errno_field (L, idx, errno_field, where));
  if (lua_getfield (L, idx, errno_field) != LUA_TNIL)
    luaL_error (L, "%s: '%s' applies only to the errno action", where, errno_field);
  lua_pop (L, 1);
  return action_values[a - action_names];
}

/* Raise when the table at idx has a key not listed in fields.  Unlike
   nsb_check_fields, the message names the rule rather than an argument number. */
static void
check_table_fields (lua_State *L, int idx, const char *const fields[], const char *where)
{
  idx = lua_absindex (L, idx);
  lua_pushnil (L);
  while (lua_next (L, idx) != 0)
    {
      const char *const *f;

      lua_pop (L, 1);
      if (lua_type (L, -1) != LUA_TSTRING)
        luaL_error (L, "%s: field names must be strings", where);
      for (f = fields; *f != NULL; f++)
        if (strcmp (*f, lua_tostring (L, -1)) == 0)
          break;
      if (*f == NULL)
        luaL_error (L, "%s: unknown field '%s'", where, lua_tostring (L, -1));
    }
}

/* Read the integer field of the table at idx; raise when it is missing. */
static scmp_datum_t
check_datum (lua_State *L, int idx, const char *field, const char *where, int condition)
{
  lua_Integer v;

  if (lua_getfield (L, idx, field) != LUA_TNUMBER || !lua_isinteger (L, -1))
    luaL_error (L, "%s: condition %d needs an integer '%s'", where, condition, field);
  v = lua_tointeger (L, -1);
  lua_pop (L, 1);
  /* A negative Lua integer stands for the same 64 bits, as -1 for 0xffffffffffffffff. */
  return (scmp_datum_t) v;
}

/* Read condition number i, the table at the top of the stack, into cmp. */
static void
check_condition (lua_State *L, int i, struct scmp_arg_cmp *cmp, const char *where)
{
  const char *const *o;
  lua_Integer index = -1;

  check_table_fields (L, -1, arg_fields, where);
  if (lua_getfield (L, -1, "index") == LUA_TNUMBER && lua_isinteger (L, -1))
    index = lua_tointeger (L, -1);
  if (index < 0 || index > 5)
    luaL_error (L, "%s: condition %d needs an 'index' from 0 to 5", where, i);
  lua_pop (L, 1);

  if (lua_getfield (L, -1, "op") != LUA_TSTRING)
    luaL_error (L, "%s: condition %d needs an 'op' (eq, ne, lt, le, gt, ge, masked_eq)", where, i);
  for (o = op_names; *o != NULL; o++)
    if (strcmp (*o, lua_tostring (L, -1)) == 0)
      break;
  if (*o == NULL)
    luaL_error (L, "%s: condition %d has unknown op '%s' (use eq, ne, lt, le, gt, ge or "
                "masked_eq)", where, i, lua_tostring (L, -1));
  lua_pop (L, 1);

  cmp->arg = (unsigned int) index;
  cmp->op = op_values[o - op_names];
  cmp->datum_a = check_datum (L, -1, "value", where, i);
  cmp->datum_b = 0;
  if (cmp->op == SCMP_CMP_MASKED_EQ)
    cmp->datum_b = check_datum (L, -1, "value2", where, i);
  else if (lua_getfield (L, -1, "value2") != LUA_TNIL)
    luaL_error (L, "%s: condition %d: 'value2' applies only to masked_eq", where, i);
  else
    lua_pop (L, 1);
}

/* Read the args list of the rule at idx into cmps; returns how many. */
static unsigned int
check_args (lua_State *L, int idx, struct scmp_arg_cmp cmps[6], const char *where)
{
  unsigned int seen = 0, n = 0;
  lua_Integer i, len;

  if (lua_getfield (L, idx, "args") == LUA_TNIL)
    {
      lua_pop (L, 1);
      return 0;
    }
  if (!lua_istable (L, -1))
    luaL_error (L, "%s: 'args' must be a list of conditions", where);
  len = luaL_len (L, -1);
  if (len > 6)
    luaL_error (L, "%s: a syscall has at most 6 arguments to compare", where);
  for (i = 1; i <= len; i++)
    {
      if (lua_geti (L, -1, i) != LUA_TTABLE)
        luaL_error (L, "%s: condition %d must be a table", where, (int) i);
      check_condition (L, (int) i, &cmps[n], where);
      /* libseccomp rejects a second comparison of the same argument in one rule. */
      if (seen & (1u << cmps[n].arg))
        luaL_error (L, "%s: argument %d is compared twice, which libseccomp rejects; "
                    "split the rule in two", where, (int) cmps[n].arg);
      seen |= 1u << cmps[n].arg;
      n++;
      lua_pop (L, 1);
    }
  lua_pop (L, 1);
  return n;
}

/* }====================================================== */


/* {====================================================== building the filter */

/* Raise when two rules give one syscall different actions and one of them has
   no condition.  libseccomp would keep the first unconditional rule and drop
   every conditional rule of the syscall, so the filter would differ from the
   profile.  seen (a table at index seen) maps syscall numbers to
   { action = unconditional action, rule = its index, conditional = { [action] = rule } }. */
static void
check_conflict (lua_State *L, int seen, int nr, const char *name, uint32_t action,
                int conditional, lua_Integer rule)
{
  lua_Integer other = 0;

  if (lua_geti (L, seen, nr) == LUA_TNIL)
    {
      lua_pop (L, 1);
      lua_createtable (L, 0, 3);
      lua_newtable (L);
      lua_setfield (L, -2, "conditional");
      lua_pushvalue (L, -1);
      lua_seti (L, seen, nr);
    }

  if (lua_getfield (L, -1, "action") == LUA_TNUMBER
      && (uint32_t) lua_tointeger (L, -1) != action)
    {
      lua_getfield (L, -2, "rule");
      other = lua_tointeger (L, -1);
      lua_pop (L, 1);
    }
  lua_pop (L, 1);

  lua_getfield (L, -1, "conditional");
  if (!conditional && other == 0)
    {
      lua_pushnil (L);
      while (other == 0 && lua_next (L, -2) != 0)
        {
          if ((uint32_t) lua_tointeger (L, -2) != action)
            other = lua_tointeger (L, -1);
          lua_pop (L, 1);
        }
      if (other != 0)
        lua_pop (L, 1);
    }
  if (other != 0)
    luaL_error (L, "seccomp rules %d and %d give syscall '%s' different actions, and one "
                "of them has no argument condition, so it would override the other",
                (int) other, (int) rule, name);

  if (conditional)
    {
      lua_pushinteger (L, rule);
      lua_seti (L, -2, action);
    }
  else
    {
      lua_pushinteger (L, action);
      lua_setfield (L, -3, "action");
      lua_pushinteger (L, rule);
      lua_setfield (L, -3, "rule");
    }
  lua_pop (L, 2);
}

/* Add the rule at idx (the rule-th of the profile) to the filter.  Names that
   libseccomp does not know are appended to the list at skipped.  Returns 0,
   or the number of failure values pushed. */
static int
add_rule (lua_State *L, struct filter *f, int idx, lua_Integer rule, uint32_t def_action,
          int seen, int skipped, lua_Integer *count)
{
  struct scmp_arg_cmp cmps[6];
  char where[32];
  uint32_t action;
  unsigned int ncmps;
  lua_Integer i, n;

  snprintf (where, sizeof where, "seccomp rule %d", (int) rule);
  check_table_fields (L, idx, rule_fields, where);
  action = check_action (L, idx, "action", "errno", where);
  ncmps = check_args (L, idx, cmps, where);
  if (lua_getfield (L, idx, "syscalls") != LUA_TTABLE)
    luaL_error (L, "%s: 'syscalls' must be a list of syscall names", where);
  n = luaL_len (L, -1);
  for (i = 1; i <= n; i++)
    {
      const char *name;
      int nr, ret;

      if (lua_geti (L, -1, i) != LUA_TSTRING)
        luaL_error (L, "%s: syscall names must be strings", where);
      name = lua_tostring (L, -1);
      nr = seccomp_syscall_resolve_name (name);
      if (nr == __NR_SCMP_ERROR)
        {
          lua_pushvalue (L, -1);
          lua_seti (L, skipped, (lua_Integer) lua_rawlen (L, skipped) + 1);
          lua_pop (L, 1);
          continue;
        }
      check_conflict (L, seen, nr, name, action, ncmps > 0, rule);

      /* libseccomp rejects a rule with the default action (EACCES), and such
         a rule changes nothing. */
      if (action == def_action)
        {
          lua_pop (L, 1);
          continue;
        }
      ret = seccomp_rule_add_array (f->ctx, action, nr, ncmps, cmps);
      if (ret < 0)
        return nsb_fail_path (L, -ret, lua_pushfstring (L, "%s: seccomp_rule_add", where), name);
      ++*count;
      lua_pop (L, 1);
    }
  lua_pop (L, 1);
  return 0;
}

static uint32_t
arch_token (const char *name)
{
  return seccomp_arch_resolve_name (name);
}

/* The architectures whose syscalls a kernel of the native architecture also
   runs (x86_64 runs x86 and x32 binaries), so that "all" filters them by the
   profile instead of the kill that libseccomp gives a foreign architecture. */
static const struct {
  const char *native;
  const char *others[3];
} companion_arches[] = {
  { "x86_64", { "x86", "x32", NULL } },
  { "aarch64", { "arm", NULL } },
  { "s390x", { "s390", NULL } },
  { "ppc64", { "ppc", NULL } },
  { "mips64", { "mips", "mips64n32", NULL } },
  { "mipsel64", { "mipsel", "mipsel64n32", NULL } },
  { "parisc64", { "parisc", NULL } },
};

static const char *const arch_names[] = { "x86", "x86_64", "x32", "arm", "aarch64", "mips",
                                          "mipsel", "mips64", "mipsel64", "mips64n32",
                                          "mipsel64n32", "ppc", "ppc64", "ppc64le", "s390",
                                          "s390x", "parisc", "parisc64", "riscv64", NULL };

static const char *
native_arch_name (void)
{
  uint32_t native = seccomp_arch_native ();
  const char *const *a;

  for (a = arch_names; *a != NULL; a++)
    if (arch_token (*a) == native)
      return *a;
  return "unknown";
}

static int
add_arch (lua_State *L, struct filter *f, const char *name)
{
  uint32_t token = arch_token (name);
  int ret;

  if (token == 0)
    luaL_error (L, "seccomp: unknown architecture '%s'", name);
  ret = seccomp_arch_add (f->ctx, token);
  if (ret < 0 && ret != -EEXIST)
    return nsb_fail_path (L, -ret, "seccomp_arch_add", name);
  return 0;
}

static int
add_arches (lua_State *L, struct filter *f, int idx)
{
  const char *native = native_arch_name ();
  size_t i, len;
  int n;

  if (lua_getfield (L, idx, "arches") == LUA_TNIL
      || (lua_type (L, -1) == LUA_TSTRING && strcmp (lua_tostring (L, -1), "native") == 0))
    {
      lua_pop (L, 1);
      return 0;
    }
  if (lua_type (L, -1) == LUA_TSTRING && strcmp (lua_tostring (L, -1), "all") == 0)
    {
      lua_pop (L, 1);
      for (i = 0; i < sizeof companion_arches / sizeof companion_arches[0]; i++)
        if (strcmp (companion_arches[i].native, native) == 0)
          {
            const char *const *other;

            for (other = companion_arches[i].others; *other != NULL; other++)
              if ((n = add_arch (L, f, *other)) != 0)
                return n;
          }
      return 0;
    }
  if (!lua_istable (L, -1))
    luaL_error (L, "seccomp: 'arches' must be \"native\", \"all\" or a list of names");
  len = (size_t) luaL_len (L, -1);
  for (i = 1; i <= len; i++)
    {
      if (lua_geti (L, -1, (lua_Integer) i) != LUA_TSTRING)
        luaL_error (L, "seccomp: architecture names must be strings");
      if ((n = add_arch (L, f, lua_tostring (L, -1))) != 0)
        return n;
      lua_pop (L, 1);
    }
  lua_pop (L, 1);
  return 0;
}

/* Set the filter attributes every profile gets. */
static int
set_attributes (lua_State *L, struct filter *f, int no_new_privs)
{
  int ret = seccomp_attr_set (f->ctx, SCMP_FLTATR_CTL_NNP, (uint32_t) no_new_privs);

  if (ret < 0)
    return nsb_fail (L, -ret, "seccomp_attr_set SCMP_FLTATR_CTL_NNP");

  /* With SYSRAWRC, seccomp_load returns the kernel's errno instead of ECANCELED.
     A library without it keeps the generic code. */
  seccomp_attr_set (f->ctx, SCMP_FLTATR_API_SYSRAWRC, 1);

  /* Level 2 sorts the syscalls into a binary tree, so a long allow list costs
     a few comparisons per syscall instead of one per rule.  A library without
     it builds the linear filter, which behaves the same. */
  seccomp_attr_set (f->ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  return 0;
}

/* Build the filter that the profile at idx describes and push it, then the
   list of skipped syscall names.  Returns 0 with *count set to the number of
   rules added, or the number of failure values pushed. */
static int
build_filter (lua_State *L, int idx, struct filter **out, lua_Integer *count)
{
  struct filter *f;
  uint32_t def_action;
  int seen, skipped, n;
  lua_Integer i, len;

  luaL_checktype (L, idx, LUA_TTABLE);
  check_table_fields (L, idx, profile_fields, "seccomp profile");
  def_action = check_action (L, idx, "default", "default_errno", "seccomp profile");

  f = lua_newuserdatauv (L, sizeof *f, 0);
  f->ctx = NULL;
  luaL_setmetatable (L, FILTER_META);
  lua_newtable (L);
  skipped = lua_gettop (L);
  lua_newtable (L);
  seen = lua_gettop (L);

  f->ctx = seccomp_init (def_action);
  if (f->ctx == NULL)
    return nsb_fail (L, EINVAL, "seccomp_init");
  if ((n = set_attributes (L, f, nsb_opt_bool_field (L, idx, "no_new_privs", 1))) != 0)
    return n;
  if ((n = add_arches (L, f, idx)) != 0)
    return n;

  *count = 0;
  if (lua_getfield (L, idx, "rules") != LUA_TNIL && !lua_istable (L, -1))
    luaL_error (L, "seccomp profile: 'rules' must be a list of rules");
  len = lua_istable (L, -1) ? luaL_len (L, -1) : 0;
  for (i = 1; i <= len; i++)
    {
      if (lua_geti (L, -1, i) != LUA_TTABLE)
        luaL_error (L, "seccomp rule %d must be a table", (int) i);
      if ((n = add_rule (L, f, lua_gettop (L), i, def_action, seen, skipped, count)) != 0)
        return n;
      lua_pop (L, 1);
    }
  lua_pop (L, 2);  /* the rules list and the seen table */
  *out = f;
  return 0;
}

/* }====================================================== */


static int
seccomp_load_profile (lua_State *L)
{
  struct filter *f;
  lua_Integer count;
  int n, ret;

  if ((n = build_filter (L, 1, &f, &count)) != 0)
    return n;
  ret = seccomp_load (f->ctx);
  if (ret == -EACCES)
    return nsb_fail (L, EACCES, "seccomp_load (the kernel accepts a filter only with "
                     "no_new_privs set or CAP_SYS_ADMIN)");
  if (ret < 0)
    return nsb_fail (L, -ret, "seccomp_load");
  lua_pushboolean (L, 1);
  lua_insert (L, -2);
  return 2;
}

static int
seccomp_count_profile (lua_State *L)
{
  struct filter *f;
  lua_Integer count;
  int n;

  if ((n = build_filter (L, 1, &f, &count)) != 0)
    return n;
  lua_pushinteger (L, count);
  lua_insert (L, -2);
  return 2;
}

static int
seccomp_export_profile (lua_State *L)
{
  static const char *const formats[] = { "pfc", "bpf", NULL };
  int format = luaL_checkoption (L, 3, "pfc", formats);
  const char *path = lua_type (L, 2) == LUA_TSTRING ? lua_tostring (L, 2) : NULL;
  int fd = path == NULL ? nsb_check_fd_or_int (L, 2) : -1;
  struct filter *f;
  lua_Integer count;
  int n, ret, err;

  if ((n = build_filter (L, 1, &f, &count)) != 0)
    return n;
  if (path != NULL && (fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
    return nsb_fail_path (L, errno, "seccomp_export: open", path);
  ret = format == 0 ? seccomp_export_pfc (f->ctx, fd) : seccomp_export_bpf (f->ctx, fd);
  err = -ret;
  if (path != NULL && close (fd) < 0 && err == 0)
    err = errno;
  if (err != 0)
    return nsb_fail_path (L, err, "seccomp_export", path != NULL ? path : "fd");
  lua_pushboolean (L, 1);
  lua_insert (L, -2);
  return 2;
}

/* Push the contents of fd, read from the start.  Returns 0, or an errno. */
static int
push_file_contents (lua_State *L, int fd)
{
  luaL_Buffer b;
  char *chunk;
  ssize_t got;

  if (lseek (fd, 0, SEEK_SET) < 0)
    return errno;
  luaL_buffinit (L, &b);
  do
    {
      chunk = luaL_prepbuffer (&b);
      got = read (fd, chunk, LUAL_BUFFERSIZE);
      if (got > 0)
        luaL_addsize (&b, (size_t) got);
    }
  while (got > 0 || (got < 0 && errno == EINTR));
  if (got < 0)
    {
      int err = errno;

      luaL_pushresult (&b);
      lua_pop (L, 1);
      return err;
    }
  luaL_pushresult (&b);
  return 0;
}

/* core.seccomp_bpf(profile) returns the program libseccomp generates for the
   profile, a string of struct sock_filter for core.seccomp_load_bpf, and the
   skipped names.  Generating is the slow part: libseccomp 2.5.4 took 24 ms for
   the default profile (494 rules) on a 2-core EPYC VM, and the kernel 0.3 ms
   to load the result (docs/benchmarks.md), so a caller can keep the program. */
static int
seccomp_bpf_profile (lua_State *L)
{
  struct filter *f;
  lua_Integer count;
  int n, fd, ret;

  if ((n = build_filter (L, 1, &f, &count)) != 0)
    return n;
  fd = memfd_create ("nsbuild-seccomp-bpf", MFD_CLOEXEC);
  if (fd < 0)
    return nsb_fail (L, errno, "seccomp_bpf: memfd_create");
  ret = seccomp_export_bpf (f->ctx, fd);
  if (ret < 0)
    {
      close (fd);
      return nsb_fail (L, -ret, "seccomp_export_bpf");
    }
  ret = push_file_contents (L, fd);
  close (fd);
  if (ret != 0)
    return nsb_fail (L, ret, "seccomp_bpf: read the program");
  lua_insert (L, -2);
  return 2;
}

static const char *const load_bpf_fields[] = { "no_new_privs", NULL };

/* core.seccomp_load_bpf(program [, opts]) loads a program made by
   core.seccomp_bpf into this process, as core.seccomp_load loads its profile.
   opts.no_new_privs (default true, as in a profile) sets no_new_privs first. */
static int
seccomp_load_program (lua_State *L)
{
  size_t len;
  const char *program = luaL_checklstring (L, 1, &len);
  struct sock_fprog prog;
  int no_new_privs;

  if (!lua_isnoneornil (L, 2))
    {
      luaL_checktype (L, 2, LUA_TTABLE);
      nsb_check_fields (L, 2, load_bpf_fields);
    }
  no_new_privs = nsb_opt_bool_field (L, 2, "no_new_privs", 1);
  if (len == 0 || len % sizeof (struct sock_filter) != 0
      || len / sizeof (struct sock_filter) > BPF_MAXINSNS)
    return luaL_argerror (L, 1, "not a BPF program (1 to 4096 instructions of 8 bytes)");

  /* The kernel copies the program; this copy only drops the string's const. */
  prog.len = (unsigned short) (len / sizeof (struct sock_filter));
  prog.filter = lua_newuserdatauv (L, len, 0);
  memcpy (prog.filter, program, len);

  if (no_new_privs && prctl (PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    return nsb_fail (L, errno, "prctl PR_SET_NO_NEW_PRIVS");
  if (syscall (SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
    {
      if (errno == EACCES)
        return nsb_fail (L, EACCES, "seccomp_load_bpf (the kernel accepts a filter only with "
                         "no_new_privs set or CAP_SYS_ADMIN)");
      return nsb_fail (L, errno, "seccomp_load_bpf");
    }
  return nsb_ok (L);
}

static int
seccomp_arch_native_name (lua_State *L)
{
  lua_pushstring (L, native_arch_name ());
  return 1;
}

/* The version of the libseccomp this process runs, which decides the syscall
   numbers of a generated program. */
static int
seccomp_library_version (lua_State *L)
{
  const struct scmp_version *v = seccomp_version ();

  lua_pushfstring (L, "%d.%d.%d", (int) v->major, (int) v->minor, (int) v->micro);
  return 1;
}

static const luaL_Reg seccomp_functions[] = {
  { "seccomp_load", seccomp_load_profile },
  { "seccomp_count", seccomp_count_profile },
  { "seccomp_export", seccomp_export_profile },
  { "seccomp_bpf", seccomp_bpf_profile },
  { "seccomp_load_bpf", seccomp_load_program },
  { "seccomp_arch_native", seccomp_arch_native_name },
  { "seccomp_version", seccomp_library_version },
  { NULL, NULL }
};

void
nsb_open_seccomp (lua_State *L)
{
  luaL_newmetatable (L, FILTER_META);
  lua_pushcfunction (L, filter_gc);
  lua_setfield (L, -2, "__gc");
  lua_pop (L, 1);
  luaL_setfuncs (L, seccomp_functions, 0);
}
