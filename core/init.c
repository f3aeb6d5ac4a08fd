/* SPDX-License-Identifier: MIT */
/* The tiny init: the first process of a container forks the command and stays
   as its parent, reaping every zombie and forwarding signals.

   Lua function:
     core.init_exec(argv, env [, opts]) -> only returns on failure before the fork:
                                           nil, message, errno
       opts.file   the program to run (default argv[1]), looked up in env's PATH
                   when it has no slash
       opts.errfd  an fd handle or number that receives the message when exec
                   fails after the fork (default: stderr, prefixed "nsbuild-init: ")

   After the fork no Lua runs in either process.  The command starts with
   default signal dispositions and an empty signal mask.  When the init owns
   the terminal on stdin, the command gets its own process group in the
   terminal's foreground.  The init closes every descriptor above 2 once the
   command has exec'd, so a parent waiting for end of file on a close-on-exec
   pipe learns that exec happened.  It then forwards to the command every
   signal it receives, except SIGCHLD and the signals the kernel sent.
   It exits as soon as the command ends, with the command's exit code, or
   128+N when signal N killed it.  A failed exec gives 127 for ENOENT and 126
   otherwise.  Re-raising the signal is no option: PID 1 of a pid namespace
   ignores a signal it has no handler for, except SIGKILL and SIGSTOP from an
   ancestor namespace.  Processes left in the namespace die with the init. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "core.h"

#define EXIT_NOT_FOUND 127
#define EXIT_CANNOT_RUN 126
#define EXIT_INIT_FAILED 125

static const char *const init_fields[] = { "file", "errfd", NULL };


/* {====================================================== before the fork */

/* Return 0 when path is an executable regular file, else -1 with errno set. */
static int
check_executable (const char *path)
{
  struct stat st;

  if (stat (path, &st) < 0)
    return -1;
  if (!S_ISREG (st.st_mode))
    {
      errno = EACCES;
      return -1;
    }
  return access (path, X_OK);
}

/* Find file in PATH the way execvp does: a directory where the file exists but
   cannot be run is remembered (EACCES) and the search goes on.  Writes the
   path into out; returns 0, or -1 with errno ENOENT or EACCES and out set to
   the last file found but not executable. */
static int
search_path (const char *file, const char *path, char out[PATH_MAX])
{
  const char *p = path;
  int seen_eacces = 0;

  for (;;)
    {
      const char *end = strchrnul (p, ':');
      size_t dirlen = (size_t) (end - p);
      char full[PATH_MAX];
      int n;

      if (dirlen == 0)
        n = snprintf (full, sizeof full, "%s", file);
      else
        n = snprintf (full, sizeof full, "%.*s/%s", (int) dirlen, p, file);
      if (n > 0 && (size_t) n < sizeof full)
        {
          if (check_executable (full) == 0)
            {
              memcpy (out, full, (size_t) n + 1);
              return 0;
            }
          if (errno == EACCES)
            {
              seen_eacces = 1;
              memcpy (out, full, (size_t) n + 1);
            }
        }
      if (*end == '\0')
        break;
      p = end + 1;
    }
  errno = seen_eacces ? EACCES : ENOENT;
  return -1;
}

/* Resolve file into out.  Returns 0, or the number of failure values pushed. */
static int
resolve_command (lua_State *L, const char *file, char **env, char out[PATH_MAX])
{
  if (strchr (file, '/') != NULL)
    {
      if (strlen (file) >= PATH_MAX)
        return nsb_fail_path (L, ENAMETOOLONG, "exec", file);
      if (check_executable (file) < 0)
        return nsb_fail_path (L, errno, "exec", file);
      strcpy (out, file);
      return 0;
    }
  if (search_path (file, nsb_env_path (env), out) == 0)
    return 0;
  if (errno == EACCES)
    return nsb_fail_path (L, EACCES, "exec", out);
  luaL_pushfail (L);
  lua_pushfstring (L, "exec '%s': not found in PATH (%s)", file, nsb_env_path (env));
  lua_pushinteger (L, ENOENT);
  return 3;
}

/* }====================================================== */


/* {====================================================== after the fork: pure C */

/* The command's side: runs in the child of the fork and never returns. */
static void __attribute__ ((noreturn))
command_exec (const char *path, char **argv, char **env, int status_fd, int take_terminal)
{
  struct sigaction dfl;
  sigset_t empty;
  int sig, err;

  /* A process group of its own in the terminal's foreground, so that ^C
     reaches the command alone.  SIGTTOU is still blocked here, so tcsetpgrp
     works from the background. */
  if (take_terminal)
    {
      setpgid (0, 0);
      tcsetpgrp (STDIN_FILENO, getpgrp ());
    }

  memset (&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset (&dfl.sa_mask);
  for (sig = 1; sig < NSIG; sig++)
    sigaction (sig, &dfl, NULL);  /* fails harmlessly for KILL, STOP and libc's signals */
  sigemptyset (&empty);
  sigprocmask (SIG_SETMASK, &empty, NULL);

  execve (path, argv, env);
  err = errno;
  (void) nsb_write_all (status_fd, (const char *) &err, sizeof err);
  _exit (EXIT_NOT_FOUND);
}

/* Write "exec 'path': strerror" to errfd, or with a prefix to stderr. */
static void
report_exec_failure (int errfd, const char *path, int err)
{
  char msg[PATH_MAX + 128];
  int n;

  n = snprintf (msg, sizeof msg, "%sexec '%s': %s%s", errfd < 0 ? "nsbuild-init: " : "", path,
                strerror (err), errfd < 0 ? "\n" : "");
  if (n < 0)
    return;
  if ((size_t) n >= sizeof msg)
    n = (int) sizeof msg - 1;
  (void) nsb_write_all (errfd < 0 ? STDERR_FILENO : errfd, msg, (size_t) n);
}

/* Wait for the command's exec: returns 0 once it exec'd (end of file on the
   close-on-exec pipe), or the errno of its failed exec. */
static int
await_command_exec (int status_fd)
{
  int err = 0;
  ssize_t n;

  do
    n = read (status_fd, &err, sizeof err);
  while (n < 0 && errno == EINTR);
  close (status_fd);
  return n == (ssize_t) sizeof err ? err : 0;
}

static int
exit_code (int status)
{
  if (WIFSIGNALED (status))
    return 128 + WTERMSIG (status);
  return WEXITSTATUS (status);
}

/* Reap every child that has ended.  Returns 1 and sets *status when the
   command was among them. */
static int
reap_children (pid_t command, int *status)
{
  int found = 0, st;
  pid_t pid;

  while ((pid = waitpid (-1, &st, WNOHANG)) > 0)
    if (pid == command)
      {
        *status = st;
        found = 1;
      }
  return found;
}

/* The init's side: forward signals and reap until the command ends. */
static void __attribute__ ((noreturn))
init_loop (pid_t command, const sigset_t *all)
{
  for (;;)
    {
      siginfo_t info;
      int sig = sigwaitinfo (all, &info);
      int status;

      if (sig < 0)
        {
          if (errno == EINTR)
            continue;
          dprintf (STDERR_FILENO, "nsbuild-init: sigwaitinfo: %s\n", strerror (errno));
          kill (command, SIGKILL);
          _exit (EXIT_INIT_FAILED);
        }
      /* The kernel sends the terminal's signals (^C, ^Z, window size) to the
         whole foreground process group, which contains the command too, and
         its other signals to the init concern the init alone. */
      if (sig != SIGCHLD && info.si_code == SI_KERNEL)
        continue;
      if (sig != SIGCHLD)
        {
          kill (command, sig);
          continue;
        }
      if (reap_children (command, &status))
        _exit (exit_code (status));
    }
}

/* The init's side from the fork on.  Never returns. */
static void __attribute__ ((noreturn))
init_run (pid_t command, int status_fd, int errfd, const char *path, const sigset_t *all)
{
  int err, status;

  prctl (PR_SET_NAME, "nsbuild-init", 0, 0, 0);

  /* The init runs the image of the program that called init_exec (nsbuild),
     never exec'd in the container.  Not dumpable, its /proc/PID/exe and
     /proc/PID/mem need CAP_SYS_PTRACE, so a container's process cannot open
     the host's nsbuild executable through it.  The command's exec makes the
     command dumpable again. */
  prctl (PR_SET_DUMPABLE, 0, 0, 0, 0);

  /* Outside a pid namespace, orphans of the command come to the init too. */
  prctl (PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

  err = await_command_exec (status_fd);
  if (err != 0)
    {
      report_exec_failure (errfd, path, err);
      waitpid (command, &status, 0);
      _exit (err == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_RUN);
    }

  /* Only now, so that a parent reading a close-on-exec error pipe to end of
     file learns that the command runs.  Kernels before 5.9 lack close_range,
     and the descriptors then stay open in the init. */
  syscall (SYS_close_range, 3U, ~0U, 0U);

  init_loop (command, all);
}

/* }====================================================== */


static int
init_exec (lua_State *L)
{
  char **argv, **env;
  const char *file;
  char path[PATH_MAX];
  struct sigaction dfl, old_chld;
  sigset_t all, old_mask;
  int fds[2], errfd = -1, n, err, take_terminal;
  pid_t pid;

  /* The string lists go on the stack above the options. */
  lua_settop (L, 3);
  argv = nsb_check_string_list (L, 1, "argv");
  env = nsb_check_string_list (L, 2, "env");
  luaL_argcheck (L, argv[0] != NULL, 1, "argv must not be empty");
  if (!lua_isnoneornil (L, 3))
    {
      luaL_checktype (L, 3, LUA_TTABLE);
      nsb_check_fields (L, 3, init_fields);
      if (lua_getfield (L, 3, "errfd") != LUA_TNIL)
        errfd = nsb_check_fd_or_int (L, -1);
      lua_pop (L, 1);
    }
  file = nsb_opt_string_field (L, 3, "file", argv[0]);
  if (*file == '\0')
    luaL_error (L, "init_exec: empty command name");

  /* Failures found before the fork still reach the caller as nil, message, errno. */
  if ((n = resolve_command (L, file, env, path)) != 0)
    return n;
  if (pipe2 (fds, O_CLOEXEC) < 0)
    return nsb_fail (L, errno, "init_exec: pipe");

  /* Signals stay blocked from here on in the init, which takes them with
     sigwaitinfo.  Blocking them before the fork loses none that arrive early.
     SIGCHLD must not be ignored, or the kernel would reap the command itself
     and its exit status would be lost. */
  sigfillset (&all);
  sigprocmask (SIG_SETMASK, &all, &old_mask);
  memset (&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset (&dfl.sa_mask);
  sigaction (SIGCHLD, &dfl, &old_chld);

  /* The command takes the terminal only from an init that owns it: a session
     leader (the container made its own session, with a pty as controlling
     terminal) in the foreground.  In a session shared with nsbuild the command
     stays in the init's process group, because a command in a background
     group would stop on its first read from the terminal (SIGTTIN). */
  take_terminal = getsid (0) == getpid () && tcgetpgrp (STDIN_FILENO) == getpgrp ();

  /* Buffered output would otherwise be written twice, once by each process. */
  fflush (NULL);
  pid = fork ();
  if (pid < 0)
    {
      err = errno;
      sigaction (SIGCHLD, &old_chld, NULL);
      sigprocmask (SIG_SETMASK, &old_mask, NULL);
      close (fds[0]);
      close (fds[1]);
      return nsb_fail (L, err, "init_exec: fork");
    }
  if (pid == 0)
    {
      close (fds[0]);
      command_exec (path, argv, env, fds[1], take_terminal);
    }
  close (fds[1]);
  init_run (pid, fds[0], errfd, path, &all);
}

static const luaL_Reg init_functions[] = {
  { "init_exec", init_exec },
  { NULL, NULL }
};

void
nsb_open_init (lua_State *L)
{
  luaL_setfuncs (L, init_functions, 0);
}
