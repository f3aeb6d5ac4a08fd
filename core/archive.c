/* SPDX-License-Identifier: MIT */
/* Extraction of untrusted tar archives and Debian packages.  libarchive only reads
   the archive.  Every entry is written here with *at() calls below a descriptor of
   the destination, so that no name, symlink or hardlink in the archive reaches
   outside it.

   Lua functions: core.extract(archive, dest [, opts]) */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <linux/openat2.h>

#include <archive.h>
#include <archive_entry.h>

#include "core.h"

#define EXTRACT_META "nsbuild.extract"

/* Every directory lookup below the destination rejects symlinks, /proc magic links
   and mount points, and stays beneath the starting directory. */
#define RESOLVE_SAFE (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)

/* Owner, mode and times of a directory entry, applied once every entry is written. */
struct dir_meta {
  char *path;                   /* normalised name below the destination; "" is the destination */
  size_t depth;                 /* number of components of path */
  size_t order;                 /* position in the archive: the last entry for a path wins */
  int removed;                  /* a later entry replaced the directory */
  uid_t uid;
  gid_t gid;
  mode_t mode;
  struct timespec times[2];
};

/* The state of one extraction.  It is a Lua userdata closed by __close, so that a
   Lua error raised in the middle (out of memory) still frees the archives and fds. */
struct extract {
  lua_State *L;
  int skipped_idx;              /* stack index of the stats.skipped list */
  const char *archive_path;     /* argument strings, kept alive by the Lua stack */
  const char *dest_path;
  int same_owner;
  int skip_devices;

  int archive_fd;
  int dest_fd;                  /* O_PATH descriptor of the destination */
  int parent_fd;                /* O_PATH descriptor of the current entry's directory */
  struct archive *outer;        /* the file given: a tar or a .deb (ar) */
  struct archive *inner;        /* data.tar of a .deb, else NULL */
  uid_t dest_uid;
  gid_t dest_gid;

  struct dir_meta *dirs;
  size_t ndirs, dirs_cap;

  lua_Integer entries;
  lua_Integer bytes;

  const char *entry;            /* name of the entry being written, for messages */
  char path[PATH_MAX];          /* its normalised name */
  char parent[PATH_MAX];        /* the directory part of path, "." at the top */
  const char *base;             /* the last component of path */

  int err;
  char msg[2 * PATH_MAX + 512];
  char member_buf[65536];       /* data of the .deb member read by the nested archive */
};


/* {====================================================== failures */

/* Format "extract 'archive': entry 'name': <detail>" into x->msg, store err and
   return -1. */
static int __attribute__ ((format (printf, 3, 4)))
extract_fail (struct extract *x, int err, const char *fmt, ...)
{
  size_t n, size = sizeof x->msg;
  va_list ap;

  n = (size_t) snprintf (x->msg, size, "extract '%s': ", x->archive_path);
  if (x->entry != NULL && n < size)
    n += (size_t) snprintf (x->msg + n, size - n, "entry '%s': ", x->entry);
  if (n < size)
    {
      va_start (ap, fmt);
      vsnprintf (x->msg + n, size - n, fmt, ap);
      va_end (ap);
    }
  x->err = err;
  return -1;
}

/* Record the failure of a system call on target. */
static int
extract_fail_sys (struct extract *x, int err, const char *op, const char *target)
{
  return extract_fail (x, err, "%s '%s': %s", op, target, strerror (err));
}

/* Record the failure of openat2 on target. */
static int
extract_fail_openat2 (struct extract *x, int err, const char *target)
{
  if (err == ENOSYS)
    return extract_fail (x, err, "openat2 '%s': %s (Linux 5.6 or later is needed)", target, strerror (err));
  return extract_fail_sys (x, err, "openat2", target);
}

/* Record the error libarchive reports for a. */
static int
extract_fail_archive (struct extract *x, struct archive *a)
{
  int err = archive_errno (a) > 0 ? archive_errno (a) : EINVAL;
  const char *s = archive_error_string (a);

  return extract_fail (x, err, "%s", s != NULL ? s : "unknown libarchive error");
}

/* }====================================================== */


/* {====================================================== names */

/* Normalise the archive name raw into out: drop "." and empty components and any
   trailing "/".  The destination itself normalises to "".  Reject absolute names
   and ".." components, which would leave the destination. */
static int
name_normalise (struct extract *x, const char *raw, char *out, const char *what)
{
  const char *p = raw;
  size_t n = 0;

  if (raw[0] == '/')
    return extract_fail (x, EINVAL, "%s '%s' is absolute, which would leave the destination '%s'",
                         what, raw, x->dest_path);
  while (*p != '\0')
    {
      size_t len = strcspn (p, "/");

      if (len == 2 && p[0] == '.' && p[1] == '.')
        return extract_fail (x, EINVAL, "%s '%s' has a '..' component, which would leave the destination '%s'",
                             what, raw, x->dest_path);
      if (len > 0 && !(len == 1 && p[0] == '.'))
        {
          if (n + (n > 0) + len >= PATH_MAX)
            return extract_fail (x, ENAMETOOLONG, "%s '%s': %s", what, raw, strerror (ENAMETOOLONG));
          if (n > 0)
            out[n++] = '/';
          memcpy (out + n, p, len);
          n += len;
        }
      p += len;
      while (*p == '/')
        p++;
    }
  out[n] = '\0';
  return 0;
}

/* Split x->path into x->parent ("." at the top) and x->base. */
static void
name_split (struct extract *x)
{
  char *slash = strrchr (x->path, '/');

  if (slash == NULL)
    {
      strcpy (x->parent, ".");
      x->base = x->path;
      return;
    }
  memcpy (x->parent, x->path, (size_t) (slash - x->path));
  x->parent[slash - x->path] = '\0';
  x->base = slash + 1;
}

static size_t
name_depth (const char *path)
{
  size_t depth = path[0] != '\0';

  for (; *path != '\0'; path++)
    depth += *path == '/';
  return depth;
}

/* Reject a relative symlink target that climbs above the destination when read
   from the directory that contains the link (lexically, as the kernel would
   inside a container whose root is the destination). */
static int
name_check_symlink (struct extract *x, const char *target)
{
  size_t depth = strcmp (x->parent, ".") == 0 ? 0 : name_depth (x->parent);
  const char *p = target;

  if (target[0] == '/')
    return 0;
  while (*p != '\0')
    {
      size_t len = strcspn (p, "/");

      if (len == 2 && p[0] == '.' && p[1] == '.')
        {
          if (depth == 0)
            return extract_fail (x, EINVAL, "symlink target '%s' climbs above the destination '%s'",
                                 target, x->dest_path);
          depth--;
        }
      else if (len > 0 && !(len == 1 && p[0] == '.'))
        depth++;
      p += len;
      while (*p == '/')
        p++;
    }
  return 0;
}

/* }====================================================== */


/* {====================================================== directories */

static int
openat2_safe (int dirfd, const char *path)
{
  struct open_how how = {
    .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
    .resolve = RESOLVE_SAFE,
  };

  return (int) syscall (SYS_openat2, dirfd, path, &how, sizeof how);
}

/* Create the missing directory name in dirfd as tar does for an entry whose parent
   is not in the archive: mode 0755, owned like the destination. */
static int
dir_create_implied (struct extract *x, int dirfd, const char *name, const char *shown)
{
  /* If the name exists (a dangling symlink, say), the caller's openat2 reports it,
     and fchmodat below must not follow it. */
  if (mkdirat (dirfd, name, 0755) < 0)
    return errno == EEXIST ? 0 : extract_fail_sys (x, errno, "mkdirat", shown);
  if (x->same_owner && fchownat (dirfd, name, x->dest_uid, x->dest_gid, AT_SYMLINK_NOFOLLOW) < 0)
    return extract_fail_sys (x, errno, "fchownat", shown);

  /* The umask applies to mkdirat; the mode of an implied directory does not depend on it. */
  if (fchmodat (dirfd, name, 0755, 0) < 0)
    return extract_fail_sys (x, errno, "fchmodat", shown);
  return 0;
}

/* Open x->parent one component at a time, creating missing directories, so that
   the component which is a symlink can be named. */
static int
dir_walk (struct extract *x)
{
  char prefix[PATH_MAX];
  const char *p = x->parent;
  int fd, next;

  fd = openat2_safe (x->dest_fd, ".");
  if (fd < 0)
    return extract_fail_openat2 (x, errno, x->dest_path);
  while (*p != '\0')
    {
      size_t len = strcspn (p, "/");
      size_t end = (size_t) (p - x->parent) + len;
      char name[NAME_MAX + 1];

      if (len > NAME_MAX)
        {
          close (fd);
          return extract_fail (x, ENAMETOOLONG, "directory name too long in '%s'", x->parent);
        }
      memcpy (name, p, len);
      name[len] = '\0';
      memcpy (prefix, x->parent, end);
      prefix[end] = '\0';

      next = openat2_safe (fd, name);
      if (next < 0 && errno == ENOENT)
        {
          if (dir_create_implied (x, fd, name, prefix) < 0)
            {
              close (fd);
              return -1;
            }
          next = openat2_safe (fd, name);
        }
      if (next < 0)
        {
          int err = errno;

          close (fd);
          if (err == ELOOP)
            return extract_fail (x, ELOOP, "would be written through symlink '%s'", prefix);
          return extract_fail_openat2 (x, err, prefix);
        }
      close (fd);
      fd = next;

      p += len;
      while (*p == '/')
        p++;
    }
  x->parent_fd = fd;
  return 0;
}

/* Open the directory of the current entry into x->parent_fd. */
static int
dir_open_parent (struct extract *x)
{
  x->parent_fd = openat2_safe (x->dest_fd, x->parent);
  if (x->parent_fd >= 0)
    return 0;
  if (errno == ENOENT || errno == ELOOP)
    return dir_walk (x);
  return extract_fail_openat2 (x, errno, x->parent);
}

/* Remove the directory name in dirfd and everything below it.  Symlinks inside are
   removed, never followed, and a mount point stops the removal. */
static int
dir_remove_tree (struct extract *x, int dirfd, const char *name)
{
  struct stat parent_st, st;
  struct dirent *de;
  DIR *dir;
  int fd, ret = 0;

  fd = openat (dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return extract_fail_sys (x, errno, "openat", name);
  if (fstat (dirfd, &parent_st) < 0 || fstat (fd, &st) < 0)
    {
      int err = errno;

      close (fd);
      return extract_fail_sys (x, err, "fstat", name);
    }
  if (st.st_dev != parent_st.st_dev)
    {
      close (fd);
      return extract_fail (x, EXDEV, "cannot replace directory '%s': it is a mount point", name);
    }
  dir = fdopendir (fd);
  if (dir == NULL)
    {
      int err = errno;

      close (fd);
      return extract_fail_sys (x, err, "fdopendir", name);
    }
  while (ret == 0 && (errno = 0, de = readdir (dir)) != NULL)
    {
      if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0)
        continue;
      if (unlinkat (fd, de->d_name, 0) == 0)
        continue;
      if (errno == EISDIR)
        ret = dir_remove_tree (x, fd, de->d_name);
      else
        ret = extract_fail_sys (x, errno, "unlinkat", de->d_name);
    }
  if (ret == 0 && errno != 0)
    ret = extract_fail_sys (x, errno, "readdir", name);
  closedir (dir);
  if (ret == 0 && unlinkat (dirfd, name, AT_REMOVEDIR) < 0)
    ret = extract_fail_sys (x, errno, "unlinkat", name);
  return ret;
}

/* Forget the deferred metadata of path and of the directories below it. */
static void
dir_forget (struct extract *x, const char *path)
{
  size_t len = strlen (path), i;

  for (i = 0; i < x->ndirs; i++)
    {
      const char *p = x->dirs[i].path;

      if (strncmp (p, path, len) == 0 && (p[len] == '\0' || p[len] == '/'))
        x->dirs[i].removed = 1;
    }
}

/* }====================================================== */


/* {====================================================== metadata */

static void
meta_times (struct archive_entry *e, struct timespec times[2])
{
  times[0].tv_sec = archive_entry_atime (e);
  times[0].tv_nsec = archive_entry_atime_is_set (e) ? archive_entry_atime_nsec (e) : UTIME_NOW;
  times[1].tv_sec = archive_entry_mtime (e);
  times[1].tv_nsec = archive_entry_mtime_is_set (e) ? archive_entry_mtime_nsec (e) : UTIME_OMIT;
}

/* Apply the entry's xattrs to the file open at fd. */
static int
meta_xattrs_fd (struct extract *x, struct archive_entry *e, int fd)
{
  const char *name;
  const void *value;
  size_t size;

  archive_entry_xattr_reset (e);
  while (archive_entry_xattr_next (e, &name, &value, &size) == ARCHIVE_OK)
    if (fsetxattr (fd, name, value, size, 0) < 0)
      return extract_fail_sys (x, errno, "fsetxattr", name);
  return 0;
}

/* Apply the entry's xattrs to x->base in x->parent_fd without following it.
   fsetxattr() rejects O_PATH descriptors, so the name is reached through the /proc
   magic link of its parent. */
static int
meta_xattrs_at (struct extract *x, struct archive_entry *e)
{
  char proc_path[PATH_MAX + 64];
  const char *name;
  const void *value;
  size_t size;

  if (archive_entry_xattr_reset (e) == 0)
    return 0;
  snprintf (proc_path, sizeof proc_path, "/proc/self/fd/%d/%s", x->parent_fd, x->base);
  while (archive_entry_xattr_next (e, &name, &value, &size) == ARCHIVE_OK)
    if (lsetxattr (proc_path, name, value, size, 0) < 0)
      return extract_fail_sys (x, errno, "lsetxattr", name);
  return 0;
}

/* Apply owner, mode and times to x->base in x->parent_fd.  Regular files get theirs
   through their fd in file_apply_meta, and symlinks have no mode of their own. */
static int
meta_apply_at (struct extract *x, uid_t uid, gid_t gid, mode_t mode, const struct timespec times[2],
               int is_symlink)
{
  if (x->same_owner && fchownat (x->parent_fd, x->base, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
    return extract_fail_sys (x, errno, "fchownat", x->path);

  /* After chown, which clears the setuid and setgid bits. */
  if (!is_symlink && fchmodat (x->parent_fd, x->base, mode, 0) < 0)
    return extract_fail_sys (x, errno, "fchmodat", x->path);
  if (utimensat (x->parent_fd, x->base, times, AT_SYMLINK_NOFOLLOW) < 0)
    return extract_fail_sys (x, errno, "utimensat", x->path);
  return 0;
}

/* Record a directory's metadata for extract_finish_dirs. */
static int
meta_defer_dir (struct extract *x, struct archive_entry *e)
{
  struct dir_meta *d;

  if (x->ndirs == x->dirs_cap)
    {
      size_t cap = x->dirs_cap ? 2 * x->dirs_cap : 64;
      struct dir_meta *dirs = realloc (x->dirs, cap * sizeof *dirs);

      if (dirs == NULL)
        return extract_fail (x, ENOMEM, "%s", strerror (ENOMEM));
      x->dirs = dirs;
      x->dirs_cap = cap;
    }
  d = &x->dirs[x->ndirs];
  d->path = strdup (x->path);
  if (d->path == NULL)
    return extract_fail (x, ENOMEM, "%s", strerror (ENOMEM));
  d->depth = name_depth (x->path);
  d->order = x->ndirs;
  d->removed = 0;
  d->uid = archive_entry_uid (e);
  d->gid = archive_entry_gid (e);
  d->mode = archive_entry_perm (e) & 07777;
  meta_times (e, d->times);
  x->ndirs++;
  return 0;
}

/* }====================================================== */


/* {====================================================== entries */

/* Make x->base free for a new entry of type new_type: remove what is there, except
   that a directory stays when the new entry is a directory too.  Return 1 when the
   directory stays, 0 when the name is free, -1 on failure. */
static int
entry_clear_name (struct extract *x, mode_t new_type)
{
  struct stat st;

  if (fstatat (x->parent_fd, x->base, &st, AT_SYMLINK_NOFOLLOW) < 0)
    {
      if (errno == ENOENT)
        return 0;
      return extract_fail_sys (x, errno, "fstatat", x->path);
    }
  if (S_ISDIR (st.st_mode))
    {
      if (new_type == S_IFDIR)
        return 1;
      dir_forget (x, x->path);
      return dir_remove_tree (x, x->parent_fd, x->base);
    }
  if (unlinkat (x->parent_fd, x->base, 0) < 0)
    return extract_fail_sys (x, errno, "unlinkat", x->path);
  return 0;
}

/* Add "path: reason" to stats.skipped and return 1, which marks the entry skipped. */
static int
entry_skip (struct extract *x, const char *reason)
{
  lua_State *L = x->L;

  lua_pushfstring (L, "%s: %s", x->path, reason);
  lua_rawseti (L, x->skipped_idx, luaL_len (L, x->skipped_idx) + 1);
  return 1;
}

/* Copy the entry's data into fd.  libarchive returns the blocks of a sparse file
   with their offsets, so seeking over the gaps leaves holes in the new file. */
static int
file_write_data (struct extract *x, struct archive *a, struct archive_entry *e, int fd)
{
  la_int64_t offset, end = 0, size;
  const void *buf;
  size_t len;
  int r;

  for (;;)
    {
      r = archive_read_data_block (a, &buf, &len, &offset);
      if (r == ARCHIVE_EOF)
        break;
      if (r < ARCHIVE_WARN)
        return extract_fail_archive (x, a);
      if (len == 0)
        continue;
      if (offset != end && lseek (fd, (off_t) offset, SEEK_SET) < 0)
        return extract_fail_sys (x, errno, "lseek", x->path);
      if (nsb_write_all (fd, buf, len) < 0)
        return extract_fail_sys (x, errno, "write", x->path);
      end = offset + (la_int64_t) len;
      x->bytes += (lua_Integer) len;
    }

  /* A hole at the end of a sparse file comes with no data block, so ftruncate makes it. */
  size = archive_entry_size_is_set (e) ? archive_entry_size (e) : end;
  if (size > end && ftruncate (fd, (off_t) size) < 0)
    return extract_fail_sys (x, errno, "ftruncate", x->path);
  return 0;
}

/* Set owner, mode, xattrs and times of the regular file open at fd. */
static int
file_apply_meta (struct extract *x, struct archive_entry *e, int fd)
{
  struct timespec times[2];
  int ret;

  if (x->same_owner && fchown (fd, archive_entry_uid (e), archive_entry_gid (e)) < 0)
    return extract_fail_sys (x, errno, "fchown", x->path);

  /* After fchown, which clears the setuid and setgid bits. */
  if (fchmod (fd, archive_entry_perm (e) & 07777) < 0)
    return extract_fail_sys (x, errno, "fchmod", x->path);

  /* After fchown, which removes security.capability. */
  ret = meta_xattrs_fd (x, e, fd);
  if (ret < 0)
    return ret;

  /* Last, because writing data and xattrs changes the times. */
  meta_times (e, times);
  if (futimens (fd, times) < 0)
    return extract_fail_sys (x, errno, "futimens", x->path);
  return 0;
}

static int
extract_file (struct extract *x, struct archive *a, struct archive_entry *e)
{
  int fd, ret;

  ret = entry_clear_name (x, S_IFREG);
  if (ret < 0)
    return ret;

  /* The name was just cleared.  O_EXCL and O_NOFOLLOW still make sure that the open
     never writes through an existing inode (a hardlink or a symlink target). */
  fd = openat (x->parent_fd, x->base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return extract_fail_sys (x, errno, "openat", x->path);
  ret = file_write_data (x, a, e, fd);
  if (ret == 0)
    ret = file_apply_meta (x, e, fd);
  close (fd);
  return ret;
}

/* Directories get owner, mode and times at the end (extract_finish_dirs). */
static int
extract_dir (struct extract *x, struct archive_entry *e)
{
  int ret;

  ret = entry_clear_name (x, S_IFDIR);
  if (ret < 0)
    return ret;

  /* 0700 until the end, so that the extracting user can write the contents. */
  if (ret == 0 && mkdirat (x->parent_fd, x->base, 0700) < 0)
    return extract_fail_sys (x, errno, "mkdirat", x->path);
  ret = meta_xattrs_at (x, e);
  if (ret < 0)
    return ret;
  return meta_defer_dir (x, e);
}

static int
extract_symlink (struct extract *x, struct archive_entry *e)
{
  const char *target = archive_entry_symlink (e);
  struct timespec times[2];
  int ret;

  if (target == NULL)
    return extract_fail (x, EINVAL, "symlink without a target");
  ret = name_check_symlink (x, target);
  if (ret < 0)
    return ret;
  ret = entry_clear_name (x, S_IFLNK);
  if (ret < 0)
    return ret;
  if (symlinkat (target, x->parent_fd, x->base) < 0)
    return extract_fail_sys (x, errno, "symlinkat", x->path);
  ret = meta_xattrs_at (x, e);
  if (ret < 0)
    return ret;
  meta_times (e, times);
  return meta_apply_at (x, archive_entry_uid (e), archive_entry_gid (e), 0, times, 1);
}

/* Link x->path to the earlier entry target, which must already be in the destination. */
static int
extract_hardlink (struct extract *x, const char *raw_target)
{
  char target[PATH_MAX];
  const char *slash, *target_base = target;
  int target_dirfd, ret;

  ret = name_normalise (x, raw_target, target, "hardlink target");
  if (ret < 0)
    return ret;
  if (target[0] == '\0')
    return extract_fail (x, EINVAL, "hardlink target '%s' is the destination directory", raw_target);

  slash = strrchr (target, '/');
  if (slash != NULL)
    {
      target[slash - target] = '\0';
      target_base = slash + 1;
    }
  target_dirfd = openat2_safe (x->dest_fd, slash != NULL ? target : ".");
  if (target_dirfd < 0 && errno == ELOOP)
    return extract_fail (x, ELOOP, "hardlink target '%s' is reached through a symlink", raw_target);
  if (target_dirfd < 0 && errno == ENOENT)
    return extract_fail (x, ENOENT, "hardlink target '%s' not found", raw_target);
  if (target_dirfd < 0)
    return extract_fail_openat2 (x, errno, target);

  ret = entry_clear_name (x, S_IFREG);
  if (ret == 0 && linkat (target_dirfd, target_base, x->parent_fd, x->base, 0) < 0)
    {
      if (errno == ENOENT)
        ret = extract_fail (x, ENOENT, "hardlink target '%s' not found", raw_target);
      else
        ret = extract_fail (x, errno, "linkat to '%s': %s", raw_target, strerror (errno));
    }
  close (target_dirfd);
  return ret;
}

/* Create a character or block device or a FIFO. */
static int
extract_node (struct extract *x, struct archive_entry *e)
{
  mode_t type = archive_entry_filetype (e);
  mode_t mode = archive_entry_perm (e) & 07777;
  int is_device = type == AE_IFCHR || type == AE_IFBLK;
  struct timespec times[2];
  int ret;

  if (is_device && x->skip_devices)
    return entry_skip (x, "device node skipped");
  ret = entry_clear_name (x, type);
  if (ret < 0)
    return ret;
  if (mknodat (x->parent_fd, x->base, type | mode, archive_entry_rdev (e)) < 0)
    {
      /* Without CAP_MKNOD (rootless), a device is skipped as with skip_devices. */
      if (errno == EPERM && is_device)
        return entry_skip (x, "device node skipped");
      return extract_fail_sys (x, errno, "mknodat", x->path);
    }
  ret = meta_xattrs_at (x, e);
  if (ret < 0)
    return ret;
  meta_times (e, times);
  return meta_apply_at (x, archive_entry_uid (e), archive_entry_gid (e), mode, times, 0);
}

/* Write entry e of a at its normalised name below the destination.  Return 0 when
   written, 1 when skipped, -1 on failure. */
static int
extract_entry_at (struct extract *x, struct archive *a, struct archive_entry *e)
{
  const char *hardlink = archive_entry_hardlink (e);

  /* libarchive reports a tar hardlink as a regular file with a link name. */
  if (hardlink != NULL)
    return extract_hardlink (x, hardlink);
  switch (archive_entry_filetype (e))
    {
    case AE_IFREG:
      return extract_file (x, a, e);
    case AE_IFDIR:
      return extract_dir (x, e);
    case AE_IFLNK:
      return extract_symlink (x, e);
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO:
      return extract_node (x, e);
    default:
      return entry_skip (x, "unsupported entry type");
    }
}

static int
extract_entry (struct extract *x, struct archive *a, struct archive_entry *e)
{
  int ret;

  x->entry = archive_entry_pathname (e);
  if (x->entry == NULL)
    return extract_fail (x, EINVAL, "entry without a name");
  ret = name_normalise (x, x->entry, x->path, "name");
  if (ret < 0)
    return ret;

  /* A "." entry carries the metadata of the destination itself. */
  if (x->path[0] == '\0')
    {
      if (archive_entry_filetype (e) != AE_IFDIR || archive_entry_hardlink (e) != NULL)
        return extract_fail (x, EINVAL, "the destination itself can only be a directory");
      x->entries++;
      return meta_defer_dir (x, e);
    }

  name_split (x);
  ret = dir_open_parent (x);
  if (ret < 0)
    return ret;
  ret = extract_entry_at (x, a, e);
  close (x->parent_fd);
  x->parent_fd = -1;
  if (ret < 0)
    return ret;
  if (ret == 0)
    x->entries++;
  return 0;
}

/* }====================================================== */


/* {====================================================== archives */

/* Extract every entry of a, starting with e, the one already read. */
static int
extract_entries (struct extract *x, struct archive *a, struct archive_entry *e)
{
  int r;

  for (;;)
    {
      int ret = extract_entry (x, a, e);

      if (ret < 0)
        return ret;
      x->entry = NULL;
      r = archive_read_next_header (a, &e);
      if (r == ARCHIVE_EOF)
        return 0;
      if (r < ARCHIVE_WARN)
        return extract_fail_archive (x, a);
    }
}

/* Read callback of the nested archive: the data of the current .deb member. */
static la_ssize_t
deb_member_read (struct archive *inner, void *data, const void **buf)
{
  struct extract *x = data;
  la_ssize_t n = archive_read_data (x->outer, x->member_buf, sizeof x->member_buf);

  if (n < 0)
    {
      const char *s = archive_error_string (x->outer);

      archive_set_error (inner, archive_errno (x->outer), "%s", s != NULL ? s : "read failed");
      return -1;
    }
  *buf = x->member_buf;
  return n;
}

static struct archive *
archive_reader_new (void)
{
  struct archive *a = archive_read_new ();

  if (a == NULL)
    return NULL;
  archive_read_support_filter_all (a);
  archive_read_support_format_tar (a);
  archive_read_support_format_gnutar (a);
  return a;
}

/* Extract the data.tar member of the .deb x->outer, whose first member is e. */
static int
extract_deb (struct extract *x, struct archive_entry *e)
{
  int r;

  for (;;)
    {
      const char *name = archive_entry_pathname (e);

      if (name != NULL && (strcmp (name, "data.tar") == 0 || strncmp (name, "data.tar.", 9) == 0))
        break;
      r = archive_read_next_header (x->outer, &e);
      if (r == ARCHIVE_EOF)
        return extract_fail (x, EINVAL, "no data.tar member: not a Debian package");
      if (r < ARCHIVE_WARN)
        return extract_fail_archive (x, x->outer);
    }

  x->inner = archive_reader_new ();
  if (x->inner == NULL)
    return extract_fail (x, ENOMEM, "%s", strerror (ENOMEM));
  if (archive_read_open (x->inner, x, NULL, deb_member_read, NULL) != ARCHIVE_OK)
    return extract_fail_archive (x, x->inner);
  r = archive_read_next_header (x->inner, &e);
  if (r == ARCHIVE_EOF)
    return 0;
  if (r < ARCHIVE_WARN)
    return extract_fail_archive (x, x->inner);
  return extract_entries (x, x->inner, e);
}

/* Open the destination and the archive, then extract by format. */
static int
extract_run (struct extract *x)
{
  struct archive_entry *e;
  struct stat st;
  int r;

  x->dest_fd = open (x->dest_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (x->dest_fd < 0)
    return extract_fail (x, errno, "destination '%s': %s", x->dest_path, strerror (errno));
  if (fstat (x->dest_fd, &st) < 0)
    return extract_fail (x, errno, "destination '%s': %s", x->dest_path, strerror (errno));
  x->dest_uid = st.st_uid;
  x->dest_gid = st.st_gid;

  x->archive_fd = open (x->archive_path, O_RDONLY | O_CLOEXEC);
  if (x->archive_fd < 0)
    return extract_fail (x, errno, "%s", strerror (errno));
  x->outer = archive_reader_new ();
  if (x->outer == NULL)
    return extract_fail (x, ENOMEM, "%s", strerror (ENOMEM));
  archive_read_support_format_ar (x->outer);
  if (archive_read_open_fd (x->outer, x->archive_fd, 65536) != ARCHIVE_OK)
    return extract_fail_archive (x, x->outer);

  r = archive_read_next_header (x->outer, &e);
  if (r == ARCHIVE_EOF)
    return 0;
  if (r < ARCHIVE_WARN)
    return extract_fail_archive (x, x->outer);
  if ((archive_format (x->outer) & ARCHIVE_FORMAT_BASE_MASK) == ARCHIVE_FORMAT_AR)
    return extract_deb (x, e);
  return extract_entries (x, x->outer, e);
}

static int
dir_meta_compare (const void *pa, const void *pb)
{
  const struct dir_meta *a = pa, *b = pb;
  int c;

  if (a->depth != b->depth)
    return a->depth > b->depth ? -1 : 1;
  c = strcmp (a->path, b->path);
  if (c != 0)
    return c;
  return a->order > b->order ? -1 : a->order < b->order;
}

/* Apply the deferred metadata of one directory. */
static int
dir_apply_meta (struct extract *x, struct dir_meta *d)
{
  struct stat st;
  int ret;

  x->entry = d->path[0] != '\0' ? d->path : ".";
  if (d->path[0] == '\0')
    {
      strcpy (x->path, ".");
      strcpy (x->parent, ".");
      x->base = x->path;
    }
  else
    {
      strcpy (x->path, d->path);
      name_split (x);
    }
  x->parent_fd = openat2_safe (x->dest_fd, x->parent);
  if (x->parent_fd < 0)
    return extract_fail_openat2 (x, errno, x->parent);

  /* fchmodat follows symlinks, so check that the name is still the directory. */
  if (fstatat (x->parent_fd, x->base, &st, AT_SYMLINK_NOFOLLOW) < 0)
    ret = extract_fail_sys (x, errno, "fstatat", x->path);
  else if (!S_ISDIR (st.st_mode))
    ret = extract_fail (x, ENOTDIR, "'%s' is no longer a directory", x->path);
  else
    ret = meta_apply_at (x, d->uid, d->gid, d->mode, d->times, 0);
  close (x->parent_fd);
  x->parent_fd = -1;
  return ret;
}

/* Apply the owner, mode and times of every directory, deepest first.  Writing into a
   directory changes its mtime, and without root a read-only (0500) directory rejects
   new entries, so this runs after every entry is written. */
static int
extract_finish_dirs (struct extract *x)
{
  size_t i;

  if (x->ndirs > 0)
    qsort (x->dirs, x->ndirs, sizeof *x->dirs, dir_meta_compare);
  for (i = 0; i < x->ndirs; i++)
    {
      struct dir_meta *d = &x->dirs[i];
      int ret;

      /* Sorted by path and then latest first, so a repeated path was applied just before. */
      if (i > 0 && strcmp (d->path, x->dirs[i - 1].path) == 0)
        continue;
      if (d->removed)
        continue;
      ret = dir_apply_meta (x, d);
      if (ret < 0)
        return ret;
    }
  x->entry = NULL;
  return 0;
}

/* }====================================================== */


/* {====================================================== Lua interface */

static const char *const extract_fields[] = { "skip_devices", "same_owner", NULL };

static int
extract_release (lua_State *L)
{
  struct extract *x = luaL_checkudata (L, 1, EXTRACT_META);
  size_t i;

  if (x->inner != NULL)
    archive_read_free (x->inner);
  if (x->outer != NULL)
    archive_read_free (x->outer);
  x->inner = x->outer = NULL;
  if (x->parent_fd >= 0)
    close (x->parent_fd);
  if (x->dest_fd >= 0)
    close (x->dest_fd);
  if (x->archive_fd >= 0)
    close (x->archive_fd);
  x->parent_fd = x->dest_fd = x->archive_fd = -1;
  for (i = 0; i < x->ndirs; i++)
    free (x->dirs[i].path);
  free (x->dirs);
  x->dirs = NULL;
  x->ndirs = x->dirs_cap = 0;
  return 0;
}

/* Push the extraction state; it owns nothing yet, so releasing it is harmless. */
static struct extract *
extract_new (lua_State *L)
{
  struct extract *x = lua_newuserdatauv (L, sizeof *x, 0);

  memset (x, 0, sizeof *x);
  x->archive_fd = x->dest_fd = x->parent_fd = -1;
  luaL_setmetatable (L, EXTRACT_META);
  return x;
}

static void
push_stats (lua_State *L, struct extract *x)
{
  lua_createtable (L, 0, 3);
  lua_pushinteger (L, x->entries);
  lua_setfield (L, -2, "entries");
  lua_pushinteger (L, x->bytes);
  lua_setfield (L, -2, "bytes");
  lua_pushvalue (L, x->skipped_idx);
  lua_setfield (L, -2, "skipped");
}

/* core.extract(archive, dest [, opts]) extracts a tar (uncompressed or in any
   compression libarchive reads) or the data.tar member of a Debian package into
   the existing directory dest.  An entry that would land outside dest (an absolute
   name, a ".." component, a parent that is a symlink, a hardlink target outside, a
   relative symlink target that climbs out) fails the whole extraction.
   opts.skip_devices: skip character and block devices (default false).  Devices
     are also skipped when mknodat fails with EPERM.  FIFOs are always created.
   opts.same_owner: give entries the archive's numeric uid and gid (default true
     when the effective uid is 0).  Otherwise they belong to the extracting user.
   Returns { entries = number written, bytes = bytes of file data written,
   skipped = list of "path: reason" }, or nil, message, errno.  After a failure dest
   contains the entries written so far, and removing them is the caller's job. */
static int
archive_extract (lua_State *L)
{
  struct extract *x;
  int ret, skip_devices, same_owner;

  luaL_checkstring (L, 1);
  luaL_checkstring (L, 2);
  if (!lua_isnoneornil (L, 3))
    {
      luaL_checktype (L, 3, LUA_TTABLE);
      nsb_check_fields (L, 3, extract_fields);
    }
  skip_devices = nsb_opt_bool_field (L, 3, "skip_devices", 0);
  same_owner = nsb_opt_bool_field (L, 3, "same_owner", geteuid () == 0);
  lua_settop (L, 3);
  lua_newtable (L);

  x = extract_new (L);
  lua_toclose (L, 5);
  x->L = L;
  x->skipped_idx = 4;
  x->archive_path = lua_tostring (L, 1);
  x->dest_path = lua_tostring (L, 2);
  x->skip_devices = skip_devices;
  x->same_owner = same_owner;

  ret = extract_run (x);
  if (ret == 0)
    ret = extract_finish_dirs (x);

  /* Release before returning, so the caller sees every descriptor closed. */
  lua_pushcfunction (L, extract_release);
  lua_pushvalue (L, 5);
  lua_call (L, 1, 0);
  if (ret < 0)
    {
      luaL_pushfail (L);
      lua_pushstring (L, x->msg);
      lua_pushinteger (L, x->err);
      return 3;
    }
  push_stats (L, x);
  return 1;
}

static const luaL_Reg extract_meta[] = {
  { "__gc", extract_release },
  { "__close", extract_release },
  { NULL, NULL }
};

static const luaL_Reg archive_functions[] = {
  { "extract", archive_extract },
  { NULL, NULL }
};

/* }====================================================== */

void
nsb_open_archive (lua_State *L)
{
  luaL_newmetatable (L, EXTRACT_META);
  luaL_setfuncs (L, extract_meta, 0);
  lua_pop (L, 1);
  luaL_setfuncs (L, archive_functions, 0);
}
