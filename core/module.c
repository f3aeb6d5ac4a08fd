/* SPDX-License-Identifier: MIT */
/* luaopen_nsbuild_core: the nsbuild.core table, assembled from each subsystem. */
#include "core.h"

int
luaopen_nsbuild_core (lua_State *L)
{
  lua_newtable (L);
  nsb_open_util (L);
  nsb_open_ns (L);
  nsb_open_proc (L);
  nsb_open_mount (L);
  nsb_open_fs (L);
  nsb_open_walk (L);
  nsb_open_archive (L);
  nsb_open_digest (L);
  nsb_open_net (L);
  nsb_open_spawn (L);
  nsb_open_caps (L);
  nsb_open_seccomp (L);
  nsb_open_init (L);
  nsb_open_cgroup (L);
  nsb_open_tty (L);
  nsb_open_layer (L);
  nsb_open_readline (L);
  return 1;
}
