-- nsbuild RECIPE --debug: a failed run step opens a shell (or the Lua REPL) in
-- its container, with the files as the step left them, and commits nothing.
local cli = require "support.cli"
local leaks = require "support.leaks"

describe("--debug", function()
  leaks.guard()
  local dir, cache, recipe

  before_each(function()
    dir = cli.tmpdir("nsbuild-debug")
    cache = dir .. "/cache"
    recipe = dir .. "/recipe.lua"
    local f = assert(io.open(recipe, "w"))
    f:write([[
return from(deb "busybox-static")
  :run { "/bin/busybox", "--install", "-s", "/bin" }
  :run "echo written-by-step-3 > /three"
  :run "echo partial > /four; exit 5"
  :tag "debugged"
]])
    f:close()
  end)

  after_each(function()
    cli.sh("rm -rf " .. cli.quote(dir))
  end)

  local function debug_build(mode, input)
    local option = mode and ("--debug=" .. mode) or "--debug"
    return cli.sh("printf '%s' " .. cli.quote(input) .. " | " .. cli.nsbuild .. " --cache " .. cache
                  .. " --progress plain " .. option .. " " .. recipe)
  end

  it("opens a shell with the step's files", function()
    local out, code = debug_build(nil, "cat /three /four; hostname\n")
    assert.are.equal(5, code)
    assert.matches("opening a shell in the failed step's container", out, 1, true)
    assert.matches("written-by-step-3\npartial\nnsbuild\n", out, 1, true)
  end)

  it("opens the Lua REPL", function()
    local out, code = debug_build("repl", "io.open('/three'):read('l')\n")
    assert.are.equal(5, code)
    assert.matches('nsbuild> "written-by-step-3"', out, 1, true)
  end)

  it("leaves the store as it was", function()
    local _, code = cli.run({ "--cache", cache, "--progress", "quiet", recipe })
    assert.are.equal(5, code)
    local layers = cli.entries(cache .. "/layers")
    local steps = cli.entries(cache .. "/steps")
    debug_build(nil, "echo changed > /three; touch /new\n")
    assert.are.same(layers, cli.entries(cache .. "/layers"))
    assert.are.same(steps, cli.entries(cache .. "/steps"))
    assert.are.same({}, cli.entries(cache .. "/tmp"))
    assert.are.same({}, cli.entries(cache .. "/images"))
  end)

  it("says how to get there without --debug", function()
    local out = cli.run({ "--cache", cache, "--progress", "quiet", recipe })
    assert.matches("rerun with --debug for a shell in its container", out, 1, true)
  end)

  it("rejects an unknown mode", function()
    local out, code = cli.run({ "--cache", cache, "--debug=gdb", recipe })
    assert.are.equal(125, code)
    assert.matches("invalid --debug 'gdb'", out, 1, true)
  end)
end)
