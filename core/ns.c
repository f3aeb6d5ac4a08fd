/* SPDX-License-Identifier: MIT */
#include "core.h"

void
nsb_open_ns (lua_State *L)
{
  (void) L;
}
