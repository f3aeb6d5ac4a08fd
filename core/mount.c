/* SPDX-License-Identifier: MIT */
#include "core.h"

void
nsb_open_mount (lua_State *L)
{
  (void) L;
}
