/* SPDX-License-Identifier: MIT */
/* Shared conventions of the nsbuild.core Lua module: error returns, fd handles,
   option-flag tables and the per-subsystem registration functions. */
#ifndef NSBUILD_CORE_H
#define NSBUILD_CORE_H

#include <lua.h>
#include <lauxlib.h>

#define NSB_FD_META "nsbuild.fd"

/* A named bit for option tables such as { "bind", "rec" }. */
struct nsb_flag {
  const char *name;
  unsigned long value;
};

/* Push nil, "<what>: strerror(err)", err and return 3: the failure triple of a
   system call.  Callers save errno before any Lua API call and pass it here. */
int nsb_fail(lua_State *L, int err, const char *what);

/* The same, with the operation and its target formatted as "op 'target'". */
int nsb_fail_path(lua_State *L, int err, const char *op, const char *target);

/* Push true and return 1. */
int nsb_ok(lua_State *L);

/* Push a new fd handle that owns fd. The handle is made closed and given fd
   last, so its finalizer never sees an unset descriptor. NOTE: when Lua cannot
   allocate the handle it raises, and fd stays open. */
void nsb_push_fd(lua_State *L, int fd);

/* Return the descriptor of the fd handle at idx, raising if it is closed. */
int nsb_check_fd(lua_State *L, int idx);

/* Accept an fd handle or a plain integer descriptor. */
int nsb_check_fd_or_int(lua_State *L, int idx);

/* OR together the flags named in the table at idx (a list of names).  Raises
   an error naming the argument and the unknown name. nil means 0. */
unsigned long nsb_check_flags(lua_State *L, int idx, const struct nsb_flag *known);

/* Raise an error if the table at idx has a string key not listed in fields. */
void nsb_check_fields(lua_State *L, int idx, const char *const fields[]);

/* Read an optional field of the table at idx. */
int nsb_opt_bool_field(lua_State *L, int idx, const char *field, int def);
lua_Integer nsb_opt_int_field(lua_State *L, int idx, const char *field, lua_Integer def);
const char *nsb_opt_string_field(lua_State *L, int idx, const char *field, const char *def);

/* The PATH of a container whose environment sets none: the one crun and podman use. */
#define NSB_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Return a NULL-terminated array of the strings of the list at idx (argv or
   env for an exec), in a userdata the Lua stack keeps alive; the strings stay
   reachable through the table. Raises naming `what` for a non-string. */
char **nsb_check_string_list(lua_State *L, int idx, const char *what);

/* Write all of data to fd, retrying after EINTR and short writes; 0, or -1
   with errno set. Only write(2): safe between fork and exec. */
int nsb_write_all(int fd, const void *data, size_t len);

/* Return the value of PATH in env, or NSB_DEFAULT_PATH. */
const char *nsb_env_path(char **env);

/* Add the functions of each subsystem to the module table on top of the stack. */
void nsb_open_util(lua_State *L);
void nsb_open_ns(lua_State *L);
void nsb_open_proc(lua_State *L);
void nsb_open_mount(lua_State *L);
void nsb_open_fs(lua_State *L);
void nsb_open_walk(lua_State *L);
void nsb_open_archive(lua_State *L);
void nsb_open_digest(lua_State *L);
void nsb_open_net(lua_State *L);
void nsb_open_spawn(lua_State *L);
void nsb_open_caps(lua_State *L);
void nsb_open_seccomp(lua_State *L);
void nsb_open_init(lua_State *L);
void nsb_open_cgroup(lua_State *L);
void nsb_open_tty(lua_State *L);
void nsb_open_layer(lua_State *L);
void nsb_open_readline(lua_State *L);

int luaopen_nsbuild_core(lua_State *L);

#endif
