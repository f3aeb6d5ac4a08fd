local core = require "nsbuild.core"
local leaks = require "support.leaks"
local seccomp_profile = require "nsbuild.seccomp_profile"

local EPERM, EBADF, EXDEV, EACCES, ENOSYS = 1, 9, 18, 13, 38
local SIGSYS = 31
local CLONE_NEWUSER = 0x10000000
local SIGCHLD = 17
local EAFNOSUPPORT = 97
local AF_INET, AF_ALG, AF_VSOCK = 2, 38, 40
local SOCK_STREAM, SOCK_SEQPACKET = 1, 5

local function read_file(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

-- The probe is compiled once, into a directory removed at the end of the file.
local probe_dir, probe, probe_error

local function build_probe()
  local p = io.popen("mktemp -d")
  probe_dir = p:read("l")
  p:close()
  probe = probe_dir .. "/syscall_probe"
  local cmd = string.format("cc -o %s tests/support/syscall_probe.c -lseccomp 2>&1", probe)
  local cc = io.popen(cmd)
  local output = cc:read("a")
  if not cc:close() then
    probe_error = "cannot compile tests/support/syscall_probe.c: " .. output
  end
end

local function remove_probe()
  if probe_dir then
    os.execute("rm -rf " .. probe_dir)
  end
end

--- Run fn in a child made with core.clone; return how it ended and the error
-- it raised before exec, if any.
local function run_child(fn)
  local pid, errfd = core.clone({}, fn)
  local ok, err = pcall(core.await_exec, errfd)
  errfd:close()
  local _, how, code = core.waitpid(pid)
  return how, code, not ok and err or nil
end

--- Call load in a child, then make one syscall there through the probe.
-- Returns the syscall's result and errno.
local function probe_after(load, name, ...)
  local out = probe_dir .. "/result"
  os.remove(out)
  local argv = { probe, out, name, ... }
  for i = 3, #argv do
    argv[i] = tostring(argv[i])
  end
  local how, code, err = run_child(function()
    load()
    core.execve(probe, argv, {})
    error("exec " .. probe .. " failed")
  end)
  assert.is_nil(err)
  assert.are.same({ "exited", 0 }, { how, code })
  local result, errno = read_file(out):match("^(%-?%d+) (%d+)")
  return tonumber(result), tonumber(errno)
end

--- Load profile in a child, then make one syscall there through the probe.
local function probe_under(profile, name, ...)
  return probe_after(function() assert(core.seccomp_load(profile)) end, name, ...)
end

--- Run a shell in a child after load; return its /proc/self/status lines
-- NoNewPrivs and Seccomp.
local function status_after(load)
  local out = os.tmpname()
  local how, code, err = run_child(function()
    load()
    core.execve("/bin/sh", { "sh", "-c", "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status > " .. out },
                { "PATH=/bin:/usr/bin" })
    error("exec /bin/sh failed")
  end)
  local text = read_file(out)
  os.remove(out)
  assert.is_nil(err)
  assert.are.same({ "exited", 0 }, { how, code })
  return text
end

local function need_probe()
  if probe_error then
    pending(probe_error)
    return false
  end
  return true
end

--- Return a profile that allows every syscall the given rules do not match.
local function allow_but(rules)
  return { default = "allow", rules = rules }
end

setup(build_probe)
teardown(remove_probe)

describe("core.seccomp_load with the default profile", function()
  leaks.guard()

  it("blocks keyctl with EPERM", function()
    if not need_probe() then return end
    local result, errno = probe_under(seccomp_profile.default(), "keyctl", 0)
    assert.are.equal(-1, result)
    assert.are.equal(EPERM, errno)
  end)

  it("answers an unknown syscall with ENOSYS", function()
    if not need_probe() then return end
    local result, errno = probe_under(seccomp_profile.default(), 1000)
    assert.are.equal(-1, result)
    assert.are.equal(ENOSYS, errno)
  end)

  it("answers clone3 with ENOSYS", function()
    if not need_probe() then return end
    local result, errno = probe_under(seccomp_profile.default(), "clone3", 0, 0)
    assert.are.equal(-1, result)
    assert.are.equal(ENOSYS, errno)
  end)

  it("blocks clone with a namespace flag", function()
    if not need_probe() then return end
    local result, errno = probe_under(seccomp_profile.default(), "clone", CLONE_NEWUSER | SIGCHLD)
    assert.are.equal(-1, result)
    assert.are.equal(EPERM, errno)
  end)

  it("allows clone without namespace flags", function()
    if not need_probe() then return end
    local result, errno = probe_under(seccomp_profile.default(), "clone", SIGCHLD)
    assert.is_true(result > 0)
    assert.are.equal(0, errno)
  end)

  it("blocks unshare without sys_admin", function()
    if not need_probe() then return end
    local result, errno = probe_under(seccomp_profile.default(), "unshare", 0)
    assert.are.equal(-1, result)
    assert.are.equal(EPERM, errno)
  end)

  it("allows unshare with sys_admin", function()
    if not need_probe() then return end
    local profile = seccomp_profile.default({ caps = { "sys_admin" } })
    local result, errno = probe_under(profile, "unshare", 0)
    assert.are.equal(0, result)
    assert.are.equal(0, errno)
  end)

  it("allows the personality query", function()
    if not need_probe() then return end
    local result, errno = probe_under(seccomp_profile.default(), "personality", 0xffffffff)
    assert.are.equal(0, result)
    assert.are.equal(0, errno)
  end)

  it("refuses ADDR_NO_RANDOMIZE", function()
    if not need_probe() then return end
    -- libseccomp cannot express "none of these values" in one rule, so other
    -- personalities reach the default action, as in podman's profile.
    local result, errno = probe_under(seccomp_profile.default(), "personality", 0x0040000)
    assert.are.equal(-1, result)
    assert.are.equal(ENOSYS, errno)
  end)

  it("allows an AF_INET socket", function()
    if not need_probe() then return end
    local result, errno = probe_under(seccomp_profile.default(), "socket", AF_INET, SOCK_STREAM, 0)
    assert.is_true(result >= 0)
    assert.are.equal(0, errno)
  end)

  it("blocks AF_VSOCK with EAFNOSUPPORT", function()
    if not need_probe() then return end
    local result, errno = probe_under(seccomp_profile.default(), "socket", AF_VSOCK, SOCK_STREAM, 0)
    assert.are.equal(-1, result)
    assert.are.equal(EAFNOSUPPORT, errno)
  end)

  it("blocks AF_ALG with EAFNOSUPPORT", function()
    if not need_probe() then return end
    local result, errno = probe_under(seccomp_profile.default(), "socket", AF_ALG, SOCK_SEQPACKET, 0)
    assert.are.equal(-1, result)
    assert.are.equal(EAFNOSUPPORT, errno)
  end)

  it("ignores high bits of the family", function()
    if not need_probe() then return end
    local result, errno = probe_under(seccomp_profile.default(), "socket", (1 << 32) | AF_VSOCK,
                                      SOCK_STREAM, 0)
    assert.are.equal(-1, result)
    assert.are.equal(EAFNOSUPPORT, errno)
  end)

  it("runs a shell pipeline", function()
    local out = os.tmpname()
    local how, code, err = run_child(function()
      assert(core.seccomp_load(seccomp_profile.default()))
      core.execve("/bin/sh", { "sh", "-c", "echo hello | grep -c hello > " .. out },
                  { "PATH=/bin:/usr/bin" })
      error("exec /bin/sh failed")
    end)
    local text = read_file(out)
    os.remove(out)
    assert.is_nil(err)
    assert.are.same({ "exited", 0 }, { how, code })
    assert.are.equal("1\n", text)
  end)

  it("sets no_new_privs and filter mode", function()
    local out = os.tmpname()
    local how, code, err = run_child(function()
      assert(core.seccomp_load(seccomp_profile.default()))
      core.execve("/bin/sh", { "sh", "-c", "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status > " .. out },
                  { "PATH=/bin:/usr/bin" })
      error("exec /bin/sh failed")
    end)
    local text = read_file(out)
    os.remove(out)
    assert.is_nil(err)
    assert.are.same({ "exited", 0 }, { how, code })
    assert.matches("NoNewPrivs:%s+1", text)
    assert.matches("Seccomp:%s+2", text)
  end)
end)

describe("core.seccomp_load with the strict profile", function()
  leaks.guard()

  it("blocks ptrace", function()
    if not need_probe() then return end
    local result, errno = probe_under(seccomp_profile.strict(), "ptrace", 0)
    assert.are.equal(-1, result)
    assert.are.equal(EPERM, errno)
  end)

  it("still blocks keyctl", function()
    if not need_probe() then return end
    local result, errno = probe_under(seccomp_profile.strict(), "keyctl", 0)
    assert.are.equal(-1, result)
    assert.are.equal(EPERM, errno)
  end)

  it("ignores kept capabilities", function()
    if not need_probe() then return end
    local result, errno = probe_under(seccomp_profile.strict(), "unshare", 0)
    assert.are.equal(-1, result)
    assert.are.equal(EPERM, errno)
  end)
end)

describe("core.seccomp_load with custom rules", function()
  leaks.guard()

  local dup_rule = {
    action = "errno", errno = "EXDEV", syscalls = { "dup" },
    args = { { index = 0, op = "eq", value = 1000 } },
  }

  it("applies a matching argument condition", function()
    if not need_probe() then return end
    local result, errno = probe_under(allow_but({ dup_rule }), "dup", 1000)
    assert.are.equal(-1, result)
    assert.are.equal(EXDEV, errno)
  end)

  it("skips a rule whose condition fails", function()
    if not need_probe() then return end
    local result, errno = probe_under(allow_but({ dup_rule }), "dup", 1001)
    assert.are.equal(-1, result)
    assert.are.equal(EBADF, errno)
  end)

  it("compares masked bits", function()
    if not need_probe() then return end
    local rule = {
      action = "errno", errno = 42, syscalls = { "dup" },
      args = { { index = 0, op = "masked_eq", value = 0xf00, value2 = 0x300 } },
    }
    local result, errno = probe_under(allow_but({ rule }), "dup", 0x3ff)
    assert.are.equal(-1, result)
    assert.are.equal(42, errno)
  end)

  it("kills the process", function()
    local how, code, err = run_child(function()
      assert(core.seccomp_load(allow_but({ { action = "kill_process", syscalls = { "getppid" } } })))
      core.execve("/bin/sh", { "sh", "-c", "echo $PPID" }, {})
      error("exec /bin/sh failed")
    end)
    assert.is_nil(err)
    assert.are.same({ "signaled", SIGSYS }, { how, code })
  end)

  it("loads without no_new_privs as root", function()
    local out = os.tmpname()
    local how, code, err = run_child(function()
      assert(core.seccomp_load({ default = "allow", no_new_privs = false }))
      core.execve("/bin/sh", { "sh", "-c", "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status > " .. out },
                  { "PATH=/bin:/usr/bin" })
      error("exec /bin/sh failed")
    end)
    local text = read_file(out)
    os.remove(out)
    assert.is_nil(err)
    assert.are.same({ "exited", 0 }, { how, code })
    assert.matches("NoNewPrivs:%s+0", text)
    assert.matches("Seccomp:%s+2", text)
  end)

  it("fails without no_new_privs or CAP_SYS_ADMIN", function()
    local how, code, err = run_child(function()
      assert(core.caps_set({}))
      local ok, msg, errno = core.seccomp_load({ default = "allow", no_new_privs = false })
      assert(ok == nil, "seccomp_load succeeded")
      assert(errno == EACCES, "errno " .. tostring(errno))
      error(msg, 0)
    end)
    assert.are.same({ "exited", 125 }, { how, code })
    assert.matches("seccomp_load", err, 1, true)
    assert.matches("no_new_privs", err, 1, true)
  end)
end)

describe("core.seccomp_count", function()
  it("counts one rule per syscall", function()
    local n = core.seccomp_count({ default = "errno", default_errno = "ENOSYS", rules = {
      { action = "allow", syscalls = { "read", "write" } },
      { action = "errno", errno = "EPERM", syscalls = { "keyctl" } },
    } })
    assert.are.equal(3, n)
  end)

  it("leaves out rules with the default action", function()
    local n = core.seccomp_count({ default = "errno", default_errno = "ENOSYS", rules = {
      { action = "allow", syscalls = { "read" } },
      { action = "errno", errno = ENOSYS, syscalls = { "clone3" } },
    } })
    assert.are.equal(1, n)
  end)

  it("returns unknown syscall names", function()
    local n, skipped = core.seccomp_count({ default = "allow", rules = {
      { action = "errno", syscalls = { "keyctl", "no_such_syscall" } },
    } })
    assert.are.equal(1, n)
    assert.are.same({ "no_such_syscall" }, skipped)
  end)

  it("counts the default profile without conflicts", function()
    local n, skipped = core.seccomp_count(seccomp_profile.default())
    assert.is_true(n > 300)
    assert.are.equal("table", type(skipped))
  end)

  it("counts the strict profile without conflicts", function()
    local n = core.seccomp_count(seccomp_profile.strict())
    assert.is_true(n > 300)
  end)
end)

describe("core.seccomp_count rejects", function()
  local function rejects(profile, message)
    local ok, err = pcall(core.seccomp_count, profile)
    assert.is_false(ok)
    assert.matches(message, err, 1, true)
  end

  it("an unknown profile field", function()
    rejects({ default = "allow", rule = {} }, "seccomp profile: unknown field 'rule'")
  end)

  it("a missing default action", function()
    rejects({ rules = {} }, "seccomp profile: 'default' must be one of")
  end)

  it("an unknown action", function()
    rejects({ default = "deny" }, "unknown action 'deny'")
  end)

  it("an unknown errno name", function()
    rejects({ default = "errno", default_errno = "EWHAT" }, "unknown errno name 'EWHAT'")
  end)

  it("errno with another action", function()
    rejects(allow_but({ { action = "log", errno = 1, syscalls = { "read" } } }),
            "seccomp rule 1: 'errno' applies only to the errno action")
  end)

  it("an unknown op", function()
    rejects(allow_but({ { action = "log", syscalls = { "read" },
                          args = { { index = 0, op = "between", value = 1 } } } }),
            "seccomp rule 1: condition 1 has unknown op 'between'")
  end)

  it("an argument index above 5", function()
    rejects(allow_but({ { action = "log", syscalls = { "read" },
                          args = { { index = 6, op = "eq", value = 1 } } } }),
            "condition 1 needs an 'index' from 0 to 5")
  end)

  it("masked_eq without value2", function()
    rejects(allow_but({ { action = "log", syscalls = { "read" },
                          args = { { index = 0, op = "masked_eq", value = 1 } } } }),
            "condition 1 needs an integer 'value2'")
  end)

  it("two comparisons of one argument", function()
    rejects(allow_but({ { action = "log", syscalls = { "read" },
                          args = { { index = 0, op = "gt", value = 1 },
                                   { index = 0, op = "lt", value = 9 } } } }),
            "argument 0 is compared twice")
  end)

  it("conflicting unconditional rules", function()
    rejects({ default = "errno", rules = {
      { action = "allow", syscalls = { "dup" } },
      { action = "errno", errno = 5, syscalls = { "dup" }, args = { { index = 0, op = "eq", value = 1 } } },
    } }, "seccomp rules 1 and 2 give syscall 'dup' different actions")
  end)

  it("an unknown architecture", function()
    rejects({ default = "allow", arches = { "vax" } }, "unknown architecture 'vax'")
  end)
end)

describe("core.seccomp_export", function()
  it("covers x86 and x32 on x86_64", function()
    if core.seccomp_arch_native() ~= "x86_64" then
      pending("the companion architectures checked here are those of x86_64")
      return
    end
    local path = os.tmpname()
    assert(core.seccomp_export({ default = "allow", arches = "all",
                                 rules = { { action = "errno", syscalls = { "keyctl" } } } }, path))
    local text = read_file(path)
    os.remove(path)
    assert.matches("filter for arch x86_64", text, 1, true)
    assert.matches("filter for arch x86 ", text, 1, true)
    assert.matches("filter for arch x32", text, 1, true)
  end)

  it("covers only the native architecture by default", function()
    local path = os.tmpname()
    assert(core.seccomp_export({ default = "allow" }, path))
    local text = read_file(path)
    os.remove(path)
    local _, arches = text:gsub("# filter for arch", "")
    assert.are.equal(1, arches)
  end)

  it("writes BPF instructions", function()
    local path = os.tmpname()
    assert(core.seccomp_export(seccomp_profile.default(), path, "bpf"))
    local size = #read_file(path)
    os.remove(path)
    -- A classic BPF instruction is 8 bytes.
    assert.is_true(size > 0)
    assert.are.equal(0, size % 8)
  end)
end)

describe("core.seccomp_bpf", function()
  it("returns the program seccomp_export writes", function()
    local path = os.tmpname()
    assert(core.seccomp_export(seccomp_profile.default(), path, "bpf"))
    local exported = read_file(path)
    os.remove(path)
    local program = core.seccomp_bpf(seccomp_profile.default())
    assert.are.equal(exported, program)
  end)

  it("returns unknown syscall names", function()
    local program, skipped = core.seccomp_bpf({ default = "allow", rules = {
      { action = "errno", syscalls = { "keyctl", "no_such_syscall" } },
    } })
    assert.are.equal(0, #program % 8)
    assert.are.same({ "no_such_syscall" }, skipped)
  end)
end)

describe("core.seccomp_version", function()
  it("returns major.minor.micro", function()
    assert.matches("^%d+%.%d+%.%d+$", core.seccomp_version())
  end)
end)

describe("core.seccomp_load_bpf", function()
  leaks.guard()

  it("blocks keyctl with EPERM", function()
    if not need_probe() then return end
    local program = assert(core.seccomp_bpf(seccomp_profile.default()))
    local result, errno = probe_after(function() assert(core.seccomp_load_bpf(program)) end,
                                      "keyctl", 0)
    assert.are.equal(-1, result)
    assert.are.equal(EPERM, errno)
  end)

  it("answers an unknown syscall with ENOSYS", function()
    if not need_probe() then return end
    local program = assert(core.seccomp_bpf(seccomp_profile.default()))
    local result, errno = probe_after(function() assert(core.seccomp_load_bpf(program)) end, 1000)
    assert.are.equal(-1, result)
    assert.are.equal(ENOSYS, errno)
  end)

  it("sets no_new_privs and filter mode", function()
    local program = assert(core.seccomp_bpf({ default = "allow" }))
    local text = status_after(function() assert(core.seccomp_load_bpf(program)) end)
    assert.matches("NoNewPrivs:%s+1", text)
    assert.matches("Seccomp:%s+2", text)
  end)

  it("loads without no_new_privs as root", function()
    local program = assert(core.seccomp_bpf({ default = "allow", no_new_privs = false }))
    local text = status_after(function()
      assert(core.seccomp_load_bpf(program, { no_new_privs = false }))
    end)
    assert.matches("NoNewPrivs:%s+0", text)
    assert.matches("Seccomp:%s+2", text)
  end)

  it("rejects a string that is no program", function()
    local ok, err = pcall(core.seccomp_load_bpf, "abc")
    assert.is_false(ok)
    assert.matches("not a BPF program", err, 1, true)
  end)

  it("rejects an unknown option", function()
    local ok, err = pcall(core.seccomp_load_bpf, string.rep("\0", 8), { nnp = true })
    assert.is_false(ok)
    assert.matches("nnp", err, 1, true)
  end)
end)

describe("seccomp_profile", function()
  it("returns a fresh default each time", function()
    local a = seccomp_profile.default()
    a.rules = nil
    assert.is_table(seccomp_profile.default().rules)
  end)

  it("answers unknown syscalls with ENOSYS", function()
    local p = seccomp_profile.default()
    assert.are.equal("errno", p.default)
    assert.are.equal("ENOSYS", p.default_errno)
  end)

  it("rejects an unknown option", function()
    assert.has_error(function() seccomp_profile.default({ cap = {} }) end)
  end)
end)
