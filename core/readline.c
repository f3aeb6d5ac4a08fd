/* SPDX-License-Identifier: MIT */
/* Line editing for `nsbuild repl` over libedit, and calls that Ctrl-C can interrupt.

   Lua functions:
     core.readline(prompt)             -> line, or nil at end of input (or when Ctrl-C cancels the line: then also "interrupted")
     core.add_history(line)            -> true
     core.read_history(path)           -> true (a missing file is not an error)
     core.write_history(path [, max])  -> true: keep at most max lines (default 1000)
     core.set_completer(fn)            -> true: fn(word, line) returns a list of completions of word
     core.interruptible(fn, ...)       -> like pcall(fn, ...) with a traceback; Ctrl-C (SIGINT)
                                          raises "interrupted" inside fn instead of ending nsbuild */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <editline/readline.h>

#include "core.h"

/* libedit calls back without a state argument: the state of the completer and
   of the running interruptible call, one per process as the REPL is. */
static lua_State *completer_state;
static int completer_ref = LUA_NOREF;
static lua_State *interrupt_state;
static volatile sig_atomic_t interrupted;

static void
on_sigint_at_prompt (int sig)
{
  (void) sig;
  interrupted = 1;
}

static int
readline_readline (lua_State *L)
{
  const char *prompt = luaL_optstring (L, 1, "> ");
  struct sigaction sa, old;
  char *line;
  int err;

  /* Without SA_RESTART the read under libedit fails with EINTR, so Ctrl-C
     cancels the line being typed instead of ending the process. */
  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint_at_prompt;
  sigemptyset (&sa.sa_mask);
  interrupted = 0;
  sigaction (SIGINT, &sa, &old);
  line = readline (prompt);
  err = errno;
  sigaction (SIGINT, &old, NULL);
  if (line == NULL)
    {
      luaL_pushfail (L);
      if (interrupted || err == EINTR)
        {
          lua_pushliteral (L, "interrupted");
          return 2;
        }
      return 1;
    }
  lua_pushstring (L, line);
  free (line);
  return 1;
}

static int
readline_add_history (lua_State *L)
{
  add_history (luaL_checkstring (L, 1));
  return nsb_ok (L);
}

static int
readline_read_history (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);

  if (access (path, R_OK) < 0)
    {
      if (errno == ENOENT)
        return nsb_ok (L);
      return nsb_fail_path (L, errno, "read history", path);
    }
  /* libedit returns a negative count or an errno-less failure; report its code. */
  if (read_history (path) != 0)
    return nsb_fail_path (L, errno ? errno : EIO, "read history", path);
  return nsb_ok (L);
}

static int
readline_write_history (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  lua_Integer max = luaL_optinteger (L, 2, 1000);

  luaL_argcheck (L, max > 0, 2, "the number of lines to keep must be positive");
  if (write_history (path) != 0)
    return nsb_fail_path (L, errno ? errno : EIO, "write history", path);
  history_truncate_file (path, (int) max);
  return nsb_ok (L);
}

/* libedit asks for matches one by one: state 0 starts a new completion. The
   Lua completer runs once per completion and its list is kept in the registry. */
static int completion_list_ref = LUA_NOREF;
static lua_Integer completion_index;

static char *
complete_entry (const char *word, int state)
{
  lua_State *L = completer_state;
  const char *s;
  char *copy;

  if (L == NULL || completer_ref == LUA_NOREF)
    return NULL;
  if (state == 0)
    {
      luaL_unref (L, LUA_REGISTRYINDEX, completion_list_ref);
      completion_list_ref = LUA_NOREF;
      completion_index = 0;
      lua_rawgeti (L, LUA_REGISTRYINDEX, completer_ref);
      lua_pushstring (L, word);
      lua_pushstring (L, rl_line_buffer != NULL ? rl_line_buffer : "");
      if (lua_pcall (L, 2, 1, 0) != LUA_OK || !lua_istable (L, -1))
        {
          lua_pop (L, 1);
          return NULL;
        }
      completion_list_ref = luaL_ref (L, LUA_REGISTRYINDEX);
    }
  if (completion_list_ref == LUA_NOREF)
    return NULL;
  lua_rawgeti (L, LUA_REGISTRYINDEX, completion_list_ref);
  lua_rawgeti (L, -1, ++completion_index);
  s = lua_tostring (L, -1);
  copy = s != NULL ? strdup (s) : NULL;
  lua_pop (L, 2);
  return copy;
}

/* libedit's declaration is not const, though it never writes the string. */
static char word_breaks[] = " \t\n\"'()[]{},;=+-*/%<>~#";

static int
readline_set_completer (lua_State *L)
{
  luaL_checktype (L, 1, LUA_TFUNCTION);
  if (completer_ref != LUA_NOREF)
    luaL_unref (L, LUA_REGISTRYINDEX, completer_ref);
  lua_pushvalue (L, 1);
  completer_ref = luaL_ref (L, LUA_REGISTRYINDEX);
  completer_state = L;
  rl_completion_entry_function = complete_entry;
  /* Dots and colons belong to a word: "nsbuild.st" completes as a whole. */
  rl_completer_word_break_characters = word_breaks;
  rl_completion_append_character = '\0';
  return nsb_ok (L);
}

/* The same trick as lua.c: a signal handler may not touch the Lua state, but
   it may set a hook, and the hook raises the error at the next instruction. */
static void
interrupt_hook (lua_State *L, lua_Debug *ar)
{
  (void) ar;
  lua_sethook (L, NULL, 0, 0);
  luaL_error (L, "interrupted");
}

static void
on_sigint_in_call (int sig)
{
  (void) sig;
  if (interrupt_state != NULL)
    lua_sethook (interrupt_state, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static int
traceback_handler (lua_State *L)
{
  const char *msg = lua_tostring (L, 1);

  if (msg == NULL && !lua_isnoneornil (L, 1))
    msg = lua_pushfstring (L, "(error object is a %s value)", luaL_typename (L, 1));
  luaL_traceback (L, L, msg, 1);
  return 1;
}

static int
readline_interruptible (lua_State *L)
{
  struct sigaction sa, old;
  int nargs = lua_gettop (L) - 1, status;

  luaL_checktype (L, 1, LUA_TFUNCTION);
  lua_pushcfunction (L, traceback_handler);
  lua_insert (L, 1);

  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint_in_call;
  sigemptyset (&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  interrupt_state = L;
  sigaction (SIGINT, &sa, &old);
  status = lua_pcall (L, nargs, LUA_MULTRET, 1);
  sigaction (SIGINT, &old, NULL);
  interrupt_state = NULL;
  lua_sethook (L, NULL, 0, 0);

  lua_pushboolean (L, status == LUA_OK);
  lua_replace (L, 1);
  return lua_gettop (L);
}

static const luaL_Reg readline_functions[] = {
  { "readline", readline_readline },
  { "add_history", readline_add_history },
  { "read_history", readline_read_history },
  { "write_history", readline_write_history },
  { "set_completer", readline_set_completer },
  { "interruptible", readline_interruptible },
  { NULL, NULL }
};

void
nsb_open_readline (lua_State *L)
{
  /* nsbuild handles SIGINT itself; libedit must not re-raise it after restoring the terminal. */
  rl_catch_signals = 0;
  luaL_setfuncs (L, readline_functions, 0);
}
