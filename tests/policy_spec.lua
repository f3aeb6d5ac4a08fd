-- Policies: validation, extend, and the pure functions of security.lua that
-- the container's child applies (capability sets, seccomp profiles, users).
local core = require "nsbuild.core"
local policy = require "nsbuild.policy"
local security = require "nsbuild.security"
local run_options = require "nsbuild.run_options"

local function extend_error(changes)
  local ok, err = pcall(policy.extend, policy.default, changes)
  assert.is_false(ok)
  return tostring(err)
end

describe("policy validation", function()
  it("rejects an unknown field", function()
    assert.matches("unknown field 'hostnmae'", extend_error({ hostnmae = "x" }), 1, true)
  end)

  it("names the accepted types", function()
    assert.matches("field 'umask' must be a string or number, not a boolean",
                   extend_error({ umask = true }), 1, true)
  end)

  it("accepts a namespace path to join", function()
    local p = policy.extend(policy.default, { namespaces = { net = "/proc/1/ns/net" } })
    assert.are.equal("/proc/1/ns/net", p.namespaces.net)
  end)

  it("rejects a relative namespace path", function()
    assert.matches("namespaces.uts must be true, false or the absolute path",
                   extend_error({ namespaces = { uts = "ns/uts" } }), 1, true)
  end)

  it("rejects slirp in a joined network namespace", function()
    local err = extend_error({ namespaces = { net = "/proc/1/ns/net" }, network = "slirp" })
    assert.matches("network \"slirp\" would configure the joined", err, 1, true)
  end)

  it("rejects an unknown capability", function()
    assert.matches("caps.add: unknown capability 'net_admn'",
                   extend_error({ caps = { add = { "net_admn" } } }), 1, true)
  end)

  it("rejects ambient capabilities not granted", function()
    assert.matches("caps.ambient: 'net_admin' is not granted",
                   extend_error({ caps = { ambient = { "net_admin" } } }), 1, true)
  end)

  it("rejects a bounding set below the granted set", function()
    assert.matches("caps.bounding lacks the granted capability",
                   extend_error({ caps = { bounding = { "chown" } } }), 1, true)
  end)

  it("rejects an unknown seccomp name", function()
    assert.matches("seccomp 'permissive' is unknown", extend_error({ seccomp = "permissive" }), 1, true)
  end)

  it("rejects an invalid seccomp rule", function()
    local err = extend_error({ seccomp = { base = "default", rules = { { action = "maybe", syscalls = { "mkdir" } } } } })
    assert.matches("unknown action 'maybe'", err, 1, true)
  end)

  it("rejects an unknown rlimit", function()
    assert.matches("rlimits: unknown resource 'files'", extend_error({ rlimits = { files = 10 } }), 1, true)
  end)

  it("rejects a soft limit above the hard one", function()
    assert.matches("the soft limit 20 exceeds the hard limit 10",
                   extend_error({ rlimits = { nofile = { 20, 10 } } }), 1, true)
  end)

  it("rejects an invalid umask", function()
    assert.matches("umask '0999' is invalid", extend_error({ umask = "0999" }), 1, true)
  end)

  it("rejects an unknown hook", function()
    assert.matches("hooks: unknown hook 'before_start'",
                   extend_error({ hooks = { before_start = function() end } }), 1, true)
  end)

  it("rejects a cwd inside /proc", function()
    assert.matches("cwd '/proc/self/fd/7' is inside /proc", extend_error({ cwd = "/proc/self/fd/7" }), 1, true)
  end)

  it("rejects an invalid user", function()
    assert.matches("user 'a:b:c' is invalid", extend_error({ user = "a:b:c" }), 1, true)
  end)

  it("rejects a relative masked path", function()
    assert.matches("masked_paths[1] must be an absolute path", extend_error({ masked_paths = { "proc/kcore" } }), 1, true)
  end)
end)

describe("policy defaults", function()
  it("turns on the init", function()
    assert.is_true(policy.default.init)
  end)

  it("uses the default seccomp profile", function()
    assert.are.equal("default", policy.default.seccomp)
  end)

  it("sets no_new_privs", function()
    assert.is_true(policy.default.no_new_privs)
  end)

  it("masks /proc/kcore", function()
    assert.is_truthy(table.concat(policy.default.masked_paths, " "):find("/proc/kcore", 1, true))
  end)

  it("makes /proc/sys read-only", function()
    assert.is_truthy(table.concat(policy.default.readonly_paths, " "):find("/proc/sys", 1, true))
  end)

  it("gives build steps the init and slirp", function()
    assert.is_true(policy.build.init)
    assert.are.equal("slirp", policy.build.network)
  end)
end)

describe("policy extend", function()
  it("merges caps field by field", function()
    local p = policy.extend(policy.default, { caps = { add = { "net_admin" } } })
    p = policy.extend(p, { caps = { drop = { "chown" } } })
    assert.are.same({ "net_admin" }, p.caps.add)
    assert.are.same({ "chown" }, p.caps.drop)
  end)

  it("replaces seccomp whole", function()
    local p = policy.extend(policy.default, { seccomp = { base = "strict", rules = {} } })
    p = policy.extend(p, { seccomp = "unconfined" })
    assert.are.equal("unconfined", p.seccomp)
  end)

  it("merges hooks by name", function()
    local a, b = function() end, function() end
    local p = policy.extend(policy.default, { hooks = { before_exec = a } })
    p = policy.extend(p, { hooks = { created = b } })
    assert.are.equal(a, p.hooks.before_exec)
    assert.are.equal(b, p.hooks.created)
  end)

  it("leaves the base unchanged", function()
    policy.extend(policy.default, { namespaces = { net = false }, network = "host" })
    assert.is_true(policy.default.namespaces.net)
  end)
end)

describe("namespace joins", function()
  it("lists the user namespace first", function()
    local p = policy.extend(policy.default, { namespaces = { ipc = "/a/ipc", user = "/a/user" } })
    assert.are.same({ { "user", "/a/user" }, { "ipc", "/a/ipc" } }, policy.namespace_joins(p))
  end)

  it("leaves joined ones out of the clone", function()
    local p = policy.extend(policy.default, { namespaces = { ipc = "/a/ipc" } })
    assert.are.same({ "pid", "mount", "uts", "net" }, policy.namespace_list(p))
  end)
end)

describe("capability sets", function()
  local defaults = { "chown", "dac_override", "fowner", "fsetid", "kill", "net_bind_service",
                     "setfcap", "setgid", "setpcap", "setuid", "sys_chroot" }

  it("gives root podman's default set", function()
    local sets = security.capability_sets({}, true)
    assert.are.same(defaults, sets.effective)
    assert.are.same(defaults, sets.permitted)
    assert.are.same(defaults, sets.bounding)
  end)

  it("keeps inheritable empty", function()
    assert.are.same({}, security.capability_sets({}, true).inheritable)
  end)

  it("gives another user nothing", function()
    local sets = security.capability_sets({}, false)
    assert.are.same({}, sets.effective)
    assert.are.same({}, sets.permitted)
    assert.are.same(defaults, sets.bounding)
  end)

  it("gives another user its ambient set", function()
    local sets = security.capability_sets({ ambient = { "NET_BIND_SERVICE" } }, false)
    assert.are.same({ "net_bind_service" }, sets.effective)
    assert.are.same({ "net_bind_service" }, sets.inheritable)
    assert.are.same({ "net_bind_service" }, sets.ambient)
  end)

  it("adds and drops by name", function()
    local sets = security.capability_sets({ add = { "CAP_NET_ADMIN" }, drop = { "chown", "kill" } }, true)
    local set = table.concat(sets.effective, " ")
    assert.is_truthy(set:find("net_admin", 1, true))
    assert.is_nil(set:find("chown", 1, true))
    assert.is_nil(set:find("kill", 1, true))
  end)

  it("drops all", function()
    assert.are.same({}, security.capability_sets({ drop = { "ALL" } }, true).bounding)
  end)
end)

describe("seccomp profiles", function()
  it("leaves unconfined without a filter", function()
    assert.is_nil(security.seccomp_profile("unconfined", {}))
  end)

  it("merges a rule for an allowed syscall", function()
    -- mkdir is in the default allow list; the custom rule replaces that entry.
    local profile = security.seccomp_profile({ base = "default", rules = {
      { action = "errno", errno = "EACCES", syscalls = { "mkdir" } },
    } }, {})
    local count = core.seccomp_count(profile)
    assert.is_true(count > 0)
    local last = profile.rules[#profile.rules]
    assert.are.same({ "mkdir" }, last.syscalls)
    for i = 1, #profile.rules - 1 do
      for _, name in ipairs(profile.rules[i].syscalls) do
        assert.are_not.equal("mkdir", name)
      end
    end
  end)

  it("merges a conditional rule for clone", function()
    local profile = security.seccomp_profile({ base = "strict", rules = {
      { action = "errno", errno = "EPERM", syscalls = { "clone" },
        args = { { index = 0, op = "masked_eq", value = 0x10000000, value2 = 0x10000000 } } },
    } }, {})
    assert.is_true(core.seccomp_count(profile) > 0)
  end)
end)

describe("user resolution", function()
  local passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:App:/home/app:/bin/sh\n"
  local group = "root:x:0:\napp:x:1001:\nextra:x:2000:app,other\nwheel:x:10:root\n"

  it("resolves a name", function()
    local ids = security.resolve_user("app", passwd, group)
    assert.are.equal(1000, ids.uid)
    assert.are.equal(1001, ids.gid)
    assert.are.same({ 2000 }, ids.groups)
    assert.are.equal("/home/app", ids.home)
  end)

  it("resolves a group name", function()
    local ids = security.resolve_user("app:extra", passwd, group)
    assert.are.equal(2000, ids.gid)
  end)

  it("takes an unknown uid with group 0", function()
    local ids = security.resolve_user("4242", passwd, group)
    assert.are.equal(4242, ids.uid)
    assert.are.equal(0, ids.gid)
    assert.are.same({}, ids.groups)
  end)

  it("adds supplementary groups", function()
    local ids = security.resolve_user("0", passwd, group, { "extra", 77 })
    assert.are.same({ 10, 2000, 77 }, ids.groups)
  end)

  it("names a missing user", function()
    local ok, err = pcall(security.resolve_user, "nobody", passwd, group)
    assert.is_false(ok)
    assert.matches("user 'nobody' not found in the image's /etc/passwd", err, 1, true)
  end)

  it("names a missing group", function()
    local ok, err = pcall(security.resolve_user, "app:staff", passwd, group)
    assert.is_false(ok)
    assert.matches("group 'staff' not found in the image's /etc/group", err, 1, true)
  end)
end)

describe("run flags", function()
  it("map onto the policy", function()
    local p = run_options.run_policy({
      ["-v"] = { "/tmp:/data:ro" }, ["-u"] = "1000", ["--read-only"] = true,
      ["--cap-add"] = { "net_admin" }, ["--cap-drop"] = { "chown" },
      ["--security-opt"] = { "seccomp=strict" }, ["--no-init"] = true, ["-w"] = "/data",
    }, {})
    assert.are.same({ type = "bind", source = "/tmp", target = "/data", options = { "ro" } }, p.mounts[1])
    assert.are.equal("1000", p.user)
    assert.is_true(p.readonly)
    assert.are.same({ "net_admin" }, p.caps.add)
    assert.are.same({ "chown" }, p.caps.drop)
    assert.are.equal("strict", p.seccomp)
    assert.is_false(p.init)
    assert.are.equal("/data", p.cwd)
  end)

  it("reject an unknown security option", function()
    local ok, err = pcall(run_options.run_policy, { ["--security-opt"] = { "label=disable" } }, {})
    assert.is_false(ok)
    assert.matches("unsupported --security-opt 'label=disable'", tostring(err.message or err), 1, true)
  end)

  it("explain names every step", function()
    local text = run_options.explain(policy.default, { "sh" })
    for _, word in ipairs({ "namespaces:", "mounts:", "masked:", "read-only:", "capabilities:",
                            "seccomp: default", "exec: through the built-in init" }) do
      assert.is_truthy(text:find(word, 1, true), word)
    end
  end)
end)
