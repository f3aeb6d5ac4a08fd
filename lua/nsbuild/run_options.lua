--- The isolation options of `nsbuild run`: --policy files and the flags
-- podman users know, each mapped onto a policy, and --explain, which prints
-- the steps a policy will perform. Depends on nsbuild.policy,
-- nsbuild.security, nsbuild.container and nsbuild.core.
local core = require "nsbuild.core"
local errors = require "nsbuild.errors"
local policy = require "nsbuild.policy"
local security = require "nsbuild.security"

local M = {}

--- The run options this module reads: true takes a value, "list" takes a
-- value and repeats, false is a switch (which also takes =true or =false).
M.SPEC = {
  ["--policy"] = true, ["-v"] = "list", ["--volume"] = "list", ["-u"] = true, ["--user"] = true,
  ["-i"] = false, ["-t"] = false, ["--read-only"] = false, ["--cap-add"] = "list",
  ["--cap-drop"] = "list", ["--security-opt"] = "list", ["--init"] = false,
  ["--no-init"] = false, ["--explain"] = false,
}

--- Load a policy file: a Lua file returning a policy table (extended from
-- base) or a function that takes base and returns the policy. Raises an
-- error naming the file.
function M.load_policy_file(path, base)
  -- The file sees the standard library and `policy`, as a recipe does.
  local env = setmetatable({ policy = policy }, { __index = _G })
  local chunk, err = loadfile(path, "t", env)
  if not chunk then
    errors.raise("--policy: %s", err)
  end
  local ok, result = pcall(chunk)
  if not ok then
    errors.raise("--policy %s: %s", path, tostring(result))
  end
  if type(result) == "function" then
    ok, result = pcall(result, base)
    if not ok then
      errors.raise("--policy %s: %s", path, tostring(result))
    end
    if type(result) ~= "table" then
      errors.raise("--policy %s: the function returned a %s, not a policy table", path, type(result))
    end
    ok, result = pcall(policy.validate, result)
  elseif type(result) == "table" then
    ok, result = pcall(policy.extend, base, result)
  else
    errors.raise("--policy %s: returned a %s; return a policy table or a function(base)",
                 path, type(result))
  end
  if not ok then
    errors.raise("--policy %s: %s", path, (tostring(result):gsub("^[^:]*:%d+: ", "")))
  end
  return result
end

-- Parse -v SRC:DST[:OPTIONS] into a bind mount; OPTIONS is a comma list of
-- ro, rw, nosuid, nodev and noexec.
local function volume(spec)
  local source, target, options = spec:match("^([^:]+):([^:]+):?(.*)$")
  if not source then
    errors.raise("invalid -v '%s': expected SRC:DST[:ro]", spec)
  end
  if source:sub(1, 1) ~= "/" then
    source = core.realpath(source) or errors.raise("-v '%s': %s does not exist", spec, source)
  end
  local list = {}
  for opt in options:gmatch("[^,]+") do
    if opt ~= "rw" then list[#list + 1] = opt end
  end
  return { type = "bind", source = source, target = target, options = list }
end

-- Apply --security-opt values: seccomp=NAME|FILE.lua and no-new-privileges[=BOOL].
local function security_opts(values, changes)
  for _, opt in ipairs(values) do
    local key, value = opt:match("^([%w-]+)=?(.*)$")
    if key == "seccomp" and value:match("%.lua$") then
      local chunk, err = loadfile(value, "t")
      if not chunk then
        errors.raise("--security-opt seccomp: %s", err)
      end
      changes.seccomp = chunk()
    elseif key == "seccomp" and value ~= "" then
      changes.seccomp = value
    elseif key == "no-new-privileges" then
      changes.no_new_privs = value ~= "false"
    else
      errors.raise("unsupported --security-opt '%s' (use seccomp=default|strict|unconfined|FILE.lua "
                   .. "or no-new-privileges[=false])", opt)
    end
  end
end

local function append(list, values)
  local out = {}
  for _, v in ipairs(list or {}) do out[#out + 1] = v end
  for _, v in ipairs(values or {}) do out[#out + 1] = v end
  return out
end

--- Return the changes that the flags in opts make to policy base: -v, -u, -w,
-- --read-only, --cap-add, --cap-drop, --security-opt, --init/--no-init.
function M.flag_changes(opts, base)
  local changes = {}
  local vols = append(opts["-v"], opts["--volume"])
  if #vols > 0 then
    local list = append(base.mounts, {})
    for _, v in ipairs(vols) do list[#list + 1] = volume(v) end
    changes.mounts = list
  end
  changes.user = opts["-u"] or opts["--user"]
  changes.cwd = opts["-w"]
  if opts["--read-only"] then
    changes.readonly = true
  end
  if opts["--cap-add"] or opts["--cap-drop"] then
    local caps = base.caps or {}
    changes.caps = { add = append(caps.add, opts["--cap-add"]),
                     drop = append(caps.drop, opts["--cap-drop"]) }
  end
  security_opts(opts["--security-opt"] or {}, changes)
  if opts["--no-init"] then
    changes.init = false
  elseif opts["--init"] ~= nil then
    changes.init = opts["--init"]
  end
  return changes
end

--- Return the policy of `nsbuild run` from its options: the policy file of
-- --policy (else policy.default) with the flags' changes and extra (the
-- network and limit options) applied. Raises a message naming the option.
function M.run_policy(opts, extra)
  local base = policy.default
  if opts["--policy"] then
    base = M.load_policy_file(opts["--policy"], base)
  end
  local changes = M.flag_changes(opts, base)
  for k, v in pairs(extra) do changes[k] = v end
  local ok, result = pcall(policy.extend, base, changes)
  if not ok then
    -- The policy's message names the value; the Lua position would only distract.
    errors.raise("run: %s", (tostring(result):gsub("^[^:]*:%d+: ", "")))
  end
  return result
end

-- {====================================================== --explain

local function on_off(p)
  local parts = {}
  for _, name in ipairs({ "pid", "mount", "uts", "ipc", "net", "user", "cgroup", "time" }) do
    local v = p.namespaces[name]
    if v == true and not (name == "net" and p.network == "host") then
      parts[#parts + 1] = name
    elseif type(v) == "string" then
      parts[#parts + 1] = name .. " (join " .. v .. ")"
    end
  end
  return #parts > 0 and table.concat(parts, ", ") or "none"
end

local function mount_line(m)
  local opts = #(m.options or {}) > 0 and " (" .. table.concat(m.options, ",") .. ")" or ""
  if m.type == "bind" then
    return string.format("bind %s on %s%s", m.source, m.target, opts)
  end
  return string.format("tmpfs on %s%s", m.target, opts)
end

local function caps_lines(p, out)
  local root = security.capability_sets(p.caps, true)
  local other = security.capability_sets(p.caps, false)
  local function list(set) return #set > 0 and table.concat(set, " ") or "(none)" end
  out[#out + 1] = "  bounding:  " .. list(root.bounding)
  out[#out + 1] = "  root:      effective and permitted = bounding; inheritable " .. list(root.inheritable)
  out[#out + 1] = "  other uid: effective and permitted " .. list(other.effective)
  out[#out + 1] = "  ambient:   " .. list(root.ambient)
end

local function seccomp_line(p)
  local profile = security.seccomp_profile(p.seccomp, security.capability_sets(p.caps, true).effective)
  if not profile then
    return "seccomp: unconfined (no filter)"
  end
  local count, skipped = core.seccomp_count(profile)
  local name = type(p.seccomp) == "string" and p.seccomp
               or (type(p.seccomp) == "table" and p.seccomp.base and p.seccomp.base .. " + custom rules")
               or "custom profile"
  return string.format("seccomp: %s, %s rules, default action %s%s, %d names unknown to libseccomp",
                       name, tostring(count), profile.default,
                       profile.default_errno and " " .. profile.default_errno or "", #(skipped or {}))
end

local function hooks_line(p)
  local names = {}
  for _, name in ipairs(policy.HOOKS) do
    if p.hooks[name] then names[#names + 1] = name end
  end
  return "hooks: " .. (#names > 0 and table.concat(names, ", ") or "none")
end

--- Return the text --explain prints: the steps policy p performs for a
-- container running argv as user, without running anything.
function M.explain(p, argv, user)
  local out = {}
  out[#out + 1] = "namespaces: " .. on_off(p)
  out[#out + 1] = "id maps: none (the host's user ids)"
  out[#out + 1] = "network: " .. p.network .. (#p.ports > 0 and " ports " .. table.concat(p.ports, " ") or "")
  out[#out + 1] = "mounts:"
  out[#out + 1] = "  root: overlay of the image's layers" .. (p.readonly and ", read-only" or "")
  out[#out + 1] = "  /proc, /dev (tmpfs with null zero full random urandom tty), /dev/pts (new instance), /dev/shm"
  out[#out + 1] = "  /dev/mqueue" .. (p.namespaces.ipc and "" or " (skipped: no ipc namespace)")
  out[#out + 1] = "  /sys read-only" .. ((p.namespaces.net and p.network ~= "host") and " (sysfs)" or " (bind of the host's)")
  out[#out + 1] = "  /etc/hosts, /etc/resolv.conf, /etc/hostname (read-only binds)"
  for _, m in ipairs(p.mounts) do out[#out + 1] = "  " .. mount_line(m) end
  out[#out + 1] = "masked: " .. table.concat(p.masked_paths, " ")
  out[#out + 1] = "read-only: " .. table.concat(p.readonly_paths, " ")
  out[#out + 1] = string.format("process: user %s, groups %s, cwd %s, umask %s, no_new_privs %s",
                                user or p.user or "0 (root)",
                                #p.groups > 0 and table.concat(p.groups, ",") or "(from /etc/group)",
                                p.cwd, tostring(p.umask), tostring(p.no_new_privs))
  local limits = {}
  for name, v in pairs(p.rlimits) do
    limits[#limits + 1] = name .. "=" .. (type(v) == "table" and (v[1] .. ":" .. v[2]) or tostring(v))
  end
  table.sort(limits)
  out[#out + 1] = "rlimits: " .. (#limits > 0 and table.concat(limits, " ") or "inherited")
  out[#out + 1] = "capabilities:"
  caps_lines(p, out)
  out[#out + 1] = seccomp_line(p)
  out[#out + 1] = hooks_line(p)
  out[#out + 1] = "exec: " .. (p.init and "through the built-in init (PID 1), command as PID 2: " or "directly: ")
                  .. table.concat(argv or {}, " ")
  return table.concat(out, "\n") .. "\n"
end

-- }======================================================

return M
