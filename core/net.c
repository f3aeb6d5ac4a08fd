/* SPDX-License-Identifier: MIT */
#include "core.h"

void
nsb_open_net (lua_State *L)
{
  (void) L;
}
