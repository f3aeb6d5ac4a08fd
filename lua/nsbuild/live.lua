--- Live containers: nsbuild.start and its handle, the state of running
-- containers under the store's run/ directory, and what `nsbuild ps`,
-- `exec`, `stop` and `logs` do with it.
--
--   run/<id>.json   a running container: pids, image, cgroup, the parts of
--                   its policy that exec applies again; written once its
--                   command runs, removed when it ends
--   run/<id>.log    the output of a container started with run -d or
--                   nsbuild.start; removed with it
--
-- exec forks a process that joins the container's cgroup, user and pid
-- namespaces, and from it the command's process, which joins the other
-- namespaces and runs the child steps of container.lua that follow
-- pivot_root: the mount namespace already has the root, mounts and masked
-- paths. Depends on nsbuild.container, nsbuild.store and cjson.
local cjson = require "cjson"
local container = require "nsbuild.container"
local core = require "nsbuild.core"
local errors = require "nsbuild.errors"
local log = require "nsbuild.log"
local policy = require "nsbuild.policy"
local store_module = require "nsbuild.store"
local tty = require "nsbuild.tty"

local M = {}

-- The namespaces exec's command process joins, in this order, once the
-- process before it has joined the user namespace (which grants the
-- capabilities that joining these needs) and the pid namespace. mnt comes
-- last, because it changes the root that later paths resolve in.
local JOIN_ORDER = { "ipc", "uts", "net", "cgroup", "time", "mnt" }

local SETNS_NAMES = { mnt = "mount" }

-- {====================================================== state under run/

local function run_dir(store)
  local dir = store:path("run")
  errors.check(core.mkdirs(dir, tonumber("755", 8)))
  return dir
end

local function state_path(store, id)
  return run_dir(store) .. "/" .. id .. ".json"
end

--- Return a new container id: 12 hex digits.
function M.new_id()
  -- The hex of random bytes is as unique as a hash of them would be.
  local f = errors.check(io.open("/dev/urandom", "rb"))
  local bytes = f:read(6)
  f:close()
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- The start time of a process in clock ticks since boot (field 22 of
-- /proc/PID/stat). A reused pid has another start time than the one recorded.
local function start_time(pid)
  local stat = core.read_file("/proc/" .. pid .. "/stat")
  -- The command name may hold spaces and parentheses: skip to the last ')'.
  local rest = stat and stat:match("^.*%)%s+(.*)$")
  if not rest then
    return nil
  end
  local fields = {}
  for field in rest:gmatch("%S+") do fields[#fields + 1] = field end
  -- rest starts at field 3 (the state), so field 22 is its 20th.
  return fields[20]
end

-- cjson writes numbers with 14 significant digits, which rounds a 64-bit
-- seccomp argument: an integer beyond 2^53 is written as { ["$int"] = "N" }.
local function exact(value)
  if math.type(value) == "integer" and (value > 2^53 or value < -2^53) then
    return { ["$int"] = string.format("%d", value) }
  elseif type(value) == "table" then
    local out = {}
    for k, v in pairs(value) do out[k] = exact(v) end
    return out
  end
  return value
end

-- JSON numbers come back as floats; ids, counts and seccomp values are integers.
local function integers(value)
  if type(value) == "number" then
    return math.tointeger(value) or value
  elseif type(value) == "table" and value["$int"] then
    return math.tointeger(tonumber(value["$int"]))
  elseif type(value) == "table" then
    for k, v in pairs(value) do value[k] = integers(v) end
  end
  return value
end

local function read_state(path)
  local text = core.read_file(path)
  local ok, state = pcall(cjson.decode, text or "")
  if not ok or type(state) ~= "table" then
    return nil
  end
  return integers(state)
end

--- Return true while the container of state runs: its pid exists, with
-- the start time recorded.
function M.alive(state)
  return start_time(state.pid) == state.start_time
end

local function copy_list(list)
  local out = {}
  for i, v in ipairs(list or {}) do out[i] = v end
  return out
end

--- Write the state of a running container. info: { id, image, mode
-- ("foreground", "detached" or "started"), log = path or nil }; c is the
-- context of container.lua, pid the host pid of its first process.
function M.record(store, info, pid, c)
  local state = {
    id = info.id, image = info.image, mode = info.mode, log = info.log,
    pid = pid, start_time = start_time(pid),
    supervisor = core.getpid(), supervisor_start_time = start_time(core.getpid()),
    created = os.time(), hostname = c.hostname, command = copy_list(c.argv),
    cgroups = copy_list(c.cgroup and c.cgroup.created),
    -- What exec applies again; the seccomp profile is the one computed for the container.
    exec = { user = c.user, groups = c.groups, env = c.env, cwd = c.cwd, caps = c.caps,
             no_new_privs = c.no_new_privs, seccomp = exact(c.seccomp) or false, rlimits = c.rlimits,
             umask = c.umask },
  }
  local path = state_path(store, info.id)
  errors.check(core.write_file(path .. ".tmp", cjson.encode(state), tonumber("600", 8)))
  errors.check(core.rename(path .. ".tmp", path))
  return state
end

--- Remove the state and the log of container id.
function M.forget(store, id)
  local dir = run_dir(store)
  core.unlink(dir .. "/" .. id .. ".json")
  core.unlink(dir .. "/" .. id .. ".log")
end

--- Return the states of the running containers, oldest first. Removes the
-- state of every container that no longer runs (its pid is gone or reused):
-- what an nsbuild killed by SIGKILL leaves.
function M.list(store)
  local dir = run_dir(store)
  local list = {}
  for _, name in ipairs(errors.check(core.listdir(dir))) do
    local id = name:match("^(.*)%.json$")
    if id then
      local state = read_state(dir .. "/" .. name)
      if state and M.alive(state) then
        list[#list + 1] = state
      else
        log.debug("removing the state of container %s, which no longer runs", id)
        M.forget(store, id)
      end
    end
  end
  table.sort(list, function(a, b) return a.created < b.created end)
  return list
end

--- Return the state of the running container whose id is or starts with
-- id. Raises when none or several match, or when it no longer runs.
function M.find(store, id)
  if type(id) ~= "string" or not id:match("^[%x]+$") then
    errors.raise("invalid container id '%s': use an id that nsbuild ps lists", tostring(id))
  end
  local found = {}
  for _, state in ipairs(M.list(store)) do
    if state.id:sub(1, #id) == id then found[#found + 1] = state end
  end
  if #found == 0 then
    errors.raise("no running container '%s' (nsbuild ps lists the running ones)", id)
  elseif #found > 1 then
    errors.raise("container id '%s' is ambiguous: it starts %d ids; give more digits", id, #found)
  end
  return found[1]
end

-- }======================================================

-- {====================================================== exec

--- Wait for the child pid; return its exit code as a shell reports it
-- (128+N when signal N ended it).
function M.reap(pid)
  local _, kind, value = core.waitpid(pid)
  return kind == "signaled" and 128 + value or value
end

-- The child steps that exec runs again, from the user lookup to exec: every
-- step before them set up the root, which the mount namespace already has.
local function exec_steps()
  local steps, on = {}, false
  for _, step in ipairs(container.child_steps) do
    on = on or step[1] == "resolve the user"
    if on then steps[#steps + 1] = step end
  end
  return steps
end

-- The pid whose /proc/PID/ns/* exec opens: the container's first process,
-- or, when this user may not read those (the built-in init is not dumpable,
-- which shuts out a user other than root), a child of it: the command.
local function namespace_pid(pid)
  if core.stat("/proc/" .. pid .. "/ns/mnt") then
    return pid
  end
  for _, name in ipairs(core.listdir("/proc") or {}) do
    local stat = name:match("^%d+$") and core.read_file("/proc/" .. name .. "/stat")
    local ppid = stat and stat:match("^.*%)%s+%a%s+(%d+)")
    if ppid and tonumber(ppid) == pid and core.stat("/proc/" .. name .. "/ns/mnt") then
      return tonumber(name)
    end
  end
  errors.raise("exec: cannot read the namespaces of container process %d (/proc/%d/ns): "
               .. "run nsbuild exec as the user that started the container", pid, pid)
end

-- Open the namespaces of pid that differ from nsbuild's own, while /proc
-- is the host's: { user = fd, pid = fd, rest = { { name, fd }, ... } in
-- JOIN_ORDER }.
local function open_namespaces(pid)
  local ns = { rest = {} }
  local function open_if_other(name)
    local theirs = core.stat("/proc/" .. pid .. "/ns/" .. name)
    local ours = core.stat("/proc/self/ns/" .. name)
    if theirs and ours and (theirs.ino ~= ours.ino or theirs.dev ~= ours.dev) then
      return errors.check(core.open("/proc/" .. pid .. "/ns/" .. name, { "rdonly" }))
    end
    return nil
  end
  ns.user = open_if_other("user")
  ns.pid = open_if_other("pid")
  for _, name in ipairs(JOIN_ORDER) do
    local fd = open_if_other(name)
    if fd then
      ns.rest[#ns.rest + 1] = { SETNS_NAMES[name] or name, fd }
    end
  end
  return ns
end

local function close_namespaces(ns)
  for _, entry in ipairs(ns.rest) do entry[2]:close() end
  if ns.user then ns.user:close() end
  if ns.pid then ns.pid:close() end
end

local must = errors.must

-- The command's process, forked in the container's user and pid
-- namespaces: the other namespaces, then the container's process steps.
local function exec_child(c, ns)
  must("set the parent-death signal", core.set_pdeathsig("KILL"))
  if c.stdin then must("redirect stdin", core.dup2(c.stdin, 0)) end
  if c.stdout then must("redirect stdout", core.dup2(c.stdout, 1)) end
  for _, entry in ipairs(ns.rest) do
    must("join the container's " .. entry[1] .. " namespace", core.setns(entry[2], entry[1]))
  end
  container.run_steps(c, exec_steps())
end

-- The process between nsbuild and the command. It joins the cgroup while
-- the host's cgroupfs is visible. Then it joins the user namespace:
-- setns(CLONE_NEWPID) needs CAP_SYS_ADMIN in the caller's own user
-- namespace, and a user other than root has it only there. It forks the
-- command's process into the pid namespace and waits for it. It exits with
-- the command's code, or raises its error.
local function exec_intermediate(c, state, ns)
  must("set the parent-death signal", core.set_pdeathsig("KILL"))
  -- "0" moves the writer itself; the command's process inherits the cgroup.
  for _, dir in ipairs(state.cgroups) do
    must("join the cgroup " .. dir, core.cgroup_write(dir .. "/cgroup.procs", "0"))
  end
  if ns.user then
    must("join the container's user namespace", core.setns(ns.user, "user"))
  end
  if ns.pid then
    must("join the container's pid namespace", core.setns(ns.pid, "pid"))
  end
  local pid, errfd = core.clone({}, function() exec_child(c, ns) end)
  must("fork the command's process", pid, errfd)
  core.forward_signals(pid)
  local started, message = pcall(core.await_exec, errfd)
  errfd:close()
  local code = M.reap(pid)
  if not started then
    error({ message = tostring(message), code = code ~= 0 and code or errors.FAILED }, 0)
  end
  return code
end

-- The context of container.lua for a command exec runs in the container of
-- state. opts: { argv, user, cwd, env = {"K=V"}, tty, stdin, stdout }.
local function exec_context(state, opts)
  local e = state.exec
  return {
    argv = opts.argv,
    env = container.environment(e.env, opts.env, state.hostname),
    cwd = opts.cwd or e.cwd or "/",
    hostname = state.hostname,
    user = opts.user or e.user,
    groups = e.groups or {},
    rlimits = e.rlimits or {},
    umask = e.umask or "0022",
    caps = e.caps or {},
    no_new_privs = e.no_new_privs ~= false,
    seccomp = e.seccomp or nil,
    -- No init: the container's init already reaps what the command leaves.
    init = false,
    hooks = {},
    namespaces = {},
    tty = opts.tty,
    stdin = opts.stdin,
    stdout = opts.stdout,
  }
end

-- Relay the command's terminal or read its captured output, then wait for
-- the intermediate process: its exit code is the command's. The relay
-- comes first, because the intermediate never execs: its copy of errfd
-- stays open until the command ends.
local function follow_exec(c, pid, errfd, capture)
  tty.receive(c)
  if c.tty then
    local ok, err = pcall(tty.relay, c, pid)
    if not ok then
      log.warn("terminal relay: %s", tostring(err))
    end
  end
  tty.close(c)
  local output = capture and capture:read_all()
  if capture then capture:close() end
  local started, message = pcall(core.await_exec, errfd)
  errfd:close()
  local code = M.reap(pid)
  if not started then
    errors.raise_code(code ~= 0 and code or errors.FAILED, "exec: %s", tostring(message))
  end
  return code, output
end

--- Run a command in the running container of state, in its namespaces and
-- cgroup, as its policy's user (or opts.user) with the same capabilities,
-- no_new_privs, seccomp filter, working directory (or opts.cwd) and
-- environment (plus opts.env). opts: { argv = {...}, user, cwd, env,
-- tty = { input = bool }, stdin = fd (default nsbuild's), capture = true to
-- return the standard output, forward_signals = true to relay nsbuild's
-- HUP, INT, QUIT, TERM, USR1, USR2 and WINCH to it }. Returns the command's exit code (128+N for
-- signal N) and the output when captured. Raises 125, 126 or 127 as run does.
function M.exec(state, opts)
  if #(opts.argv or {}) == 0 then
    errors.raise("exec: no command given: nsbuild exec ID -- COMMAND [ARG...]")
  end
  if not M.alive(state) then
    errors.raise("exec: container %s is no longer running", state.id)
  end
  local read_end
  if opts.capture then
    read_end, opts.stdout = errors.check(core.pipe())
  end
  local c = exec_context(state, opts)
  local ns = open_namespaces(namespace_pid(state.pid))
  tty.prepare(c)
  local pid, errfd = core.clone({}, function() return exec_intermediate(c, state, ns) end)
  close_namespaces(ns)
  if opts.stdout and opts.capture then opts.stdout:close() end
  tty.close_child_end(c)
  if not pid then
    tty.close(c)
    errors.raise("exec: cannot create the process: %s", errfd)
  end
  -- Signals for nsbuild go to the command until it is reaped. Not from
  -- the REPL: forward_signals(nil) would leave its Ctrl-C handler reset.
  if opts.forward_signals then
    core.forward_signals(pid)
  end
  local ok, code, output = pcall(follow_exec, c, pid, errfd, read_end)
  if opts.forward_signals then
    core.forward_signals(nil)
  end
  if not ok then
    error(code, 0)
  end
  return code, output
end

-- }======================================================

-- {====================================================== stop

-- Wait up to timeout seconds for pid to end; return true when it did.
local function wait_gone(pid, timeout)
  local fd = core.pidfd_open(pid)
  if not fd then
    return true
  end
  local exited = core.poll_read(fd, math.floor(timeout * 1000))
  fd:close()
  return exited
end

--- Stop the running container of state: SIGTERM, then SIGKILL when it still
-- runs after timeout seconds. Then waits (up to 10 s) for the nsbuild run
-- that supervises it to clean up (cgroup, root, state) and end. Returns
-- "stopped" or "killed", and false when the cleanup is not done yet: a
-- container of nsbuild.start is cleaned up by its c:wait().
function M.stop(store, state, timeout)
  core.kill(state.pid, "TERM")
  local ending = "stopped"
  if not wait_gone(state.pid, timeout) then
    ending = "killed"
    core.kill(state.pid, "KILL")
    wait_gone(state.pid, 10)
  end
  local path = state_path(store, state.id)
  if state.mode ~= "started" and start_time(state.supervisor) == state.supervisor_start_time then
    wait_gone(state.supervisor, 10)
  end
  return ending, core.lstat(path) == nil
end

-- }======================================================

-- {====================================================== the handle

local Live = {}
Live.__index = Live

-- Resolve what nsbuild.start was given into a store image record: a tag
-- name, a record (a table with layers), or an image value, built first.
local function image_record(store, image)
  if type(image) == "string" then
    local record = store:image(image)
    if not record then
      errors.raise("start: image '%s' not found in %s; build it first (nsbuild RECIPE.lua)",
                   image, store.dir)
    end
    return record, store_module.normalize_name(image)
  end
  if require("nsbuild.image").is_image(image) then
    local unlock = store:build_lock()
    local ok, result = pcall(require("nsbuild.build").build, store, image, {})
    unlock()
    if not ok then
      error(result, 0)
    end
    return { layers = result.layers, config = result.config }, image.tags[1] or "(untagged)"
  end
  if type(image) == "table" and type(image.layers) == "table" then
    return image, image.name or "(untagged)"
  end
  errors.raise("start: expected an image name, an image record or an image value, not a %s",
               type(image))
end

--- Return the rootfs spec of container.run for image record img: an
-- overlay of its layers with upper and work directories in work (an
-- existing directory). An image without layers gets an empty lower one.
function M.rootfs(store, img, work)
  local upper, ovl_work, merged = work .. "/upper", work .. "/work", work .. "/merged"
  local lower = {}
  for i, layer in ipairs(img.layers) do lower[i] = store:layer_path(layer) end
  if #lower == 0 then
    lower[1] = work .. "/empty"
  end
  for _, d in ipairs({ upper, ovl_work, merged, #img.layers == 0 and lower[1] or nil }) do
    errors.check(core.mkdir(d, tonumber("755", 8)))
  end
  return { layers = lower, upper = upper, work = ovl_work, target = merged }
end

--- Return the command of a container: the image's entrypoint and then argv
-- (default: the image's cmd). When argv is not given, a policy's argv
-- replaces the image's command.
function M.command(config, argv, p)
  if not argv and p.argv then
    return p.argv
  end
  local out = {}
  for _, a in ipairs(config.entrypoint or {}) do out[#out + 1] = a end
  for _, a in ipairs(argv or config.cmd or {}) do out[#out + 1] = a end
  return out
end

--- Start a container of image and return at once with a handle; its command
-- keeps running, its output goes to run/<id>.log. image: a tag name, a store
-- image record or an image value (built first); p: a policy or a table of
-- changes to policy.default; opts: { argv = the command (default the
-- image's), store = a store (default the default store), hostname }. The
-- container ends with the process that started it; c:wait() cleans up.
-- The handle c: c:pid(), c:exec{ "cmd", "arg", user =, cwd =, env =,
-- capture = true }, c:stats(), c:kill(sig), c:wait() -> code, { stats },
-- c:logs(); tostring(c) is a one-line summary.
function M.start(image, p, opts)
  opts = opts or {}
  local store = opts.store or store_module.open(store_module.default_dir())
  local img, name = image_record(store, image)
  p = policy.extend(policy.default, p or {})
  local config = img.config or {}
  local id = M.new_id()
  local hostname = opts.hostname or p.hostname or id
  local log_path = run_dir(store) .. "/" .. id .. ".log"
  local log_fd = errors.check(core.open(log_path, { "wronly", "creat", "append" }, tonumber("600", 8)))
  local null = errors.check(core.open("/dev/null", { "rdonly" }))
  local work, release = store:work_dir("container-" .. id)
  local ok, running = pcall(function()
    return container.start({
      rootfs = M.rootfs(store, img, work),
      argv = M.command(config, opts.argv, p),
      env = container.environment(config.env, p.env, hostname),
      cwd = config.workdir and p.cwd == "/" and config.workdir or p.cwd,
      hostname = hostname,
      policy = p,
      user = p.user or config.user,
      stdin = null, stdout = log_fd, stderr = log_fd,
      on_exec = function(pid, c)
        M.record(store, { id = id, image = name, mode = "started", log = log_path }, pid, c)
      end,
    })
  end)
  log_fd:close()
  null:close()
  if not ok then
    release(true)
    M.forget(store, id)
    error(running, 0)
  end
  return setmetatable({ id = id, image = name, store = store, running = running,
                        release = release, log_path = log_path }, Live)
end

function Live:pid()
  return self.running.pid
end

--- Return the cgroup statistics while it runs (cgroup.lua Cgroup:stats), or
-- nil when the container has no cgroup; after wait, the final ones.
function Live:stats()
  if self.info then
    return self.info.stats
  end
  return self.running.cgroup and self.running.cgroup:stats()
end

--- Send signal sig (default "TERM") to the container's first process.
function Live:kill(sig)
  if self.code then
    return nil, "container " .. self.id .. " has ended"
  end
  return core.kill(self.running.pid, sig or "TERM")
end

--- Return the output of the command so far (all of it after wait).
function Live:logs()
  if self.output then
    return self.output
  end
  return core.read_file(self.log_path) or ""
end

--- Run a command in the container: argv as a list, with the optional fields
-- user, cwd, env (a list of "K=V") and capture (true: also return the
-- standard output). Returns the exit code (and the output).
function Live:exec(spec)
  if self.code then
    errors.raise("exec: container %s has ended (code %d)", self.id, self.code)
  end
  local state = M.find(self.store, self.id)
  local argv = {}
  for _, a in ipairs(spec) do argv[#argv + 1] = a end
  local null = errors.check(core.open("/dev/null", { "rdonly" }))
  local ok, code, output = pcall(M.exec, state, { argv = argv, user = spec.user, cwd = spec.cwd,
                                                  env = spec.env, stdin = null, capture = spec.capture })
  null:close()
  if not ok then
    error(code, 0)
  end
  return code, output
end

-- Block until the first process ends, in short polls, so that Ctrl-C in
-- the REPL (core.interruptible) can interrupt the wait between two.
local function wait_exit(pid)
  local fd = core.pidfd_open(pid)
  if not fd then
    return
  end
  while not core.poll_read(fd, 200) do end
  fd:close()
end

--- Wait for the command to end, then clean up as run does (network,
-- cgroup, root, state). Returns the exit code and { stats }; a second call
-- returns them again.
function Live:wait()
  if self.code then
    return self.code, self.info
  end
  wait_exit(self.running.pid)
  local ok, code, info = pcall(container.wait, self.running)
  self.output = core.read_file(self.log_path) or ""
  M.forget(self.store, self.id)
  self.release(true)
  if not ok then
    error(code, 0)
  end
  self.code, self.info = code, info
  return code, info
end

function Live:__tostring()
  local state = self.code and ("exited " .. self.code) or "running"
  return string.format("container %s (%s) pid %d %s", self.id, self.image, self.running.pid, state)
end

-- Finalizers release nothing: the container runs until c:wait() or the end
-- of the process that started it, and a to-be-closed handle does not stop it.
function Live:__close() end

-- }======================================================

return M
