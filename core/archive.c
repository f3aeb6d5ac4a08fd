/* SPDX-License-Identifier: MIT */
#include "core.h"

void
nsb_open_archive (lua_State *L)
{
  (void) L;
}
