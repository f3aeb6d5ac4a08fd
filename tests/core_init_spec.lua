local core = require "nsbuild.core"
local leaks = require "support.leaks"
local system = require "system"

local PATH = "PATH=/usr/bin:/bin"
local TIMEOUT = 5  -- seconds any wait in this file may take

local function read_file(path)
  local f = io.open(path)
  if not f then
    return nil
  end
  local s = f:read("a")
  f:close()
  return s
end

local function write_file(path, s)
  local f = assert(io.open(path, "w"))
  f:write(s)
  f:close()
end

--- Poll until fn() returns a true value or TIMEOUT passes; return its last value.
local function wait_for(fn)
  local deadline = system.gettime() + TIMEOUT
  local value = fn()
  while not value and system.gettime() < deadline do
    system.sleep(0.02)
    value = fn()
  end
  return value
end

--- Start init_exec(argv, PATH env, opts) as PID 1 of a new pid namespace.
-- Returns the init's pid once the command has exec'd.
local function start_init(argv, opts, before)
  local pid, errfd = core.clone({ "pid" }, function()
    if before then
      before()
    end
    -- init_exec returns only when it failed before the fork.
    local _, msg, errno
    if opts then
      _, msg, errno = core.init_exec(argv, { PATH }, opts)
    else
      _, msg, errno = core.init_exec(argv, { PATH })
    end
    error({ message = msg, code = errno == 2 and 127 or 126 })
  end)
  local ok, err = pcall(core.await_exec, errfd)
  errfd:close()
  return pid, ok, err
end

--- Wait up to TIMEOUT for pid to end and return how and its code.  On timeout,
-- kill it and return "timed out", so a broken init fails the test instead of
-- hanging the suite.
local function wait_exit(pid)
  local result = wait_for(function()
    local got, how, code = core.waitpid(pid, true)
    return got ~= 0 and { how, code }
  end)
  if not result then
    core.kill(pid, "KILL")
    core.waitpid(pid)
    return "timed out"
  end
  return result[1], result[2]
end

--- Return the pids of the children of pid, from /proc/PID/task/PID/children.
local function children_of(pid)
  local text = read_file(string.format("/proc/%d/task/%d/children", pid, pid)) or ""
  local list = {}
  for child in text:gmatch("%d+") do
    list[#list + 1] = tonumber(child)
  end
  return list
end

local function state_of(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  return stat and stat:match("^%d+ %(.*%) (%a)")
end

local function zombie_children(pid)
  local zombies = {}
  for _, child in ipairs(children_of(pid)) do
    if state_of(child) == "Z" then
      zombies[#zombies + 1] = child
    end
  end
  return zombies
end

--- Return the pid, process group and terminal foreground group of a
-- /proc/PID/stat text.
local function process_groups(stat)
  local pid, pgrp, tpgid = (stat or ""):match("^(%d+) %(.*%) %S+ %d+ (%d+) %d+ %-?%d+ (%-?%d+)")
  return tonumber(pid), tonumber(pgrp), tonumber(tpgid)
end

local have_children_file = read_file(string.format("/proc/self/task/%d/children",
                                                   core.getpid())) ~= nil

local function temp_dir()
  local p = io.popen("mktemp -d")
  local dir = p:read("l")
  p:close()
  return dir
end

describe("core.init_exec", function()
  leaks.guard()

  local dir
  before_each(function() dir = temp_dir() end)
  after_each(function() os.execute("rm -rf " .. dir) end)

  it("exits with code 0", function()
    local pid, ok, err = start_init({ "true" })
    assert(ok, err)
    assert.are.same({ "exited", 0 }, { wait_exit(pid) })
  end)

  it("exits with the command's code", function()
    local pid, ok, err = start_init({ "sh", "-c", "exit 3" })
    assert(ok, err)
    assert.are.same({ "exited", 3 }, { wait_exit(pid) })
  end)

  it("exits 137 when the command is killed", function()
    local pid, ok, err = start_init({ "sh", "-c", "kill -KILL $$" })
    assert(ok, err)
    assert.are.same({ "exited", 137 }, { wait_exit(pid) })
  end)

  it("exits 143 on SIGTERM to the init", function()
    local pid, ok, err = start_init({ "sleep", "30" })
    assert(ok, err)
    assert.is_true(core.kill(pid, "TERM"))
    assert.are.same({ "exited", 143 }, { wait_exit(pid) })
  end)

  it("exits 130 on SIGINT to the init", function()
    local pid, ok, err = start_init({ "sleep", "30" })
    assert(ok, err)
    assert.is_true(core.kill(pid, "INT"))
    assert.are.same({ "exited", 130 }, { wait_exit(pid) })
  end)

  it("exits 137 on SIGKILL to the command", function()
    if not have_children_file then
      pending("this kernel has no /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN)")
      return
    end
    local pid, ok, err = start_init({ "sleep", "30" })
    assert(ok, err)
    local command = children_of(pid)[1]
    assert.is_number(command)
    assert.is_true(core.kill(command, "KILL"))
    assert.are.same({ "exited", 137 }, { wait_exit(pid) })
  end)

  it("forwards SIGTERM to the command", function()
    local ready = dir .. "/ready"
    local script = "trap 'exit 7' TERM; : > " .. ready .. "; while :; do sleep 0.05; done"
    local pid, ok, err = start_init({ "sh", "-c", script })
    assert(ok, err)
    assert.is_true(wait_for(function() return read_file(ready) ~= nil end))
    assert.is_true(core.kill(pid, "TERM"))
    assert.are.same({ "exited", 7 }, { wait_exit(pid) })
  end)

  it("forwards SIGUSR1 to the command", function()
    local ready = dir .. "/ready"
    local script = "trap 'exit 10' USR1; : > " .. ready .. "; while :; do sleep 0.05; done"
    local pid, ok, err = start_init({ "sh", "-c", script })
    assert(ok, err)
    assert.is_true(wait_for(function() return read_file(ready) ~= nil end))
    assert.is_true(core.kill(pid, "USR1"))
    assert.are.same({ "exited", 10 }, { wait_exit(pid) })
  end)

  it("reaps orphaned zombies", function()
    if not have_children_file then
      pending("this kernel has no /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN)")
      return
    end
    -- Each subshell exits at once, so its sleep is an orphan and a child of
    -- the init by the time the script marks itself ready.
    local ready = dir .. "/ready"
    local script = "(sleep 0.1 &); (sleep 0.1 &); : > " .. ready .. "; exec sleep 30"
    local pid, ok, err = start_init({ "sh", "-c", script })
    assert(ok, err)
    assert.is_true(wait_for(function() return read_file(ready) ~= nil end))
    -- The orphans end after 0.1 s; then only the command is a child of the init.
    local settled = wait_for(function() return #children_of(pid) == 1 end)
    local zombies = zombie_children(pid)
    core.kill(pid, "TERM")
    wait_exit(pid)
    assert.is_true(settled)
    assert.are.same({}, zombies)
  end)

  it("is needed: without it orphans stay zombies", function()
    if not have_children_file then
      pending("this kernel has no /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN)")
      return
    end
    -- The same tree with sh as PID 1, which execs sleep and never reaps.
    local pid, errfd = core.clone({ "pid" }, function()
      core.execve("/bin/sh", { "sh", "-c", "(sleep 0.1 &); (sleep 0.1 &); exec sleep 30" }, { PATH })
      error("exec /bin/sh failed")
    end)
    core.await_exec(errfd)
    errfd:close()
    local zombies = wait_for(function()
      local z = zombie_children(pid)
      return #z == 2 and z
    end)
    core.kill(pid, "KILL")
    wait_exit(pid)
    assert.are.equal(2, zombies and #zombies)
  end)

  it("names the process nsbuild-init", function()
    local pid, ok, err = start_init({ "sleep", "30" })
    assert(ok, err)
    local comm = read_file("/proc/" .. pid .. "/comm")
    core.kill(pid, "TERM")
    wait_exit(pid)
    assert.are.equal("nsbuild-init\n", comm)
  end)

  it("closes descriptors above 2 in the init", function()
    local pid, ok, err = start_init({ "sleep", "30" })
    assert(ok, err)
    local fds = {}
    local p = io.popen("ls /proc/" .. pid .. "/fd")
    for fd in p:lines() do
      fds[#fds + 1] = tonumber(fd)
    end
    p:close()
    core.kill(pid, "TERM")
    wait_exit(pid)
    table.sort(fds)
    assert.is_true(#fds <= 3)
    assert.is_true((fds[#fds] or 0) <= 2)
  end)

  it("starts the command with no blocked signal", function()
    local out = dir .. "/status"
    local pid, ok, err = start_init({ "sh", "-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status > " .. out })
    assert(ok, err)
    assert.are.same({ "exited", 0 }, { wait_exit(pid) })
    local status = read_file(out)
    assert.matches("SigBlk:%s+0000000000000000", status)
  end)

  it("takes the terminal it owns", function()
    if not os.execute("command -v script >/dev/null") then
      pending("script (bsdutils) is not installed, and it provides the pty")
      return
    end
    -- script runs the program as a session leader whose controlling terminal
    -- is a new pty, so that init owns the terminal.
    local out, program = dir .. "/stat", dir .. "/init.lua"
    local pwd = io.popen("pwd")
    local root = pwd:read("l")
    pwd:close()
    write_file(program, string.format([[
      package.cpath = %q .. "/lua/?.so;" .. package.cpath
      local core = require "nsbuild.core"
      core.init_exec({ "sh", "-c", "cat /proc/$$/stat > %s" }, { %q })
      os.exit(99)
    ]], root, out, PATH))
    local ok = os.execute("script -qec 'exec lua5.4 " .. program .. "' /dev/null </dev/null >/dev/null")
    local pid, pgrp, tpgid = process_groups(read_file(out))
    assert.is_true(ok)
    assert.are.equal(pid, pgrp)
    assert.are.equal(pgrp, tpgid)
  end)

  it("keeps a shared terminal's process group", function()
    if not have_children_file then
      pending("this kernel has no /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN)")
      return
    end
    local pid, ok, err = start_init({ "sleep", "30" })
    assert(ok, err)
    local command, pgrp = process_groups(read_file("/proc/" .. children_of(pid)[1] .. "/stat"))
    local _, own_pgrp = process_groups(read_file("/proc/self/stat"))
    core.kill(pid, "TERM")
    wait_exit(pid)
    assert.are_not.equal(command, pgrp)
    assert.are.equal(own_pgrp, pgrp)
  end)

  it("forwards no signal the kernel sent", function()
    pending("a ^C through a shared pty reaches the command directly and, without the "
            .. "filter, again through the init; both arrive within microseconds and merge "
            .. "into one pending SIGINT, so no test can count them reliably")
  end)

  it("reports a command not found", function()
    local pid, ok, err = start_init({ "no-such-command-x" })
    assert.is_false(ok)
    assert.are.equal("exec 'no-such-command-x': not found in PATH (/usr/bin:/bin)", err)
    assert.are.same({ "exited", 127 }, { wait_exit(pid) })
  end)

  it("reports a file without exec permission", function()
    local path = dir .. "/script"
    write_file(path, "#!/bin/sh\nexit 0\n")
    local pid, ok, err = start_init({ path })
    assert.is_false(ok)
    assert.are.equal("exec '" .. path .. "': Permission denied", err)
    assert.are.same({ "exited", 126 }, { wait_exit(pid) })
  end)

  it("exits 126 when exec fails after the fork", function()
    local path = dir .. "/garbage"
    write_file(path, "\1\2\3 not a program\n")
    os.execute("chmod 755 " .. path)
    local r, w = core.pipe()
    local pid, ok, err = start_init({ path }, nil, function()
      assert(core.dup2(w, 2))
    end)
    w:close()
    local message = r:read_all()
    r:close()
    assert(ok, err)
    assert.are.same({ "exited", 126 }, { wait_exit(pid) })
    assert.are.equal("nsbuild-init: exec '" .. path .. "': Exec format error\n", message)
  end)

  it("exits 127 for a missing interpreter", function()
    local path = dir .. "/script"
    write_file(path, "#!/no/such/interpreter\n")
    os.execute("chmod 755 " .. path)
    local r, w = core.pipe()
    local pid, ok, err = start_init({ path }, { errfd = w })
    w:close()
    local message = r:read_all()
    r:close()
    assert(ok, err)
    assert.are.same({ "exited", 127 }, { wait_exit(pid) })
    assert.are.equal("exec '" .. path .. "': No such file or directory", message)
  end)

  it("runs opts.file with argv", function()
    local out = dir .. "/out"
    local pid, ok, err = start_init({ "custom-name", "-c", "echo $0 > " .. out }, { file = "/bin/sh" })
    assert(ok, err)
    assert.are.same({ "exited", 0 }, { wait_exit(pid) })
    assert.are.equal("custom-name\n", read_file(out))
  end)

  it("rejects an empty argv", function()
    local pid, ok, err = start_init({})
    assert.is_false(ok)
    assert.matches("argv must not be empty", err, 1, true)
    assert.are.same({ "exited", 125 }, { wait_exit(pid) })
  end)

  it("rejects an unknown option", function()
    local pid, ok, err = start_init({ "true" }, { fiel = "/bin/true" })
    assert.is_false(ok)
    assert.matches("unknown option 'fiel'", err, 1, true)
    assert.are.same({ "exited", 125 }, { wait_exit(pid) })
  end)
end)
