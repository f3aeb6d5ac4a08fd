--- Seccomp profiles for containers, as tables that core.seccomp_load takes.
--
-- The default profile takes its allow list and its blocked syscalls from
-- Docker's default profile: EPERM for the syscalls a container must not make.
-- Like podman's profile (containers/common seccomp.json), it returns ENOSYS for
-- every syscall it does not name.  On ENOSYS a program concludes that the
-- syscall does not exist, so a newer libc falls back to an older syscall
-- (clone3 to clone, fchmodat2 to fchmodat) where EPERM would make it fail.
--
-- Some syscalls are allowed only when the container keeps the capability the
-- kernel checks for them (mount with sys_admin, reboot with sys_boot), as in
-- Docker's profile: the filter is a second wall behind the capabilities.
--
-- Depends on nsbuild.core for the native architecture.
local core = require "nsbuild.core"

local M = {}

-- The syscalls every container may make, by topic.  Names of other
-- architectures and of kernels newer than libseccomp are harmless: the loader
-- leaves out the names libseccomp does not know and returns them.
local allowed = {
  files = {
    "access", "chdir", "chmod", "chown", "chown32", "close", "close_range", "copy_file_range",
    "creat", "dup", "dup2", "dup3", "faccessat", "faccessat2", "fadvise64", "fadvise64_64",
    "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown",
    "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr",
    "flock", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs",
    "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futimesat", "getcwd", "getdents",
    "getdents64", "getxattr", "getxattrat", "inotify_add_watch", "inotify_init",
    "inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents",
    "io_pgetevents", "io_pgetevents_time64", "io_setup", "io_submit", "ioctl", "lchown",
    "lchown32", "lgetxattr", "link", "linkat", "listxattr", "listxattrat", "llistxattr",
    "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "mkdir", "mkdirat",
    "mknod", "mknodat", "name_to_handle_at", "newfstatat", "open", "openat", "openat2",
    "pipe", "pipe2", "pread64", "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2",
    "read", "readahead", "readlink", "readlinkat", "readv", "removexattr", "removexattrat",
    "rename", "renameat", "renameat2", "rmdir", "sendfile", "sendfile64", "setxattr",
    "setxattrat", "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink",
    "symlinkat", "sync", "sync_file_range", "syncfs", "tee", "truncate", "truncate64",
    "umask", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes",
    "vmsplice", "write", "writev", "cachestat",
  },
  memory = {
    "brk", "get_robust_list", "madvise", "map_shadow_stack", "membarrier", "memfd_create",
    "memfd_secret", "mincore", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect",
    "mremap", "mseal", "msync", "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free",
    "pkey_mprotect", "remap_file_pages", "set_robust_list",
  },
  processes = {
    "execve", "execveat", "exit", "exit_group", "fork", "getcpu", "getpgid", "getpgrp",
    "getpid", "getppid", "getpriority", "getrlimit", "getrusage", "getsid", "gettid",
    "ioprio_get", "ioprio_set", "pidfd_open", "pidfd_send_signal", "prctl", "prlimit64",
    "process_mrelease", "restart_syscall", "rseq", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler",
    "sched_yield", "set_tid_address", "setpgid", "setpriority", "setrlimit", "setsid",
    "sysinfo", "times", "ugetrlimit", "uname", "vfork", "wait4", "waitid", "waitpid",
    "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake",
  },
  -- The kernel checks CAP_SETUID, CAP_SETGID and CAP_SETPCAP for these.
  credentials = {
    "capget", "capset", "getegid", "getegid32", "geteuid", "geteuid32", "getgid",
    "getgid32", "getgroups", "getgroups32", "getresgid", "getresgid32", "getresuid",
    "getresuid32", "getuid", "getuid32", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32",
    "setgid", "setgid32", "setgroups", "setgroups32", "setregid", "setregid32", "setresgid",
    "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setuid",
    "setuid32",
  },
  signals = {
    "alarm", "getitimer", "kill", "pause", "rt_sigaction", "rt_sigpending",
    "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "setitimer", "sigaltstack", "signalfd",
    "signalfd4", "sigprocmask", "sigreturn", "tgkill", "tkill",
  },
  -- Setting the clocks needs sys_time (below); reading and adjtimex queries do not.
  time = {
    "adjtimex", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
    "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64",
    "gettimeofday", "nanosleep", "time", "timer_create", "timer_delete", "timer_getoverrun",
    "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create",
    "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64",
  },
  events = {
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "_newselect",
    "poll", "ppoll", "ppoll_time64", "pselect6", "pselect6_time64", "select",
  },
  -- socket itself has its own rule below.
  network = {
    "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt",
    "listen", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send",
    "sendmmsg", "sendmsg", "sendto", "setsockopt", "shutdown", "socketcall", "socketpair",
  },
  ipc = {
    "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
    "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl",
    "msgget", "msgrcv", "msgsnd", "semctl", "semget", "semop", "semtimedop",
    "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget",
  },
  -- A program may restrict itself further.
  self_sandboxing = {
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "seccomp",
  },
  -- Docker's profile allows these from Linux 4.8 on, where a tracer can no
  -- longer make its tracee skip the filter.  The kernel still checks ptrace
  -- access (same user, Yama).
  debugging = { "ptrace", "process_vm_readv", "process_vm_writev" },
  architecture = {
    "arch_prctl", "get_thread_area", "modify_ldt", "set_thread_area", "uretprobe",
    "arm_fadvise64_64", "arm_sync_file_range", "breakpoint", "cacheflush", "set_tls",
    "sync_file_range2", "riscv_flush_icache", "riscv_hwprobe", "s390_guarded_storage",
    "s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr", "s390_sthyi",
  },
}

-- Syscalls allowed only when the container keeps the capability named by cap,
-- because the kernel checks that capability for them; otherwise they get EPERM.
local capability_gated = {
  { cap = "sys_admin", syscalls = {
      -- Mounts and namespaces, as in Docker's profile, plus pivot_root and the
      -- newer mount syscalls.
      "mount", "umount", "umount2", "mount_setattr", "move_mount", "open_tree",
      "open_tree_attr", "fsopen", "fsconfig", "fsmount", "fspick", "pivot_root", "unshare",
      "setns", "clone3",
      "sethostname", "setdomainname", "quotactl", "quotactl_fd", "lookup_dcookie",
      "fanotify_init", "syslog", "bpf", "perf_event_open",
  } },
  { cap = "bpf", syscalls = { "bpf" } },
  { cap = "perfmon", syscalls = { "perf_event_open" } },
  { cap = "syslog", syscalls = { "syslog" } },
  { cap = "sys_boot", syscalls = { "reboot" } },
  { cap = "sys_chroot", syscalls = { "chroot" } },
  { cap = "sys_module", syscalls = { "init_module", "finit_module", "delete_module" } },
  { cap = "sys_pacct", syscalls = { "acct" } },
  { cap = "sys_ptrace", syscalls = { "kcmp", "pidfd_getfd", "process_madvise" } },
  { cap = "sys_rawio", syscalls = { "iopl", "ioperm" } },
  { cap = "sys_time", syscalls = { "settimeofday", "stime", "clock_settime", "clock_settime64" } },
  { cap = "sys_tty_config", syscalls = { "vhangup" } },
  -- Docker's profile has the first four; migrate_pages and move_pages move
  -- pages of other processes between NUMA nodes.
  { cap = "sys_nice", syscalls = {
      "get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node", "migrate_pages",
      "move_pages",
  } },
  -- open_by_handle_at opens any file of a mounted file system by its handle,
  -- bypassing the container's root: the "shocker" escape from Docker 0.x.
  { cap = "dac_read_search", syscalls = { "open_by_handle_at" } },
}

-- Syscalls no container may make, whatever capabilities it keeps.
local blocked = {
  -- The kernel keyring is not namespaced, so a container would share keys with the host.
  keyring = { "add_key", "keyctl", "request_key" },
  -- kexec replaces the running kernel.
  kexec = { "kexec_load", "kexec_file_load" },
  -- Swap is a host-wide setting.
  swap = { "swapon", "swapoff" },
  -- userfaultfd lets a process stall kernel page faults at will, a common step in
  -- kernel exploits.
  userfaultfd = { "userfaultfd" },
  -- io_uring operations do not pass through seccomp, and io_uring has had many
  -- kernel exploits.  Docker's profile blocks it since Docker 25.
  io_uring = { "io_uring_setup", "io_uring_enter", "io_uring_register" },
  -- Obsolete syscalls that no current program needs.
  obsolete = {
    "_sysctl", "bdflush", "create_module", "get_kernel_syms", "nfsservctl", "query_module",
    "sysfs", "uselib", "ustat", "vm86", "vm86old",
  },
}

-- Syscalls the strict profile blocks on top of the default ones.
local strict_blocked = {
  -- Untrusted code has no reason to debug or read the other processes of its sandbox.
  debugging = { "ptrace", "process_vm_readv", "process_vm_writev" },
  -- A file handle is the first half of an open_by_handle_at escape.
  file_handles = { "name_to_handle_at" },
}

-- Namespace flags of clone: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER,
-- NEWPID and NEWNET.  CLONE_NEWTIME (0x80) exists only for clone3 and unshare,
-- because in clone's flags that bit is part of the exit signal.
local clone_namespace_flags = { 0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000,
                                0x20000000, 0x40000000 }

-- personality values a container may set: PER_LINUX, PER_LINUX32, each with or
-- without UNAME26, and 0xffffffff, which only queries.  ADDR_NO_RANDOMIZE,
-- READ_IMPLIES_EXEC and the other flags would weaken ASLR and NX.
-- NOTE: other values get the default ENOSYS, not EPERM, as in podman's profile,
-- because libseccomp cannot express "none of these values" in one rule.
local default_personalities = { 0x0, 0x8, 0x20000, 0x20008, 0xffffffff }
local strict_personalities = { 0x0, 0xffffffff }

local AF_ALG, AF_VSOCK, AF_MAX = 38, 40, 46

local function append_all(list, names)
  for _, name in ipairs(names) do
    list[#list + 1] = name
  end
end

local function sorted_keys(set)
  local list = {}
  for name in pairs(set) do
    list[#list + 1] = name
  end
  table.sort(list)
  return list
end

-- The index of clone's flags argument: s390 swaps the first two arguments.
local function clone_flags_index()
  local arch = core.seccomp_arch_native()
  return (arch == "s390x" or arch == "s390") and 1 or 0
end

--- Return the rules for clone: allowed without namespace flags, EPERM with any.
-- One EPERM rule per flag, because a rule compares an argument once and
-- libseccomp has no "masked not equal"; the rules are disjoint from the allow rule.
local function clone_rules()
  local index = clone_flags_index()
  local mask = 0
  for _, flag in ipairs(clone_namespace_flags) do
    mask = mask | flag
  end
  local rules = { {
    action = "allow", syscalls = { "clone" },
    args = { { index = index, op = "masked_eq", value = mask, value2 = 0 } },
    comment = "clone without namespace flags: fork and threads",
  } }
  for _, flag in ipairs(clone_namespace_flags) do
    rules[#rules + 1] = {
      action = "errno", errno = "EPERM", syscalls = { "clone" },
      args = { { index = index, op = "masked_eq", value = flag, value2 = flag } },
      comment = string.format("clone with namespace flag 0x%08x", flag),
    }
  end
  return rules
end

local function personality_rules(values)
  local rules = {}
  for _, value in ipairs(values) do
    rules[#rules + 1] = {
      action = "allow", syscalls = { "personality" },
      args = { { index = 0, op = "eq", value = value } },
      comment = string.format("personality 0x%x", value),
    }
  end
  return rules
end

--- Return the socket rules.  Every address family below AF_MAX (46 in glibc
-- 2.36 and Linux 6.x) is allowed except AF_ALG and AF_VSOCK, which get
-- EAFNOSUPPORT, the error of a kernel without them.  AF_VSOCK reaches the
-- hypervisor's host instead of the network a container is given, and AF_ALG
-- gave the "Copy Fail" page-cache write (CVE-2026-31431); Docker's profile
-- blocks both.  Each rule compares the low 32 bits only, as the kernel reads
-- the family as an int, so no value with high bits set slips past, and a
-- family newer than this list gets ENOSYS.
-- NOTE: 32-bit x86 programs create sockets through socketcall, whose family
-- argument lies in memory that seccomp cannot read, so they still reach both.
local function socket_rules()
  local rules = {}
  for family = 0, AF_MAX - 1 do
    local blocked_family = family == AF_ALG or family == AF_VSOCK
    rules[#rules + 1] = {
      action = blocked_family and "errno" or "allow",
      errno = blocked_family and "EAFNOSUPPORT" or nil,
      syscalls = { "socket" },
      args = { { index = 0, op = "masked_eq", value = 0xffffffff, value2 = family } },
      comment = string.format("socket family %d", family),
    }
  end
  return rules
end

local function check_options(opts)
  if opts == nil then
    return {}
  end
  if type(opts) ~= "table" then
    error("seccomp_profile.default: options must be a table { caps = {...} }", 3)
  end
  for field in pairs(opts) do
    if field ~= "caps" then
      error(string.format("seccomp_profile.default: unknown option '%s' (known: caps)",
                          tostring(field)), 3)
    end
  end
  return opts
end

--- Build a profile from the sets of allowed and blocked names, the allowed
-- personality values, and whether clone may create namespaces.
local function build(allow, deny, personalities, clone_namespaces)
  local rules = {}
  if clone_namespaces then
    rules[#rules + 1] = { action = "allow", syscalls = { "clone" },
                          comment = "clone: the container keeps sys_admin" }
  else
    append_all(rules, clone_rules())
  end
  if not allow.clone3 then
    -- clone3 passes its flags in memory, which seccomp cannot read, so no rule
    -- can check them as for clone.  On ENOSYS libc falls back to clone.
    deny.clone3 = nil
    rules[#rules + 1] = { action = "errno", errno = "ENOSYS", syscalls = { "clone3" },
                          comment = "clone3: libc falls back to clone" }
  end
  append_all(rules, personality_rules(personalities))
  append_all(rules, socket_rules())
  table.insert(rules, 1, { action = "allow", syscalls = sorted_keys(allow),
                           comment = "the allow list" })
  table.insert(rules, 2, { action = "errno", errno = "EPERM", syscalls = sorted_keys(deny),
                           comment = "kernel-wide state, or a capability the container lacks" })
  return {
    default = "errno",
    default_errno = "ENOSYS",
    arches = "all",
    no_new_privs = true,
    rules = rules,
  }
end

local function add_groups(set, groups)
  for _, names in pairs(groups) do
    for _, name in ipairs(names) do
      set[name] = true
    end
  end
end

--- Return a fresh default profile.  opts.caps optionally lists the capability
-- names the container keeps; the syscalls gated by a kept capability are
-- allowed, the other gated ones get EPERM.  Raises on an unknown option.
function M.default(opts)
  opts = check_options(opts)
  local kept = {}
  for _, cap in ipairs(opts.caps or {}) do
    kept[cap] = true
  end

  local allow, deny = {}, {}
  add_groups(allow, allowed)
  add_groups(deny, blocked)
  for _, group in ipairs(capability_gated) do
    for _, name in ipairs(group.syscalls) do
      if kept[group.cap] then
        allow[name] = true
      end
    end
  end
  for _, group in ipairs(capability_gated) do
    for _, name in ipairs(group.syscalls) do
      if not allow[name] then
        deny[name] = true
      end
    end
  end

  -- With CAP_SYS_ADMIN the container may create namespaces, as in Docker's
  -- profile, so clone needs no flag rules.
  return build(allow, deny, default_personalities, kept.sys_admin)
end

--- Return a fresh strict profile for untrusted code: the default profile with
-- every capability-gated syscall blocked whatever the policy keeps, debugging
-- and file handles blocked, and only the plain Linux personality.
function M.strict()
  local allow, deny = {}, {}
  add_groups(allow, allowed)
  add_groups(deny, blocked)
  for _, group in ipairs(capability_gated) do
    for _, name in ipairs(group.syscalls) do
      deny[name] = true
    end
  end
  for _, names in pairs(strict_blocked) do
    for _, name in ipairs(names) do
      allow[name] = nil
      deny[name] = true
    end
  end
  return build(allow, deny, strict_personalities, false)
end

return M
