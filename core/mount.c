/* SPDX-License-Identifier: MIT */
/* Mounts, pivot_root, and path resolution confined to a root directory.

   Lua functions:
     core.mount(source, target, fstype, flags, data) -> true   (target: path or fd handle)
     core.umount(target [, flags])                    -> true
     core.pivot_root(new_root, put_old)               -> true
     core.open_in_root(root, path, flags [, mode])    -> fd handle
     core.mkdirs_in_root(root, path [, mode])         -> true
     core.symlink_in_root(root, target, path)         -> true

   Paths "in root" are resolved with openat2(RESOLVE_IN_ROOT): ".." and absolute
   symlinks stop at root, so an image cannot point a mount target at the host. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "core.h"

static const struct nsb_flag mount_flags[] = {
  { "rdonly", MS_RDONLY },
  { "nosuid", MS_NOSUID },
  { "nodev", MS_NODEV },
  { "noexec", MS_NOEXEC },
  { "remount", MS_REMOUNT },
  { "bind", MS_BIND },
  { "rec", MS_REC },
  { "private", MS_PRIVATE },
  { "slave", MS_SLAVE },
  { "shared", MS_SHARED },
  { "unbindable", MS_UNBINDABLE },
  { "move", MS_MOVE },
  { "relatime", MS_RELATIME },
  { "noatime", MS_NOATIME },
  { "strictatime", MS_STRICTATIME },
  { "nodiratime", MS_NODIRATIME },
  { "silent", MS_SILENT },
  { NULL, 0 }
};

static const struct nsb_flag umount_flags[] = {
  { "detach", MNT_DETACH },
  { "force", MNT_FORCE },
  { "expire", MNT_EXPIRE },
  { "nofollow", UMOUNT_NOFOLLOW },
  { NULL, 0 }
};

static const struct nsb_flag open_flags[] = {
  { "rdonly", O_RDONLY },
  { "wronly", O_WRONLY },
  { "rdwr", O_RDWR },
  { "creat", O_CREAT },
  { "excl", O_EXCL },
  { "trunc", O_TRUNC },
  { "directory", O_DIRECTORY },
  { "nofollow", O_NOFOLLOW },
  { "path", O_PATH },
  { NULL, 0 }
};

/* A target given as an fd handle is reached through its /proc/self/fd link, so
   the mount lands on the object the fd was opened on, not on a path that could
   have been swapped since. */
static const char *
check_target (lua_State *L, int idx, char *buf, size_t size)
{
  if (lua_type (L, idx) == LUA_TSTRING)
    return lua_tostring (L, idx);
  snprintf (buf, size, "/proc/self/fd/%d", nsb_check_fd (L, idx));
  return buf;
}

static int
mount_mount (lua_State *L)
{
  const char *source = luaL_optstring (L, 1, NULL);
  char buf[64];
  const char *target = check_target (L, 2, buf, sizeof buf);
  const char *fstype = luaL_optstring (L, 3, NULL);
  unsigned long flags = nsb_check_flags (L, 4, mount_flags);
  const char *data = luaL_optstring (L, 5, NULL);

  if (mount (source, target, fstype, flags, data) < 0)
    {
      int err = errno;

      luaL_pushfail (L);
      lua_pushfstring (L, "mount '%s' on '%s'%s%s: %s", source ? source : "none", target,
                       fstype ? " type " : "", fstype ? fstype : "", strerror (err));
      lua_pushinteger (L, err);
      return 3;
    }
  return nsb_ok (L);
}

static int
mount_umount (lua_State *L)
{
  char buf[64];
  const char *target = check_target (L, 1, buf, sizeof buf);
  int flags = (int) nsb_check_flags (L, 2, umount_flags);

  if (umount2 (target, flags) < 0)
    return nsb_fail_path (L, errno, "umount", target);
  return nsb_ok (L);
}

static int
mount_pivot_root (lua_State *L)
{
  const char *new_root = luaL_checkstring (L, 1);
  const char *put_old = luaL_checkstring (L, 2);

  if (syscall (SYS_pivot_root, new_root, put_old) < 0)
    return nsb_fail_path (L, errno, "pivot_root", new_root);
  return nsb_ok (L);
}

static int
resolve_in_root (int rootfd, const char *path, int flags, mode_t mode)
{
  struct open_how how;

  memset (&how, 0, sizeof how);
  how.flags = (unsigned long long) (flags | O_CLOEXEC);
  how.mode = (flags & O_CREAT) ? mode : 0;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  return (int) syscall (SYS_openat2, rootfd, path, &how, sizeof how);
}

/* Open the root argument (a path or an fd handle); *owned is set when the caller must close it. */
static int
open_root (lua_State *L, int idx, int *owned)
{
  int fd;

  *owned = 0;
  if (lua_type (L, idx) != LUA_TSTRING)
    return nsb_check_fd (L, idx);
  fd = open (lua_tostring (L, idx), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0)
    *owned = 1;
  return fd;
}

static const char *
skip_slashes (const char *path)
{
  while (*path == '/')
    path++;
  return *path == '\0' ? "." : path;
}

static int
mount_open_in_root (lua_State *L)
{
  const char *path = skip_slashes (luaL_checkstring (L, 2));
  int flags = (int) nsb_check_flags (L, 3, open_flags);
  mode_t mode = (mode_t) luaL_optinteger (L, 4, 0644);
  int owned, rootfd, fd, err;

  rootfd = open_root (L, 1, &owned);
  if (rootfd < 0)
    return nsb_fail_path (L, errno, "open root", lua_tostring (L, 1));
  fd = resolve_in_root (rootfd, path, flags, mode);
  err = errno;
  if (owned)
    close (rootfd);
  if (fd < 0)
    return nsb_fail_path (L, err, "open in root", path);
  nsb_push_fd (L, fd);
  return 1;
}

/* Symlinks followed while creating one path, as the kernel allows (MAXSYMLINKS). */
#define MAX_LINKS 40

static int mkdirs_at (int rootfd, const char *path, mode_t mode, char *failed, size_t failed_size,
                      int links);

/* The entry name in parentfd exists and is not a directory: when it is a
   symlink, create the directories it points to (inside root) and then the
   rest of the path below them, as mkdir -p does through a dangling link. */
static int
mkdirs_through_link (int rootfd, int parentfd, const char *prefix, const char *name, const char *rest,
                     mode_t mode, char *failed, size_t failed_size, int links)
{
  char target[PATH_MAX], joined[PATH_MAX];
  ssize_t n;
  int len;

  if (links >= MAX_LINKS)
    {
      errno = ELOOP;
      return -1;
    }
  n = readlinkat (parentfd, name, target, sizeof target - 1);
  if (n < 0)
    {
      errno = errno == EINVAL ? EEXIST : errno;
      return -1;
    }
  target[n] = '\0';
  if (target[0] == '/')
    len = snprintf (joined, sizeof joined, "%s%s", target, rest);
  else
    len = snprintf (joined, sizeof joined, "%s/%s%s", prefix, target, rest);
  if (len < 0 || (size_t) len >= sizeof joined)
    {
      errno = ENAMETOOLONG;
      return -1;
    }
  /* An absolute target is relative to root: openat2 resolves it so, the loop needs no leading "/". */
  return mkdirs_at (rootfd, joined + strspn (joined, "/"), mode, failed, failed_size, links + 1);
}

/* Create each missing directory of path below root.  Every prefix is resolved
   from root again, so a symlink met on the way is followed as the container
   would follow it, and never out of root. */
static int
mkdirs_at (int rootfd, const char *path, mode_t mode, char *failed, size_t failed_size, int links)
{
  char prefix[PATH_MAX];
  size_t len = strlen (path), i;

  if (len >= sizeof prefix)
    {
      errno = ENAMETOOLONG;
      return -1;
    }
  for (i = 1; i <= len; i++)
    {
      char *name;
      int fd, parentfd, ret, err;

      if ((path[i] != '/' && path[i] != '\0') || path[i - 1] == '/')
        continue;
      memcpy (prefix, path, i);
      prefix[i] = '\0';
      snprintf (failed, failed_size, "%s", prefix);

      fd = resolve_in_root (rootfd, prefix, O_PATH | O_DIRECTORY, 0);
      if (fd >= 0)
        {
          close (fd);
          continue;
        }
      if (errno != ENOENT)
        return -1;

      /* The parent exists: the previous round resolved or created it. */
      name = strrchr (prefix, '/');
      if (name != NULL)
        *name++ = '\0';
      parentfd = resolve_in_root (rootfd, name != NULL ? prefix : ".", O_PATH | O_DIRECTORY, 0);
      if (parentfd < 0)
        return -1;
      ret = mkdirat (parentfd, name != NULL ? name : prefix, mode);
      if (ret < 0 && errno == EEXIST)
        {
          /* A dangling symlink: the call creates the rest of the path too. */
          ret = mkdirs_through_link (rootfd, parentfd, name != NULL ? prefix : ".",
                                     name != NULL ? name : prefix, path + i, mode, failed,
                                     failed_size, links);
          err = errno;
          close (parentfd);
          errno = err;
          return ret;
        }
      err = errno;
      close (parentfd);
      errno = err;
      if (ret < 0)
        return -1;
    }
  return 0;
}

static int
mount_mkdirs_in_root (lua_State *L)
{
  const char *path = skip_slashes (luaL_checkstring (L, 2));
  mode_t mode = (mode_t) luaL_optinteger (L, 3, 0755);
  char failed[PATH_MAX];
  int owned, rootfd, ret, err;

  rootfd = open_root (L, 1, &owned);
  if (rootfd < 0)
    return nsb_fail_path (L, errno, "open root", lua_tostring (L, 1));
  failed[0] = '\0';
  ret = mkdirs_at (rootfd, path, mode, failed, sizeof failed, 0);
  err = errno;
  if (owned)
    close (rootfd);
  if (ret < 0)
    return nsb_fail_path (L, err, "mkdir in root", failed[0] ? failed : path);
  return nsb_ok (L);
}

static int
mount_symlink_in_root (lua_State *L)
{
  const char *target = luaL_checkstring (L, 2);
  const char *path = skip_slashes (luaL_checkstring (L, 3));
  const char *slash = strrchr (path, '/');
  char parent[PATH_MAX];
  int owned, rootfd, parentfd, ret = -1, err;

  if (slash == NULL)
    snprintf (parent, sizeof parent, ".");
  else
    snprintf (parent, sizeof parent, "%.*s", (int) (slash - path), path);
  rootfd = open_root (L, 1, &owned);
  if (rootfd < 0)
    return nsb_fail_path (L, errno, "open root", lua_tostring (L, 1));
  parentfd = resolve_in_root (rootfd, parent, O_PATH | O_DIRECTORY, 0);
  if (parentfd >= 0)
    {
      ret = symlinkat (target, parentfd, slash ? slash + 1 : path);
      err = errno;
      close (parentfd);
      errno = err;
    }
  err = errno;
  if (owned)
    close (rootfd);
  if (ret < 0)
    return nsb_fail_path (L, err, "symlink in root", path);
  return nsb_ok (L);
}

static const luaL_Reg mount_functions[] = {
  { "mount", mount_mount },
  { "umount", mount_umount },
  { "pivot_root", mount_pivot_root },
  { "open_in_root", mount_open_in_root },
  { "mkdirs_in_root", mount_mkdirs_in_root },
  { "symlink_in_root", mount_symlink_in_root },
  { NULL, NULL }
};

void
nsb_open_mount (lua_State *L)
{
  luaL_setfuncs (L, mount_functions, 0);
}
