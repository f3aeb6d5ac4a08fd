/* SPDX-License-Identifier: MIT */
#include "core.h"

void
nsb_open_proc (lua_State *L)
{
  (void) L;
}
