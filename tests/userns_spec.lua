-- userns.lua: subordinate ranges, the id maps, and the messages for an
-- environment that forbids user namespaces. Runs as root.
local core = require "nsbuild.core"
local userns = require "nsbuild.userns"
local cli = require "support.cli"
local leaks = require "support.leaks"

local EPERM, EINVAL, ENOSPC = 1, 22, 28

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

describe("userns.ranges", function()
  local dir

  before_each(function()
    dir = cli.tmpdir("nsbuild-userns")
  end)

  after_each(function()
    cli.sh("rm -rf " .. cli.quote(dir))
  end)

  it("finds ranges by name and uid", function()
    write(dir .. "/subuid", "alice:100000:65536\n1001:300000:10\nbob:200000:65536\n")
    assert.are.same({ { 100000, 65536 }, { 300000, 10 } },
                    userns.ranges(dir .. "/subuid", "alice", 1001))
  end)

  it("skips comments and empty ranges", function()
    write(dir .. "/subuid", "# alice:1:2\nalice:5000:0\n\nalice:7000:3\n")
    assert.are.same({ { 7000, 3 } }, userns.ranges(dir .. "/subuid", "alice", 1001))
  end)

  it("grants none without the file", function()
    assert.are.same({}, userns.ranges(dir .. "/missing", "alice", 1001))
  end)
end)

describe("userns.plan as root", function()
  local dir, saved

  before_each(function()
    dir = cli.tmpdir("nsbuild-userns")
    saved = { userns.SUBUID, userns.SUBGID }
    userns.SUBUID, userns.SUBGID = dir .. "/subuid", dir .. "/subgid"
    userns.reset()
  end)

  after_each(function()
    userns.SUBUID, userns.SUBGID = saved[1], saved[2]
    userns.reset()
    cli.sh("rm -rf " .. cli.quote(dir))
  end)

  it("maps root's ranges from 0", function()
    if core.geteuid() ~= 0 then
      pending("needs root")
      return
    end
    write(userns.SUBUID, "root:500000:65536\n")
    write(userns.SUBGID, "root:600000:1000\nroot:700000:10\n")
    local plan = userns.plan()
    assert.are.same({ { 0, 500000, 65536 } }, plan.uid)
    assert.are.same({ { 0, 600000, 1000 }, { 1000, 700000, 10 } }, plan.gid)
    assert.is_false(plan.uid_helper)
    assert.is_false(plan.gid_helper)
  end)

  it("maps root alone without ranges", function()
    if core.geteuid() ~= 0 then
      pending("needs root")
      return
    end
    local plan = userns.plan()
    assert.are.same({ { 0, 0, 1 } }, plan.uid)
    assert.are.same({ { 0, 0, 1 } }, plan.gid)
  end)
end)

describe("userns.map", function()
  leaks.guard()

  it("writes the maps of a waiting child", function()
    if core.geteuid() ~= 0 then
      pending("needs root")
      return
    end
    local r, w = assert(core.pipe())
    local out_r, out_w = assert(core.pipe())
    local pid, errfd = core.clone({ "user" }, function()
      w:close()
      out_r:close()
      r:read(1)
      local f = io.open("/proc/self/uid_map")
      out_w:write(f:read("a"))
      f:close()
      f = io.open("/proc/self/gid_map")
      out_w:write(f:read("a"))
      f:close()
      out_w:close()
      return 0
    end)
    assert.is_not_nil(pid, errfd)
    r:close()
    out_w:close()
    local ok, err = userns.map(pid, { uid = { { 0, 400000, 1000 } }, gid = { { 0, 410000, 10 } },
                                      uid_helper = false, gid_helper = false })
    w:write("1")
    w:close()
    local maps = out_r:read_all()
    out_r:close()
    core.await_exec(errfd)
    errfd:close()
    local _, how, code = core.waitpid(pid)
    assert.is_true(ok, err)
    assert.are.equal("exited", how)
    assert.are.equal(0, code)
    assert.matches("^%s*0%s+400000%s+1000\n", maps)
    assert.matches("\n%s*0%s+410000%s+10\n$", maps)
  end)
end)

describe("userns.clone_error", function()
  local dir, saved

  before_each(function()
    dir = cli.tmpdir("nsbuild-sysctl")
    cli.sh("mkdir -p " .. cli.quote(dir .. "/kernel") .. " " .. cli.quote(dir .. "/user"))
    saved = userns.SYSCTL_DIR
    userns.SYSCTL_DIR = dir
  end)

  after_each(function()
    userns.SYSCTL_DIR = saved
    cli.sh("rm -rf " .. cli.quote(dir))
  end)

  it("names unprivileged_userns_clone", function()
    write(dir .. "/kernel/unprivileged_userns_clone", "0\n")
    local message = userns.clone_error({ "user", "mount" }, "clone: Operation not permitted", EPERM)
    assert.matches("kernel.unprivileged_userns_clone = 0", message, 1, true)
    assert.matches("sysctl -w kernel.unprivileged_userns_clone=1", message, 1, true)
  end)

  it("names max_user_namespaces", function()
    write(dir .. "/user/max_user_namespaces", "0\n")
    local message = userns.clone_error({ "user" }, "clone: No space left on device", ENOSPC)
    assert.matches("user.max_user_namespaces = 0", message, 1, true)
    assert.matches("sysctl -w user.max_user_namespaces=", message, 1, true)
  end)

  it("names the AppArmor restriction", function()
    write(dir .. "/kernel/apparmor_restrict_unprivileged_userns", "1\n")
    local message = userns.clone_error({ "user" }, "clone: Permission denied", 13)
    assert.matches("AppArmor", message, 1, true)
    assert.matches("sysctl -w kernel.apparmor_restrict_unprivileged_userns=0", message, 1, true)
  end)

  it("names the limit when nothing blocks", function()
    write(dir .. "/user/max_user_namespaces", "100\n")
    local message = userns.clone_error({ "user" }, "clone: No space left on device", ENOSPC)
    assert.matches("max_user_namespaces", message, 1, true)
  end)

  it("keeps other failures as they are", function()
    write(dir .. "/kernel/unprivileged_userns_clone", "0\n")
    assert.are.equal("clone: Invalid argument",
                     userns.clone_error({ "user" }, "clone: Invalid argument", EINVAL))
    assert.are.equal("clone: Operation not permitted",
                     userns.clone_error({ "mount" }, "clone: Operation not permitted", EPERM))
  end)
end)

describe("userns.call as root", function()
  it("calls in this process", function()
    if core.geteuid() ~= 0 then
      pending("needs root")
      return
    end
    local a, b, c = userns.call(function(x) return x, core.getpid(), nil end, "value")
    assert.are.equal("value", a)
    assert.are.equal(core.getpid(), b)
    assert.is_nil(c)
  end)
end)

describe("blocked user namespaces", function()
  leaks.guard()

  -- user.max_user_namespaces is a limit of each user namespace: set to 0 in a
  -- namespace of the test's own, it forbids new ones there and nowhere else.
  it("name the sysctl and its fix", function()
    if core.geteuid() ~= 0 then
      pending("needs root")
      return
    end
    local out, code = cli.run({ "--cache", "build/test-cache", "-q", "recipes/busybox.lua" })
    assert(code == 0, "building recipes/busybox.lua failed:\n" .. out)
    local policy = os.tmpname()
    write(policy, "return { namespaces = { user = true } }\n")
    out, code = cli.sh("unshare --user --map-root-user --mount sh -c "
                       .. cli.quote("echo 0 > /proc/sys/user/max_user_namespaces && exec "
                                    .. "./nsbuild run --cache build/test-cache --policy "
                                    .. policy .. " busybox -- true"))
    os.remove(policy)
    assert.are.equal(125, code)
    assert.matches("user.max_user_namespaces = 0", out, 1, true)
    assert.matches("sysctl -w user.max_user_namespaces=", out, 1, true)
  end)
end)
