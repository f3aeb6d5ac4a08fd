/* SPDX-License-Identifier: MIT */
/* The network needs of a container start.

   Lua functions:
     core.link_up(name) -> true: set IFF_UP on an interface of the current network namespace
     core.unix_connect(path [, timeout_ms]) -> fd handle of a connected stream socket;
       timeout_ms bounds each later read and write on it (reads then fail with EAGAIN)
     core.bind_port(protocol, address, port) -> fd handle of a socket bound to the
       IPv4 address and port ("tcp" listens too, "udp" only binds); fails with
       EADDRINUSE while another socket listens on (tcp) or holds (udp) the port */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "core.h"

static int
net_link_up (lua_State *L)
{
  size_t len;
  const char *name = luaL_checklstring (L, 1, &len);
  struct ifreq ifr;
  int fd, err;

  luaL_argcheck (L, len > 0 && len < IFNAMSIZ, 1, "invalid interface name");
  fd = socket (AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return nsb_fail (L, errno, "socket");
  memset (&ifr, 0, sizeof ifr);
  memcpy (ifr.ifr_name, name, len);
  if (ioctl (fd, SIOCGIFFLAGS, &ifr) < 0)
    goto fail;
  ifr.ifr_flags |= IFF_UP;
  if (ioctl (fd, SIOCSIFFLAGS, &ifr) < 0)
    goto fail;
  close (fd);
  return nsb_ok (L);

fail:
  err = errno;
  close (fd);
  return nsb_fail_path (L, err, "link up", name);
}

/* Fill addr with path; a path longer than sun_path is reached through an
   O_PATH descriptor of its directory, returned in *dirfd (else -1). */
static int
unix_address (const char *path, struct sockaddr_un *addr, int *dirfd)
{
  const char *slash = strrchr (path, '/');
  char dir[4096];

  memset (addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  *dirfd = -1;
  if (strlen (path) < sizeof addr->sun_path)
    {
      strcpy (addr->sun_path, path);
      return 0;
    }
  if (slash == NULL || (size_t) (slash - path) >= sizeof dir)
    {
      errno = ENAMETOOLONG;
      return -1;
    }
  memcpy (dir, path, (size_t) (slash - path));
  dir[slash - path] = '\0';
  *dirfd = open (slash == path ? "/" : dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (*dirfd < 0)
    return -1;
  if ((size_t) snprintf (addr->sun_path, sizeof addr->sun_path, "/proc/self/fd/%d/%s", *dirfd,
                         slash + 1) >= sizeof addr->sun_path)
    {
      close (*dirfd);
      errno = ENAMETOOLONG;
      return -1;
    }
  return 0;
}

static int
set_timeouts (int fd, lua_Integer ms)
{
  struct timeval tv = { .tv_sec = (time_t) (ms / 1000), .tv_usec = (suseconds_t) (ms % 1000) * 1000 };

  if (setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
    return -1;
  return setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int
net_unix_connect (lua_State *L)
{
  const char *path = luaL_checkstring (L, 1);
  lua_Integer timeout = luaL_optinteger (L, 2, 0);
  struct sockaddr_un addr;
  int fd, dirfd, ret, err;

  luaL_argcheck (L, timeout >= 0, 2, "timeout must not be negative");
  if (unix_address (path, &addr, &dirfd) < 0)
    return nsb_fail_path (L, errno, "connect", path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    {
      err = errno;
      if (dirfd >= 0)
        close (dirfd);
      return nsb_fail (L, err, "socket");
    }
  ret = timeout > 0 ? set_timeouts (fd, timeout) : 0;
  if (ret == 0)
    do
      ret = connect (fd, (struct sockaddr *) &addr, sizeof addr);
    while (ret < 0 && errno == EINTR);
  err = errno;
  if (dirfd >= 0)
    close (dirfd);
  if (ret < 0)
    {
      close (fd);
      return nsb_fail_path (L, err, "connect", path);
    }
  nsb_push_fd (L, fd);
  return 1;
}

static int
net_bind_port (lua_State *L)
{
  static const char *const protocols[] = { "tcp", "udp", NULL };
  int udp = luaL_checkoption (L, 1, NULL, protocols);
  const char *address = luaL_checkstring (L, 2);
  lua_Integer port = luaL_checkinteger (L, 3);
  struct sockaddr_in addr;
  int fd, err;

  luaL_argcheck (L, port >= 0 && port <= 65535, 3, "port out of range");
  memset (&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons ((uint16_t) port);
  luaL_argcheck (L, inet_pton (AF_INET, address, &addr.sin_addr) == 1, 2, "not an IPv4 address");

  fd = socket (AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return nsb_fail (L, errno, "socket");
  /* TCP binds as servers (slirp4netns too) do: connections of an earlier
     listener in TIME_WAIT do not count, another listener does.  UDP without
     SO_REUSEADDR fails while any socket holds the port. */
  if (!udp && setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &(int) { 1 }, sizeof (int)) < 0)
    {
      err = errno;
      close (fd);
      return nsb_fail (L, err, "setsockopt SO_REUSEADDR");
    }
  if (bind (fd, (struct sockaddr *) &addr, sizeof addr) < 0 || (!udp && listen (fd, 16) < 0))
    {
      err = errno;
      close (fd);
      return nsb_fail (L, err, lua_pushfstring (L, "bind %s %s:%I", protocols[udp], address, port));
    }
  nsb_push_fd (L, fd);
  return 1;
}

static const luaL_Reg net_functions[] = {
  { "link_up", net_link_up },
  { "unix_connect", net_unix_connect },
  { "bind_port", net_bind_port },
  { NULL, NULL }
};

void
nsb_open_net (lua_State *L)
{
  luaL_setfuncs (L, net_functions, 0);
}
