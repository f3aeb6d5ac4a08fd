/* SPDX-License-Identifier: MIT */
#include "core.h"

void
nsb_open_digest (lua_State *L)
{
  (void) L;
}
