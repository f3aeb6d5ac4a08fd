/* SPDX-License-Identifier: MIT */
/* OCI image layers.  layer_tar writes a layer directory in the overlay format as a
   reproducible tar blob (gzip, zstd or none) and computes both digests while writing.
   blob_digest computes the digests of an existing blob, tar_member reads one small
   member of a tar, and layer_whiteouts turns the OCI whiteout markers of an
   extracted layer into the overlay format.

   Lua functions:
     core.layer_tar(dir, out [, opts])     -> { diff_id, digest, size, entries, skipped }
     core.blob_digest(path [, copy_to])    -> { digest, size, diff_id, compression }
     core.tar_member(archive, name [, max_size]) -> the member's data
     core.tar_hardlinks(archive)           -> { target, ... }
     core.layer_whiteouts(dir [, opts])    -> { whiteouts, opaque }

   A failed system call or a malformed input returns nil, message, errno. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>
#include <zlib.h>
#include <zstd.h>

#include "core.h"

#define LAYER_META "nsbuild.layer_tar"
#define BLOB_META "nsbuild.blob_digest"
#define IO_SIZE 65536

enum compression { COMPRESS_NONE, COMPRESS_GZIP, COMPRESS_ZSTD };

static const char *const compression_names[] = { "none", "gzip", "zstd", NULL };


/* {====================================================== helpers */

/* Format a message into buf (size bytes) and return -1, so callers can write
   `return fail_into (...)`. */
static int __attribute__ ((format (printf, 3, 4)))
fail_into (char *buf, size_t size, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (buf, size, fmt, ap);
  va_end (ap);
  return -1;
}

static void
hex_digest (EVP_MD_CTX *md, char out[65])
{
  static const char digits[] = "0123456789abcdef";
  unsigned char raw[EVP_MAX_MD_SIZE];
  unsigned int len = 0, i;

  EVP_DigestFinal_ex (md, raw, &len);
  for (i = 0; i < len && i < 32; i++)
    {
      out[2 * i] = digits[raw[i] >> 4];
      out[2 * i + 1] = digits[raw[i] & 0x0f];
    }
  out[2 * i] = '\0';
}

static EVP_MD_CTX *
sha256_start (void)
{
  EVP_MD_CTX *md = EVP_MD_CTX_new ();

  if (md != NULL && EVP_DigestInit_ex (md, EVP_sha256 (), NULL) != 1)
    {
      EVP_MD_CTX_free (md);
      return NULL;
    }
  return md;
}

/* }====================================================== */


/* {====================================================== compressed output */

/* The blob being written: the tar stream goes in through out_write, is hashed
   (diff_id), compressed, hashed again (digest) and written to fd. */
struct blob_out {
  int fd;
  enum compression compression;
  int level;
  z_stream z;
  int z_ready;
  ZSTD_CCtx *zstd;
  EVP_MD_CTX *tar_md;
  EVP_MD_CTX *blob_md;
  la_int64_t size;
  int err;
  const char *failed_op;
  unsigned char buf[IO_SIZE];
};

/* Hash and write compressed bytes. */
static int
out_emit (struct blob_out *o, const void *data, size_t size)
{
  if (size == 0)
    return 0;
  EVP_DigestUpdate (o->blob_md, data, size);
  o->size += (la_int64_t) size;
  if (nsb_write_all (o->fd, data, size) < 0)
    {
      o->err = errno;
      o->failed_op = "write";
      return -1;
    }
  return 0;
}

static int
out_gzip (struct blob_out *o, const void *data, size_t size, int flush)
{
  o->z.next_in = (Bytef *) (uintptr_t) data;
  o->z.avail_in = (uInt) size;
  do
    {
      int r;

      o->z.next_out = o->buf;
      o->z.avail_out = sizeof o->buf;
      r = deflate (&o->z, flush);
      if (r == Z_STREAM_ERROR)
        {
          o->err = EIO;
          o->failed_op = "deflate";
          return -1;
        }
      if (out_emit (o, o->buf, sizeof o->buf - o->z.avail_out) < 0)
        return -1;
    }
  while (o->z.avail_out == 0 || (flush == Z_FINISH && o->z.avail_in > 0));
  return 0;
}

static int
out_zstd (struct blob_out *o, const void *data, size_t size, ZSTD_EndDirective end)
{
  ZSTD_inBuffer in = { data, size, 0 };
  size_t left;

  do
    {
      ZSTD_outBuffer out = { o->buf, sizeof o->buf, 0 };

      left = ZSTD_compressStream2 (o->zstd, &out, &in, end);
      if (ZSTD_isError (left))
        {
          o->err = EIO;
          o->failed_op = ZSTD_getErrorName (left);
          return -1;
        }
      if (out_emit (o, o->buf, out.pos) < 0)
        return -1;
    }
  while (end == ZSTD_e_end ? left != 0 : in.pos < in.size);
  return 0;
}

/* Take size bytes of the uncompressed tar stream. */
static int
out_write (struct blob_out *o, const void *data, size_t size)
{
  EVP_DigestUpdate (o->tar_md, data, size);
  switch (o->compression)
    {
    case COMPRESS_GZIP:
      return out_gzip (o, data, size, Z_NO_FLUSH);
    case COMPRESS_ZSTD:
      return out_zstd (o, data, size, ZSTD_e_continue);
    default:
      return out_emit (o, data, size);
    }
}

static int
out_finish (struct blob_out *o)
{
  switch (o->compression)
    {
    case COMPRESS_GZIP:
      return out_gzip (o, NULL, 0, Z_FINISH);
    case COMPRESS_ZSTD:
      return out_zstd (o, NULL, 0, ZSTD_e_end);
    default:
      return 0;
    }
}

/* Set up hashing and the compressor.  zlib writes a gzip header without a file name
   and with mtime 0 when windowBits is 15 + 16, so the blob does not depend on when
   or where it was written. */
static int
out_init (struct blob_out *o)
{
  o->tar_md = sha256_start ();
  o->blob_md = sha256_start ();
  if (o->tar_md == NULL || o->blob_md == NULL)
    return -1;
  if (o->compression == COMPRESS_GZIP)
    {
      if (deflateInit2 (&o->z, o->level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
      o->z_ready = 1;
    }
  else if (o->compression == COMPRESS_ZSTD)
    {
      o->zstd = ZSTD_createCCtx ();
      if (o->zstd == NULL)
        return -1;
      if (ZSTD_isError (ZSTD_CCtx_setParameter (o->zstd, ZSTD_c_compressionLevel, o->level))
          || ZSTD_isError (ZSTD_CCtx_setParameter (o->zstd, ZSTD_c_checksumFlag, 1)))
        return -1;
    }
  return 0;
}

static void
out_free (struct blob_out *o)
{
  if (o->z_ready)
    deflateEnd (&o->z);
  o->z_ready = 0;
  ZSTD_freeCCtx (o->zstd);
  o->zstd = NULL;
  EVP_MD_CTX_free (o->tar_md);
  EVP_MD_CTX_free (o->blob_md);
  o->tar_md = o->blob_md = NULL;
}

/* }====================================================== */


/* {====================================================== layer_tar */

/* The state of one layer_tar call, a Lua userdata closed by __close so that an
   error raised in the middle still frees libarchive, zlib and zstd state. */
struct layer_tar {
  lua_State *L;
  int skipped_idx;
  const char *dir_path;
  int overlay;                  /* convert whiteouts and opaque directories */
  int clamp_set;
  la_int64_t clamp;
  struct archive *a;
  struct archive_entry_linkresolver *links;
  struct blob_out out;
  lua_Integer entries;
  char path[PATH_MAX];          /* name of the entry being written */
  int err;
  char msg[PATH_MAX + 512];
};

static int __attribute__ ((format (printf, 3, 4)))
tar_fail (struct layer_tar *t, int err, const char *fmt, ...)
{
  size_t n;
  va_list ap;

  n = (size_t) snprintf (t->msg, sizeof t->msg, "layer_tar '%s': ", t->dir_path);
  if (t->path[0] != '\0' && n < sizeof t->msg)
    n += (size_t) snprintf (t->msg + n, sizeof t->msg - n, "entry '%s': ", t->path);
  if (n < sizeof t->msg)
    {
      va_start (ap, fmt);
      vsnprintf (t->msg + n, sizeof t->msg - n, fmt, ap);
      va_end (ap);
    }
  t->err = err != 0 ? err : EIO;
  return -1;
}

static int
tar_fail_sys (struct layer_tar *t, int err, const char *op)
{
  return tar_fail (t, err, "%s: %s", op, strerror (err));
}

static int
tar_fail_archive (struct layer_tar *t)
{
  const char *s = archive_error_string (t->a);

  if (t->out.failed_op != NULL)
    return tar_fail (t, t->out.err, "%s: %s", t->out.failed_op, strerror (t->out.err));
  return tar_fail (t, archive_errno (t->a), "%s", s != NULL ? s : "libarchive failed");
}

static la_ssize_t
tar_write_cb (struct archive *a, void *data, const void *buf, size_t size)
{
  struct layer_tar *t = data;

  if (out_write (&t->out, buf, size) < 0)
    {
      archive_set_error (a, t->out.err, "%s", t->out.failed_op);
      return -1;
    }
  return (la_ssize_t) size;
}

static void
tar_skip (struct layer_tar *t, const char *reason)
{
  lua_State *L = t->L;

  lua_pushfstring (L, "%s: %s", t->path, reason);
  lua_rawseti (L, t->skipped_idx, luaL_len (L, t->skipped_idx) + 1);
}

static la_int64_t
tar_mtime (const struct layer_tar *t, const struct stat *st)
{
  /* Whole seconds: ustar has no room for more, and sub-second times would add a pax
     header to every entry. */
  if (t->clamp_set && st->st_mtim.tv_sec > t->clamp)
    return t->clamp;
  return st->st_mtim.tv_sec;
}

/* A fresh entry named t->path with the owner, mode and time of st.  No user or
   group names, no atime or ctime: only what the layer's content decides. */
static struct archive_entry *
tar_entry_new (struct layer_tar *t, const struct stat *st)
{
  struct archive_entry *e = archive_entry_new ();

  if (e == NULL)
    return NULL;
  archive_entry_set_pathname (e, t->path);
  archive_entry_set_mode (e, st->st_mode);
  archive_entry_set_uid (e, st->st_uid);
  archive_entry_set_gid (e, st->st_gid);
  archive_entry_set_mtime (e, tar_mtime (t, st), 0);
  return e;
}

/* Write the header of e, then free it.  Returns 0 or -1. */
static int
tar_header (struct layer_tar *t, struct archive_entry *e)
{
  int r = archive_write_header (t->a, e);

  archive_entry_free (e);
  if (r < ARCHIVE_WARN)
    return tar_fail_archive (t);
  t->entries++;
  return 0;
}

/* Read the xattrs of the file open at fd that a layer carries: security.capability
   and user.* except overlayfs's own, in name order.  An overlay redirect or metacopy
   xattr changes what the layer means in a way a tar cannot express: fail. */
static int
tar_xattrs (struct layer_tar *t, int fd, struct archive_entry *e, int *opaque)
{
  char names[8192], value[8192];
  const char *list[256];
  ssize_t len;
  size_t n = 0, i, j;
  char *p;

  len = flistxattr (fd, names, sizeof names);
  if (len < 0)
    return errno == ENOTSUP ? 0 : tar_fail_sys (t, errno, "flistxattr");
  for (p = names; p < names + len && n < 256; p += strlen (p) + 1)
    {
      size_t prefix = strncmp (p, "trusted.overlay.", 16) == 0 ? 16 : strncmp (p, "user.overlay.", 13) == 0 ? 13 : 0;
      int is_overlay = prefix > 0;
      const char *key = p + prefix;

      if (is_overlay && (strcmp (key, "redirect") == 0 || strcmp (key, "metacopy") == 0))
        return tar_fail (t, EINVAL, "overlayfs %s xattr '%s' cannot be written to a tar layer; build "
                         "the layer with redirect_dir=off and metacopy=off", key, p);
      if (is_overlay && strcmp (key, "opaque") == 0 && opaque != NULL)
        {
          ssize_t vlen = fgetxattr (fd, p, value, sizeof value);

          *opaque = *opaque || (vlen == 1 && value[0] == 'y');
          continue;
        }
      if (!is_overlay && (strncmp (p, "user.", 5) == 0 || strcmp (p, "security.capability") == 0))
        list[n++] = p;
    }

  /* Names in bytewise order, so that the pax header does not depend on the file system. */
  for (i = 1; i < n; i++)
    for (j = i; j > 0 && strcmp (list[j - 1], list[j]) > 0; j--)
      {
        const char *tmp = list[j];

        list[j] = list[j - 1];
        list[j - 1] = tmp;
      }
  for (i = 0; i < n; i++)
    {
      ssize_t vlen = fgetxattr (fd, list[i], value, sizeof value);

      if (vlen < 0)
        return tar_fail_sys (t, errno, "fgetxattr");
      archive_entry_xattr_add_entry (e, list[i], value, (size_t) vlen);
    }
  return 0;
}

/* Copy the data of the regular file open at fd into the archive. */
static int
tar_file_data (struct layer_tar *t, int fd, la_int64_t size)
{
  char buf[IO_SIZE];
  la_int64_t done = 0;

  for (;;)
    {
      ssize_t n = read (fd, buf, sizeof buf);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return tar_fail_sys (t, errno, "read");
      if (n == 0)
        break;
      done += n;
      if (done > size)
        return tar_fail (t, EAGAIN, "the file grew while it was read; layers must not change during an export");
      if (archive_write_data (t->a, buf, (size_t) n) < 0)
        return tar_fail_archive (t);
    }
  if (done != size)
    return tar_fail (t, EAGAIN, "the file shrank while it was read; layers must not change during an export");
  return 0;
}

static int
tar_regular (struct layer_tar *t, int dirfd, const char *name, const struct stat *st)
{
  struct archive_entry *e, *spare = NULL;
  struct stat now;
  int fd, ret;

  fd = openat (dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return tar_fail_sys (t, errno, "openat");
  if (fstat (fd, &now) < 0 || now.st_ino != st->st_ino || now.st_dev != st->st_dev)
    {
      close (fd);
      return tar_fail (t, EAGAIN, "the file was replaced while it was read");
    }
  e = tar_entry_new (t, st);
  if (e == NULL)
    {
      close (fd);
      return tar_fail (t, ENOMEM, "%s", strerror (ENOMEM));
    }
  archive_entry_set_size (e, st->st_size);
  ret = tar_xattrs (t, fd, e, NULL);
  if (ret < 0)
    {
      archive_entry_free (e);
      close (fd);
      return ret;
    }

  /* The link resolver turns the second name of an inode into a hardlink entry.  It
     needs dev, ino and nlink, which are then cleared so that no header carries them. */
  archive_entry_set_dev (e, st->st_dev);
  archive_entry_set_ino64 (e, (la_int64_t) st->st_ino);
  archive_entry_set_nlink (e, (unsigned int) st->st_nlink);
  archive_entry_linkify (t->links, &e, &spare);
  archive_entry_free (spare);
  archive_entry_set_dev (e, 0);
  archive_entry_set_ino64 (e, 0);
  archive_entry_set_nlink (e, 0);
  if (archive_entry_hardlink (e) != NULL)
    {
      close (fd);
      return tar_header (t, e);
    }
  ret = tar_header (t, e);
  if (ret == 0)
    ret = tar_file_data (t, fd, st->st_size);
  close (fd);
  return ret;
}

static int
tar_symlink (struct layer_tar *t, int dirfd, const char *name, const struct stat *st)
{
  char target[PATH_MAX];
  struct archive_entry *e;
  ssize_t n;

  n = readlinkat (dirfd, name, target, sizeof target - 1);
  if (n < 0)
    return tar_fail_sys (t, errno, "readlinkat");
  target[n] = '\0';
  e = tar_entry_new (t, st);
  if (e == NULL)
    return tar_fail (t, ENOMEM, "%s", strerror (ENOMEM));
  archive_entry_set_symlink (e, target);
  return tar_header (t, e);
}

/* An overlay whiteout (a 0/0 character device) becomes an empty regular file
   ".wh.NAME" with mode 0600. */
static int
tar_whiteout (struct layer_tar *t, const char *name, const struct stat *st)
{
  struct archive_entry *e;
  size_t dir_len = strlen (t->path) - strlen (name);

  if (dir_len + 4 + strlen (name) >= sizeof t->path)
    return tar_fail (t, ENAMETOOLONG, "%s", strerror (ENAMETOOLONG));
  memmove (t->path + dir_len + 4, t->path + dir_len, strlen (name) + 1);
  memcpy (t->path + dir_len, ".wh.", 4);
  e = tar_entry_new (t, st);
  if (e == NULL)
    return tar_fail (t, ENOMEM, "%s", strerror (ENOMEM));
  archive_entry_set_filetype (e, AE_IFREG);
  archive_entry_set_perm (e, 0600);
  archive_entry_set_size (e, 0);
  return tar_header (t, e);
}

static int
tar_node (struct layer_tar *t, const struct stat *st)
{
  struct archive_entry *e = tar_entry_new (t, st);

  if (e == NULL)
    return tar_fail (t, ENOMEM, "%s", strerror (ENOMEM));
  if (S_ISCHR (st->st_mode) || S_ISBLK (st->st_mode))
    {
      archive_entry_set_rdevmajor (e, major (st->st_rdev));
      archive_entry_set_rdevminor (e, minor (st->st_rdev));
    }
  return tar_header (t, e);
}

static int tar_walk (struct layer_tar *t, int dirfd, size_t len);

static int
name_compare (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* Write the directory named in t->path (open at dirfd), the opaque marker after it
   when it is an opaque overlay directory, then its contents. */
static int
tar_directory (struct layer_tar *t, int parent, const char *name, const struct stat *st, size_t len)
{
  struct archive_entry *e;
  int fd, opaque = 0, ret;

  fd = openat (parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return tar_fail_sys (t, errno, "openat");
  e = tar_entry_new (t, st);
  if (e == NULL)
    ret = tar_fail (t, ENOMEM, "%s", strerror (ENOMEM));
  else if ((ret = tar_xattrs (t, fd, e, t->overlay ? &opaque : NULL)) < 0)
    archive_entry_free (e);
  else
    ret = tar_header (t, e);
  if (ret == 0 && opaque)
    {
      /* ".wh..wh..opq" right after its directory, with the directory's owner and mode. */
      if (len + 13 >= sizeof t->path)
        ret = tar_fail (t, ENAMETOOLONG, "%s", strerror (ENAMETOOLONG));
      else
        {
          strcpy (t->path + len, "/.wh..wh..opq");
          e = tar_entry_new (t, st);
          if (e == NULL)
            ret = tar_fail (t, ENOMEM, "%s", strerror (ENOMEM));
          else
            {
              archive_entry_set_filetype (e, AE_IFREG);
              archive_entry_set_size (e, 0);
              ret = tar_header (t, e);
            }
          t->path[len] = '\0';
        }
    }
  if (ret == 0)
    ret = tar_walk (t, fd, len);
  close (fd);
  return ret;
}

/* Write the entry name of the directory dirfd, whose full name is in t->path. */
static int
tar_one (struct layer_tar *t, int dirfd, const char *name, size_t len)
{
  struct stat st;

  if (fstatat (dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return tar_fail_sys (t, errno, "fstatat");
  if (S_ISDIR (st.st_mode))
    return tar_directory (t, dirfd, name, &st, len);
  if (S_ISREG (st.st_mode))
    return tar_regular (t, dirfd, name, &st);
  if (S_ISLNK (st.st_mode))
    return tar_symlink (t, dirfd, name, &st);
  if (t->overlay && S_ISCHR (st.st_mode) && st.st_rdev == makedev (0, 0))
    return tar_whiteout (t, name, &st);
  if (S_ISCHR (st.st_mode) || S_ISBLK (st.st_mode) || S_ISFIFO (st.st_mode))
    return tar_node (t, &st);
  tar_skip (t, "a socket cannot be stored in a tar layer");
  return 0;
}

/* Read the names of dirfd, sorted bytewise.  Returns the count or -1. */
static long
tar_names (struct layer_tar *t, int dirfd, char ***out)
{
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  DIR *dir;
  int fd = dup (dirfd);

  if (fd < 0 || (dir = fdopendir (fd)) == NULL)
    {
      int err = errno;

      if (fd >= 0)
        close (fd);
      return tar_fail_sys (t, err, "opendir");
    }
  rewinddir (dir);
  while ((errno = 0, de = readdir (dir)) != NULL)
    {
      if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0)
        continue;
      if (n == cap)
        {
          char **grown = realloc (names, (cap = cap ? 2 * cap : 32) * sizeof *names);

          if (grown == NULL)
            {
              errno = ENOMEM;
              break;
            }
          names = grown;
        }
      if ((names[n] = strdup (de->d_name)) == NULL)
        {
          errno = ENOMEM;
          break;
        }
      n++;
    }
  if (errno != 0)
    {
      int err = errno;

      closedir (dir);
      while (n > 0)
        free (names[--n]);
      free (names);
      return tar_fail_sys (t, err, "readdir");
    }
  closedir (dir);
  qsort (names, n, sizeof *names, name_compare);
  *out = names;
  return (long) n;
}

/* Write every entry below the directory dirfd, whose name (length len) is in t->path.
   The order is depth first, with the names of one directory in bytewise order. */
static int
tar_walk (struct layer_tar *t, int dirfd, size_t len)
{
  char **names = NULL;
  long n = tar_names (t, dirfd, &names), i;
  int ret = n < 0 ? -1 : 0;

  for (i = 0; i < n; i++)
    {
      size_t name_len = strlen (names[i]);
      size_t start = len > 0 ? len + 1 : 0;

      if (ret == 0 && start + name_len >= sizeof t->path)
        ret = tar_fail (t, ENAMETOOLONG, "name '%s' below '%s' is too long", names[i], t->path);
      if (ret == 0)
        {
          if (len > 0)
            t->path[len] = '/';
          memcpy (t->path + start, names[i], name_len + 1);
          ret = tar_one (t, dirfd, names[i], start + name_len);
          if (ret == 0)
            t->path[len] = '\0';
        }
      free (names[i]);
    }
  free (names);
  return ret;
}

static int
layer_tar_release (lua_State *L)
{
  struct layer_tar *t = luaL_checkudata (L, 1, LAYER_META);

  if (t->a != NULL)
    archive_write_free (t->a);
  t->a = NULL;
  if (t->links != NULL)
    archive_entry_linkresolver_free (t->links);
  t->links = NULL;
  out_free (&t->out);
  if (t->out.fd >= 0)
    close (t->out.fd);
  t->out.fd = -1;
  return 0;
}

/* Open the archive writer: pax, restricted to ustar headers where they suffice. */
static int
layer_tar_open (struct layer_tar *t)
{
  if (out_init (&t->out) < 0)
    return tar_fail (t, ENOMEM, "cannot set up the %s compressor", compression_names[t->out.compression]);
  t->links = archive_entry_linkresolver_new ();
  t->a = archive_write_new ();
  if (t->links == NULL || t->a == NULL)
    return tar_fail (t, ENOMEM, "%s", strerror (ENOMEM));
  archive_entry_linkresolver_set_strategy (t->links, ARCHIVE_FORMAT_TAR_PAX_RESTRICTED);
  if (archive_write_set_format_pax_restricted (t->a) != ARCHIVE_OK
      || archive_write_add_filter_none (t->a) != ARCHIVE_OK
      /* No padding after the two end blocks: the stream ends where the tar does. */
      || archive_write_set_bytes_in_last_block (t->a, 1) != ARCHIVE_OK
      || archive_write_open (t->a, t, NULL, tar_write_cb, NULL) != ARCHIVE_OK)
    return tar_fail_archive (t);
  return 0;
}

static int
layer_tar_run (struct layer_tar *t, const char *out_path)
{
  int dirfd, ret;

  t->out.fd = open (out_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (t->out.fd < 0)
    return tar_fail (t, errno, "create '%s': %s", out_path, strerror (errno));
  if (layer_tar_open (t) < 0)
    return -1;
  dirfd = open (t->dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0)
    return tar_fail (t, errno, "open: %s", strerror (errno));
  ret = tar_walk (t, dirfd, 0);
  close (dirfd);
  if (ret < 0)
    return ret;
  t->path[0] = '\0';
  if (archive_write_close (t->a) != ARCHIVE_OK)
    return tar_fail_archive (t);
  if (out_finish (&t->out) < 0)
    return tar_fail (t, t->out.err, "%s: %s", t->out.failed_op, strerror (t->out.err));
  if (fsync (t->out.fd) < 0)
    return tar_fail (t, errno, "fsync '%s': %s", out_path, strerror (errno));
  return 0;
}

static const char *const layer_tar_fields[] = { "compression", "level", "mtime_clamp", "overlay", NULL };

static void
layer_tar_options (lua_State *L, struct layer_tar *t)
{
  if (!lua_isnoneornil (L, 3))
    {
      luaL_checktype (L, 3, LUA_TTABLE);
      nsb_check_fields (L, 3, layer_tar_fields);
    }
  lua_getfield (L, 3, "compression");
  t->out.compression = (enum compression) luaL_checkoption (L, -1, "gzip", compression_names);
  lua_pop (L, 1);
  t->out.level = (int) nsb_opt_int_field (L, 3, "level", t->out.compression == COMPRESS_ZSTD ? 3 : 6);
  t->overlay = nsb_opt_bool_field (L, 3, "overlay", 1);
  if (lua_getfield (L, 3, "mtime_clamp") != LUA_TNIL)
    {
      t->clamp = (la_int64_t) luaL_checkinteger (L, -1);
      t->clamp_set = 1;
    }
  lua_pop (L, 1);
}

/* core.layer_tar(dir, out [, opts]) writes the tree dir as a tar blob to the new
   file out.  opts.compression: "gzip" (default), "zstd" or "none"; opts.level: the
   compression level (gzip 6, zstd 3 by default); opts.mtime_clamp: no entry's mtime
   is later than this (seconds since the epoch); opts.overlay (default true): dir is
   an overlay layer, so 0/0 character devices become ".wh.NAME" entries and opaque
   directories get a ".wh..wh..opq" entry.
   Returns { diff_id = sha256 of the tar, digest = sha256 of the blob, size = bytes
   of the blob, entries = count, skipped = list of "path: reason" }, both digests
   in hex, or nil, message, errno.  out is left behind on failure. */
static int
layer_tar (lua_State *L)
{
  struct layer_tar *t;
  const char *out_path;
  char diff_id[65], digest[65];
  int ret;

  luaL_checkstring (L, 1);
  out_path = luaL_checkstring (L, 2);
  lua_settop (L, 3);
  if (lua_isnil (L, 3))
    {
      lua_newtable (L);
      lua_replace (L, 3);
    }
  lua_newtable (L);
  t = lua_newuserdatauv (L, sizeof *t, 0);
  memset (t, 0, sizeof *t);
  t->out.fd = -1;
  luaL_setmetatable (L, LAYER_META);
  lua_toclose (L, 5);
  t->L = L;
  t->skipped_idx = 4;
  t->dir_path = lua_tostring (L, 1);
  layer_tar_options (L, t);

  ret = layer_tar_run (t, out_path);
  if (ret < 0)
    {
      luaL_pushfail (L);
      lua_pushstring (L, t->msg);
      lua_pushinteger (L, t->err);
      return 3;
    }
  hex_digest (t->out.tar_md, diff_id);
  hex_digest (t->out.blob_md, digest);
  lua_createtable (L, 0, 5);
  lua_pushfstring (L, "sha256:%s", diff_id);
  lua_setfield (L, -2, "diff_id");
  lua_pushfstring (L, "sha256:%s", digest);
  lua_setfield (L, -2, "digest");
  lua_pushinteger (L, (lua_Integer) t->out.size);
  lua_setfield (L, -2, "size");
  lua_pushinteger (L, t->entries);
  lua_setfield (L, -2, "entries");
  lua_pushvalue (L, 4);
  lua_setfield (L, -2, "skipped");
  return 1;
}

/* }====================================================== */


/* {====================================================== blob_digest */

/* The state of one blob_digest call: the blob is hashed as stored (digest) and as
   decompressed (diff_id). */
struct blob_in {
  int fd, copy_fd;
  enum compression compression;
  z_stream z;
  int z_ready, z_ended;
  ZSTD_DCtx *zstd;
  size_t zstd_left;
  EVP_MD_CTX *blob_md, *tar_md;
  la_int64_t size;
  char msg[PATH_MAX + 256];
  int err;
  unsigned char in[IO_SIZE], out[IO_SIZE];
};

static int
in_gunzip (struct blob_in *b, const unsigned char *data, size_t size)
{
  b->z.next_in = (Bytef *) (uintptr_t) data;
  b->z.avail_in = (uInt) size;
  do
    {
      int r;

      /* Concatenated gzip members are one valid gzip file (RFC 1952), so read them all. */
      if (b->z_ended && b->z.avail_in > 0)
        {
          inflateReset (&b->z);
          b->z_ended = 0;
        }
      b->z.next_out = b->out;
      b->z.avail_out = sizeof b->out;
      r = inflate (&b->z, Z_NO_FLUSH);
      if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR)
        {
          b->err = EINVAL;
          return fail_into (b->msg, sizeof b->msg, "invalid gzip data: %s",
                            b->z.msg != NULL ? b->z.msg : "inflate failed");
        }
      EVP_DigestUpdate (b->tar_md, b->out, sizeof b->out - b->z.avail_out);
      if (r == Z_STREAM_END)
        b->z_ended = 1;
    }
  while (b->z.avail_in > 0 || b->z.avail_out == 0);
  return 0;
}

static int
in_unzstd (struct blob_in *b, const unsigned char *data, size_t size)
{
  ZSTD_inBuffer in = { data, size, 0 };

  while (in.pos < in.size)
    {
      ZSTD_outBuffer out = { b->out, sizeof b->out, 0 };

      b->zstd_left = ZSTD_decompressStream (b->zstd, &out, &in);
      if (ZSTD_isError (b->zstd_left))
        {
          b->err = EINVAL;
          return fail_into (b->msg, sizeof b->msg, "invalid zstd data: %s",
                            ZSTD_getErrorName (b->zstd_left));
        }
      EVP_DigestUpdate (b->tar_md, b->out, out.pos);
    }
  return 0;
}

/* Choose the decompressor from the first bytes: gzip 1f 8b, zstd 28 b5 2f fd. */
static int
in_detect (struct blob_in *b, const unsigned char *p, size_t n)
{
  if (n >= 2 && p[0] == 0x1f && p[1] == 0x8b)
    {
      b->compression = COMPRESS_GZIP;
      if (inflateInit2 (&b->z, 15 + 16) != Z_OK)
        return fail_into (b->msg, sizeof b->msg, "cannot set up zlib");
      b->z_ready = 1;
    }
  else if (n >= 4 && p[0] == 0x28 && p[1] == 0xb5 && p[2] == 0x2f && p[3] == 0xfd)
    {
      b->compression = COMPRESS_ZSTD;
      b->zstd = ZSTD_createDCtx ();
      if (b->zstd == NULL)
        return fail_into (b->msg, sizeof b->msg, "cannot set up zstd");
    }
  else if ((n >= 6 && memcmp (p, "\xfd" "7zXZ", 6) == 0) || (n >= 3 && memcmp (p, "BZh", 3) == 0))
    {
      b->err = ENOTSUP;
      return fail_into (b->msg, sizeof b->msg,
                        "compressed with xz or bzip2, which OCI layers do not use (gzip, zstd or none)");
    }
  return 0;
}

static int
in_feed (struct blob_in *b, const unsigned char *data, size_t n)
{
  EVP_DigestUpdate (b->blob_md, data, n);
  b->size += (la_int64_t) n;
  if (b->copy_fd >= 0 && nsb_write_all (b->copy_fd, data, n) < 0)
    {
      b->err = errno;
      return fail_into (b->msg, sizeof b->msg, "write the copy: %s", strerror (errno));
    }
  switch (b->compression)
    {
    case COMPRESS_GZIP:
      return in_gunzip (b, data, n);
    case COMPRESS_ZSTD:
      return in_unzstd (b, data, n);
    default:
      EVP_DigestUpdate (b->tar_md, data, n);
      return 0;
    }
}

static int
blob_digest_run (struct blob_in *b)
{
  size_t have = 0;
  int detected = 0;

  for (;;)
    {
      ssize_t n = read (b->fd, b->in + have, sizeof b->in - have);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          b->err = errno;
          return fail_into (b->msg, sizeof b->msg, "read: %s", strerror (errno));
        }
      have += (size_t) n;

      /* Collect a few bytes before choosing the decompressor. */
      if (!detected && n > 0 && have < 6)
        continue;
      if (!detected)
        {
          detected = 1;
          if (in_detect (b, b->in, have) < 0)
            return -1;
        }
      if (have > 0 && in_feed (b, b->in, have) < 0)
        return -1;
      have = 0;
      if (n == 0)
        break;
    }
  if ((b->compression == COMPRESS_GZIP && !b->z_ended)
      || (b->compression == COMPRESS_ZSTD && b->zstd_left != 0))
    {
      b->err = EINVAL;
      return fail_into (b->msg, sizeof b->msg, "the %s stream is truncated",
                        compression_names[b->compression]);
    }
  return 0;
}

static int
blob_digest_release (lua_State *L)
{
  struct blob_in *b = luaL_checkudata (L, 1, BLOB_META);

  if (b->z_ready)
    inflateEnd (&b->z);
  b->z_ready = 0;
  ZSTD_freeDCtx (b->zstd);
  b->zstd = NULL;
  EVP_MD_CTX_free (b->blob_md);
  EVP_MD_CTX_free (b->tar_md);
  b->blob_md = b->tar_md = NULL;
  if (b->fd >= 0)
    close (b->fd);
  if (b->copy_fd >= 0)
    close (b->copy_fd);
  b->fd = b->copy_fd = -1;
  return 0;
}

/* core.blob_digest(path [, copy_to]) reads the blob path once and returns { digest =
   "sha256:..." of its bytes, size, diff_id = "sha256:..." of its bytes decompressed,
   compression = "gzip"|"zstd"|"none" }, or nil, message, errno.  With copy_to, the
   bytes are also written to that new file (created exclusively), so that a caller
   keeps a copy it has verified. */
static int
blob_digest (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  const char *copy_to = luaL_optstring (L, 2, NULL);
  char diff_id[65], digest[65];
  struct blob_in *b;

  b = lua_newuserdatauv (L, sizeof *b, 0);
  memset (b, 0, sizeof *b);
  b->fd = b->copy_fd = -1;
  luaL_setmetatable (L, BLOB_META);
  lua_toclose (L, -1);

  b->blob_md = sha256_start ();
  b->tar_md = sha256_start ();
  if (b->blob_md == NULL || b->tar_md == NULL)
    return luaL_error (L, "blob_digest: cannot set up sha256");
  b->fd = open (path, O_RDONLY | O_CLOEXEC);
  if (b->fd < 0)
    return nsb_fail_path (L, errno, "open", path);
  if (copy_to != NULL)
    {
      b->copy_fd = open (copy_to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (b->copy_fd < 0)
        return nsb_fail_path (L, errno, "create", copy_to);
    }
  if (blob_digest_run (b) < 0)
    {
      luaL_pushfail (L);
      lua_pushfstring (L, "blob '%s': %s", path, b->msg);
      lua_pushinteger (L, b->err != 0 ? b->err : EINVAL);
      return 3;
    }
  hex_digest (b->blob_md, digest);
  hex_digest (b->tar_md, diff_id);
  lua_createtable (L, 0, 4);
  lua_pushfstring (L, "sha256:%s", digest);
  lua_setfield (L, -2, "digest");
  lua_pushfstring (L, "sha256:%s", diff_id);
  lua_setfield (L, -2, "diff_id");
  lua_pushinteger (L, (lua_Integer) b->size);
  lua_setfield (L, -2, "size");
  lua_pushstring (L, compression_names[b->compression]);
  lua_setfield (L, -2, "compression");
  return 1;
}

/* }====================================================== */


/* {====================================================== tar_member */

/* Compare an archive name with the wanted one, ignoring leading "./" and "/". */
static int
member_matches (const char *name, const char *wanted)
{
  while (name[0] == '.' && name[1] == '/')
    name += 2;
  while (name[0] == '/')
    name++;
  return strcmp (name, wanted) == 0;
}

static int
tar_member_read (lua_State *L, struct archive *a, const char *archive_path, const char *name,
                 lua_Integer max_size)
{
  struct archive_entry *e;
  luaL_Buffer buf;
  char block[IO_SIZE];
  la_ssize_t n;
  int r;

  while ((r = archive_read_next_header (a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN)
    {
      if (!member_matches (archive_entry_pathname (e), name))
        continue;
      if (archive_entry_filetype (e) != AE_IFREG)
        {
          luaL_pushfail (L);
          lua_pushfstring (L, "tar_member '%s': '%s' is not a regular file", archive_path, name);
          lua_pushinteger (L, EINVAL);
          return 3;
        }
      if (archive_entry_size (e) > max_size)
        {
          luaL_pushfail (L);
          lua_pushfstring (L, "tar_member '%s': '%s' has %I bytes, more than the %I allowed", archive_path,
                           name, (lua_Integer) archive_entry_size (e), max_size);
          lua_pushinteger (L, EFBIG);
          return 3;
        }
      luaL_buffinit (L, &buf);
      while ((n = archive_read_data (a, block, sizeof block)) > 0)
        luaL_addlstring (&buf, block, (size_t) n);
      if (n < 0)
        break;
      luaL_pushresult (&buf);
      return 1;
    }
  luaL_pushfail (L);
  if (r == ARCHIVE_EOF)
    {
      lua_pushfstring (L, "tar_member '%s': '%s' not found", archive_path, name);
      lua_pushinteger (L, ENOENT);
    }
  else
    {
      const char *s = archive_error_string (a);

      lua_pushfstring (L, "tar_member '%s': %s", archive_path, s != NULL ? s : "read failed");
      lua_pushinteger (L, archive_errno (a) > 0 ? archive_errno (a) : EINVAL);
    }
  return 3;
}

/* core.tar_member(archive, name [, max_size]) returns the data of the regular file
   name in the tar archive (any compression libarchive reads), at most max_size
   bytes (default 16 MiB), or nil, message, errno (ENOENT when there is no such
   member). */
static int
tar_member (lua_State *L)
{
  const char *archive_path = luaL_checkstring (L, 1);
  const char *name = luaL_checkstring (L, 2);
  lua_Integer max_size = luaL_optinteger (L, 3, 16 * 1024 * 1024);
  struct archive *a = archive_read_new ();
  int ret;

  if (a == NULL)
    return luaL_error (L, "tar_member: not enough memory");
  archive_read_support_filter_all (a);
  archive_read_support_format_tar (a);
  archive_read_support_format_gnutar (a);
  if (archive_read_open_filename (a, archive_path, IO_SIZE) != ARCHIVE_OK)
    {
      int err = archive_errno (a) > 0 ? archive_errno (a) : EINVAL;

      luaL_pushfail (L);
      lua_pushfstring (L, "tar_member '%s': %s", archive_path, archive_error_string (a));
      lua_pushinteger (L, err);
      archive_read_free (a);
      return 3;
    }
  /* NOTE: a Lua memory error in luaL_Buffer would leak a; the buffers here are small. */
  ret = tar_member_read (L, a, archive_path, name, max_size);
  archive_read_free (a);
  return ret;
}

/* Push name without leading "./" and "/" and without trailing "/". */
static void
push_normalised (lua_State *L, const char *name)
{
  size_t len;

  while ((name[0] == '.' && name[1] == '/') || name[0] == '/')
    name += name[0] == '/' ? 1 : 2;
  len = strlen (name);
  while (len > 0 && name[len - 1] == '/')
    len--;
  lua_pushlstring (L, name, len);
}

/* core.tar_hardlinks(archive) returns the list of hardlink targets of the tar that
   no earlier entry of it names: the files a hardlink entry expects to find already
   in place, such as a file of a lower layer.  Names are normalised (no leading
   "./" or "/").  Returns nil, message, errno when the archive cannot be read. */
static int
tar_hardlinks (lua_State *L)
{
  const char *archive_path = luaL_checkstring (L, 1);
  struct archive *a;
  struct archive_entry *e;
  int r;

  lua_settop (L, 1);
  lua_newtable (L);             /* 2: names seen so far */
  lua_newtable (L);             /* 3: the result */
  a = archive_read_new ();
  if (a == NULL)
    return luaL_error (L, "tar_hardlinks: not enough memory");
  archive_read_support_filter_all (a);
  archive_read_support_format_tar (a);
  archive_read_support_format_gnutar (a);
  r = archive_read_open_filename (a, archive_path, IO_SIZE);
  while (r == ARCHIVE_OK && ((r = archive_read_next_header (a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN))
    {
      const char *link = archive_entry_hardlink (e);

      r = ARCHIVE_OK;
      if (link != NULL)
        {
          push_normalised (L, link);
          if (lua_rawget (L, 2) == LUA_TNIL)
            {
              push_normalised (L, link);
              lua_rawseti (L, 3, (lua_Integer) luaL_len (L, 3) + 1);
            }
          lua_pop (L, 1);
        }
      push_normalised (L, archive_entry_pathname (e));
      lua_pushboolean (L, 1);
      lua_rawset (L, 2);
    }
  if (r != ARCHIVE_EOF)
    {
      const char *s = archive_error_string (a);

      luaL_pushfail (L);
      lua_pushfstring (L, "tar_hardlinks '%s': %s", archive_path, s != NULL ? s : "read failed");
      lua_pushinteger (L, archive_errno (a) > 0 ? archive_errno (a) : EINVAL);
      archive_read_free (a);
      return 3;
    }
  archive_read_free (a);
  lua_settop (L, 3);
  return 1;
}

/* }====================================================== */


/* {====================================================== layer_whiteouts */

struct whiteouts {
  const char *dir_path;
  const char *opaque_xattr;
  lua_Integer whiteouts, opaque;
  int err;
  char msg[PATH_MAX + 256];
};

/* Remove the overlayfs xattrs a tar entry carried: only the conversion below may
   mark whiteouts and opaque directories. */
static int
wh_strip_overlay_xattrs (struct whiteouts *w, int dirfd, const char *name)
{
  char proc[64 + NAME_MAX], names[8192];
  ssize_t len;
  char *p;

  snprintf (proc, sizeof proc, "/proc/self/fd/%d/%s", dirfd, name);
  len = llistxattr (proc, names, sizeof names);
  if (len < 0)
    return 0;
  for (p = names; p < names + len; p += strlen (p) + 1)
    if ((strncmp (p, "trusted.overlay.", 16) == 0 || strncmp (p, "user.overlay.", 13) == 0)
        && lremovexattr (proc, p) < 0)
      {
        w->err = errno;
        return fail_into (w->msg, sizeof w->msg, "removexattr '%s' of '%s': %s", p, name,
                          strerror (errno));
      }
  return 0;
}

/* Turn the marker ".wh.NAME" in dirfd into a 0/0 character device NAME, unless this
   layer has NAME itself: a whiteout hides only what lower layers have. */
static int
wh_whiteout (struct whiteouts *w, int dirfd, const char *marker)
{
  const char *name = marker + 4;
  struct stat st, exists;
  struct timespec times[2];

  if (name[0] == '\0' || strcmp (name, ".") == 0 || strcmp (name, "..") == 0 || strchr (name, '/') != NULL)
    {
      w->err = EINVAL;
      return fail_into (w->msg, sizeof w->msg, "invalid whiteout '%s'", marker);
    }
  if (fstatat (dirfd, marker, &st, AT_SYMLINK_NOFOLLOW) < 0 || unlinkat (dirfd, marker, 0) < 0)
    {
      w->err = errno;
      return fail_into (w->msg, sizeof w->msg, "whiteout '%s': %s", marker, strerror (errno));
    }
  if (fstatat (dirfd, name, &exists, AT_SYMLINK_NOFOLLOW) == 0)
    return 0;
  if (mknodat (dirfd, name, S_IFCHR | 0000, makedev (0, 0)) < 0
      || fchownat (dirfd, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0)
    {
      w->err = errno;
      return fail_into (w->msg, sizeof w->msg, "create whiteout '%s': %s", name, strerror (errno));
    }
  times[0] = st.st_atim;
  times[1] = st.st_mtim;
  utimensat (dirfd, name, times, AT_SYMLINK_NOFOLLOW);
  w->whiteouts++;
  return 0;
}

static int wh_walk (struct whiteouts *w, int dirfd);

static int
wh_entry (struct whiteouts *w, int dirfd, const char *name, int *opaque)
{
  struct stat st;
  int fd, ret;

  if (strcmp (name, ".wh..wh..opq") == 0)
    {
      if (unlinkat (dirfd, name, 0) < 0)
        {
          w->err = errno;
          return fail_into (w->msg, sizeof w->msg, "unlink '%s': %s", name, strerror (errno));
        }
      *opaque = 1;
      return 0;
    }
  if (strncmp (name, ".wh.", 4) == 0)
    return wh_whiteout (w, dirfd, name);
  if (wh_strip_overlay_xattrs (w, dirfd, name) < 0)
    return -1;
  if (fstatat (dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR (st.st_mode))
    return 0;
  fd = openat (dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    {
      w->err = errno;
      return fail_into (w->msg, sizeof w->msg, "open '%s': %s", name, strerror (errno));
    }
  ret = wh_walk (w, fd);
  close (fd);
  return ret;
}

/* Convert the markers in the directory dirfd and below it, then restore its times,
   which removing markers changed. */
static int
wh_walk (struct whiteouts *w, int dirfd)
{
  struct stat st;
  struct dirent *de;
  DIR *dir;
  int fd, ret = 0, opaque = 0;

  if (fstat (dirfd, &st) < 0 || (fd = dup (dirfd)) < 0)
    {
      w->err = errno;
      return fail_into (w->msg, sizeof w->msg, "fstat: %s", strerror (errno));
    }
  dir = fdopendir (fd);
  if (dir == NULL)
    {
      close (fd);
      w->err = errno;
      return fail_into (w->msg, sizeof w->msg, "opendir: %s", strerror (errno));
    }
  while (ret == 0 && (de = readdir (dir)) != NULL)
    if (strcmp (de->d_name, ".") != 0 && strcmp (de->d_name, "..") != 0)
      ret = wh_entry (w, dirfd, de->d_name, &opaque);
  closedir (dir);
  if (ret == 0 && opaque)
    {
      if (fsetxattr (dirfd, w->opaque_xattr, "y", 1, 0) < 0)
        {
          w->err = errno;
          return fail_into (w->msg, sizeof w->msg, "setxattr %s: %s", w->opaque_xattr,
                            strerror (errno));
        }
      w->opaque++;
    }
  if (ret == 0)
    {
      struct timespec times[2] = { st.st_atim, st.st_mtim };

      futimens (dirfd, times);
    }
  return ret;
}

static const char *const whiteouts_fields[] = { "opaque_xattr", NULL };

/* core.layer_whiteouts(dir [, opts]) converts a layer extracted from an OCI tar into
   the overlay format: each ".wh.NAME" file becomes a 0/0 character device NAME
   (dropped when the layer has NAME itself), each ".wh..wh..opq" marks its directory
   opaque with the xattr opts.opaque_xattr (default "trusted.overlay.opaque"; rootless
   overlay reads "user.overlay.opaque"), and overlayfs xattrs that came with the tar
   are removed.  Returns { whiteouts = n, opaque = n }, or nil, message, errno. */
static int
layer_whiteouts (lua_State *L)
{
  struct whiteouts w;
  int fd, ret;

  memset (&w, 0, sizeof w);
  w.dir_path = luaL_checkstring (L, 1);
  if (!lua_isnoneornil (L, 2))
    {
      luaL_checktype (L, 2, LUA_TTABLE);
      nsb_check_fields (L, 2, whiteouts_fields);
    }
  w.opaque_xattr = nsb_opt_string_field (L, 2, "opaque_xattr", "trusted.overlay.opaque");
  fd = open (w.dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return nsb_fail_path (L, errno, "open", w.dir_path);
  ret = wh_walk (&w, fd);
  close (fd);
  if (ret < 0)
    {
      luaL_pushfail (L);
      lua_pushfstring (L, "layer_whiteouts '%s': %s", w.dir_path, w.msg);
      lua_pushinteger (L, w.err != 0 ? w.err : EINVAL);
      return 3;
    }
  lua_createtable (L, 0, 2);
  lua_pushinteger (L, w.whiteouts);
  lua_setfield (L, -2, "whiteouts");
  lua_pushinteger (L, w.opaque);
  lua_setfield (L, -2, "opaque");
  return 1;
}

/* }====================================================== */


static const luaL_Reg layer_functions[] = {
  { "layer_tar", layer_tar },
  { "blob_digest", blob_digest },
  { "tar_member", tar_member },
  { "tar_hardlinks", tar_hardlinks },
  { "layer_whiteouts", layer_whiteouts },
  { NULL, NULL }
};

static const luaL_Reg layer_tar_meta[] = {
  { "__gc", layer_tar_release },
  { "__close", layer_tar_release },
  { NULL, NULL }
};

static const luaL_Reg blob_meta[] = {
  { "__gc", blob_digest_release },
  { "__close", blob_digest_release },
  { NULL, NULL }
};

void
nsb_open_layer (lua_State *L)
{
  luaL_newmetatable (L, LAYER_META);
  luaL_setfuncs (L, layer_tar_meta, 0);
  lua_pop (L, 1);
  luaL_newmetatable (L, BLOB_META);
  luaL_setfuncs (L, blob_meta, 0);
  lua_pop (L, 1);
  luaL_setfuncs (L, layer_functions, 0);
}
