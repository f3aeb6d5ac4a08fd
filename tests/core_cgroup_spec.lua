-- The cgroupfs primitives of nsbuild.core, against the host's real cgroups.
-- Every cgroup made here is below this process's own cgroup and removed again.
local core = require "nsbuild.core"
local cgroup = require "nsbuild.cgroup"
local leaks = require "support.leaks"

local layout = cgroup.detect()
local is_root = core.geteuid() == 0

-- A hierarchy this process may create cgroups in, with a control file that
-- rejects a bad value: the memory controller where there is one.
local function test_parent()
  if layout.kind == "v2" then
    return layout.unified.dir, "cgroup.max.descendants"
  end
  local h = layout.v1.memory or layout.v1.pids
  if not h then
    return nil
  end
  return h.dir, layout.v1.memory and "memory.limit_in_bytes" or "pids.max"
end

local function new_name()
  return string.format("nsbuild-%d-coretest%d", core.getpid(), math.random(1, 1e9))
end

local function is_dir(path)
  local st = core.lstat(path)
  return st ~= nil and st.type == "dir"
end

describe("core cgroup", function()
  leaks.guard()
  local parent, limit_file = test_parent()
  local dir

  before_each(function()
    if not is_root or not parent then
      return
    end
    dir = parent .. "/" .. new_name()
    assert(core.cgroup_mkdir(dir))
  end)

  after_each(function()
    if dir and is_dir(dir) then
      assert(core.cgroup_rmdir(dir, 5))
    end
    dir = nil
  end)

  local function need_root()
    if not is_root then
      pending("needs root to create cgroups")
      return false
    end
    if not parent then
      pending("no cgroup hierarchy with memory or pids controller is mounted")
      return false
    end
    return true
  end

  it("mkdir creates a cgroup with control files", function()
    if not need_root() then return end
    assert.is_true(is_dir(dir))
    assert.is_not_nil(core.lstat(dir .. "/cgroup.procs"))
  end)

  it("mkdir of an existing cgroup fails with EEXIST", function()
    if not need_root() then return end
    local ok, message, errno = core.cgroup_mkdir(dir)
    assert.is_nil(ok)
    assert.are.equal(17, errno)
    assert.matches("mkdir '" .. dir .. "'", message, 1, true)
  end)

  it("write error names the file and the value", function()
    if not need_root() then return end
    local path = dir .. "/" .. limit_file
    local ok, message, errno = core.cgroup_write(path, "64Q")
    assert.is_nil(ok)
    assert.are.equal(22, errno)
    assert.are.equal("write '" .. path .. "' = '64Q': Invalid argument", message)
  end)

  it("write then read returns the value", function()
    if not need_root() then return end
    local file = layout.kind == "v2" and "cgroup.max.descendants" or "notify_on_release"
    assert.is_true(core.cgroup_write(dir .. "/" .. file, "1"))
    assert.are.equal("1\n", core.cgroup_read(dir .. "/" .. file))
  end)

  it("read of a missing file names it", function()
    local ok, message, errno = core.cgroup_read("/sys/fs/cgroup/nsbuild-no-such-cgroup/cgroup.procs")
    assert.is_nil(ok)
    assert.are.equal(2, errno)
    assert.matches("read '/sys/fs/cgroup/nsbuild-no-such-cgroup/cgroup.procs'", message, 1, true)
  end)

  it("wait returns once a line matches", function()
    if not need_root() then return end
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("populated 1\nfrozen 0\n")
    f:close()
    assert.is_true(core.cgroup_wait(path, "frozen 0", 1))
    os.remove(path)
  end)

  it("wait times out naming what it read", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("THAWED\n")
    f:close()
    local ok, message, errno = core.cgroup_wait(path, "FROZEN", 0.05)
    os.remove(path)
    assert.is_nil(ok)
    assert.are.equal(110, errno)
    assert.matches("to read 'FROZEN' (it reads 'THAWED", message, 1, true)
  end)

  it("rmdir waits for a killed task to leave", function()
    if not need_root() then return end
    local pid, errfd = assert(core.clone({}, function()
      core.execve("/bin/sleep", { "sleep", "30" }, {})
      core._exit(99)
    end))
    errfd:close()
    assert.is_true(core.cgroup_write(dir .. "/cgroup.procs", tostring(pid)))
    local busy, _, errno = core.cgroup_rmdir(dir)
    assert.is_nil(busy)
    assert.are.equal(16, errno)
    assert.is_true(core.kill(pid, "KILL"))
    core.waitpid(pid)
    assert.is_true(core.cgroup_rmdir(dir, 5))
    assert.is_false(is_dir(dir))
  end)

  it("open returns a directory handle", function()
    if not need_root() then return end
    local fd = assert(core.cgroup_open(dir))
    assert.matches("^fd %d+$", tostring(fd))
    fd:close()
  end)

  it("clone rejects unknown options", function()
    assert.has_error(function() core.clone({}, function() end, { cgroupp = 3 }) end)
  end)
end)

describe("core clone into a cgroup", function()
  leaks.guard()

  -- CLONE_INTO_CGROUP takes any cgroup v2 directory: on a hybrid host the
  -- near-empty unified tree is one.
  it("starts the child in the cgroup", function()
    if not is_root then
      pending("needs root to create cgroups")
      return
    end
    if not layout.unified then
      pending("no cgroup v2 hierarchy is mounted")
      return
    end
    local dir = layout.unified.dir .. "/" .. new_name()
    assert(core.cgroup_mkdir(dir))
    local fd = assert(core.cgroup_open(dir))
    local name = dir:match("[^/]+$")
    local pid, errfd = core.clone({}, function()
      local text = assert(io.open("/proc/self/cgroup")):read("a")
      return text:find("0::[^\n]*/" .. name:gsub("%p", "%%%0") .. "\n") and 0 or 1
    end, { cgroup = fd })
    fd:close()
    assert.is_not_nil(pid, errfd)
    errfd:close()
    local _, how, code = core.waitpid(pid)
    assert.is_true(core.cgroup_rmdir(dir, 5))
    assert.are.equal("exited", how)
    assert.are.equal(0, code)
  end)
end)
