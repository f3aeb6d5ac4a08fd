-- core.extract: formats, metadata, tricky archives and hostile ones.  Each test works
-- in a fresh directory under /tmp: root/dest is the destination and root/outside a
-- directory an escaping entry would reach.
local core = require "nsbuild.core"
local tar = require "support.tar"

local EINVAL, ENOENT, ELOOP = 22, 2, 40

local function sh(command)
  local ok, how, code = os.execute(command)
  assert(ok, string.format("command failed (%s %s): %s", how, code, command))
end

local function capture(command)
  local p = assert(io.popen(command))
  local out = p:read("a")
  p:close()
  return (out:gsub("\n$", ""))
end

local function have(program)
  return os.execute("command -v " .. program .. " >/dev/null 2>&1") == true
end

-- stat(1) of path without following a final symlink; "" when path does not exist.
local function stat(path, format)
  return capture(string.format("stat -c '%s' '%s' 2>/dev/null", format, path))
end

local function exists(path)
  return stat(path, "%F") ~= ""
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local data = f:read("a")
  f:close()
  return data
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  assert(f:close())
end

local function list(dir)
  return capture(string.format("ls -A '%s'", dir))
end

-- The value of xattr name on path, read back through GNU tar's pax output so that the
-- test needs no attr package.
local function read_xattr(dir, base, name)
  local out = capture(string.format("tar --xattrs --xattrs-include='%s' -cf - -C '%s' '%s' 2>/dev/null",
                                    name, dir, base))
  return out:match("SCHILY%.xattr%." .. name:gsub("%p", "%%%0") .. "=([^\n]*)\n")
end

local function open_fd_count()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  return tonumber(capture("ls /proc/" .. pid .. "/fd | wc -l"))
end

local function octal(s)
  return tonumber(s, 8)
end

describe("core.extract", function()
  local root, dest, outside, archive

  -- Write entries with the ustar helper and extract them into dest.
  local function extract(entries, opts)
    tar.write(archive, entries)
    return core.extract(archive, dest, opts)
  end

  -- Check a rejected archive: nil, a message naming what, EINVAL, and nothing
  -- written next to dest or into outside.
  local function assert_rejected(result, message, errno, what)
    assert.is_nil(result)
    assert.matches("extract '" .. archive .. "'", message, 1, true)
    assert.matches(what, message, 1, true)
    assert.equal(EINVAL, errno)
    assert.equal("a.tar\ndest\noutside", list(root))
    assert.equal("", list(outside))
  end

  before_each(function()
    root = os.tmpname()
    os.remove(root)
    sh("mkdir -m 700 '" .. root .. "'")
    dest = root .. "/dest"
    outside = root .. "/outside"
    archive = root .. "/a.tar"
    sh(string.format("mkdir '%s' '%s'", dest, outside))
  end)

  after_each(function()
    sh("rm -rf '" .. root .. "'")
  end)

  describe("formats", function()
    -- A small tree made with the system tar, archived with compression flag.
    local function extract_compressed(flag, suffix)
      local src = root .. "/src"
      sh(string.format("mkdir -p '%s/etc' && printf 'hello\\n' > '%s/etc/motd'", src, src))
      local path = root .. "/a.tar" .. suffix
      sh(string.format("tar %s -C '%s' -cf '%s' .", flag, src, path))
      return core.extract(path, dest)
    end

    it("plain tar", function()
      local stats = extract { { name = "motd", data = "hello\n" } }
      assert.equal(1, stats.entries)
      assert.equal(6, stats.bytes)
      assert.same({}, stats.skipped)
      assert.equal("hello\n", read_file(dest .. "/motd"))
    end)

    it("tar.gz", function()
      assert.is_table(extract_compressed("-z", ".gz"))
      assert.equal("hello\n", read_file(dest .. "/etc/motd"))
    end)

    it("tar.xz", function()
      assert.is_table(extract_compressed("-J", ".xz"))
      assert.equal("hello\n", read_file(dest .. "/etc/motd"))
    end)

    it("tar.bz2", function()
      if not have("bzip2") then
        pending("bzip2 is not installed")
        return
      end
      assert.is_table(extract_compressed("-j", ".bz2"))
      assert.equal("hello\n", read_file(dest .. "/etc/motd"))
    end)

    it("tar.zst", function()
      if not have("zstd") then
        pending("zstd is not installed, so tar cannot compress the test archive")
        return
      end
      assert.is_table(extract_compressed("--zstd", ".zst"))
      assert.equal("hello\n", read_file(dest .. "/etc/motd"))
    end)

    it("pax name with UTF-8", function()
      local src = root .. "/src"
      sh(string.format("mkdir '%s' && printf x > '%s/caf\195\169'", src, src))
      sh(string.format("tar --format=pax -C '%s' -cf '%s' .", src, archive))
      assert.is_table(core.extract(archive, dest))
      assert.equal("x", read_file(dest .. "/caf\195\169"))
    end)

    describe("deb", function()
      local deb

      -- Build a .deb with ar from the member names given.
      local function build_deb(members)
        local pkg = root .. "/pkg"
        sh(string.format("mkdir -p '%s/control' '%s/data/usr/share/doc/hello'", pkg, pkg))
        sh(string.format("printf 'Package: hello\\n' > '%s/control/control'", pkg))
        sh(string.format("printf 'hi\\n' > '%s/data/usr/share/doc/hello/README'", pkg))
        sh(string.format("printf '2.0\\n' > '%s/debian-binary'", pkg))
        sh(string.format("tar -C '%s/control' -czf '%s/control.tar.gz' .", pkg, pkg))
        sh(string.format("tar -C '%s/data' -cJf '%s/data.tar.xz' .", pkg, pkg))
        deb = root .. "/hello.deb"
        sh(string.format("cd '%s' && ar rc '%s' %s", pkg, deb, members))
      end

      it("extracts data.tar", function()
        if not have("ar") then
          pending("ar (binutils) is not installed")
          return
        end
        build_deb("debian-binary control.tar.gz data.tar.xz")
        local stats = core.extract(deb, dest)
        assert.is_table(stats)
        assert.equal("hi\n", read_file(dest .. "/usr/share/doc/hello/README"))
        assert.is_false(exists(dest .. "/control"))
        assert.equal("usr", list(dest))
      end)

      it("fails without data.tar", function()
        if not have("ar") then
          pending("ar (binutils) is not installed")
          return
        end
        build_deb("debian-binary control.tar.gz")
        local stats, message, errno = core.extract(deb, dest)
        assert.is_nil(stats)
        assert.matches("extract '" .. deb .. "'", message, 1, true)
        assert.matches("no data.tar member", message, 1, true)
        assert.equal(EINVAL, errno)
      end)
    end)

    it("rejects a non-archive", function()
      write_file(archive, "just text, not an archive\n")
      local stats, message, errno = core.extract(archive, dest)
      assert.is_nil(stats)
      assert.matches("extract '" .. archive .. "'", message, 1, true)
      assert.is_number(errno)
    end)
  end)

  describe("metadata", function()
    it("file content and mode", function()
      extract { { name = "f", data = "abc", mode = octal("640") } }
      assert.equal("abc", read_file(dest .. "/f"))
      assert.equal("640", stat(dest .. "/f", "%a"))
    end)

    it("keeps setuid after chown", function()
      extract { { name = "su", data = "x", mode = octal("6755"), uid = 1234, gid = 56 } }
      assert.equal("6755", stat(dest .. "/su", "%a"))
      assert.equal("1234", stat(dest .. "/su", "%u"))
      assert.equal("56", stat(dest .. "/su", "%g"))
    end)

    it("numeric uid and gid", function()
      extract {
        { name = "d/", type = "dir", uid = 2001, gid = 2002 },
        { name = "d/l", type = "symlink", linkname = "x", uid = 2003, gid = 2004 },
      }
      assert.equal("2001 2002", stat(dest .. "/d", "%u %g"))
      assert.equal("2003 2004", stat(dest .. "/d/l", "%u %g"))
    end)

    it("same_owner false", function()
      if capture("id -u") ~= "0" then
        pending("needs root to tell the archive's owner from the extracting user")
        return
      end
      extract({ { name = "f", data = "x", uid = 1234, gid = 56 } }, { same_owner = false })
      assert.equal("0 0", stat(dest .. "/f", "%u %g"))
    end)

    it("mtime in nanoseconds", function()
      extract { { name = "f", data = "x", mtime = 1500000000, mtime_nsec = 123456789 } }
      assert.equal("1500000000.123456789", stat(dest .. "/f", "%.9Y"))
    end)

    it("directory mtime after contents", function()
      extract {
        { name = "d/", type = "dir", mode = octal("500"), mtime = 1400000000 },
        { name = "d/sub/", type = "dir", mtime = 1300000000 },
        { name = "d/sub/f", data = "x" },
        { name = "d/g", data = "y" },
      }
      assert.equal("1400000000", stat(dest .. "/d", "%Y"))
      assert.equal("500", stat(dest .. "/d", "%a"))
      assert.equal("1300000000", stat(dest .. "/d/sub", "%Y"))
      assert.equal("y", read_file(dest .. "/d/g"))
    end)

    it("dot entry is the destination", function()
      extract {
        { name = "./", type = "dir", mode = octal("750"), mtime = 1200000000 },
        { name = "./f", data = "x" },
      }
      assert.equal("750", stat(dest, "%a"))
      assert.equal("1200000000", stat(dest, "%Y"))
      assert.equal("x", read_file(dest .. "/f"))
    end)

    it("creates missing parents", function()
      extract { { name = "a/b/f", data = "x" } }
      assert.equal("x", read_file(dest .. "/a/b/f"))
      assert.equal("755", stat(dest .. "/a/b", "%a"))
    end)

    it("xattr user.*", function()
      extract { { name = "f", data = "x", xattrs = { ["user.nsbuild"] = "yes" } } }
      assert.equal("yes", read_xattr(dest, "f", "user.nsbuild"))
    end)

    it("xattr security.capability", function()
      if not have("getcap") then
        pending("getcap (Debian package libcap2-bin) is not installed")
        return
      end
      -- struct vfs_cap_data, revision 2, effective: CAP_NET_RAW (13) permitted.
      local cap = string.pack("<I4I4I4I4I4", 0x02000001, 1 << 13, 0, 0, 0)
      extract { { name = "ping", data = "x", mode = octal("755"), uid = 1000,
                  xattrs = { ["security.capability"] = cap } } }
      assert.matches("cap_net_raw=ep", capture("getcap '" .. dest .. "/ping'"), 1, true)
    end)
  end)

  describe("entry types", function()
    it("symlink", function()
      extract { { name = "l", type = "symlink", linkname = "target", mtime = 1100000000 } }
      assert.equal("symbolic link", stat(dest .. "/l", "%F"))
      assert.equal("target", capture("readlink '" .. dest .. "/l'"))
      assert.equal("1100000000", stat(dest .. "/l", "%Y"))
    end)

    it("keeps absolute symlink targets", function()
      extract { { name = "passwd", type = "symlink", linkname = "/etc/passwd" } }
      assert.equal("/etc/passwd", capture("readlink '" .. dest .. "/passwd'"))
    end)

    it("hardlink shares the inode", function()
      local stats = extract {
        { name = "a/f", data = "x" },
        { name = "b/h", type = "hardlink", linkname = "a/f" },
      }
      assert.equal(2, stats.entries)
      assert.equal(stat(dest .. "/a/f", "%i"), stat(dest .. "/b/h", "%i"))
      assert.equal("2", stat(dest .. "/a/f", "%h"))
    end)

    it("hardlink to a missing target", function()
      local stats, message, errno = extract {
        { name = "h", type = "hardlink", linkname = "nowhere" },
      }
      assert.is_nil(stats)
      assert.matches("entry 'h'", message, 1, true)
      assert.matches("'nowhere' not found", message, 1, true)
      assert.equal(ENOENT, errno)
    end)

    it("device node as root", function()
      if capture("id -u") ~= "0" then
        pending("needs root (CAP_MKNOD) to create a device node")
        return
      end
      local stats = extract { { name = "null", type = "char", major = 1, minor = 3, mode = octal("666") } }
      assert.equal("character special file", stat(dest .. "/null", "%F"))
      assert.equal("1 3", stat(dest .. "/null", "%Hr %Lr"))
      assert.equal("666", stat(dest .. "/null", "%a"))
      assert.same({}, stats.skipped)
    end)

    it("skip_devices", function()
      local stats = extract({
        { name = "dev/null", type = "char", major = 1, minor = 3 },
        { name = "dev/sda", type = "block", major = 8, minor = 0 },
        { name = "f", data = "x" },
      }, { skip_devices = true })
      assert.same({ "dev/null: device node skipped", "dev/sda: device node skipped" }, stats.skipped)
      assert.equal(1, stats.entries)
      assert.is_false(exists(dest .. "/dev/null"))
      assert.is_false(exists(dest .. "/dev/sda"))
    end)

    it("fifo", function()
      extract({ { name = "pipe", type = "fifo", mode = octal("600") } }, { skip_devices = true })
      assert.equal("fifo", stat(dest .. "/pipe", "%F"))
      assert.equal("600", stat(dest .. "/pipe", "%a"))
    end)

    it("sparse file stays sparse", function()
      local src = root .. "/src"
      sh(string.format("mkdir '%s' && printf start > '%s/sparse'", src, src))
      sh(string.format("truncate -s 64M '%s/sparse' && printf end >> '%s/sparse'", src, src))
      sh(string.format("truncate -s 128M '%s/sparse'", src))  -- a hole at the end too
      sh(string.format("tar --sparse -C '%s' -cf '%s' sparse", src, archive))
      local stats = core.extract(archive, dest)
      assert.is_table(stats)
      assert.equal(tostring(128 * 1024 * 1024), stat(dest .. "/sparse", "%s"))
      assert.is_true(tonumber(stat(dest .. "/sparse", "%b")) < 1024)  -- 512-byte blocks
      assert.is_true(os.execute(string.format("cmp -s '%s/sparse' '%s/sparse'", src, dest)))
    end)
  end)

  describe("repeated names", function()
    it("last entry wins", function()
      extract {
        { name = "f", data = "first", mode = octal("600") },
        { name = "f", data = "second", mode = octal("644") },
      }
      assert.equal("second", read_file(dest .. "/f"))
      assert.equal("644", stat(dest .. "/f", "%a"))
    end)

    it("file then directory", function()
      extract {
        { name = "x", data = "file" },
        { name = "x/", type = "dir", mode = octal("711") },
        { name = "x/y", data = "inside" },
      }
      assert.equal("directory", stat(dest .. "/x", "%F"))
      assert.equal("711", stat(dest .. "/x", "%a"))
      assert.equal("inside", read_file(dest .. "/x/y"))
    end)

    it("directory then file", function()
      extract {
        { name = "x/", type = "dir", mode = octal("700"), mtime = 1000000000 },
        { name = "x/sub/", type = "dir" },
        { name = "x/sub/y", data = "inside" },
        { name = "x", data = "file", mode = octal("604"), mtime = 1500000000 },
      }
      assert.equal("regular file", stat(dest .. "/x", "%F"))
      assert.equal("file", read_file(dest .. "/x"))
      assert.equal("604", stat(dest .. "/x", "%a"))
      assert.equal("1500000000", stat(dest .. "/x", "%Y"))
    end)

    it("directory then directory", function()
      extract {
        { name = "d/", type = "dir", mode = octal("700") },
        { name = "d/f", data = "kept" },
        { name = "d/", type = "dir", mode = octal("750") },
      }
      assert.equal("kept", read_file(dest .. "/d/f"))
      assert.equal("750", stat(dest .. "/d", "%a"))
    end)

    it("file over a symlink", function()
      write_file(outside .. "/target", "original")
      extract {
        { name = "s", type = "symlink", linkname = outside .. "/target" },
        { name = "s", data = "replaced" },
      }
      assert.equal("regular file", stat(dest .. "/s", "%F"))
      assert.equal("replaced", read_file(dest .. "/s"))
      assert.equal("original", read_file(outside .. "/target"))
    end)

    it("file over a hardlink", function()
      extract {
        { name = "a", data = "original" },
        { name = "b", type = "hardlink", linkname = "a" },
        { name = "b", data = "replaced" },
      }
      assert.equal("original", read_file(dest .. "/a"))
      assert.equal("replaced", read_file(dest .. "/b"))
    end)
  end)

  describe("rejects", function()
    it("a name with ..", function()
      local result, message, errno = extract { { name = "../x", data = "evil" } }
      assert_rejected(result, message, errno, "entry '../x'")
      assert.matches("'" .. dest .. "'", message, 1, true)
    end)

    it("an absolute name", function()
      local name = outside .. "/abs"
      local result, message, errno = extract { { name = name, data = "evil" } }
      assert_rejected(result, message, errno, "entry '" .. name .. "'")
      assert.matches("is absolute", message, 1, true)
    end)

    it("a name climbing back out", function()
      local result, message, errno = extract { { name = "a/../../x", data = "evil" } }
      assert_rejected(result, message, errno, "entry 'a/../../x'")
    end)

    it("a write through a symlink", function()
      local result, message, errno = extract {
        { name = "link", type = "symlink", linkname = outside },
        { name = "link/file", data = "evil" },
      }
      assert.is_nil(result)
      assert.matches("entry 'link/file': would be written through symlink 'link'", message, 1, true)
      assert.equal(ELOOP, errno)
      assert.equal("", list(outside))
    end)

    it("a write through a nested symlink", function()
      local result, message, errno = extract {
        { name = "a/b/link", type = "symlink", linkname = outside },
        { name = "a/b/link/c/file", data = "evil" },
      }
      assert.is_nil(result)
      assert.matches("would be written through symlink 'a/b/link'", message, 1, true)
      assert.equal(ELOOP, errno)
      assert.equal("", list(outside))
    end)

    it("a relative symlink climbing out", function()
      local result, message, errno = extract {
        { name = "a/link", type = "symlink", linkname = "../../etc" },
      }
      assert_rejected(result, message, errno, "entry 'a/link'")
      assert.matches("'../../etc' climbs above", message, 1, true)
    end)

    it("a hardlink to ../outside", function()
      write_file(outside .. "/secret", "secret")
      local result, message, errno = extract {
        { name = "h", type = "hardlink", linkname = "../outside/secret" },
      }
      assert.is_nil(result)
      assert.matches("entry 'h'", message, 1, true)
      assert.matches("hardlink target '../outside/secret'", message, 1, true)
      assert.equal(EINVAL, errno)
      assert.equal("1", stat(outside .. "/secret", "%h"))
      assert.equal("", list(dest))
    end)

    it("a hardlink through a symlink", function()
      write_file(outside .. "/secret", "secret")
      local result, message, errno = extract {
        { name = "link", type = "symlink", linkname = outside },
        { name = "h", type = "hardlink", linkname = "link/secret" },
      }
      assert.is_nil(result)
      assert.matches("hardlink target 'link/secret' is reached through a symlink", message, 1, true)
      assert.equal(ELOOP, errno)
      assert.equal("1", stat(outside .. "/secret", "%h"))
    end)
  end)

  describe("arguments", function()
    it("missing archive", function()
      local missing = root .. "/missing.tar"
      local result, message, errno = core.extract(missing, dest)
      assert.is_nil(result)
      assert.matches("extract '" .. missing .. "'", message, 1, true)
      assert.equal(ENOENT, errno)
    end)

    it("missing destination", function()
      tar.write(archive, { { name = "f" } })
      local result, message, errno = core.extract(archive, root .. "/nowhere")
      assert.is_nil(result)
      assert.matches("destination '" .. root .. "/nowhere'", message, 1, true)
      assert.equal(ENOENT, errno)
    end)

    it("unknown option raises", function()
      tar.write(archive, { { name = "f" } })
      assert.has_error(function() core.extract(archive, dest, { skip_device = true }) end,
        "bad argument #3 to 'extract' (unknown option 'skip_device')")
    end)

    it("non-boolean option raises", function()
      tar.write(archive, { { name = "f" } })
      assert.has_error(function() core.extract(archive, dest, { same_owner = 1 }) end,
        "bad argument #3 to 'extract' (option 'same_owner' must be a boolean)")
    end)
  end)

  describe("descriptors", function()
    it("none leaked on success", function()
      tar.write(archive, {
        { name = "d/", type = "dir" },
        { name = "d/f", data = "x" },
        { name = "d/l", type = "symlink", linkname = "f" },
        { name = "d/h", type = "hardlink", linkname = "d/f" },
      })
      local before = open_fd_count()
      assert.is_table(core.extract(archive, dest))
      assert.equal(before, open_fd_count())
    end)

    it("none leaked on failure", function()
      tar.write(archive, {
        { name = "d/", type = "dir" },
        { name = "d/link", type = "symlink", linkname = outside },
        { name = "d/link/f", data = "evil" },
      })
      local before = open_fd_count()
      assert.is_nil(core.extract(archive, dest))
      assert.equal(before, open_fd_count())
    end)

    it("none leaked from a .deb", function()
      if not have("ar") then
        pending("ar (binutils) is not installed")
        return
      end
      local pkg = root .. "/pkg"
      sh(string.format("mkdir -p '%s/data/etc' && printf x > '%s/data/etc/f'", pkg, pkg))
      sh(string.format("tar -C '%s/data' -czf '%s/data.tar.gz' . && printf '2.0\\n' > '%s/debian-binary'",
                       pkg, pkg, pkg))
      local deb = root .. "/x.deb"
      sh(string.format("cd '%s' && ar rc '%s' debian-binary data.tar.gz", pkg, deb))
      local before = open_fd_count()
      assert.is_table(core.extract(deb, dest))
      assert.equal(before, open_fd_count())
    end)
  end)
end)
