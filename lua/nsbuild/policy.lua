--- Isolation policies: plain tables with defaults, validated so that an unknown
-- field or a wrong type is an error naming the field.
local M = {}

local namespace_names = { "pid", "mount", "uts", "ipc", "net", "user", "cgroup", "time" }

-- The type of every field a policy may set, and of the namespace switches.
local schema = {
  namespaces = "table",
  hostname = "string",
  env = "table",
  cwd = "string",
  network = "string",
  ports = "table",
  limits = "table",
  mounts = "table",
  user = "string",
  argv = "table",
  groups = "table",
  rlimits = "table",
  umask = "string|number",
  no_new_privs = "boolean",
  caps = "table",
  seccomp = "string|table",
  readonly = "boolean",
  masked_paths = "table",
  readonly_paths = "table",
  init = "boolean",
  hooks = "table",
}

-- Fields whose value is a list: extend replaces them whole instead of merging.
-- seccomp too: a whole profile and a { base, rules } change do not mix.
local list_fields = { env = true, mounts = true, ports = true, argv = true, groups = true,
                      masked_paths = true, readonly_paths = true, seccomp = true }

-- Named points of the start sequence where a policy's hooks run: in the child
-- (after_mounts before pivot_root, after_pivot, before_exec) and in the parent
-- (created once the child exists, exited once it is reaped).
M.HOOKS = { "after_mounts", "after_pivot", "before_exec", "created", "exited" }

-- Paths of /proc and /sys that expose the host's kernel, hardware or other
-- containers' state: masked (a file by /dev/null, a directory by an empty
-- read-only tmpfs), as container runtimes do by default.
M.MASKED_PATHS = { "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                   "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
                   "/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware",
                   "/sys/fs/selinux", "/sys/dev/block" }

-- Paths whose writes would change the host's kernel: bound read-only.
M.READONLY_PATHS = { "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger" }

local mount_types = { bind = true, tmpfs = true }
local mount_option_names = { ro = true, nosuid = true, nodev = true, noexec = true }
local mount_fields = { type = "string", source = "string", target = "string", options = "table",
                       data = "string" }

local function validate_mount(i, m)
  local where = string.format("policy: mounts[%d]", i)
  if type(m) ~= "table" then
    error(where .. " must be a table { type, target, ... }", 3)
  end
  for field, value in pairs(m) do
    if mount_fields[field] == nil then
      error(string.format("%s: unknown field '%s' (known: data, options, source, target, type)",
                          where, tostring(field)), 3)
    end
    if type(value) ~= mount_fields[field] then
      error(string.format("%s: field '%s' must be a %s", where, field, mount_fields[field]), 3)
    end
  end
  if not mount_types[m.type] then
    error(string.format("%s: type '%s' is not supported (use \"bind\" or \"tmpfs\")", where,
                        tostring(m.type)), 3)
  end
  if type(m.target) ~= "string" or m.target:sub(1, 1) ~= "/" then
    error(where .. ": target must be an absolute path inside the container", 3)
  end
  if m.type == "bind" and (type(m.source) ~= "string" or m.source:sub(1, 1) ~= "/") then
    error(where .. ": a bind mount needs an absolute host path as source", 3)
  end
  for _, opt in ipairs(m.options or {}) do
    if not mount_option_names[opt] then
      error(string.format("%s: unknown option '%s' (known: nodev, noexec, nosuid, ro)", where,
                          tostring(opt)), 3)
    end
  end
end

--- The policy of `nsbuild run`: new pid, mount, uts, ipc and net namespaces,
-- only loopback, the host's user ids. Build steps use M.build.
M.default = {
  namespaces = { pid = true, mount = true, uts = true, ipc = true, net = true,
                 user = false, cgroup = false, time = false },
  env = {},
  cwd = "/",
  network = "none",
  ports = {},
  limits = {},
  mounts = {},
  groups = {},
  rlimits = {},
  umask = "0022",
  no_new_privs = true,
  caps = {},
  seccomp = "default",
  readonly = false,
  masked_paths = M.MASKED_PATHS,
  readonly_paths = M.READONLY_PATHS,
  init = true,
  hooks = {},
}

local function copy(value)
  if type(value) ~= "table" then
    return value
  end
  local out = {}
  for k, v in pairs(value) do
    out[k] = copy(v)
  end
  return out
end

--- Raise an error naming the first invalid field of p; return p when valid.
function M.validate(p)
  for field, value in pairs(p) do
    local expected = schema[field]
    if expected == nil then
      local known = {}
      for name in pairs(schema) do known[#known + 1] = name end
      table.sort(known)
      error(string.format("policy: unknown field '%s' (known fields: %s)", tostring(field),
                          table.concat(known, ", ")), 2)
    end
    if not ("|" .. expected .. "|"):find("|" .. type(value) .. "|", 1, true) then
      error(string.format("policy: field '%s' must be a %s, not a %s", field,
                          expected:gsub("|", " or "), type(value)), 2)
    end
  end
  for name, on in pairs(p.namespaces or {}) do
    local known = false
    for _, n in ipairs(namespace_names) do known = known or n == name end
    if not known then
      error(string.format("policy: unknown namespace '%s' (known: %s)", tostring(name),
                          table.concat(namespace_names, ", ")), 2)
    end
    if type(on) ~= "boolean" and not (type(on) == "string" and on:sub(1, 1) == "/") then
      error(string.format("policy: namespaces.%s must be true, false or the absolute path of "
                          .. "a namespace to join, such as /proc/PID/ns/%s", name, name), 2)
    end
  end
  local valid, err = pcall(require("nsbuild.security").check, p, M.HOOKS)
  if not valid then
    error("policy: " .. tostring(err), 2)
  end
  for i, m in ipairs(p.mounts or {}) do
    validate_mount(i, m)
  end
  if p.limits then
    local ok, err = pcall(require("nsbuild.cgroup").parse_limits, p.limits)
    if not ok then
      error("policy: " .. tostring(err), 2)
    end
  end
  if p.network or p.ports then
    local ok, err = pcall(require("nsbuild.net").new, p)
    if not ok then
      error("policy: " .. tostring(err), 2)
    end
  end
  return p
end

--- Return a new policy: base with changes applied; tables merge field by field.
function M.extend(base, changes)
  local out = copy(base)
  for field, value in pairs(changes) do
    if type(value) == "table" and type(out[field]) == "table" and not list_fields[field] then
      for k, v in pairs(value) do
        out[field][k] = copy(v)
      end
    else
      out[field] = copy(value)
    end
  end
  return M.validate(out)
end

--- Return the list of namespace names a policy turns on, in a fixed order.
-- The network mode "host" keeps the host's network namespace.
function M.namespace_list(p)
  local list = {}
  for _, name in ipairs(namespace_names) do
    if p.namespaces[name] == true and not (name == "net" and p.network == "host") then
      list[#list + 1] = name
    end
  end
  return list
end

--- Return the namespaces a policy joins, as a list of { name, path }: the
-- user namespace first, because joining it grants the capabilities that
-- joining the namespaces it owns needs.
function M.namespace_joins(p)
  local list = {}
  for _, name in ipairs(namespace_names) do
    local path = p.namespaces[name]
    if type(path) == "string" then
      table.insert(list, name == "user" and 1 or #list + 1, { name, path })
    end
  end
  return list
end

--- The policy of build steps: the default with network "slirp", so that a
-- step reaches package registries the way the host does. Like `nsbuild run`,
-- a step gets every isolation of the default and the built-in init as PID 1.
M.build = M.extend(M.default, { network = "slirp" })

return M
