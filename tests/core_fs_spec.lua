-- Specs of the file system functions of nsbuild.core (core/fs.c), run against the real
-- kernel in temporary directories under /tmp.  Mounts need root and the private mount
-- namespace that `make test` provides.
local core = require "nsbuild.core"

-- errno values on Linux (asm-generic/errno-base.h and errno.h)
local ENOENT, EBADF, EAGAIN, EEXIST = 2, 9, 11, 17
local ENOTDIR, EISDIR, EINVAL, ENOSPC, ENOTEMPTY = 20, 21, 22, 28, 39
local ELOOP, ENODATA, EBUSY = 40, 61, 16

local is_root = io.popen("id -u"):read("l") == "0"
local module_path = io.popen("pwd"):read("l") .. "/lua/?.so"

-- Lua has no octal literals.
local function octal(digits)
  return tonumber(digits, 8)
end

local function sh(command)
  assert(os.execute(command), "command failed: " .. command)
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("a")
  f:close()
  return data
end

local function exists(path)
  return core.lstat(path) ~= nil
end

local function require_root(what)
  if not is_root then
    pending("needs root to " .. what)
  end
end

-- Check a failure triple: nil, a message that names path, and the errno.
local function assert_failure(errno, path, ok, message, code)
  assert.is_nil(ok)
  assert.is_string(message)
  assert.is_truthy(message:find(path, 1, true), message)
  assert.are.equal(errno, code, message)
end

local function mounts_below(dir)
  local found = {}
  for line in io.lines("/proc/self/mountinfo") do
    local point = line:match("^%S+ %S+ %S+ %S+ (%S+)")
    if point == dir or point:sub(1, #dir + 1) == dir .. "/" then
      found[#found + 1] = point
    end
  end
  return found
end

local function is_mount_point(path)
  return mounts_below(path)[1] == path
end

local function open_fds()
  return #core.listdir("/proc/self/fd")
end

-- Run chunk in a new lua5.4 process with arguments args, after the shell prefix (ulimit,
-- setpriv); returns what the process printed.
local function run_lua(dir, prefix, chunk, args)
  local script = dir .. "/script.lua"
  local header = ("package.cpath = %q\nlocal core = require 'nsbuild.core'\n"):format(module_path)
  write(script, header .. chunk)
  local p = io.popen(("%s lua5.4 %s %s 2>&1"):format(prefix, script, table.concat(args, " ")))
  local output = p:read("a")
  p:close()
  return output
end

describe("nsbuild.core fs", function()
  local tmp

  before_each(function()
    tmp = assert(core.mkdtemp("/tmp/nsbuild-fs."))
  end)

  after_each(function()
    local left = mounts_below(tmp)
    for i = #left, 1, -1 do
      os.execute("umount -l " .. left[i])
    end
    os.execute("chmod -R u+rwx " .. tmp .. " 2>/dev/null; rm -rf " .. tmp)
    assert.are.same({}, left)
  end)

  describe("mkdir", function()
    it("creates a directory with a mode", function()
      assert.is_true(core.mkdir(tmp .. "/d", octal("700")))
      assert.are.equal("dir", core.stat(tmp .. "/d").type)
      assert.are.equal(octal("700"), core.stat(tmp .. "/d").mode)
    end)

    it("fails on an existing path", function()
      sh("mkdir " .. tmp .. "/d")
      assert_failure(EEXIST, tmp .. "/d", core.mkdir(tmp .. "/d"))
    end)

    it("raises on a mode above 07777", function()
      assert.has_error(function() core.mkdir(tmp .. "/d", octal("10000")) end)
    end)
  end)

  describe("mkdirs", function()
    it("creates missing parents", function()
      assert.is_true(core.mkdirs(tmp .. "/a/b/c"))
      assert.are.equal("dir", core.stat(tmp .. "/a/b/c").type)
    end)

    it("accepts existing directories", function()
      sh("mkdir -p " .. tmp .. "/a/b")
      assert.is_true(core.mkdirs(tmp .. "/a/b"))
      assert.is_true(core.mkdirs(tmp .. "/a/b/c/"))
    end)

    it("names a file in the way", function()
      write(tmp .. "/f", "")
      local ok, message, code = core.mkdirs(tmp .. "/f/a/b")
      assert_failure(ENOTDIR, tmp .. "/f'", ok, message, code)
      assert.is_nil(message:find("/f/a", 1, true))
    end)
  end)

  describe("rmtree", function()
    it("removes a nested tree", function()
      sh("mkdir -p " .. tmp .. "/t/a/b/c " .. tmp .. "/t/d")
      write(tmp .. "/t/a/b/c/f", "x")
      write(tmp .. "/t/d/g", "y")
      sh("ln -s missing " .. tmp .. "/t/a/dangling")
      sh("mkfifo " .. tmp .. "/t/a/fifo")
      assert.is_true(core.rmtree(tmp .. "/t"))
      assert.is_false(exists(tmp .. "/t"))
    end)

    it("removes a plain file", function()
      write(tmp .. "/f", "x")
      assert.is_true(core.rmtree(tmp .. "/f"))
      assert.is_false(exists(tmp .. "/f"))
    end)

    it("accepts an absent path", function()
      assert.is_true(core.rmtree(tmp .. "/missing"))
      assert.is_true(core.rmtree(tmp .. "/missing/below"))
    end)

    it("keeps the target of a symlink", function()
      sh("mkdir " .. tmp .. "/outside " .. tmp .. "/t")
      write(tmp .. "/outside/keep", "k")
      sh("ln -s " .. tmp .. "/outside " .. tmp .. "/t/link")
      assert.is_true(core.rmtree(tmp .. "/t"))
      assert.is_false(exists(tmp .. "/t"))
      assert.are.equal("k", read(tmp .. "/outside/keep"))
    end)

    it("unlinks a symlink given as path", function()
      sh("mkdir " .. tmp .. "/outside")
      write(tmp .. "/outside/keep", "k")
      sh("ln -s outside " .. tmp .. "/link")
      assert.is_true(core.rmtree(tmp .. "/link"))
      assert.is_false(exists(tmp .. "/link"))
      assert.are.equal("k", read(tmp .. "/outside/keep"))
      assert.is_true(core.rmtree(tmp .. "/outside/"))
    end)

    it("stops at a tmpfs mount", function()
      require_root("mount tmpfs")
      sh("mkdir -p " .. tmp .. "/t/mnt")
      sh("mount -t tmpfs none " .. tmp .. "/t/mnt")
      write(tmp .. "/t/mnt/f", "inside")
      assert_failure(EBUSY, tmp .. "/t/mnt'", core.rmtree(tmp .. "/t"))
      assert.is_true(is_mount_point(tmp .. "/t/mnt"))
      assert.are.equal("inside", read(tmp .. "/t/mnt/f"))
      sh("umount " .. tmp .. "/t/mnt")
      assert.is_true(core.rmtree(tmp .. "/t"))
    end)

    it("stops at a bind mount", function()
      require_root("bind mount")
      sh("mkdir -p " .. tmp .. "/outside " .. tmp .. "/t/mnt")
      write(tmp .. "/outside/f", "inside")
      sh("mount --bind " .. tmp .. "/outside " .. tmp .. "/t/mnt")
      assert.are.equal(core.stat(tmp .. "/t").dev, core.stat(tmp .. "/t/mnt").dev)
      assert_failure(EBUSY, tmp .. "/t/mnt'", core.rmtree(tmp .. "/t"))
      assert.is_true(is_mount_point(tmp .. "/t/mnt"))
      assert.are.equal("inside", read(tmp .. "/t/mnt/f"))
      sh("umount " .. tmp .. "/t/mnt")
      assert.are.equal("inside", read(tmp .. "/outside/f"))
    end)

    it("stops at a mount given as path", function()
      require_root("mount tmpfs")
      sh("mkdir " .. tmp .. "/mnt")
      sh("mount -t tmpfs none " .. tmp .. "/mnt")
      write(tmp .. "/mnt/f", "inside")
      assert_failure(EBUSY, tmp .. "/mnt", core.rmtree(tmp .. "/mnt"))
      assert.are.equal("inside", read(tmp .. "/mnt/f"))
      sh("umount " .. tmp .. "/mnt")
    end)

    it("removes a mode 0000 directory", function()
      sh("mkdir -p " .. tmp .. "/t/work/work")
      write(tmp .. "/t/work/work/f", "x")
      sh("chmod 0000 " .. tmp .. "/t/work/work " .. tmp .. "/t/work")
      assert.is_true(core.rmtree(tmp .. "/t"))
      assert.is_false(exists(tmp .. "/t"))
    end)

    it("removes closed directories as their owner", function()
      require_root("switch to the user nobody")
      local tree = tmp .. "/owned/t"
      sh("mkdir -p " .. tree .. "/none/sub " .. tree .. "/readonly " .. tree .. "/writeonly")
      sh("mkdir " .. tree .. "/nosearch")
      write(tree .. "/none/sub/f", "x")
      write(tree .. "/readonly/f", "x")
      write(tree .. "/writeonly/f", "x")
      write(tree .. "/nosearch/f", "x")
      sh("chown -R 65534:65534 " .. tmp .. "/owned && chmod 0755 " .. tmp)
      sh("chmod 0000 " .. tree .. "/none/sub " .. tree .. "/none")
      sh("chmod 0500 " .. tree .. "/readonly && chmod 0300 " .. tree .. "/writeonly")
      sh("chmod 0600 " .. tree .. "/nosearch")
      local output = run_lua(tmp, "setpriv --reuid=65534 --regid=65534 --clear-groups",
                             "print(core.rmtree(arg[1]))", { tree })
      assert.are.equal("true\n", output)
      assert.is_false(exists(tree))
    end)

    it("removes whiteouts", function()
      require_root("create device nodes")
      sh("mkdir " .. tmp .. "/t && mknod " .. tmp .. "/t/wh c 0 0")
      assert.is_true(core.rmtree(tmp .. "/t"))
      assert.is_false(exists(tmp .. "/t"))
    end)

    it("removes a tree 2000 levels deep", function()
      local deep = tmp .. "/t" .. ("/d"):rep(1999)
      assert.is_true(core.mkdirs(deep))
      write(deep .. "/f", "bottom")
      -- 16 descriptors: one per level would run out long before the bottom.
      local output = run_lua(tmp, "ulimit -n 16;", "print(core.rmtree(arg[1]))", { tmp .. "/t" })
      assert.are.equal("true\n", output)
      assert.is_false(exists(tmp .. "/t"))
    end)

    it("rejects dot and dot-dot", function()
      sh("mkdir " .. tmp .. "/t")
      assert_failure(EINVAL, tmp .. "/t/.", core.rmtree(tmp .. "/t/."))
      assert_failure(EINVAL, tmp .. "/t/..", core.rmtree(tmp .. "/t/.."))
      assert.is_true(exists(tmp .. "/t"))
    end)

    it("fails below a file", function()
      write(tmp .. "/f", "x")
      assert_failure(ENOTDIR, tmp .. "/f", core.rmtree(tmp .. "/f/x"))
    end)

    it("closes its descriptors", function()
      require_root("mount tmpfs")
      sh("mkdir -p " .. tmp .. "/t/a/b " .. tmp .. "/u/mnt")
      sh("mount -t tmpfs none " .. tmp .. "/u/mnt")
      local before = open_fds()
      assert.is_true(core.rmtree(tmp .. "/t"))
      assert.is_nil(core.rmtree(tmp .. "/u"))
      assert.are.equal(before, open_fds())
      sh("umount " .. tmp .. "/u/mnt")
    end)
  end)

  describe("stat", function()
    it("describes a file", function()
      local path = tmp .. "/f"
      write(path, "hello")
      sh("chmod 4751 " .. path)
      assert.is_true(core.utimes(path, 1000, 1, 1234567890, 123456789))
      local st = core.stat(path)
      assert.are.equal("file", st.type)
      assert.are.equal(octal("4751"), st.mode)
      assert.are.equal(5, st.size)
      assert.are.equal(1, st.nlink)
      assert.are.equal(1234567890, st.mtime_sec)
      assert.are.equal(123456789, st.mtime_nsec)
      assert.are.equal(1000, st.atime_sec)
      assert.is_number(st.ctime_sec)
      assert.is_number(st.ctime_nsec)
      assert.is_number(st.blocks)
      assert.is_number(st.uid)
      assert.is_number(st.gid)
    end)

    it("names each file type", function()
      sh("mkdir " .. tmp .. "/d && mkfifo " .. tmp .. "/p && ln -s d " .. tmp .. "/l")
      assert.are.equal("dir", core.stat(tmp .. "/d").type)
      assert.are.equal("fifo", core.stat(tmp .. "/p").type)
      assert.are.equal("link", core.lstat(tmp .. "/l").type)
      assert.are.equal("dir", core.stat(tmp .. "/l").type)
      assert.are.equal("char", core.stat("/dev/null").type)
    end)

    it("reports device numbers", function()
      assert.are.equal(1, core.stat("/dev/null").rdev_major)
      assert.are.equal(3, core.stat("/dev/null").rdev_minor)
    end)

    it("names a block device", function()
      require_root("create device nodes")
      sh("mknod " .. tmp .. "/b b 7 200")
      assert.are.equal("block", core.stat(tmp .. "/b").type)
      assert.are.equal(200, core.stat(tmp .. "/b").rdev_minor)
    end)

    it("fails on a missing path", function()
      assert_failure(ENOENT, tmp .. "/missing", core.stat(tmp .. "/missing"))
      assert_failure(ENOENT, tmp .. "/missing", core.lstat(tmp .. "/missing"))
    end)

    it("fstat reads an fd handle", function()
      write(tmp .. "/f", "hello")
      local fd = assert(core.open(tmp .. "/f", { "rdonly" }))
      assert.are.equal(core.stat(tmp .. "/f").ino, core.fstat(fd).ino)
      assert.are.equal(5, core.fstat(fd:fileno()).size)
      fd:close()
      assert.has_error(function() core.fstat(fd) end)
    end)

    it("fstat fails on a bad descriptor", function()
      assert_failure(EBADF, "fd 999999", core.fstat(999999))
    end)
  end)

  describe("listdir", function()
    it("sorts names bytewise", function()
      for _, name in ipairs { "b", "a", "B", "_", "\xc3\xa9" } do
        write(tmp .. "/" .. name, "")
      end
      assert.are.same({ "B", "_", "a", "b", "\xc3\xa9" }, core.listdir(tmp))
    end)

    it("lists an empty directory", function()
      assert.are.same({}, core.listdir(tmp))
    end)

    it("fails on a missing directory", function()
      assert_failure(ENOENT, tmp .. "/missing", core.listdir(tmp .. "/missing"))
    end)

    it("fails on a file", function()
      write(tmp .. "/f", "")
      assert_failure(ENOTDIR, tmp .. "/f", core.listdir(tmp .. "/f"))
    end)
  end)

  describe("rename", function()
    it("moves a file", function()
      write(tmp .. "/a", "A")
      assert.is_true(core.rename(tmp .. "/a", tmp .. "/b"))
      assert.are.equal("A", read(tmp .. "/b"))
      assert.is_false(exists(tmp .. "/a"))
    end)

    it("noreplace keeps an existing target", function()
      write(tmp .. "/a", "A")
      write(tmp .. "/b", "B")
      local ok, message, code = core.rename(tmp .. "/a", tmp .. "/b", { "noreplace" })
      assert_failure(EEXIST, tmp .. "/b", ok, message, code)
      assert.are.equal("A", read(tmp .. "/a"))
      assert.are.equal("B", read(tmp .. "/b"))
    end)

    it("exchange swaps two files", function()
      write(tmp .. "/a", "A")
      write(tmp .. "/b", "B")
      assert.is_true(core.rename(tmp .. "/a", tmp .. "/b", { "exchange" }))
      assert.are.equal("B", read(tmp .. "/a"))
      assert.are.equal("A", read(tmp .. "/b"))
    end)

    it("fails on a missing source", function()
      assert_failure(ENOENT, tmp .. "/missing", core.rename(tmp .. "/missing", tmp .. "/b"))
    end)

    it("raises on an unknown flag", function()
      assert.has_error(function() core.rename(tmp .. "/a", tmp .. "/b", { "whiteout" }) end)
    end)
  end)

  describe("links", function()
    it("symlink and readlink round-trip", function()
      assert.is_true(core.symlink("some/target", tmp .. "/l"))
      assert.are.equal("some/target", core.readlink(tmp .. "/l"))
    end)

    it("symlink fails on an existing path", function()
      write(tmp .. "/f", "")
      assert_failure(EEXIST, tmp .. "/f", core.symlink("x", tmp .. "/f"))
    end)

    it("readlink fails on a file", function()
      write(tmp .. "/f", "")
      assert_failure(EINVAL, tmp .. "/f", core.readlink(tmp .. "/f"))
    end)

    it("link shares the inode", function()
      write(tmp .. "/f", "x")
      assert.is_true(core.link(tmp .. "/f", tmp .. "/g"))
      assert.are.equal(core.stat(tmp .. "/f").ino, core.stat(tmp .. "/g").ino)
      assert.are.equal(2, core.stat(tmp .. "/f").nlink)
    end)

    it("link fails on an existing name", function()
      write(tmp .. "/f", "x")
      write(tmp .. "/g", "y")
      assert_failure(EEXIST, tmp .. "/g", core.link(tmp .. "/f", tmp .. "/g"))
    end)
  end)

  describe("unlink and rmdir", function()
    it("unlink removes a file", function()
      write(tmp .. "/f", "")
      assert.is_true(core.unlink(tmp .. "/f"))
      assert.is_false(exists(tmp .. "/f"))
    end)

    it("unlink fails on a missing file", function()
      assert_failure(ENOENT, tmp .. "/f", core.unlink(tmp .. "/f"))
    end)

    it("unlink fails on a directory", function()
      sh("mkdir " .. tmp .. "/d")
      assert_failure(EISDIR, tmp .. "/d", core.unlink(tmp .. "/d"))
    end)

    it("rmdir removes an empty directory", function()
      sh("mkdir " .. tmp .. "/d")
      assert.is_true(core.rmdir(tmp .. "/d"))
      assert.is_false(exists(tmp .. "/d"))
    end)

    it("rmdir fails on a full directory", function()
      sh("mkdir " .. tmp .. "/d")
      write(tmp .. "/d/f", "")
      assert_failure(ENOTEMPTY, tmp .. "/d", core.rmdir(tmp .. "/d"))
    end)
  end)

  describe("chmod and chown", function()
    it("chmod sets special bits", function()
      write(tmp .. "/f", "")
      assert.is_true(core.chmod(tmp .. "/f", octal("6750")))
      assert.are.equal(octal("6750"), core.stat(tmp .. "/f").mode)
    end)

    it("chmod fails on a missing path", function()
      assert_failure(ENOENT, tmp .. "/f", core.chmod(tmp .. "/f", octal("644")))
    end)

    it("chown sets owner and group", function()
      require_root("give files away")
      write(tmp .. "/f", "")
      assert.is_true(core.chown(tmp .. "/f", 1234, 5678))
      assert.are.equal(1234, core.stat(tmp .. "/f").uid)
      assert.are.equal(5678, core.stat(tmp .. "/f").gid)
    end)

    it("chown -1 keeps the group", function()
      require_root("give files away")
      write(tmp .. "/f", "")
      assert.is_true(core.chown(tmp .. "/f", 1234, 5678))
      assert.is_true(core.chown(tmp .. "/f", 42, -1))
      assert.are.equal(42, core.stat(tmp .. "/f").uid)
      assert.are.equal(5678, core.stat(tmp .. "/f").gid)
    end)

    it("chown nofollow changes the link", function()
      require_root("give files away")
      write(tmp .. "/f", "")
      sh("ln -s f " .. tmp .. "/l")
      assert.is_true(core.chown(tmp .. "/l", 1234, 5678, true))
      assert.are.equal(1234, core.lstat(tmp .. "/l").uid)
      assert.are.equal(0, core.stat(tmp .. "/f").uid)
    end)

    it("chown fails on a missing path", function()
      assert_failure(ENOENT, tmp .. "/f", core.chown(tmp .. "/f", 0, 0))
    end)

    it("chown raises on an invalid id", function()
      assert.has_error(function() core.chown(tmp .. "/f", -2, 0) end)
    end)
  end)

  describe("utimes", function()
    it("nofollow sets the link's times", function()
      write(tmp .. "/f", "")
      sh("ln -s f " .. tmp .. "/l")
      assert.is_true(core.utimes(tmp .. "/l", 5, 6, 7, 8, true))
      assert.are.equal(7, core.lstat(tmp .. "/l").mtime_sec)
      assert.are.equal(8, core.lstat(tmp .. "/l").mtime_nsec)
      assert.are_not.equal(7, core.stat(tmp .. "/f").mtime_sec)
    end)

    it("fails on a missing path", function()
      assert_failure(ENOENT, tmp .. "/f", core.utimes(tmp .. "/f", 0, 0, 0, 0))
    end)

    it("raises on invalid nanoseconds", function()
      assert.has_error(function() core.utimes(tmp, 0, 1000000000, 0, 0) end)
    end)
  end)

  describe("realpath", function()
    it("resolves symlinks and dot-dot", function()
      sh("mkdir " .. tmp .. "/d && ln -s d " .. tmp .. "/l")
      assert.are.equal(tmp .. "/d", core.realpath(tmp .. "/l/../l/."))
    end)

    it("fails on a missing path", function()
      assert_failure(ENOENT, tmp .. "/missing", core.realpath(tmp .. "/missing"))
    end)
  end)

  describe("mkdtemp", function()
    it("creates a private directory", function()
      local path = core.mkdtemp(tmp .. "/x.")
      assert.are.equal(tmp .. "/x.", path:sub(1, #tmp + 3))
      assert.are.equal(#tmp + 9, #path)
      assert.are.equal("dir", core.stat(path).type)
      assert.are.equal(octal("700"), core.stat(path).mode)
    end)

    it("fails in a missing directory", function()
      assert_failure(ENOENT, tmp .. "/missing/x.", core.mkdtemp(tmp .. "/missing/x."))
    end)
  end)

  describe("read_file", function()
    it("reads binary data", function()
      local data = ("a\0b\255"):rep(100000)
      write(tmp .. "/f", data)
      assert.are.equal(data, core.read_file(tmp .. "/f"))
    end)

    it("reads an empty file", function()
      write(tmp .. "/f", "")
      assert.are.equal("", core.read_file(tmp .. "/f"))
    end)

    it("fails on a missing file", function()
      assert_failure(ENOENT, tmp .. "/f", core.read_file(tmp .. "/f"))
    end)

    it("fails on a directory", function()
      local before = open_fds()
      assert_failure(EISDIR, tmp, core.read_file(tmp))
      assert.are.equal(before, open_fds())
    end)
  end)

  describe("write_file", function()
    it("creates a file with a mode", function()
      assert.is_true(core.write_file(tmp .. "/f", "a\0b", octal("600")))
      assert.are.equal("a\0b", read(tmp .. "/f"))
      assert.are.equal(octal("600"), core.stat(tmp .. "/f").mode)
    end)

    it("replaces by renaming", function()
      write(tmp .. "/f", "old")
      local ino = core.stat(tmp .. "/f").ino
      assert.is_true(core.write_file(tmp .. "/f", "new"))
      assert.are.equal("new", read(tmp .. "/f"))
      assert.are_not.equal(ino, core.stat(tmp .. "/f").ino)
      assert.are.same({ "f" }, core.listdir(tmp))
    end)

    it("fails in a missing directory", function()
      assert_failure(ENOENT, tmp .. "/missing/f", core.write_file(tmp .. "/missing/f", "x"))
      assert.are.same({}, core.listdir(tmp))
    end)

    it("removes its temporary file", function()
      sh("mkdir " .. tmp .. "/d")
      write(tmp .. "/d/keep", "k")
      assert_failure(EISDIR, tmp .. "/d", core.write_file(tmp .. "/d", "x"))
      assert.are.same({ "d" }, core.listdir(tmp))
      assert.are.same({ "keep" }, core.listdir(tmp .. "/d"))
    end)

    it("keeps old contents when the disk is full", function()
      require_root("mount tmpfs")
      sh("mkdir " .. tmp .. "/small && mount -t tmpfs -o size=64k none " .. tmp .. "/small")
      write(tmp .. "/small/f", "old")
      local data = ("x"):rep(1 << 20)
      assert_failure(ENOSPC, tmp .. "/small/f", core.write_file(tmp .. "/small/f", data))
      assert.are.equal("old", read(tmp .. "/small/f"))
      assert.are.same({ "f" }, core.listdir(tmp .. "/small"))
      sh("umount " .. tmp .. "/small")
    end)
  end)

  describe("open", function()
    it("creates and writes a file", function()
      local fd = assert(core.open(tmp .. "/f", { "wronly", "creat", "excl" }, octal("640")))
      assert.is_true(fd:write("data"))
      fd:close()
      assert.are.equal("data", read(tmp .. "/f"))
      assert.are.equal(octal("640"), core.stat(tmp .. "/f").mode)
    end)

    it("sets close-on-exec", function()
      write(tmp .. "/f", "")
      local fd = assert(core.open(tmp .. "/f", { "rdonly" }))
      local info = read("/proc/self/fdinfo/" .. fd:fileno())
      local flags = tonumber(info:match("flags:%s*(%d+)"), 8)
      fd:close()
      assert.are_not.equal(0, flags & octal("2000000"))
    end)

    it("excl fails on an existing file", function()
      write(tmp .. "/f", "")
      assert_failure(EEXIST, tmp .. "/f", core.open(tmp .. "/f", { "wronly", "creat", "excl" }))
    end)

    it("directory fails on a file", function()
      write(tmp .. "/f", "")
      assert_failure(ENOTDIR, tmp .. "/f", core.open(tmp .. "/f", { "directory" }))
    end)

    it("nofollow fails on a symlink", function()
      write(tmp .. "/f", "")
      sh("ln -s f " .. tmp .. "/l")
      assert_failure(ELOOP, tmp .. "/l", core.open(tmp .. "/l", { "rdonly", "nofollow" }))
    end)

    it("raises on misused flags", function()
      assert.has_error(function() core.open(tmp .. "/f", { "sync" }) end)
      assert.has_error(function() core.open(tmp .. "/f", { "wronly", "rdwr" }) end)
      assert.has_error(function() core.open(tmp .. "/f") end)
    end)
  end)

  describe("flock", function()
    it("exclusive lock blocks a second open", function()
      write(tmp .. "/lock", "")
      local first = assert(core.open(tmp .. "/lock", { "rdonly" }))
      local second = assert(core.open(tmp .. "/lock", { "rdonly" }))
      assert.is_true(core.flock(first, "ex"))
      local ok, message, code = core.flock(second, "ex", true)
      assert.is_nil(ok)
      assert.is_string(message)
      assert.are.equal(EAGAIN, code)
      assert.is_true(core.flock(first, "un"))
      assert.is_true(core.flock(second, "ex", true))
      first:close()
      second:close()
    end)

    it("shared locks coexist", function()
      write(tmp .. "/lock", "")
      local first = assert(core.open(tmp .. "/lock", { "rdonly" }))
      local second = assert(core.open(tmp .. "/lock", { "rdonly" }))
      assert.is_true(core.flock(first, "sh"))
      assert.is_true(core.flock(second:fileno(), "sh", true))
      first:close()
      second:close()
    end)

    it("raises on an unknown operation", function()
      write(tmp .. "/lock", "")
      local fd = assert(core.open(tmp .. "/lock", { "rdonly" }))
      assert.has_error(function() core.flock(fd, "exclusive") end)
      fd:close()
    end)
  end)

  describe("xattrs", function()
    it("set and get round-trip", function()
      write(tmp .. "/f", "")
      assert.is_true(core.setxattr(tmp .. "/f", "user.k", "v\0w"))
      assert.are.equal("v\0w", core.getxattr(tmp .. "/f", "user.k"))
    end)

    it("getxattr fails on an absent name", function()
      write(tmp .. "/f", "")
      assert_failure(ENODATA, tmp .. "/f", core.getxattr(tmp .. "/f", "user.absent"))
    end)

    it("setxattr fails on a missing file", function()
      assert_failure(ENOENT, tmp .. "/f", core.setxattr(tmp .. "/f", "user.k", "v"))
    end)

    it("listxattr sorts names", function()
      write(tmp .. "/f", "")
      assert.is_true(core.setxattr(tmp .. "/f", "user.b", "2"))
      assert.is_true(core.setxattr(tmp .. "/f", "user.a", "1"))
      local names = {}
      for _, name in ipairs(core.listxattr(tmp .. "/f")) do
        if name:sub(1, 5) == "user." then
          names[#names + 1] = name
        end
      end
      assert.are.same({ "user.a", "user.b" }, names)
    end)

    it("listxattr fails on a missing file", function()
      assert_failure(ENOENT, tmp .. "/f", core.listxattr(tmp .. "/f"))
    end)

    it("nofollow reaches the link itself", function()
      require_root("set trusted xattrs")
      write(tmp .. "/f", "")
      sh("ln -s f " .. tmp .. "/l")
      assert.is_true(core.setxattr(tmp .. "/l", "trusted.t", "1", true))
      assert.are.equal("1", core.getxattr(tmp .. "/l", "trusted.t", true))
      assert.are.same({ "trusted.t" }, core.listxattr(tmp .. "/l", true))
      assert_failure(ENODATA, tmp .. "/l", core.getxattr(tmp .. "/l", "trusted.t"))
    end)
  end)

  describe("du", function()
    it("counts a hard link once", function()
      sh("mkdir -p " .. tmp .. "/t/sub")
      write(tmp .. "/t/a", ("x"):rep(10000))
      sh("ln " .. tmp .. "/t/a " .. tmp .. "/t/b && ln -s /usr " .. tmp .. "/t/sub/l")
      local expected = 0
      for _, name in ipairs { "", "/a", "/sub", "/sub/l" } do
        expected = expected + core.lstat(tmp .. "/t" .. name).blocks * 512
      end
      local bytes, entries = core.du(tmp .. "/t")
      assert.are.equal(expected, bytes)
      assert.are.equal(4, entries)
    end)

    it("skips a mount", function()
      require_root("mount tmpfs")
      sh("mkdir -p " .. tmp .. "/t/mnt")
      sh("mount -t tmpfs none " .. tmp .. "/t/mnt")
      write(tmp .. "/t/mnt/f", ("x"):rep(100000))
      local bytes, entries = core.du(tmp .. "/t")
      assert.are.equal(core.stat(tmp .. "/t").blocks * 512, bytes)
      assert.are.equal(1, entries)
      sh("umount " .. tmp .. "/t/mnt")
    end)

    it("counts a single file", function()
      write(tmp .. "/f", ("x"):rep(5000))
      local bytes, entries = core.du(tmp .. "/f")
      assert.are.equal(core.stat(tmp .. "/f").blocks * 512, bytes)
      assert.are.equal(1, entries)
    end)

    it("fails on a missing path", function()
      assert_failure(ENOENT, tmp .. "/missing", core.du(tmp .. "/missing"))
    end)
  end)

  describe("copy_tree", function()
    local fields = { "type", "mode", "uid", "gid", "size", "mtime_sec", "mtime_nsec",
                     "rdev_major", "rdev_minor" }

    local function assert_same_entry(src, dst)
      local want, got = core.lstat(src), core.lstat(dst)
      for _, field in ipairs(fields) do
        assert.are.equal(want[field], got[field], dst .. ": " .. field)
      end
    end

    it("preserves metadata", function()
      require_root("create device nodes and set owners")
      local src, dst = tmp .. "/src", tmp .. "/dst"
      sh("mkdir -p " .. src .. "/d " .. src .. "/ro")
      write(src .. "/f", "data")
      write(src .. "/big", ("0123456789abcdef"):rep(20000))
      write(src .. "/d/inner", "inner")
      write(src .. "/ro/inner", "inner")
      sh("ln " .. src .. "/f " .. src .. "/h && ln -s f " .. src .. "/l")
      sh("mkfifo -m 0620 " .. src .. "/p && mknod -m 0 " .. src .. "/wh c 0 0")
      sh("mknod " .. src .. "/b b 7 200")
      sh("chmod 4750 " .. src .. "/f && chmod 0750 " .. src .. "/d && chmod 0500 " .. src .. "/ro")
      assert.is_true(core.chown(src .. "/f", 1234, 5678))
      assert.is_true(core.chown(src .. "/l", 42, 43, true))
      assert.is_true(core.setxattr(src .. "/f", "user.k", "v"))
      assert.is_true(core.setxattr(src .. "/f", "trusted.t", "t"))
      assert.is_true(core.setxattr(src .. "/l", "trusted.l", "on the link", true))
      assert.is_true(core.setxattr(src .. "/d", "user.dir", "x"))
      assert.is_true(core.utimes(src .. "/f", 1, 2, 1000000000, 123456789))
      assert.is_true(core.utimes(src .. "/l", 1, 2, 1500000000, 5, true))
      assert.is_true(core.utimes(src .. "/p", 1, 2, 1600000000, 6))
      assert.is_true(core.utimes(src .. "/d", 1, 2, 1700000000, 7))
      assert.is_true(core.utimes(src, 1, 2, 1800000000, 8))

      assert.is_true(core.copy_tree(src, dst))

      for _, name in ipairs { "", "/f", "/h", "/l", "/d", "/d/inner", "/ro", "/ro/inner",
                              "/p", "/wh", "/b", "/big" } do
        assert_same_entry(src .. name, dst .. name)
      end
      assert.are.equal(read(src .. "/big"), read(dst .. "/big"))
      assert.are.equal("data", read(dst .. "/f"))
      assert.are.equal(core.lstat(dst .. "/f").ino, core.lstat(dst .. "/h").ino)
      assert.are.equal(2, core.lstat(dst .. "/f").nlink)
      assert.are_not.equal(core.lstat(src .. "/f").ino, core.lstat(dst .. "/f").ino)
      assert.are.equal("f", core.readlink(dst .. "/l"))
      assert.are.equal("v", core.getxattr(dst .. "/f", "user.k"))
      assert.are.equal("t", core.getxattr(dst .. "/f", "trusted.t"))
      assert.are.equal("on the link", core.getxattr(dst .. "/l", "trusted.l", true))
      assert.are.equal("x", core.getxattr(dst .. "/d", "user.dir"))
    end)

    it("copies a symlink, not its target", function()
      sh("mkdir -p " .. tmp .. "/outside " .. tmp .. "/src")
      write(tmp .. "/outside/secret", "s")
      sh("ln -s " .. tmp .. "/outside " .. tmp .. "/src/out")
      assert.is_true(core.copy_tree(tmp .. "/src", tmp .. "/dst"))
      assert.are.equal("link", core.lstat(tmp .. "/dst/out").type)
      assert.are.equal(tmp .. "/outside", core.readlink(tmp .. "/dst/out"))
    end)

    it("copies a single file", function()
      write(tmp .. "/f", "one")
      sh("chmod 0604 " .. tmp .. "/f")
      assert.is_true(core.copy_tree(tmp .. "/f", tmp .. "/g"))
      assert.are.equal("one", read(tmp .. "/g"))
      assert.are.equal(octal("604"), core.stat(tmp .. "/g").mode)
    end)

    it("fails on an existing destination", function()
      sh("mkdir " .. tmp .. "/src " .. tmp .. "/dst")
      assert_failure(EEXIST, tmp .. "/dst", core.copy_tree(tmp .. "/src", tmp .. "/dst"))
    end)

    it("never writes through a symlink", function()
      sh("mkdir " .. tmp .. "/src " .. tmp .. "/outside && ln -s outside " .. tmp .. "/dst")
      write(tmp .. "/src/f", "x")
      assert_failure(EEXIST, tmp .. "/dst", core.copy_tree(tmp .. "/src", tmp .. "/dst"))
      assert.are.same({}, core.listdir(tmp .. "/outside"))
    end)

    it("fails on a missing source", function()
      assert_failure(ENOENT, tmp .. "/missing", core.copy_tree(tmp .. "/missing", tmp .. "/dst"))
    end)

    it("fails in a missing directory", function()
      write(tmp .. "/f", "")
      assert_failure(ENOENT, tmp .. "/missing", core.copy_tree(tmp .. "/f", tmp .. "/missing/f"))
    end)

    it("rejects a copy into itself", function()
      sh("mkdir -p " .. tmp .. "/src/sub")
      assert_failure(EINVAL, tmp .. "/src", core.copy_tree(tmp .. "/src", tmp .. "/src/sub/copy"))
    end)

    it("copies a tree 2000 levels deep", function()
      local deep = tmp .. "/t" .. ("/d"):rep(1999)
      assert.is_true(core.mkdirs(deep))
      write(deep .. "/f", "bottom")
      local chunk = "print(core.copy_tree(arg[1], arg[2]))\nprint(core.du(arg[2]))"
      local output = run_lua(tmp, "ulimit -n 16;", chunk, { tmp .. "/t", tmp .. "/copy" })
      local copied = tmp .. "/copy" .. ("/d"):rep(1999) .. "/f"
      assert.are.equal("true\n", output:match("^[^\n]*\n"))
      assert.are.equal("2001", output:match("\t(%d+)\n$"))
      assert.are.equal("bottom", core.read_file(copied))
    end)
  end)
end)
