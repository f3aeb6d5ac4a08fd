--- Steps of the container's child that mount the kernel's file systems and
-- protect them: /sys, /dev/mqueue, masked and read-only paths, a read-only
-- root. Every path is resolved inside the root with core.open_in_root
-- (openat2 RESOLVE_IN_ROOT, no magic links), so a symlink in the image cannot
-- send a mount onto the host. Each function takes the context c of
-- container.lua and raises a message naming the path.
local core = require "nsbuild.core"
local log = require "nsbuild.log"
local net = require "nsbuild.net"

local M = {}

local ENOENT, EROFS = 2, 30

local must = require("nsbuild.errors").must

local function relative(path)
  return (path:gsub("^/+", ""))
end

-- Mount on the object path names inside root, opened with O_PATH: the mount
-- lands on what was resolved, not on a path that could change since.
local function mount_in_root(root, path, source, fstype, flags, data)
  local what = "mount " .. (fstype or "bind") .. " on " .. path
  local fd = must(what, core.open_in_root(root, relative(path), { "path" }))
  local ok, err = core.mount(source, fd, fstype, flags, data)
  fd:close()
  must(what, ok, err)
end

-- Create the mount point path when the image lacks it, recording it for
-- net.release, which removes it from a build step's layer. Returns false
-- when it is missing and the root is read-only.
local function create_mount_point(c, path, mode)
  local fd, err, errno = core.open_in_root(c.root, path, { "path", "directory" })
  if fd then
    fd:close()
    return true
  elseif errno ~= ENOENT then
    error("open /" .. path .. ": " .. tostring(err), 0)
  end
  local made, merr, merrno = core.mkdirs_in_root(c.root, path, mode)
  if not made and merrno == EROFS then
    return false
  end
  must("create /" .. path, made, merr)
  net.note_created(c, path)
  return true
end

--- Mount /sys read-only: a sysfs of its own in a new or joined network
-- namespace (sysfs shows the network devices of the mounter's namespace),
-- else a non-recursive bind of the host's /sys, so that the cgroup, debug and
-- security file systems mounted below it stay out. A read-only image
-- without /sys gets none.
function M.mount_sys(c)
  if not create_mount_point(c, "sys", tonumber("555", 8)) then
    log.debug("no /sys: the image has none and its root is read-only")
    return
  end
  local flags = { "nosuid", "nodev", "noexec", "rdonly" }
  if c.namespaces.net then
    mount_in_root(c.root, "/sys", "sysfs", "sysfs", flags)
    return
  end
  mount_in_root(c.root, "/sys", "/sys", nil, { "bind" })
  -- The kernel ignores MS_RDONLY on the first MS_BIND; the remount applies it.
  mount_in_root(c.root, "/sys", nil, nil, { "bind", "remount", "nosuid", "nodev", "noexec", "rdonly" })
end

--- Mount /dev/mqueue when the container has an IPC namespace of its own:
-- the mqueue file system shows the queues of the mounter's IPC namespace.
function M.mount_mqueue(c)
  if not c.namespaces.ipc then
    return
  end
  must("create /dev/mqueue", core.mkdirs_in_root(c.root, "dev/mqueue", tonumber("1777", 8)))
  mount_in_root(c.root, "/dev/mqueue", "mqueue", "mqueue", { "nosuid", "nodev", "noexec" })
end

-- Mask one path: a directory by an empty read-only tmpfs, anything else by a
-- bind of /dev/null. A path missing from this kernel is skipped.
local function mask(root, path)
  local fd, err, errno = core.open_in_root(root, relative(path), { "path" })
  if not fd then
    if errno == ENOENT then
      return
    end
    error("mask " .. path .. ": " .. tostring(err), 0)
  end
  local st = must("mask " .. path, core.fstat(fd))
  local ok, merr
  if st.type == "dir" then
    ok, merr = core.mount("tmpfs", fd, "tmpfs", { "rdonly", "nosuid", "nodev", "noexec" }, "size=0,mode=555")
  else
    ok, merr = core.mount("/dev/null", fd, nil, { "bind" })
  end
  fd:close()
  must("mask " .. path, ok, merr)
end

-- Make one path read-only: bind it onto itself, then remount the new mount
-- read-only with the nosuid, nodev and noexec of the /proc and /sys it is in.
-- A path missing from this kernel is skipped.
local function make_readonly(root, path)
  local fd, err, errno = core.open_in_root(root, relative(path), { "path" })
  if not fd then
    if errno == ENOENT then
      return
    end
    error("make " .. path .. " read-only: " .. tostring(err), 0)
  end
  local ok, merr = core.mount("/proc/self/fd/" .. fd:fileno(), fd, nil, { "bind", "rec" })
  fd:close()
  must("make " .. path .. " read-only", ok, merr)
  mount_in_root(root, path, nil, nil, { "bind", "remount", "rdonly", "nosuid", "nodev", "noexec" })
end

--- Mask the policy's masked paths and make its read-only paths read-only,
-- in the container's /proc and /sys (after pivot_root, root is "/").
function M.protect_paths(c)
  for _, path in ipairs(c.masked_paths) do
    mask(c.root, path)
  end
  for _, path in ipairs(c.readonly_paths) do
    make_readonly(c.root, path)
  end
end

--- Remount the root read-only when the policy sets readonly. The mounts on
-- top (/proc, /dev, /tmp, volumes) keep their own flags.
function M.readonly_root(c)
  if c.readonly then
    must("remount / read-only", core.mount(nil, "/", nil, { "bind", "remount", "rdonly" }))
  end
end

return M
