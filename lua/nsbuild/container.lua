--- The container runtime: turns a policy and a root filesystem into the flat
-- sequence of steps of the parent and of the child, runs it, and cleans up.
--
-- The child is a fork of nsbuild (core.clone) that runs its half of the
-- sequence in Lua and ends in exec or _exit. An error in it reaches the parent
-- through a close-on-exec pipe and becomes an nsbuild error with exit code
-- 125, 126 (cannot invoke) or 127 (not found).
local cgroup = require "nsbuild.cgroup"
local core = require "nsbuild.core"
local errors = require "nsbuild.errors"
local log = require "nsbuild.log"
local mounts = require "nsbuild.mounts"
local net = require "nsbuild.net"
local policy = require "nsbuild.policy"
local process = require "nsbuild.process"
local seccomp_cache = require "nsbuild.seccomp_cache"
local security = require "nsbuild.security"
local tty = require "nsbuild.tty"
local userns = require "nsbuild.userns"

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

local must = errors.must

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
  -- In a user namespace the trusted.overlay.* xattrs are out of reach: overlayfs
  -- (Linux 5.11 and later) then marks opaque directories with user.overlay.*,
  -- and rejects userxattr beside redirect_dir=off, which Linux 6.x reads as
  -- "follow": nofollow neither creates nor follows redirects.
  if userns.inside() then
    data = data .. ",redirect_dir=nofollow,index=off,metacopy=off,userxattr"
  else
    data = data .. ",redirect_dir=off,index=off,metacopy=off"
  end
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
  must("create /proc", core.mkdirs_in_root(c.root, "proc", tonumber("555", 8)))
  local fd = must("open /proc", core.open_in_root(c.root, "proc", { "path", "directory" }))
  must("mount /proc", core.mount("proc", fd, "proc", { "nosuid", "nodev", "noexec" }))
  fd:close()
end

local function mount_dev(c)
  must("create /dev", core.mkdirs_in_root(c.root, "dev", tonumber("755", 8)))
  local fd = must("open /dev", core.open_in_root(c.root, "dev", { "path", "directory" }))
  must("mount /dev", core.mount("tmpfs", fd, "tmpfs", { "nosuid", "noexec" }, "mode=755,size=65536k"))
  fd:close()

  for _, name in ipairs(devices) do
    local node = must("create /dev/" .. name,
                      core.open_in_root(c.root, "dev/" .. name, { "creat", "excl", "wronly", "nofollow" }, tonumber("666", 8)))
    must("bind /dev/" .. name, core.mount("/dev/" .. name, node, nil, { "bind" }))
    node:close()
  end
  for _, link in ipairs(dev_links) do
    must("link /dev/" .. link[1], core.symlink_in_root(c.root, link[2], "dev/" .. link[1]))
  end

  must("create /dev/pts", core.mkdirs_in_root(c.root, "dev/pts", tonumber("755", 8)))
  local pts = must("open /dev/pts", core.open_in_root(c.root, "dev/pts", { "path", "directory" }))
  must("mount /dev/pts", core.mount("devpts", pts, "devpts", { "nosuid", "noexec" },
                                    "newinstance,ptmxmode=0666,mode=0620"))
  pts:close()

  must("create /dev/shm", core.mkdirs_in_root(c.root, "dev/shm", tonumber("1777", 8)))
  local shm = must("open /dev/shm", core.open_in_root(c.root, "dev/shm", { "path", "directory" }))
  must("mount /dev/shm", core.mount("shm", shm, "tmpfs", { "nosuid", "nodev", "noexec" },
                                    "mode=1777,size=65536k"))
  shm:close()
end

local mount_options = { ro = "rdonly", nosuid = "nosuid", nodev = "nodev", noexec = "noexec" }

local function mount_flags(m, base)
  local flags = {}
  for _, f in ipairs(base) do flags[#flags + 1] = f end
  for _, opt in ipairs(m.options or {}) do
    flags[#flags + 1] = mount_options[opt]
  end
  return flags
end

-- Bind and tmpfs mounts of the policy, each target resolved inside the root.
-- A read-only bind needs a remount: the kernel ignores MS_RDONLY on MS_BIND.
local function mount_volumes(c)
  for _, m in ipairs(c.mounts) do
    local what = m.type .. " mount on " .. m.target
    local source_st = m.type == "bind" and must(what, core.stat(m.source))
    if source_st and source_st.type ~= "dir" then
      local parent = m.target:match("^(.*)/[^/]*$")
      must(what, core.mkdirs_in_root(c.root, parent ~= "" and parent or "/", tonumber("755", 8)))
      local f = must(what, core.open_in_root(c.root, m.target, { "creat", "wronly" }, tonumber("644", 8)))
      f:close()
    else
      must(what, core.mkdirs_in_root(c.root, m.target, tonumber("755", 8)))
    end
    local target = must(what, core.open_in_root(c.root, m.target, { "path" }))
    if m.type == "tmpfs" then
      must(what, core.mount("tmpfs", target, "tmpfs", mount_flags(m, {}), m.data or "mode=1777"))
    else
      must(what, core.mount(m.source, target, nil, { "bind", "rec" }))
      local flags = mount_flags(m, { "remount", "bind" })
      if #flags > 2 then
        must(what, core.mount(nil, target, nil, flags))
      end
    end
    target:close()
  end
end

-- pivot_root(".", ".") stacks the old root under the new one; detaching it
-- leaves no path back to the host's tree.
local function pivot(c)
  must("enter the root filesystem", core.chdir(c.rootfs.target))
  must("pivot_root", core.pivot_root(".", "."))
  must("detach the old root", core.umount(".", { "detach" }))
  must("chdir /", core.chdir("/"))
  -- Paths resolved inside the root from here on start at the new "/".
  c.root = "/"
end

-- Run the policy's hook name, if any, with the context c. The step's name
-- ("hook NAME") prefixes what it raises.
local function run_hook(name)
  return { "hook " .. name, function(c)
      local hook = c.hooks[name]
      if hook then
        hook(c)
      end
    end }
end

--- The child's sequence, in order. Each entry is { name, function(c) }; the
-- name prefixes any error the step raises.
M.child_steps = {
  -- The parent writes id maps and attaches cgroups before it lets the child go
  -- on. A container outlives no nsbuild: the parent-death signal is set first,
  -- and a release byte (not a mere end of file, which the death of nsbuild
  -- gives too) lets the child go on.
  { "wait for the parent", function(c)
      must("set the parent-death signal", core.set_pdeathsig("KILL"))
      c.sync_write:close()
      local released = c.sync_read:read(1)
      c.sync_read:close()
      if released ~= "1" then
        core._exit(errors.FAILED)
      end
    end },
  -- A started container outlives the call that started it: in a session of
  -- its own, the Ctrl-C typed at nsbuild's terminal does not reach it.
  { "leave nsbuild's session", function(c)
      if c.own_session then
        must("setsid", core.setsid())
      end
    end },
  -- Before anything else, so that every later step acts inside the joined
  -- namespaces. A pid namespace is joined by the parent around the clone:
  -- setns(CLONE_NEWPID) moves only the children forked after it.
  { "join namespaces", process.join_namespaces },
  -- Only now, attached to the container's cgroup, does a new cgroup namespace
  -- take that cgroup as its root; made by clone it would take nsbuild's.
  { "enter a cgroup namespace", function(c)
      if c.namespaces.cgroup == true then
        must("unshare the cgroup namespace", core.unshare({ "cgroup" }))
      end
    end },
  { "redirect the standard streams", function(c)
      if c.stdin then must("redirect stdin", core.dup2(c.stdin, 0)) end
      if c.stdout then must("redirect stdout", core.dup2(c.stdout, 1)) end
      if c.stderr then must("redirect stderr", core.dup2(c.stderr, 2)) end
    end },
  -- Nothing mounted from here on may propagate back to the host.
  { "make / private", function()
      must("make / private", core.mount(nil, "/", nil, { "rec", "private" }))
    end },
  { "mount the root filesystem", mount_rootfs },
  { "mount /proc", mount_proc },
  { "mount /dev", mount_dev },
  { "mount /dev/mqueue", mounts.mount_mqueue },
  { "mount /sys", mounts.mount_sys },
  -- Before pivot_root: the sources are files in the host's work directory.
  { "mount /etc/hosts, /etc/resolv.conf and /etc/hostname", net.mount_files },
  { "mount the policy's mounts", mount_volumes },
  { "create the working directory", function(c)
      must("create " .. c.cwd, core.mkdirs_in_root(c.root, c.cwd, tonumber("755", 8)))
    end },
  { "set the hostname", function(c)
      if c.namespaces.uts == true then
        must("sethostname", core.sethostname(c.hostname))
      end
    end },
  { "bring up loopback", function(c)
      if c.namespaces.net then
        must("bring up lo", core.link_up("lo"))
      end
    end },
  -- The last point where the host's tree is visible, for hooks that need it.
  run_hook("after_mounts"),
  { "pivot_root", pivot },
  -- After pivot_root, so that /proc and /sys are the container's own and
  -- root is "/"; before the capabilities go, because mounting needs sys_admin.
  { "mask and protect paths", mounts.protect_paths },
  -- After every mount on top of it is in place: mount points cannot be made
  -- on a read-only root.
  { "make the root read-only", mounts.readonly_root },
  run_hook("after_pivot"),
  -- After pivot_root, so that the names are the image's, not the host's.
  { "resolve the user", process.resolve_user },
  -- The pty comes from the container's devpts; its slave is given to the
  -- container's user before that user loses the capability to chown it.
  { "attach the terminal", tty.attach_child },
  { "enter the working directory", process.enter_cwd },
  -- Before the capabilities go: raising a hard limit needs sys_resource.
  { "set rlimits and umask", process.set_limits },
  -- Without no_new_privs the kernel loads a filter only for a process with
  -- sys_admin, which the next steps drop; the filter then has to allow them.
  { "load the seccomp filter early", function(c)
      if not c.no_new_privs then process.load_seccomp(c) end
    end },
  { "switch to the container's user", process.switch_user },
  -- After setresuid, which would otherwise clear the sets this step chooses.
  { "set capabilities", process.set_caps },
  -- The kernel clears the parent-death signal when the effective ids change:
  -- set it again, so that the container still ends with nsbuild.
  { "tie to the parent again", function(c)
      if c.user then
        must("set the parent-death signal", core.set_pdeathsig("KILL"))
      end
    end },
  { "set no_new_privs", process.set_no_new_privs },
  run_hook("before_exec"),
  -- Last but exec: every step before needs syscalls the filter may block
  -- (mount, pivot_root, capset, setns).
  { "load the seccomp filter", function(c)
      if c.no_new_privs then process.load_seccomp(c) end
    end },
  { "exec", process.exec },
}

--- Run steps (a list like M.child_steps) in order with the context c. An
-- error is raised again as { message, code }, prefixed with the step's name.
function M.run_steps(c, steps)
  for _, step in ipairs(steps) do
    local ok, err = pcall(step[2], c)
    if not ok then
      if type(err) == "table" then
        error(err, 0)
      end
      error({ message = step[1] .. ": " .. tostring(err), code = errors.FAILED }, 0)
    end
  end
end

local function child_main(c)
  M.run_steps(c, M.child_steps)
end

local function exit_code(how, value)
  if how == "signaled" then
    return 128 + value
  end
  return value
end

-- Clone the child into the cgroup where the kernel can (clone3 with
-- CLONE_INTO_CGROUP, cgroup v2, Linux 5.7), else clone it and write its pid
-- to cgroup.procs while it waits on the sync pipe.
local function clone_in_cgroup(c, list, cg)
  local fn = function() child_main(c) end
  local opts = cg and cg:clone_options()
  if opts then
    local pid, errfd, errno = core.clone(list, fn, opts)
    -- ENOSYS: no clone3; EINVAL: clone3 without CLONE_INTO_CGROUP.
    if pid or (errno ~= 38 and errno ~= 22) then
      return pid, errfd, true
    end
    log.debug("%s; attaching through cgroup.procs instead", errfd)
  end
  local pid, errfd, errno = core.clone(list, fn)
  return pid, errfd, false, errno
end

-- Write the files the child bind-mounts, before the clone so that the
-- child's copy of c names them: net.lua's /etc/hosts and /etc/resolv.conf,
-- and /etc/hostname in net.lua's directory, mounted and removed with them.
local function prepare_files(c)
  net.prepare(c, dirname(c.root))
  if c.namespaces.uts == true then
    local path = c.network.dir .. "/hostname"
    must("write " .. path, core.write_file(path, c.hostname .. "\n", tonumber("644", 8)))
    c.network.files[#c.network.files + 1] = { source = path, target = "etc/hostname" }
  end
end

-- Clone the child, inside the pid namespace the policy joins, if any: the
-- parent enters it for the clone only, because setns(CLONE_NEWPID) moves
-- the children forked after it, never the caller.
local function clone_child(c, list, cg)
  local pid_path = c.namespaces.pid ~= true and c.namespaces.pid or nil
  if not pid_path then
    return clone_in_cgroup(c, list, cg)
  end
  local own = errors.check(core.open("/proc/self/ns/pid", { "rdonly" }))
  local joined, err = core.setns(pid_path, "pid")
  if not joined then
    own:close()
    return nil, "join the pid namespace " .. pid_path .. ": " .. err
  end
  local pid, errfd, in_cgroup = clone_in_cgroup(c, list, cg)
  local back, berr = core.setns(own, "pid")
  own:close()
  if not back then
    -- nsbuild would fork its later helpers into the joined namespace.
    error("cannot return to nsbuild's own pid namespace: " .. berr, 0)
  end
  return pid, errfd, in_cgroup
end

-- Stop a child that has not been released yet and raise message.
local function abort(c, pid, errfd, message)
  core.kill(pid, "KILL")
  c.sync_write:close()
  errfd:close()
  core.waitpid(pid)
  errors.raise("%s", message)
end

-- Run the parent's hook name with c and the extra arguments. Returns nil
-- when it succeeds, else its error message prefixed with the hook's name.
local function run_parent_hook(c, name, ...)
  local hook = c.hooks[name]
  if not hook then
    return nil
  end
  local ok, err = pcall(hook, c, ...)
  if ok then
    return nil
  end
  return string.format("hook %s: %s", name, errors.is(err) and errors.describe(err) or tostring(err))
end

-- Once the command runs and before anything that blocks (the relay), give
-- the caller the pid and the context (with c.cgroup), to record the
-- container under run/.
local function record(c, pid)
  if c.on_exec then
    local ok, err = pcall(c.on_exec, pid, c)
    if not ok then
      log.warn("cannot record the running container: %s", tostring(err))
    end
  end
end

-- Wait for the child's exec, then run what the caller needs while the
-- command runs: the terminal relay, or on_started. Returns started, message.
local function follow(c, pid, errfd)
  tty.receive(c)
  local started, message = pcall(core.await_exec, errfd)
  errfd:close()
  if started then
    record(c, pid)
  end
  if started and c.tty then
    local ok, err = pcall(tty.relay, c, pid)
    if not ok then
      log.warn("terminal relay: %s", tostring(err))
    end
  end
  -- A caller that piped the command's output drains it here, before waitpid,
  -- so that a full pipe cannot stall the command.
  if started and c.on_started then
    local ok, err = pcall(c.on_started, pid)
    if not ok then
      log.warn("while the container ran: %s", tostring(err))
    end
  end
  tty.close(c)
  return started, message
end

-- The start half: clone the child, attach it, release it; return its pid
-- and the pipe that reports its exec. With forward, signals for nsbuild go
-- to the container until finish reaps it.
local function launch(c, list, cg, forward)
  prepare_files(c)
  tty.prepare(c)
  c.sync_read, c.sync_write = errors.check(core.pipe())
  local pid, errfd, in_cgroup, errno = clone_child(c, list, cg)
  tty.close_child_end(c)
  if not pid then
    c.sync_read:close()
    c.sync_write:close()
    tty.close(c)
    errors.raise("cannot create the container: %s", userns.clone_error(list, errfd, errno))
  end
  c.sync_read:close()

  -- First: every later step of the child acts as root of its user namespace.
  if c.namespaces.user == true then
    local mapped, err = userns.map(pid)
    if not mapped then
      abort(c, pid, errfd, "cannot map the container's ids: " .. err)
    end
  end

  -- The child waits on the sync pipe, so it runs nothing of the container
  -- before it is in its cgroup.
  if cg and not in_cgroup then
    local attached, err = cg:attach(pid)
    if not attached then
      abort(c, pid, errfd, "cannot attach the container to its cgroup: " .. tostring(err))
    end
  end

  -- The child's network namespace exists since the clone, and the child waits:
  -- slirp4netns configures it and forwards the ports before the command runs.
  local attached, err = pcall(net.attach, c, pid)
  if not attached then
    abort(c, pid, errfd, "cannot connect the container's network: " .. tostring(err))
  end

  local hook_error = run_parent_hook(c, "created", pid)
  if hook_error then
    abort(c, pid, errfd, hook_error)
  end

  -- Signals for nsbuild go to the container from now until it is reaped.
  if forward then
    core.forward_signals(pid)
  end
  must("release the container", c.sync_write:write("1"))
  c.sync_write:close()
  return pid, errfd
end

-- The wait half: reap the child and return its exit code; raise when it
-- never reached exec (started false, message its error).
local function finish(c, pid, started, message)
  local _, how, value = core.waitpid(pid)
  core.forward_signals(nil)
  local code = exit_code(how, value)
  if not started then
    errors.raise_code(code ~= 0 and code or errors.FAILED, "container: %s", tostring(message))
  end
  local hook_error = run_parent_hook(c, "exited", code)
  if hook_error then
    errors.raise("%s (the command exited with code %d)", hook_error, code)
  end
  return code
end

local function start(c, list, cg)
  local pid, errfd = launch(c, list, cg, true)
  local started, message = follow(c, pid, errfd)
  return finish(c, pid, started, message)
end

-- Start without waiting: return the pid once the command runs. Nothing is
-- relayed and no signal forwarded, so the caller may return at once.
local function start_detached(c, list, cg)
  c.own_session = true
  local pid, errfd = launch(c, list, cg, false)
  local started, message = pcall(core.await_exec, errfd)
  errfd:close()
  if not started then
    finish(c, pid, false, message)
  end
  record(c, pid)
  return pid
end

-- When the kernel's OOM killer ended the command, say so and which limit it
-- met; a kill of another process of the container is a warning.
local function report_oom(cg, stats, code)
  local kills = stats.oom_kills or 0
  if kills == 0 then
    return
  end
  local limit = cg:memory_limit()
  local reason = limit and ("out of memory, limit " .. limit) or "out of memory"
  if code == 128 + 9 then
    log.warn("killed: %s", reason)
  else
    log.warn("%d process(es) of the container killed: %s", kills, reason)
  end
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

-- The context, namespace list and cgroup of a run spec.
local function prepare(spec)
  local p = spec.policy or policy.default
  local c = M.context(spec, p)
  if #c.argv == 0 then
    errors.raise("no command to run: give one, or set cmd or entrypoint in the image")
  end
  local list = {}
  for _, name in ipairs(policy.namespace_list(p)) do
    c.namespaces[name] = true
    -- The child makes its cgroup namespace itself, once it is in its cgroup.
    if name ~= "cgroup" then list[#list + 1] = name end
  end
  -- A joined namespace is named by its path; the clone makes none for it.
  for _, join in ipairs(c.joins) do
    c.namespaces[join[1]] = join[2]
  end
  -- A user other than root mounts, chowns and switches ids only as root of
  -- a user namespace of its own, whatever the policy sets.
  if userns.rootless() and c.namespaces.user == nil then
    c.namespaces.user = true
    list[#list + 1] = "user"
  end

  -- The cgroup exists with its limits written before the clone, so that the
  -- container's command never runs unlimited.
  local cg = M.create_cgroup(p)
  c.cgroup = cg
  return c, list, cg
end

-- Release what a container held once its child is reaped (ok, code: what
-- start returned or raised); return code and info, or raise code's error.
local function clean_up(c, cg, ok, code)
  -- start returns or raises only once the child is reaped: slirp4netns and the
  -- network files are no longer needed on any path.
  net.release(c)
  local info = {}
  if cg then
    -- After waitpid the statistics are final; destroy then kills whatever the
    -- container left (or the child itself, on an error path) and removes it.
    info.stats = cg:stats()
    local removed, err = cg:destroy()
    if not removed then
      log.warn("cannot remove the container's cgroup: %s", err)
    end
    report_oom(cg, info.stats, ok and code)
  end
  if not ok then
    error(code, 0)
  end
  return code, info
end

--- Run argv in a container and wait for it.
-- spec: { rootfs = { layers = {dir, ...} (bottom to top), upper, work, target }
--         or { bind = dir, target }, argv = {...}, env = {"K=V", ...},
--         policy = a policy table (default policy.default), hostname, cwd,
--         user = "uid[:gid]" or "name[:group]" (default: the policy's, else root),
--         stdin, stdout, stderr = fd handles for the command's streams (default: nsbuild's),
--         tty = { input = bool } to give the command a pty of the container's
--           devpts, relayed to nsbuild's terminal (input: relay stdin too),
--         on_started = function(pid) called once the command runs, before waitpid,
--         on_exec = function(pid, c) called once the command runs, before
--           the relay, with the context (c.cgroup is the cgroup object) }.
-- Returns the exit code as a shell reports it (128+N for signal N) and
-- { stats = the cgroup's statistics (cgroup.lua Cgroup:stats), or nil when
-- it ran without a cgroup }. Raises an nsbuild error (codes 125/126/127)
-- when the container could not start.
function M.run(spec)
  local c, list, cg = prepare(spec)
  local ok, code = pcall(start, c, list, cg)
  return clean_up(c, cg, ok, code)
end

--- Start argv in a container and return once it runs, without waiting:
-- { pid = the host pid of its first process, context, cgroup } for M.wait.
-- spec is M.run's, without tty (nothing relays it) and on_started. The
-- container ends with the process that started it (parent-death signal).
-- Raises as M.run does when the container could not start.
function M.start(spec)
  if spec.tty then
    errors.raise("start: a started container has no terminal to relay: use run for tty")
  end
  local c, list, cg = prepare(spec)
  local ok, pid = pcall(start_detached, c, list, cg)
  if not ok then
    clean_up(c, cg, false, pid)
  end
  return { pid = pid, context = c, cgroup = cg }
end

--- Wait for a container that M.start returned, then clean up as M.run does.
-- Returns M.run's code and info.
function M.wait(running)
  local ok, code = pcall(finish, running.context, running.pid, true)
  return clean_up(running.context, running.cgroup, ok, code)
end

--- Return the context of a container, the table c that every step of the
-- parent and of the child reads, from a run spec and its policy p.
-- Child hooks receive it too: root, argv, env, cwd, hostname, user, ids (once
-- the user is resolved), namespaces and the policy's fields below.
function M.context(spec, p)
  local sets = security.capability_sets(p.caps, true)
  local profile = security.seccomp_profile(p.seccomp, sets.effective)
  return {
    rootfs = spec.rootfs,
    root = spec.rootfs.target,
    argv = spec.argv or p.argv or {},
    env = spec.env or {},
    cwd = spec.cwd or p.cwd or "/",
    hostname = spec.hostname or p.hostname or "nsbuild",
    namespaces = {},
    joins = policy.namespace_joins(p),
    network = net.new(p),
    mounts = p.mounts or {},
    user = spec.user or p.user,
    groups = p.groups or {},
    rlimits = p.rlimits or {},
    umask = p.umask or "0022",
    caps = p.caps or {},
    no_new_privs = p.no_new_privs ~= false,
    -- Built in the parent: an invalid profile fails before any clone.
    seccomp = profile,
    -- libseccomp takes about 25 ms to generate the default profile's program,
    -- and the kernel 0.3 ms to load it: programs are cached by profile, in
    -- memory and in spec.seccomp_cache (a directory). nil falls back to libseccomp.
    seccomp_program = profile and (seccomp_cache.program(profile, spec.seccomp_cache)) or nil,
    readonly = p.readonly == true,
    masked_paths = p.masked_paths or {},
    readonly_paths = p.readonly_paths or {},
    init = p.init ~= false,
    hooks = p.hooks or {},
    tty = spec.tty,
    lua_main = spec.lua_main,
    stdin = spec.stdin,
    stdout = spec.stdout,
    stderr = spec.stderr,
    on_started = spec.on_started,
    on_exec = spec.on_exec,
  }
end

--- Create the cgroup of a container with the policy's limits. Returns the
-- cgroup object, or nil when the container runs without one: when no limits
-- were requested (statistics are then missing), or, for a user other than
-- root without a delegated cgroup, after a warning naming the limits not
-- applied. Raises when root cannot apply the limits.
function M.create_cgroup(p)
  local limits = p.limits or {}
  local cg, err = cgroup.create({ limits = limits })
  if cg then
    return cg
  end
  if next(limits) == nil then
    log.debug("running without a cgroup: %s", err)
    return nil
  end
  local names = {}
  for name in pairs(limits) do names[#names + 1] = name end
  table.sort(names)
  if core.geteuid() ~= 0 then
    log.warn_once("cgroup limits", "limits not applied (%s): %s; a user other than root needs a "
                  .. "delegated cgroup v2 subtree to apply them", table.concat(names, ", "), err)
    return nil
  end
  errors.raise("cannot apply the limits (%s): %s", table.concat(names, ", "), err)
end

return M
