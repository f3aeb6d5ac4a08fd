/* SPDX-License-Identifier: MIT */
/* The nsbuild executable: a Lua 5.4 state with nsbuild.core linked in, the Lua
   library found next to the executable or under its install prefix, and
   nsbuild.cli.main(args) deciding everything else. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "core.h"

/* Where the Lua library may live, relative to the directory of the executable:
   a source checkout (bin next to lua/) or an install (bin/../share/nsbuild/lua). */
static const char *const lua_dirs[] = { "lua", "../share/nsbuild/lua", NULL };

static int
find_lua_dir (char *out, size_t size)
{
  char exe[PATH_MAX], probe[PATH_MAX + 64];
  const char *const *d;
  ssize_t n = readlink ("/proc/self/exe", exe, sizeof exe - 1);
  char *slash;

  if (n < 0)
    return -1;
  exe[n] = '\0';
  slash = strrchr (exe, '/');
  if (slash == NULL)
    return -1;
  *slash = '\0';
  for (d = lua_dirs; *d != NULL; d++)
    {
      snprintf (probe, sizeof probe, "%s/%s/nsbuild/init.lua", exe, *d);
      if (access (probe, R_OK) == 0)
        {
          if ((size_t) snprintf (out, size, "%s/%s", exe, *d) >= size)
            break;
          return 0;
        }
    }
  errno = ENOENT;
  return -1;
}

static int
message_handler (lua_State *L)
{
  const char *msg = lua_tostring (L, 1);

  if (msg == NULL && luaL_callmeta (L, 1, "__tostring") && lua_type (L, -1) == LUA_TSTRING)
    return 1;
  if (msg == NULL)
    {
      /* Structured errors (tables) pass through unchanged for the CLI to report. */
      lua_settop (L, 1);
      return 1;
    }
  luaL_traceback (L, L, msg, 1);
  return 1;
}

/* Prepend dir's ?.lua patterns to package.path, so the checkout wins over any install. */
static void
set_package_path (lua_State *L, const char *dir)
{
  lua_getglobal (L, "package");
  lua_getfield (L, -1, "path");
  lua_pushfstring (L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring (L, -1));
  lua_setfield (L, -3, "path");
  lua_pop (L, 1);

  lua_getfield (L, -1, "preload");
  lua_pushcfunction (L, luaopen_nsbuild_core);
  lua_setfield (L, -2, "nsbuild.core");
  lua_pop (L, 2);
}

static int
run_cli (lua_State *L)
{
  int argc = (int) lua_tointeger (L, 1);
  char **argv = lua_touserdata (L, 2);
  const char *dir = lua_tostring (L, 3);
  int i;

  luaL_openlibs (L);
  set_package_path (L, dir);

  lua_getglobal (L, "require");
  lua_pushliteral (L, "nsbuild.cli");
  lua_call (L, 1, 1);
  lua_getfield (L, -1, "main");
  lua_createtable (L, argc, 1);
  lua_pushstring (L, argv[0]);
  lua_rawseti (L, -2, 0);
  for (i = 1; i < argc; i++)
    {
      lua_pushstring (L, argv[i]);
      lua_rawseti (L, -2, i);
    }
  lua_call (L, 1, 1);
  return 1;
}

int
main (int argc, char **argv)
{
  char dir[PATH_MAX];
  lua_State *L;
  int status, code;

  if (find_lua_dir (dir, sizeof dir) < 0)
    {
      fprintf (stderr, "nsbuild: cannot find the Lua library (lua/nsbuild/init.lua) next to "
                       "the executable or in ../share/nsbuild/lua; reinstall nsbuild\n");
      return 125;
    }
  L = luaL_newstate ();
  if (L == NULL)
    {
      fprintf (stderr, "nsbuild: cannot create a Lua state: out of memory\n");
      return 125;
    }

  lua_pushcfunction (L, message_handler);
  lua_pushcfunction (L, run_cli);
  lua_pushinteger (L, argc);
  lua_pushlightuserdata (L, argv);
  lua_pushstring (L, dir);
  status = lua_pcall (L, 3, 1, 1);
  if (status != LUA_OK)
    {
      const char *msg = lua_tostring (L, -1);

      fprintf (stderr, "nsbuild: %s\n", msg != NULL ? msg : "(error object is not a string)");
      lua_close (L);
      return 125;
    }
  code = lua_isinteger (L, -1) ? (int) lua_tointeger (L, -1) : 0;
  lua_close (L);
  return code;
}
