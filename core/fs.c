/* SPDX-License-Identifier: MIT */
#include "core.h"

void
nsb_open_fs (lua_State *L)
{
  (void) L;
}
