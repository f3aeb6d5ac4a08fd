-- The cgroup runtime: limits parsing and planning (pure), layout detection
-- from sample texts, and real containers under limits on this host's layout
-- (hybrid or v1 here, v2 in the VM of `make test-vm`). Every test checks that
-- no nsbuild cgroup is left behind.
local core = require "nsbuild.core"
local cgroup = require "nsbuild.cgroup"
local cli = require "support.cli"
local leaks = require "support.leaks"

local cache = "build/test-cache"
local is_root = core.geteuid() == 0
local live = cgroup.detect()

-- The nsbuild-* cgroups in this process's own cgroups, sorted.
local function nsbuild_cgroups()
  local list, seen = {}, {}
  local dirs = {}
  if live.kind == "v2" then
    dirs[1] = live.unified.dir
  else
    for _, h in pairs(live.v1) do dirs[#dirs + 1] = h.dir end
  end
  for _, dir in ipairs(dirs) do
    for _, name in ipairs(core.listdir(dir) or {}) do
      local path = dir .. "/" .. name
      if name:match("^nsbuild%-") and not seen[path] then
        seen[path] = true
        list[#list + 1] = path
      end
    end
  end
  table.sort(list)
  return list
end

-- The nsbuild cgroups no running nsbuild owns, or that this process owns:
-- what a finished test would have leaked. Cgroups of other running nsbuild
-- processes (another test run on the same host) are not this test's.
local function leaked_cgroups()
  local list = {}
  for _, path in ipairs(nsbuild_cgroups()) do
    local pid = tonumber(path:match("/nsbuild%-(%d+)%-[^/]*$"))
    -- A "-self" leaf holds a live nsbuild itself (cgroup v2 delegation).
    local leaf = path:match("%-self$")
    if not leaf and (pid == core.getpid() or not core.lstat("/proc/" .. tostring(pid))) then
      list[#list + 1] = path
    end
  end
  return list
end

local function guard_cgroups()
  local before
  before_each(function()
    before = {}
    for _, path in ipairs(leaked_cgroups()) do before[path] = true end
  end)
  after_each(function()
    local added = {}
    for _, path in ipairs(leaked_cgroups()) do
      if not before[path] then added[#added + 1] = path end
    end
    assert.are.same({}, added, "cgroups left behind")
  end)
end

-- Start argv in a child that waits on a pipe until the parent has attached
-- it to cg (when given), as the container runtime does; return its pid.
local function spawn_in(cg, argv)
  local r, w = assert(core.pipe())
  local pid, errfd = assert(core.clone({}, function()
    w:close()
    r:read(1)
    core.execve(argv[1], argv, {})
    core._exit(127)
  end))
  errfd:close()
  r:close()
  if cg then assert(cg:attach(pid)) end
  w:close()
  return pid
end

-- Seconds since the epoch, with fractions (os.time counts whole seconds).
local function now()
  return tonumber((cli.sh("date +%s.%N")))
end

local function nsbuild_run(...)
  return cli.run({ "run", "--cache", cache, ... })
end

describe("cgroup limits parsing", function()
  it("parses sizes with binary units", function()
    assert.are.equal(512 * 1024 * 1024, cgroup.parse_bytes("512M"))
    assert.are.equal(64 * 1024, cgroup.parse_bytes("64k"))
    assert.are.equal(2 * 1024 ^ 3, cgroup.parse_bytes("2G"))
    assert.are.equal(1536 * 1024 * 1024, cgroup.parse_bytes("1.5G"))
    assert.are.equal(100, cgroup.parse_bytes("100"))
    assert.are.equal(4096, cgroup.parse_bytes(4096))
  end)

  it("reads max and -1 as unlimited", function()
    assert.are.equal("max", cgroup.parse_bytes("max"))
    assert.are.equal("max", cgroup.parse_bytes(-1))
  end)

  it("rejects an invalid size naming it", function()
    local ok, err = pcall(cgroup.parse_limits, { memory = "12Q" })
    assert.is_false(ok)
    assert.matches("memory: invalid size '12Q'", err, 1, true)
  end)

  it("reads pids max, -1 and 0 as unlimited", function()
    for _, v in ipairs({ "max", -1, 0 }) do
      assert.are.equal("max", cgroup.parse_limits({ pids = v }).pids)
    end
    assert.are.equal(64, cgroup.parse_limits({ pids = 64 }).pids)
  end)

  it("turns cpu fractions into quotas", function()
    assert.are.equal(20000, cgroup.parse_limits({ cpu = 0.2 }).cpu)
    assert.are.equal(150000, cgroup.parse_limits({ cpu = 1.5 }).cpu)
    assert.is_false(pcall(cgroup.parse_limits, { cpu = 0.001 }))
    assert.is_false(pcall(cgroup.parse_limits, { cpu = -1 }))
  end)

  it("rejects unknown limits", function()
    local ok, err = pcall(cgroup.parse_limits, { memroy = "1G" })
    assert.is_false(ok)
    assert.matches("memroy: unknown limit", err, 1, true)
  end)

  it("needs memory below memory_swap", function()
    assert.is_false(pcall(cgroup.parse_limits, { memory_swap = "1G" }))
    assert.is_false(pcall(cgroup.parse_limits, { memory = "1G", memory_swap = "512M" }))
    assert.is_true(pcall(cgroup.parse_limits, { memory = "512M", memory_swap = "1G" }))
  end)

  it("checks cpu_weight and cpuset", function()
    assert.is_false(pcall(cgroup.parse_limits, { cpu_weight = 0 }))
    assert.is_false(pcall(cgroup.parse_limits, { cpu_weight = 10001 }))
    assert.is_false(pcall(cgroup.parse_limits, { cpuset = "a-b" }))
    assert.are.equal("0-1,3", cgroup.parse_limits({ cpuset = "0-1,3" }).cpuset)
  end)

  it("accepts io devices as MAJOR:MINOR", function()
    local io = cgroup.parse_limits({ io = { { device = "8:0", read_bps = "1M", write_iops = 100 } } }).io
    assert.are.same({ { device = "8:0", read_bps = 1048576, write_iops = 100 } }, io)
  end)

  it("rejects an io device that is not a block device", function()
    local ok, err = pcall(cgroup.parse_limits, { io = { { device = "/dev/null", read_bps = "1M" } } })
    assert.is_false(ok)
    assert.matches("'/dev/null' is not a block device", err, 1, true)
  end)

  it("maps cpu weight onto shares", function()
    assert.are.equal(1024, cgroup.weight_to_shares(100))
    assert.are.equal(10, cgroup.weight_to_shares(1))
    assert.are.equal(102400, cgroup.weight_to_shares(10000))
  end)
end)

describe("cgroup plan", function()
  local parsed = cgroup.parse_limits({
    memory = "64M", memory_swap = "128M", pids = 32, cpu = 0.5, cpu_weight = 200,
    cpuset = "0", io = { { device = "8:0", read_bps = "1M", write_iops = 10 } },
  })

  local function files(writes)
    local out = {}
    for _, w in ipairs(writes) do out[#out + 1] = w.file .. "=" .. w.value end
    return out
  end

  it("writes v2 files", function()
    assert.are.same({
      "memory.max=67108864", "memory.swap.max=67108864", "pids.max=32", "cpu.max=50000 100000",
      "cpu.weight=200", "cpuset.cpus=0", "io.max=8:0 rbps=1048576 wiops=10",
    }, files(cgroup.plan(parsed, 2)))
  end)

  it("writes v1 files, memory before memsw", function()
    local got = files(cgroup.plan(parsed, 1))
    assert.are.equal("memory.limit_in_bytes=67108864", got[1])
    assert.are.equal("memory.memsw.limit_in_bytes=134217728", got[2])
    assert.are.equal("pids.max=32", got[3])
    assert.are.equal("cpu.cfs_period_us=100000", got[4])
    assert.are.equal("cpu.cfs_quota_us=50000", got[5])
    assert.are.equal("cpu.shares=2048", got[6])
    assert.are.equal("cpuset.cpus=0", got[7])
    table.sort(got)
    assert.is_truthy(got[1]:match("^blkio.throttle.read_bps_device=8:0 1048576$"))
    assert.is_truthy(got[2]:match("^blkio.throttle.write_iops_device=8:0 10$"))
  end)

  it("writes unlimited values", function()
    local unlimited = cgroup.parse_limits({ memory = "max", pids = 0, cpu = "max" })
    assert.are.same({ "memory.max=max", "pids.max=max", "cpu.max=max 100000" },
                    files(cgroup.plan(unlimited, 2)))
    assert.are.same({ "memory.limit_in_bytes=-1", "pids.max=max", "cpu.cfs_quota_us=-1" },
                    files(cgroup.plan(unlimited, 1)))
  end)
end)

describe("cgroup layout detection", function()
  local hybrid_mountinfo = [[
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
]]
  local hybrid_cgroup = "4:memory:/user.slice/a\n2:cpu,cpuacct:/user.slice\n1:name=systemd:/x\n0::/x\n"

  it("finds hybrid hierarchies", function()
    local l = cgroup.detect(hybrid_mountinfo, hybrid_cgroup)
    assert.are.equal("hybrid", l.kind)
    assert.are.equal("/sys/fs/cgroup/memory/user.slice/a", l.v1.memory.dir)
    assert.are.equal("/sys/fs/cgroup/cpu,cpuacct/user.slice", l.v1.cpu.dir)
    assert.are.equal("/sys/fs/cgroup/cpu,cpuacct/user.slice", l.v1.cpuacct.dir)
    assert.is_nil(l.v1["name=systemd"])
    assert.are.equal("/sys/fs/cgroup/unified/x", l.unified.dir)
  end)

  it("finds a pure v2 layout", function()
    local l = cgroup.detect("29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
                            "0::/user.slice/user-1000.slice/session-2.scope\n")
    assert.are.equal("v2", l.kind)
    assert.are.equal("/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope", l.unified.dir)
  end)

  it("finds a pure v1 layout", function()
    local l = cgroup.detect("35 31 0:32 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n", "3:pids:/\n")
    assert.are.equal("v1", l.kind)
    assert.are.equal("/sys/fs/cgroup/pids", l.v1.pids.dir)
  end)

  it("maps a mount of a subtree", function()
    local l = cgroup.detect("35 31 0:32 /ctr /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/ctr/job\n")
    assert.are.equal("/sys/fs/cgroup/job", l.unified.dir)
  end)

  it("reports none without cgroup mounts", function()
    assert.are.equal("none", cgroup.detect("", "0::/\n").kind)
  end)
end)

describe("cgroup object", function()
  leaks.guard()
  guard_cgroups()

  -- Root, or a user in a delegated cgroup v2 subtree, may create cgroups.
  local function need_root()
    if is_root then
      return true
    end
    local cg, err = cgroup.create({})
    if not cg then
      pending("needs root or a delegated cgroup: " .. tostring(err))
      return false
    end
    cg:destroy()
    return true
  end

  it("OOM-kills a process past 64M", function()
    if not need_root() then return end
    local cg = assert(cgroup.create({ limits = { memory = "64M" } }))
    local pid = spawn_in(cg, { "/bin/sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a)" })
    local _, how, sig = core.waitpid(pid)
    local stats = cg:stats()
    cg:destroy()
    assert.are.same({ "signaled", 9 }, { how, sig })
    assert.is_true(stats.oom_kills >= 1)
    assert.is_true(stats.memory_peak <= 64 * 1024 * 1024)
  end)

  it("refuses forks past the pids limit", function()
    if not need_root() then return end
    local cg = assert(cgroup.create({ limits = { pids = 8 } }))
    local pid = spawn_in(cg, { "/bin/sh", "-c", "for i in $(seq 20); do sleep 1 & done 2>/dev/null; wait" })
    core.waitpid(pid)
    local stats = cg:stats()
    local events = core.cgroup_read((cg.v2 or cg.v1.pids) .. "/pids.events")
    cg:destroy()
    assert.is_true(tonumber(events:match("max (%d+)")) > 0, events)
    if stats.pids_peak then
      assert.is_true(stats.pids_peak <= 8)
    end
  end)

  it("create and destroy leave nothing", function()
    if not need_root() then return end
    local cg = assert(cgroup.create({ limits = { memory = "64M", pids = 16, cpu = 0.5 } }))
    assert.is_true(#cg.created > 0)
    for _, dir in ipairs(cg.created) do
      assert.is_not_nil(core.lstat(dir))
    end
    assert.is_true(cg:destroy())
    assert.is_true(cg:destroy())
  end)

  it("writes the memory limit", function()
    if not need_root() then return end
    local cg = assert(cgroup.create({ limits = { memory = "64M" } }))
    local dir = cg.v2 or cg.v1.memory
    local file = cg.v2 and "memory.max" or "memory.limit_in_bytes"
    local value = core.cgroup_read(dir .. "/" .. file)
    cg:destroy()
    assert.are.equal("67108864\n", value)
  end)

  it("kills every process on destroy", function()
    if not need_root() then return end
    local cg = assert(cgroup.create({}))
    local pid = spawn_in(cg, { "/bin/sh", "-c", "sleep 30 & sleep 30 & wait" })
    assert.is_true(cg:destroy())
    local _, how, sig = core.waitpid(pid)
    assert.are.equal("signaled", how)
    assert.are.equal(9, sig)
  end)

  it("removes stale cgroups of a dead owner", function()
    if not need_root() then return end
    -- A pid above the kernel's maximum never runs.
    local cg = assert(cgroup.create({ name = "nsbuild-99999999-stale" }))
    local created = { table.unpack(cg.created) }
    local removed = cgroup.remove_stale()
    table.sort(removed)
    table.sort(created)
    assert.are.same(created, removed)
  end)

  it("keeps cgroups of a live owner", function()
    if not need_root() then return end
    local cg = assert(cgroup.create({}))
    assert.are.same({}, cgroup.remove_stale())
    cg:destroy()
  end)

  it("throttles reads of a block device", function()
    if not need_root() then return end
    local dev = os.getenv("NSBUILD_TEST_BLOCK_DEVICE")
    if not dev then
      pending("needs a scratch block device in NSBUILD_TEST_BLOCK_DEVICE; make test-vm sets up a brd RAM disk")
      return
    end
    local function read_seconds(cg)
      local started = now()
      local pid = spawn_in(cg, { "/bin/dd", "if=" .. dev, "of=/dev/null", "bs=64k", "count=32", "iflag=direct",
                                 "status=none" })
      local _, how, code = core.waitpid(pid)
      assert.are.same({ "exited", 0 }, { how, code })
      return now() - started
    end
    local cg = assert(cgroup.create({ limits = { io = { { device = dev, read_bps = "1M" } } } }))
    -- 2 MiB at 1 MiB/s; the kernel lets a first slice through at once.
    local limited = read_seconds(cg)
    cg:destroy()
    local free = read_seconds(nil)
    assert.is_true(limited >= 0.9, string.format("2 MiB read in %.2f s under a 1 MiB/s limit", limited))
    assert.is_true(free < limited / 2, string.format("unlimited %.2f s, limited %.2f s", free, limited))
  end)

  it("names the limit a layout cannot express", function()
    if not need_root() then return end
    local fake = cgroup.detect("35 31 0:32 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n", "3:pids:/\n")
    local cg, err = cgroup.create({ layout = fake, limits = { memory = "64M" } })
    assert.is_nil(cg)
    assert.matches("limit memory needs the v1 memory controller", err, 1, true)
  end)
end)

describe("container limits", function()
  leaks.guard()
  guard_cgroups()

  setup(function()
    if is_root then
      local out, code = cli.run({ "--cache", cache, "recipes/busybox.lua" })
      assert(code == 0, "building recipes/busybox.lua failed:\n" .. out)
    end
  end)

  local function need_root()
    if not is_root then
      pending("needs root: nsbuild run sets up no user namespace for other users yet")
      return false
    end
    return true
  end

  it("OOM-kills past a 64M limit with 137", function()
    if not need_root() then return end
    local out, code = nsbuild_run("--memory", "64M", "busybox", "--", "sh", "-c",
                                  "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived")
    assert.are.equal(137, code, out)
    assert.matches("killed: out of memory, limit 64M", out, 1, true)
    assert.is_nil(out:find("survived", 1, true))
  end)

  it("stops a fork bomb at the pids limit", function()
    if not need_root() then return end
    -- Each shell forks until the limit refuses; the outer timeout bounds the run.
    local out, code = nsbuild_run("--pids-limit", "16", "--stats", "busybox", "--", "sh", "-c",
      "timeout -s KILL 3 sh -c 'b() { b & b & wait; }; b' 2>/dev/null; echo done")
    -- The outer shell is the container's pid 1, which a signal from inside its
    -- namespace cannot kill; timeout kills the bomb's first shell, the outer
    -- shell ends, and with it every process of the namespace.
    assert.are.equal(0, code, out)
    assert.matches("done\n", out, 1, true)
    local peak = tonumber(out:match("pids peak (%d+)"))
    if peak then
      assert.is_true(peak <= 16, out)
      assert.is_true(peak >= 8, out)
    end
  end)

  it("treats pids max, -1 and 0 as unlimited", function()
    if not need_root() then return end
    for _, v in ipairs({ "max", "-1", "0" }) do
      local out, code = nsbuild_run("--pids-limit", v, "busybox", "--", "sh", "-c",
                                    "for i in $(seq 40); do sleep 1 & done; wait; echo ok")
      assert.are.equal(0, code, v .. ": " .. out)
      assert.matches("ok\n", out, 1, true)
    end
  end)

  it("holds a busy loop near cpu 0.2", function()
    if not need_root() then return end
    -- timeout runs below a shell: as pid 1 the loop would ignore its SIGKILL.
    -- The share is taken over the whole run, because the container's setup
    -- runs in the cgroup too, under the same quota; on a slow (emulated) CPU it
    -- adds a good part of a second.
    local started = now()
    local out, code = nsbuild_run("--cpus", "0.2", "--stats", "busybox", "--", "sh", "-c",
                                  "timeout -s KILL 2 sh -c 'while :; do :; done'; echo end")
    local seconds = now() - started
    assert.are.equal(0, code, out)
    local cpu = tonumber(out:match("cpu ([%d.]+)s"))
    assert.is_not_nil(cpu, out)
    local share = cpu / seconds
    assert.is_true(share > 0.10, string.format("cpu share %.3f over %.2f s: %s", share, seconds, out))
    assert.is_true(share < 0.35, string.format("cpu share %.3f over %.2f s: %s", share, seconds, out))
  end)

  it("shows its own cgroup as root with a cgroup namespace", function()
    if not need_root() then return end
    local container = require "nsbuild.container"
    local policy = require "nsbuild.policy"
    local p = policy.extend(policy.default, { namespaces = { cgroup = true } })
    local store = require("nsbuild.store").open(cache)
    local img = assert(store:image("busybox"))
    local lower = {}
    for i, layer in ipairs(img.layers) do lower[i] = store:layer_path(layer) end
    local work = cli.tmpdir("nsbuild-cgns")
    for _, d in ipairs({ "upper", "work", "merged" }) do assert(core.mkdir(work .. "/" .. d, tonumber("755", 8))) end
    local out = os.tmpname()
    local code = container.run({
      rootfs = { layers = lower, upper = work .. "/upper", work = work .. "/work", target = work .. "/merged" },
      argv = { "sh", "-c", "cat /proc/self/cgroup > /out" },
      env = container.environment((img.config or {}).env, {}, "cgns"),
      policy = p,
    })
    cli.sh("cp " .. work .. "/upper/out " .. out .. "; rm -rf " .. cli.quote(work))
    local text = assert(io.open(out)):read("a")
    os.remove(out)
    assert.are.equal(0, code)
    -- Every hierarchy's root is the cgroup the child was in when it unshared.
    for line in text:gmatch("[^\n]+") do
      assert.are.equal("/", line:match("^%d+:[^:]*:(.*)$"), text)
    end
  end)

  it("leaves no cgroup after nsbuild is killed", function()
    if not need_root() then return end
    local script = table.concat({
      cli.nsbuild .. " run --cache " .. cache .. " busybox -- sleep 30 & nsb=$!",
      "child=",
      "for i in $(seq 200); do child=$(pgrep -P $nsb); [ -n \"$child\" ] && grep -q sleep /proc/$child/cmdline 2>/dev/null && break; sleep 0.05; done",
      "kill -9 $nsb",
      "wait $nsb",
      -- The parent-death signal ends the container; wait for it, bounded.
      "for i in $(seq 100); do [ -d /proc/$child ] || break; sleep 0.05; done",
      "[ -d /proc/$child ] && echo CONTAINER-ALIVE",
      "ls -d /sys/fs/cgroup/*/nsbuild-$nsb-* /sys/fs/cgroup/nsbuild-$nsb-* /sys/fs/cgroup/memory/*/*/nsbuild-$nsb-* 2>/dev/null | head -1",
    }, "\n")
    local out = cli.sh(script)
    assert.is_nil(out:find("CONTAINER-ALIVE", 1, true), out)
    assert.matches("nsbuild%-%d+%-", out, nil, false)
    -- The next run removes the stale cgroup of the killed one.
    local _, code = nsbuild_run("busybox", "--", "true")
    assert.are.equal(0, code)
  end)
end)
