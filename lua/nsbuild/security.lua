--- The process side of a policy: user and group lookup in the image's
-- /etc/passwd and /etc/group, capability sets, seccomp profiles, rlimits and
-- umask. Pure functions that the policy validation and the container's child
-- share; the child calls them after pivot_root, so every file they read is
-- the container's. Depends on nsbuild.core and nsbuild.seccomp_profile.
local core = require "nsbuild.core"
local seccomp_profile = require "nsbuild.seccomp_profile"

local M = {}

--- podman's default capability set (containers.conf default_capabilities,
-- containers/common): what a container's root keeps unless the policy changes it.
M.DEFAULT_CAPS = { "chown", "dac_override", "fowner", "fsetid", "kill", "net_bind_service",
                   "setfcap", "setgid", "setpcap", "setuid", "sys_chroot" }

M.SECCOMP_NAMES = { "default", "strict", "unconfined" }

-- {====================================================== capabilities

--- Return the canonical name of a capability ("CAP_NET_ADMIN", "NET_ADMIN"
-- and "net_admin" all give "net_admin"), or nil when it is not one.
function M.cap_name(name)
  if type(name) ~= "string" then
    return nil
  end
  local short = name:lower():gsub("^cap_", "")
  for _, known in ipairs(core.cap_names()) do
    if known == short then
      return short
    end
  end
  return nil
end

-- The capabilities the running kernel supports, which "all" stands for.
local function all_caps()
  local list = {}
  for _, name in ipairs(core.cap_names()) do
    if core.cap_value(name) then
      list[#list + 1] = name
    end
  end
  return list
end

local function add_names(set, names)
  for _, name in ipairs(names) do
    if name:lower() == "all" then
      for _, cap in ipairs(all_caps()) do set[cap] = true end
    else
      set[M.cap_name(name)] = true
    end
  end
end

local function sorted(set)
  local list = {}
  for name in pairs(set) do list[#list + 1] = name end
  table.sort(list)
  return list
end

local function subtract(set, names)
  for _, name in ipairs(names) do
    if name:lower() == "all" then
      for cap in pairs(set) do set[cap] = nil end
    else
      set[M.cap_name(name)] = nil
    end
  end
end

--- Raise an error naming the first invalid entry of a caps table.
function M.check_caps(caps)
  local known = { keep = true, add = true, drop = true, bounding = true, ambient = true }
  for field, list in pairs(caps) do
    if not known[field] then
      error(string.format("caps: unknown field '%s' (known: add, ambient, bounding, drop, keep)",
                          tostring(field)), 0)
    end
    if type(list) ~= "table" then
      error(string.format("caps.%s must be a list of capability names", field), 0)
    end
    for _, name in ipairs(list) do
      local all = type(name) == "string" and name:lower() == "all"
      if not all and not M.cap_name(name) then
        error(string.format("caps.%s: unknown capability '%s' (names as in capabilities(7), "
                            .. "e.g. \"net_admin\" or \"CAP_NET_ADMIN\", or \"all\")",
                            field, tostring(name)), 0)
      end
    end
  end
end

--- Return the capability sets of a container's process as lists of names,
-- { bounding, effective, permitted, inheritable, ambient }, for root (uid 0)
-- or another user. The granted set is keep (default M.DEFAULT_CAPS) plus add,
-- minus drop; the bounding set is caps.bounding or the granted set. Root gets
-- the granted set. Another user holds only the ambient capabilities, which
-- must be granted too. The inheritable set is empty unless ambient
-- capabilities are asked for: the kernel keeps an ambient capability only
-- while it is also inheritable. Raises when the sets contradict each other.
function M.capability_sets(caps, is_root)
  caps = caps or {}
  local granted = {}
  add_names(granted, caps.keep or M.DEFAULT_CAPS)
  add_names(granted, caps.add or {})
  subtract(granted, caps.drop or {})

  local ambient = {}
  add_names(ambient, caps.ambient or {})
  for name in pairs(ambient) do
    if not granted[name] then
      error(string.format("caps.ambient: '%s' is not granted: add it to caps.add too", name), 0)
    end
  end

  local bounding = granted
  if caps.bounding then
    bounding = {}
    add_names(bounding, caps.bounding)
    for name in pairs(granted) do
      if not bounding[name] then
        error(string.format("caps.bounding lacks the granted capability '%s': a process cannot "
                            .. "hold what its bounding set lacks", name), 0)
      end
    end
  end

  local held = is_root and granted or ambient
  return {
    bounding = sorted(bounding),
    effective = sorted(held),
    permitted = sorted(held),
    inheritable = sorted(ambient),
    ambient = sorted(ambient),
  }
end

-- }======================================================

-- {====================================================== seccomp

local function copy(value)
  if type(value) ~= "table" then
    return value
  end
  local out = {}
  for k, v in pairs(value) do out[k] = copy(v) end
  return out
end

-- Remove from the base rules every syscall that a custom rule names, and
-- drop rules left empty. libseccomp rejects two rules that give one syscall
-- different actions when either has no condition, so a custom rule replaces
-- the base's rules for its syscalls instead of adding to them.
local function remove_syscalls(rules, names)
  local out = {}
  for _, rule in ipairs(rules) do
    local kept = {}
    for _, name in ipairs(rule.syscalls) do
      if not names[name] then kept[#kept + 1] = name end
    end
    if #kept > 0 then
      local r = copy(rule)
      r.syscalls = kept
      out[#out + 1] = r
    end
  end
  return out
end

local function named_profile(name, kept_caps)
  if name == "default" then
    return seccomp_profile.default({ caps = kept_caps })
  elseif name == "strict" then
    return seccomp_profile.strict()
  end
  error(string.format("seccomp: unknown profile '%s' (use \"default\", \"strict\" or "
                      .. "\"unconfined\", or a table)", tostring(name)), 0)
end

--- Return the seccomp profile (a table for core.seccomp_load) of a policy's
-- seccomp field, or nil for "unconfined". spec: "default", "strict",
-- "unconfined", a whole profile { default, rules, ... }, or
-- { base = "default"|"strict", rules = {...} }: custom rules merged into a
-- named profile, each replacing the base's rules for the syscalls it names.
-- kept_caps lists the granted capabilities, which open the default profile's
-- capability-gated syscalls.
function M.seccomp_profile(spec, kept_caps)
  spec = spec or "default"
  if spec == "unconfined" then
    return nil
  elseif type(spec) == "string" then
    return named_profile(spec, kept_caps)
  elseif type(spec) ~= "table" then
    error("seccomp must be \"default\", \"strict\", \"unconfined\" or a table", 0)
  end
  if spec.base == nil then
    return copy(spec)
  end
  for field in pairs(spec) do
    if field ~= "base" and field ~= "rules" then
      error(string.format("seccomp: unknown field '%s' beside base (known: base, rules)",
                          tostring(field)), 0)
    end
  end
  local profile = named_profile(spec.base, kept_caps)
  local names = {}
  for i, rule in ipairs(spec.rules or {}) do
    if type(rule) ~= "table" or type(rule.syscalls) ~= "table" then
      error(string.format("seccomp: rules[%d] needs a list of syscalls", i), 0)
    end
    for _, name in ipairs(rule.syscalls) do names[name] = true end
  end
  profile.rules = remove_syscalls(profile.rules, names)
  for _, rule in ipairs(spec.rules or {}) do
    profile.rules[#profile.rules + 1] = copy(rule)
  end
  return profile
end

-- }======================================================

-- {====================================================== users and groups

--- Parse the text of an /etc/passwd; return a list of { name, uid, gid, home }.
function M.parse_passwd(text)
  local list = {}
  for line in (text or ""):gmatch("[^\n]+") do
    local name, uid, gid, home = line:match("^([^:]*):[^:]*:(%d+):(%d+):[^:]*:([^:]*)")
    if name then
      list[#list + 1] = { name = name, uid = tonumber(uid), gid = tonumber(gid), home = home }
    end
  end
  return list
end

--- Parse the text of an /etc/group; return a list of { name, gid, members }.
function M.parse_group(text)
  local list = {}
  for line in (text or ""):gmatch("[^\n]+") do
    local name, gid, members = line:match("^([^:]*):[^:]*:(%d+):(.*)$")
    if name then
      local set = {}
      for member in members:gmatch("[^,%s]+") do set[member] = true end
      list[#list + 1] = { name = name, gid = tonumber(gid), members = set }
    end
  end
  return list
end

local function find(list, field, value)
  for _, entry in ipairs(list) do
    if entry[field] == value then
      return entry
    end
  end
  return nil
end

local function numeric_id(text)
  local n = text:match("^%d+$") and tonumber(text)
  if n and n < 4294967295 then
    return math.tointeger(n)
  end
  return nil
end

local function lookup_group(groups, spec, what)
  local gid = numeric_id(spec)
  if gid then
    return gid
  end
  local entry = find(groups, "name", spec)
  if not entry then
    error(string.format("%s '%s' not found in the image's /etc/group: use a numeric gid, "
                        .. "or add the group to the image", what, spec), 0)
  end
  return entry.gid
end

--- Return true when spec is a valid user field: "uid", "uid:gid", "name" or "name:group".
function M.valid_user(spec)
  if type(spec) ~= "string" then
    return false
  end
  return spec:match("^[^:]+$") ~= nil or spec:match("^[^:]+:[^:]+$") ~= nil
end

--- Resolve a user field against the texts of /etc/passwd and /etc/group.
-- Returns { uid, gid, groups = {gid, ...}, home (nil when unknown) }. A name
-- must exist in the file; a number need not, and then its group is 0. The
-- supplementary groups are those /etc/group lists the user in, then
-- extra_groups (numbers or names). Raises a message naming the missing entry.
function M.resolve_user(spec, passwd_text, group_text, extra_groups)
  local passwd, groups = M.parse_passwd(passwd_text), M.parse_group(group_text)
  local user_part, group_part = (spec or "0"):match("^([^:]+):?(.*)$")
  local entry
  local uid = numeric_id(user_part)
  if uid then
    entry = find(passwd, "uid", uid)
  else
    entry = find(passwd, "name", user_part)
    if not entry then
      error(string.format("user '%s' not found in the image's /etc/passwd: use a numeric uid, "
                          .. "or add the user to the image", user_part), 0)
    end
    uid = entry.uid
  end

  local gid = entry and entry.gid or 0
  if group_part ~= "" then
    gid = lookup_group(groups, group_part, "group")
  end

  local list, seen = {}, {}
  local function add(g)
    if not seen[g] then
      seen[g] = true
      list[#list + 1] = g
    end
  end
  if entry then
    for _, g in ipairs(groups) do
      if g.members[entry.name] then add(g.gid) end
    end
  end
  for _, g in ipairs(extra_groups or {}) do
    add(type(g) == "number" and g or lookup_group(groups, g, "supplementary group"))
  end
  return { uid = uid, gid = gid, groups = list, home = entry and entry.home or nil }
end

-- }======================================================

-- {====================================================== rlimits and umask

--- Return soft, hard of an rlimits entry: a number or "unlimited" sets both,
-- { soft, hard } each. Raises on another value.
function M.rlimit_values(name, value)
  local function check(v)
    if v == "unlimited" or (math.type(v) == "integer" and v >= 0) then
      return v
    end
    error(string.format("rlimits.%s: %s is not a limit (use an integer >= 0, \"unlimited\", "
                        .. "or { soft, hard })", name, tostring(v)), 0)
  end
  if type(value) == "table" then
    return check(value[1]), check(value[2])
  end
  return check(value), check(value)
end

--- Return the umask of a policy's umask field: an octal string ("0022") or a number.
function M.umask_value(value)
  local n = value
  if type(value) == "string" then
    n = value:match("^[0-7]+$") and tonumber(value, 8)
  end
  if math.type(n) ~= "integer" or n < 0 or n > 511 then
    error(string.format("umask '%s' is invalid: use an octal string such as \"0022\"",
                        tostring(value)), 0)
  end
  return n
end

-- }======================================================

-- {====================================================== validation

local RLIMIT_NAMES = { "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue",
                       "nice", "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack" }

local function check_list(list, what, check_entry)
  for i, entry in ipairs(list) do
    check_entry(entry, string.format("%s[%d]", what, i))
  end
end

local function check_absolute(path, what)
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
    error(string.format("%s must be an absolute path, not '%s'", what, tostring(path)), 0)
  end
end

local function check_rlimits(rlimits)
  for name, value in pairs(rlimits) do
    local known = false
    for _, n in ipairs(RLIMIT_NAMES) do known = known or n == name end
    if not known then
      error(string.format("rlimits: unknown resource '%s' (known: %s)", tostring(name),
                          table.concat(RLIMIT_NAMES, ", ")), 0)
    end
    local soft, hard = M.rlimit_values(name, value)
    local function number(v) return v == "unlimited" and math.huge or v end
    if number(soft) > number(hard) then
      error(string.format("rlimits.%s: the soft limit %s exceeds the hard limit %s", name,
                          tostring(soft), tostring(hard)), 0)
    end
  end
end

local function check_hooks(hooks, names)
  for name, fn in pairs(hooks) do
    local known = false
    for _, n in ipairs(names) do known = known or n == name end
    if not known then
      error(string.format("hooks: unknown hook '%s' (known: %s)", tostring(name),
                          table.concat(names, ", ")), 0)
    end
    if type(fn) ~= "function" then
      error(string.format("hooks.%s must be a function", name), 0)
    end
  end
end

-- A whole profile is checked by building it with libseccomp, which reports
-- an unknown field, action or conflicting rules.
local function check_seccomp(spec, caps)
  if type(spec) == "string" then
    local known = false
    for _, n in ipairs(M.SECCOMP_NAMES) do known = known or n == spec end
    if not known then
      error(string.format("seccomp '%s' is unknown (use \"default\", \"strict\", "
                          .. "\"unconfined\" or a table)", spec), 0)
    end
    return
  end
  local profile = M.seccomp_profile(spec, M.capability_sets(caps, true).effective)
  local ok, count, err = pcall(core.seccomp_count, profile)
  if not ok or not count then
    error("seccomp: " .. tostring(ok and err or count), 0)
  end
end

--- Raise an error naming the first invalid process or isolation field of
-- policy p: argv, user, groups, rlimits, umask, caps, seccomp, masked and
-- read-only paths, cwd, hooks (hook_names lists the known ones), and the
-- combinations of namespaces that cannot work.
function M.check(p, hook_names)
  if p.argv then
    check_list(p.argv, "argv", function(a, what)
      if type(a) ~= "string" then error(what .. " must be a string", 0) end
    end)
  end
  if p.user ~= nil and not M.valid_user(p.user) then
    error(string.format("user '%s' is invalid: use \"uid\", \"uid:gid\", \"name\" or "
                        .. "\"name:group\"", tostring(p.user)), 0)
  end
  check_list(p.groups or {}, "groups", function(g, what)
    if not (math.type(g) == "integer" and g >= 0) and type(g) ~= "string" then
      error(what .. " must be a gid (integer >= 0) or a group name", 0)
    end
  end)
  check_rlimits(p.rlimits or {})
  if p.umask ~= nil then M.umask_value(p.umask) end
  M.check_caps(p.caps or {})
  M.capability_sets(p.caps, true)
  if p.seccomp ~= nil then check_seccomp(p.seccomp, p.caps) end
  check_list(p.masked_paths or {}, "masked_paths", check_absolute)
  check_list(p.readonly_paths or {}, "readonly_paths", check_absolute)
  check_hooks(p.hooks or {}, hook_names or {})

  if p.cwd then
    check_absolute(p.cwd, "cwd")
    -- /proc/self/fd/N would name a descriptor of nsbuild's, outside the root.
    if p.cwd == "/proc" or p.cwd:match("^/proc/") then
      error(string.format("cwd '%s' is inside /proc: use a directory of the image", p.cwd), 0)
    end
  end

  local ns = p.namespaces or {}
  if type(ns.net) == "string" and p.network == "slirp" then
    error("network \"slirp\" would configure the joined network namespaces.net: use "
          .. "network = \"none\" with a joined namespace", 0)
  end
end

-- }======================================================

return M
