-- core.spawn, core.poll_read and core.pidfd_open: host helper processes
-- started with chosen descriptors, and bounded waits on descriptors.
local core = require "nsbuild.core"
local leaks = require "support.leaks"

local function reap(pid)
  local _, kind, value = core.waitpid(pid)
  return kind, value
end

describe("core.spawn", function()
  leaks.guard()

  it("passes a kept descriptor", function()
    local r, w = core.pipe()
    local pid = assert(core.spawn({ "sh", "-c", "echo kept >&" .. w:fileno() }, nil, { keep_fds = { w } }))
    w:close()
    assert.are.equal("kept\n", r:read_all())
    r:close()
    assert.are.same({ "exited", 0 }, { reap(pid) })
  end)

  it("closes descriptors not kept", function()
    local r, w = core.pipe()
    local other_r, other_w = core.pipe()
    local pid = assert(core.spawn({ "sh", "-c", "test -e /proc/self/fd/" .. other_w:fileno() },
                                  nil, { keep_fds = { w } }))
    assert.are.same({ "exited", 1 }, { reap(pid) })
    for _, fd in ipairs({ r, w, other_r, other_w }) do fd:close() end
  end)

  it("redirects stdout and sets the environment", function()
    local r, w = core.pipe()
    local pid = assert(core.spawn({ "sh", "-c", "echo $GREETING" }, { "GREETING=hi", "PATH=/usr/bin:/bin" },
                                  { stdout = w }))
    w:close()
    assert.are.equal("hi\n", r:read_all())
    r:close()
    reap(pid)
  end)

  it("starts a new session with setsid", function()
    local r, w = core.pipe()
    local pid = assert(core.spawn({ "sh", "-c", "cut -d' ' -f6 /proc/self/stat" }, nil,
                                  { stdout = w, setsid = true, cwd = "/" }))
    w:close()
    local sid = tonumber(r:read_all())
    r:close()
    reap(pid)
    -- The shell's session id is the pid of the spawned process.
    assert.are.equal(pid, sid)
  end)

  it("reports a missing program", function()
    local pid, err, errno = core.spawn({ "nsbuild-no-such-program" })
    assert.is_nil(pid)
    assert.are.equal("exec 'nsbuild-no-such-program': No such file or directory", err)
    assert.are.equal(2, errno)
  end)

  it("rejects unknown options", function()
    assert.has_error(function() core.spawn({ "true" }, nil, { keep = {} }) end)
  end)

  it("rejects keeping a standard stream", function()
    assert.has_error(function() core.spawn({ "true" }, nil, { keep_fds = { 1 } }) end)
  end)

  it("rejects an empty argv", function()
    assert.has_error(function() core.spawn({}) end)
  end)
end)

describe("core.poll_read", function()
  leaks.guard()

  it("times out on an empty pipe", function()
    local r, w = core.pipe()
    assert.is_false(core.poll_read(r, 10))
    r:close()
    w:close()
  end)

  it("sees data and end of file", function()
    local r, w = core.pipe()
    w:write("x")
    assert.is_true(core.poll_read(r, 0))
    r:read(1)
    w:close()
    assert.is_true(core.poll_read(r, 0))
    r:close()
  end)
end)

describe("core.pidfd_open", function()
  leaks.guard()

  it("becomes readable when the process exits", function()
    local r, w = core.pipe()
    local pid = assert(core.spawn({ "sh", "-c", "read line" }, nil, { stdin = r }))
    r:close()
    local pidfd = assert(core.pidfd_open(pid))
    assert.is_false(core.poll_read(pidfd, 10))
    w:close()
    assert.is_true(core.poll_read(pidfd, 5000))
    pidfd:close()
    reap(pid)
  end)

  it("fails for a process that does not exist", function()
    local fd, err = core.pidfd_open(0x3ffffff0)
    assert.is_nil(fd)
    assert.matches("^pidfd_open %d+: No such process", err)
  end)
end)
