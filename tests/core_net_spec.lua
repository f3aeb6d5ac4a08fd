-- core.unix_connect and core.bind_port, against sockets on this host only:
-- a unix socket served by a child process and ports on 127.0.0.1.
local core = require "nsbuild.core"
local cli = require "support.cli"
local leaks = require "support.leaks"

local EADDRINUSE = 98

-- A port on 127.0.0.1 that is free now, from a range tests do not otherwise use.
local function free_port()
  for port = 18200, 18299 do
    local s = core.bind_port("tcp", "127.0.0.1", port)
    if s then
      s:close()
      return port
    end
  end
  error("no free port in 127.0.0.1:18200-18299")
end

describe("core.bind_port", function()
  leaks.guard()

  it("listens on a free port", function()
    local port = free_port()
    local s, err = core.bind_port("tcp", "127.0.0.1", port)
    assert.is_not_nil(s, err)
    s:close()
  end)

  it("fails while another socket listens", function()
    local port = free_port()
    local holder = assert(core.bind_port("tcp", "127.0.0.1", port))
    local s, err, errno = core.bind_port("tcp", "127.0.0.1", port)
    holder:close()
    assert.is_nil(s)
    assert.are.equal(EADDRINUSE, errno)
    assert.are.equal("bind tcp 127.0.0.1:" .. port .. ": Address already in use", err)
  end)

  it("fails for a udp port in use", function()
    local port = free_port()
    local holder = assert(core.bind_port("udp", "127.0.0.1", port))
    local s, _, errno = core.bind_port("udp", "127.0.0.1", port)
    holder:close()
    assert.is_nil(s)
    assert.are.equal(EADDRINUSE, errno)
  end)

  it("rejects bad arguments", function()
    assert.has_error(function() core.bind_port("sctp", "127.0.0.1", 1) end)
    assert.has_error(function() core.bind_port("tcp", "localhost", 1) end)
    assert.has_error(function() core.bind_port("tcp", "127.0.0.1", 70000) end)
  end)
end)

describe("core.unix_connect", function()
  leaks.guard()
  local dir

  before_each(function()
    dir = cli.tmpdir("nsbuild-unix")
  end)

  after_each(function()
    cli.sh("rm -rf " .. cli.quote(dir))
  end)

  local has_python = select(2, cli.sh("command -v python3")) == 0

  -- Serve one connection on path with a reply, from a child python3 process.
  local function serve_once(path, reply)
    if not has_python then
      pending("python3 serves the test socket, and it is not installed")
      return nil
    end
    local r, w = core.pipe()
    local pid = assert(core.spawn({ "python3", "-c", [[
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
os.chdir(os.path.dirname(sys.argv[1]))
s.bind(os.path.basename(sys.argv[1]))
s.listen(1)
os.write(int(sys.argv[3]), b"1")
c, _ = s.accept()
c.recv(4096)
c.sendall(sys.argv[2].encode())
c.close()
]], path, reply, tostring(w:fileno()) }, nil, { keep_fds = { w } }))
    w:close()
    assert.is_true(core.poll_read(r, 5000))
    assert.are.equal("1", r:read(1))
    r:close()
    return pid
  end

  it("exchanges a request and a reply", function()
    local pid = serve_once(dir .. "/s.sock", "pong")
    if not pid then return end
    local sock = assert(core.unix_connect(dir .. "/s.sock", 5000))
    assert.is_true(sock:write("ping"))
    assert.are.equal("pong", sock:read_all())
    sock:close()
    core.waitpid(pid)
  end)

  it("reaches a path longer than sun_path", function()
    local deep = dir .. "/" .. string.rep("d", 100)
    assert(core.mkdir(deep, 0755))
    local pid = serve_once(deep .. "/s.sock", "deep")
    if not pid then return end
    local sock = assert(core.unix_connect(deep .. "/s.sock", 5000))
    sock:write("x")
    assert.are.equal("deep", sock:read_all())
    sock:close()
    core.waitpid(pid)
  end)

  it("fails for a missing socket", function()
    local sock, err, errno = core.unix_connect(dir .. "/none.sock")
    assert.is_nil(sock)
    assert.are.equal(2, errno)
    assert.matches("^connect '.*none.sock': No such file or directory$", err)
  end)
end)
