--- Control groups of containers on cgroup v2, v1 and hybrid hosts: detect the
-- layout, create a cgroup below nsbuild's own, write limits, attach, read
-- statistics, kill what is left and remove it.
--
-- Every cgroup nsbuild creates is named nsbuild-<pid>-<random hex>, with the
-- pid of the nsbuild process that owns it, so that the next run can remove the
-- cgroups of an nsbuild that was killed (see remove_stale).
local core = require "nsbuild.core"
local log = require "nsbuild.log"

local M = {}

local ENOENT = 2

-- CFS period of cpu limits: the kernel's default, 100 ms.
M.CPU_PERIOD_US = 100000

-- How long killed tasks get to leave their cgroup before removal fails.
M.REMOVE_TIMEOUT = 5

local Cgroup = {}
Cgroup.__index = Cgroup

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

local function read_file(path)
  local f = io.open(path)
  if not f then
    return nil
  end
  local text = f:read("a")
  f:close()
  return text
end

local function exists(path)
  return core.lstat(path) ~= nil
end

local function join(dir, rel)
  if rel == "/" or rel == "" then
    return dir
  end
  return (dir:gsub("/$", "")) .. rel
end

local function random_hex(bytes)
  local f = assert(io.open("/dev/urandom", "rb"))
  local raw = f:read(bytes)
  f:close()
  return (raw:gsub(".", function(ch) return string.format("%02x", ch:byte()) end))
end


-- {====================================================== layout

-- Split a mountinfo line into its mount root, mount point, file system type
-- and super options; the optional fields end at the " - " separator.
local function parse_mountinfo_line(line)
  local root, point, rest = line:match("^%S+ %S+ %S+ (%S+) (%S+) (.*)$")
  if not root then
    return nil
  end
  local fstype, _, super = rest:match(" %- (%S+) (%S+) (%S+)$")
  return root, point, fstype, super
end

-- Return the cgroup path (relative to the hierarchy's root) of each v1
-- controller and of the unified hierarchy, from /proc/self/cgroup text.
local function parse_proc_cgroup(text)
  local v1, unified = {}, nil
  for line in text:gmatch("[^\n]+") do
    local id, list, path = line:match("^(%d+):([^:]*):(.*)$")
    if id == "0" and list == "" then
      unified = path
    elseif id then
      for name in list:gmatch("[^,]+") do
        v1[name] = path
      end
    end
  end
  return v1, unified
end

-- The directory of a cgroup path inside a mount whose root is mount_root, or
-- nil when the cgroup lies outside what that mount shows.
local function dir_in_mount(point, mount_root, path)
  if mount_root == "/" then
    return join(point, path)
  end
  if path == mount_root then
    return point
  end
  if path:sub(1, #mount_root + 1) == mount_root .. "/" then
    return join(point, path:sub(#mount_root + 1))
  end
  return nil
end

--- Detect the cgroup layout from mountinfo and /proc/self/cgroup text (both
-- read from /proc/self when not given).
-- Returns { kind = "v2"|"v1"|"hybrid"|"none", unified = { dir, controllers }
-- or nil, v1 = { [controller] = { dir, mount } } }. `dir` is this process's
-- own cgroup directory in that hierarchy; unified.controllers is the set its
-- cgroup.controllers lists (read only when mountinfo is not given).
function M.detect(mountinfo, proc_cgroup)
  local live = mountinfo == nil
  mountinfo = mountinfo or assert(read_file("/proc/self/mountinfo"))
  proc_cgroup = proc_cgroup or assert(read_file("/proc/self/cgroup"))
  local paths, unified_path = parse_proc_cgroup(proc_cgroup)
  -- An nsbuild that moved itself into a leaf (see move_self_to_leaf) keeps
  -- creating containers beside that leaf, not below it.
  if live and unified_path then
    unified_path = unified_path:gsub("/nsbuild%-" .. core.getpid() .. "%-self$", "")
    if unified_path == "" then unified_path = "/" end
  end
  local layout = { v1 = {} }

  for line in mountinfo:gmatch("[^\n]+") do
    local root, point, fstype, super = parse_mountinfo_line(line)
    if fstype == "cgroup2" and unified_path and not layout.unified then
      local dir = dir_in_mount(point, root, unified_path)
      if dir then
        layout.unified = { dir = dir, mount = point, controllers = {} }
      end
    elseif fstype == "cgroup" then
      for name in super:gmatch("[^,]+") do
        local path = paths[name]
        if path and not layout.v1[name] and not name:find("=", 1, true) then
          local dir = dir_in_mount(point, root, path)
          if dir then
            layout.v1[name] = { dir = dir, mount = point }
          end
        end
      end
    end
  end

  if layout.unified and live then
    local text = read_file(layout.unified.dir .. "/cgroup.controllers") or ""
    for name in text:gmatch("%S+") do
      layout.unified.controllers[name] = true
    end
  end

  local has_v1 = next(layout.v1) ~= nil
  if has_v1 and layout.unified then
    layout.kind = "hybrid"
  elseif has_v1 then
    layout.kind = "v1"
  elseif layout.unified then
    layout.kind = "v2"
  else
    layout.kind = "none"
  end
  return layout
end

-- }======================================================


-- {====================================================== limits

local limit_fields = {
  memory = true, memory_swap = true, pids = true, cpu = true, cpuset = true,
  cpu_weight = true, io = true,
}
local io_fields = { device = true, read_bps = true, write_bps = true, read_iops = true,
                    write_iops = true }
local units = { [""] = 1, k = 1024, m = 1024 ^ 2, g = 1024 ^ 3, t = 1024 ^ 4 }

local function limit_error(field, fmt, ...)
  error(string.format("limits: %s: " .. fmt, field, ...), 0)
end

--- Parse a size in bytes: a number, or a string with a binary unit ("512M",
-- "1g", "64k", "100"). "max" and -1 mean unlimited and return "max".
function M.parse_bytes(value, field)
  field = field or "size"
  if value == "max" or value == -1 then
    return "max"
  end
  if math.type(value) == "integer" and value >= 0 then
    return value
  end
  if type(value) == "string" then
    local digits, unit = value:lower():match("^(%d+%.?%d*)%s*([kmgt]?)i?b?$")
    if digits then
      return math.floor(tonumber(digits) * units[unit])
    end
  end
  limit_error(field, "invalid size '%s' (expected bytes or a number with K, M, G or T, or \"max\")",
              tostring(value))
end

local function parse_pids(value)
  if value == "max" or value == -1 or value == 0 then
    return "max"
  end
  if math.type(value) == "integer" and value > 0 then
    return value
  end
  limit_error("pids", "invalid value '%s' (expected a positive integer, or \"max\", -1 or 0 for no limit)",
              tostring(value))
end

local function parse_cpu(value)
  if value == "max" then
    return "max"
  end
  if type(value) ~= "number" or value <= 0 then
    limit_error("cpu", "invalid value '%s' (expected a positive fraction of cores such as 0.5, or \"max\")",
                tostring(value))
  end
  local quota = math.floor(value * M.CPU_PERIOD_US + 0.5)
  -- The kernel rejects a quota below 1 ms.
  if quota < 1000 then
    limit_error("cpu", "%s is below the smallest quota the kernel takes (0.01 of a core)", tostring(value))
  end
  return quota
end

local function parse_device(spec)
  if type(spec) ~= "string" then
    limit_error("io", "device must be a path or \"MAJOR:MINOR\", not %s", tostring(spec))
  end
  local major, minor = spec:match("^(%d+):(%d+)$")
  if major then
    return major .. ":" .. minor
  end
  local st, message = core.stat(spec)
  if not st then
    limit_error("io", "device %s", message)
  end
  if st.type ~= "block" then
    limit_error("io", "'%s' is not a block device", spec)
  end
  return st.rdev_major .. ":" .. st.rdev_minor
end

local function parse_io(list)
  if type(list) ~= "table" then
    limit_error("io", "expected a list of { device = ..., read_bps = ..., ... }")
  end
  local out = {}
  for i, entry in ipairs(list) do
    if type(entry) ~= "table" then
      limit_error("io", "entry %d must be a table", i)
    end
    for k in pairs(entry) do
      if not io_fields[k] then
        limit_error("io", "unknown field '%s' (known: device, read_bps, write_bps, read_iops, write_iops)",
                    tostring(k))
      end
    end
    local d = { device = parse_device(entry.device) }
    for _, k in ipairs({ "read_bps", "write_bps" }) do
      d[k] = entry[k] ~= nil and M.parse_bytes(entry[k], "io." .. k) or nil
    end
    for _, k in ipairs({ "read_iops", "write_iops" }) do
      local v = entry[k]
      if v ~= nil and v ~= "max" and not (math.type(v) == "integer" and v > 0) then
        limit_error("io", "%s must be a positive integer or \"max\", not %s", k, tostring(v))
      end
      d[k] = v
    end
    out[#out + 1] = d
  end
  return out
end

--- Validate a limits table and return it in kernel units: memory and
-- memory_swap in bytes, pids a count, cpu a CFS quota in microseconds per
-- CPU_PERIOD_US, cpu_weight 1-10000, io a list of { device = "MAJ:MIN", ... }.
-- Unlimited values are "max"; absent ones stay nil. Raises on an invalid one.
function M.parse_limits(limits)
  for k in pairs(limits) do
    if not limit_fields[k] then
      local known = {}
      for name in pairs(limit_fields) do known[#known + 1] = name end
      table.sort(known)
      limit_error(tostring(k), "unknown limit (known: %s)", table.concat(known, ", "))
    end
  end
  local out = {}
  if limits.memory ~= nil then
    out.memory = M.parse_bytes(limits.memory, "memory")
    if out.memory == 0 then
      limit_error("memory", "0 bytes leaves no memory to run in; give a size, or \"max\" for no limit")
    end
  end
  if limits.memory_swap ~= nil then
    out.memory_swap = M.parse_bytes(limits.memory_swap, "memory_swap")
    if out.memory_swap ~= "max" and type(out.memory) ~= "number" then
      limit_error("memory_swap", "is memory plus swap, so it needs a memory limit too")
    end
    if out.memory_swap ~= "max" and out.memory_swap < out.memory then
      limit_error("memory_swap", "%s is below the memory limit %s (it counts memory plus swap)",
                  tostring(limits.memory_swap), tostring(limits.memory))
    end
  end
  if limits.pids ~= nil then out.pids = parse_pids(limits.pids) end
  if limits.cpu ~= nil then out.cpu = parse_cpu(limits.cpu) end
  if limits.cpuset ~= nil then
    if type(limits.cpuset) ~= "string" or not limits.cpuset:match("^%d[%d,%-]*$") then
      limit_error("cpuset", "invalid CPU list '%s' (expected a list such as \"0-1,3\")", tostring(limits.cpuset))
    end
    out.cpuset = limits.cpuset
  end
  if limits.cpu_weight ~= nil then
    local w = limits.cpu_weight
    if math.type(w) ~= "integer" or w < 1 or w > 10000 then
      limit_error("cpu_weight", "invalid weight '%s' (expected an integer from 1 to 10000; 100 is the default)",
                  tostring(w))
    end
    out.cpu_weight = w
  end
  if limits.io ~= nil then out.io = parse_io(limits.io) end
  return out
end

--- Convert a cgroup v2 cpu.weight (1-10000, default 100) to v1 cpu.shares
-- (2-262144, default 1024). The map is proportional so that the two defaults
-- meet and ratios between containers are kept.
function M.weight_to_shares(weight)
  local shares = weight * 1024 // 100
  return math.max(2, math.min(262144, shares))
end

local function v1_value(v)
  return v == "max" and "-1" or tostring(v)
end

local function io_line_v2(d)
  local parts = { d.device }
  for _, pair in ipairs({ { "rbps", "read_bps" }, { "wbps", "write_bps" },
                          { "riops", "read_iops" }, { "wiops", "write_iops" } }) do
    if d[pair[2]] ~= nil then
      parts[#parts + 1] = pair[1] .. "=" .. tostring(d[pair[2]])
    end
  end
  return table.concat(parts, " ")
end

local v1_io_files = {
  read_bps = "blkio.throttle.read_bps_device", write_bps = "blkio.throttle.write_bps_device",
  read_iops = "blkio.throttle.read_iops_device", write_iops = "blkio.throttle.write_iops_device",
}

--- Return the control-file writes that express parsed limits on cgroup
-- version 1 or 2, in the order they must be written: a list of
-- { controller, file, value, limit }.
function M.plan(parsed, version)
  local w = {}
  local function add(controller, file, value, limit)
    w[#w + 1] = { controller = controller, file = file, value = tostring(value), limit = limit }
  end
  if version == 2 then
    if parsed.memory then add("memory", "memory.max", parsed.memory, "memory") end
    if parsed.memory_swap then
      local swap = parsed.memory_swap == "max" and "max" or parsed.memory_swap - parsed.memory
      add("memory", "memory.swap.max", swap, "memory_swap")
    end
    if parsed.pids then add("pids", "pids.max", parsed.pids, "pids") end
    if parsed.cpu then add("cpu", "cpu.max", parsed.cpu .. " " .. M.CPU_PERIOD_US, "cpu") end
    if parsed.cpu_weight then add("cpu", "cpu.weight", parsed.cpu_weight, "cpu_weight") end
    if parsed.cpuset then add("cpuset", "cpuset.cpus", parsed.cpuset, "cpuset") end
    for _, d in ipairs(parsed.io or {}) do add("io", "io.max", io_line_v2(d), "io") end
    return w
  end
  -- v1 checks memory.memsw.limit_in_bytes >= memory.limit_in_bytes on each
  -- write, so memory goes first.
  if parsed.memory then add("memory", "memory.limit_in_bytes", v1_value(parsed.memory), "memory") end
  if parsed.memory_swap then
    add("memory", "memory.memsw.limit_in_bytes", v1_value(parsed.memory_swap), "memory_swap")
  end
  if parsed.pids then add("pids", "pids.max", parsed.pids, "pids") end
  if parsed.cpu then
    if parsed.cpu == "max" then
      add("cpu", "cpu.cfs_quota_us", "-1", "cpu")
    else
      add("cpu", "cpu.cfs_period_us", M.CPU_PERIOD_US, "cpu")
      add("cpu", "cpu.cfs_quota_us", parsed.cpu, "cpu")
    end
  end
  if parsed.cpu_weight then add("cpu", "cpu.shares", M.weight_to_shares(parsed.cpu_weight), "cpu_weight") end
  if parsed.cpuset then add("cpuset", "cpuset.cpus", parsed.cpuset, "cpuset") end
  for _, d in ipairs(parsed.io or {}) do
    for key, file in pairs(v1_io_files) do
      if d[key] ~= nil then
        add("blkio", file, d.device .. " " .. (d[key] == "max" and "0" or tostring(d[key])), "io")
      end
    end
  end
  return w
end

-- }======================================================


-- {====================================================== tree walks

-- The cgroup directories below dir (children before parents), not crossing
-- into another mount and never following a symlink.
local function subgroups(dir, out)
  out = out or {}
  local top = core.lstat(dir)
  for _, name in ipairs(core.listdir(dir) or {}) do
    local path = dir .. "/" .. name
    local st = core.lstat(path)
    if st and st.type == "dir" and top and st.dev == top.dev then
      subgroups(path, out)
      out[#out + 1] = path
    end
  end
  return out
end

-- The pids in the cgroup at dir and every cgroup below it.
local function tree_pids(dir)
  local pids = {}
  local dirs = subgroups(dir)
  dirs[#dirs + 1] = dir
  for _, d in ipairs(dirs) do
    for pid in (core.cgroup_read(d .. "/cgroup.procs") or ""):gmatch("%d+") do
      pids[#pids + 1] = tonumber(pid)
    end
  end
  return pids
end

local function kill_all(pids)
  for _, pid in ipairs(pids) do
    core.kill(pid, "KILL")
  end
end

-- Remove dir and the cgroups below it, children first. Returns true, or nil
-- and the first error.
local function remove_tree(dir)
  for _, sub in ipairs(subgroups(dir)) do
    local ok, err, errno = core.cgroup_rmdir(sub, M.REMOVE_TIMEOUT)
    if not ok then
      return nil, err, errno
    end
  end
  return core.cgroup_rmdir(dir, M.REMOVE_TIMEOUT)
end

-- Kill every process in a v2 cgroup tree: cgroup.kill (Linux 5.14) where the
-- kernel has it, else freeze so that nothing forks while the pids are read.
local function kill_v2(dir)
  if exists(dir .. "/cgroup.kill") then
    return core.cgroup_write(dir .. "/cgroup.kill", "1")
  end
  local frozen = core.cgroup_write(dir .. "/cgroup.freeze", "1")
  if frozen then
    core.cgroup_wait(dir .. "/cgroup.events", "frozen 1", 2)
  end
  kill_all(tree_pids(dir))
  if frozen then
    core.cgroup_write(dir .. "/cgroup.freeze", "0")
  end
  return true
end

-- Kill every process in v1 cgroup trees. With a freezer cgroup, freeze first,
-- so that no process forks between reading the pids and killing them; a
-- frozen task dies as soon as it is thawed.
local function kill_v1(dirs, freezer)
  local frozen = freezer and core.cgroup_write(freezer .. "/freezer.state", "FROZEN")
  if frozen then
    core.cgroup_wait(freezer .. "/freezer.state", "FROZEN", 2)
  end
  for _, dir in ipairs(dirs) do
    kill_all(tree_pids(dir))
  end
  if frozen then
    core.cgroup_write(freezer .. "/freezer.state", "THAWED")
  end
  return true
end

-- }======================================================


-- {====================================================== stale cgroups

local function owner_alive(pid)
  return pid == core.getpid() or exists("/proc/" .. pid)
end

-- The distinct directories of this process's own cgroups in the hierarchies
-- nsbuild uses, as { dir, version }.
local function own_dirs(layout)
  local list, seen = {}, {}
  if layout.kind == "v2" then
    list[1] = { dir = layout.unified.dir, version = 2 }
    return list
  end
  for _, h in pairs(layout.v1) do
    if not seen[h.dir] then
      seen[h.dir] = true
      list[#list + 1] = { dir = h.dir, version = 1 }
    end
  end
  table.sort(list, function(a, b) return a.dir < b.dir end)
  return list
end

--- Kill the processes of and remove every nsbuild-<pid>-* cgroup below this
-- process's own cgroups whose owner pid no longer runs: what an nsbuild killed
-- by SIGKILL leaves. Returns the list of removed directories; a cgroup that
-- cannot be removed is logged and kept.
function M.remove_stale(layout)
  layout = layout or M.detect()
  local removed = {}
  for _, own in ipairs(own_dirs(layout)) do
    for _, name in ipairs(core.listdir(own.dir) or {}) do
      local pid = name:match("^nsbuild%-(%d+)%-%w+$")
      local path = own.dir .. "/" .. name
      if pid and not owner_alive(tonumber(pid)) then
        if own.version == 2 then
          kill_v2(path)
        else
          kill_v1({ path }, layout.v1.freezer and layout.v1.freezer.dir == own.dir and path)
        end
        local ok, err, errno = remove_tree(path)
        if ok then
          removed[#removed + 1] = path
        elseif errno ~= ENOENT then
          -- ENOENT: another nsbuild, ending at the same time, removed it first.
          log.warn("cannot remove the stale cgroup %s: %s", path, err)
        end
      end
    end
  end
  return removed
end

-- }======================================================


-- {====================================================== v2 setup

-- Controllers that give statistics even without a limit; enabled when the
-- parent offers them.
local stats_controllers = { "memory", "pids" }

local function set_of_words(text)
  local set = {}
  for w in (text or ""):gmatch("%S+") do set[w] = true end
  return set
end

-- Move this process into a leaf cgroup of its own below dir, so that dir has
-- no processes and may enable controllers for its children (cgroup v2 allows
-- controllers only in cgroups without processes, the root excepted).
local function move_self_to_leaf(dir)
  local me = core.getpid()
  for pid in (core.cgroup_read(dir .. "/cgroup.procs") or ""):gmatch("%d+") do
    if tonumber(pid) ~= me then
      return nil, string.format(
        "%s has processes other than nsbuild (pid %s), and cgroup v2 enables controllers only "
        .. "in cgroups without processes; start nsbuild in a cgroup of its own, e.g. "
        .. "systemd-run --scope -p Delegate=yes nsbuild ...", dir, pid)
    end
  end
  local leaf = string.format("%s/nsbuild-%d-self", dir, me)
  if not exists(leaf) then
    local ok, err = core.cgroup_mkdir(leaf)
    if not ok then return nil, err end
  end
  return core.cgroup_write(leaf .. "/cgroup.procs", tostring(me))
end

-- Enable the controllers listed in to_enable in own's cgroup.subtree_control.
-- required lists those that limits need: failing to enable one is an error,
-- failing to enable another only leaves its statistics out.
local function enable_controllers(own, is_root, to_enable, required)
  local enabled = set_of_words(core.cgroup_read(own .. "/cgroup.subtree_control"))
  local missing = {}
  for _, name in ipairs(to_enable) do
    if not enabled[name] then missing[#missing + 1] = "+" .. name end
  end
  if #missing == 0 then
    return true
  end
  local ok, err = true, nil
  if not is_root then
    ok, err = move_self_to_leaf(own)
  end
  if ok then
    ok, err = core.cgroup_write(own .. "/cgroup.subtree_control", table.concat(missing, " "))
  end
  if ok then
    return true
  end
  for _, name in ipairs(required) do
    if not enabled[name] then
      return nil, string.format("cannot enable the %s controller in %s: %s", name, own, err)
    end
  end
  log.debug("statistics limited: cannot enable %s in %s: %s", table.concat(missing, " "), own, err)
  return true
end

local function controllers_of(writes)
  local list, seen = {}, {}
  for _, w in ipairs(writes) do
    if not seen[w.controller] then
      seen[w.controller] = true
      list[#list + 1] = w.controller
    end
  end
  return list
end

local function create_v2(cg, writes)
  local unified = cg.layout.unified
  local required = controllers_of(writes)
  for _, name in ipairs(required) do
    if not unified.controllers[name] then
      local limits = {}
      for _, w in ipairs(writes) do
        if w.controller == name then limits[w.limit] = true end
      end
      local names = {}
      for l in pairs(limits) do names[#names + 1] = l end
      table.sort(names)
      return nil, string.format("limit %s needs the %s controller, which %s does not offer "
                                .. "(its cgroup.controllers lists: %s)", table.concat(names, ", "),
                                name, unified.dir,
                                trim(core.cgroup_read(unified.dir .. "/cgroup.controllers") or ""))
    end
  end
  local to_enable, seen = { table.unpack(required) }, {}
  for _, name in ipairs(required) do seen[name] = true end
  for _, name in ipairs(stats_controllers) do
    if unified.controllers[name] and not seen[name] then to_enable[#to_enable + 1] = name end
  end
  local is_root = unified.dir == unified.mount
  local ok, err = enable_controllers(unified.dir, is_root, to_enable, required)
  if not ok then return nil, err end

  local dir = unified.dir .. "/" .. cg.name
  ok, err = core.cgroup_mkdir(dir)
  if not ok then return nil, err end
  cg.created[#cg.created + 1] = dir
  cg.v2 = dir
  return true
end

-- }======================================================


-- {====================================================== v1 setup

-- Hierarchies a v1 container cgroup joins even without limits: memory, pids
-- and cpuacct for statistics, freezer to kill reliably.
local v1_base = { "memory", "pids", "cpuacct", "freezer" }

-- A new v1 cpuset cgroup has empty cpus and mems, and the kernel refuses to
-- attach a task to it (ENOSPC), so it starts with its parent's.
local function init_cpuset(parent, dir)
  for _, file in ipairs({ "cpuset.cpus", "cpuset.mems" }) do
    local value, err = core.cgroup_read(parent .. "/" .. file)
    if not value then return nil, err end
    local ok, werr = core.cgroup_write(dir .. "/" .. file, trim(value))
    if not ok then return nil, werr end
  end
  return true
end

local function create_v1(cg, writes)
  local v1 = cg.layout.v1
  local needed, seen = {}, {}
  for _, name in ipairs(v1_base) do
    if v1[name] then needed[#needed + 1] = name; seen[name] = true end
  end
  for _, w in ipairs(writes) do
    if not v1[w.controller] then
      return nil, string.format("limit %s needs the v1 %s controller, which is not mounted on this %s host",
                                w.limit, w.controller, cg.layout.kind)
    end
    if not seen[w.controller] then
      seen[w.controller] = true
      needed[#needed + 1] = w.controller
    end
  end
  cg.v1 = {}
  local by_dir = {}
  for _, name in ipairs(needed) do
    local parent = v1[name].dir
    local dir = parent .. "/" .. cg.name
    if not by_dir[dir] then
      local ok, err = core.cgroup_mkdir(dir)
      if not ok then return nil, err end
      cg.created[#cg.created + 1] = dir
      by_dir[dir] = true
      if v1.cpuset and v1.cpuset.dir == parent then
        ok, err = init_cpuset(parent, dir)
        if not ok then return nil, err end
      end
    end
    cg.v1[name] = dir
  end
  return true
end

-- }======================================================


-- {====================================================== the cgroup object

local function write_limits(cg, writes)
  for _, w in ipairs(writes) do
    local dir = cg.v2 or cg.v1[w.controller]
    local ok, err = core.cgroup_write(dir .. "/" .. w.file, w.value)
    if not ok then
      local hint = ""
      if w.file == "memory.memsw.limit_in_bytes" and not exists(dir .. "/" .. w.file) then
        hint = " (swap accounting is off: boot with swapaccount=1)"
      end
      return nil, string.format("limit %s: %s%s", w.limit, err, hint)
    end
  end
  return true
end

--- Create a container's cgroup below this process's own cgroups, with limits
-- written. opts: { limits = policy limits table, layout = M.detect() result,
-- name = directory name (default nsbuild-<pid>-<random>) }.
-- Returns the cgroup object, or nil and a message that names the limit or
-- the file that failed; nothing is left behind on failure.
function M.create(opts)
  opts = opts or {}
  local parsed = M.parse_limits(opts.limits or {})
  local layout = opts.layout or M.detect()
  local cg = setmetatable({
    layout = layout,
    name = opts.name or string.format("nsbuild-%d-%s", core.getpid(), random_hex(4)),
    limits = opts.limits or {},
    created = {},
  }, Cgroup)

  if layout.kind == "none" then
    return nil, "no cgroup file system is mounted (see /proc/self/mountinfo)"
  end
  M.remove_stale(layout)
  local version = layout.kind == "v2" and 2 or 1
  local writes = M.plan(parsed, version)
  local ok, err
  if version == 2 then
    ok, err = create_v2(cg, writes)
  else
    ok, err = create_v1(cg, writes)
  end
  if ok then
    ok, err = write_limits(cg, writes)
  end
  if not ok then
    cg:destroy()
    return nil, err
  end
  return cg
end

--- Return the options for core.clone that start the child inside this cgroup
-- (clone3 CLONE_INTO_CGROUP), or nil when the child must be attached with
-- attach(): on v1 and hybrid layouts, and when M.use_clone_into is false.
function Cgroup:clone_options()
  if not self.v2 or M.use_clone_into == false then
    return nil
  end
  if not self.fd then
    self.fd = assert(core.cgroup_open(self.v2))
  end
  return { cgroup = self.fd }
end

--- Move pid into this cgroup in every hierarchy: write cgroup.procs. Returns
-- true, or nil and the message of the first write that failed.
function Cgroup:attach(pid)
  local dirs = self.v2 and { self.v2 } or {}
  if not self.v2 then
    local seen = {}
    for _, dir in pairs(self.v1) do
      if not seen[dir] then
        seen[dir] = true
        dirs[#dirs + 1] = dir
      end
    end
    table.sort(dirs)
  end
  for _, dir in ipairs(dirs) do
    local ok, err = core.cgroup_write(dir .. "/cgroup.procs", tostring(pid))
    if not ok then
      return nil, err
    end
  end
  return true
end

local function read_number(path)
  local text = core.cgroup_read(path)
  return text and tonumber(trim(text))
end

local function read_keyed(path, key)
  local text = core.cgroup_read(path)
  if not text then return nil end
  local value = text:match("%f[%w_]" .. key .. " (%d+)")
  return value and tonumber(value)
end

--- Return the statistics the kernel keeps for this cgroup:
-- { memory_peak = bytes, cpu_usec, cpu_user_usec, cpu_system_usec,
--   pids_peak, oom_kills }. A field the kernel does not provide is nil.
function Cgroup:stats()
  local s = {}
  if self.v2 then
    local d = self.v2
    s.memory_peak = read_number(d .. "/memory.peak")
    s.cpu_usec = read_keyed(d .. "/cpu.stat", "usage_usec")
    s.cpu_user_usec = read_keyed(d .. "/cpu.stat", "user_usec")
    s.cpu_system_usec = read_keyed(d .. "/cpu.stat", "system_usec")
    s.pids_peak = read_number(d .. "/pids.peak")
    s.oom_kills = read_keyed(d .. "/memory.events", "oom_kill")
    return s
  end
  local v1 = self.v1
  if v1.memory then
    s.memory_peak = read_number(v1.memory .. "/memory.max_usage_in_bytes")
    s.oom_kills = read_keyed(v1.memory .. "/memory.oom_control", "oom_kill")
  end
  if v1.cpuacct then
    local ns = read_number(v1.cpuacct .. "/cpuacct.usage")
    local user = read_number(v1.cpuacct .. "/cpuacct.usage_user")
    local sys = read_number(v1.cpuacct .. "/cpuacct.usage_sys")
    s.cpu_usec = ns and ns // 1000
    s.cpu_user_usec = user and user // 1000
    s.cpu_system_usec = sys and sys // 1000
  end
  if v1.pids then
    s.pids_peak = read_number(v1.pids .. "/pids.peak")
  end
  return s
end

--- Return the pids of the processes in this cgroup and below it.
function Cgroup:pids()
  return tree_pids(self.v2 or self.v1.freezer or self.v1.pids or self.v1.memory or self.created[1])
end

--- Kill every process left in the cgroup (cgroup.kill on v2, freeze and
-- SIGKILL on v1). Returns true.
function Cgroup:kill()
  if self.v2 then
    return kill_v2(self.v2)
  end
  if #self.created == 0 then
    return true
  end
  return kill_v1(self.created, self.v1 and self.v1.freezer)
end

--- Kill what is left and remove the cgroup in every hierarchy; safe to call
-- twice. Returns true, or nil and the message of the first removal that
-- failed (the others are still tried).
function Cgroup:destroy()
  if self.fd then
    self.fd:close()
    self.fd = nil
  end
  self:kill()
  local first_err
  for i = #self.created, 1, -1 do
    local ok, err = remove_tree(self.created[i])
    if ok then
      table.remove(self.created, i)
    elseif not first_err then
      first_err = err
    end
  end
  if first_err then
    return nil, first_err
  end
  return true
end

--- Describe the memory limit as the user gave it ("64M"), or nil.
function Cgroup:memory_limit()
  local m = self.limits.memory
  if m == nil or m == "max" or m == -1 then
    return nil
  end
  return tostring(m)
end

-- }======================================================

--- Format statistics for people: "memory peak 12.5M, cpu 0.41s (user 0.40s,
-- system 0.01s), pids peak 3, oom kills 0"; unknown values are left out.
function M.format_stats(s)
  local parts = {}
  if s.memory_peak then
    parts[#parts + 1] = string.format("memory peak %.1fM", s.memory_peak / 1048576)
  end
  if s.cpu_usec then
    local cpu = string.format("cpu %.3fs", s.cpu_usec / 1e6)
    if s.cpu_user_usec and s.cpu_system_usec then
      cpu = cpu .. string.format(" (user %.3fs, system %.3fs)", s.cpu_user_usec / 1e6, s.cpu_system_usec / 1e6)
    end
    parts[#parts + 1] = cpu
  end
  if s.pids_peak then parts[#parts + 1] = "pids peak " .. s.pids_peak end
  if s.oom_kills then parts[#parts + 1] = "oom kills " .. s.oom_kills end
  return table.concat(parts, ", ")
end

return M
