/* SPDX-License-Identifier: MIT */
/* cgroupfs helpers: create and remove cgroup directories, write and read control
   files with errors that name the file and the value, and open a cgroup for
   clone3's CLONE_INTO_CGROUP.  Which files to write, and when, is decided in Lua.

   Lua functions:
     core.cgroup_mkdir(path [, mode])          -> true
     core.cgroup_rmdir(path [, timeout])       -> true  (retries EBUSY for timeout seconds)
     core.cgroup_write(path, value)            -> true
     core.cgroup_read(path)                    -> the file's content
     core.cgroup_wait(path, line, timeout)     -> true once a line of the file equals line
     core.cgroup_open(path)                    -> fd handle of the cgroup directory

   A failed system call returns nil, "op 'path': strerror", errno; cgroup_write's
   message is "write 'path' = 'value': strerror". */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

/* Polling step of cgroup_rmdir and cgroup_wait: the kernel gives no event for
   "this cgroup may be removed now", and v1 freezer.state has none either. */
#define POLL_STEP_NS 10000000L

static double
check_timeout (lua_State *L, int idx)
{
  lua_Number t = luaL_optnumber (L, idx, 0);

  luaL_argcheck (L, t >= 0 && t <= 3600, idx, "timeout must be between 0 and 3600 seconds");
  return (double) t;
}

static double
monotonic_seconds (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void
poll_pause (void)
{
  struct timespec step = { 0, POLL_STEP_NS };

  nanosleep (&step, NULL);
}

/* Read all of fd into the buffer b; return 0, or -1 with errno set. */
static int
read_into (int fd, luaL_Buffer *b)
{
  for (;;)
    {
      char *p = luaL_prepbuffer (b);
      ssize_t got = read (fd, p, LUAL_BUFFERSIZE);

      if (got < 0 && errno == EINTR)
        continue;
      if (got < 0)
        return -1;
      if (got == 0)
        return 0;
      luaL_addsize (b, (size_t) got);
    }
}

/* Push the content of path; return 0, or -1 with errno set and nothing pushed. */
static int
push_file (lua_State *L, const char *path)
{
  luaL_Buffer b;
  int fd, err;

  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  luaL_buffinit (L, &b);
  if (read_into (fd, &b) < 0)
    {
      err = errno;
      close (fd);
      luaL_pushresult (&b);
      lua_pop (L, 1);
      errno = err;
      return -1;
    }
  close (fd);
  luaL_pushresult (&b);
  return 0;
}

/* Return 1 when one line of text (without its newline) equals line. */
static int
has_line (const char *text, const char *line)
{
  size_t len = strlen (line);
  const char *p = text;

  while (*p != '\0')
    {
      const char *end = strchrnul (p, '\n');

      if ((size_t) (end - p) == len && strncmp (p, line, len) == 0)
        return 1;
      p = *end == '\0' ? end : end + 1;
    }
  return 0;
}


/* {====================================================== Lua functions */

static int
cgroup_mkdir (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  lua_Integer mode = luaL_optinteger (L, 2, 0755);

  luaL_argcheck (L, mode >= 0 && mode <= 07777, 2, "mode must be between 0 and 07777");
  if (mkdir (path, (mode_t) mode) < 0)
    return nsb_fail_path (L, errno, "mkdir", path);
  return nsb_ok (L);
}

/* A cgroup whose last task was just killed stays busy until that task has
   exited, so EBUSY is retried until the timeout. */
static int
cgroup_rmdir (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  double deadline = monotonic_seconds () + check_timeout (L, 2);

  while (rmdir (path) < 0)
    {
      int err = errno;

      if (err != EBUSY || monotonic_seconds () >= deadline)
        return nsb_fail_path (L, err, "rmdir", path);
      poll_pause ();
    }
  return nsb_ok (L);
}

/* One write(2) per value: the kernel parses each write of a control file on its own. */
static int
cgroup_write (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  size_t len;
  const char *value = luaL_checklstring (L, 2, &len);
  ssize_t n;
  int fd, err;

  fd = open (path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    err = errno;
  else
    {
      do
        n = write (fd, value, len);
      while (n < 0 && errno == EINTR);
      err = n < 0 ? errno : (size_t) n != len ? EIO : 0;
      close (fd);
    }
  if (err == 0)
    return nsb_ok (L);
  luaL_pushfail (L);
  lua_pushfstring (L, "write '%s' = '%s': %s", path, value, strerror (err));
  lua_pushinteger (L, err);
  return 3;
}

static int
cgroup_read (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);

  if (push_file (L, path) < 0)
    return nsb_fail_path (L, errno, "read", path);
  return 1;
}

/* Wait until a line of the file equals line, e.g. "FROZEN" in a v1 freezer.state
   or "populated 0" in a v2 cgroup.events. */
static int
cgroup_wait (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  const char *line = luaL_checkstring (L, 2);
  double deadline = monotonic_seconds () + check_timeout (L, 3);

  for (;;)
    {
      if (push_file (L, path) < 0)
        return nsb_fail_path (L, errno, "read", path);
      if (has_line (lua_tostring (L, -1), line))
        return nsb_ok (L);
      if (monotonic_seconds () >= deadline)
        break;
      lua_pop (L, 1);
      poll_pause ();
    }
  luaL_pushfail (L);
  lua_pushfstring (L, "timed out waiting for '%s' to read '%s' (it reads '%s')", path, line,
                   lua_tostring (L, -2));
  lua_pushinteger (L, ETIMEDOUT);
  return 3;
}

/* O_PATH is enough: clone3 only resolves the descriptor to its cgroup. */
static int
cgroup_open (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  int fd = open (path, O_PATH | O_DIRECTORY | O_CLOEXEC);

  if (fd < 0)
    return nsb_fail_path (L, errno, "open", path);
  nsb_push_fd (L, fd);
  return 1;
}

static const luaL_Reg cgroup_functions[] = {
  { "cgroup_mkdir", cgroup_mkdir },
  { "cgroup_rmdir", cgroup_rmdir },
  { "cgroup_write", cgroup_write },
  { "cgroup_read", cgroup_read },
  { "cgroup_wait", cgroup_wait },
  { "cgroup_open", cgroup_open },
  { NULL, NULL }
};

/* }====================================================== */

void
nsb_open_cgroup (lua_State *L)
{
  luaL_setfuncs (L, cgroup_functions, 0);
}
