/* SPDX-License-Identifier: MIT */
/* Helpers that fs.c shares with walk.c. */
#ifndef NSBUILD_FS_H
#define NSBUILD_FS_H

#include <stddef.h>

#include <lua.h>

/* True for "." and "..". */
int fs_is_dot_or_dotdot (const char *name);

/* Push the parent directory and the last component of path, ignoring trailing
   slashes; return the length of path without them. */
size_t fs_push_split_path (lua_State *L, const char *path);

/* Return p grown to hold at least need elements of size elem, updating *cap;
   NULL with errno ENOMEM leaves p as it was. */
void *fs_grow (void *p, size_t *cap, size_t need, size_t elem);

#endif
