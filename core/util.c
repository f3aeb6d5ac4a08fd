/* SPDX-License-Identifier: MIT */
/* The fd handle type and the argument helpers every subsystem of nsbuild.core uses.

   Lua functions: fd:close(), fd:fileno(), fd:read([n]), fd:write(s), fd:set_cloexec(on),
   core.fd(n) (adopt a raw descriptor) */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

struct nsb_fd {
  int fd;
};

int
nsb_fail (lua_State *L, int err, const char *what)
{
  luaL_pushfail (L);
  lua_pushfstring (L, "%s: %s", what, strerror (err));
  lua_pushinteger (L, err);
  return 3;
}

int
nsb_fail_path (lua_State *L, int err, const char *op, const char *target)
{
  luaL_pushfail (L);
  lua_pushfstring (L, "%s '%s': %s", op, target, strerror (err));
  lua_pushinteger (L, err);
  return 3;
}

int
nsb_ok (lua_State *L)
{
  lua_pushboolean (L, 1);
  return 1;
}

void
nsb_push_fd (lua_State *L, int fd)
{
  struct nsb_fd *h = lua_newuserdatauv (L, sizeof *h, 0);

  h->fd = -1;
  luaL_setmetatable (L, NSB_FD_META);
  h->fd = fd;
}

static struct nsb_fd *
fd_handle (lua_State *L, int idx)
{
  return luaL_checkudata (L, idx, NSB_FD_META);
}

int
nsb_check_fd (lua_State *L, int idx)
{
  struct nsb_fd *h = fd_handle (L, idx);

  if (h->fd < 0)
    luaL_argerror (L, idx, "attempt to use a closed fd");
  return h->fd;
}

int
nsb_check_fd_or_int (lua_State *L, int idx)
{
  if (lua_isinteger (L, idx))
    return (int) lua_tointeger (L, idx);
  return nsb_check_fd (L, idx);
}

unsigned long
nsb_check_flags (lua_State *L, int idx, const struct nsb_flag *known)
{
  unsigned long flags = 0;
  lua_Integer i, n;

  if (lua_isnoneornil (L, idx))
    return 0;
  luaL_checktype (L, idx, LUA_TTABLE);
  n = luaL_len (L, idx);
  for (i = 1; i <= n; i++)
    {
      const struct nsb_flag *f;
      const char *name;

      lua_geti (L, idx, i);
      name = lua_tostring (L, -1);
      if (name == NULL)
        luaL_argerror (L, idx, "flag names must be strings");
      for (f = known; f->name != NULL; f++)
        if (strcmp (f->name, name) == 0)
          break;
      if (f->name == NULL)
        {
          luaL_Buffer b;

          luaL_buffinit (L, &b);
          for (f = known; f->name != NULL; f++)
            {
              luaL_addstring (&b, f == known ? "" : ", ");
              luaL_addstring (&b, f->name);
            }
          luaL_pushresult (&b);
          luaL_argerror (L, idx, lua_pushfstring (L, "unknown flag '%s' (known: %s)",
                                                  name, lua_tostring (L, -1)));
        }
      flags |= f->value;
      lua_pop (L, 1);
    }
  return flags;
}

void
nsb_check_fields (lua_State *L, int idx, const char *const fields[])
{
  idx = lua_absindex (L, idx);
  lua_pushnil (L);
  while (lua_next (L, idx) != 0)
    {
      const char *const *f;

      lua_pop (L, 1);
      if (lua_type (L, -1) != LUA_TSTRING)
        luaL_argerror (L, idx, "option keys must be strings");
      for (f = fields; *f != NULL; f++)
        if (strcmp (*f, lua_tostring (L, -1)) == 0)
          break;
      if (*f == NULL)
        luaL_argerror (L, idx, lua_pushfstring (L, "unknown option '%s'", lua_tostring (L, -1)));
    }
}

int
nsb_opt_bool_field (lua_State *L, int idx, const char *field, int def)
{
  int v = def;

  if (lua_isnoneornil (L, idx))
    return def;
  if (lua_getfield (L, idx, field) != LUA_TNIL)
    {
      if (!lua_isboolean (L, -1))
        luaL_argerror (L, idx, lua_pushfstring (L, "option '%s' must be a boolean", field));
      v = lua_toboolean (L, -1);
    }
  lua_pop (L, 1);
  return v;
}

lua_Integer
nsb_opt_int_field (lua_State *L, int idx, const char *field, lua_Integer def)
{
  lua_Integer v = def;

  if (lua_isnoneornil (L, idx))
    return def;
  if (lua_getfield (L, idx, field) != LUA_TNIL)
    {
      if (!lua_isinteger (L, -1))
        luaL_argerror (L, idx, lua_pushfstring (L, "option '%s' must be an integer", field));
      v = lua_tointeger (L, -1);
    }
  lua_pop (L, 1);
  return v;
}

const char *
nsb_opt_string_field (lua_State *L, int idx, const char *field, const char *def)
{
  const char *v = def;

  if (lua_isnoneornil (L, idx))
    return def;
  if (lua_getfield (L, idx, field) != LUA_TNIL)
    {
      if (lua_type (L, -1) != LUA_TSTRING)
        luaL_argerror (L, idx, lua_pushfstring (L, "option '%s' must be a string", field));
      v = lua_tostring (L, -1);
    }
  lua_pop (L, 1);  /* the string stays reachable through the options table */
  return v;
}


/* execve takes char *const[] for historical reasons and never writes the strings. */
static char *
unconst (const char *s)
{
  union { const char *c; char *m; } u = { .c = s };

  return u.m;
}

char **
nsb_check_string_list (lua_State *L, int idx, const char *what)
{
  lua_Integer i, n;
  char **list;

  luaL_checktype (L, idx, LUA_TTABLE);
  n = luaL_len (L, idx);
  luaL_argcheck (L, n < 65536, idx, "list too long");
  list = lua_newuserdatauv (L, sizeof (char *) * (size_t) (n + 1), 0);
  for (i = 1; i <= n; i++)
    {
      lua_geti (L, idx, i);
      if (lua_type (L, -1) != LUA_TSTRING)
        luaL_argerror (L, idx, lua_pushfstring (L, "%s must contain only strings", what));
      list[i - 1] = unconst (lua_tostring (L, -1));
      lua_pop (L, 1);
    }
  list[n] = NULL;
  return list;
}

int
nsb_write_all (int fd, const void *data, size_t len)
{
  const char *p = data;

  while (len > 0)
    {
      ssize_t n = write (fd, p, len);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          /* write returns 0 only for a length of 0; never loop on it. */
          if (n == 0)
            errno = EIO;
          return -1;
        }
      p += n;
      len -= (size_t) n;
    }
  return 0;
}

const char *
nsb_env_path (char **env)
{
  for (; *env != NULL; env++)
    if (strncmp (*env, "PATH=", 5) == 0)
      return *env + 5;
  return NSB_DEFAULT_PATH;
}


/* {====================================================== fd handle methods */

static int
fd_close (lua_State *L)
{
  struct nsb_fd *h = fd_handle (L, 1);

  if (h->fd >= 0)
    {
      int fd = h->fd;

      h->fd = -1;
      /* Linux releases the descriptor even when close reports EINTR or EIO. */
      if (close (fd) < 0 && errno != EINTR)
        return nsb_fail (L, errno, "close");
    }
  return nsb_ok (L);
}

static int
fd_fileno (lua_State *L)
{
  struct nsb_fd *h = fd_handle (L, 1);

  lua_pushinteger (L, h->fd);
  return 1;
}

/* fd:read([n]) returns up to n bytes (default 64 KiB); nil at end of file. */
static int
fd_read (lua_State *L)
{
  int fd = nsb_check_fd (L, 1);
  lua_Integer n = luaL_optinteger (L, 2, 65536);
  luaL_Buffer b;
  ssize_t got;
  char *p;

  luaL_argcheck (L, n > 0, 2, "byte count must be positive");
  p = luaL_buffinitsize (L, &b, (size_t) n);
  do
    got = read (fd, p, (size_t) n);
  while (got < 0 && errno == EINTR);
  if (got < 0)
    return nsb_fail (L, errno, "read");
  if (got == 0)
    {
      luaL_pushfail (L);
      return 1;
    }
  luaL_pushresultsize (&b, (size_t) got);
  return 1;
}

/* fd:read_all() reads until end of file. */
static int
fd_read_all (lua_State *L)
{
  int fd = nsb_check_fd (L, 1);
  luaL_Buffer b;

  luaL_buffinit (L, &b);
  for (;;)
    {
      char *p = luaL_prepbuffer (&b);
      ssize_t got = read (fd, p, LUAL_BUFFERSIZE);

      if (got < 0 && errno == EINTR)
        continue;
      if (got < 0)
        return nsb_fail (L, errno, "read");
      if (got == 0)
        break;
      luaL_addsize (&b, (size_t) got);
    }
  luaL_pushresult (&b);
  return 1;
}

static int
fd_write (lua_State *L)
{
  int fd = nsb_check_fd (L, 1);
  size_t len, done = 0;
  const char *s = luaL_checklstring (L, 2, &len);

  while (done < len)
    {
      ssize_t n = write (fd, s + done, len - done);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return nsb_fail (L, errno, "write");
      done += (size_t) n;
    }
  return nsb_ok (L);
}

static int
fd_set_cloexec (lua_State *L)
{
  int fd = nsb_check_fd (L, 1);
  int on = lua_toboolean (L, 2);
  int flags = fcntl (fd, F_GETFD);

  if (flags < 0)
    return nsb_fail (L, errno, "fcntl F_GETFD");
  flags = on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC;
  if (fcntl (fd, F_SETFD, flags) < 0)
    return nsb_fail (L, errno, "fcntl F_SETFD");
  return nsb_ok (L);
}

static int
fd_tostring (lua_State *L)
{
  struct nsb_fd *h = fd_handle (L, 1);

  if (h->fd < 0)
    lua_pushliteral (L, "fd (closed)");
  else
    lua_pushfstring (L, "fd %d", h->fd);
  return 1;
}

/* core.fd(n) adopts descriptor n: the handle closes it when collected. */
static int
util_fd (lua_State *L)
{
  lua_Integer n = luaL_checkinteger (L, 1);

  luaL_argcheck (L, n >= 0 && n <= 0x7fffffff, 1, "not a descriptor number");
  nsb_push_fd (L, (int) n);
  return 1;
}

static const luaL_Reg fd_methods[] = {
  { "close", fd_close },
  { "fileno", fd_fileno },
  { "read", fd_read },
  { "read_all", fd_read_all },
  { "write", fd_write },
  { "set_cloexec", fd_set_cloexec },
  { NULL, NULL }
};

static const luaL_Reg fd_meta[] = {
  { "__gc", fd_close },
  { "__close", fd_close },
  { "__tostring", fd_tostring },
  { NULL, NULL }
};

static const luaL_Reg util_functions[] = {
  { "fd", util_fd },
  { NULL, NULL }
};

/* }====================================================== */

void
nsb_open_util (lua_State *L)
{
  luaL_newmetatable (L, NSB_FD_META);
  luaL_setfuncs (L, fd_meta, 0);
  luaL_newlib (L, fd_methods);
  lua_setfield (L, -2, "__index");
  lua_pop (L, 1);
  luaL_setfuncs (L, util_functions, 0);
}
