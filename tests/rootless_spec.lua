-- End to end as users other than root. The spec runs as root and creates the
-- test users with tools/test-user.sh. It copies nsbuild, lua/ and recipes/ into
-- a directory each user owns, and runs nsbuild there with runuser, each user
-- with a store of its own.
--
--   nsbuild-test        has 65536 subordinate uids and gids
--   nsbuild-test-noids  has none: one id is mapped, with a warning
local core = require "nsbuild.core"
local cli = require "support.cli"
local leaks = require "support.leaks"
local tar = require "support.tar"

local quote = cli.quote
local WITH_IDS, WITHOUT_IDS = "nsbuild-test", "nsbuild-test-noids"

-- Why the spec cannot run here, or nil.
local function missing()
  if core.geteuid() ~= 0 then
    return "needs root, to create the test users and run nsbuild as them"
  end
  if not cli.sh("command -v runuser"):match("runuser") then
    return "needs runuser (util-linux)"
  end
  local out, code = cli.sh("tools/test-user.sh")
  if code ~= 0 then
    return "tools/test-user.sh failed: " .. out
  end
  return nil
end

-- A directory owned by user with a copy of the nsbuild executable, lua/ and
-- recipes/: the checkout itself may not be readable by other users.
local function user_tree(user)
  local dir = cli.tmpdir("nsbuild-rootless")
  local out, code = cli.sh(string.format("cp -a nsbuild lua recipes %s && chown -R %s: %s",
                                         quote(dir), user, quote(dir)))
  assert(code == 0, "cannot prepare " .. dir .. ": " .. out)
  return dir
end

-- Run nsbuild in dir as user with a store in dir/cache; return output and code.
local function nsbuild_as(user, dir, ...)
  local args = { ... }
  local cache = { "--cache", dir .. "/cache" }
  -- These commands take the global option after the command's name.
  local first = args[1]
  local parts
  if first == "run" or first == "rm" or first == "prune" or first == "export" or first == "images" then
    parts = { first, cache[1], cache[2], table.unpack(args, 2) }
  else
    parts = { cache[1], cache[2], table.unpack(args) }
  end
  for i, a in ipairs(parts) do parts[i] = quote(a) end
  return cli.sh(string.format("cd %s && runuser -u %s -- ./nsbuild %s", quote(dir), user,
                              table.concat(parts, " ")))
end

-- The first subordinate uid and gid of user.
local function subordinate_start(user)
  local uid = cli.sh("awk -F: '$1 == \"" .. user .. "\" { print $2; exit }' /etc/subuid")
  local gid = cli.sh("awk -F: '$1 == \"" .. user .. "\" { print $2; exit }' /etc/subgid")
  return tonumber(uid), tonumber(gid)
end

local function layers_of(dir, name)
  local cjson = require "cjson"
  local f = assert(io.open(dir .. "/cache/images/" .. name .. ":latest.json"))
  local image = cjson.decode(f:read("a"))
  f:close()
  return image.layers
end

local function layer_path(dir, id)
  return dir .. "/cache/layers/" .. id
end

describe("rootless with subordinate ids", function()
  leaks.guard()
  local reason = missing()
  local dir, uid_start, gid_start

  setup(function()
    if reason then return end
    dir = user_tree(WITH_IDS)
    uid_start, gid_start = subordinate_start(WITH_IDS)
    local out, code = nsbuild_as(WITH_IDS, dir, "recipes/busybox.lua")
    assert(code == 0, "building recipes/busybox.lua as " .. WITH_IDS .. " failed:\n" .. out)
  end)

  teardown(function()
    if dir then cli.sh("rm -rf " .. quote(dir)) end
  end)

  it("runs busybox as root inside", function()
    if reason then pending(reason) return end
    local out, code = nsbuild_as(WITH_IDS, dir, "run", "busybox", "--", "id")
    assert.are.equal(0, code)
    assert.matches("^uid=0 gid=0", out)
  end)

  it("maps the subordinate range", function()
    if reason then pending(reason) return end
    local out, code = nsbuild_as(WITH_IDS, dir, "run", "busybox", "--", "cat", "/proc/self/uid_map")
    assert.are.equal(0, code)
    local host_uid = tonumber((cli.sh("id -u " .. WITH_IDS)))
    assert.matches("^%s*0%s+" .. host_uid .. "%s+1\n", out)
    assert.matches("\n%s*1%s+" .. uid_start .. "%s+65536\n", out)
  end)

  it("runs with limits it cannot apply", function()
    if reason then pending(reason) return end
    local out, code = nsbuild_as(WITH_IDS, dir, "run", "--memory", "64M", "busybox", "--",
                                 "echo", "ran")
    assert.are.equal(0, code, out)
    assert.matches("ran\n", out, 1, true)
    -- A user with a delegated cgroup v2 subtree gets the limit instead.
    if out:find("limits not applied", 1, true) then
      assert.matches("limits not applied (memory)", out, 1, true)
      assert.matches("delegated cgroup v2 subtree", out, 1, true)
    end
  end)

  it("rejects debootstrap without root", function()
    if reason then pending(reason) return end
    local out, code = nsbuild_as(WITH_IDS, dir, "recipes/debian-dev.lua", "debian-dev")
    assert.are_not.equal(0, code)
    assert.matches("the debootstrap source needs root", out, 1, true)
    assert.matches("--arg base=", out, 1, true)
  end)

  it("extracts owners and blocking modes", function()
    if reason then pending(reason) return end
    local archive = dir .. "/modes.tar"
    tar.write(archive, {
      -- Another user's top directory: committing it needs the mapped child.
      { name = "./", type = "dir", uid = 1000, gid = 1000 },
      { name = "locked", data = "secret\n", mode = 0 },
      { name = "ro/", type = "dir", mode = tonumber("500", 8) },
      { name = "ro/inside", data = "x\n", mode = tonumber("400", 8) },
      { name = "apt-owned", data = "a\n", uid = 42, gid = 42 },
      { name = "null", type = "char", major = 1, minor = 3, mode = tonumber("666", 8) },
    })
    local recipe = dir .. "/modes.lua"
    local f = assert(io.open(recipe, "w"))
    f:write('return from(tarball "modes.tar"):tag "modes"\n')
    f:close()
    cli.sh(string.format("chown %s: %s %s", WITH_IDS, quote(archive), quote(recipe)))
    local out, code = nsbuild_as(WITH_IDS, dir, "modes.lua")
    assert.are.equal(0, code, out)
    assert.matches("null: device node skipped", out, 1, true)

    local layer = layer_path(dir, layers_of(dir, "modes")[1])
    local top = core.lstat(layer)
    local locked = core.lstat(layer .. "/locked")
    local ro = core.lstat(layer .. "/ro")
    local owned = core.lstat(layer .. "/apt-owned")
    assert.are.equal(uid_start + 999, top.uid)
    assert.are.equal(0, locked.mode)
    assert.are.equal(tonumber("500", 8), ro.mode)
    assert.is_not_nil(core.lstat(layer .. "/ro/inside"))
    assert.are.equal(uid_start + 41, owned.uid)
    assert.are.equal(gid_start + 41, owned.gid)
    assert.is_nil(core.lstat(layer .. "/null"))
  end)

  it("keeps whiteouts and opaque directories", function()
    if reason then pending(reason) return end
    local recipe = dir .. "/wh.lua"
    local f = assert(io.open(recipe, "w"))
    f:write([[
return from(deb "busybox-static")
  :run { "/bin/busybox", "--install", "-s", "/bin" }
  :run { "/bin/sh", "-c", "mkdir -p /d/sub && touch /d/a /d/sub/s /x" }
  :run { "/bin/sh", "-c", "rm /x && rm -rf /d && mkdir /d && touch /d/b" }
  :tag "wh"
]])
    f:close()
    cli.sh(string.format("chown %s: %s", WITH_IDS, quote(recipe)))
    local out, code = nsbuild_as(WITH_IDS, dir, "wh.lua")
    assert.are.equal(0, code, out)

    local layers = layers_of(dir, "wh")
    local top = layer_path(dir, layers[#layers])
    local x = core.lstat(top .. "/x")
    assert.are.equal("char", x.type)
    assert.are.equal(0, x.rdev_major)
    assert.are.equal("y", core.getxattr(top .. "/d", "user.overlay.opaque", true))

    out, code = nsbuild_as(WITH_IDS, dir, "run", "wh", "--", "sh", "-c", "ls -A /d; test -e /x || echo no-x")
    assert.are.equal(0, code)
    assert.are.equal("b\nno-x\n", out)

    out, code = nsbuild_as(WITH_IDS, dir, "export", "wh", "--tar", dir .. "/wh.tar")
    assert.are.equal(0, code, out)
    local listing = cli.sh("tar -tf " .. quote(dir .. "/wh.tar"))
    assert.matches("\nd/b\n", "\n" .. listing, 1, true)
    assert.is_nil(("\n" .. listing):find("\nd/a\n", 1, true))
    assert.is_nil(("\n" .. listing):find("\nx\n", 1, true))
  end)

  it("imports its own OCI export", function()
    if reason then pending(reason) return end
    local out, code = nsbuild_as(WITH_IDS, dir, "export", "wh", "--oci", dir .. "/wh-oci")
    assert.are.equal(0, code, out)
    local recipe = dir .. "/import.lua"
    local f = assert(io.open(recipe, "w"))
    f:write('return from(oci "wh-oci"):tag "wh-imported"\n')
    f:close()
    cli.sh(string.format("chown %s: %s", WITH_IDS, quote(recipe)))
    out, code = nsbuild_as(WITH_IDS, dir, "import.lua")
    assert.are.equal(0, code, out)

    local layers = layers_of(dir, "wh-imported")
    local top = layer_path(dir, layers[#layers])
    assert.are.equal("y", core.getxattr(top .. "/d", "user.overlay.opaque", true))
    out, code = nsbuild_as(WITH_IDS, dir, "run", "wh-imported", "--", "sh", "-c",
                           "ls -A /d; test -e /x || echo no-x")
    assert.are.equal(0, code)
    assert.are.equal("b\nno-x\n", out)
  end)

  describe("debian-dev on a base from root", function()
    local built

    setup(function()
      if reason then return end
      -- debootstrap needs root: root builds the base in its own store and
      -- exports it as the tarball the recipe takes with --arg base=.
      local base_recipe = dir .. "/base.lua"
      local f = assert(io.open(base_recipe, "w"))
      f:write('return from(debootstrap { suite = "bookworm", variant = "minbase" }):tag "rootless-base"\n')
      f:close()
      local out, code = cli.run({ "--cache", "build/test-cache", "-q", base_recipe })
      assert(code == 0, "building the bookworm base as root failed:\n" .. out)
      out, code = cli.run({ "export", "--cache", "build/test-cache", "rootless-base", "--tar",
                            dir .. "/base.tar" })
      assert(code == 0, "exporting the base failed:\n" .. out)
      cli.sh(string.format("chown %s: %s", WITH_IDS, quote(dir .. "/base.tar")))
      built = { nsbuild_as(WITH_IDS, dir, "--arg", "base=" .. dir .. "/base.tar",
                           "recipes/debian-dev.lua") }
    end)

    it("builds as the user", function()
      if reason then pending(reason) return end
      assert.are.equal(0, built[2], built[1])
      assert.matches("built hello", built[1], 1, true)
    end)

    it("runs hello", function()
      if reason then pending(reason) return end
      local out, code = nsbuild_as(WITH_IDS, dir, "run", "hello")
      assert.are.equal(0, code)
      assert.matches("Hello", out, 1, true)
    end)

    it("maps _apt's files to its subordinate id", function()
      if reason then pending(reason) return end
      local out, code = nsbuild_as(WITH_IDS, dir, "run", "debian-dev", "--", "id", "-u", "_apt")
      assert.are.equal(0, code)
      local apt_uid = tonumber(out:match("%d+"))
      assert.is_not_nil(apt_uid)
      local layers = layers_of(dir, "debian-dev")
      local partial = core.lstat(layer_path(dir, layers[#layers]) .. "/var/lib/apt/lists/partial")
      assert.is_not_nil(partial)
      assert.are.equal(uid_start + apt_uid - 1, partial.uid)
    end)
  end)

  it("exports the image's ids, not the host's", function()
    if reason then pending(reason) return end
    local layout = dir .. "/debian-dev-oci"
    local out, code = nsbuild_as(WITH_IDS, dir, "export", "debian-dev", "--oci", layout)
    assert.are.equal(0, code, out)
    local cjson = require "cjson"
    local function read_json(path)
      local f = assert(io.open(path))
      local value = cjson.decode(f:read("a"))
      f:close()
      return value
    end
    local function blob(digest)
      return layout .. "/blobs/sha256/" .. digest:match("^sha256:(%x+)$")
    end
    local manifest = read_json(blob(read_json(layout .. "/index.json").manifests[1].digest))
    local top = manifest.layers[#manifest.layers].digest
    local listing = cli.sh("tar --numeric-owner -tvf " .. quote(blob(top)))
    assert.matches("drwx------ 42/0 %s+%d+ %S+ %S+ var/lib/apt/lists/partial/?\n", listing)
  end)

  it("prunes everything the user made", function()
    if reason then pending(reason) return end
    local images = nsbuild_as(WITH_IDS, dir, "images")
    for name in images:gmatch("\n(%S+:%S+)") do
      local out, code = nsbuild_as(WITH_IDS, dir, "rm", name)
      assert.are.equal(0, code, out)
    end
    local out, code = nsbuild_as(WITH_IDS, dir, "prune")
    assert.are.equal(0, code, out)
    assert.are.same({}, cli.entries(dir .. "/cache/layers"))
    out, code = cli.sh(string.format("runuser -u %s -- rm -rf %s", WITH_IDS, quote(dir .. "/cache")))
    assert.are.equal(0, code, out)
    assert.is_nil(core.lstat(dir .. "/cache"))
  end)
end)

describe("rootless without subordinate ids", function()
  leaks.guard()
  local reason = missing()
  local dir, built

  setup(function()
    if reason then return end
    dir = user_tree(WITHOUT_IDS)
    built = { nsbuild_as(WITHOUT_IDS, dir, "recipes/busybox.lua") }
  end)

  teardown(function()
    if dir then cli.sh("rm -rf " .. quote(dir)) end
  end)

  it("builds busybox with the warning", function()
    if reason then pending(reason) return end
    assert.are.equal(0, built[2], built[1])
    assert.matches("has no subordinate uids in /etc/subuid", built[1], 1, true)
    assert.matches("usermod --add-subuids", built[1], 1, true)
  end)

  it("runs busybox as root inside", function()
    if reason then pending(reason) return end
    local out, code = nsbuild_as(WITHOUT_IDS, dir, "run", "busybox", "--", "cat", "/proc/self/uid_map")
    assert.are.equal(0, code)
    local host_uid = tonumber((cli.sh("id -u " .. WITHOUT_IDS)))
    assert.matches("\n%s*0%s+" .. host_uid .. "%s+1\n$", "\n" .. out)
    assert.matches("has no subordinate uids", out, 1, true)
  end)

  it("prunes everything the user made", function()
    if reason then pending(reason) return end
    nsbuild_as(WITHOUT_IDS, dir, "rm", "busybox")
    local out, code = nsbuild_as(WITHOUT_IDS, dir, "prune")
    assert.are.equal(0, code, out)
    out, code = cli.sh(string.format("runuser -u %s -- rm -rf %s", WITHOUT_IDS, quote(dir .. "/cache")))
    assert.are.equal(0, code, out)
  end)
end)
