--- OCI runtime bundles: rootfs/ (the image's flattened tree) and config.json
-- (runtime spec 1.0.2) that runc and crun run unchanged.
--
-- The policy maps onto the spec where the spec has a field: namespaces, user
-- and groups, capabilities, rlimits, umask, no_new_privs, seccomp, masked and
-- read-only paths, mounts, readonly root, hostname and cgroup limits. What it
-- has no field for (hooks, nsbuild's init, slirp networking and port
-- forwarding, the time namespace) is reported as a warning, never dropped in
-- silence. Requires nsbuild.core, policy, security, cgroup, container, oci.
local core = require "nsbuild.core"
local cgroup = require "nsbuild.cgroup"
local container = require "nsbuild.container"
local errors = require "nsbuild.errors"
local json = require "nsbuild.oci_json"
local log = require "nsbuild.log"
local oci = require "nsbuild.oci"
local policy = require "nsbuild.policy"
local security = require "nsbuild.security"

local M = {}

M.OCI_VERSION = "1.0.2"

local check = errors.check
local array, object = json.array, json.object
local UNLIMITED = json.number("18446744073709551615")

-- {====================================================== process

-- Read a file of the root file system, resolving it inside the root so that a
-- symlink in the image cannot point at the host's file.
local function read_in_root(rootfs, path)
  local fd = core.open_in_root(rootfs, path, { "rdonly" })
  if not fd then
    return nil
  end
  local text = fd:read_all()
  fd:close()
  return text
end

local function cap_names(list)
  local out = array()
  for i, name in ipairs(list) do out[i] = "CAP_" .. name:upper() end
  return out
end

local function capabilities(p, uid)
  local ok, sets = pcall(security.capability_sets, p.caps, uid == 0)
  if not ok then
    errors.raise("bundle: %s", tostring(sets))
  end
  return object({ bounding = cap_names(sets.bounding), effective = cap_names(sets.effective),
                  permitted = cap_names(sets.permitted), inheritable = cap_names(sets.inheritable),
                  ambient = cap_names(sets.ambient) }), sets.effective
end

local function rlimits(p)
  local names = {}
  for name in pairs(p.rlimits or {}) do names[#names + 1] = name end
  table.sort(names)
  local out = array()
  for i, name in ipairs(names) do
    local soft, hard = security.rlimit_values(name, p.rlimits[name])
    out[i] = object({ type = "RLIMIT_" .. name:upper(), soft = soft == "unlimited" and UNLIMITED or soft,
                      hard = hard == "unlimited" and UNLIMITED or hard })
  end
  return out
end

-- The command: the policy's argv or the one given, else entrypoint and cmd.
local function command(config, p, argv)
  local out = array()
  if argv then
    for _, a in ipairs(config.entrypoint or {}) do out[#out + 1] = a end
    for _, a in ipairs(argv) do out[#out + 1] = a end
  elseif p.argv then
    for _, a in ipairs(p.argv) do out[#out + 1] = a end
  else
    for _, a in ipairs(config.entrypoint or {}) do out[#out + 1] = a end
    for _, a in ipairs(config.cmd or {}) do out[#out + 1] = a end
  end
  if #out == 0 then
    errors.raise("bundle: the image has no entrypoint or cmd: give a command after --")
  end
  return out
end

local function process(config, p, opts)
  local user_spec = p.user or config.user or "0"
  local ok, user = pcall(security.resolve_user, user_spec, read_in_root(opts.rootfs, "/etc/passwd"),
                         read_in_root(opts.rootfs, "/etc/group"), p.groups)
  if not ok then
    errors.raise("bundle: %s", tostring(user))
  end
  local gids = array()
  for i, g in ipairs(user.groups) do gids[i] = g end
  local caps, kept = capabilities(p, user.uid)
  local limits = rlimits(p)
  local env = container.environment(config.env, p.env, opts.hostname)
  return kept, object({
    terminal = false,
    user = object({ uid = user.uid, gid = user.gid, additionalGids = #gids > 0 and gids or nil,
                    umask = security.umask_value(p.umask or "0022") }),
    args = command(config, p, opts.argv),
    env = array(env),
    cwd = config.workdir or p.cwd or "/",
    capabilities = caps,
    rlimits = #limits > 0 and limits or nil,
    noNewPrivileges = p.no_new_privs ~= false,
  })
end

-- }======================================================

-- {====================================================== mounts

-- The file systems every container gets, with the options runc's `spec` uses.
local function base_mounts()
  return array({
    object({ destination = "/proc", type = "proc", source = "proc" }),
    object({ destination = "/dev", type = "tmpfs", source = "tmpfs",
             options = array({ "nosuid", "strictatime", "mode=755", "size=65536k" }) }),
    object({ destination = "/dev/pts", type = "devpts", source = "devpts",
             options = array({ "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620" }) }),
    object({ destination = "/dev/shm", type = "tmpfs", source = "shm",
             options = array({ "nosuid", "noexec", "nodev", "mode=1777", "size=65536k" }) }),
    object({ destination = "/dev/mqueue", type = "mqueue", source = "mqueue",
             options = array({ "nosuid", "noexec", "nodev" }) }),
    object({ destination = "/sys", type = "sysfs", source = "sysfs",
             options = array({ "nosuid", "noexec", "nodev", "ro" }) }),
  })
end

local function mounts(p)
  local list = base_mounts()
  for _, m in ipairs(p.mounts or {}) do
    local options = array()
    if m.type == "bind" then options[1] = "rbind" end
    for _, o in ipairs(m.options or {}) do options[#options + 1] = o end
    for o in (m.data or ""):gmatch("[^,]+") do options[#options + 1] = o end
    list[#list + 1] = object({ destination = m.target, type = m.type,
                               source = m.type == "bind" and m.source or "tmpfs", options = options })
  end
  return list
end

-- }======================================================

-- {====================================================== linux

local namespace_types = { pid = "pid", mount = "mount", uts = "uts", ipc = "ipc", net = "network",
                          user = "user", cgroup = "cgroup" }

local function namespaces(p)
  local list = array()
  for _, name in ipairs(policy.namespace_list(p)) do
    if namespace_types[name] then
      list[#list + 1] = object({ type = namespace_types[name] })
    else
      log.warn("bundle: the %s namespace has no field in runtime spec %s; the container shares the host's",
               name, M.OCI_VERSION)
    end
  end
  for _, join in ipairs(policy.namespace_joins(p)) do
    list[#list + 1] = object({ type = namespace_types[join[1]] or join[1], path = join[2] })
  end
  return list
end

local function device_numbers(device)
  local major, minor = device:match("^(%d+):(%d+)$")
  return math.tointeger(tonumber(major)), math.tointeger(tonumber(minor))
end

local function block_io(list)
  local fields = { read_bps = "throttleReadBpsDevice", write_bps = "throttleWriteBpsDevice",
                   read_iops = "throttleReadIOPSDevice", write_iops = "throttleWriteIOPSDevice" }
  local out = object()
  for _, entry in ipairs(list) do
    local major, minor = device_numbers(entry.device)
    for field, name in pairs(fields) do
      local rate = entry[field]
      if rate ~= nil and rate ~= "max" then
        out[name] = out[name] or array()
        out[name][#out[name] + 1] = object({ major = major, minor = minor, rate = rate })
      end
    end
  end
  return out
end

-- The cgroup limits, as linux.resources. "max" becomes -1, the spec's "no limit".
local function resources(p)
  local ok, limits = pcall(cgroup.parse_limits, p.limits or {})
  if not ok then
    errors.raise("bundle: %s", tostring(limits))
  end
  local function value(v) return v == "max" and -1 or v end
  local out = object()
  if limits.memory or limits.memory_swap then
    out.memory = object({ limit = value(limits.memory), swap = value(limits.memory_swap) })
  end
  if limits.pids then
    out.pids = object({ limit = value(limits.pids) })
  end
  if limits.cpu or limits.cpuset or limits.cpu_weight then
    out.cpu = object({ cpus = limits.cpuset,
                       shares = limits.cpu_weight and cgroup.weight_to_shares(limits.cpu_weight) or nil })
    if limits.cpu and limits.cpu ~= "max" then
      out.cpu.quota, out.cpu.period = limits.cpu, cgroup.CPU_PERIOD_US
    end
  end
  if limits.io then
    out.blockIO = block_io(limits.io)
  end
  return next(out) and out or nil
end

-- Linux's errno numbers (asm-generic) of the names seccomp profiles use.
local errno_numbers = {
  EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, ENXIO = 6, E2BIG = 7, ENOEXEC = 8,
  EBADF = 9, ECHILD = 10, EAGAIN = 11, ENOMEM = 12, EACCES = 13, EFAULT = 14, EBUSY = 16,
  EEXIST = 17, EXDEV = 18, ENODEV = 19, ENOTDIR = 20, EISDIR = 21, EINVAL = 22, ENFILE = 23,
  EMFILE = 24, ENOTTY = 25, ETXTBSY = 26, EFBIG = 27, ENOSPC = 28, ESPIPE = 29, EROFS = 30,
  EMLINK = 31, EPIPE = 32, ERANGE = 34, ENOSYS = 38, ENOMSG = 42, ENODATA = 61, ENOTSOCK = 88,
  EPROTONOSUPPORT = 93, ENOTSUP = 95, EOPNOTSUPP = 95, EAFNOSUPPORT = 97, ENETUNREACH = 101,
  ENOTCONN = 107, ECONNREFUSED = 111, EHOSTUNREACH = 113, ENOKEY = 126,
}

local actions = { allow = "SCMP_ACT_ALLOW", errno = "SCMP_ACT_ERRNO", kill = "SCMP_ACT_KILL",
                  kill_thread = "SCMP_ACT_KILL", kill_process = "SCMP_ACT_KILL_PROCESS",
                  log = "SCMP_ACT_LOG", trap = "SCMP_ACT_TRAP" }

local operators = { eq = "SCMP_CMP_EQ", ne = "SCMP_CMP_NE", lt = "SCMP_CMP_LT", le = "SCMP_CMP_LE",
                    gt = "SCMP_CMP_GT", ge = "SCMP_CMP_GE", masked_eq = "SCMP_CMP_MASKED_EQ" }

-- The libseccomp architectures a profile's arches stands for, as the spec names them.
local companion_arches = { x86_64 = { "x86", "x32" }, aarch64 = { "arm" }, s390x = { "s390" },
                           ppc64 = { "ppc" } }

local function errno_number(name)
  if name == nil then
    return errno_numbers.EPERM
  end
  return math.tointeger(name) or errno_numbers[name]
    or errors.raise("bundle: seccomp errno '%s' has no known number", tostring(name))
end

local function arches(spec)
  local native = core.seccomp_arch_native()
  local names = type(spec) == "table" and spec or { native }
  if spec == "all" then
    for _, other in ipairs(companion_arches[native] or {}) do names[#names + 1] = other end
  end
  local out = array()
  for i, name in ipairs(names) do out[i] = "SCMP_ARCH_" .. name:upper() end
  return out
end

local function seccomp_rule(rule)
  local args
  for i, a in ipairs(rule.args or {}) do
    args = args or array()
    -- masked_eq: (argument & value) == value2, which the spec writes as value and valueTwo.
    args[i] = object({ index = a.index, value = a.value, valueTwo = a.value2 or 0, op = operators[a.op] })
  end
  return object({ names = array(rule.syscalls), action = actions[rule.action],
                  errnoRet = rule.action == "errno" and errno_number(rule.errno) or nil, args = args })
end

--- Return the linux.seccomp object of an nsbuild seccomp profile (the table
-- core.seccomp_load takes), or nil for none.
function M.seccomp(profile)
  if profile == nil then
    return nil
  end
  local syscalls = array()
  for i, rule in ipairs(profile.rules or {}) do syscalls[i] = seccomp_rule(rule) end
  local default = profile.default or "kill"
  return object({
    defaultAction = actions[default],
    defaultErrnoRet = default == "errno" and errno_number(profile.default_errno) or nil,
    architectures = arches(profile.arches),
    syscalls = syscalls,
  })
end

local function linux(p, kept_caps)
  local ns = namespaces(p)
  local out = object({
    namespaces = ns,
    maskedPaths = array(p.masked_paths or {}),
    readonlyPaths = array(p.readonly_paths or {}),
    resources = resources(p),
    seccomp = M.seccomp(security.seccomp_profile(p.seccomp, kept_caps)),
  })
  for _, n in ipairs(ns) do
    if n.type == "user" and not n.path then
      -- One mapped id: the container's root is the user running the runtime.
      out.uidMappings = array({ object({ containerID = 0, hostID = core.geteuid(), size = 1 }) })
      out.gidMappings = array({ object({ containerID = 0, hostID = core.getgid(), size = 1 }) })
    end
  end
  return out
end

-- }======================================================

local function warn_unmapped(p)
  if next(p.hooks or {}) then
    log.warn("bundle: the policy's hooks are Lua functions that a runtime spec cannot carry; they do not run")
  end
  if p.init then
    log.warn("bundle: the runtime spec has no init field: the command runs as PID 1 without nsbuild's init")
  end
  if p.network == "slirp" or #(p.ports or {}) > 0 then
    log.warn("bundle: network \"%s\" and port forwards have no runtime spec field: the container gets "
             .. "a network namespace with loopback only", p.network)
  end
end

--- Return the config.json document of an image record run with policy p.
-- opts: rootfs (the bundle's root, read for /etc/passwd and /etc/group),
-- argv (a command replacing cmd), hostname.
function M.spec(record, p, opts)
  local config = record.config or {}
  opts.hostname = opts.hostname or p.hostname or "nsbuild"
  warn_unmapped(p)
  local kept, proc = process(config, p, opts)
  return object({
    ociVersion = M.OCI_VERSION,
    process = proc,
    root = object({ path = "rootfs", readonly = p.readonly == true }),
    hostname = opts.hostname,
    mounts = mounts(p),
    linux = linux(p, kept),
  })
end

--- Write the runtime bundle of an image record into dir: rootfs/ and
-- config.json. opts: policy_file (a --policy file), argv.
function M.write(store, record, dir, opts)
  local p = policy.default
  if opts.policy_file then
    p = require("nsbuild.run_options").load_policy_file(opts.policy_file, policy.default)
  end
  check(core.mkdirs(dir, tonumber("755", 8)))
  if core.lstat(dir .. "/rootfs") or core.lstat(dir .. "/config.json") then
    errors.raise("bundle: %s already holds a bundle: export into a new directory", dir)
  end
  oci.export_rootfs(store, record, dir .. "/rootfs")
  local doc = M.spec(record, p, { rootfs = dir .. "/rootfs", argv = opts.argv })
  check(core.write_file(dir .. "/config.json", json.encode(doc), tonumber("644", 8)))
end

return M
