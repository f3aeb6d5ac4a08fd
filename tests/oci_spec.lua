-- OCI images in and out: the layer primitives of nsbuild.core, export read by
-- umoci, skopeo and podman, import of layouts those tools make, reproducible
-- digests, runtime bundles under runc and crun, a round trip through Debian's
-- docker-registry on 127.0.0.1, whiteouts, and inputs that must be rejected.
local cli = require "support.cli"
local core = require "nsbuild.core"
local json = require "nsbuild.oci_json"
local leaks = require "support.leaks"
local tar = require "support.tar"

local EPOCH = "1700000000"

local BUSYBOX = [[
local bb = from(deb "busybox-static"):run { "/bin/busybox", "--install", "-s", "/bin" }
]]

local function have(program)
  return os.execute("command -v " .. program .. " >/dev/null 2>&1") == true
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("a")
  f:close()
  return data
end

local function write(path, data)
  cli.sh("mkdir -p " .. cli.quote(path:match("^(.*)/")))
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  return path
end

local function sh_ok(line)
  local out, code = cli.sh(line)
  assert.are.equal(0, code, line .. "\n" .. out)
  return out
end

local function nsbuild_ok(args)
  local out, code = cli.run(args)
  assert.are.equal(0, code, table.concat(args, " ") .. "\n" .. out)
  return out
end

-- Build a recipe body (BUSYBOX defines bb) into cache.
local function build(dir, cache, body)
  local path = write(dir .. "/recipe.lua", BUSYBOX .. body)
  return nsbuild_ok({ "--cache", cache, "-q", path })
end

local function export(cache, image, ...)
  return nsbuild_ok({ "export", "--cache", cache, "--source-date-epoch", EPOCH, image, ... })
end

local function run(cache, image, ...)
  return cli.run({ "run", "--cache", cache, image, "--", ... })
end

local function index_of(layout)
  return assert(json.decode(read(layout .. "/index.json"), "index.json"))
end

local function manifest_digest(layout)
  return index_of(layout).manifests[1].digest
end

local function blob(layout, digest)
  return layout .. "/blobs/sha256/" .. digest:sub(8)
end

local function manifest_of(layout)
  return assert(json.decode(read(blob(layout, manifest_digest(layout))), "manifest"))
end

local function store_layers(cache)
  local list = {}
  for _, name in ipairs(cli.entries(cache .. "/layers")) do
    if not name:match("%.json$") then list[#list + 1] = name end
  end
  return list
end

-- Add an uncompressed layer tar on top of the single image of a layout,
-- rewriting its config, manifest and index so that every digest matches.
local function append_layer(layout, layer_tar)
  local manifest = manifest_of(layout)
  local config = assert(json.decode(read(blob(layout, manifest.config.digest)), "config"))
  local digest = "sha256:" .. core.sha256_file(layer_tar)
  sh_ok(string.format("cp %s %s", cli.quote(layer_tar), cli.quote(blob(layout, digest))))
  config.rootfs.diff_ids[#config.rootfs.diff_ids + 1] = digest
  config.history = nil
  local config_text = json.encode(config)
  local config_digest = "sha256:" .. core.sha256(config_text)
  write(blob(layout, config_digest), config_text)
  manifest.config = json.object({ mediaType = manifest.config.mediaType, digest = config_digest,
                                  size = #config_text })
  manifest.layers[#manifest.layers + 1] = json.object({
    mediaType = "application/vnd.oci.image.layer.v1.tar", digest = digest,
    size = #read(layer_tar) })
  local manifest_text = json.encode(manifest)
  local index = index_of(layout)
  index.manifests[1].digest = "sha256:" .. core.sha256(manifest_text)
  index.manifests[1].size = #manifest_text
  write(blob(layout, index.manifests[1].digest), manifest_text)
  write(layout .. "/index.json", json.encode(index))
end

-- One busybox image built and exported once for the specs that only read it.
local shared

local function shared_image()
  if shared then
    return shared
  end
  local dir = cli.tmpdir("nsbuild-oci")
  shared = { dir = dir, cache = dir .. "/cache", layout = dir .. "/layout", archive = dir .. "/image.tar" }
  build(dir, shared.cache, [[
return bb:env { GREETING = "hello" }:cmd { "/bin/sh", "-c", "echo $GREETING from the image" }:tag "ocibox"
]])
  export(shared.cache, "ocibox", "--oci", shared.layout)
  export(shared.cache, "ocibox", "--oci", shared.archive)
  return shared
end

teardown(function()
  if shared then
    cli.sh("rm -rf " .. cli.quote(shared.dir))
  end
end)

describe("core.layer_tar", function()
  leaks.guard()
  local dir

  before_each(function()
    dir = cli.tmpdir("nsbuild-layer")
    sh_ok("cd " .. dir .. " && mkdir -p src/d src/opq && echo hello > src/a && ln src/a src/d/hard"
          .. " && ln -s ../a src/d/link && mknod src/gone c 0 0 && echo x > src/opq/x"
          .. " && setfattr -n trusted.overlay.opaque -v y src/opq && touch -d @1800000000 src/a")
  end)

  after_each(function()
    cli.sh("rm -rf " .. cli.quote(dir))
  end)

  it("converts whiteouts and opaque dirs", function()
    local res = assert(core.layer_tar(dir .. "/src", dir .. "/out.tar", { compression = "none" }))
    local listing = sh_ok("tar -tf " .. dir .. "/out.tar")
    assert.are.equal("a\nd/\nd/hard\nd/link\n.wh.gone\nopq/\nopq/.wh..wh..opq\nopq/x\n", listing)
    assert.are.equal(8, res.entries)
  end)

  it("writes numeric owners and a hardlink", function()
    assert(core.layer_tar(dir .. "/src", dir .. "/out.tar", { compression = "none" }))
    local verbose = sh_ok("tar -tvf " .. dir .. "/out.tar")
    assert.truthy(verbose:find("hrw%-r%-%-r%-%- 0/0 +0 [^\n]* d/hard link to a"), verbose)
  end)

  it("clamps mtimes", function()
    assert(core.layer_tar(dir .. "/src", dir .. "/out.tar", { compression = "none", mtime_clamp = 1000 }))
    local times = sh_ok("tar --full-time -tvf " .. dir .. "/out.tar | awk '{print $4 $5}' | sort -u")
    assert.are.equal("1970-01-0100:16:40\n", times)
  end)

  it("hashes what it writes", function()
    for _, compression in ipairs({ "gzip", "zstd", "none" }) do
      local out = dir .. "/out." .. compression
      local res = assert(core.layer_tar(dir .. "/src", out, { compression = compression }))
      local check = assert(core.blob_digest(out))
      assert.are.equal(res.digest, check.digest)
      assert.are.equal(res.diff_id, check.diff_id)
      assert.are.equal(res.size, check.size)
      assert.are.equal(compression, check.compression)
      assert.are.equal("sha256:" .. core.sha256_file(out), res.digest)
    end
  end)

  it("gives the same bytes twice", function()
    local a = assert(core.layer_tar(dir .. "/src", dir .. "/1.gz", { mtime_clamp = 1000 }))
    sh_ok("touch " .. dir .. "/src/d/link " .. dir .. "/src/opq")
    local b = assert(core.layer_tar(dir .. "/src", dir .. "/2.gz", { mtime_clamp = 1000 }))
    assert.are.equal(a.digest, b.digest)
  end)

  it("rejects an existing output file", function()
    write(dir .. "/out.tar", "x")
    local res, err = core.layer_tar(dir .. "/src", dir .. "/out.tar")
    assert.is_nil(res)
    assert.truthy(err:find("File exists", 1, true), err)
  end)
end)

describe("core.layer_whiteouts", function()
  leaks.guard()

  it("turns markers into overlay form", function()
    local dir = cli.tmpdir("nsbuild-wh")
    sh_ok("cd " .. dir .. " && mkdir -p l/opq l/keep && touch l/.wh.gone l/opq/.wh..wh..opq l/opq/new"
          .. " l/.wh.keep")
    local res = assert(core.layer_whiteouts(dir .. "/l"))
    assert.are.equal(1, res.whiteouts)
    assert.are.equal(1, res.opaque)
    assert.are.equal("character special file 0,0", sh_ok("stat -c '%F %t,%T' " .. dir .. "/l/gone"):gsub("\n", ""))
    assert.are.equal("y", core.getxattr(dir .. "/l/opq", "trusted.overlay.opaque"))
    assert.are.equal("gone\nkeep\nopq\n", sh_ok("ls -A " .. dir .. "/l | sort"))
    assert.are.equal("new\n", sh_ok("ls -A " .. dir .. "/l/opq"))
    cli.sh("rm -rf " .. cli.quote(dir))
  end)
end)

describe("oci export", function()
  leaks.guard()

  it("writes a layout umoci unpacks", function()
    if not have("umoci") then
      pending("umoci is not installed (tools/deps.sh installs it)")
    end
    local s = shared_image()
    local bundle = s.dir .. "/umoci-bundle"
    sh_ok(string.format("umoci unpack --image %s:latest %s", cli.quote(s.layout), cli.quote(bundle)))
    assert.truthy(core.lstat(bundle .. "/rootfs/bin/busybox"))
    assert.are.equal("/bin/busybox", core.readlink(bundle .. "/rootfs/bin/sh"))
    local config = read(bundle .. "/config.json")
    assert.truthy(config:find("GREETING=hello", 1, true), config)
  end)

  it("writes a layout skopeo inspects", function()
    if not have("skopeo") then
      pending("skopeo is not installed (tools/deps.sh installs it)")
    end
    local s = shared_image()
    local out = sh_ok("skopeo inspect oci:" .. s.layout .. ":latest")
    local info = assert(json.decode(out, "skopeo output"))
    assert.are.equal(manifest_digest(s.layout), info.Digest)
    assert.are.equal(2, #info.Layers)
    assert.are.equal("2023-11-14T22:13:20Z", info.Created)
    local archive = assert(json.decode(sh_ok("skopeo inspect oci-archive:" .. s.archive .. ":latest"),
                                       "skopeo output"))
    assert.are.equal(info.Digest, archive.Digest)
  end)

  it("records and reuses layer blobs", function()
    local s = shared_image()
    local img = assert(json.decode(read(s.cache .. "/images/ocibox:latest.json"), "image record"))
    local meta = assert(json.decode(read(s.cache .. "/layers/" .. img.layers[1] .. ".json"), "layer meta"))
    local recorded = meta.blobs["gzip@" .. EPOCH]
    assert.are.equal(manifest_of(s.layout).layers[1].digest, recorded.digest)
    local again = s.dir .. "/again"
    export(s.cache, "ocibox", "--oci", again)
    assert.are.equal(manifest_digest(s.layout), manifest_digest(again))
  end)

  it("writes zstd layers", function()
    local s = shared_image()
    local layout = s.dir .. "/zstd"
    export(s.cache, "ocibox", "--oci", layout, "--compression", "zstd")
    local manifest = manifest_of(layout)
    assert.are.equal("application/vnd.oci.image.layer.v1.tar+zstd", manifest.layers[1].mediaType)
    assert.are.equal("zstd", core.blob_digest(blob(layout, manifest.layers[1].digest)).compression)
  end)

  it("writes a flattened rootfs and tar", function()
    local s = shared_image()
    export(s.cache, "ocibox", "--rootfs", s.dir .. "/rootfs")
    assert.are.equal("/bin/busybox", core.readlink(s.dir .. "/rootfs/bin/ls"))
    export(s.cache, "ocibox", "--tar", s.dir .. "/flat.tar")
    local listing = sh_ok("tar -tf " .. s.dir .. "/flat.tar")
    assert.truthy(listing:find("\nbin/busybox\n", 1, true), listing)
    assert.falsy(listing:find(".wh.", 1, true), listing)
  end)

  it("exports an image without layers", function()
    local dir = cli.tmpdir("nsbuild-empty")
    local path = write(dir .. "/empty.lua", 'return scratch():cmd { "/x" }:tag "empty"')
    nsbuild_ok({ "--cache", dir .. "/cache", "-q", path })
    export(dir .. "/cache", "empty", "--oci", dir .. "/layout")
    assert.are.same({}, manifest_of(dir .. "/layout").layers)
    export(dir .. "/cache", "empty", "--rootfs", dir .. "/rootfs")
    assert.are.same({}, cli.entries(dir .. "/rootfs"))
    cli.sh("rm -rf " .. cli.quote(dir))
  end)

  it("loads and runs in podman", function()
    if not have("podman") or not have("runc") then
      pending("podman or runc is not installed (tools/deps.sh installs them)")
    end
    local s = shared_image()
    local loaded = sh_ok("podman load -q -i " .. s.archive)
    local name = loaded:match("Loaded image: (%S+)")
    assert.is_not_nil(name, loaded)
    -- This machine's root lacks CAP_SYS_RESOURCE, so podman's default rlimits
    -- (nofile and nproc raised to 1048576) cannot be set: lower ones can.
    local out = sh_ok("podman run --rm --runtime runc --network none --ulimit nofile=1024:1024"
                      .. " --ulimit nproc=1024:1024 " .. name)
    assert.are.equal("hello from the image\n", out)
    cli.sh("podman rmi -f " .. name)
  end)

  it("gives identical digests twice", function()
    local dir = cli.tmpdir("nsbuild-repro")
    local body = [[return bb:run("echo one > /f; mkdir /d; echo two > /d/g"):tag "repro"]]
    local digests = {}
    for i = 1, 2 do
      build(dir .. "/" .. i, dir .. "/cache" .. i, body)
      export(dir .. "/cache" .. i, "repro", "--oci", dir .. "/layout" .. i)
      digests[i] = manifest_digest(dir .. "/layout" .. i)
      -- The second build runs a second later, so the files it writes have other mtimes.
      os.execute("sleep 1")
    end
    assert.are.equal(digests[1], digests[2])
    cli.sh("rm -rf " .. cli.quote(dir))
  end)

  it("gives identical digests without an epoch", function()
    local dir = cli.tmpdir("nsbuild-repro")
    local body = [[return bb:run("echo one > /f"):tag "repro"]]
    local digests = {}
    for i = 1, 2 do
      build(dir .. "/" .. i, dir .. "/cache" .. i, body)
      nsbuild_ok({ "export", "--cache", dir .. "/cache" .. i, "repro", "--oci", dir .. "/layout" .. i })
      digests[i] = manifest_digest(dir .. "/layout" .. i)
      os.execute("sleep 1")
    end
    assert.are.equal(digests[1], digests[2])
    cli.sh("rm -rf " .. cli.quote(dir))
  end)

  it("keeps mtimes with --source-date-epoch none", function()
    local dir = cli.tmpdir("nsbuild-repro")
    build(dir .. "/1", dir .. "/cache", [[return bb:run("echo one > /f"):tag "dated"]])
    nsbuild_ok({ "export", "--cache", dir .. "/cache", "--source-date-epoch", "none", "dated",
                 "--tar", dir .. "/flat.tar" })
    local listing = cli.sh("tar -tvf " .. dir .. "/flat.tar ./f f 2>/dev/null")
    assert.is_nil(listing:find("1970-01-01", 1, true), listing)
    cli.sh("rm -rf " .. cli.quote(dir))
  end)
end)

describe("oci import", function()
  leaks.guard()
  local dir, cache

  before_each(function()
    dir = cli.tmpdir("nsbuild-import")
    cache = dir .. "/cache"
  end)

  after_each(function()
    cli.sh("rm -rf " .. cli.quote(dir))
  end)

  local function recipe(body)
    return write(dir .. "/import.lua", body)
  end

  it("builds on a layout umoci made", function()
    if not have("umoci") then
      pending("umoci is not installed (tools/deps.sh installs it)")
    end
    local s = shared_image()
    export(s.cache, "ocibox", "--rootfs", dir .. "/tree")
    local layout = dir .. "/umoci"
    -- umoci repack, not umoci insert: umoci 0.4.7's insert ends its layer tar
    -- without the last entry's padding and the end-of-archive blocks, which
    -- Go's tar reader accepts and libarchive rejects as a truncated archive.
    sh_ok("umoci init --layout " .. layout .. " && umoci new --image " .. layout .. ":base"
          .. " && umoci unpack --image " .. layout .. ":base " .. dir .. "/bundle >/dev/null"
          .. " && cp -a " .. dir .. "/tree/. " .. dir .. "/bundle/rootfs/"
          .. " && umoci repack --image " .. layout .. ":base " .. dir .. "/bundle"
          .. " && umoci config --image " .. layout .. ":base --config.env GREETING=umoci"
          .. " --config.cmd /bin/sh")
    local path = recipe(string.format([[
return from(oci(%q, "base")):run("echo built on $GREETING > /built"):tag "onumoci"
]], layout))
    nsbuild_ok({ "--cache", cache, "-q", path })
    local out = run(cache, "onumoci", "cat", "/built")
    assert.are.equal("built on umoci\n", out)
  end)

  it("builds on a skopeo docker-archive", function()
    if not have("skopeo") then
      pending("skopeo is not installed (tools/deps.sh installs it)")
    end
    local s = shared_image()
    local archive = dir .. "/docker.tar"
    sh_ok(string.format("skopeo copy oci:%s:latest docker-archive:%s:ocibox:v1", s.layout, archive))
    local path = recipe(string.format([[
return from(oci(%q)):run("echo from docker > /x"):tag "ondocker"
]], archive))
    nsbuild_ok({ "--cache", cache, "-q", path })
    assert.are.equal("from docker\n", run(cache, "ondocker", "cat", "/x"))
    assert.are.equal("hello from the image\n", run(cache, "ondocker"))
  end)

  it("keeps whiteouts and opaque dirs", function()
    build(dir, cache, [[
return bb:run("mkdir -p /d && echo old > /d/old && echo gone > /gone")
  :run("rm /gone /bin/vi && rm -rf /d && mkdir /d && echo new > /d/new")
  :tag "deleting"
]])
    local layout = dir .. "/layout"
    export(cache, "deleting", "--oci", layout)
    local path = recipe(string.format("return from(oci(%q)):tag \"back\"", layout))
    local other = dir .. "/other"
    nsbuild_ok({ "--cache", other, "-q", path })
    local out = run(other, "back", "sh", "-c", "ls /d; ls /gone /bin/vi 2>&1; ls /bin/ls")
    assert.are.equal("new\nls: /gone: No such file or directory\nls: /bin/vi: No such file or directory\n"
                     .. "/bin/ls\n", out)
    export(other, "back", "--oci", dir .. "/again")
    assert.are.equal(manifest_digest(layout), manifest_digest(dir .. "/again"))
  end)

  it("copies up a hardlink to a lower file", function()
    local s = shared_image()
    local layout = dir .. "/layout"
    sh_ok("cp -a " .. s.layout .. " " .. layout)
    -- busybox picks its applet by the name it runs as, so the link is named busybox too.
    tar.write(dir .. "/link.tar", { { name = "opt/", type = "dir" },
                                    { name = "opt/busybox", type = "hardlink", linkname = "bin/busybox" } })
    append_layer(layout, dir .. "/link.tar")
    nsbuild_ok({ "--cache", cache, "-q", recipe(string.format("return from(oci(%q)):tag \"linked\"", layout)) })
    assert.are.equal("copied up\n", run(cache, "linked", "/opt/busybox", "echo", "copied up"))
    local top = store_layers(cache)
    assert.are.equal(3, #top)
  end)
end)

describe("oci import of bad input", function()
  leaks.guard()
  local dir, cache, layout

  before_each(function()
    local s = shared_image()
    dir = cli.tmpdir("nsbuild-bad")
    cache, layout = dir .. "/cache", dir .. "/layout"
    sh_ok("cp -a " .. s.layout .. " " .. layout)
  end)

  after_each(function()
    cli.sh("rm -rf " .. cli.quote(dir))
  end)

  -- Build an import of the layout; return its output and assert that it failed
  -- and left no layer and no work directory in the store.
  local function import_fails()
    local path = write(dir .. "/bad.lua", string.format("return from(oci(%q)):tag \"bad\"", layout))
    local out, code = cli.run({ "--cache", cache, "-q", path })
    assert.are_not.equal(0, code, out)
    assert.are.same({}, store_layers(cache))
    assert.are.same({}, cli.entries(cache .. "/tmp"))
    return out
  end

  it("rejects a corrupted blob", function()
    local digest = manifest_of(layout).layers[2].digest
    sh_ok("printf 'X' | dd of=" .. blob(layout, digest) .. " bs=1 seek=100 conv=notrunc status=none")
    local out = import_fails()
    assert.truthy(out:find("layer 2 blob " .. digest .. " is corrupt", 1, true), out)
  end)

  it("rejects a missing blob", function()
    local digest = manifest_of(layout).layers[1].digest
    os.remove(blob(layout, digest))
    local out = import_fails()
    assert.truthy(out:find("layer 1 blob " .. digest .. " is missing", 1, true), out)
  end)

  it("rejects a manifest digest mismatch", function()
    local digest = manifest_digest(layout)
    write(blob(layout, digest), read(blob(layout, digest)) .. " ")
    local out = import_fails()
    assert.truthy(out:find("manifest blob " .. digest .. " is corrupt", 1, true), out)
  end)

  it("rejects a layer with ..", function()
    tar.write(dir .. "/evil.tar", { { name = "../evil", data = "x\n" } })
    append_layer(layout, dir .. "/evil.tar")
    local digest = manifest_of(layout).layers[3].digest
    local out = import_fails()
    assert.truthy(out:find("layer blob " .. digest, 1, true), out)
    assert.truthy(out:find("'..'", 1, true), out)
    assert.falsy(core.lstat(dir .. "/evil"))
  end)
end)

describe("oci runtime bundle", function()
  leaks.guard()

  local function bundle(name)
    local s = shared_image()
    local path = s.dir .. "/" .. name
    export(s.cache, "ocibox", "--bundle", path, "--", "/bin/sh", "-c",
           "echo $GREETING from $(hostname); grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status")
    return path
  end

  local expected = "hello from nsbuild\nNoNewPrivs:\t1\nSeccomp:\t2\n"

  it("runs under runc", function()
    if not have("runc") then
      pending("runc is not installed (tools/deps.sh installs it)")
    end
    local path = bundle("bundle-runc")
    local out = sh_ok("cd " .. path .. " && runc run --bundle " .. path .. " nsbuild-oci-runc-$$ </dev/null")
    assert.are.equal(expected, out)
  end)

  it("runs under crun", function()
    if not have("crun") then
      pending("crun is not installed (tools/deps.sh installs it)")
    end
    local path = bundle("bundle-crun")
    -- crun rejects a hybrid cgroup layout, so the cgroup2 tree beside the v1
    -- controllers is unmounted in a private mount namespace of this command only.
    local out = sh_ok("unshare --mount --propagation private -- sh -c '"
                      .. "if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi; "
                      .. "cd " .. path .. " && crun run --bundle " .. path .. " nsbuild-oci-crun-$$ </dev/null'")
    assert.are.equal(expected, out)
  end)

  it("maps the policy", function()
    local s = shared_image()
    local policy_file = write(s.dir .. "/policy.lua", [[
return { hostname = "mapped", readonly = true, caps = { keep = { "chown" } },
         rlimits = { nofile = 256 }, limits = { memory = "64M", pids = 32 } }
]])
    local path = s.dir .. "/bundle-policy"
    export(s.cache, "ocibox", "--bundle", path, "--policy", policy_file)
    local spec = assert(json.decode(read(path .. "/config.json"), "config.json"))
    assert.are.equal("mapped", spec.hostname)
    assert.is_true(spec.root.readonly)
    assert.are.same({ "CAP_CHOWN" }, spec.process.capabilities.bounding)
    assert.are.same({ { type = "RLIMIT_NOFILE", soft = 256, hard = 256 } }, spec.process.rlimits)
    assert.are.equal(64 * 1024 * 1024, spec.linux.resources.memory.limit)
    assert.are.equal(32, spec.linux.resources.pids.limit)
    assert.are.same({ "/bin/sh", "-c", "echo $GREETING from the image" }, spec.process.args)
  end)
end)

describe("oci registry round trip", function()
  leaks.guard()

  -- Start Debian's docker-registry on 127.0.0.1 with its storage in dir; return
  -- its port and pid once it listens.
  local function start_registry(dir)
    local port = 20000 + core.getpid() % 20000
    write(dir .. "/registry.yml", string.format([[
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: %s/storage
http:
  addr: 127.0.0.1:%d
]], dir, port))
    local pid = sh_ok(string.format("docker-registry serve %s/registry.yml >%s/registry.log 2>&1 & echo $!",
                                    dir, dir)):match("%d+")
    for _ = 1, 100 do
      if read(dir .. "/registry.log"):find("listening on", 1, true) then
        return port, pid
      end
      os.execute("sleep 0.1")
    end
    cli.sh("kill " .. pid)
    error("docker-registry did not listen within 10 s: " .. read(dir .. "/registry.log"))
  end

  it("pushes, pulls and runs the same digest", function()
    if not have("docker-registry") or not have("skopeo") then
      pending("docker-registry or skopeo is not installed (tools/deps.sh installs them)")
    end
    local s = shared_image()
    local dir = cli.tmpdir("nsbuild-registry")
    local port, pid = start_registry(dir)
    local ok, err = pcall(function()
      local remote = string.format("docker://127.0.0.1:%d/nsbuild/ocibox:v1", port)
      sh_ok(string.format("skopeo copy --dest-tls-verify=false oci:%s:latest %s", s.layout, remote))
      local pulled = dir .. "/pulled"
      sh_ok(string.format("skopeo copy --src-tls-verify=false %s oci:%s:v1", remote, pulled))
      assert.are.equal(manifest_digest(s.layout), manifest_digest(pulled))
      local path = write(dir .. "/pulled.lua", string.format([[
return from(oci(%q, "v1")):tag "pulled"
]], pulled))
      local cache = dir .. "/cache"
      nsbuild_ok({ "--cache", cache, "-q", path })
      assert.are.equal("hello from the image\n", run(cache, "pulled"))
      export(cache, "pulled", "--oci", dir .. "/again")
      assert.are.equal(manifest_digest(s.layout), manifest_digest(dir .. "/again"))
    end)
    cli.sh("kill " .. pid)
    cli.sh("rm -rf " .. cli.quote(dir))
    assert(ok, err)
  end)
end)
