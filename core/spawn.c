/* SPDX-License-Identifier: MIT */
/* Host processes that nsbuild starts beside a container (helpers such as
   slirp4netns), and waiting on a descriptor with a timeout.

   Lua functions:
     core.spawn(argv, env, opts) -> pid
       argv[1] is searched in nsbuild's own PATH, and env nil keeps nsbuild's environment.
       opts (all optional): { keep_fds = { fd, ... }, stdin = fd, stdout = fd,
                              stderr = fd, setsid = bool, cwd = path }
       Only the kept descriptors (same numbers) and the three standard streams
       reach the new program.  A failed exec is reported here, not in the child:
       nil, "exec 'name': strerror", errno.
     core.poll_read(fd, timeout_ms) -> true when fd is readable or hung up,
                                       false when the timeout passed first
     core.pidfd_open(pid) -> fd handle that polls readable once the process exits */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/close_range.h>

#include "core.h"

#define SPAWN_MAX_KEEP 16

extern char **environ;

struct spawn_opts {
  int keep[SPAWN_MAX_KEEP];
  int nkeep;
  int stdio[3];             /* -1: inherit nsbuild's */
  int setsid;
  const char *cwd;
};

static const char *const spawn_fields[] = { "keep_fds", "stdin", "stdout", "stderr", "setsid",
                                            "cwd", NULL };

static int
opt_fd (lua_State *L, int idx, const char *field)
{
  int fd = -1;

  if (lua_getfield (L, idx, field) != LUA_TNIL)
    fd = nsb_check_fd_or_int (L, -1);
  lua_pop (L, 1);
  return fd;
}

static void
check_keep_fds (lua_State *L, int idx, struct spawn_opts *o)
{
  lua_Integer i, n;

  if (lua_getfield (L, idx, "keep_fds") == LUA_TNIL)
    {
      lua_pop (L, 1);
      return;
    }
  luaL_argcheck (L, lua_istable (L, -1), idx, "option 'keep_fds' must be a list of fds");
  n = luaL_len (L, -1);
  luaL_argcheck (L, n <= SPAWN_MAX_KEEP, idx, "option 'keep_fds' lists too many fds");
  for (i = 1; i <= n; i++)
    {
      lua_geti (L, -1, i);
      o->keep[o->nkeep] = nsb_check_fd_or_int (L, -1);
      /* 0-2 are the standard streams, set by stdin, stdout and stderr. */
      luaL_argcheck (L, o->keep[o->nkeep] > 2, idx, "keep_fds must be descriptors above 2");
      o->nkeep++;
      lua_pop (L, 1);
    }
  lua_pop (L, 1);
}

static void
check_spawn_opts (lua_State *L, int idx, struct spawn_opts *o)
{
  memset (o, 0, sizeof *o);
  o->stdio[0] = o->stdio[1] = o->stdio[2] = -1;
  if (lua_isnoneornil (L, idx))
    return;
  luaL_checktype (L, idx, LUA_TTABLE);
  nsb_check_fields (L, idx, spawn_fields);
  check_keep_fds (L, idx, o);
  o->stdio[0] = opt_fd (L, idx, "stdin");
  o->stdio[1] = opt_fd (L, idx, "stdout");
  o->stdio[2] = opt_fd (L, idx, "stderr");
  o->setsid = nsb_opt_bool_field (L, idx, "setsid", 0);
  o->cwd = nsb_opt_string_field (L, idx, "cwd", NULL);
}

/* Report errno to the parent through the close-on-exec pipe, and end. */
static void
spawn_child_fail (int errpipe)
{
  int err = errno;
  ssize_t ignored = write (errpipe, &err, sizeof err);

  (void) ignored;
  _exit (127);
}

/* The forked child: only async-signal-safe calls from here to exec. */
static void
spawn_child (char **argv, char **env, const struct spawn_opts *o, int errpipe)
{
  struct sigaction dfl;
  sigset_t none;
  int i, sig;

  /* nsbuild relays signals to the container, so the helper starts with the
     default dispositions.  SIGKILL and SIGSTOP reject the change, which is harmless. */
  memset (&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (sig = 1; sig < NSIG; sig++)
    sigaction (sig, &dfl, NULL);
  sigemptyset (&none);
  sigprocmask (SIG_SETMASK, &none, NULL);

  if (o->setsid && setsid () < 0)
    spawn_child_fail (errpipe);
  if (o->cwd != NULL && chdir (o->cwd) < 0)
    spawn_child_fail (errpipe);
  for (i = 0; i < 3; i++)
    if (o->stdio[i] >= 0 && dup2 (o->stdio[i], i) < 0)
      spawn_child_fail (errpipe);

  /* Everything above 2 closes at exec, except what the caller keeps. */
  if (syscall (SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
    spawn_child_fail (errpipe);
  for (i = 0; i < o->nkeep; i++)
    if (fcntl (o->keep[i], F_SETFD, 0) < 0)
      spawn_child_fail (errpipe);

  execvpe (argv[0], argv, env);
  spawn_child_fail (errpipe);
}

/* Read the child's exec errno: 0 when the pipe closed empty (exec succeeded). */
static int
spawn_exec_errno (int errpipe)
{
  int err = 0;
  ssize_t got;

  do
    got = read (errpipe, &err, sizeof err);
  while (got < 0 && errno == EINTR);
  return got == (ssize_t) sizeof err ? err : 0;
}

static int
proc_spawn (lua_State *L)
{
  char **argv, **env;
  struct spawn_opts o;
  int pipefd[2], err, status;
  pid_t pid;

  /* The string arrays are userdata pushed above the three arguments. */
  lua_settop (L, 3);
  argv = nsb_check_string_list (L, 1, "argv");
  env = lua_isnil (L, 2) ? environ : nsb_check_string_list (L, 2, "env");
  luaL_argcheck (L, argv[0] != NULL, 1, "argv must not be empty");
  check_spawn_opts (L, 3, &o);

  if (pipe2 (pipefd, O_CLOEXEC) < 0)
    return nsb_fail (L, errno, "pipe");
  pid = fork ();
  if (pid < 0)
    {
      err = errno;
      close (pipefd[0]);
      close (pipefd[1]);
      return nsb_fail (L, err, "fork");
    }
  if (pid == 0)
    {
      close (pipefd[0]);
      spawn_child (argv, env, &o, pipefd[1]);
    }

  close (pipefd[1]);
  err = spawn_exec_errno (pipefd[0]);
  close (pipefd[0]);
  if (err != 0)
    {
      while (waitpid (pid, &status, 0) < 0 && errno == EINTR)
        ;
      return nsb_fail_path (L, err, "exec", argv[0]);
    }
  lua_pushinteger (L, pid);
  return 1;
}

static int
proc_poll_read (lua_State *L)
{
  int fd = nsb_check_fd_or_int (L, 1);
  lua_Integer timeout = luaL_checkinteger (L, 2);
  struct pollfd p = { .fd = fd, .events = POLLIN };
  int ret;

  luaL_argcheck (L, timeout >= -1 && timeout <= INT_MAX, 2, "timeout out of range");
  /* A restarted poll starts its full timeout again: an upper bound, not exact. */
  do
    ret = poll (&p, 1, (int) timeout);
  while (ret < 0 && errno == EINTR);
  if (ret < 0)
    return nsb_fail (L, errno, "poll");
  lua_pushboolean (L, ret > 0);
  return 1;
}

static int
proc_pidfd_open (lua_State *L)
{
  lua_Integer pid = luaL_checkinteger (L, 1);
  int fd;

  luaL_argcheck (L, pid > 0 && pid <= INT_MAX, 1, "not a process id");
  /* pidfd descriptors are close-on-exec from the start. */
  fd = (int) syscall (SYS_pidfd_open, (pid_t) pid, 0U);
  if (fd < 0)
    return nsb_fail (L, errno, lua_pushfstring (L, "pidfd_open %I", pid));
  nsb_push_fd (L, fd);
  return 1;
}

static const luaL_Reg spawn_functions[] = {
  { "spawn", proc_spawn },
  { "poll_read", proc_poll_read },
  { "pidfd_open", proc_pidfd_open },
  { NULL, NULL }
};

void
nsb_open_spawn (lua_State *L)
{
  luaL_setfuncs (L, spawn_functions, 0);
}
