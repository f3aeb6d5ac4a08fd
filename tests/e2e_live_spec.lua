-- End to end: containers that keep running. nsbuild run -d and
-- nsbuild.start start them; ps, exec, stop and logs find them through the
-- state under the store's run/ directory. Needs the busybox image of
-- recipes/busybox.lua in build/test-cache.
local cjson = require "cjson"
local cli = require "support.cli"
local leaks = require "support.leaks"

local cache = "build/test-cache"

local function nsb(...)
  local args = { ... }
  table.insert(args, 2, "--cache")
  table.insert(args, 3, cache)
  return cli.run(args)
end

local function state_of(id)
  local f = io.open(cache .. "/run/" .. id .. ".json")
  if not f then
    return nil
  end
  local state = cjson.decode(f:read("a"))
  f:close()
  return state
end

-- A zombie has ended: the supervisor of run -d is an orphan, which the
-- init of the machine reaps when it gets to it.
local function alive(pid)
  local f = io.open("/proc/" .. math.tointeger(pid) .. "/stat")
  local stat = f and f:read("a")
  if f then f:close() end
  local state = stat and stat:match("^.*%)%s+(%a)")
  return state ~= nil and state ~= "Z"
end

-- The cgroup directories named after an nsbuild process, in every v1
-- hierarchy and the v2 tree below this process's own cgroups.
local function cgroups_of(owner)
  local found = {}
  for line in io.lines("/proc/self/cgroup") do
    local controllers, path = line:match("^%d+:([^:]*):(.*)$")
    local dir = controllers == "" and "/sys/fs/cgroup/unified" or
                "/sys/fs/cgroup/" .. (controllers:match("^name=(.*)$") or controllers:match("^[^,]+"))
    local out = cli.sh("ls -d " .. dir .. path .. "/nsbuild-" .. math.tointeger(owner) .. "-* 2>/dev/null")
    for d in out:gmatch("[^\n]+") do found[#found + 1] = d end
  end
  return found
end

local function detach(...)
  local out, code = nsb("run", "-d", ...)
  assert.are.equal(0, code, out)
  local id = out:match("^(%x+)\n$")
  assert.is_truthy(id, "run -d printed no id: " .. out)
  return id
end

describe("nsbuild run -d", function()
  leaks.guard()
  local id

  before_each(function()
    id = detach("--hostname", "livebox", "busybox", "--", "sh", "-c",
                "echo started; echo written > /marker; exec sleep 120")
  end)

  after_each(function()
    nsb("stop", "-t", "1", id)
  end)

  it("is listed by ps", function()
    local out, code = nsb("ps")
    assert.are.equal(0, code, out)
    assert.matches("ID%s+IMAGE%s+PID%s+STATUS%s+AGE%s+COMMAND", out)
    assert.matches(id .. "%s+busybox:latest%s+%d+%s+running", out)
  end)

  it("exec sees the container's files and hostname", function()
    local out, code = nsb("exec", id, "--", "sh", "-c", "cat /marker; hostname")
    assert.are.equal(0, code, out)
    assert.are.equal("written\nlivebox\n", out)
  end)

  it("exec shares the container's pid namespace", function()
    local state = state_of(id)
    local out, code = nsb("exec", id, "--", "ps")
    assert.are.equal(0, code, out)
    assert.matches("\n%s+2 %S+%s+sleep 120\n", out)
    local inside = nsb("exec", id, "--", "readlink", "/proc/self/ns/pid")
    local host = cli.sh("readlink /proc/" .. math.tointeger(state.pid) .. "/ns/pid")
    assert.are.equal(host, inside)
  end)

  it("exec returns the command's exit code", function()
    local _, code = nsb("exec", id, "--", "sh", "-c", "exit 9")
    assert.are.equal(9, code)
    local out
    out, code = nsb("exec", id, "--", "no-such-command")
    assert.are.equal(127, code)
    assert.matches("not found", out, 1, true)
  end)

  it("exec applies -u, -w and -e", function()
    local out, code = nsb("exec", "-u", "1000:1000", "-w", "/bin", "-e", "GREETING=hi", id, "--",
                          "sh", "-c", "id -u; id -g; pwd; echo $GREETING")
    assert.are.equal(0, code, out)
    assert.are.equal("1000\n1000\n/bin\nhi\n", out)
  end)

  it("exec -t gives the command a terminal", function()
    -- script(1) gives nsbuild exec a terminal of its own to relay.
    local line = cli.nsbuild .. " exec --cache " .. cache .. " -t " .. id .. " -- tty"
    local out, code = cli.sh("script -qec " .. cli.quote(line) .. " /dev/null </dev/null")
    assert.are.equal(0, code, out)
    assert.matches("^/dev/pts/%d+%s*$", out)
  end)

  it("exec joins the container's cgroup", function()
    local state = state_of(id)
    local out, code = nsb("exec", id, "--", "cat", "/proc/self/cgroup")
    assert.are.equal(0, code, out)
    local name = state.cgroups[1]:match("[^/]+$")
    assert.matches(name, out, 1, true)
  end)

  it("logs shows the command's output", function()
    local out, code = nsb("logs", id)
    assert.are.equal(0, code, out)
    assert.are.equal("started\n", out)
  end)

  it("stop leaves no process, cgroup, root or state", function()
    local state = state_of(id)
    assert.is_truthy(state, "no state for " .. id)
    local out, code = nsb("stop", "-t", "2", id)
    assert.are.equal(0, code, out)
    assert.are.equal(id .. "\n", out)
    assert.is_false(alive(state.pid), "the container's pid still runs")
    assert.is_false(alive(state.supervisor), "the supervisor still runs")
    assert.is_nil(state_of(id))
    assert.is_nil(io.open(cache .. "/run/" .. id .. ".log"))
    assert.are.same({}, cgroups_of(state.supervisor))
    for _, name in ipairs(cli.entries(cache .. "/tmp")) do
      assert.is_nil(name:find(id, 1, true), "work directory left behind: " .. name)
    end
    out = nsb("ps")
    assert.is_nil(out:find(id, 1, true))
  end)
end)

describe("live container errors", function()
  leaks.guard()

  it("exec names an unknown id", function()
    local out, code = nsb("exec", "0123456789ab", "--", "true")
    assert.are.equal(125, code)
    assert.matches("no running container '0123456789ab' (nsbuild ps lists the running ones)", out, 1, true)
  end)

  it("exec rejects an id that is not hex", function()
    local out, code = nsb("exec", "../etc", "--", "true")
    assert.are.equal(125, code)
    assert.matches("invalid container id '../etc'", out, 1, true)
  end)

  it("stop names an unknown id", function()
    local out, code = nsb("stop", "0123456789ab")
    assert.are.equal(125, code)
    assert.matches("no running container", out, 1, true)
  end)

  it("run -d reports a command not found", function()
    local before = cli.entries(cache .. "/run")
    local out, code = nsb("run", "-d", "busybox", "--", "no-such-command")
    assert.are.equal(127, code)
    assert.matches("exec 'no-such-command': not found", out, 1, true)
    -- Other nsbuild processes may share the cache: only this run's files count.
    for _, name in ipairs(cli.entries(cache .. "/run")) do
      local known = false
      for _, old in ipairs(before) do known = known or old == name end
      assert.is_true(known, "left behind: run/" .. name)
    end
  end)

  it("logs -f follows until the container ends", function()
    local id = detach("busybox", "--", "sh", "-c", "sleep 0.5; for i in 1 2 3; do echo line $i; sleep 0.2; done")
    local out, code = nsb("logs", "-f", id)
    assert.are.equal(0, code, out)
    assert.are.equal("line 1\nline 2\nline 3\n", out)
  end)

  it("run -d refuses -t", function()
    local out, code = nsb("run", "-d", "-t", "busybox", "--", "sh")
    assert.are.equal(125, code)
    assert.matches("-d does not mix with -i or -t", out, 1, true)
  end)

  it("ps removes the state of a container that ended", function()
    local path = cache .. "/run/aaaaaaaaaaaa.json"
    local f = assert(io.open(path, "w"))
    -- pid 1 runs, but not since the recorded start time.
    f:write(cjson.encode({ id = "aaaaaaaaaaaa", pid = 1, start_time = "1", created = os.time(),
                           mode = "detached", command = { "sleep" } }))
    f:close()
    local out, code = nsb("ps")
    assert.are.equal(0, code, out)
    assert.is_nil(out:find("aaaaaaaaaaaa", 1, true))
    assert.is_nil(io.open(path))
  end)
end)

describe("nsbuild run in the foreground", function()
  leaks.guard()

  it("is recorded while it runs and reachable by exec", function()
    local log = os.tmpname()
    -- In the background of a shell that exits at once, so that the
    -- container is no child of this process.
    cli.sh("(" .. cli.nsbuild .. " run --cache " .. cache .. " --hostname fg busybox -- sleep 121 >"
           .. log .. " 2>&1 &)")
    local id
    for _ = 1, 100 do
      id = nsb("ps"):match("\n(%x+)%s+busybox:latest%s+%d+%s+running %(run%)%s+%w+%s+sleep 121\n")
      if id then break end
      cli.sh("sleep 0.1")
    end
    assert.is_truthy(id, "ps never listed the foreground container")
    local out, code = nsb("exec", id, "--", "hostname")
    assert.are.equal(0, code, out)
    assert.are.equal("fg\n", out)
    out, code = nsb("logs", id)
    assert.are.equal(125, code)
    assert.matches("runs in the foreground of nsbuild run", out, 1, true)
    out, code = nsb("stop", "-t", "2", id)
    assert.are.equal(0, code, out)
    assert.is_nil(state_of(id))
    os.remove(log)
  end)
end)

describe("nsbuild.start", function()
  leaks.guard()

  local function script(body)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(body)
    f:close()
    local out, code = cli.run({ "script", path })
    os.remove(path)
    return out, code
  end

  it("runs, execs, logs and waits", function()
    local out, code = script(string.format([[
local store = nsbuild.store.open(%q)
local c = nsbuild.start("busybox", { hostname = "started" },
                        { store = store, argv = { "sh", "-c", "echo hello; echo x > /made; exec sleep 120" } })
print("handle", tostring(c))
print("pid", c:pid() > 0)
print("stats", type(c:stats()))
local code, output = c:exec { "sh", "-c", "cat /made; hostname", capture = true }
print("exec", code, (output:gsub("\n", " ")))
c:kill("TERM")
local status = c:wait()
print("wait", status)
print("logs", (c:logs():gsub("\n", " ")))
print("after", tostring(c))
print("state", core.lstat(store:path("run", c.id .. ".json")) ~= nil,
      core.lstat(store:path("run", c.id .. ".log")) ~= nil)
]], cache))
    assert.are.equal(0, code, out)
    assert.matches("handle\tcontainer %x+ %(busybox:latest%) pid %d+ running\n", out)
    assert.matches("pid\ttrue\n", out, 1, true)
    assert.matches("stats\ttable\n", out, 1, true)
    assert.matches("exec\t0\tx started \n", out, 1, true)
    assert.matches("wait\t143\n", out, 1, true)
    assert.matches("logs\thello \n", out, 1, true)
    assert.matches("after\tcontainer %x+ %(busybox:latest%) pid %d+ exited 143\n", out)
    assert.matches("state\tfalse\tfalse\n", out, 1, true)
  end)

  it("returns the exit code of a command that ends", function()
    local out, code = script(string.format([[
local c = nsbuild.start("busybox", nil, { store = nsbuild.store.open(%q), argv = { "sh", "-c", "exit 4" } })
print("code", c:wait())
]], cache))
    assert.are.equal(0, code, out)
    assert.matches("code\t4\t", out, 1, true)
  end)

  it("applies the policy to exec", function()
    local out, code = script(string.format([[
local c = nsbuild.start("busybox", { user = "1000", caps = { drop = { "all" } } },
                        { store = nsbuild.store.open(%q), argv = { "sleep", "120" } })
local _, status = c:exec { "cat", "/proc/self/status", capture = true }
c:kill("KILL")
c:wait()
for _, field in ipairs({ "Uid", "CapEff", "CapBnd", "NoNewPrivs", "Seccomp" }) do
  print(field, (status:match(field .. ":%%s*(%%S+)")))
end
]], cache))
    assert.are.equal(0, code, out)
    assert.matches("Uid\t1000\n", out, 1, true)
    assert.matches("CapEff\t0000000000000000\n", out, 1, true)
    assert.matches("CapBnd\t0000000000000000\n", out, 1, true)
    assert.matches("NoNewPrivs\t1\n", out, 1, true)
    assert.matches("Seccomp\t2\n", out, 1, true)
  end)

  it("keeps a 64-bit seccomp value for exec", function()
    local out, code = script(string.format([[
local live = require "nsbuild.live"
local store = nsbuild.store.open(%q)
local big = 0x7FFFFFFF00000001
local c = nsbuild.start("busybox", { seccomp = { base = "default", rules = {
  { action = "errno", errno = "EPERM", syscalls = { "personality" },
    args = { { index = 0, op = "eq", value = big } } } } } },
  { store = store, argv = { "sleep", "120" } })
local state = live.find(store, c.id)
for _, rule in ipairs(state.exec.seccomp.rules) do
  if rule.syscalls[1] == "personality" then print("value", rule.args[1].value == big) end
end
print("exec", (c:exec { "true" }))
c:kill("KILL")
c:wait()
]], cache))
    assert.are.equal(0, code, out)
    assert.matches("value\ttrue\n", out, 1, true)
    assert.matches("exec\t0\n", out, 1, true)
  end)

  it("names an image that is not built", function()
    local out, code = cli.run({ "-e", string.format(
      "nsbuild.start('no-such-image', nil, { store = nsbuild.store.open(%q) })", cache) })
    assert.are.equal(125, code)
    assert.matches("start: image 'no-such-image' not found", out, 1, true)
  end)
end)

describe("nsbuild -e and script", function()
  leaks.guard()

  it("-e runs code with the API and arguments", function()
    local out, code = cli.run({ "-e", "print(type(nsbuild.start), type(from), arg[1])", "x" })
    assert.are.equal(0, code, out)
    assert.are.equal("function\tfunction\tx\n", out)
  end)

  it("-e exits with the code returned", function()
    local _, code = cli.run({ "-e", "return 7" })
    assert.are.equal(7, code)
  end)

  it("-e prints a traceback on an error", function()
    local out, code = cli.run({ "-e", "local function f() error('boom') end f()" })
    assert.are.equal(1, code)
    assert.matches("(command line):1: boom\nstack traceback:", out, 1, true)
    assert.is_nil(out:find("cli.lua", 1, true))
  end)
end)

describe("exec by a user other than root", function()
  leaks.guard()
  local user = "nsbuild-test"
  local dir

  -- The user's own copy of nsbuild, lua/ and recipes/, with a store in it:
  -- the checkout may not be readable by other users.
  local function as_user(line)
    return cli.sh(string.format("cd %s && runuser -u %s -- %s", cli.quote(dir), user, line))
  end

  local function missing()
    if not cli.sh("command -v runuser"):match("runuser") then
      return "needs runuser (util-linux)"
    end
    local out, code = cli.sh("tools/test-user.sh")
    if code ~= 0 then
      return "tools/test-user.sh failed: " .. out
    end
    return nil
  end

  it("joins a rootless container", function()
    local reason = missing()
    if reason then
      pending(reason)
      return
    end
    dir = cli.tmpdir("nsbuild-live-rootless")
    local out, code = cli.sh(string.format("cp -a nsbuild lua recipes %s && chown -R %s: %s",
                                           cli.quote(dir), user, cli.quote(dir)))
    assert.are.equal(0, code, out)
    out, code = as_user("./nsbuild --cache cache -q recipes/busybox.lua")
    if code ~= 0 and out:find("apt-get download", 1, true) then
      cli.sh("rm -rf " .. cli.quote(dir))
      pending("cannot download busybox-static here: " .. out)
      return
    end
    assert.are.equal(0, code, out)
    out, code = as_user("./nsbuild run --cache cache -d --hostname rl busybox -- "
                        .. "sh -c 'echo mine > /m; exec sleep 120'")
    assert.are.equal(0, code, out)
    local id = out:match("^(%x+)\n$")
    assert.is_truthy(id, out)
    out, code = as_user("./nsbuild exec --cache cache " .. id .. " -- sh -c 'cat /m; hostname; id -u'")
    local stopped, scode = as_user("./nsbuild stop --cache cache -t 1 " .. id)
    assert.are.equal(0, code, out)
    assert.are.equal("mine\nrl\n0\n", out)
    assert.are.equal(0, scode, stopped)
    cli.sh("rm -rf " .. cli.quote(dir))
  end)
end)
