/* SPDX-License-Identifier: MIT */
/* File system calls of nsbuild.core: paths, stat, whole files, locks and xattrs.  The
   directory walks rmtree, du and copy_tree are in walk.c.

   Lua functions:
     core.mkdir(path [, mode])              core.mkdirs(path [, mode])
     core.rmdir(path)                       core.unlink(path)
     core.rename(old, new [, flags])        core.link(old, new)
     core.symlink(target, path)             core.readlink(path)
     core.chmod(path, mode)                 core.chown(path, uid, gid [, nofollow])
     core.utimes(path, atime_sec, atime_nsec, mtime_sec, mtime_nsec [, nofollow])
     core.realpath(path)                    core.mkdtemp(prefix)
     core.stat(path)   core.lstat(path)     core.fstat(fd)
     core.listdir(path)
     core.read_file(path)                   core.write_file(path, data [, mode])
     core.open(path, flags [, mode])        core.flock(fd, "ex"|"sh"|"un" [, nonblock])
     core.getxattr(path, name [, nofollow]) core.setxattr(path, name, value [, nofollow])
     core.listxattr(path [, nofollow])

   Each returns its result, or true when it has none.  A failed system call returns
   nil, "op 'path': strerror", errno.  Modes are subject to the umask where the system
   call applies it (mkdir, mkdirs, write_file, open). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <linux/openat2.h>

#include "core.h"
#include "fs.h"

#define FS_DIR_META "nsbuild.fs.dir"


/* {====================================================== argument and result helpers */

static mode_t
check_mode (lua_State *L, int idx)
{
  lua_Integer mode = luaL_checkinteger (L, idx);

  luaL_argcheck (L, mode >= 0 && mode <= 07777, idx, "mode must be between 0 and 07777");
  return (mode_t) mode;
}

static mode_t
opt_mode (lua_State *L, int idx, mode_t def)
{
  return lua_isnoneornil (L, idx) ? def : check_mode (L, idx);
}

static int
opt_bool (lua_State *L, int idx)
{
  if (lua_isnoneornil (L, idx))
    return 0;
  luaL_checktype (L, idx, LUA_TBOOLEAN);
  return lua_toboolean (L, idx);
}

/* A uid or gid.  -1 leaves it unchanged, as chown(2) does. */
static uid_t
check_id (lua_State *L, int idx)
{
  lua_Integer id = luaL_checkinteger (L, idx);

  luaL_argcheck (L, id >= -1 && id < 0xffffffff, idx, "id must be between -1 and 4294967294");
  return (uid_t) id;
}

static long
check_nsec (lua_State *L, int idx)
{
  lua_Integer nsec = luaL_checkinteger (L, idx);

  luaL_argcheck (L, nsec >= 0 && nsec <= 999999999, idx,
                 "nanoseconds must be between 0 and 999999999");
  return (long) nsec;
}

/* The failure triple for an operation on two paths: "op 'from' to 'to': strerror". */
static int
fail_paths (lua_State *L, int err, const char *op, const char *from, const char *to)
{
  lua_pushfstring (L, "%s '%s' to '%s'", op, from, to);
  return nsb_fail (L, err, lua_tostring (L, -1));
}

static int
fail_xattr (lua_State *L, int err, const char *op, const char *name, const char *path)
{
  lua_pushfstring (L, "%s '%s' of '%s'", op, name, path);
  return nsb_fail (L, err, lua_tostring (L, -1));
}

int
fs_is_dot_or_dotdot (const char *name)
{
  return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

/* Push the parent directory and the last component of path, ignoring trailing slashes:
   "a/b/" gives "a" and "b", "b" gives "." and "b", "/" gives "/" and ".".  Returns the
   length of path without its trailing slashes. */
size_t
fs_push_split_path (lua_State *L, const char *path)
{
  size_t end = strlen (path), start, parent_end;

  while (end > 1 && path[end - 1] == '/')
    end--;
  for (start = end; start > 0 && path[start - 1] != '/'; start--)
    ;
  for (parent_end = start; parent_end > 1 && path[parent_end - 1] == '/'; parent_end--)
    ;

  if (start == 0)
    lua_pushliteral (L, ".");
  else
    lua_pushlstring (L, path, parent_end);
  if (start == end)
    lua_pushliteral (L, ".");
  else
    lua_pushlstring (L, path + start, end - start);
  return end;
}

static int
compare_names (const void *a, const void *b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* Replace the array of strings on top of the stack by a copy sorted bytewise, because
   table.sort compares strings with strcoll, which depends on the locale. */
static void
sort_names (lua_State *L)
{
  lua_Integer i, n = luaL_len (L, -1);
  const char **names = lua_newuserdatauv (L, (size_t) n * sizeof *names, 0);

  for (i = 0; i < n; i++)
    {
      lua_rawgeti (L, -2, i + 1);
      names[i] = lua_tostring (L, -1);
      lua_pop (L, 1);  /* the unsorted table keeps the string alive */
    }
  qsort (names, (size_t) n, sizeof *names, compare_names);

  lua_createtable (L, (int) n, 0);
  for (i = 0; i < n; i++)
    {
      lua_pushstring (L, names[i]);
      lua_rawseti (L, -2, i + 1);
    }
  lua_replace (L, -3);
  lua_pop (L, 1);
}

/* Return p grown to hold at least need elements of size elem, and update *cap.  When
   memory is exhausted, return NULL with errno ENOMEM and leave p as it was. */
void *
fs_grow (void *p, size_t *cap, size_t need, size_t elem)
{
  size_t n = *cap > 0 ? *cap : 16;
  void *q;

  if (need <= *cap)
    return p;
  while (n < need)
    n *= 2;
  if (n > (size_t) -1 / elem || (q = realloc (p, n * elem)) == NULL)
    {
      errno = ENOMEM;
      return NULL;
    }
  *cap = n;
  return q;
}

/* }====================================================== */


/* {====================================================== paths */

static int
fs_mkdir (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  mode_t mode = opt_mode (L, 2, 0755);

  if (mkdir (path, mode) < 0)
    return nsb_fail_path (L, errno, "mkdir", path);
  return nsb_ok (L);
}

/* Create the directory path unless a directory (or a symlink to one) is already there. */
static int
mkdir_if_missing (const char *path, mode_t mode)
{
  struct stat st;
  int err;

  if (mkdir (path, mode) == 0)
    return 0;
  err = errno;
  if (stat (path, &st) == 0)
    {
      if (S_ISDIR (st.st_mode))
        return 0;
      err = ENOTDIR;
    }
  errno = err;
  return -1;
}

/* core.mkdirs creates path and its missing parents, as mkdir -p does.  A failure names
   the component that could not be created. */
static int
fs_mkdirs (lua_State *L)
{
  size_t len, i;
  const char *path = luaL_checklstring (L, 1, &len);
  mode_t mode = opt_mode (L, 2, 0755);
  char *prefix;

  luaL_argcheck (L, len > 0, 1, "empty path");
  prefix = lua_newuserdatauv (L, len + 1, 0);
  memcpy (prefix, path, len + 1);
  for (i = 1; i <= len; i++)
    {
      if (i < len && (path[i] != '/' || path[i - 1] == '/'))
        continue;
      prefix[i] = '\0';
      if (mkdir_if_missing (prefix, mode) < 0)
        return nsb_fail_path (L, errno, "mkdir", prefix);
      prefix[i] = path[i];
    }
  return nsb_ok (L);
}

static int
fs_rmdir (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);

  if (rmdir (path) < 0)
    return nsb_fail_path (L, errno, "rmdir", path);
  return nsb_ok (L);
}

static int
fs_unlink (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);

  if (unlink (path) < 0)
    return nsb_fail_path (L, errno, "unlink", path);
  return nsb_ok (L);
}

static const struct nsb_flag rename_flags[] = {
  { "noreplace", RENAME_NOREPLACE },
  { "exchange", RENAME_EXCHANGE },
  { NULL, 0 }
};

static int
fs_rename (lua_State *L)
{
  const char *old = luaL_checkstring (L, 1);
  const char *new = luaL_checkstring (L, 2);
  unsigned int flags = (unsigned int) nsb_check_flags (L, 3, rename_flags);

  if (renameat2 (AT_FDCWD, old, AT_FDCWD, new, flags) < 0)
    return fail_paths (L, errno, "rename", old, new);
  return nsb_ok (L);
}

/* core.link(old, new) makes new a hard link to old. */
static int
fs_link (lua_State *L)
{
  const char *old = luaL_checkstring (L, 1);
  const char *new = luaL_checkstring (L, 2);

  if (link (old, new) < 0)
    return fail_paths (L, errno, "link", new, old);
  return nsb_ok (L);
}

static int
fs_symlink (lua_State *L)
{
  const char *target = luaL_checkstring (L, 1);
  const char *path = luaL_checkstring (L, 2);

  if (symlink (target, path) < 0)
    return fail_paths (L, errno, "symlink", path, target);
  return nsb_ok (L);
}

static int
fs_readlink (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  char target[PATH_MAX];
  ssize_t n = readlink (path, target, sizeof target);

  if (n < 0)
    return nsb_fail_path (L, errno, "readlink", path);
  if ((size_t) n == sizeof target)  /* Linux limits a target to PATH_MAX - 1 bytes */
    return nsb_fail_path (L, ENAMETOOLONG, "readlink", path);
  lua_pushlstring (L, target, (size_t) n);
  return 1;
}

static int
fs_chmod (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  mode_t mode = check_mode (L, 2);

  if (chmod (path, mode) < 0)
    return nsb_fail_path (L, errno, "chmod", path);
  return nsb_ok (L);
}

static int
fs_chown (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  uid_t uid = check_id (L, 2);
  gid_t gid = check_id (L, 3);
  int flags = opt_bool (L, 4) ? AT_SYMLINK_NOFOLLOW : 0;

  if (fchownat (AT_FDCWD, path, uid, gid, flags) < 0)
    return nsb_fail_path (L, errno, "chown", path);
  return nsb_ok (L);
}

static int
fs_utimes (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  struct timespec times[2];
  int flags;

  times[0].tv_sec = (time_t) luaL_checkinteger (L, 2);
  times[0].tv_nsec = check_nsec (L, 3);
  times[1].tv_sec = (time_t) luaL_checkinteger (L, 4);
  times[1].tv_nsec = check_nsec (L, 5);
  flags = opt_bool (L, 6) ? AT_SYMLINK_NOFOLLOW : 0;

  if (utimensat (AT_FDCWD, path, times, flags) < 0)
    return nsb_fail_path (L, errno, "utimensat", path);
  return nsb_ok (L);
}

static int
fs_realpath (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  char resolved[PATH_MAX];

  if (realpath (path, resolved) == NULL)
    return nsb_fail_path (L, errno, "realpath", path);
  lua_pushstring (L, resolved);
  return 1;
}

/* core.mkdtemp(prefix) creates a directory named prefix followed by six random
   characters, with mode 0700. */
static int
fs_mkdtemp (lua_State *L)
{
  size_t len;
  const char *prefix = luaL_checklstring (L, 1, &len);
  char *path = lua_newuserdatauv (L, len + sizeof "XXXXXX", 0);

  memcpy (path, prefix, len);
  memcpy (path + len, "XXXXXX", sizeof "XXXXXX");
  if (mkdtemp (path) == NULL)
    return nsb_fail_path (L, errno, "mkdtemp", path);
  lua_pushstring (L, path);
  return 1;
}

/* }====================================================== */


/* {====================================================== stat and listdir */

static const char *
type_name (mode_t mode)
{
  switch (mode & S_IFMT)
    {
    case S_IFREG: return "file";
    case S_IFDIR: return "dir";
    case S_IFLNK: return "link";
    case S_IFCHR: return "char";
    case S_IFBLK: return "block";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    default: return "unknown";
    }
}

static void
set_integer (lua_State *L, const char *field, lua_Integer value)
{
  lua_pushinteger (L, value);
  lua_setfield (L, -2, field);
}

static void
push_stat (lua_State *L, const struct stat *st)
{
  lua_createtable (L, 0, 17);
  lua_pushstring (L, type_name (st->st_mode));
  lua_setfield (L, -2, "type");
  set_integer (L, "mode", st->st_mode & 07777);
  set_integer (L, "uid", st->st_uid);
  set_integer (L, "gid", st->st_gid);
  set_integer (L, "size", st->st_size);
  set_integer (L, "blocks", st->st_blocks);
  set_integer (L, "dev", (lua_Integer) st->st_dev);
  set_integer (L, "ino", (lua_Integer) st->st_ino);
  set_integer (L, "nlink", (lua_Integer) st->st_nlink);
  set_integer (L, "rdev_major", major (st->st_rdev));
  set_integer (L, "rdev_minor", minor (st->st_rdev));
  set_integer (L, "atime_sec", st->st_atim.tv_sec);
  set_integer (L, "atime_nsec", st->st_atim.tv_nsec);
  set_integer (L, "mtime_sec", st->st_mtim.tv_sec);
  set_integer (L, "mtime_nsec", st->st_mtim.tv_nsec);
  set_integer (L, "ctime_sec", st->st_ctim.tv_sec);
  set_integer (L, "ctime_nsec", st->st_ctim.tv_nsec);
}

static int
stat_path (lua_State *L, const char *op, int flags)
{
  const char *path = luaL_checkstring (L, 1);
  struct stat st;

  if (fstatat (AT_FDCWD, path, &st, flags) < 0)
    return nsb_fail_path (L, errno, op, path);
  push_stat (L, &st);
  return 1;
}

static int
fs_stat (lua_State *L)
{
  return stat_path (L, "stat", 0);
}

static int
fs_lstat (lua_State *L)
{
  return stat_path (L, "lstat", AT_SYMLINK_NOFOLLOW);
}

static int
fs_fstat (lua_State *L)
{
  int fd = nsb_check_fd_or_int (L, 1);
  struct stat st;

  if (fstat (fd, &st) < 0)
    {
      int err = errno;

      lua_pushfstring (L, "fstat fd %d", fd);
      return nsb_fail (L, err, lua_tostring (L, -1));
    }
  push_stat (L, &st);
  return 1;
}

/* A directory stream owned by a userdata, so that a memory error raised while names
   are collected still closes it. */
static int
dir_gc (lua_State *L)
{
  DIR **dir = luaL_checkudata (L, 1, FS_DIR_META);

  if (*dir != NULL)
    closedir (*dir);
  *dir = NULL;
  return 0;
}

/* core.listdir(path) returns the names in directory path, sorted bytewise, without
   "." and "..". */
static int
fs_listdir (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  DIR **dir = lua_newuserdatauv (L, sizeof *dir, 0);
  struct dirent *entry;
  lua_Integer n = 0;
  int err;

  *dir = NULL;
  luaL_setmetatable (L, FS_DIR_META);
  *dir = opendir (path);
  if (*dir == NULL)
    return nsb_fail_path (L, errno, "opendir", path);

  lua_newtable (L);
  for (errno = 0; (entry = readdir (*dir)) != NULL; errno = 0)
    {
      if (fs_is_dot_or_dotdot (entry->d_name))
        continue;
      lua_pushstring (L, entry->d_name);
      lua_rawseti (L, -2, ++n);
    }
  err = errno;
  closedir (*dir);
  *dir = NULL;
  if (err != 0)
    return nsb_fail_path (L, err, "readdir", path);

  sort_names (L);
  return 1;
}

/* }====================================================== */


/* {====================================================== whole files, open and flock */

/* Close the fd handle at idx through its own close method, so that its finalizer does
   not close the descriptor a second time. */
static void
close_handle (lua_State *L, int idx)
{
  lua_getfield (L, idx, "close");
  lua_pushvalue (L, idx);
  lua_call (L, 1, 0);
}

static int
fs_read_file (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  int fd = open (path, O_RDONLY | O_NOCTTY | O_CLOEXEC);
  luaL_Buffer b;
  ssize_t n;
  int handle, err;

  if (fd < 0)
    return nsb_fail_path (L, errno, "open", path);
  nsb_push_fd (L, fd);  /* closes fd if a memory error interrupts the read */
  handle = lua_gettop (L);
  luaL_buffinit (L, &b);
  do
    {
      n = read (fd, luaL_prepbuffsize (&b, 65536), 65536);
      if (n > 0)
        luaL_addsize (&b, (size_t) n);
    }
  while (n > 0 || (n < 0 && errno == EINTR));
  err = errno;
  close_handle (L, handle);
  if (n < 0)
    return nsb_fail_path (L, err, "read", path);
  luaL_pushresult (&b);
  return 1;
}

/* Write data to fd, flush it to disk and close fd.  Returns NULL, or the name of the
   operation that failed with errno set. */
static const char *
write_sync_close (int fd, const char *data, size_t len)
{
  const char *op = NULL;
  int err = 0;

  if (nsb_write_all (fd, data, len) < 0)
    op = "write";
  else if (fsync (fd) < 0)
    op = "fsync";
  if (op != NULL)
    err = errno;
  if (close (fd) < 0 && op == NULL)
    {
      op = "close";
      err = errno;
    }
  errno = err;
  return op;
}

/* Flush the directory dir so that a rename inside it survives a crash. */
static int
fsync_dir (lua_State *L, const char *dir)
{
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int err;

  if (fd < 0)
    return nsb_fail_path (L, errno, "open", dir);
  if (fsync (fd) < 0)
    {
      err = errno;
      close (fd);
      return nsb_fail_path (L, err, "fsync", dir);
    }
  close (fd);
  return nsb_ok (L);
}

static unsigned int write_file_count;  /* makes temporary names unique within the process */

/* core.write_file(path, data [, mode]) replaces path atomically: the data goes to a new
   temporary file beside path, which is flushed and renamed over path.  On failure the
   temporary file is removed and path keeps its old contents. */
static int
fs_write_file (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  size_t len;
  const char *data = luaL_checklstring (L, 2, &len);
  mode_t mode = opt_mode (L, 3, 0644);
  const char *dir, *tmp, *op;
  int fd, err;

  fs_push_split_path (L, path);
  dir = lua_tostring (L, -2);
  tmp = lua_pushfstring (L, "%s.tmp.%d.%d", path, (int) getpid (), (int) ++write_file_count);
  fd = open (tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0)
    return nsb_fail_path (L, errno, "open", tmp);

  op = write_sync_close (fd, data, len);
  if (op != NULL)
    {
      err = errno;
      unlink (tmp);
      return nsb_fail_path (L, err, op, tmp);
    }
  if (rename (tmp, path) < 0)
    {
      err = errno;
      unlink (tmp);
      return fail_paths (L, err, "rename", tmp, path);
    }
  return fsync_dir (L, dir);
}

static const struct nsb_flag open_flags[] = {
  { "rdonly", O_RDONLY },
  { "wronly", O_WRONLY },
  { "rdwr", O_RDWR },
  { "creat", O_CREAT },
  { "excl", O_EXCL },
  { "trunc", O_TRUNC },
  { "append", O_APPEND },
  { "directory", O_DIRECTORY },
  { "nofollow", O_NOFOLLOW },
  { "path", O_PATH },
  { "noctty", O_NOCTTY },
  { "nonblock", O_NONBLOCK },
  { NULL, 0 }
};

/* core.open(path, flags [, mode]) returns an fd handle.  O_CLOEXEC is always set, and
   mode (default 0666) applies when "creat" is among the flags. */
static int
fs_open (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  int flags, fd;
  mode_t mode;

  luaL_checktype (L, 2, LUA_TTABLE);
  flags = (int) nsb_check_flags (L, 2, open_flags);
  mode = opt_mode (L, 3, 0666);
  luaL_argcheck (L, (flags & O_ACCMODE) != O_ACCMODE, 2, "'wronly' and 'rdwr' exclude each other");

  fd = open (path, flags | O_CLOEXEC, mode);
  if (fd < 0)
    return nsb_fail_path (L, errno, "open", path);
  nsb_push_fd (L, fd);
  return 1;
}

/* core.flock(fd, op [, nonblock]) takes or releases a lock.  When nonblock is true and
   another open file holds a conflicting lock, it fails with EWOULDBLOCK instead of
   waiting. */
static int
fs_flock (lua_State *L)
{
  static const char *const names[] = { "ex", "sh", "un", NULL };
  static const int operations[] = { LOCK_EX, LOCK_SH, LOCK_UN };
  int fd = nsb_check_fd_or_int (L, 1);
  int operation = operations[luaL_checkoption (L, 2, NULL, names)];

  if (opt_bool (L, 3))
    operation |= LOCK_NB;
  if (flock (fd, operation) < 0)
    {
      int err = errno;

      lua_pushfstring (L, "flock fd %d", fd);
      return nsb_fail (L, err, lua_tostring (L, -1));
    }
  return nsb_ok (L);
}

/* }====================================================== */


/* {====================================================== xattrs */

/* core.getxattr(path, name [, nofollow]) returns the value.  An absent attribute fails
   with ENODATA. */
static int
fs_getxattr (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  const char *name = luaL_checkstring (L, 2);
  int nofollow = opt_bool (L, 3);
  ssize_t size, n;
  char *value;

  do  /* retry while the value grows between the two calls (ERANGE) */
    {
      lua_settop (L, 3);
      size = nofollow ? lgetxattr (path, name, NULL, 0) : getxattr (path, name, NULL, 0);
      if (size < 0)
        return fail_xattr (L, errno, "getxattr", name, path);
      value = lua_newuserdatauv (L, (size_t) size, 0);
      n = nofollow ? lgetxattr (path, name, value, (size_t) size)
                   : getxattr (path, name, value, (size_t) size);
    }
  while (n < 0 && errno == ERANGE);
  if (n < 0)
    return fail_xattr (L, errno, "getxattr", name, path);
  lua_pushlstring (L, value, (size_t) n);
  return 1;
}

static int
fs_setxattr (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  const char *name = luaL_checkstring (L, 2);
  size_t len;
  const char *value = luaL_checklstring (L, 3, &len);
  int nofollow = opt_bool (L, 4);
  int rc = nofollow ? lsetxattr (path, name, value, len, 0) : setxattr (path, name, value, len, 0);

  if (rc < 0)
    return fail_xattr (L, errno, "setxattr", name, path);
  return nsb_ok (L);
}

/* core.listxattr(path [, nofollow]) returns the attribute names, sorted bytewise. */
static int
fs_listxattr (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  int nofollow = opt_bool (L, 2);
  ssize_t size, n, i;
  lua_Integer count = 0;
  char *names;

  do  /* retry while the list grows between the two calls (ERANGE) */
    {
      lua_settop (L, 2);
      size = nofollow ? llistxattr (path, NULL, 0) : listxattr (path, NULL, 0);
      if (size < 0)
        return nsb_fail_path (L, errno, "listxattr", path);
      names = lua_newuserdatauv (L, (size_t) size, 0);
      n = nofollow ? llistxattr (path, names, (size_t) size)
                   : listxattr (path, names, (size_t) size);
    }
  while (n < 0 && errno == ERANGE);
  if (n < 0)
    return nsb_fail_path (L, errno, "listxattr", path);

  lua_newtable (L);
  for (i = 0; i < n; i += (ssize_t) strlen (names + i) + 1)
    {
      lua_pushstring (L, names + i);
      lua_rawseti (L, -2, ++count);
    }
  sort_names (L);
  return 1;
}

/* }====================================================== */

static const luaL_Reg fs_functions[] = {
  { "mkdir", fs_mkdir },
  { "mkdirs", fs_mkdirs },
  { "rmdir", fs_rmdir },
  { "unlink", fs_unlink },
  { "rename", fs_rename },
  { "link", fs_link },
  { "symlink", fs_symlink },
  { "readlink", fs_readlink },
  { "chmod", fs_chmod },
  { "chown", fs_chown },
  { "utimes", fs_utimes },
  { "realpath", fs_realpath },
  { "mkdtemp", fs_mkdtemp },
  { "stat", fs_stat },
  { "lstat", fs_lstat },
  { "fstat", fs_fstat },
  { "listdir", fs_listdir },
  { "read_file", fs_read_file },
  { "write_file", fs_write_file },
  { "open", fs_open },
  { "flock", fs_flock },
  { "getxattr", fs_getxattr },
  { "setxattr", fs_setxattr },
  { "listxattr", fs_listxattr },
  { NULL, NULL }
};

void
nsb_open_fs (lua_State *L)
{
  luaL_newmetatable (L, FS_DIR_META);
  lua_pushcfunction (L, dir_gc);
  lua_setfield (L, -2, "__gc");
  lua_pop (L, 1);
  luaL_setfuncs (L, fs_functions, 0);
}
