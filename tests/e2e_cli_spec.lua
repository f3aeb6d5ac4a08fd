-- The command line beyond building: the REPL, local .deb sources, and the
-- errors for bad input.
local cli = require "support.cli"
local leaks = require "support.leaks"

local cache = "build/test-cache"

describe("nsbuild repl", function()
  leaks.guard()

  local function repl(input)
    return cli.sh("printf '%s' " .. cli.quote(input) .. " | " .. cli.nsbuild .. " repl")
  end

  it("keeps a global between lines", function()
    local out, code = repl("x = 40\nx + 2\n")
    assert.are.equal(0, code)
    assert.matches("\n?nsbuild> nsbuild> 42\n", out)
  end)

  it("continues an incomplete chunk", function()
    local out = repl("t = {\n1, 2}\n#t\n")
    assert.matches(">> ", out, 1, true)
    assert.matches("nsbuild> 2\n", out, 1, true)
  end)

  it("prints a traceback and goes on", function()
    local out, code = repl("error('boom')\n1 + 1\n")
    assert.are.equal(0, code)
    assert.matches("stdin:1: boom\nstack traceback:", out, 1, true)
    assert.matches("nsbuild> 2\n", out, 1, true)
  end)

  it("has the API loaded", function()
    local out = repl("type(from), type(deb), type(core.clone)\n")
    assert.matches('"function"\t"function"\t"function"', out, 1, true)
  end)
end)

describe("deb source", function()
  leaks.guard()
  local dir

  before_each(function()
    dir = cli.tmpdir("nsbuild-deb")
  end)

  after_each(function()
    cli.sh("rm -rf " .. cli.quote(dir))
  end)

  it("builds from a local .deb file", function()
    local out, code = cli.sh("cd " .. dir .. " && apt-get download -q -o APT::Sandbox::User=root busybox-static")
    assert.are.equal(0, code, out)
    local deb = cli.sh("ls " .. dir .. "/*.deb"):gsub("\n$", "")
    local recipe = dir .. "/local.lua"
    local f = assert(io.open(recipe, "w"))
    f:write(string.format([[
return from(deb %q)
  :run { "/bin/busybox", "--install", "-s", "/bin" }
  :tag "local-busybox"
]], deb))
    f:close()
    out, code = cli.run({ "--cache", dir .. "/cache", recipe })
    assert.are.equal(0, code, out)
    assert.matches("[1/2] deb " .. deb, out, 1, true)
    out, code = cli.run({ "run", "--cache", dir .. "/cache", "local-busybox", "--", "busybox", "true" })
    assert.are.equal(0, code, out)
  end)

  it("rejects a name that is neither package nor path", function()
    local recipe = dir .. "/bad.lua"
    local f = assert(io.open(recipe, "w"))
    f:write('return from(deb "Bad Name")\n')
    f:close()
    local out, code = cli.run({ "--cache", dir .. "/cache", recipe })
    assert.are.equal(125, code)
    assert.matches("bad.lua:1: deb: invalid package name 'Bad Name'", out, 1, true)
  end)
end)

describe("nsbuild run", function()
  leaks.guard()

  it("names a missing image", function()
    local out, code = cli.run({ "run", "--cache", cache, "no-such-image" })
    assert.are.equal(125, code)
    assert.matches("image 'no-such-image' not found", out, 1, true)
  end)

  it("rejects an unknown option", function()
    local out, code = cli.run({ "run", "--frobnicate", "busybox" })
    assert.are.equal(125, code)
    assert.matches("unknown option '--frobnicate'", out, 1, true)
  end)

  it("needs a recipe to build", function()
    local out, code = cli.run({ "--no-cache" })
    assert.are.equal(125, code)
    assert.matches("missing RECIPE.lua", out, 1, true)
  end)
end)
