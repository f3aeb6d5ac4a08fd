-- core.sha256, core.sha256_file and core.sha256_new against known vectors (FIPS 180-2).
local core = require "nsbuild.core"

local EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
local ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  assert(f:close())
end

describe("core.sha256", function()
  it("hashes the empty string", function()
    assert.equal(EMPTY, core.sha256(""))
  end)

  it("hashes abc", function()
    assert.equal(ABC, core.sha256("abc"))
  end)

  it("hashes bytes with NUL", function()
    -- printf 'a\0b' | sha256sum
    assert.equal("59b271ae1bbcb1d31d41929817f4b16fb439eb4f31520b5ad1d5ce98920a7138", core.sha256("a\0b"))
  end)

  it("raises on a non-string", function()
    assert.has_error(function() core.sha256({}) end)
  end)
end)

describe("core.sha256_file", function()
  local path

  before_each(function()
    path = os.tmpname()
  end)

  after_each(function()
    os.remove(path)
  end)

  it("equals the string digest", function()
    write_file(path, "abc")
    assert.equal(ABC, core.sha256_file(path))
  end)

  it("hashes an empty file", function()
    write_file(path, "")
    assert.equal(EMPTY, core.sha256_file(path))
  end)

  it("hashes a file of many blocks", function()
    local data = string.rep("0123456789abcdef", 20000) .. "tail"  -- about 5 read blocks
    write_file(path, data)
    assert.equal(core.sha256(data), core.sha256_file(path))
  end)

  it("fails on a missing file", function()
    os.remove(path)
    local digest, message, errno = core.sha256_file(path)
    assert.is_nil(digest)
    assert.matches("sha256 '" .. path .. "'", message, 1, true)
    assert.equal(2, errno)
  end)

  it("fails on a directory", function()
    local digest, message, errno = core.sha256_file("/")
    assert.is_nil(digest)
    assert.matches("Is a directory", message, 1, true)
    assert.equal(21, errno)  -- EISDIR
  end)
end)

describe("core.sha256_new", function()
  it("streams pieces like one-shot", function()
    local data = string.rep("nsbuild ", 10000)
    local ctx = core.sha256_new()
    for i = 1, #data, 777 do
      ctx:update(data:sub(i, i + 776))
    end
    assert.equal(core.sha256(data), ctx:hexdigest())
  end)

  it("chains update calls", function()
    local ctx = core.sha256_new()
    assert.equal(ctx, ctx:update("a"))
    assert.equal(ABC, ctx:update("b"):update("c"):hexdigest())
  end)

  it("hashes nothing as empty", function()
    assert.equal(EMPTY, core.sha256_new():hexdigest())
  end)

  it("repeats hexdigest", function()
    local ctx = core.sha256_new():update("abc")
    assert.equal(ABC, ctx:hexdigest())
    assert.equal(ABC, ctx:hexdigest())
  end)

  it("rejects update after hexdigest", function()
    local ctx = core.sha256_new()
    ctx:hexdigest()
    assert.has_error(function() ctx:update("x") end,
      "sha256: update called after hexdigest; create a new context with sha256_new()")
  end)

  it("has a tostring", function()
    local ctx = core.sha256_new()
    assert.equal("sha256 context", tostring(ctx))
    ctx:hexdigest()
    assert.equal("sha256 context (finalised)", tostring(ctx))
  end)
end)
