/* SPDX-License-Identifier: MIT */
/* SHA-256 digests with OpenSSL's libcrypto (EVP interface) of strings, files and streams.

   Lua functions: core.sha256(s), core.sha256_file(path), core.sha256_new(),
   ctx:update(s), ctx:hexdigest() */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core.h"

#define SHA256_META "nsbuild.sha256"

/* A streaming digest.  hexdigest() and __gc free ctx and set it to NULL. */
struct sha256 {
  EVP_MD_CTX *ctx;
  int finalised;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len;
};

static void
push_hex (lua_State *L, const unsigned char *md, unsigned int len)
{
  static const char digits[] = "0123456789abcdef";
  char hex[2 * EVP_MAX_MD_SIZE];
  unsigned int i;

  for (i = 0; i < len; i++)
    {
      hex[2 * i] = digits[md[i] >> 4];
      hex[2 * i + 1] = digits[md[i] & 0x0f];
    }
  lua_pushlstring (L, hex, 2 * (size_t) len);
}

/* core.sha256(s) returns the lowercase hex digest of s. */
static int
digest_sha256 (lua_State *L)
{
  size_t len;
  const char *s = luaL_checklstring (L, 1, &len);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len;

  if (EVP_Digest (s, len, md, &md_len, EVP_sha256 (), NULL) != 1)
    return luaL_error (L, "sha256: EVP_Digest failed");
  push_hex (L, md, md_len);
  return 1;
}

/* Digest the file open at fd into md.  Return 0, or the errno value of the failure. */
static int
digest_fd (int fd, unsigned char *md, unsigned int *md_len)
{
  EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
  char buf[65536];
  int err = 0;

  if (ctx == NULL || EVP_DigestInit_ex (ctx, EVP_sha256 (), NULL) != 1)
    err = ENOMEM;
  while (err == 0)
    {
      ssize_t got = read (fd, buf, sizeof buf);

      if (got < 0 && errno == EINTR)
        continue;
      if (got < 0)
        err = errno;
      else if (got == 0)
        break;
      else if (EVP_DigestUpdate (ctx, buf, (size_t) got) != 1)
        err = ENOMEM;
    }
  if (err == 0 && EVP_DigestFinal_ex (ctx, md, md_len) != 1)
    err = ENOMEM;
  EVP_MD_CTX_free (ctx);
  return err;
}

/* core.sha256_file(path) reads the file in 64 KiB blocks and returns its hex digest,
   or nil, "sha256 'path': strerror", errno. */
static int
digest_sha256_file (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len;
  int fd, err;

  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return nsb_fail_path (L, errno, "sha256", path);
  err = digest_fd (fd, md, &md_len);
  close (fd);
  if (err != 0)
    return nsb_fail_path (L, err, "sha256", path);
  push_hex (L, md, md_len);
  return 1;
}


/* {====================================================== streaming context */

static struct sha256 *
check_sha256 (lua_State *L, int idx)
{
  return luaL_checkudata (L, idx, SHA256_META);
}

/* core.sha256_new() returns a context to feed with ctx:update(s). */
static int
digest_sha256_new (lua_State *L)
{
  struct sha256 *h = lua_newuserdatauv (L, sizeof *h, 0);

  /* The handle gets its metatable before it owns the context, so __gc frees it
     even when EVP_DigestInit_ex fails below. */
  h->ctx = NULL;
  h->finalised = 0;
  h->md_len = 0;
  luaL_setmetatable (L, SHA256_META);

  h->ctx = EVP_MD_CTX_new ();
  if (h->ctx == NULL)
    return luaL_error (L, "sha256_new: not enough memory");
  if (EVP_DigestInit_ex (h->ctx, EVP_sha256 (), NULL) != 1)
    return luaL_error (L, "sha256_new: EVP_DigestInit_ex failed");
  return 1;
}

/* ctx:update(s) adds s to the digest and returns ctx. */
static int
sha256_update (lua_State *L)
{
  struct sha256 *h = check_sha256 (L, 1);
  size_t len;
  const char *s = luaL_checklstring (L, 2, &len);

  if (h->finalised)
    return luaL_error (L, "sha256: update called after hexdigest; create a new context with sha256_new()");
  if (h->ctx == NULL)
    return luaL_error (L, "sha256: context already freed");
  if (EVP_DigestUpdate (h->ctx, s, len) != 1)
    return luaL_error (L, "sha256: EVP_DigestUpdate failed");
  lua_settop (L, 1);
  return 1;
}

/* ctx:hexdigest() finalises the digest and returns it in hex.  Later calls return
   the same value. */
static int
sha256_hexdigest (lua_State *L)
{
  struct sha256 *h = check_sha256 (L, 1);

  if (!h->finalised)
    {
      if (h->ctx == NULL)
        return luaL_error (L, "sha256: context already freed");
      if (EVP_DigestFinal_ex (h->ctx, h->md, &h->md_len) != 1)
        return luaL_error (L, "sha256: EVP_DigestFinal_ex failed");
      h->finalised = 1;
      EVP_MD_CTX_free (h->ctx);
      h->ctx = NULL;
    }
  push_hex (L, h->md, h->md_len);
  return 1;
}

static int
sha256_gc (lua_State *L)
{
  struct sha256 *h = check_sha256 (L, 1);

  EVP_MD_CTX_free (h->ctx);
  h->ctx = NULL;
  return 0;
}

static int
sha256_tostring (lua_State *L)
{
  struct sha256 *h = check_sha256 (L, 1);

  lua_pushstring (L, h->finalised ? "sha256 context (finalised)" : "sha256 context");
  return 1;
}

static const luaL_Reg sha256_methods[] = {
  { "update", sha256_update },
  { "hexdigest", sha256_hexdigest },
  { NULL, NULL }
};

static const luaL_Reg sha256_meta[] = {
  { "__gc", sha256_gc },
  { "__tostring", sha256_tostring },
  { NULL, NULL }
};

static const luaL_Reg digest_functions[] = {
  { "sha256", digest_sha256 },
  { "sha256_file", digest_sha256_file },
  { "sha256_new", digest_sha256_new },
  { NULL, NULL }
};

/* }====================================================== */

void
nsb_open_digest (lua_State *L)
{
  luaL_newmetatable (L, SHA256_META);
  luaL_setfuncs (L, sha256_meta, 0);
  luaL_newlib (L, sha256_methods);
  lua_setfield (L, -2, "__index");
  lua_pop (L, 1);
  luaL_setfuncs (L, digest_functions, 0);
}
