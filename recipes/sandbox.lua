-- A policy for untrusted code: no network, a read-only root with a small
-- writable /tmp, no capabilities, the strict seccomp profile, an
-- unprivileged user and small limits.
--
--   nsbuild run --policy recipes/sandbox.lua busybox -- sh -c 'id; echo hi > /tmp/x'
--
-- A --policy file returns the changes to the default policy, or a function
-- that takes the base policy and returns the whole policy. docs/policy.md
-- describes every field.
return {
  network = "none",
  readonly = true,
  user = "65534:65534",
  groups = {},
  caps = { keep = {}, bounding = {} },
  seccomp = "strict",
  no_new_privs = true,
  -- cgroup limits: memory, processes and half a CPU.
  limits = { memory = "256M", pids = 64, cpu = 0.5 },
  -- Per-process limits: no core dumps, files of at most 64 MiB, 256 descriptors.
  rlimits = { core = 0, fsize = 64 * 1024 * 1024, nofile = 256 },
  umask = "0077",
  mounts = {
    { type = "tmpfs", target = "/tmp", options = { "nosuid", "nodev", "noexec" },
      data = "size=64m,mode=1777" },
  },
}
