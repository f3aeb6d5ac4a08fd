--- The commands on running containers: `nsbuild ps`, `exec`, `stop` and
-- `logs`, and the supervisor of `nsbuild run -d`. The state they read is
-- kept by live.lua under the store's run/ directory.
--
-- `nsbuild run -d` starts `nsbuild run --supervised FD:ID ...` (the same
-- command line) in a session of its own, with its output going to
-- run/<id>.log. That supervisor runs the container as a foreground run
-- does, writes "ok" on descriptor FD once the command runs, and cleans up
-- when it ends. Depends on nsbuild.live and nsbuild.core.
local core = require "nsbuild.core"
local errors = require "nsbuild.errors"
local live = require "nsbuild.live"
local log = require "nsbuild.log"

local M = {}

-- {====================================================== run -d

local function log_path(store, id)
  return store:path("run", id .. ".log")
end

--- Return { id, ready = fd handle } when this nsbuild run is the supervisor
-- of a detached container (--supervised FD:ID), else nil.
function M.supervised(opts)
  local value = opts["--supervised"]
  if not value then
    return nil
  end
  local fd, id = value:match("^(%d+):(%x+)$")
  if not fd then
    errors.raise("invalid --supervised '%s': it is set by nsbuild run -d, as FD:ID", value)
  end
  return { id = id, ready = core.fd(tonumber(fd)) }
end

--- Return the on_exec function of container.run for `nsbuild run`: it
-- records the container under run/ and, in a supervisor, writes "ok" to
-- the waiting nsbuild run -d once the command runs.
function M.recorder(store, id, image, supervised)
  return function(pid, c)
    local info = { id = id, image = image, mode = supervised and "detached" or "foreground",
                   log = supervised and log_path(store, id) or nil }
    live.record(store, info, pid, c)
    if supervised then
      supervised.ready:write("ok")
      supervised.ready:close()
    end
  end
end

local function self_exe()
  local exe = core.readlink("/proc/self/exe")
  if not exe or not exe:match("/nsbuild$") then
    errors.raise("run -d: needs the nsbuild executable (this is %s)", tostring(exe))
  end
  return exe
end

-- Wait for the supervisor's word: "ok" once the command runs, end of file
-- when it failed, after writing why to the log. The log is read through a
-- descriptor opened before: the supervisor removes the file as it ends.
-- Returns the exit code.
local function await_supervisor(store, id, pid, ready, log_fd)
  local word = ready:read_all() or ""
  ready:close()
  if word == "ok" then
    log_fd:close()
    io.stdout:write(id, "\n")
    return 0
  end
  local code = live.reap(pid)
  io.stderr:write(log_fd:read_all() or "")
  log_fd:close()
  live.forget(store, id)
  return code ~= 0 and code or errors.FAILED
end

--- Run the command line args again as the supervisor of container id, in a
-- session of its own with its output in run/<id>.log, and return once the
-- container's command runs: 0 after printing the id, or the supervisor's
-- exit code after printing its error.
function M.detach(store, args, id, opts)
  if opts["-t"] or opts["-i"] then
    errors.raise("run: -d does not mix with -i or -t: a detached container has no terminal; "
                 .. "use nsbuild exec -it ID -- sh once it runs")
  end
  errors.check(core.mkdirs(store:path("run"), tonumber("755", 8)))
  local out = errors.check(core.open(log_path(store, id), { "wronly", "creat", "append" },
                                     tonumber("600", 8)))
  local log_fd = errors.check(core.open(log_path(store, id), { "rdonly" }))
  local null = errors.check(core.open("/dev/null", { "rdonly" }))
  local ready, ready_w = errors.check(core.pipe())
  local argv = { self_exe(), args[1], "--supervised", ready_w:fileno() .. ":" .. id }
  for i = 2, #args do argv[#argv + 1] = args[i] end
  local pid, err = core.spawn(argv, nil, { keep_fds = { ready_w }, stdin = null, stdout = out,
                                           stderr = out, setsid = true })
  ready_w:close()
  out:close()
  null:close()
  if not pid then
    ready:close()
    log_fd:close()
    live.forget(store, id)
    errors.raise("run -d: cannot start the supervisor: %s", err)
  end
  return await_supervisor(store, id, pid, ready, log_fd)
end

-- }======================================================

-- {====================================================== ps

local function age(seconds)
  if seconds < 60 then
    return seconds .. "s"
  elseif seconds < 3600 then
    return seconds // 60 .. "m"
  elseif seconds < 86400 then
    return seconds // 3600 .. "h"
  end
  return seconds // 86400 .. "d"
end

local STATUS = { foreground = "running (run)", detached = "running (run -d)",
                 started = "running (start)" }

local function cmd_ps(store)
  local now = os.time()
  io.stdout:write(string.format("%-12s  %-20s  %7s  %-16s  %5s  %s\n", "ID", "IMAGE", "PID",
                                "STATUS", "AGE", "COMMAND"))
  for _, s in ipairs(live.list(store)) do
    local command = table.concat(s.command or {}, " ")
    if #command > 40 then
      command = command:sub(1, 37) .. "..."
    end
    io.stdout:write(string.format("%-12s  %-20s  %7d  %-16s  %5s  %s\n", s.id, s.image or "",
                                  s.pid, STATUS[s.mode] or "running", age(now - (s.created or now)),
                                  command))
  end
  return 0
end

-- }======================================================

-- {====================================================== exec, stop, logs

local EXEC_SPEC = { ["--cache"] = true, ["-i"] = false, ["-t"] = false, ["-u"] = true,
                    ["--user"] = true, ["-w"] = true, ["-e"] = true }

local function cmd_exec(args, parse, store_of)
  local opts, rest = parse(args, 2, EXEC_SPEC, true)
  local id = table.remove(rest, 1)
  if not id then
    errors.raise("exec: missing ID (usage: nsbuild exec [-i] [-t] [-u USER] [-w DIR] [-e K=V] ID -- COMMAND...)")
  end
  local state = live.find(store_of(opts), id)
  -- Without -i the command reads /dev/null, as with nsbuild run.
  local stdin = not opts["-i"] and errors.check(core.open("/dev/null", { "rdonly" })) or nil
  local ok, code = pcall(live.exec, state, {
    argv = rest, user = opts["-u"] or opts["--user"], cwd = opts["-w"], env = opts.env,
    tty = opts["-t"] and { input = opts["-i"] == true } or nil, stdin = stdin,
    forward_signals = true,
  })
  if stdin then
    stdin:close()
  end
  if not ok then
    error(code, 0)
  end
  return code
end

local function cmd_stop(args, parse, store_of)
  local opts, rest = parse(args, 2, { ["--cache"] = true, ["-t"] = true, ["--time"] = true })
  if #rest == 0 then
    errors.raise("stop: missing ID (usage: nsbuild stop [-t SECONDS] ID...)")
  end
  local value = opts["-t"] or opts["--time"] or "10"
  local timeout = tonumber(value)
  if not timeout or timeout < 0 then
    errors.raise("stop: invalid -t '%s': give the seconds to wait before SIGKILL, e.g. -t 10", value)
  end
  local store = store_of(opts)
  for _, id in ipairs(rest) do
    local state = live.find(store, id)
    local ending, cleaned = live.stop(store, state, timeout)
    if ending == "killed" then
      log.warn("%s did not end within %gs of SIGTERM: killed", state.id, timeout)
    end
    if not cleaned then
      log.warn("%s ended; the process that started it (pid %d) removes its cgroup, root and "
               .. "state when it calls c:wait() or ends", state.id, state.supervisor)
    end
    io.stdout:write(state.id, "\n")
  end
  return 0
end

-- Print the log as it grows until the container's first process ends. The
-- pidfd's poll is both the pause between two reads and the end: the log
-- file goes with the container, but the open descriptor still reads it.
local function follow_log(state)
  local fd = errors.check(core.open(state.log, { "rdonly" }))
  local pidfd = core.pidfd_open(state.pid)
  repeat
    local ended = not pidfd or core.poll_read(pidfd, 200)
    io.stdout:write(fd:read_all() or "")
    io.stdout:flush()
  until ended
  if pidfd then pidfd:close() end
  fd:close()
end

local function cmd_logs(args, parse, store_of)
  local opts, rest = parse(args, 2, { ["--cache"] = true, ["-f"] = false, ["--follow"] = false })
  if #rest ~= 1 then
    errors.raise("logs: give one ID (usage: nsbuild logs [-f] ID)")
  end
  local state = live.find(store_of(opts), rest[1])
  if not state.log then
    errors.raise("logs: container %s runs in the foreground of nsbuild run (pid %d), and its "
                 .. "output goes to that terminal; nsbuild logs shows containers started with "
                 .. "nsbuild run -d or nsbuild.start", state.id, state.supervisor)
  end
  if opts["-f"] or opts["--follow"] then
    follow_log(state)
  else
    io.stdout:write(core.read_file(state.log) or "")
  end
  return 0
end

-- }======================================================

--- Run `nsbuild ps|exec|stop|logs ...` (args[1] names the command) with the
-- CLI's option parser and store opener; return the exit code.
function M.command(args, parse, store_of)
  local name = args[1]
  if name == "ps" then
    local opts = parse(args, 2, { ["--cache"] = true })
    return cmd_ps(store_of(opts))
  elseif name == "exec" then
    return cmd_exec(args, parse, store_of)
  elseif name == "stop" then
    return cmd_stop(args, parse, store_of)
  end
  return cmd_logs(args, parse, store_of)
end

return M
