local core = require "nsbuild.core"
local leaks = require "support.leaks"

local function sh(cmd)
  assert(os.execute(cmd), cmd)
end

local function exists(path)
  return os.execute("test -e " .. path .. " -o -L " .. path) == true
end

local function new_root()
  local p = io.popen("mktemp -d /tmp/nsbuild-mount-XXXXXX")
  local dir = p:read("l")
  p:close()
  return dir
end

describe("core.open_in_root", function()
  leaks.guard()
  local root, outside

  before_each(function()
    root = new_root()
    outside = new_root()
    sh("mkdir -p " .. root .. "/etc && echo inside > " .. root .. "/etc/marker")
    sh("echo outside > " .. outside .. "/marker")
    sh("ln -s " .. outside .. " " .. root .. "/escape")
    sh("ln -s ../../../../../.. " .. root .. "/up")
  end)

  after_each(function()
    sh("rm -rf " .. root .. " " .. outside)
  end)

  it("opens a path below the root", function()
    local fd = core.open_in_root(root, "/etc/marker", { "rdonly" })
    assert.are.equal("inside\n", fd:read())
    fd:close()
  end)

  it("keeps an absolute symlink inside the root", function()
    local ok, err, errno = core.open_in_root(root, "escape/marker", { "rdonly" })
    assert.is_nil(ok)
    assert.matches("escape/marker", err, 1, true)
    assert.are.equal(2, errno)
  end)

  it("stops .. at the root", function()
    local fd = core.open_in_root(root, "up/etc/marker", { "rdonly" })
    assert.are.equal("inside\n", fd:read())
    fd:close()
  end)

  it("accepts an fd as the root", function()
    local rootfd = core.open_in_root(root, "/", { "path", "directory" })
    local fd = core.open_in_root(rootfd, "etc/marker", { "rdonly" })
    assert.are.equal("inside\n", fd:read())
    fd:close()
    rootfd:close()
  end)

  it("rejects an unknown flag", function()
    assert.has_error(function() core.open_in_root(root, "etc", { "sideways" }) end)
  end)
end)

describe("core.mkdirs_in_root", function()
  leaks.guard()
  local root, outside

  before_each(function()
    root = new_root()
    outside = new_root()
    sh("ln -s " .. outside .. " " .. root .. "/escape")
  end)

  after_each(function()
    sh("rm -rf " .. root .. " " .. outside)
  end)

  it("creates nested directories", function()
    assert.is_true(core.mkdirs_in_root(root, "/a/b/c", tonumber("700", 8)))
    assert.is_true(exists(root .. "/a/b/c"))
  end)

  it("accepts existing directories", function()
    assert.is_true(core.mkdirs_in_root(root, "a/b"))
    assert.is_true(core.mkdirs_in_root(root, "a/b"))
  end)

  it("never creates through a symlink out of the root", function()
    local ok = core.mkdirs_in_root(root, "escape/x")
    assert.is_false(exists(outside .. "/x"))
    if ok then
      assert.is_true(exists(root .. outside .. "/x"))
    end
  end)

  it("follows a dangling symlink inside the root", function()
    sh("ln -s /inside/target " .. root .. "/dangling")
    assert.is_true(core.mkdirs_in_root(root, "dangling/sub"))
    assert.is_true(exists(root .. "/inside/target/sub"))
    assert.is_false(exists("/inside"))
  end)

  it("stops a symlink loop", function()
    sh("ln -s loop2 " .. root .. "/loop1 && ln -s loop1 " .. root .. "/loop2")
    local ok, _, errno = core.mkdirs_in_root(root, "loop1/x")
    assert.is_nil(ok)
    assert.are.equal(40, errno)
  end)

  it("names the component that is not a directory", function()
    sh("touch " .. root .. "/file")
    local ok, err, errno = core.mkdirs_in_root(root, "file/sub")
    assert.is_nil(ok)
    assert.are.equal("mkdir in root 'file': Not a directory", err)
    assert.are.equal(20, errno)
  end)
end)

describe("core.mount", function()
  leaks.guard()
  local root

  before_each(function()
    root = new_root()
  end)

  after_each(function()
    sh("rm -rf " .. root)
  end)

  it("mounts onto an fd and unmounts", function()
    local fd = core.open_in_root(root, "/", { "path", "directory" })
    assert.is_true(core.mount("tmpfs", fd, "tmpfs", { "nosuid", "nodev" }, "size=1m"))
    fd:close()
    sh("touch " .. root .. "/on-tmpfs")
    assert.is_true(core.umount(root))
    assert.is_false(exists(root .. "/on-tmpfs"))
  end)

  it("names source, target and type on failure", function()
    local ok, err, errno = core.mount("none", root .. "/missing", "tmpfs", {})
    assert.is_nil(ok)
    assert.matches("mount 'none' on '" .. root .. "/missing' type tmpfs", err, 1, true)
    assert.are.equal(2, errno)
  end)

  it("rejects an unknown flag", function()
    assert.has_error(function() core.mount("none", root, "tmpfs", { "readonly" }) end)
  end)

  it("fails to unmount what is not mounted", function()
    local ok, err, errno = core.umount(root)
    assert.is_nil(ok)
    assert.matches(root, err, 1, true)
    assert.are.equal(22, errno)
  end)
end)

describe("core.symlink_in_root", function()
  leaks.guard()

  it("creates the link below the root", function()
    local root = new_root()
    sh("mkdir " .. root .. "/dev")
    assert.is_true(core.symlink_in_root(root, "/proc/self/fd", "/dev/fd"))
    local p = io.popen("readlink " .. root .. "/dev/fd")
    assert.are.equal("/proc/self/fd", p:read("l"))
    p:close()
    sh("rm -rf " .. root)
  end)
end)
