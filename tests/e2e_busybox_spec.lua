-- End to end: build recipes/busybox.lua from Debian's real package and run
-- containers from it. The store is build/test-cache, kept between runs so the
-- package is downloaded once.
local cli = require "support.cli"
local leaks = require "support.leaks"

local cache = "build/test-cache"
local cache_abs

local function nsbuild(...)
  local args = { "--cache", cache, ... }
  if args[3] == "run" then
    -- "run" comes first; the global option goes after it.
    args = { "run", "--cache", cache, select(2, ...) }
  end
  return cli.run(args)
end

describe("busybox recipe", function()
  leaks.guard()

  setup(function()
    local out, code = nsbuild("recipes/busybox.lua")
    assert(code == 0, "building recipes/busybox.lua failed:\n" .. out)
    cache_abs = cli.sh("realpath " .. cache):gsub("\n$", "")
  end)

  it("rebuilds from the cache without work", function()
    local out, code = nsbuild("recipes/busybox.lua")
    assert.are.equal(0, code)
    assert.matches("CACHED", out, 1, true)
    assert.matches("nothing to do, every step was cached", out, 1, true)
    assert.is_nil(out:find("done in", 1, true))
  end)

  it("runs the command as pid 1 without init", function()
    local out, code = nsbuild("run", "--no-init", "busybox", "--", "sh", "-c", "echo $$")
    assert.are.equal(0, code)
    assert.are.equal("1\n", out)
  end)

  it("shows only the container's processes", function()
    local out, code = nsbuild("run", "--no-init", "busybox", "--", "ls", "/proc")
    assert.are.equal(0, code)
    local pids = {}
    for name in out:gmatch("%S+") do
      if name:match("^%d+$") then pids[#pids + 1] = name end
    end
    assert.are.same({ "1" }, pids)
  end)

  it("sets the container's hostname", function()
    local out, code = nsbuild("run", "--hostname", "box-e2e", "busybox", "--", "hostname")
    assert.are.equal(0, code)
    assert.are.equal("box-e2e\n", out)
  end)

  it("gives a random hostname by default", function()
    local host = cli.sh("hostname")
    local out = nsbuild("run", "busybox", "--", "hostname")
    assert.matches("^%x+\n$", out)
    assert.are_not.equal(host, out)
  end)

  it("shows the image's root, not the host's", function()
    local marker = os.tmpname()
    local out, code = nsbuild("run", "busybox", "--", "sh", "-c",
                              "ls /; test -e " .. marker .. " && echo HOST-FILE-VISIBLE; test -e /work && echo HOST-WORK-VISIBLE; true")
    os.remove(marker)
    assert.are.equal(0, code)
    assert.matches("\nbin\n", "\n" .. out, 1, true)
    assert.matches("\nproc\n", "\n" .. out, 1, true)
    assert.is_nil(out:find("HOST-FILE-VISIBLE", 1, true))
    assert.is_nil(out:find("HOST-WORK-VISIBLE", 1, true))
  end)

  it("has only loopback in its network namespace", function()
    -- The container's /sys is a sysfs of its own network namespace.
    local out, code = nsbuild("run", "busybox", "--", "ls", "/sys/class/net")
    assert.are.equal(0, code)
    assert.are.equal("lo\n", out)
  end)

  it("passes exit code 0", function()
    local _, code = nsbuild("run", "busybox", "--", "true")
    assert.are.equal(0, code)
  end)

  it("passes exit code 3", function()
    local _, code = nsbuild("run", "busybox", "--", "sh", "-c", "exit 3")
    assert.are.equal(3, code)
  end)

  it("gives 127 for a missing command", function()
    local out, code = nsbuild("run", "busybox", "--", "no-such-command")
    assert.are.equal(127, code)
    assert.matches("no-such-command", out, 1, true)
  end)

  it("gives 137 when killed from the host", function()
    -- The container's first process is nsbuild's only child; kill it with SIGKILL from outside.
    local script = table.concat({
      cli.nsbuild .. " run --cache " .. cache .. " busybox -- sleep 30 & nsb=$!",
      "child=",
      "for i in $(seq 200); do child=$(pgrep -P $nsb); [ -n \"$child\" ] && break; sleep 0.05; done",
      "[ -n \"$child\" ] || { echo 'no container process'; kill $nsb; exit 99; }",
      "kill -9 $child",
      "wait $nsb",
    }, "\n")
    local out, code = cli.sh(script)
    assert.are.equal(137, code, out)
  end)

  for _, user in ipairs({ "0", "1000" }) do
    it("ends when nsbuild is killed, user " .. user, function()
      -- A marker argument finds the container's process from the host.
      local marker = tostring(math.random(100000, 999999))
      local script = table.concat({
        cli.nsbuild .. " run --cache " .. cache .. " -u " .. user .. " busybox -- sleep 3" .. marker .. " & nsb=$!",
        "for i in $(seq 100); do pgrep -f 'sleep 3" .. marker .. "$' >/dev/null && break; sleep 0.05; done",
        "kill -9 $nsb; wait $nsb",
        "for i in $(seq 40); do pgrep -f 'sleep 3" .. marker .. "$' >/dev/null || { echo gone; exit 0; }; sleep 0.05; done",
        "echo still-running; pkill -9 -f 'sleep 3" .. marker .. "$'",
      }, "\n")
      local out = cli.sh(script)
      -- bash reports the killed job on a line of its own before.
      assert.are.equal("gone", out:match("([^\n]*)\n$"))
    end)
  end

  it("leaves no work directories behind", function()
    nsbuild("run", "busybox", "--", "true")
    assert.are.same({}, cli.entries(cache_abs .. "/tmp"))
  end)

  it("leaves no mounts behind", function()
    assert.are.same({}, cli.mounts_below(cache_abs))
  end)
end)

describe("broken recipe", function()
  leaks.guard()
  local dir, store

  before_each(function()
    dir = cli.tmpdir("nsbuild-broken")
    store = dir .. "/cache"
  end)

  after_each(function()
    cli.sh("rm -rf " .. cli.quote(dir))
  end)

  local function write(name, text)
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
    return dir .. "/" .. name
  end

  local function assert_store_clean()
    assert.are.same({}, cli.mounts_below(dir))
    assert.are.same({}, cli.entries(store .. "/tmp"))
    for _, name in ipairs(cli.entries(store .. "/layers")) do
      -- Every layer directory has its metadata file: nothing half-written.
      if not name:match("%.json$") then
        assert.is_true(cli.sh("test -f " .. cli.quote(store .. "/layers/" .. name .. ".json")) ~= nil)
        local _, code = cli.sh("test -f " .. cli.quote(store .. "/layers/" .. name .. ".json"))
        assert.are.equal(0, code)
      end
    end
  end

  it("reports a syntax error with file and line", function()
    local path = write("syntax.lua", "return from(deb \"busybox-static\")\n  :run { \"true\" \n:tag 'x'\n")
    local _, err, code = cli.run_split({ "--cache", store, path })
    assert.are.equal(125, code)
    assert.matches("^nsbuild: error: " .. path:gsub("%p", "%%%0") .. ":3: .*expected", err)
    assert.are.equal(1, select(2, err:gsub("\n", "")))
    assert_store_clean()
  end)

  it("reports a missing package", function()
    local path = write("missing.lua", "return from(deb \"nsbuild-no-such-package\"):tag 'x'\n")
    local _, err, code = cli.run_split({ "--cache", store, path })
    assert.are.equal(125, code)
    local last = err:match("([^\n]*)\n$")
    assert.matches("^nsbuild: error: deb: package 'nsbuild%-no%-such%-package' not found", last)
    assert.is_nil(err:find("traceback", 1, true))
    assert_store_clean()
  end)

  it("stops at a failing run step with its code", function()
    local path = write("failing.lua", [[
return from(deb "busybox-static")
  :run { "/bin/busybox", "--install", "-s", "/bin" }
  :run "echo partial > /written; exit 7"
  :tag "failing"
]])
    local out, code = cli.run({ "--cache", store, path })
    assert.are.equal(7, code)
    assert.matches("nsbuild: error: step 3/3 failed with exit code 7: run echo partial > /written; exit 7 (output in ", out, 1, true)
    assert_store_clean()
    local _, tagged = cli.sh("test -e " .. cli.quote(store .. "/images/failing:latest.json"))
    assert.are_not.equal(0, tagged)
  end)

  it("reports a recipe that does not exist", function()
    local _, err, code = cli.run_split({ "--cache", store, dir .. "/nope.lua" })
    assert.are.equal(125, code)
    assert.matches("nope.lua", err, 1, true)
  end)
end)
