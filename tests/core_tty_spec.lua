-- core's terminal primitives: a pty from a devpts mounted below a root,
-- descriptor passing, raw mode, window size and the relay.
local core = require "nsbuild.core"
local cli = require "support.cli"
local leaks = require "support.leaks"

local ENOMSG = 42

describe("core tty", function()
  local root, pts

  before_each(function()
    root = cli.tmpdir("nsbuild-tty")
    assert(core.mkdirs(root .. "/dev/pts"))
    pts = root .. "/dev/pts"
    assert(core.mount("devpts", pts, "devpts", { "nosuid", "noexec" }, "newinstance,ptmxmode=0666,mode=0620"))
  end)

  after_each(function()
    assert(core.umount(pts))
    cli.sh("rm -rf " .. cli.quote(root))
  end)

  -- After the hooks above, so that it sees the devpts mount they manage.
  leaks.guard()

  it("opens a pty of the devpts below a root", function()
    local master, slave = assert(core.pty_open(root))
    assert.is_true(core.isatty(master))
    assert.is_true(core.isatty(slave))
    -- The first pty of a new devpts instance is number 0.
    assert.are.same({ "0", "ptmx" }, cli.entries(pts))
    master:close()
    slave:close()
  end)

  it("sets the slave's owner", function()
    local master, slave = assert(core.pty_open(root, 1234, 5678))
    local st = assert(core.stat(pts .. "/0"))
    assert.are.equal(1234, st.uid)
    assert.are.equal(5678, st.gid)
    master:close()
    slave:close()
  end)

  it("sets and reads the window size", function()
    local master, slave = assert(core.pty_open(root))
    assert(core.tty_set_size(master, 33, 101))
    local rows, cols = core.tty_get_size(slave)
    assert.are.equal(33, rows)
    assert.are.equal(101, cols)
    master:close()
    slave:close()
  end)

  it("restores the settings raw mode changed", function()
    local master, slave = assert(core.pty_open(root))
    local before = cli.sh("stty -g < /proc/" .. core.getpid() .. "/fd/" .. slave:fileno())
    local saved = assert(core.tty_raw(slave))
    local raw = cli.sh("stty -g < /proc/" .. core.getpid() .. "/fd/" .. slave:fileno())
    assert(core.tty_restore(slave, saved))
    local after = cli.sh("stty -g < /proc/" .. core.getpid() .. "/fd/" .. slave:fileno())
    assert.are_not.equal(before, raw)
    assert.are.equal(before, after)
    master:close()
    slave:close()
  end)

  it("passes a descriptor over a socket", function()
    local a, b = assert(core.socketpair())
    local r, w = assert(core.pipe())
    assert(core.send_fd(a, w))
    w:close()
    local got = assert(core.recv_fd(b))
    assert(got:write("through"))
    got:close()
    assert.are.equal("through", r:read(100))
    r:close()
    a:close()
    b:close()
  end)

  it("reports a closed peer with ENOMSG", function()
    local a, b = assert(core.socketpair())
    a:close()
    local fd, message, errno = core.recv_fd(b)
    assert.is_nil(fd)
    assert.matches("no descriptor", message)
    assert.are.equal(ENOMSG, errno)
    b:close()
  end)

  it("relays the master until the slave closes", function()
    local master, slave = assert(core.pty_open(root))
    local out_r, out_w = assert(core.pipe())
    assert(slave:write("hello\n"))
    slave:close()
    assert(core.pty_relay(master, { output = out_w }))
    out_w:close()
    -- The line discipline turns "\n" into "\r\n" on output.
    assert.are.equal("hello\r\n", out_r:read(100))
    out_r:close()
    master:close()
  end)
end)

describe("core rlimit", function()
  leaks.guard()

  it("sets a limit in a child", function()
    local r, w = assert(core.pipe())
    local pid, errfd = core.clone({}, function()
      r:close()
      assert(core.setrlimit("nofile", 100, 200))
      local soft, hard = core.getrlimit("nofile")
      w:write(soft .. " " .. hard)
      return 0
    end)
    w:close()
    errfd:close()
    local text = r:read(100)
    r:close()
    core.waitpid(pid)
    assert.are.equal("100 200", text)
  end)

  it("rejects an unknown resource", function()
    assert.has_error(function() core.setrlimit("files", 1, 1) end)
  end)

  it("reads unlimited as maxinteger", function()
    local r, w = assert(core.pipe())
    local pid, errfd = core.clone({}, function()
      assert(core.setrlimit("core", 0, "unlimited"))
      local _, hard = core.getrlimit("core")
      w:write(tostring(hard == math.maxinteger))
      return 0
    end)
    w:close()
    errfd:close()
    local text = r:read(100)
    r:close()
    core.waitpid(pid)
    assert.are.equal("true", text)
  end)
end)
