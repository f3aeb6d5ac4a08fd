--- The container runtime: turns a policy and a root filesystem into the flat
-- sequence of steps of the parent and of the child, runs it, and cleans up.
--
-- The child is a fork of nsbuild (core.clone) that runs its half of the
-- sequence in Lua and ends in exec or _exit; an error in it reaches the parent
-- through a close-on-exec pipe and becomes an nsbuild error with exit code
-- 125, 126 (cannot invoke) or 127 (not found).
local core = require "nsbuild.core"
local errors = require "nsbuild.errors"
local policy = require "nsbuild.policy"

local M = {}

-- The PATH crun and podman give a container whose environment sets none.
M.DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

local devices = { "null", "zero", "full", "random", "urandom", "tty" }

local dev_links = {
  { "fd", "/proc/self/fd" },
  { "stdin", "/proc/self/fd/0" },
  { "stdout", "/proc/self/fd/1" },
  { "stderr", "/proc/self/fd/2" },
  { "ptmx", "pts/ptmx" },
  { "core", "/proc/kcore" },
}

local function must(what, value, message)
  if value == nil then
    error(what .. ": " .. tostring(message), 0)
  end
  return value
end

-- Overlay options split on ',' and ':', with backslash as the escape.
local function overlay_escape(path)
  return (path:gsub("[\\,:]", "\\%0"))
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

--- Return the overlay mount data for layers (bottom to top) with upper and work
-- directories, and the directory the lower layers are named relative to.
-- Naming them relative to their common parent keeps the data short: the
-- kernel takes at most one page of mount options.
function M.overlay_options(layers, upper, work)
  local parent = dirname(layers[1])
  for _, dir in ipairs(layers) do
    if dirname(dir) ~= parent then
      parent = nil
      break
    end
  end
  local lower = {}
  for i = #layers, 1, -1 do
    local dir = layers[i]
    lower[#lower + 1] = overlay_escape(parent and dir:sub(#parent + 2) or dir)
  end
  local data = "lowerdir=" .. table.concat(lower, ":")
  if upper then
    data = data .. ",upperdir=" .. overlay_escape(upper) .. ",workdir=" .. overlay_escape(work)
  end
  -- Layers must read the same under any later stack: no redirects, no metacopy, no index.
  data = data .. ",redirect_dir=off,index=off,metacopy=off"
  return data, parent
end

local function mount_rootfs(c)
  local r = c.rootfs
  if r.bind then
    must("bind the root filesystem", core.mount(r.bind, r.target, nil, { "bind", "rec" }))
    return
  end
  local data, parent = M.overlay_options(r.layers, r.upper, r.work)
  -- Relative lowerdir names resolve against the working directory of the mounter.
  if parent then
    must("enter the layer directory", core.chdir(parent))
  end
  local ok, err = core.mount("overlay", r.target, "overlay", {}, data)
  if not ok then
    error("mount the overlay root filesystem: " .. err, 0)
  end
end

local function mount_proc(c)
  must("create /proc", core.mkdirs_in_root(c.root, "proc", 0555))
  local fd = must("open /proc", core.open_in_root(c.root, "proc", { "path", "directory" }))
  must("mount /proc", core.mount("proc", fd, "proc", { "nosuid", "nodev", "noexec" }))
  fd:close()
end

local function mount_dev(c)
  must("create /dev", core.mkdirs_in_root(c.root, "dev", 0755))
  local fd = must("open /dev", core.open_in_root(c.root, "dev", { "path", "directory" }))
  must("mount /dev", core.mount("tmpfs", fd, "tmpfs", { "nosuid", "noexec" }, "mode=755,size=65536k"))
  fd:close()

  for _, name in ipairs(devices) do
    local node = must("create /dev/" .. name,
                      core.open_in_root(c.root, "dev/" .. name, { "creat", "excl", "wronly", "nofollow" }, 0666))
    must("bind /dev/" .. name, core.mount("/dev/" .. name, node, nil, { "bind" }))
    node:close()
  end
  for _, link in ipairs(dev_links) do
    must("link /dev/" .. link[1], core.symlink_in_root(c.root, link[2], "dev/" .. link[1]))
  end

  must("create /dev/pts", core.mkdirs_in_root(c.root, "dev/pts", 0755))
  local pts = must("open /dev/pts", core.open_in_root(c.root, "dev/pts", { "path", "directory" }))
  must("mount /dev/pts", core.mount("devpts", pts, "devpts", { "nosuid", "noexec" },
                                    "newinstance,ptmxmode=0666,mode=0620"))
  pts:close()

  must("create /dev/shm", core.mkdirs_in_root(c.root, "dev/shm", 01777))
  local shm = must("open /dev/shm", core.open_in_root(c.root, "dev/shm", { "path", "directory" }))
  must("mount /dev/shm", core.mount("shm", shm, "tmpfs", { "nosuid", "nodev", "noexec" },
                                    "mode=1777,size=65536k"))
  shm:close()
end

-- pivot_root(".", ".") stacks the old root under the new one; detaching it
-- leaves no path back to the host's tree.
local function pivot(c)
  must("enter the root filesystem", core.chdir(c.rootfs.target))
  must("pivot_root", core.pivot_root(".", "."))
  must("detach the old root", core.umount(".", { "detach" }))
  must("chdir /", core.chdir("/"))
end

local function exec_command(c)
  must("mark descriptors close-on-exec", core.cloexec_from(3))
  local _, message, errno = core.execve(c.argv[1], c.argv, c.env)
  local code = errno == 2 and errors.NOT_FOUND or errors.CANNOT_INVOKE
  error({ message = message, code = code }, 0)
end

--- The child's sequence, in order. Each entry is { name, function(c) }; the
-- name prefixes any error the step raises.
M.child_steps = {
  -- The parent writes id maps and attaches cgroups before it lets the child go on.
  { "wait for the parent", function(c)
      c.sync_write:close()
      c.sync_read:read(1)
      c.sync_read:close()
    end },
  -- A container outlives no nsbuild: if the parent dies, even by SIGKILL, the
  -- kernel kills this first process and with it the whole pid namespace.
  { "tie to the parent", function()
      must("set the parent-death signal", core.set_pdeathsig("KILL"))
    end },
  -- Nothing mounted from here on may propagate back to the host.
  { "make / private", function()
      must("make / private", core.mount(nil, "/", nil, { "rec", "private" }))
    end },
  { "mount the root filesystem", mount_rootfs },
  { "mount /proc", mount_proc },
  { "mount /dev", mount_dev },
  { "create the working directory", function(c)
      must("create " .. c.cwd, core.mkdirs_in_root(c.root, c.cwd, 0755))
    end },
  { "set the hostname", function(c)
      if c.namespaces.uts then
        must("sethostname", core.sethostname(c.hostname))
      end
    end },
  { "bring up loopback", function(c)
      if c.namespaces.net then
        must("bring up lo", core.link_up("lo"))
      end
    end },
  { "pivot_root", pivot },
  { "enter the working directory", function(c)
      must("chdir " .. c.cwd, core.chdir(c.cwd))
    end },
  { "exec", exec_command },
}

local function child_main(c)
  for _, step in ipairs(M.child_steps) do
    local ok, err = pcall(step[2], c)
    if not ok then
      if type(err) == "table" then
        error(err, 0)
      end
      error({ message = step[1] .. ": " .. tostring(err), code = errors.FAILED }, 0)
    end
  end
end

local function exit_code(how, value)
  if how == "signaled" then
    return 128 + value
  end
  return value
end

--- Build the environment list of a container: the image's, then the policy's,
-- with PATH and HOSTNAME filled in when unset.
function M.environment(image_env, policy_env, hostname)
  local env, seen = {}, {}
  local function add(entry)
    local name = entry:match("^([^=]*)=")
    if not name then
      errors.raise("invalid environment entry '%s': expected NAME=VALUE", entry)
    end
    if seen[name] then
      env[seen[name]] = entry
    else
      env[#env + 1] = entry
      seen[name] = #env
    end
  end
  add("PATH=" .. M.DEFAULT_PATH)
  add("HOSTNAME=" .. hostname)
  add("HOME=/root")
  add("container=nsbuild")
  for _, e in ipairs(image_env or {}) do add(e) end
  for _, e in ipairs(policy_env or {}) do add(e) end
  return env
end

--- Run argv in a container and wait for it.
-- spec: { rootfs = { layers = {dir, ...} (bottom to top), upper, work, target }
--         or { bind = dir, target }, argv = {...}, env = {"K=V", ...},
--         policy = a policy table (default policy.default), hostname, cwd }.
-- Returns the exit code as a shell reports it (128+N for signal N). Raises an
-- nsbuild error (codes 125/126/127) when the container could not start.
function M.run(spec)
  local p = spec.policy or policy.default
  local c = {
    rootfs = spec.rootfs,
    root = spec.rootfs.target,
    argv = spec.argv,
    env = spec.env,
    cwd = spec.cwd or p.cwd or "/",
    hostname = spec.hostname or p.hostname or "nsbuild",
    namespaces = {},
  }
  if #c.argv == 0 then
    errors.raise("no command to run: give one, or set cmd or entrypoint in the image")
  end
  local list = policy.namespace_list(p)
  for _, name in ipairs(list) do
    c.namespaces[name] = true
  end

  c.sync_read, c.sync_write = errors.check(core.pipe())
  local pid, errfd = core.clone(list, function() child_main(c) end)
  if not pid then
    c.sync_read:close()
    c.sync_write:close()
    errors.raise("cannot create the container: %s", errfd)
  end
  c.sync_read:close()

  -- Signals for nsbuild go to the container from now until it is reaped.
  core.forward_signals(pid)
  c.sync_write:close()

  local started, message = pcall(core.await_exec, errfd)
  errfd:close()
  local _, how, value = core.waitpid(pid)
  core.forward_signals(nil)
  local code = exit_code(how, value)
  if not started then
    errors.raise_code(code ~= 0 and code or errors.FAILED, "container: %s", tostring(message))
  end
  return code
end

return M
