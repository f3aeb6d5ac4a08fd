local core = require "nsbuild.core"
local leaks = require "support.leaks"

-- Every change of credentials happens in a child made with core.clone, so the
-- busted process keeps its own capabilities.
local function run_child(fn)
  local pid, errfd = core.clone({}, fn)
  local ok, err = pcall(core.await_exec, errfd)
  errfd:close()
  local _, how, code = core.waitpid(pid)
  return ok, err, how, code
end

local function read_file(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

--- Run fn(w) in a child, where w is the write end of a pipe, and return what
-- the child wrote on it.  Fail the test when the child failed.  The output
-- goes through a pipe because the child may have dropped the rights to open a file.
local function child_output(fn)
  local r, w = core.pipe()
  local ok, err, how, code = run_child(function()
    fn(w)
    return 0
  end)
  w:close()
  local text = r:read_all()
  r:close()
  assert(ok, err)
  assert.are.same({ "exited", 0 }, { how, code })
  return text
end

--- Parse the "Key:\tvalue" lines of a /proc/PID/status copy.
local function parse_status(text)
  local fields = {}
  for key, value in text:gmatch("([%w_]+):%s*([^\n]*)") do
    fields[key] = value:match("^(.-)%s*$")
  end
  return fields
end

--- Return the /proc/self/status mask of a list of capability names.
local function mask(names)
  local m = 0
  for _, name in ipairs(names) do
    m = m | (1 << core.cap_value(name))
  end
  return string.format("%016x", m)
end

local function sorted(list)
  local copy = { table.unpack(list) }
  table.sort(copy)
  return copy
end

--- Run setup in a child, then return the parsed status of a process it execs.
local function status_after_exec(setup)
  return parse_status(child_output(function(w)
    setup()
    assert(w:set_cloexec(false))
    local script = "cat /proc/self/status >&" .. w:fileno()
    core.execve("/bin/sh", { "sh", "-c", script }, { "PATH=/bin:/usr/bin" })
    error("exec /bin/sh failed")
  end))
end

--- Run setup in a child and return the child's own parsed status.
local function status_in_child(setup)
  return parse_status(child_output(function(w)
    setup()
    assert(w:write(read_file("/proc/self/status")))
  end))
end

local BOUNDING = { "chown", "dac_override", "kill", "net_bind_service", "setgid", "setpcap", "setuid" }
local KEPT = { "chown", "kill", "net_bind_service" }

describe("core.cap_names", function()
  it("lists every capability of the kernel", function()
    local last = tonumber(read_file("/proc/sys/kernel/cap_last_cap"))
    local names = core.cap_names()
    assert.are.equal(last + 1, #names)
    assert.is_truthy(table.concat(names, " "):find("net_admin", 1, true))
  end)

  it("sorts by name", function()
    local names = core.cap_names()
    assert.are.same(sorted(names), names)
  end)
end)

describe("core.cap_value", function()
  it("returns the kernel numbers", function()
    assert.are.equal(0, core.cap_value("chown"))
    assert.are.equal(12, core.cap_value("net_admin"))
    assert.are.equal(21, core.cap_value("sys_admin"))
  end)

  it("rejects the CAP_ spelling", function()
    local ok, err = pcall(core.cap_value, "CAP_CHOWN")
    assert.is_false(ok)
    assert.matches("unknown capability 'CAP_CHOWN': names are lowercase without CAP_", err, 1, true)
  end)

  it("rejects an unknown name", function()
    local ok, err = pcall(core.cap_value, "no_such_cap")
    assert.is_false(ok)
    assert.matches("unknown capability 'no_such_cap'", err, 1, true)
  end)

  it("fails for a number beyond the kernel", function()
    local last = tonumber(read_file("/proc/sys/kernel/cap_last_cap"))
    local ok, msg, errno = core.cap_value(tostring(last + 1))
    assert.is_nil(ok)
    assert.matches("not supported by the running kernel", msg, 1, true)
    assert.are.equal(22, errno)
  end)
end)

describe("core.caps_set", function()
  leaks.guard()

  local sets = {
    bounding = BOUNDING, effective = KEPT, permitted = KEPT, inheritable = {}, ambient = {},
  }

  it("sets the sets of the process", function()
    local status = status_in_child(function() assert(core.caps_set(sets)) end)
    assert.are.equal(mask(BOUNDING), status.CapBnd)
    assert.are.equal(mask(KEPT), status.CapEff)
    assert.are.equal(mask(KEPT), status.CapPrm)
    assert.are.equal(mask({}), status.CapInh)
    assert.are.equal(mask({}), status.CapAmb)
  end)

  it("matches caps_get", function()
    local text = child_output(function(w)
      assert(core.caps_set(sets))
      local got = core.caps_get()
      for _, set in ipairs({ "bounding", "effective", "permitted", "inheritable", "ambient" }) do
        w:write(set .. "=" .. table.concat(got[set], ",") .. "\n")
      end
    end)
    assert.matches("bounding=" .. table.concat(BOUNDING, ",") .. "\n", text, 1, true)
    assert.matches("effective=" .. table.concat(KEPT, ",") .. "\n", text, 1, true)
    assert.matches("permitted=" .. table.concat(KEPT, ",") .. "\n", text, 1, true)
    assert.matches("inheritable=\n", text, 1, true)
    assert.matches("ambient=\n", text, 1, true)
  end)

  it("gives root the bounding set after exec", function()
    local status = status_after_exec(function()
      assert(core.caps_set({ bounding = KEPT, effective = KEPT, permitted = KEPT }))
    end)
    assert.are.equal(mask(KEPT), status.CapBnd)
    assert.are.equal(mask(KEPT), status.CapEff)
    assert.are.equal(mask(KEPT), status.CapPrm)
    assert.are.equal(mask({}), status.CapInh)
    assert.are.equal(mask({}), status.CapAmb)
  end)

  it("leaves a non-root user nothing after exec", function()
    local status = status_after_exec(function()
      assert(core.set_keepcaps(true))
      assert(core.setresgid(65534, 65534, 65534))
      assert(core.setresuid(65534, 65534, 65534))
      assert(core.caps_set({ bounding = KEPT, effective = KEPT, permitted = KEPT }))
    end)
    assert.are.equal("65534\t65534\t65534\t65534", status.Uid)
    assert.are.equal(mask(KEPT), status.CapBnd)
    assert.are.equal(mask({}), status.CapEff)
    assert.are.equal(mask({}), status.CapPrm)
    assert.are.equal(mask({}), status.CapInh)
  end)

  it("passes ambient capabilities through exec", function()
    local bind = { "net_bind_service" }
    local status = status_after_exec(function()
      assert(core.set_keepcaps(true))
      assert(core.setresgid(65534, 65534, 65534))
      assert(core.setresuid(65534, 65534, 65534))
      assert(core.caps_set({
        bounding = KEPT, effective = bind, permitted = bind, inheritable = bind, ambient = bind,
      }))
    end)
    assert.are.equal("65534\t65534\t65534\t65534", status.Uid)
    assert.are.equal(mask(bind), status.CapAmb)
    assert.are.equal(mask(bind), status.CapEff)
    assert.are.equal(mask(bind), status.CapPrm)
    assert.are.equal(mask(bind), status.CapInh)
    assert.are.equal(mask(KEPT), status.CapBnd)
  end)

  it("fails to add back a dropped capability", function()
    local text = child_output(function(w)
      assert(core.caps_set({ bounding = KEPT, effective = KEPT, permitted = KEPT }))
      local got, msg, errno = core.caps_set({ bounding = BOUNDING })
      w:write(string.format("%s|%s|%s", got, msg, errno))
    end)
    assert.are.equal("nil|caps_set: capability 'dac_override' is not in the bounding set "
      .. "of this process and cannot be added|1", text)
  end)

  it("rejects effective outside permitted", function()
    local ok, err = run_child(function()
      core.caps_set({ bounding = KEPT, effective = KEPT, permitted = { "chown" } })
      return 0
    end)
    assert.is_false(ok)
    assert.matches("effective capability 'kill' is not in the permitted set", err, 1, true)
  end)

  it("rejects ambient outside inheritable", function()
    local ok, err = run_child(function()
      core.caps_set({ bounding = KEPT, effective = KEPT, permitted = KEPT, ambient = { "kill" } })
      return 0
    end)
    assert.is_false(ok)
    assert.matches("ambient capability 'kill' must also be in the permitted and inheritable sets",
      err, 1, true)
  end)

  it("rejects an unknown name", function()
    local ok, err = run_child(function()
      core.caps_set({ bounding = { "chown", "no_such_cap" } })
      return 0
    end)
    assert.is_false(ok)
    assert.matches("unknown capability 'no_such_cap'", err, 1, true)
  end)

  it("rejects an unknown set", function()
    local ok, err = run_child(function()
      core.caps_set({ effectiv = KEPT })
      return 0
    end)
    assert.is_false(ok)
    assert.matches("unknown option 'effectiv'", err, 1, true)
  end)
end)

describe("core.set_no_new_privs", function()
  leaks.guard()

  it("sets the flag for the process and its exec", function()
    local status = status_after_exec(function()
      assert.is_false(core.get_no_new_privs())
      assert(core.set_no_new_privs())
      assert.is_true(core.get_no_new_privs())
    end)
    assert.are.equal("1", status.NoNewPrivs)
  end)
end)

describe("core.securebits_set", function()
  leaks.guard()

  it("sets exactly the named bits", function()
    local text = child_output(function(w)
      assert(core.securebits_set({ "keep_caps", "no_setuid_fixup" }))
      w:write(table.concat(core.securebits_get(), ","))
    end)
    assert.are.equal("no_setuid_fixup,keep_caps", text)
  end)

  it("shows keepcaps as keep_caps", function()
    local text = child_output(function(w)
      assert(core.set_keepcaps(true))
      w:write(table.concat(core.securebits_get(), ","))
    end)
    assert.are.equal("keep_caps", text)
  end)

  it("rejects an unknown bit", function()
    assert.has_error(function() core.securebits_set({ "noroot", "nope" }) end)
  end)
end)

describe("core.setresuid", function()
  leaks.guard()

  it("sets groups, gids and uids", function()
    local status = status_in_child(function()
      assert(core.setgroups({ 10, 20 }))
      assert(core.setresgid(3, 4, 5))
      assert(core.setresuid(6, 7, 8))
    end)
    assert.are.equal("10 20", status.Groups)
    assert.are.equal("3\t4\t5\t4", status.Gid)
    assert.are.equal("6\t7\t8\t7", status.Uid)
  end)

  it("keeps an id given as -1", function()
    local status = status_in_child(function()
      assert(core.setresuid(-1, 9, nil))
    end)
    assert.are.equal("0\t9\t0\t9", status.Uid)
  end)

  it("rejects a negative group", function()
    assert.has_error(function() core.setgroups({ -2 }) end)
  end)
end)

describe("core.umask", function()
  leaks.guard()

  it("returns the previous mask", function()
    local text = child_output(function(w)
      core.umask(tonumber("022", 8))
      local previous = core.umask(tonumber("077", 8))
      w:write(string.format("%o %o", previous, core.umask(0)))
    end)
    assert.are.equal("22 77", text)
  end)

  it("rejects a mask above 0777", function()
    assert.has_error(function() core.umask(512) end)
  end)
end)
