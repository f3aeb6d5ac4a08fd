/* SPDX-License-Identifier: MIT */
/* The network needs of a container start.

   Lua functions:
     core.link_up(name) -> true: set IFF_UP on an interface of the current network namespace */
#include <errno.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
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

static const luaL_Reg net_functions[] = {
  { "link_up", net_link_up },
  { NULL, NULL }
};

void
nsb_open_net (lua_State *L)
{
  luaL_setfuncs (L, net_functions, 0);
}
