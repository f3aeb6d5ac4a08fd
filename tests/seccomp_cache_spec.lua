-- Generated seccomp programs: generated once, kept on disk, checked when read.
local core = require "nsbuild.core"
local seccomp_profile = require "nsbuild.seccomp_profile"

-- A fresh copy of the module, as a new nsbuild process would load it.
local function fresh_cache()
  package.loaded["nsbuild.seccomp_cache"] = nil
  return require "nsbuild.seccomp_cache"
end

local function temp_dir()
  local p = io.popen("mktemp -d")
  local dir = p:read("l")
  p:close()
  return dir
end

local function list(dir)
  return core.listdir(dir) or {}
end

describe("seccomp_cache.key", function()
  local cache = fresh_cache()

  it("is equal for equal profiles", function()
    assert.are.equal(cache.key(seccomp_profile.default()), cache.key(seccomp_profile.default()))
  end)

  it("differs between profiles", function()
    assert.are_not.equal(cache.key(seccomp_profile.default()), cache.key(seccomp_profile.strict()))
  end)

  it("ignores the order of table keys", function()
    local a = { default = "allow", rules = { { action = "errno", syscalls = { "keyctl" } } } }
    local b = { rules = { { syscalls = { "keyctl" }, action = "errno" } }, default = "allow" }
    assert.are.equal(cache.key(a), cache.key(b))
  end)

  it("rejects a function in a profile", function()
    assert.has_error(function() cache.key({ default = print }) end)
  end)
end)

describe("seccomp_cache.program", function()
  local dir

  before_each(function() dir = temp_dir() end)
  after_each(function() os.execute("rm -rf " .. dir) end)

  it("returns what core.seccomp_bpf returns", function()
    local program, skipped = fresh_cache().program(seccomp_profile.default(), dir)
    local expected, expected_skipped = core.seccomp_bpf(seccomp_profile.default())
    assert.are.equal(expected, program)
    assert.are.same(expected_skipped, skipped)
  end)

  it("keeps the program in dir", function()
    local cache = fresh_cache()
    cache.program(seccomp_profile.default(), dir)
    assert.are.same({ cache.key(seccomp_profile.default()) .. ".bpf" }, list(dir))
  end)

  it("reads a kept program in a new process", function()
    local first, first_skipped = fresh_cache().program(seccomp_profile.default(), dir)
    local program, skipped = fresh_cache().program(seccomp_profile.default(), dir)
    assert.are.equal(first, program)
    assert.are.same(first_skipped, skipped)
  end)

  it("generates again over a damaged file", function()
    local cache = fresh_cache()
    local expected = cache.program(seccomp_profile.default(), dir)
    local path = dir .. "/" .. cache.key(seccomp_profile.default()) .. ".bpf"
    local data = assert(core.read_file(path))
    assert(core.write_file(path, data:sub(1, -9), tonumber("644", 8)))
    local program = fresh_cache().program(seccomp_profile.default(), dir)
    assert.are.equal(expected, program)
  end)

  it("works without a directory", function()
    local program = fresh_cache().program({ default = "allow" })
    assert.are.equal(0, #program % 8)
  end)
end)
