--- User namespaces: the id maps of a container's user namespace, which the
-- parent writes between clone and release. Also mapped children, which do in
-- the store what a user other than root cannot do directly: extract archives
-- with their owners, and remove trees owned by subordinate ids.
--
-- A user other than root is root inside: its own uid maps to 0 and the ranges
-- /etc/subuid and /etc/subgid grant it map to 1 and up, through the setuid
-- helpers newuidmap and newgidmap (package uidmap). Without ranges only its
-- own ids are mapped, written directly with setgroups denied, and a warning
-- names the fix. Root maps the ranges listed for root, written directly.
-- Requires nsbuild.core, cjson, errors and log.
local core = require "nsbuild.core"
local cjson = require "cjson"
local errors = require "nsbuild.errors"
local log = require "nsbuild.log"

local M = {}

M.SUBUID = "/etc/subuid"
M.SUBGID = "/etc/subgid"
-- The directory of the kernel's settings, replaceable so that a test can give its own.
M.SYSCTL_DIR = "/proc/sys"

local EPERM, EACCES, ENOENT, ENOSPC = 1, 13, 2, 28

local function read_file(path)
  local f = io.open(path, "r")
  if not f then
    return nil
  end
  local text = f:read("a")
  f:close()
  return text
end

--- Return true when nsbuild runs as a user other than root, which always
-- needs a user namespace to build and run containers.
function M.rootless()
  return core.geteuid() ~= 0
end

--- Return true when this process runs in a user namespace other than the
-- initial one, whose uid_map maps every id to itself.
function M.inside()
  local map = read_file("/proc/self/uid_map") or ""
  return not map:match("^%s*0%s+0%s+4294967295%s*$")
end

-- The name of uid in /etc/passwd, or nil.
local function user_name(uid)
  for line in (read_file("/etc/passwd") or ""):gmatch("[^\n]+") do
    local name, id = line:match("^([^:]*):[^:]*:(%d+):")
    if id and tonumber(id) == uid then
      return name
    end
  end
  return nil
end

--- Return the subordinate ranges that the file at path (in the format of
-- subuid(5)) grants the user named name or numbered id, as a list of
-- { start, count } in the order listed. An unreadable file grants none.
function M.ranges(path, name, id)
  local list = {}
  for line in (read_file(path) or ""):gmatch("[^\n]+") do
    local owner, start, count = line:match("^%s*([^:#%s][^:]*):(%d+):(%d+)%s*$")
    if owner and (owner == name or tonumber(owner) == id) and tonumber(count) > 0 then
      list[#list + 1] = { tonumber(start), tonumber(count) }
    end
  end
  return list
end

-- The map of one kind: id itself to 0 when it is not root, then the ranges
-- from 1 up (from 0 for root, which is root inside only through its ranges).
local function kind_map(id, ranges)
  local map, inside = {}, 0
  if id ~= 0 or #ranges == 0 then
    map[1] = { 0, id, 1 }
    inside = 1
  end
  for _, r in ipairs(ranges) do
    map[#map + 1] = { inside, r[1], r[2] }
    inside = inside + r[2]
  end
  return map
end

local cached_plan

-- cjson decodes every number as a float: give integers back their subtype.
local function integers(value)
  if type(value) == "number" then
    return math.tointeger(value) or value
  end
  if type(value) == "table" then
    for k, v in pairs(value) do value[k] = integers(v) end
  end
  return value
end

--- Return the id maps of a user namespace for this process: { uid = map,
-- gid = map, uid_helper = bool, gid_helper = bool }, each map a list of
-- { inside, outside, count }. The helpers (newuidmap, newgidmap) write the
-- maps with ranges of a user other than root. Warns once when a kind has no
-- ranges, naming the command that adds them.
function M.plan()
  if cached_plan then
    return cached_plan
  end
  local uid, gid = core.geteuid(), core.getgid()
  local name = user_name(uid)
  local uids = M.ranges(M.SUBUID, name, uid)
  local gids = M.ranges(M.SUBGID, name, uid)
  cached_plan = { uid = kind_map(uid, uids), gid = kind_map(gid, gids),
                  uid_helper = uid ~= 0 and #uids > 0, gid_helper = uid ~= 0 and #gids > 0 }
  local missing = {}
  if #uids == 0 then missing[#missing + 1] = "uids in " .. M.SUBUID end
  if #gids == 0 then missing[#missing + 1] = "gids in " .. M.SUBGID end
  if #missing > 0 then
    local shown = name or tostring(uid)
    log.warn_once("subordinate ids", "%s has no subordinate %s: only its own ids are mapped "
                  .. "there (to root inside), so files of the image's other users (such as "
                  .. "apt's _apt) cannot be created; as root, run: usermod --add-subuids "
                  .. "100000-165535 --add-subgids 100000-165535 %s (choose ranges no other user "
                  .. "has)", shown, table.concat(missing, " or "), shown)
  end
  return cached_plan
end

--- Forget the cached plan, so that the next plan() reads the files again.
function M.reset()
  cached_plan = nil
end

-- Run a helper (newuidmap, newgidmap) and wait for it by pid. Returns true,
-- or nil and a message with its output.
local function run_helper(argv)
  local r, w = core.pipe()
  if not r then
    return nil, w
  end
  local pid, err, errno = core.spawn(argv, nil, { stdout = w, stderr = w })
  w:close()
  if not pid then
    r:close()
    if errno == ENOENT then
      return nil, err .. " (install the uidmap package: apt-get install uidmap)"
    end
    return nil, err
  end
  local output = r:read_all() or ""
  r:close()
  local _, how, value = core.waitpid(pid)
  if how == "exited" and value == 0 then
    return true
  end
  output = output:gsub("%s+$", "")
  return nil, string.format("%s failed (%s %s): %s", argv[1], how, tostring(value), output)
end

local function helper_argv(name, pid, map)
  local argv = { name, tostring(pid) }
  for _, line in ipairs(map) do
    for _, n in ipairs(line) do argv[#argv + 1] = tostring(n) end
  end
  return argv
end

--- Write the uid and gid maps of the user namespace of the waiting child pid.
-- Returns true, or nil and a message naming the map and the fix.
function M.map(pid, plan)
  plan = plan or M.plan()
  local ok, err
  if plan.uid_helper then
    ok, err = run_helper(helper_argv("newuidmap", pid, plan.uid))
  else
    ok, err = core.write_id_map(pid, "uid", plan.uid)
  end
  if not ok then
    return nil, "cannot write the uid map: " .. tostring(err)
  end
  if plan.gid_helper then
    ok, err = run_helper(helper_argv("newgidmap", pid, plan.gid))
  else
    -- A user other than root may write a gid map only once setgroups is
    -- denied: otherwise it could drop a group that denies it access.
    if core.geteuid() ~= 0 then
      ok, err = core.write_setgroups(pid, "deny")
      if not ok then
        return nil, "cannot deny setgroups: " .. tostring(err)
      end
    end
    ok, err = core.write_id_map(pid, "gid", plan.gid)
  end
  if not ok then
    return nil, "cannot write the gid map: " .. tostring(err)
  end
  return true
end

-- The value of a sysctl (a path below /proc/sys) as a number, or nil.
local function sysctl(name)
  local text = read_file(M.SYSCTL_DIR .. "/" .. name)
  return text and tonumber(text:match("^%s*(%-?%d+)"))
end

-- What forbids user namespaces here, with the command that allows them, or nil.
local function blocker()
  if sysctl("kernel/unprivileged_userns_clone") == 0 then
    return "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0); "
           .. "as root, run: sysctl -w kernel.unprivileged_userns_clone=1"
  end
  if sysctl("user/max_user_namespaces") == 0 then
    return "user namespaces are disabled (user.max_user_namespaces = 0); as root, run: "
           .. "sysctl -w user.max_user_namespaces=15000"
  end
  if sysctl("kernel/apparmor_restrict_unprivileged_userns") == 1 then
    return "AppArmor restricts unprivileged user namespaces "
           .. "(kernel.apparmor_restrict_unprivileged_userns = 1); as root, run: sysctl -w "
           .. "kernel.apparmor_restrict_unprivileged_userns=0, or give nsbuild an AppArmor "
           .. "profile with the userns rule"
  end
  return nil
end

--- Return the message for a clone of namespaces that failed with message and
-- errno: when a user namespace was requested and the kernel's settings forbid
-- it, the message names that setting and the command that allows it.
function M.clone_error(namespaces, message, errno)
  local wants_user = false
  for _, name in ipairs(namespaces) do
    wants_user = wants_user or name == "user"
  end
  if wants_user and (errno == EPERM or errno == EACCES or errno == ENOSPC) then
    local reason = blocker()
    if reason then
      return message .. ": " .. reason
    end
    if errno == ENOSPC then
      return message .. ": the limit user.max_user_namespaces (or the nesting depth of 32) is "
             .. "reached; raise it with sysctl -w user.max_user_namespaces=N"
    end
  end
  return message
end

--- Clone a child that runs fn, as core.clone does, adding a user namespace
-- mapped like a container's when nsbuild is not root. The child waits until
-- the parent has written its maps. Returns pid and the error pipe, or nil, a
-- message and errno.
function M.clone(namespaces, fn)
  if not M.rootless() then
    return core.clone(namespaces, fn)
  end
  local list = { "user" }
  for _, name in ipairs(namespaces) do
    if name ~= "user" then list[#list + 1] = name end
  end
  local r, w = core.pipe()
  if not r then
    return nil, w
  end
  local pid, errfd, errno = core.clone(list, function()
    core.set_pdeathsig("KILL")
    w:close()
    local released = r:read(1)
    r:close()
    if released ~= "1" then
      core._exit(errors.FAILED)
    end
    return fn()
  end)
  r:close()
  if not pid then
    w:close()
    return nil, M.clone_error(list, errfd, errno), errno
  end
  -- The child runs nothing before its ids are mapped: as the overflow uid it
  -- could not chown, nor own what it creates.
  local mapped, err = M.map(pid)
  if mapped then
    w:write("1")
  end
  w:close()
  if not mapped then
    errfd:close()
    core.waitpid(pid)
    return nil, err
  end
  return pid, errfd
end

--- Call fn(...) and return its results: in this process as root, or in a
-- child mapped like a container (root inside, the subordinate ids mapped) as
-- another user, so that fn may create and remove files of any mapped owner.
-- The results must be values cjson encodes. Raises fn's error.
function M.call(fn, ...)
  if not M.rootless() then
    return fn(...)
  end
  local args = table.pack(...)
  local r, w = errors.check(core.pipe())
  local pid, errfd = M.clone({}, function()
    r:close()
    local results = table.pack(fn(table.unpack(args, 1, args.n)))
    -- String keys: cjson rejects an array with holes (nil, message, errno).
    local encoded = { n = results.n, values = {} }
    for i = 1, results.n do encoded.values[tostring(i)] = results[i] end
    local ok, err = w:write(cjson.encode(encoded))
    if not ok then
      error("cannot return the results: " .. tostring(err), 0)
    end
    w:close()
    return 0
  end)
  w:close()
  if not pid then
    r:close()
    errors.raise("cannot start a process in a user namespace: %s", errfd)
  end
  -- The results first, to end of file: a child blocked on a full pipe never
  -- closes its error pipe.
  local data = r:read_all()
  r:close()
  local started, message = pcall(core.await_exec, errfd)
  errfd:close()
  local _, how, value = core.waitpid(pid)
  if not started then
    error(message, 0)
  end
  if how ~= "exited" or value ~= 0 then
    errors.raise("process in a user namespace ended (%s %s)", how, tostring(value))
  end
  local decoded = cjson.decode(data)
  local results = {}
  for i = 1, decoded.n do results[i] = integers(decoded.values[tostring(i)]) end
  return table.unpack(results, 1, math.tointeger(decoded.n))
end

--- Return the xattr that marks an opaque directory in this store's layers:
-- user.overlay.opaque for a user other than root, whose overlays are mounted
-- with userxattr, else trusted.overlay.opaque.
function M.opaque_xattr()
  return M.rootless() and "user.overlay.opaque" or "trusted.overlay.opaque"
end

--- Extract archive into dir as core.extract does, keeping the archive's owners.
-- Root extracts directly. Another user extracts in a mapped child, where the
-- owners land on the mapped ids, or on the user alone without subordinate
-- ranges. Device nodes are skipped there, because a user namespace cannot
-- create them. Returns the statistics, or nil, message, errno.
function M.extract(archive, dir, opts)
  if not M.rootless() then
    return core.extract(archive, dir, opts)
  end
  -- With only the user's own ids mapped, no other owner can be given: every
  -- entry then belongs to the user, root inside.
  local plan = M.plan()
  local options = { same_owner = plan.uid_helper and plan.gid_helper, skip_devices = true }
  for k, v in pairs(opts or {}) do options[k] = v end
  return M.call(function()
    local stats, err, errno = core.extract(archive, dir, options)
    if not stats then
      return nil, err, errno
    end
    return stats
  end)
end

-- Call fn(...) here, and again in a mapped child when the user lacks the
-- permission: most trees a user's build leaves contain only its own files,
-- and the child costs a clone and two helper processes.
local function with_fallback(fn, ...)
  local result, err, errno = fn(...)
  if result or not M.rootless() or (errno ~= EACCES and errno ~= EPERM) then
    return result, err, errno
  end
  return M.call(fn, ...)
end

--- Remove the tree at path as core.rmtree does. A user other than root removes
-- what it may not remove itself in a mapped child, so that files owned by its
-- subordinate ids go too. Returns true, or nil, message, errno.
function M.rmtree(path)
  return with_fallback(core.rmtree, path)
end

--- Rename from to to as core.rename does. A directory whose owner is a
-- subordinate id (an archive's "./" entry of another user) is renamed in a
-- mapped child, because moving a directory needs write permission on it.
-- Returns true, or nil, message, errno.
function M.rename(from, to)
  return with_fallback(core.rename, from, to)
end

--- Return the bytes allocated below path as core.du does. A user other than
-- root reads directories of its subordinate ids, which may be closed to it, in
-- a mapped child. Returns bytes and entries, or nil, message, errno.
function M.du(path)
  return with_fallback(core.du, path)
end

return M
