-- Layered builds end to end: copy and copy_from, cache keys and their
-- invalidation, run options, tarball sources, layer stacking, store commands,
-- and builds killed at random moments. Images are built on busybox-static.
local cli = require "support.cli"
local leaks = require "support.leaks"
local tar = require "support.tar"

local BUSYBOX = [[
local bb = from(deb "busybox-static"):run { "/bin/busybox", "--install", "-s", "/bin" }
]]

local dir, cache

local function write(name, text)
  local path = dir .. "/" .. name
  cli.sh("mkdir -p " .. cli.quote(path:match("^(.*)/")))
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

local function recipe(body)
  return write("recipe.lua", BUSYBOX .. body)
end

local function build(path, ...)
  return cli.run({ "--cache", cache, "--progress", "plain", path, ... })
end

local function run(image, ...)
  return cli.run({ "run", "--cache", cache, image, "--", ... })
end

-- The steps of a build output that ran (not CACHED), as their progress lines.
local function ran_steps(out)
  local list, current = {}, nil
  for line in out:gmatch("[^\n]+") do
    local step = line:match("^%[%d+/%d+%] (.*)$")
    if step then
      current = step
    elseif line:match("^  done in") and current then
      list[#list + 1] = current
    end
  end
  return list
end

local function setup_dirs()
  dir = cli.tmpdir("nsbuild-build")
  cache = dir .. "/cache"
end

local function remove_dirs()
  cli.sh("rm -rf " .. cli.quote(dir))
end

describe("copy", function()
  leaks.guard()
  before_each(setup_dirs)
  after_each(remove_dirs)

  it("copies a tree with excludes", function()
    write("ctx/a.txt", "alpha\n")
    write("ctx/sub/b.txt", "beta\n")
    write("ctx/skip.o", "object\n")
    write("ctx/build/junk", "junk\n")
    cli.sh("ln -s a.txt " .. dir .. "/ctx/link && chmod 4755 " .. dir .. "/ctx/a.txt")
    local path = recipe([[
return bb:copy("ctx", "/data", { exclude = { "*.o", "build" } }):tag "copied"
]])
    local out, code = build(path)
    assert.are.equal(0, code, out)
    out = run("copied", "sh", "-c", "cd /data && find . | sort && cat sub/b.txt && readlink link && stat -c '%a %u:%g' a.txt")
    assert.are.equal(".\n./a.txt\n./link\n./sub\n./sub/b.txt\nbeta\na.txt\n4755 0:0\n", out)
  end)

  it("sets the owner given", function()
    write("f.txt", "x\n")
    local path = recipe([[return bb:copy("f.txt", "/f.txt", { owner = "1000:100" }):tag "owned"]])
    assert.are.equal(0, select(2, build(path)))
    local out = run("owned", "stat", "-c", "%u:%g", "/f.txt")
    assert.are.equal("1000:100\n", out)
  end)

  it("copies a file into a directory", function()
    write("f.txt", "x\n")
    local path = recipe([[return bb:copy("f.txt", "/etc/"):tag "into"]])
    assert.are.equal(0, select(2, build(path)))
    local out = run("into", "cat", "/etc/f.txt")
    assert.are.equal("x\n", out)
  end)

  it("writes through a symlink of the image inside its root", function()
    write("f.txt", "inside\n")
    local outside = cli.tmpdir("nsbuild-outside")
    local path = recipe(string.format([[
return bb:run("ln -s %s /escape")
  :copy("f.txt", "/escape/f.txt")
  :tag "escape"
]], outside))
    local out, code = build(path)
    assert.are.equal(0, code, out)
    assert.are.same({}, cli.entries(outside))
    out = run("escape", "cat", outside .. "/f.txt")
    assert.are.equal("inside\n", out)
    cli.sh("rm -rf " .. cli.quote(outside))
  end)

  it("rejects a missing source", function()
    local path = recipe([[return bb:copy("missing.txt", "/x")]])
    local out, code = build(path)
    assert.are.equal(125, code)
    assert.matches("copy: source not found", out, 1, true)
    assert.matches("missing.txt", out, 1, true)
  end)
end)

describe("cache key", function()
  leaks.guard()
  local path

  before_each(function()
    setup_dirs()
    write("ctx/hello.txt", "hello\n")
    path = recipe([[
return bb:copy("ctx", "/ctx")
  :run("cat /ctx/hello.txt > /out; echo ${GREETING:-none} >> /out", { env = { GREETING = args.greeting } })
  :run("echo last > /last")
  :tag "keyed"
]])
    local out, code = build(path, "--arg", "greeting=hi")
    assert.are.equal(0, code, out)
  end)
  after_each(remove_dirs)

  it("hits when nothing changed", function()
    local out = build(path, "--arg", "greeting=hi")
    assert.are.same({}, ran_steps(out))
    assert.matches("nothing to do, every step was cached", out, 1, true)
  end)

  it("ignores a touched file", function()
    cli.sh("sleep 0.01; touch " .. dir .. "/ctx/hello.txt")
    local out = build(path, "--arg", "greeting=hi")
    assert.are.same({}, ran_steps(out))
  end)

  it("rebuilds from a changed file on", function()
    write("ctx/hello.txt", "changed\n")
    local out = build(path, "--arg", "greeting=hi")
    assert.are.same({ "copy ctx /ctx",
                      "run cat /ctx/hello.txt > /out; echo ${GREETING:-none} >> /out",
                      "run echo last > /last" }, ran_steps(out))
    assert.are.equal("changed\nhi\n", (run("keyed", "cat", "/out")))
  end)

  it("rebuilds the step using a changed arg", function()
    local out = build(path, "--arg", "greeting=hello")
    assert.are.same({ "run cat /ctx/hello.txt > /out; echo ${GREETING:-none} >> /out",
                      "run echo last > /last" }, ran_steps(out))
    assert.are.equal("hello\nhello\n", (run("keyed", "cat", "/out")))
  end)

  it("ignores an arg no step uses", function()
    local out = build(path, "--arg", "greeting=hi", "--arg", "unused=1")
    assert.are.same({}, ran_steps(out))
  end)

  it("rebuilds everything with --no-cache", function()
    local out = build(path, "--arg", "greeting=hi", "--no-cache")
    assert.are.equal(5, #ran_steps(out))
  end)

  it("rejects a malformed --arg", function()
    local out, code = build(path, "--arg", "novalue")
    assert.are.equal(125, code)
    assert.matches("invalid --arg 'novalue'", out, 1, true)
  end)
end)

describe("run step", function()
  leaks.guard()
  before_each(setup_dirs)
  after_each(remove_dirs)

  it("uses env and workdir of the image", function()
    local path = recipe([[
return bb:env { A = "1" }:workdir "/w":run("echo $A-$B > here", { env = { B = "2" } }):tag "envs"
]])
    assert.are.equal(0, select(2, build(path)))
    assert.are.equal("1-2\n", (run("envs", "cat", "/w/here")))
    assert.are.equal("1\n", (run("envs", "sh", "-c", "echo $A$B")))
  end)

  it("keeps a cache mount between builds", function()
    local path = recipe([[
return bb:run("echo $$ >> /cache/runs; cat /cache/runs | wc -l > /count",
              { mounts = { { type = "cache", target = "/cache" } }, env = { N = args.n } })
  :tag "cached-mount"
]])
    assert.are.equal(0, select(2, build(path, "--arg", "n=1")))
    assert.are.equal(0, select(2, build(path, "--arg", "n=2")))
    assert.are.equal("2\n", (run("cached-mount", "sh", "-c", "cat /count | tr -d ' '")))
    assert.are.equal("absent\n", (run("cached-mount", "sh", "-c", "test -e /cache/runs && echo present || echo absent")))
  end)

  it("streams output into the log", function()
    local path = recipe([[return bb:run("echo line-one; echo line-two >&2"):tag "logged"]])
    local out, code = build(path)
    assert.are.equal(0, code, out)
    assert.matches("  | line-one\n", out, 1, true)
    assert.matches("  | line-two\n", out, 1, true)
    local logs = cli.sh("cat " .. cache .. "/logs/*.log")
    assert.matches("line-one", logs, 1, true)
  end)

  it("prints nothing with --progress=quiet", function()
    local path = recipe([[return bb:tag "quiet"]])
    local out, code = cli.run({ "--cache", cache, "--progress", "quiet", path })
    assert.are.equal(0, code)
    assert.are.equal("", out)
  end)

  it("rejects an unknown option", function()
    local path = recipe([[return bb:run("true", { enviroment = {} })]])
    local out, code = build(path)
    assert.are.equal(125, code)
    assert.matches("run: unknown option 'enviroment'", out, 1, true)
  end)
end)

describe("copy_from", function()
  leaks.guard()
  before_each(setup_dirs)
  after_each(remove_dirs)

  it("builds a multi-stage image", function()
    local path = recipe([[
local builder = bb:run "mkdir -p /out && echo built > /out/result && chmod 640 /out/result"
return scratch()
  :copy_from(bb, "/bin/busybox", "/bin/busybox")
  :copy_from(builder, "/out", "/data")
  :entrypoint { "/bin/busybox" }
  :cmd { "cat", "/data/result" }
  :tag "staged"
]])
    local out, code = build(path)
    assert.are.equal(0, code, out)
    out, code = cli.run({ "run", "--cache", cache, "staged" })
    assert.are.equal(0, code, out)
    assert.are.equal("built\n", out)
    assert.are.equal("640\n", (run("staged", "stat", "-c", "%a", "/data/result")))
  end)

  it("fails for a path missing in the other image", function()
    local path = recipe([[return scratch():copy_from(bb, "/nope", "/x")]])
    local out, code = build(path)
    assert.are.equal(125, code)
    assert.matches("nope", out, 1, true)
    assert.are.same({}, cli.entries(cache .. "/tmp"))
  end)
end)

describe("tarball source", function()
  leaks.guard()
  before_each(setup_dirs)
  after_each(remove_dirs)

  local function make_archive(compress, ext)
    cli.sh("mkdir -p " .. dir .. "/root/etc && echo tarred > " .. dir .. "/root/etc/marker")
    local out, code = cli.sh("cd " .. dir .. "/root && tar -c" .. compress .. "f ../rootfs.tar" .. ext .. " .")
    assert.are.equal(0, code, out)
    return "rootfs.tar" .. ext
  end

  for _, case in ipairs({ { "", "" }, { "z", ".gz" }, { "J", ".xz" }, { " --zstd -", ".zst" } }) do
    it("extracts a tar" .. case[2], function()
      if case[2] == ".zst" and not select(2, cli.sh("command -v zstd")) == 0 then
        pending("zstd is not installed")
      end
      local name = make_archive(case[1], case[2])
      local path = write("recipe.lua", string.format([[
return from(tarball %q):copy_from(from(deb "busybox-static"), "/bin/busybox", "/bin/busybox"):tag "tarred"
]], name))
      local out, code = build(path)
      assert.are.equal(0, code, out)
      assert.are.equal("tarred\n", (run("tarred", "/bin/busybox", "cat", "/etc/marker")))
    end)
  end

  it("rejects an archive entry leaving the layer", function()
    local outside = cli.tmpdir("nsbuild-outside")
    tar.write(dir .. "/evil.tar", {
      { name = "escape", type = "symlink", linkname = outside },
      { name = "escape/planted", type = "file", data = "owned\n" },
    })
    local path = write("recipe.lua", [[return from(tarball "evil.tar"):tag "evil"]])
    local out, code = build(path)
    assert.are.equal(125, code)
    assert.matches("written through symlink", out, 1, true)
    assert.are.same({}, cli.entries(outside))
    assert.are.same({}, cli.entries(cache .. "/tmp"))
    cli.sh("rm -rf " .. cli.quote(outside))
  end)
end)

describe("layer stacking", function()
  leaks.guard()
  before_each(setup_dirs)
  after_each(remove_dirs)

  local function check_in(image, script)
    local out, code = run(image, "sh", "-c", script)
    assert.are.equal(0, code, out)
    return out
  end

  it("hides a file removed later", function()
    local path = recipe([[
return bb:run "mkdir /d && echo a > /d/a && echo b > /d/b"
  :run "rm /d/a"
  :tag "whiteout"
]])
    assert.are.equal(0, select(2, build(path)))
    assert.are.equal("b\n", check_in("whiteout", "ls /d"))
  end)

  it("replaces a directory made opaque", function()
    local path = recipe([[
return bb:run "mkdir /d && echo a > /d/old"
  :run "rm -rf /d && mkdir /d && echo n > /d/new"
  :tag "opaque"
]])
    assert.are.equal(0, select(2, build(path)))
    assert.are.equal("new\n", check_in("opaque", "ls /d"))
  end)

  it("changes the type of a path", function()
    local path = recipe([[
return bb:run "echo file > /p"
  :run "rm /p && mkdir /p && echo inner > /p/x"
  :run "rm -rf /p && ln -s /etc /p"
  :run "mkdir -p /q && rm -rf /q && echo now-a-file > /q"
  :tag "types"
]])
    assert.are.equal(0, select(2, build(path)))
    assert.are.equal("/etc\nnow-a-file\n", check_in("types", "readlink /p; cat /q"))
  end)

  it("links to a file of a lower layer", function()
    local path = recipe([[return bb:run("echo lower > /low"):run("ln /low /linked && echo more >> /linked"):tag "uplink"]])
    assert.are.equal(0, select(2, build(path)))
    assert.are.equal("lower\nmore\nlower\nmore\n", check_in("uplink", "cat /low /linked"))
  end)

  it("keeps hardlinks within a layer", function()
    local path = recipe([[return bb:run("echo x > /h1 && ln /h1 /h2"):tag "links"]])
    assert.are.equal(0, select(2, build(path)))
    local out = check_in("links", "stat -c %i /h1 /h2 | uniq | wc -l; stat -c %h /h1")
    assert.are.equal("1\n2\n", out)
  end)

  it("applies metadata changed later", function()
    local path = recipe([[
return bb:run "mkdir /m && echo x > /m/f && chmod 600 /m/f"
  :run "chown 12:34 /m/f && chmod 4755 /m/f && chmod 700 /m && touch -d '2001-02-03 04:05:06' /m"
  :tag "meta"
]])
    assert.are.equal(0, select(2, build(path)))
    local out = check_in("meta", "stat -c '%a %u:%g' /m/f; stat -c '%a %Y' /m")
    assert.are.equal("4755 12:34\n700 981173106\n", out)
  end)

  it("keeps xattrs, sparse files and long names", function()
    local long = string.rep("n", 200)
    tar.write(dir .. "/special.tar", {
      { name = "attrs", type = "file", data = "x", xattrs = { ["user.note"] = "kept" } },
    })
    cli.sh("mkdir -p " .. dir .. "/src/d && echo long > " .. dir .. "/src/d/" .. long)
    cli.sh("truncate -s 64M " .. dir .. "/src/sparse && echo end >> " .. dir .. "/src/sparse")
    local out, code = cli.sh("cd " .. dir .. "/src && tar --format=pax --sparse -rf ../special.tar sparse d")
    assert.are.equal(0, code, out)
    local path = write("recipe.lua", [[
return from(tarball "special.tar"):tag "special"
]])
    out, code = build(path)
    assert.are.equal(0, code, out)
    local layer = cli.sh("ls -d " .. cache .. "/layers/*/ | head -1"):gsub("\n$", "")
    local value = cli.sh("getfattr --only-values -n user.note " .. layer .. "attrs 2>/dev/null")
    assert.are.equal("kept", value)
    local blocks = tonumber((cli.sh("stat -c %b " .. layer .. "sparse")))
    assert.is_true(blocks < 1024, "sparse file takes " .. tostring(blocks) .. " blocks")
    assert.are.equal("long\n", (cli.sh("cat " .. layer .. "d/" .. long)))
  end)
end)

describe("store commands", function()
  leaks.guard()
  before_each(setup_dirs)
  after_each(remove_dirs)

  it("lists, removes and prunes", function()
    local path = recipe([[
return { one = bb:run("echo 1 > /one"):tag "one", two = bb:run("echo 2 > /two"):tag "two" }
]])
    assert.are.equal(0, select(2, build(path)))
    local out = cli.run({ "images", "--cache", cache })
    assert.matches("one:latest", out, 1, true)
    assert.matches("two:latest", out, 1, true)
    local layers_before = #cli.entries(cache .. "/layers")

    local _, exported = cli.run({ "export", "--cache", cache, "two", "--oci", dir .. "/layout" })
    assert.are.equal(0, exported)
    local blobs_before = #cli.entries(cache .. "/blobs/sha256")
    assert.is_true(blobs_before > 0)
    out = cli.run({ "rm", "--cache", cache, "two" })
    assert.matches("removed two:latest", out, 1, true)
    out = cli.run({ "prune", "--cache", cache })
    assert.matches("removed 1 layers", out, 1, true)
    -- The blobs of the two busybox layers "one" still uses stay; the config,
    -- the manifest and the blob of two's own layer go.
    assert.are.equal(2, #cli.entries(cache .. "/blobs/sha256"))
    assert.are.equal(blobs_before - 3, #cli.entries(cache .. "/blobs/sha256"))
    assert.are.equal(layers_before - 2, #cli.entries(cache .. "/layers"))
    assert.are.equal("1\n", (run("one", "cat", "/one")))

    out = cli.run({ "du", "--cache", cache })
    assert.matches("layers", out, 1, true)
    assert.matches("total", out, 1, true)
  end)

  it("names an image missing from rm", function()
    local out, code = cli.run({ "rm", "--cache", cache, "ghost" })
    assert.are.equal(125, code)
    assert.matches("image 'ghost:latest' not found", out, 1, true)
  end)

  it("builds an untagged image", function()
    local path = recipe([[return bb]])
    local out, code = build(path)
    assert.are.equal(0, code, out)
    assert.matches("built (untagged image)", out, 1, true)
  end)

  it("builds only the named image", function()
    local path = recipe([[return { a = bb:tag "a", b = bb:run("false"):tag "b" }]])
    local out, code = build(path, "a")
    assert.are.equal(0, code, out)
    out, code = build(path, "c")
    assert.are.equal(125, code)
    assert.matches("has no image named 'c'", out, 1, true)
  end)
end)

describe("parallel build", function()
  leaks.guard()
  before_each(setup_dirs)
  after_each(remove_dirs)

  it("builds named images side by side", function()
    local path = recipe([[
return { left = bb:run("sleep 0.5; echo l > /l"):tag "left", right = bb:run("sleep 0.5; echo r > /r"):tag "right" }
]])
    assert.are.equal(0, select(2, build(path, "left")))
    local started = tonumber((cli.sh("date +%s.%N")))
    local out, code = build(path, "-j", "2")
    local elapsed = tonumber((cli.sh("date +%s.%N"))) - started
    assert.are.equal(0, code, out)
    assert.matches("[left] built left", out, 1, true)
    assert.matches("[right] built right", out, 1, true)
    assert.are.equal("r\n", (run("right", "cat", "/r")))
    assert.is_true(elapsed < 30, "took " .. elapsed .. "s")
  end)

  it("reports the failing image", function()
    local path = recipe([[return { good = bb:tag "good", bad = bb:run("exit 4"):tag "bad" }]])
    local out, code = build(path, "-j", "2")
    assert.are.equal(4, code)
    assert.matches("nsbuild: error: bad: ", out, 1, true)
  end)

  it("rejects a bad job count", function()
    local path = recipe([[return bb]])
    local out, code = build(path, "-j", "zero")
    assert.are.equal(125, code)
    assert.matches("invalid -j 'zero'", out, 1, true)
  end)
end)

describe("concurrent builds", function()
  leaks.guard()
  before_each(setup_dirs)
  after_each(remove_dirs)

  it("share one store", function()
    local path = recipe([[return bb:run("sleep 0.3; echo $RANDOM > /r"):tag "race"]])
    local line = string.format("%s --cache %s --progress quiet %s", cli.nsbuild, cache, path)
    local out, code = cli.sh(line .. " & a=$!; " .. line .. " & b=$!; wait $a; ra=$?; wait $b; rb=$?; echo $ra $rb")
    assert.are.equal(0, code)
    assert.are.equal("0 0\n", out:match("[^\n]*\n$"))
    assert.are.equal(0, select(2, run("race", "cat", "/r")))
    assert.are.same({}, cli.entries(cache .. "/tmp"))
  end)
end)

describe("killed build", function()
  leaks.guard()
  before_each(setup_dirs)
  after_each(remove_dirs)

  it("leaves a store the next build completes", function()
    local path = recipe([[
return bb:run("for i in 1 2 3 4 5 6 7 8 9 10; do mkdir -p /d$i; echo $i > /d$i/f; sleep 0.03; done")
  :tag "killed"
]])
    -- The busybox layers first, so the kills land in the run step.
    local seed = recipe([[return bb]])
    assert.are.equal(0, select(2, build(seed)))
    path = recipe([[
return bb:run("for i in 1 2 3 4 5 6 7 8 9 10; do mkdir -p /d$i; echo $i > /d$i/f; sleep 0.03; done")
  :tag "killed"
]])
    math.randomseed(os.time())
    for round = 1, 20 do
      local delay = math.random(0, 45) / 100
      local line = string.format("%s --cache %s --progress quiet %s & p=$!; sleep %.2f; kill -9 $p; wait $p",
                                 cli.nsbuild, cache, path, delay)
      cli.sh(line)
      assert.are.same({}, cli.mounts_below(dir), "mounts left after kill " .. round)
      -- Every layer present is complete: it has its metadata file.
      for _, name in ipairs(cli.entries(cache .. "/layers")) do
        if not name:match("%.json$") then
          local _, code = cli.sh("test -f " .. cli.quote(cache .. "/layers/" .. name .. ".json"))
          assert.are.equal(0, code, "layer without metadata after kill " .. round)
        end
      end
    end
    local out, code = build(path)
    assert.are.equal(0, code, out)
    assert.are.equal("10\n", (run("killed", "cat", "/d10/f")))
    -- Opening the store removed what the killed builds left in tmp/.
    assert.are.same({}, cli.entries(cache .. "/tmp"))
  end)
end)
