/* SPDX-License-Identifier: MIT */
/* Terminals for `nsbuild run -t`: a pty from the container's devpts, passing
   its master to the parent, raw mode, window size and the relay loop.

   Lua functions:
     core.pty_open(root [, uid, gid]) -> master, slave (fd handles)
       opens dev/pts/ptmx resolved inside root (openat2 RESOLVE_IN_ROOT), unlocks
       it and opens its slave through the master (TIOCGPTPEER), so no path names
       the slave; uid and gid, when given, become the slave's owner
     core.login_tty(fd)             -> true: new session, fd as its controlling
                                       terminal and as descriptors 0, 1 and 2
     core.socketpair()              -> fd, fd: a connected unix stream pair (close-on-exec)
     core.send_fd(sock, fd)         -> true: send a copy of fd (SCM_RIGHTS)
     core.recv_fd(sock)             -> fd handle; nil, message, ENOMSG when the
                                       peer closed the socket without sending one
     core.isatty(fd)                -> boolean
     core.tty_raw(fd)               -> saved: put the terminal in raw mode and
                                       return its previous settings (a string)
     core.tty_restore(fd, saved)    -> true
     core.tty_get_size(fd)          -> rows, cols
     core.tty_set_size(fd, rows, cols) -> true
     core.pty_relay(master, opts)   -> true
       copies opts.input (an fd, or nil for none) to master and master to
       opts.output (default 1) until the master reads end of file or EIO (every
       holder of the slave closed it), or until the process opts.pid has ended.
       When opts.size_from is a terminal, each SIGWINCH copies its window size to
       master while the relay runs. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "core.h"

/* Linux 4.13; older headers lack it. */
#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO ('T', 0x41)
#endif

#define RELAY_BUFFER 8192

static const char *const relay_fields[] = { "input", "output", "pid", "size_from", NULL };


/* {====================================================== the pty */

static int
open_ptmx_in_root (int rootfd)
{
  struct open_how how;

  memset (&how, 0, sizeof how);
  how.flags = O_RDWR | O_NOCTTY | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  return (int) syscall (SYS_openat2, rootfd, "dev/pts/ptmx", &how, sizeof how);
}

static int
tty_pty_open (lua_State *L)
{
  const char *root = luaL_checkstring (L, 1);
  lua_Integer uid = luaL_optinteger (L, 2, -1), gid = luaL_optinteger (L, 3, -1);
  int rootfd, master, slave, unlock = 0, err;

  rootfd = open (root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0)
    return nsb_fail_path (L, errno, "open root", root);
  master = open_ptmx_in_root (rootfd);
  err = errno;
  close (rootfd);
  if (master < 0)
    return nsb_fail_path (L, err, "open in root", "dev/pts/ptmx");

  if (ioctl (master, TIOCSPTLCK, &unlock) < 0)
    {
      err = errno;
      close (master);
      return nsb_fail (L, err, "unlock the pty (TIOCSPTLCK)");
    }
  slave = ioctl (master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0)
    {
      err = errno;
      close (master);
      return nsb_fail (L, err, "open the pty's slave (TIOCGPTPEER)");
    }
  if ((uid >= 0 || gid >= 0) && fchown (slave, (uid_t) uid, (gid_t) gid) < 0)
    {
      err = errno;
      close (master);
      close (slave);
      return nsb_fail (L, err, "chown the pty's slave");
    }
  nsb_push_fd (L, master);
  nsb_push_fd (L, slave);
  return 2;
}

static int
tty_login_tty (lua_State *L)
{
  int fd = nsb_check_fd_or_int (L, 1), i;

  if (setsid () < 0)
    return nsb_fail (L, errno, "setsid");
  if (ioctl (fd, TIOCSCTTY, 0) < 0)
    return nsb_fail (L, errno, "make the pty the controlling terminal (TIOCSCTTY)");
  for (i = 0; i <= 2; i++)
    if (dup2 (fd, i) < 0)
      return nsb_fail (L, errno, lua_pushfstring (L, "dup2 %d to %d", fd, i));
  return nsb_ok (L);
}

/* }====================================================== */


/* {====================================================== passing descriptors */

static int
tty_socketpair (lua_State *L)
{
  int fds[2];

  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
    return nsb_fail (L, errno, "socketpair");
  nsb_push_fd (L, fds[0]);
  nsb_push_fd (L, fds[1]);
  return 2;
}

static int
tty_send_fd (lua_State *L)
{
  int sock = nsb_check_fd_or_int (L, 1), fd = nsb_check_fd_or_int (L, 2);
  union { char buf[CMSG_SPACE (sizeof (int))]; struct cmsghdr align; } control;
  char byte = 0;
  struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
  struct msghdr msg;
  struct cmsghdr *cmsg;
  ssize_t n;

  memset (&msg, 0, sizeof msg);
  memset (&control, 0, sizeof control);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  cmsg = CMSG_FIRSTHDR (&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN (sizeof (int));
  memcpy (CMSG_DATA (cmsg), &fd, sizeof (int));
  do
    n = sendmsg (sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return nsb_fail (L, errno, "sendmsg SCM_RIGHTS");
  return nsb_ok (L);
}

static int
tty_recv_fd (lua_State *L)
{
  int sock = nsb_check_fd_or_int (L, 1), fd;
  union { char buf[CMSG_SPACE (sizeof (int))]; struct cmsghdr align; } control;
  char byte;
  struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
  struct msghdr msg;
  struct cmsghdr *cmsg;
  ssize_t n;

  memset (&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  do
    n = recvmsg (sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return nsb_fail (L, errno, "recvmsg SCM_RIGHTS");
  cmsg = CMSG_FIRSTHDR (&msg);
  if (n == 0 || cmsg == NULL || cmsg->cmsg_type != SCM_RIGHTS
      || cmsg->cmsg_len != CMSG_LEN (sizeof (int)))
    {
      luaL_pushfail (L);
      lua_pushliteral (L, "recvmsg SCM_RIGHTS: the peer sent no descriptor");
      lua_pushinteger (L, ENOMSG);
      return 3;
    }
  memcpy (&fd, CMSG_DATA (cmsg), sizeof (int));
  nsb_push_fd (L, fd);
  return 1;
}

/* }====================================================== */


/* {====================================================== terminal settings */

static int
tty_isatty (lua_State *L)
{
  lua_pushboolean (L, isatty (nsb_check_fd_or_int (L, 1)));
  return 1;
}

static int
tty_raw (lua_State *L)
{
  int fd = nsb_check_fd_or_int (L, 1);
  struct termios saved, raw;

  if (tcgetattr (fd, &saved) < 0)
    return nsb_fail (L, errno, "tcgetattr");
  raw = saved;
  cfmakeraw (&raw);
  if (tcsetattr (fd, TCSADRAIN, &raw) < 0)
    return nsb_fail (L, errno, "tcsetattr (raw mode)");
  lua_pushlstring (L, (const char *) &saved, sizeof saved);
  return 1;
}

static int
tty_restore (lua_State *L)
{
  int fd = nsb_check_fd_or_int (L, 1);
  size_t len;
  const char *saved = luaL_checklstring (L, 2, &len);
  struct termios t;

  luaL_argcheck (L, len == sizeof t, 2, "not a value returned by tty_raw");
  memcpy (&t, saved, sizeof t);
  if (tcsetattr (fd, TCSADRAIN, &t) < 0)
    return nsb_fail (L, errno, "tcsetattr (restore)");
  return nsb_ok (L);
}

static int
tty_get_size (lua_State *L)
{
  struct winsize ws;

  if (ioctl (nsb_check_fd_or_int (L, 1), TIOCGWINSZ, &ws) < 0)
    return nsb_fail (L, errno, "TIOCGWINSZ");
  lua_pushinteger (L, ws.ws_row);
  lua_pushinteger (L, ws.ws_col);
  return 2;
}

static int
tty_set_size (lua_State *L)
{
  int fd = nsb_check_fd_or_int (L, 1);
  lua_Integer rows = luaL_checkinteger (L, 2), cols = luaL_checkinteger (L, 3);
  struct winsize ws;

  luaL_argcheck (L, rows >= 0 && rows <= 65535, 2, "rows must be from 0 to 65535");
  luaL_argcheck (L, cols >= 0 && cols <= 65535, 3, "columns must be from 0 to 65535");
  memset (&ws, 0, sizeof ws);
  ws.ws_row = (unsigned short) rows;
  ws.ws_col = (unsigned short) cols;
  if (ioctl (fd, TIOCSWINSZ, &ws) < 0)
    return nsb_fail (L, errno, "TIOCSWINSZ");
  return nsb_ok (L);
}

/* }====================================================== */


/* {====================================================== the relay */

struct relay {
  int master, input, output, size_from, pidfd, sigfd;
};

static void
copy_size (const struct relay *r)
{
  struct winsize ws;

  if (ioctl (r->size_from, TIOCGWINSZ, &ws) == 0)
    ioctl (r->master, TIOCSWINSZ, &ws);
}

/* Copy what master has now.  Returns 1 when the master has ended: end of
   file, or EIO once no process holds the slave open. */
static int
drain_master (const struct relay *r, int nonblocking)
{
  char buf[RELAY_BUFFER];

  for (;;)
    {
      ssize_t n;

      if (nonblocking)
        {
          struct pollfd p = { .fd = r->master, .events = POLLIN };

          if (poll (&p, 1, 0) <= 0 || !(p.revents & POLLIN))
            return 0;
        }
      n = read (r->master, buf, sizeof buf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return 1;
      (void) nsb_write_all (r->output, buf, (size_t) n);
      if (!nonblocking)
        return 0;
    }
}

/* Copy what input has now to master.  On end of input, write an end-of-file
   character once, so a shell reading a piped script ends too; returns 1
   then, and the caller stops polling input. */
static int
copy_input (const struct relay *r)
{
  char buf[RELAY_BUFFER];
  ssize_t n;

  do
    n = read (r->input, buf, sizeof buf);
  while (n < 0 && errno == EINTR);
  if (n <= 0)
    {
      /* ^D, the default VEOF.  tcgetattr on the master would return the
         master's own settings, not the ones the container gave the slave. */
      char eof = 4;

      (void) nsb_write_all (r->master, &eof, 1);
      return 1;
    }
  /* NOTE: a blocking write: a command that neither reads its terminal nor
     lets its output drain stalls the relay once the pty's buffer is full. */
  (void) nsb_write_all (r->master, buf, (size_t) n);
  return 0;
}

static void
relay_loop (struct relay *r)
{
  for (;;)
    {
      struct pollfd p[4];
      int n = 0, i_master, i_input = -1, i_pid = -1, i_sig = -1;

      p[n] = (struct pollfd) { .fd = r->master, .events = POLLIN };
      i_master = n++;
      if (r->input >= 0)
        {
          p[n] = (struct pollfd) { .fd = r->input, .events = POLLIN };
          i_input = n++;
        }
      if (r->pidfd >= 0)
        {
          p[n] = (struct pollfd) { .fd = r->pidfd, .events = POLLIN };
          i_pid = n++;
        }
      if (r->sigfd >= 0)
        {
          p[n] = (struct pollfd) { .fd = r->sigfd, .events = POLLIN };
          i_sig = n++;
        }
      if (poll (p, (nfds_t) n, -1) < 0)
        {
          if (errno == EINTR)
            continue;
          return;
        }

      if (p[i_master].revents & (POLLIN | POLLHUP | POLLERR))
        if (drain_master (r, 0))
          return;
      if (i_input >= 0 && (p[i_input].revents & (POLLIN | POLLHUP | POLLERR)))
        if (copy_input (r))
          r->input = -1;
      if (i_sig >= 0 && (p[i_sig].revents & POLLIN))
        {
          struct signalfd_siginfo info;

          if (read (r->sigfd, &info, sizeof info) > 0)
            copy_size (r);
        }
      if (i_pid >= 0 && (p[i_pid].revents & POLLIN))
        {
          /* The process ended: the output it left in the pty still counts. */
          drain_master (r, 1);
          return;
        }
    }
}

static int
check_opt_fd (lua_State *L, int idx, const char *field, int def)
{
  int fd = def;

  if (lua_getfield (L, idx, field) != LUA_TNIL)
    fd = nsb_check_fd_or_int (L, lua_gettop (L));
  lua_pop (L, 1);
  return fd;
}

static int
tty_pty_relay (lua_State *L)
{
  struct relay r;
  sigset_t winch, old;
  lua_Integer pid;

  r.master = nsb_check_fd_or_int (L, 1);
  luaL_checktype (L, 2, LUA_TTABLE);
  nsb_check_fields (L, 2, relay_fields);
  r.input = check_opt_fd (L, 2, "input", -1);
  r.output = check_opt_fd (L, 2, "output", STDOUT_FILENO);
  r.size_from = check_opt_fd (L, 2, "size_from", -1);
  pid = nsb_opt_int_field (L, 2, "pid", 0);
  r.pidfd = pid > 0 ? (int) syscall (SYS_pidfd_open, (pid_t) pid, 0) : -1;
  r.sigfd = -1;

  /* Blocked, SIGWINCH waits in the signalfd instead of reaching a handler. */
  sigemptyset (&winch);
  sigaddset (&winch, SIGWINCH);
  sigprocmask (SIG_BLOCK, &winch, &old);
  if (r.size_from >= 0 && isatty (r.size_from))
    {
      r.sigfd = signalfd (-1, &winch, SFD_CLOEXEC);
      copy_size (&r);
    }

  relay_loop (&r);

  if (r.sigfd >= 0)
    close (r.sigfd);
  if (r.pidfd >= 0)
    close (r.pidfd);
  sigprocmask (SIG_SETMASK, &old, NULL);
  return nsb_ok (L);
}

/* }====================================================== */


static const luaL_Reg tty_functions[] = {
  { "pty_open", tty_pty_open },
  { "login_tty", tty_login_tty },
  { "socketpair", tty_socketpair },
  { "send_fd", tty_send_fd },
  { "recv_fd", tty_recv_fd },
  { "isatty", tty_isatty },
  { "tty_raw", tty_raw },
  { "tty_restore", tty_restore },
  { "tty_get_size", tty_get_size },
  { "tty_set_size", tty_set_size },
  { "pty_relay", tty_pty_relay },
  { NULL, NULL }
};

void
nsb_open_tty (lua_State *L)
{
  luaL_setfuncs (L, tty_functions, 0);
}
