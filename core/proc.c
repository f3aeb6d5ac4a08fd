/* SPDX-License-Identifier: MIT */
/* Processes: exec with the PATH lookup done in the current root, wait, kill,
   pipes, fd hygiene, signal forwarding.

   Lua functions:
     core.execve(file, argv, env)   -> only returns on failure: nil, message, errno
     core.waitpid(pid [, nohang])   -> pid, "exited"|"signaled", code|signal  (0 when nohang and running)
     core.kill(pid, signal)         -> true
     core.signum(name|number)       -> number
     core.pipe()                    -> read fd, write fd (both close-on-exec)
     core.cloexec_from(n)           -> true: every descriptor >= n closes at exec
     core.forward_signals(pid|nil)  -> true: relay HUP INT QUIT TERM USR1 USR2 WINCH to pid
     core.set_pdeathsig(signal)     -> true: signal this process gets when its parent dies
     core.dup2(fd, n)               -> true: make descriptor n a copy of fd (not close-on-exec)
     core.setrlimit(name, soft, hard) -> true: soft and hard are numbers or "unlimited"
     core.getrlimit(name)           -> soft, hard (math.maxinteger for unlimited)
       names: as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile,
       nproc, rss, rtprio, rttime, sigpending, stack
     core.fchdir(fd)                -> true
     core.setsid()                  -> the new session id: leave the terminal's session
     core.chdir(path), core.chroot(path), core.getpid(), core.getuid(), core.geteuid(),
     core.getgid(), core._exit(code) */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/close_range.h>

#include "core.h"

struct signal_name {
  const char *name;
  int number;
};

static const struct signal_name signal_names[] = {
  { "HUP", SIGHUP }, { "INT", SIGINT }, { "QUIT", SIGQUIT }, { "ILL", SIGILL },
  { "TRAP", SIGTRAP }, { "ABRT", SIGABRT }, { "BUS", SIGBUS }, { "FPE", SIGFPE },
  { "KILL", SIGKILL }, { "USR1", SIGUSR1 }, { "SEGV", SIGSEGV }, { "USR2", SIGUSR2 },
  { "PIPE", SIGPIPE }, { "ALRM", SIGALRM }, { "TERM", SIGTERM }, { "CHLD", SIGCHLD },
  { "CONT", SIGCONT }, { "STOP", SIGSTOP }, { "TSTP", SIGTSTP }, { "TTIN", SIGTTIN },
  { "TTOU", SIGTTOU }, { "URG", SIGURG }, { "XCPU", SIGXCPU }, { "XFSZ", SIGXFSZ },
  { "VTALRM", SIGVTALRM }, { "PROF", SIGPROF }, { "WINCH", SIGWINCH }, { "IO", SIGIO },
  { "PWR", SIGPWR }, { "SYS", SIGSYS }, { NULL, 0 }
};

static int
check_signal (lua_State *L, int idx)
{
  const struct signal_name *s;
  const char *name;

  if (lua_isinteger (L, idx))
    {
      lua_Integer n = lua_tointeger (L, idx);

      luaL_argcheck (L, n >= 0 && n <= SIGRTMAX, idx, "signal number out of range");
      return (int) n;
    }
  name = luaL_checkstring (L, idx);
  if (strncmp (name, "SIG", 3) == 0)
    name += 3;
  for (s = signal_names; s->name != NULL; s++)
    if (strcmp (s->name, name) == 0)
      return s->number;
  return luaL_argerror (L, idx, lua_pushfstring (L, "unknown signal '%s'", lua_tostring (L, idx)));
}

/* Search PATH of the new environment (not of nsbuild), in the current root, the
   way execvp does: EACCES is remembered, the search goes on, ENOENT ends it. */
static int
exec_search (const char *file, char **argv, char **env)
{
  const char *path = nsb_env_path (env), *p = path;
  int seen_eacces = 0;

  for (;;)
    {
      const char *end = strchrnul (p, ':');
      char full[PATH_MAX];
      size_t dirlen = (size_t) (end - p);

      if (dirlen == 0)
        snprintf (full, sizeof full, "%s", file);
      else if ((size_t) snprintf (full, sizeof full, "%.*s/%s", (int) dirlen, p, file) >= sizeof full)
        goto next;
      execve (full, argv, env);
      if (errno == EACCES)
        seen_eacces = 1;
      else if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP && errno != ENAMETOOLONG)
        return -1;
    next:
      if (*end == '\0')
        break;
      p = end + 1;
    }
  errno = seen_eacces ? EACCES : ENOENT;
  return -1;
}

static int
proc_execve (lua_State *L)
{
  const char *file = luaL_checkstring (L, 1);
  char **argv = nsb_check_string_list (L, 2, "argv");
  char **env = nsb_check_string_list (L, 3, "env");
  int err;

  luaL_argcheck (L, argv[0] != NULL, 2, "argv must not be empty");
  luaL_argcheck (L, *file != '\0', 1, "empty command name");
  if (strchr (file, '/') != NULL)
    execve (file, argv, env);
  else
    exec_search (file, argv, env);
  err = errno;
  if (strchr (file, '/') == NULL && err == ENOENT)
    {
      luaL_pushfail (L);
      lua_pushfstring (L, "exec '%s': not found in PATH (%s)", file, nsb_env_path (env));
      lua_pushinteger (L, err);
      return 3;
    }
  return nsb_fail_path (L, err, "exec", file);
}

static int
proc_waitpid (lua_State *L)
{
  lua_Integer pid = luaL_checkinteger (L, 1);
  int options = lua_toboolean (L, 2) ? WNOHANG : 0;
  int status;
  pid_t got;

  do
    got = waitpid ((pid_t) pid, &status, options);
  while (got < 0 && errno == EINTR);
  if (got < 0)
    return nsb_fail (L, errno, lua_pushfstring (L, "waitpid %I", pid));
  lua_pushinteger (L, got);
  if (got == 0)
    return 1;
  if (WIFEXITED (status))
    {
      lua_pushliteral (L, "exited");
      lua_pushinteger (L, WEXITSTATUS (status));
    }
  else if (WIFSIGNALED (status))
    {
      lua_pushliteral (L, "signaled");
      lua_pushinteger (L, WTERMSIG (status));
    }
  else
    {
      lua_pushliteral (L, "stopped");
      lua_pushinteger (L, WSTOPSIG (status));
    }
  return 3;
}

static int
proc_kill (lua_State *L)
{
  lua_Integer pid = luaL_checkinteger (L, 1);
  int sig = check_signal (L, 2);

  if (kill ((pid_t) pid, sig) < 0)
    return nsb_fail (L, errno, lua_pushfstring (L, "kill %I", pid));
  return nsb_ok (L);
}

static int
proc_signum (lua_State *L)
{
  lua_pushinteger (L, check_signal (L, 1));
  return 1;
}

static int
proc_pipe (lua_State *L)
{
  int fds[2];

  if (pipe2 (fds, O_CLOEXEC) < 0)
    return nsb_fail (L, errno, "pipe");
  nsb_push_fd (L, fds[0]);
  nsb_push_fd (L, fds[1]);
  return 2;
}

/* Mark rather than close: the child's error pipe must stay open until exec,
   and exec then closes everything at once. */
static int
proc_cloexec_from (lua_State *L)
{
  lua_Integer first = luaL_checkinteger (L, 1);

  luaL_argcheck (L, first >= 0 && first <= INT_MAX, 1, "not a descriptor number");
  if (syscall (SYS_close_range, (unsigned int) first, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
    return nsb_fail (L, errno, "close_range");
  return nsb_ok (L);
}

static volatile sig_atomic_t forward_pid;

static void
forward_handler (int sig)
{
  int saved = errno;

  if (forward_pid > 0)
    kill (forward_pid, sig);
  errno = saved;
}

static const int forwarded_signals[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2,
                                         SIGWINCH, 0 };

/* While a container runs, signals sent to nsbuild go to its first process, as
   crun and podman do; nil restores the default dispositions.  SA_RESTART keeps
   the parent's waitpid going. */
static int
proc_forward_signals (lua_State *L)
{
  lua_Integer pid = luaL_optinteger (L, 1, 0);
  struct sigaction sa;
  const int *s;

  memset (&sa, 0, sizeof sa);
  sigemptyset (&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sa.sa_handler = pid > 0 ? forward_handler : SIG_DFL;
  forward_pid = (sig_atomic_t) pid;
  for (s = forwarded_signals; *s != 0; s++)
    if (sigaction (*s, &sa, NULL) < 0)
      return nsb_fail (L, errno, "sigaction");
  return nsb_ok (L);
}

static int
proc_set_pdeathsig (lua_State *L)
{
  int sig = check_signal (L, 1);

  if (prctl (PR_SET_PDEATHSIG, (unsigned long) sig) < 0)
    return nsb_fail (L, errno, "prctl PR_SET_PDEATHSIG");
  return nsb_ok (L);
}

static int
proc_dup2 (lua_State *L)
{
  int fd = nsb_check_fd_or_int (L, 1);
  lua_Integer n = luaL_checkinteger (L, 2);
  int ret;

  luaL_argcheck (L, n >= 0 && n <= INT_MAX, 2, "not a descriptor number");
  do
    ret = dup2 (fd, (int) n);
  while (ret < 0 && errno == EINTR);
  if (ret < 0)
    return nsb_fail (L, errno, lua_pushfstring (L, "dup2 %d to %I", fd, n));
  return nsb_ok (L);
}

static int
proc_chdir (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);

  if (chdir (path) < 0)
    return nsb_fail_path (L, errno, "chdir", path);
  return nsb_ok (L);
}

/* {====================================================== resource limits */

static const char *const rlimit_names[] = { "as", "core", "cpu", "data", "fsize", "locks",
                                            "memlock", "msgqueue", "nice", "nofile", "nproc",
                                            "rss", "rtprio", "rttime", "sigpending", "stack",
                                            NULL };
static const int rlimit_values[] = { RLIMIT_AS, RLIMIT_CORE, RLIMIT_CPU, RLIMIT_DATA,
                                     RLIMIT_FSIZE, RLIMIT_LOCKS, RLIMIT_MEMLOCK,
                                     RLIMIT_MSGQUEUE, RLIMIT_NICE, RLIMIT_NOFILE, RLIMIT_NPROC,
                                     RLIMIT_RSS, RLIMIT_RTPRIO, RLIMIT_RTTIME,
                                     RLIMIT_SIGPENDING, RLIMIT_STACK };

static rlim_t
check_rlim (lua_State *L, int idx)
{
  lua_Integer n;

  if (lua_type (L, idx) == LUA_TSTRING && strcmp (lua_tostring (L, idx), "unlimited") == 0)
    return RLIM_INFINITY;
  n = luaL_checkinteger (L, idx);
  luaL_argcheck (L, n >= 0, idx, "a limit is a number >= 0 or \"unlimited\"");
  return (rlim_t) n;
}

static void
push_rlim (lua_State *L, rlim_t value)
{
  if (value == RLIM_INFINITY || value > (rlim_t) LUA_MAXINTEGER)
    lua_pushinteger (L, LUA_MAXINTEGER);
  else
    lua_pushinteger (L, (lua_Integer) value);
}

static int
proc_setrlimit (lua_State *L)
{
  int option = luaL_checkoption (L, 1, NULL, rlimit_names);
  struct rlimit rl;

  rl.rlim_cur = check_rlim (L, 2);
  rl.rlim_max = check_rlim (L, 3);
  luaL_argcheck (L, rl.rlim_cur <= rl.rlim_max, 2, "the soft limit exceeds the hard limit");
  if (setrlimit (rlimit_values[option], &rl) < 0)
    return nsb_fail_path (L, errno, "setrlimit", rlimit_names[option]);
  return nsb_ok (L);
}

static int
proc_getrlimit (lua_State *L)
{
  int option = luaL_checkoption (L, 1, NULL, rlimit_names);
  struct rlimit rl;

  if (getrlimit (rlimit_values[option], &rl) < 0)
    return nsb_fail_path (L, errno, "getrlimit", rlimit_names[option]);
  push_rlim (L, rl.rlim_cur);
  push_rlim (L, rl.rlim_max);
  return 2;
}

/* }====================================================== */

static int
proc_fchdir (lua_State *L)
{
  if (fchdir (nsb_check_fd_or_int (L, 1)) < 0)
    return nsb_fail (L, errno, "fchdir");
  return nsb_ok (L);
}

static int
proc_chroot (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);

  if (chroot (path) < 0)
    return nsb_fail_path (L, errno, "chroot", path);
  return nsb_ok (L);
}

static int
proc_setsid (lua_State *L)
{
  pid_t sid = setsid ();

  if (sid < 0)
    return nsb_fail (L, errno, "setsid");
  lua_pushinteger (L, sid);
  return 1;
}

static int
proc_getpid (lua_State *L)
{
  lua_pushinteger (L, getpid ());
  return 1;
}

static int
proc_getuid (lua_State *L)
{
  lua_pushinteger (L, getuid ());
  return 1;
}

static int
proc_geteuid (lua_State *L)
{
  lua_pushinteger (L, geteuid ());
  return 1;
}

static int
proc_getgid (lua_State *L)
{
  lua_pushinteger (L, getgid ());
  return 1;
}

static int
proc_exit (lua_State *L)
{
  int code = (int) luaL_optinteger (L, 1, 0);

  fflush (NULL);
  _exit (code);
}

static const luaL_Reg proc_functions[] = {
  { "execve", proc_execve },
  { "waitpid", proc_waitpid },
  { "kill", proc_kill },
  { "signum", proc_signum },
  { "pipe", proc_pipe },
  { "cloexec_from", proc_cloexec_from },
  { "forward_signals", proc_forward_signals },
  { "set_pdeathsig", proc_set_pdeathsig },
  { "dup2", proc_dup2 },
  { "chdir", proc_chdir },
  { "chroot", proc_chroot },
  { "fchdir", proc_fchdir },
  { "setrlimit", proc_setrlimit },
  { "getrlimit", proc_getrlimit },
  { "setsid", proc_setsid },
  { "getpid", proc_getpid },
  { "getuid", proc_getuid },
  { "geteuid", proc_geteuid },
  { "getgid", proc_getgid },
  { "_exit", proc_exit },
  { NULL, NULL }
};

void
nsb_open_proc (lua_State *L)
{
  luaL_setfuncs (L, proc_functions, 0);
}
