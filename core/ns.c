/* SPDX-License-Identifier: MIT */
/* Namespaces: clone a child that runs a Lua function, unshare, setns, id maps, hostname.

   Lua functions:
     core.clone(namespaces, fn [, opts]) -> pid, errfd  (the child runs fn, then _exit);
                                          opts = { cgroup = fd } starts it in that cgroup
     core.await_exec(errfd)            -> true, or raises the child's error message
     core.unshare(namespaces)          -> true
     core.setns(fd|path [, namespace]) -> true
     core.write_id_map(pid, "uid"|"gid", { {inside, outside, count}, ... }) -> true
     core.write_setgroups(pid, "allow"|"deny") -> true
     core.sethostname(name)            -> true */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/sched.h>

#include "core.h"

static const struct nsb_flag namespace_flags[] = {
  { "pid", CLONE_NEWPID },
  { "mount", CLONE_NEWNS },
  { "uts", CLONE_NEWUTS },
  { "ipc", CLONE_NEWIPC },
  { "net", CLONE_NEWNET },
  { "user", CLONE_NEWUSER },
  { "cgroup", CLONE_NEWCGROUP },
  { "time", CLONE_NEWTIME },
  { NULL, 0 }
};

/* Exit code of a child whose Lua function raised an error without a code. */
#define CHILD_FAILED 125

/* Fork semantics (no CLONE_VM, no new stack): the child continues on a copy of
   this stack, so it can run Lua on the copied state.  clone3 first, because
   only it accepts CLONE_NEWTIME and CLONE_INTO_CGROUP; clone for kernels before
   5.3.  A cgroup_fd >= 0 (a cgroup v2 directory) starts the child in that cgroup;
   without clone3 that fails with ENOSYS rather than starting it elsewhere. */
static pid_t
clone_child (unsigned long flags, int cgroup_fd)
{
  struct clone_args args;
  pid_t pid;

  memset (&args, 0, sizeof args);
  args.flags = flags;
  args.exit_signal = SIGCHLD;
  if (cgroup_fd >= 0)
    {
      args.flags |= CLONE_INTO_CGROUP;
      args.cgroup = (uint64_t) cgroup_fd;
    }
  pid = (pid_t) syscall (SYS_clone3, &args, sizeof args);
  if (pid >= 0 || errno != ENOSYS || cgroup_fd >= 0)
    return pid;
  if (flags & CLONE_NEWTIME)
    {
      errno = EINVAL;
      return -1;
    }
  return (pid_t) syscall (SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
}

static int
child_traceback (lua_State *L)
{
  if (lua_type (L, 1) == LUA_TSTRING && getenv ("NSBUILD_TRACE") != NULL)
    luaL_traceback (L, L, lua_tostring (L, 1), 1);
  return 1;
}

/* Run fn in the child and never return: _exit with fn's integer result (or 0),
   or report the error on errfd and _exit with its code.  An error may be a
   string or a table { message = ..., code = ... }.  _exit skips Lua's
   finalizers, which belong to the parent's copy of every handle. */
static void __attribute__ ((noreturn))
child_run (lua_State *L, int fn_index, int errfd)
{
  int code = 0;

  lua_pushcfunction (L, child_traceback);
  lua_pushvalue (L, fn_index);
  if (lua_pcall (L, 0, 1, -2) == LUA_OK)
    {
      if (lua_isinteger (L, -1))
        code = (int) lua_tointeger (L, -1);
      fflush (NULL);
      _exit (code);
    }

  code = CHILD_FAILED;
  if (lua_istable (L, -1))
    {
      if (lua_getfield (L, -1, "code") == LUA_TNUMBER)
        code = (int) lua_tointeger (L, -1);
      lua_pop (L, 1);
      lua_getfield (L, -1, "message");
    }
  {
    size_t len;
    const char *msg = lua_tolstring (L, -1, &len);

    if (msg == NULL)
      msg = "error object is not a string", len = strlen (msg);
    (void) nsb_write_all (errfd, msg, len);
  }
  fflush (NULL);
  _exit (code);
}

/* The optional options table of core.clone: { cgroup = fd handle or number }. */
static int
check_clone_cgroup (lua_State *L, int idx)
{
  static const char *const fields[] = { "cgroup", NULL };
  int fd = -1;

  if (lua_isnoneornil (L, idx))
    return -1;
  luaL_checktype (L, idx, LUA_TTABLE);
  nsb_check_fields (L, idx, fields);
  if (lua_getfield (L, idx, "cgroup") != LUA_TNIL)
    fd = nsb_check_fd_or_int (L, lua_gettop (L));
  lua_pop (L, 1);
  luaL_argcheck (L, fd >= -1, idx, "option 'cgroup' must be a descriptor");
  return fd;
}

static int
ns_clone (lua_State *L)
{
  unsigned long flags = nsb_check_flags (L, 1, namespace_flags);
  int cgroup_fd = check_clone_cgroup (L, 3);
  int fds[2];
  pid_t pid;

  luaL_checktype (L, 2, LUA_TFUNCTION);
  if (pipe2 (fds, O_CLOEXEC) < 0)
    return nsb_fail (L, errno, "clone: pipe");

  /* Buffered output would otherwise be written twice, once by each process. */
  fflush (NULL);
  pid = clone_child (flags, cgroup_fd);
  if (pid < 0)
    {
      int err = errno;

      close (fds[0]);
      close (fds[1]);
      return nsb_fail (L, err, cgroup_fd >= 0 ? "clone3 into a cgroup" : "clone");
    }
  if (pid == 0)
    {
      close (fds[0]);
      child_run (L, 2, fds[1]);
    }

  close (fds[1]);
  lua_pushinteger (L, pid);
  nsb_push_fd (L, fds[0]);
  return 2;
}

/* Read the child's error pipe to end of file.  Nothing written means the child
   reached exec (the close-on-exec write end closed) or exited cleanly. */
static int
ns_await_exec (lua_State *L)
{
  int fd = nsb_check_fd (L, 1);
  luaL_Buffer b;

  luaL_buffinit (L, &b);
  for (;;)
    {
      char buf[512];
      ssize_t n = read (fd, buf, sizeof buf);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return nsb_fail (L, errno, "read child status");
      if (n == 0)
        break;
      luaL_addlstring (&b, buf, (size_t) n);
    }
  luaL_pushresult (&b);
  if (lua_rawlen (L, -1) == 0)
    return nsb_ok (L);
  return lua_error (L);
}

static int
ns_unshare (lua_State *L)
{
  unsigned long flags = nsb_check_flags (L, 1, namespace_flags);

  if (unshare ((int) flags) < 0)
    return nsb_fail (L, errno, "unshare");
  return nsb_ok (L);
}

static int
ns_setns (lua_State *L)
{
  static const char *const names[] = { "any", "pid", "mount", "uts", "ipc", "net", "user",
                                       "cgroup", "time", NULL };
  static const int types[] = { 0, CLONE_NEWPID, CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC,
                               CLONE_NEWNET, CLONE_NEWUSER, CLONE_NEWCGROUP, CLONE_NEWTIME };
  int type = types[luaL_checkoption (L, 2, "any", names)];
  int fd, ret, err;

  if (lua_type (L, 1) != LUA_TSTRING)
    {
      if (setns (nsb_check_fd_or_int (L, 1), type) < 0)
        return nsb_fail (L, errno, "setns");
      return nsb_ok (L);
    }
  fd = open (lua_tostring (L, 1), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return nsb_fail_path (L, errno, "setns: open", lua_tostring (L, 1));
  ret = setns (fd, type);
  err = errno;
  close (fd);
  if (ret < 0)
    return nsb_fail_path (L, err, "setns", lua_tostring (L, 1));
  return nsb_ok (L);
}

static int
write_proc_file (lua_State *L, lua_Integer pid, const char *name, const char *data, size_t len)
{
  char path[64];
  int fd, err;
  ssize_t n;

  snprintf (path, sizeof path, "/proc/%lld/%s", (long long) pid, name);
  fd = open (path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return nsb_fail_path (L, errno, "open", path);
  /* An id map must be written with a single write(2). */
  n = write (fd, data, len);
  err = errno;
  close (fd);
  if (n < 0)
    return nsb_fail_path (L, err, "write", path);
  if ((size_t) n != len)
    return nsb_fail_path (L, EIO, "short write", path);
  return nsb_ok (L);
}

static int
ns_write_id_map (lua_State *L)
{
  static const char *const kinds[] = { "uid", "gid", NULL };
  lua_Integer pid = luaL_checkinteger (L, 1);
  int kind = luaL_checkoption (L, 2, NULL, kinds);
  lua_Integer i, n;
  luaL_Buffer b;

  luaL_checktype (L, 3, LUA_TTABLE);
  n = luaL_len (L, 3);
  luaL_argcheck (L, n > 0, 3, "the map needs at least one {inside, outside, count} line");
  luaL_buffinit (L, &b);
  for (i = 1; i <= n; i++)
    {
      lua_Integer v[3];
      int j;

      if (lua_geti (L, 3, i) != LUA_TTABLE)
        luaL_argerror (L, 3, "each line must be a table {inside, outside, count}");
      for (j = 0; j < 3; j++)
        {
          int isnum;

          lua_geti (L, -1 - j, j + 1);
          v[j] = lua_tointegerx (L, -1, &isnum);
          if (!isnum || v[j] < 0)
            luaL_argerror (L, 3, "each line must be three non-negative integers");
        }
      lua_pop (L, 4);
      lua_pushfstring (L, "%I %I %I\n", v[0], v[1], v[2]);
      luaL_addvalue (&b);
    }
  luaL_pushresult (&b);
  return write_proc_file (L, pid, kind == 0 ? "uid_map" : "gid_map", lua_tostring (L, -1),
                          lua_rawlen (L, -1));
}

static int
ns_write_setgroups (lua_State *L)
{
  static const char *const values[] = { "allow", "deny", NULL };
  lua_Integer pid = luaL_checkinteger (L, 1);
  const char *v = values[luaL_checkoption (L, 2, NULL, values)];

  return write_proc_file (L, pid, "setgroups", v, strlen (v));
}

static int
ns_sethostname (lua_State *L)
{
  size_t len;
  const char *name = luaL_checklstring (L, 1, &len);

  if (sethostname (name, len) < 0)
    return nsb_fail_path (L, errno, "sethostname", name);
  return nsb_ok (L);
}

static const luaL_Reg ns_functions[] = {
  { "clone", ns_clone },
  { "await_exec", ns_await_exec },
  { "unshare", ns_unshare },
  { "setns", ns_setns },
  { "write_id_map", ns_write_id_map },
  { "write_setgroups", ns_write_setgroups },
  { "sethostname", ns_sethostname },
  { NULL, NULL }
};

void
nsb_open_ns (lua_State *L)
{
  luaL_setfuncs (L, ns_functions, 0);
}
