-- recipes/debian-dev.lua end to end: debootstrap bookworm minbase, apt-get
-- install gcc over the build network, compile a static binary, and ship it
-- alone on scratch. The first build downloads from Debian's mirror (about
-- half a minute here); build/test-cache keeps it for later runs.
local cli = require "support.cli"
local leaks = require "support.leaks"

local cache = "build/test-cache"

describe("debian-dev recipe", function()
  leaks.guard()

  setup(function()
    local out, code = cli.run({ "--cache", cache, "--progress", "plain", "recipes/debian-dev.lua" })
    assert(code == 0, "building recipes/debian-dev.lua failed:\n" .. out)
  end)

  it("prints the greeting", function()
    local out, code = cli.run({ "run", "--cache", cache, "hello" })
    assert.are.equal(0, code, out)
    assert.are.equal("Hello from a static binary built by nsbuild.\n", out)
  end)

  it("ships only the binary", function()
    local record = require("cjson").decode((cli.sh("cat " .. cache .. "/images/hello:latest.json")))
    assert.are.equal(1, #record.layers)
    local files = cli.sh("find " .. cache .. "/layers/" .. record.layers[1] .. " -mindepth 1")
    assert.are.equal(cache .. "/layers/" .. record.layers[1] .. "/hello\n", files)
  end)

  it("has gcc in the development image", function()
    local out, code = cli.run({ "run", "--cache", cache, "debian-dev", "--", "gcc", "--version" })
    assert.are.equal(0, code, out)
    assert.matches("^gcc %(Debian", out)
  end)

  it("rebuilds without running a step", function()
    local out, code = cli.run({ "--cache", cache, "--progress", "plain", "recipes/debian-dev.lua" })
    assert.are.equal(0, code, out)
    assert.is_nil(out:find("done in", 1, true))
    assert.matches("built hello: nothing to do, every step was cached", out, 1, true)
  end)
end)
