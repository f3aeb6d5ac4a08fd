/* SPDX-License-Identifier: MIT */
/* The directory walks of nsbuild.core: rmtree, du and copy_tree, over one walker
   that keeps one directory fd open at a time, never follows a symlink inside the
   tree and never crosses a mount point.

   Lua functions:
     core.rmtree(path)   core.du(path)   core.copy_tree(src, dst) */
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

/* {====================================================== directory walks

   rmtree, du and copy_tree walk a tree depth first with one directory descriptor open
   at a time, so that the depth of a tree is limited by memory, not by RLIMIT_NOFILE.
   Each directory's names are read when it is entered.  After its last entry the walk
   returns to the parent through "..", which must be the directory it came from. */

#define WALK_ENTER 1  /* a visit's request to descend into the directory it saw */

struct walk_dir {
  struct statx stx;      /* the directory, as seen before it was entered */
  size_t name_off;       /* where its name starts in walk.path */
  char *names;           /* its entries, each followed by NUL */
  size_t names_len, names_cap, next;
};

struct walk;

struct walk_ops {
  /* Handle the entry name of dirfd.  Returns WALK_ENTER to descend into a directory,
     0 to go on, or -1 after walk_fail. */
  int (*visit) (struct walk *w, int dirfd, const char *name, const struct statx *stx);
  /* Optional: called once the directory just entered is open as fd. */
  int (*enter) (struct walk *w, int fd);
  /* Optional: called after the last entry of directory fd, with its parent open. */
  int (*leave) (struct walk *w, int fd, int parentfd, const char *name);
  /* Optional: make dirfd (and its entry name unless NULL) accessible after EACCES.
     Returns 0 when the walk should retry. */
  int (*denied) (struct walk *w, int dirfd, const char *name);
};

struct walk {
  const struct walk_ops *ops;
  int topfd;             /* directory of the top entry, owned by the caller */
  dev_t top_dev;         /* device of topfd, unknown when topfd is AT_FDCWD */
  int fd;                /* the directory dirs[depth - 1], or -1 at the top */
  struct walk_dir *dirs;
  size_t depth, dirs_cap;
  char *path;            /* path of the entry being handled, for messages */
  size_t path_len, path_cap;
  int err;               /* errno of the failure */
  const char *op;        /* operation that failed */
};

static int
walk_fail (struct walk *w, const char *op, int err)
{
  w->op = op;
  w->err = err;
  return -1;
}

static dev_t
stx_dev (const struct statx *stx)
{
  return makedev (stx->stx_dev_major, stx->stx_dev_minor);
}

static int
same_inode (const struct statx *a, const struct statx *b)
{
  return stx_dev (a) == stx_dev (b) && a->stx_ino == b->stx_ino;
}

/* Whether stx carries the mount-root attribute (Linux 5.8 and newer report it). */
static int
has_mount_root_attr (const struct statx *stx)
{
  return (stx->stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)
         && (stx->stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

/* Whether the entry stx of the current directory is a mount point.  Another file
   system shows as another st_dev, but a bind mount of the same file system keeps
   st_dev, so only the mount-root attribute reveals it.  At the top of a walk started
   from AT_FDCWD the parent is unknown and only the attribute counts. */
static int
walk_at_mount (const struct walk *w, const struct statx *stx)
{
  if (has_mount_root_attr (stx))
    return 1;
  if (w->depth > 0)
    return stx_dev (stx) != stx_dev (&w->dirs[w->depth - 1].stx);
  return w->topfd != AT_FDCWD && stx_dev (stx) != w->top_dev;
}

static int
walk_path_append (struct walk *w, const char *name)
{
  size_t len = strlen (name);
  char *p = fs_grow (w->path, &w->path_cap, w->path_len + len + 2, 1);

  if (p == NULL)
    return walk_fail (w, "walk", ENOMEM);
  w->path = p;
  w->path[w->path_len++] = '/';
  memcpy (w->path + w->path_len, name, len + 1);
  w->path_len += len;
  return 0;
}

static void
walk_path_truncate (struct walk *w, size_t len)
{
  w->path_len = len;
  w->path[len] = '\0';
}

/* Stat the entry name of dirfd without following a symlink or triggering an automount.
   Returns 0 or an errno value. */
static int
walk_stat (struct walk *w, int dirfd, const char *name, struct statx *stx)
{
  int flags = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT;
  int err;

  if (statx (dirfd, name, flags, STATX_BASIC_STATS, stx) == 0)
    return 0;
  err = errno;
  if (err != EACCES || w->ops->denied == NULL || w->ops->denied (w, dirfd, NULL) < 0)
    return err;
  if (statx (dirfd, name, flags, STATX_BASIC_STATS, stx) == 0)
    return 0;
  return errno;
}

/* Read the names in directory fd into dir->names. */
static int
walk_read_names (struct walk *w, int fd, struct walk_dir *dir)
{
  int copy = fcntl (fd, F_DUPFD_CLOEXEC, 0);  /* closedir closes the descriptor it reads */
  struct dirent *entry;
  DIR *stream;
  int err;

  if (copy < 0)
    return walk_fail (w, "dup", errno);
  stream = fdopendir (copy);
  if (stream == NULL)
    {
      err = errno;
      close (copy);
      return walk_fail (w, "opendir", err);
    }
  for (errno = 0; (entry = readdir (stream)) != NULL; errno = 0)
    {
      size_t len = strlen (entry->d_name) + 1;
      char *names;

      if (fs_is_dot_or_dotdot (entry->d_name))
        continue;
      names = fs_grow (dir->names, &dir->names_cap, dir->names_len + len, 1);
      if (names == NULL)
        break;
      dir->names = names;
      memcpy (dir->names + dir->names_len, entry->d_name, len);
      dir->names_len += len;
    }
  err = errno;
  closedir (stream);
  return err != 0 ? walk_fail (w, "readdir", err) : 0;
}

/* Open the directory name of dirfd, which the visit saw as stx, and store its current
   statx in now.  Returns the descriptor, or -1 after walk_fail. */
static int
walk_open_dir (struct walk *w, int dirfd, const char *name, const struct statx *stx,
               struct statx *now)
{
  const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  int fd, err;

  fd = openat (dirfd, name, flags);
  if (fd < 0 && errno == EACCES && w->ops->denied != NULL && w->ops->denied (w, dirfd, name) == 0)
    fd = openat (dirfd, name, flags);
  if (fd < 0)
    return walk_fail (w, "open", errno);

  /* Between the visit and the open, the entry may have been replaced or mounted over. */
  err = statx (fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, now) < 0 ? errno : 0;
  if (err == 0 && !same_inode (now, stx))
    err = EAGAIN;
  if (err == 0 && has_mount_root_attr (now) != has_mount_root_attr (stx))
    err = EAGAIN;
  if (err != 0)
    {
      close (fd);
      return walk_fail (w, "open", err);
    }
  return fd;
}

/* Open the directory name of dirfd, which the visit saw as stx, read its names and make
   it the current directory. */
static int
walk_enter (struct walk *w, int dirfd, const char *name, const struct statx *stx, size_t name_off)
{
  struct walk_dir *dirs, *dir;
  struct statx now;
  int fd = walk_open_dir (w, dirfd, name, stx, &now);

  if (fd < 0)
    return -1;
  dirs = fs_grow (w->dirs, &w->dirs_cap, w->depth + 1, sizeof *dirs);
  if (dirs == NULL)
    {
      close (fd);
      return walk_fail (w, "open", ENOMEM);
    }

  w->dirs = dirs;
  dir = &w->dirs[w->depth++];
  memset (dir, 0, sizeof *dir);
  dir->stx = now;
  dir->name_off = name_off;
  if (w->fd >= 0)
    close (w->fd);
  w->fd = fd;
  if (walk_read_names (w, fd, dir) < 0)
    return -1;
  return w->ops->enter != NULL ? w->ops->enter (w, fd) : 0;
}

/* Finish the current directory: open its parent, let leave handle it, and make the
   parent current. */
static int
walk_leave (struct walk *w)
{
  struct walk_dir *dir = &w->dirs[w->depth - 1];
  int parent = w->topfd, err;
  struct statx stx;

  if (w->depth > 1)
    {
      parent = openat (w->fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (parent < 0)
        return walk_fail (w, "open parent of", errno);
      /* A directory moved away during the walk would lead elsewhere, so that fails
         with EAGAIN. */
      err = statx (parent, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx) < 0 ? errno : 0;
      if (err == 0 && !same_inode (&stx, &w->dirs[w->depth - 2].stx))
        err = EAGAIN;
      if (err != 0)
        {
          close (parent);
          return walk_fail (w, "open parent of", err);
        }
    }
  if (w->ops->leave != NULL && w->ops->leave (w, w->fd, parent, w->path + dir->name_off) < 0)
    {
      if (parent != w->topfd)
        close (parent);
      return -1;
    }

  close (w->fd);
  free (dir->names);
  w->depth--;
  w->fd = w->depth > 0 ? parent : -1;
  if (w->depth > 0)
    walk_path_truncate (w, dir->name_off - 1);
  return 0;
}

/* Visit the entry name of the current directory, and enter it if the visit requests it. */
static int
walk_step (struct walk *w, const char *name)
{
  size_t parent_len = w->path_len;
  struct statx stx;
  int rc;

  if (walk_path_append (w, name) < 0)
    return -1;
  rc = walk_stat (w, w->fd, name, &stx);
  if (rc == ENOENT)  /* removed since the directory was read */
    rc = 0;
  else if (rc != 0)
    return walk_fail (w, "stat", rc);
  else
    rc = w->ops->visit (w, w->fd, name, &stx);

  if (rc == WALK_ENTER)
    return walk_enter (w, w->fd, name, &stx, parent_len + 1);
  if (rc == 0)
    walk_path_truncate (w, parent_len);
  return rc;
}

/* Handle the entries of the current directory and of those below, until the walk is
   back at the top. */
static int
walk_loop (struct walk *w)
{
  const char *name;
  int rc;

  while (w->depth > 0)
    {
      struct walk_dir *dir = &w->dirs[w->depth - 1];

      if (dir->next == dir->names_len)
        rc = walk_leave (w);
      else
        {
          name = dir->names + dir->next;
          dir->next += strlen (name) + 1;
          rc = walk_step (w, name);
        }
      if (rc < 0)
        return -1;
    }
  return 0;
}

/* Walk the entry name of topfd.  path, which ends with name, is the entry's path in
   messages. */
static int
walk_run (struct walk *w, int topfd, const char *path, const char *name)
{
  struct statx stx;
  struct stat st;
  int rc;

  w->topfd = topfd;
  w->fd = -1;
  w->path_len = strlen (path);
  w->path = fs_grow (NULL, &w->path_cap, w->path_len + 1, 1);
  if (w->path == NULL)
    return walk_fail (w, "walk", ENOMEM);
  memcpy (w->path, path, w->path_len + 1);
  if (topfd != AT_FDCWD && fstat (topfd, &st) < 0)
    return walk_fail (w, "stat", errno);
  w->top_dev = topfd != AT_FDCWD ? st.st_dev : 0;

  rc = walk_stat (w, topfd, name, &stx);
  if (rc != 0)
    return walk_fail (w, "stat", rc);
  rc = w->ops->visit (w, topfd, name, &stx);
  if (rc != WALK_ENTER)
    return rc;
  if (walk_enter (w, topfd, name, &stx, w->path_len - strlen (name)) < 0)
    return -1;
  return walk_loop (w);
}

static int
walk_push_failure (lua_State *L, const struct walk *w, const char *path)
{
  return nsb_fail_path (L, w->err, w->op, w->path != NULL ? w->path : path);
}

static void
walk_free (struct walk *w)
{
  while (w->depth > 0)
    free (w->dirs[--w->depth].names);
  if (w->fd >= 0)
    close (w->fd);
  w->fd = -1;
  free (w->dirs);
  free (w->path);
}

/* A set of inodes, each with an optional path: open addressing, linear probing. */
struct inode_entry {
  dev_t dev;
  ino_t ino;
  char *path;
  int used;
};

struct inode_set {
  struct inode_entry *slots;
  size_t cap, count;  /* cap is 0 or a power of two */
};

static size_t
inode_hash (dev_t dev, ino_t ino)
{
  return (size_t) ((ino ^ (dev << 32 | dev >> 32)) * 0x9e3779b97f4a7c15u);
}

static int
inode_set_resize (struct inode_set *set)
{
  size_t cap = set->cap > 0 ? set->cap * 2 : 64, i;
  struct inode_entry *slots = calloc (cap, sizeof *slots);

  if (slots == NULL)
    return -1;
  for (i = 0; i < set->cap; i++)
    {
      size_t j = inode_hash (set->slots[i].dev, set->slots[i].ino) & (cap - 1);

      if (!set->slots[i].used)
        continue;
      while (slots[j].used)
        j = (j + 1) & (cap - 1);
      slots[j] = set->slots[i];
    }
  free (set->slots);
  set->slots = slots;
  set->cap = cap;
  return 0;
}

/* Find the entry of (dev, ino), or add it when absent, and set *found to 1 when it was
   present.  Returns NULL when memory is exhausted. */
static struct inode_entry *
inode_set_get (struct inode_set *set, dev_t dev, ino_t ino, int *found)
{
  size_t i;

  if (2 * (set->count + 1) > set->cap && inode_set_resize (set) < 0)
    return NULL;
  for (i = inode_hash (dev, ino) & (set->cap - 1); set->slots[i].used; i = (i + 1) & (set->cap - 1))
    if (set->slots[i].dev == dev && set->slots[i].ino == ino)
      {
        *found = 1;
        return &set->slots[i];
      }
  set->slots[i].used = 1;
  set->slots[i].dev = dev;
  set->slots[i].ino = ino;
  set->count++;
  *found = 0;
  return &set->slots[i];
}

static void
inode_set_free (struct inode_set *set)
{
  size_t i;

  for (i = 0; i < set->cap; i++)
    free (set->slots[i].path);
  free (set->slots);
}

/* }====================================================== */


/* {====================================================== rmtree */

/* Give the owner rwx on the directory dirfd, and on its entry name unless name is NULL,
   so that an unprivileged owner can empty and remove directories such as the mode 000
   "work/work" that overlayfs leaves.  The parent of the top entry is not part of the
   tree and is left alone. */
static int
rmtree_denied (struct walk *w, int dirfd, const char *name)
{
  struct stat st;

  if (dirfd != w->topfd)
    {
      if (fstat (dirfd, &st) < 0)
        return -1;
      if ((st.st_mode & S_IRWXU) != S_IRWXU && fchmod (dirfd, (st.st_mode & 07777) | S_IRWXU) < 0)
        return -1;
    }
  if (name == NULL)
    return 0;
  if (fstatat (dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR (st.st_mode))
    return -1;
  return fchmodat (dirfd, name, (st.st_mode & 07777) | S_IRWXU, AT_SYMLINK_NOFOLLOW);
}

/* Remove the entry name of dirfd, a directory when flags is AT_REMOVEDIR.  An entry
   that is already gone counts as removed. */
static int
rmtree_unlink (struct walk *w, int dirfd, const char *name, int flags)
{
  const char *op = flags & AT_REMOVEDIR ? "rmdir" : "unlink";
  int err;

  if (unlinkat (dirfd, name, flags) == 0 || errno == ENOENT)
    return 0;
  err = errno;
  if ((err == EACCES || err == EPERM) && dirfd != w->topfd && rmtree_denied (w, dirfd, NULL) == 0)
    {
      if (unlinkat (dirfd, name, flags) == 0 || errno == ENOENT)
        return 0;
      err = errno;
    }
  return walk_fail (w, op, err);
}

static int
rmtree_visit (struct walk *w, int dirfd, const char *name, const struct statx *stx)
{
  if (!S_ISDIR (stx->stx_mode))
    return rmtree_unlink (w, dirfd, name, 0);  /* a symlink is removed, never followed */
  if (walk_at_mount (w, stx))
    return walk_fail (w, "rmtree", EBUSY);
  return WALK_ENTER;
}

static int
rmtree_leave (struct walk *w, int fd, int parentfd, const char *name)
{
  (void) fd;
  return rmtree_unlink (w, parentfd, name, AT_REMOVEDIR);
}

static const struct walk_ops rmtree_ops = {
  .visit = rmtree_visit,
  .leave = rmtree_leave,
  .denied = rmtree_denied,
};

/* core.rmtree(path) removes path and everything below it.  An absent path counts as
   removed.  It never follows a symlink, path itself included, and fails with EBUSY on
   a mount point, which it leaves as it is with its contents.  Entries visited before
   a failure stay removed. */
static int
fs_rmtree (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  struct walk w = { .ops = &rmtree_ops, .fd = -1 };
  const char *parent, *name, *display_path;
  size_t len;
  int topfd, rc;

  luaL_argcheck (L, *path != '\0', 1, "empty path");
  len = fs_push_split_path (L, path);
  parent = lua_tostring (L, -2);
  name = lua_tostring (L, -1);
  display_path = lua_pushlstring (L, path, len);
  if (fs_is_dot_or_dotdot (name))  /* rm -r rejects them too, and "/" splits into "/" and "." */
    return nsb_fail_path (L, EINVAL, "rmtree", path);

  topfd = open (parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (topfd < 0)
    return errno == ENOENT ? nsb_ok (L) : nsb_fail_path (L, errno, "open", parent);
  rc = walk_run (&w, topfd, display_path, name);
  if (rc < 0 && !(w.err == ENOENT && w.depth == 0))
    rc = walk_push_failure (L, &w, display_path);
  else
    rc = nsb_ok (L);
  walk_free (&w);
  close (topfd);
  return rc;
}

/* }====================================================== */


/* {====================================================== du */

struct du {
  struct walk w;  /* first, so that the callbacks can cast */
  struct inode_set seen;
  lua_Integer bytes, entries;
};

static int
du_visit (struct walk *w, int dirfd, const char *name, const struct statx *stx)
{
  struct du *du = (struct du *) w;
  int found;

  (void) dirfd;
  (void) name;
  if (w->depth > 0 && walk_at_mount (w, stx))
    return 0;  /* another file system, or a bind mount: not part of the tree */
  if (!S_ISDIR (stx->stx_mode) && stx->stx_nlink > 1)
    {
      if (inode_set_get (&du->seen, stx_dev (stx), stx->stx_ino, &found) == NULL)
        return walk_fail (w, "du", ENOMEM);
      if (found)
        return 0;
    }
  du->bytes += (lua_Integer) stx->stx_blocks * 512;
  du->entries++;
  return S_ISDIR (stx->stx_mode) ? WALK_ENTER : 0;
}

static const struct walk_ops du_ops = { .visit = du_visit };

/* core.du(path) returns the bytes allocated to path and the tree below it, and the
   number of entries counted.  Symlinks are not followed, mount points below path are
   skipped, and an inode with several links is counted once. */
static int
fs_du (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  struct du du = { .w = { .ops = &du_ops, .fd = -1 } };
  int rc = walk_run (&du.w, AT_FDCWD, path, path);

  if (rc < 0)
    rc = walk_push_failure (L, &du.w, path);
  else
    {
      lua_pushinteger (L, du.bytes);
      lua_pushinteger (L, du.entries);
      rc = 2;
    }
  walk_free (&du.w);
  inode_set_free (&du.seen);
  return rc;
}

/* }====================================================== */


/* {====================================================== copy_tree */

struct file_id {
  dev_t dev;
  ino_t ino;
};

struct copy_tree {
  struct walk w;          /* first, so that the callbacks can cast */
  int dst_parent;         /* directory that receives the copy, owned by the binding */
  const char *dst_name;   /* name of the copy in dst_parent */
  int dst_fd;             /* copy of the source directory being walked */
  struct file_id *dst_dirs;  /* copies entered so far, to check ".." on the way back */
  size_t dst_depth, dst_cap;
  size_t src_len;         /* length of the source path at the start of w.path */
  int dst_failed;         /* the failure concerns the copy, not the source */
  struct inode_set links; /* source inodes with several links, and their first copy */
};

static int
copy_fail_dst (struct copy_tree *c, const char *op, int err)
{
  c->dst_failed = 1;
  return walk_fail (&c->w, op, err);
}

/* The name of the entry being copied in its new directory. */
static const char *
copy_dst_name (const struct copy_tree *c, const char *name)
{
  return c->w.depth == 0 ? c->dst_name : name;
}

/* Path of fd for the *xattr calls, which reject descriptors opened with O_PATH but
   follow this magic link to the very inode, even a symlink.  So copying the xattrs of
   symlinks, devices, fifos and sockets needs /proc. */
static void
proc_fd_path (char path[32], int fd)
{
  snprintf (path, 32, "/proc/self/fd/%d", fd);
}

static ssize_t
xattr_list (int fd, int by_proc, char *names, size_t size)
{
  char path[32];

  if (!by_proc)
    return flistxattr (fd, names, size);
  proc_fd_path (path, fd);
  return listxattr (path, names, size);
}

static ssize_t
xattr_get (int fd, int by_proc, const char *name, char *value, size_t size)
{
  char path[32];

  if (!by_proc)
    return fgetxattr (fd, name, value, size);
  proc_fd_path (path, fd);
  return getxattr (path, name, value, size);
}

static int
xattr_set (int fd, int by_proc, const char *name, const char *value, size_t size)
{
  char path[32];

  if (!by_proc)
    return fsetxattr (fd, name, value, size, 0);
  proc_fd_path (path, fd);
  return setxattr (path, name, value, size, 0);
}

/* Read the xattr names of fd into *buf, or the value of the xattr name unless name is
   NULL.  Returns the length, or -1 with errno set. */
static ssize_t
xattr_read (int fd, int by_proc, const char *name, char **buf, size_t *cap)
{
  for (;;)
    {
      ssize_t size = name ? xattr_get (fd, by_proc, name, NULL, 0)
                          : xattr_list (fd, by_proc, NULL, 0);
      ssize_t n;
      char *p;

      if (size <= 0)
        return size;
      p = fs_grow (*buf, cap, (size_t) size, 1);
      if (p == NULL)
        return -1;
      *buf = p;
      n = name ? xattr_get (fd, by_proc, name, *buf, *cap) : xattr_list (fd, by_proc, *buf, *cap);
      if (n >= 0 || errno != ERANGE)  /* ERANGE means it grew between the two calls */
        return n;
    }
}

/* Copy every xattr of src to dst.  Set by_proc when both were opened with O_PATH. */
static int
copy_xattrs (struct copy_tree *c, int src, int dst, int by_proc)
{
  char *names = NULL, *value = NULL;
  size_t names_cap = 0, value_cap = 0;
  ssize_t len, i, n;
  int rc = 0;

  len = xattr_read (src, by_proc, NULL, &names, &names_cap);
  if (len < 0 && errno != ENOTSUP)  /* a file system without xattrs has none to copy */
    rc = walk_fail (&c->w, "listxattr", errno);
  for (i = 0; rc == 0 && i < len; i += (ssize_t) strlen (names + i) + 1)
    {
      n = xattr_read (src, by_proc, names + i, &value, &value_cap);
      if (n < 0 && errno == ENODATA)  /* removed since it was listed */
        continue;
      if (n < 0)
        rc = walk_fail (&c->w, "getxattr", errno);
      else if (xattr_set (dst, by_proc, names + i, value, (size_t) n) < 0)
        rc = copy_fail_dst (c, "setxattr", errno);
    }
  free (names);
  free (value);
  return rc;
}

static void
stx_times (const struct statx *stx, struct timespec times[2])
{
  times[0].tv_sec = stx->stx_atime.tv_sec;
  times[0].tv_nsec = stx->stx_atime.tv_nsec;
  times[1].tv_sec = stx->stx_mtime.tv_sec;
  times[1].tv_nsec = stx->stx_mtime.tv_nsec;
}

/* Copy owner, xattrs, mode and times from src to dst, both open for I/O.  The owner
   comes first because chown clears the setuid and setgid bits and the
   security.capability xattr.  The xattrs precede chmod because an unprivileged owner
   needs write permission to set user.* ones.  The times come last. */
static int
copy_meta_fd (struct copy_tree *c, int src, int dst, const struct statx *stx)
{
  struct timespec times[2];

  if (fchown (dst, stx->stx_uid, stx->stx_gid) < 0)
    return copy_fail_dst (c, "chown", errno);
  if (copy_xattrs (c, src, dst, 0) < 0)
    return -1;
  if (fchmod (dst, stx->stx_mode & 07777) < 0)
    return copy_fail_dst (c, "chmod", errno);
  stx_times (stx, times);
  if (futimens (dst, times) < 0)
    return copy_fail_dst (c, "utimensat", errno);
  return 0;
}

/* The same for a symlink, device, fifo or socket: src and dst are opened with O_PATH,
   which neither follows a symlink nor opens a device, and dname is dst in c->dst_fd. */
static int
copy_meta_path (struct copy_tree *c, int src, int dst, const char *dname, const struct statx *stx)
{
  struct timespec times[2];
  char path[32];

  if (fchownat (dst, "", stx->stx_uid, stx->stx_gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
    return copy_fail_dst (c, "chown", errno);
  if (copy_xattrs (c, src, dst, 1) < 0)
    return -1;
  proc_fd_path (path, dst);
  /* Symlinks have no mode of their own. */
  if (!S_ISLNK (stx->stx_mode) && chmod (path, stx->stx_mode & 07777) < 0)
    return copy_fail_dst (c, "chmod", errno);
  stx_times (stx, times);
  if (utimensat (c->dst_fd, dname, times, AT_SYMLINK_NOFOLLOW) < 0)
    return copy_fail_dst (c, "utimensat", errno);
  return 0;
}

static int
copy_meta_at (struct copy_tree *c, int dirfd, const char *name, const char *dname,
              const struct statx *stx)
{
  int src, dst, rc;

  src = openat (dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (src < 0)
    return walk_fail (&c->w, "open", errno);
  dst = openat (c->dst_fd, dname, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (dst < 0)
    rc = copy_fail_dst (c, "open", errno);
  else
    {
      rc = copy_meta_path (c, src, dst, dname, stx);
      close (dst);
    }
  close (src);
  return rc;
}

static int
copy_data_rw (struct copy_tree *c, int src, int dst)
{
  char buf[65536];

  for (;;)
    {
      ssize_t n = read (src, buf, sizeof buf);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return walk_fail (&c->w, "read", errno);
      if (n == 0)
        return 0;
      if (nsb_write_all (dst, buf, (size_t) n) < 0)
        return copy_fail_dst (c, "write", errno);
    }
}

/* Copy the contents of src, of size bytes, to dst with copy_file_range, or with read
   and write where the kernel rejects it (EXDEV between some file systems, EINVAL or
   EOPNOTSUPP where one lacks support).  procfs and sysfs files report size 0 and make
   copy_file_range return 0 at once, so that case falls back as well.
   NOTE: holes in sparse files are filled, not preserved. */
static int
copy_data (struct copy_tree *c, int src, int dst, uint64_t size)
{
  int copied = 0;

  for (;;)
    {
      ssize_t n = copy_file_range (src, NULL, dst, NULL, (size_t) 1 << 30, 0);

      if (n > 0)
        copied = 1;
      else if (n == 0)
        return copied || size == 0 ? 0 : copy_data_rw (c, src, dst);
      else if (errno == EINTR)
        continue;
      else if (!copied && (errno == EXDEV || errno == EINVAL || errno == ENOSYS
                           || errno == EOPNOTSUPP))
        return copy_data_rw (c, src, dst);
      else
        return copy_fail_dst (c, "copy_file_range", errno);
    }
}

static int
copy_file (struct copy_tree *c, int dirfd, const char *name, const char *dname,
           const struct statx *stx)
{
  int src, dst, rc;

  src = openat (dirfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
  if (src < 0)
    return walk_fail (&c->w, "open", errno);
  dst = openat (c->dst_fd, dname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                S_IRUSR | S_IWUSR);
  if (dst < 0)
    {
      rc = copy_fail_dst (c, "open", errno);
      close (src);
      return rc;
    }
  rc = copy_data (c, src, dst, stx->stx_size);
  if (rc == 0)
    rc = copy_meta_fd (c, src, dst, stx);
  close (src);
  if (close (dst) < 0 && rc == 0)
    rc = copy_fail_dst (c, "close", errno);
  return rc;
}

static int
copy_symlink (struct copy_tree *c, int dirfd, const char *name, const char *dname,
              const struct statx *stx)
{
  char target[PATH_MAX];
  ssize_t n = readlinkat (dirfd, name, target, sizeof target);

  if (n < 0)
    return walk_fail (&c->w, "readlink", errno);
  if ((size_t) n == sizeof target)  /* Linux limits a target to PATH_MAX - 1 bytes */
    return walk_fail (&c->w, "readlink", ENAMETOOLONG);
  target[n] = '\0';
  if (symlinkat (target, c->dst_fd, dname) < 0)
    return copy_fail_dst (c, "symlink", errno);
  return copy_meta_at (c, dirfd, name, dname, stx);
}

/* Copy a device node, fifo or socket.  An overlayfs whiteout is a 0/0 character device. */
static int
copy_node (struct copy_tree *c, int dirfd, const char *name, const char *dname,
           const struct statx *stx)
{
  mode_t mode = (stx->stx_mode & S_IFMT) | S_IRUSR | S_IWUSR;
  dev_t rdev = makedev (stx->stx_rdev_major, stx->stx_rdev_minor);

  if (mknodat (c->dst_fd, dname, mode, rdev) < 0)
    return copy_fail_dst (c, "mknod", errno);
  return copy_meta_at (c, dirfd, name, dname, stx);
}

/* Make dname a hard link to target, a path below c->dst_parent.  The lookup rejects
   symlinks and ".." so that it cannot leave the copy.
   NOTE: a target longer than PATH_MAX, deep in a tree, fails with ENAMETOOLONG. */
static int
copy_link_to (struct copy_tree *c, char *target, const char *dname)
{
  struct open_how how = { .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                          .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS };
  char *slash = strrchr (target, '/');
  int dirfd, err = 0;

  *slash = '\0';
  dirfd = (int) syscall (SYS_openat2, c->dst_parent, target, &how, sizeof how);
  *slash = '/';
  if (dirfd < 0)
    return copy_fail_dst (c, "open", errno);
  if (linkat (dirfd, slash + 1, c->dst_fd, dname, 0) < 0)
    err = errno;
  close (dirfd);
  return err != 0 ? copy_fail_dst (c, "link", err) : 0;
}

/* Link dname to the first copy of an inode with several links.  Returns 1 after
   linking, 0 when this is the first copy, whose path is then recorded, and -1 on
   failure. */
static int
copy_hardlink (struct copy_tree *c, const struct statx *stx, const char *dname)
{
  const char *suffix = c->w.path + c->src_len;
  struct inode_entry *entry;
  int found;

  entry = inode_set_get (&c->links, stx_dev (stx), stx->stx_ino, &found);
  if (entry == NULL)
    return walk_fail (&c->w, "copy_tree", ENOMEM);
  if (found)
    return copy_link_to (c, entry->path, dname) < 0 ? -1 : 1;

  /* Relative to dst_parent, the copy of "src/a/f" is "dst_name/a/f". */
  entry->path = malloc (strlen (c->dst_name) + strlen (suffix) + 1);
  if (entry->path == NULL)
    return walk_fail (&c->w, "copy_tree", ENOMEM);
  strcpy (stpcpy (entry->path, c->dst_name), suffix);
  return 0;
}

static int
copy_visit (struct walk *w, int dirfd, const char *name, const struct statx *stx)
{
  struct copy_tree *c = (struct copy_tree *) w;
  const char *dname = copy_dst_name (c, name);
  int rc;

  if (S_ISDIR (stx->stx_mode))
    {
      /* When dst is inside src, the walk reaches the copy itself and would copy it forever. */
      const struct file_id *copy = c->dst_depth > 0 ? &c->dst_dirs[0] : NULL;

      if (copy != NULL && stx_dev (stx) == copy->dev && stx->stx_ino == copy->ino)
        return walk_fail (w, "copy_tree", EINVAL);
      if (mkdirat (c->dst_fd, dname, S_IRWXU) < 0)  /* its mode is set once it is filled */
        return copy_fail_dst (c, "mkdir", errno);
      return WALK_ENTER;
    }
  if (stx->stx_nlink > 1)
    {
      rc = copy_hardlink (c, stx, dname);
      if (rc != 0)
        return rc < 0 ? -1 : 0;
    }
  if (S_ISREG (stx->stx_mode))
    return copy_file (c, dirfd, name, dname, stx);
  if (S_ISLNK (stx->stx_mode))
    return copy_symlink (c, dirfd, name, dname, stx);
  return copy_node (c, dirfd, name, dname, stx);
}

/* Open the copy of the directory the walk just entered and make it current. */
static int
copy_enter (struct walk *w, int fd)
{
  struct copy_tree *c = (struct copy_tree *) w;
  const char *dname = w->depth == 1 ? c->dst_name : w->path + w->dirs[w->depth - 1].name_off;
  struct file_id *dirs;
  struct statx stx;
  int dst, err;

  (void) fd;
  dst = openat (c->dst_fd, dname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dst < 0)
    return copy_fail_dst (c, "open", errno);
  err = statx (dst, "", AT_EMPTY_PATH, STATX_INO, &stx) < 0 ? errno : 0;
  dirs = err == 0 ? fs_grow (c->dst_dirs, &c->dst_cap, c->dst_depth + 1, sizeof *dirs) : NULL;
  if (dirs == NULL)
    {
      err = err != 0 ? err : errno;
      close (dst);
      return copy_fail_dst (c, "open", err);
    }

  c->dst_dirs = dirs;
  c->dst_dirs[c->dst_depth].dev = stx_dev (&stx);
  c->dst_dirs[c->dst_depth].ino = stx.stx_ino;
  c->dst_depth++;
  if (c->dst_fd != c->dst_parent)
    close (c->dst_fd);
  c->dst_fd = dst;
  return 0;
}

/* Give the filled copy of directory fd its metadata, then return to its parent. */
static int
copy_leave (struct walk *w, int fd, int parentfd, const char *name)
{
  struct copy_tree *c = (struct copy_tree *) w;
  const struct file_id *up = c->dst_depth > 1 ? &c->dst_dirs[c->dst_depth - 2] : NULL;
  int parent = c->dst_parent, err;
  struct statx stx;

  (void) parentfd;
  (void) name;
  if (copy_meta_fd (c, fd, c->dst_fd, &w->dirs[w->depth - 1].stx) < 0)
    return -1;
  if (up != NULL)
    {
      parent = openat (c->dst_fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (parent < 0)
        return copy_fail_dst (c, "open parent of", errno);
      err = statx (parent, "", AT_EMPTY_PATH, STATX_INO, &stx) < 0 ? errno : 0;
      if (err == 0 && (stx_dev (&stx) != up->dev || stx.stx_ino != up->ino))
        err = EAGAIN;  /* moved during the copy */
      if (err != 0)
        {
          close (parent);
          return copy_fail_dst (c, "open parent of", err);
        }
    }
  close (c->dst_fd);
  c->dst_fd = parent;
  c->dst_depth--;
  return 0;
}

static const struct walk_ops copy_ops = {
  .visit = copy_visit,
  .enter = copy_enter,
  .leave = copy_leave,
};

static int
copy_push_failure (lua_State *L, const struct copy_tree *c, const char *src,
                   const char *dst_display_path)
{
  if (!c->dst_failed || c->w.path == NULL)
    return walk_push_failure (L, &c->w, src);
  lua_pushfstring (L, "%s%s", dst_display_path, c->w.path + c->src_len);
  return nsb_fail_path (L, c->w.err, c->w.op, lua_tostring (L, -1));
}

/* core.copy_tree(src, dst) copies the file or tree src to dst, which must not exist,
   keeping types, modes, numeric owners, times in nanoseconds, xattrs, symlinks (not
   followed), device nodes, and hard links between entries of src.  It never writes
   through a symlink below dst.  On failure the partial copy stays in place. */
static int
fs_copy_tree (lua_State *L)
{
  const char *src = luaL_checkstring (L, 1);
  const char *dst = luaL_checkstring (L, 2);
  struct copy_tree c = { .w = { .ops = &copy_ops, .fd = -1 } };
  const char *parent, *dst_display_path;
  size_t len;
  int rc;

  luaL_argcheck (L, *src != '\0', 1, "empty path");
  luaL_argcheck (L, *dst != '\0', 2, "empty path");
  len = fs_push_split_path (L, dst);
  parent = lua_tostring (L, -2);
  c.dst_name = lua_tostring (L, -1);
  dst_display_path = lua_pushlstring (L, dst, len);
  c.dst_parent = open (parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (c.dst_parent < 0)
    return nsb_fail_path (L, errno, "open", parent);
  c.dst_fd = c.dst_parent;
  c.src_len = strlen (src);

  rc = walk_run (&c.w, AT_FDCWD, src, src);
  rc = rc < 0 ? copy_push_failure (L, &c, src, dst_display_path) : nsb_ok (L);
  walk_free (&c.w);
  if (c.dst_fd != c.dst_parent)
    close (c.dst_fd);
  close (c.dst_parent);
  free (c.dst_dirs);
  inode_set_free (&c.links);
  return rc;
}

/* }====================================================== */


static const luaL_Reg walk_functions[] = {
  { "rmtree", fs_rmtree },
  { "du", fs_du },
  { "copy_tree", fs_copy_tree },
  { NULL, NULL }
};

void
nsb_open_walk (lua_State *L)
{
  luaL_setfuncs (L, walk_functions, 0);
}
