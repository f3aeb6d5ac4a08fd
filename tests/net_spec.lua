-- Networking: the pure parts of nsbuild.net (port mappings, resolv.conf,
-- hosts, policy fields), then real busybox containers in each mode. Traffic
-- goes only to 127.0.0.1, to addresses inside the containers' own network
-- namespaces, and to Debian's package registry. Every test that starts
-- slirp4netns checks by pid that it is gone afterwards.
local core = require "nsbuild.core"
local net = require "nsbuild.net"
local policy = require "nsbuild.policy"
local cli = require "support.cli"
local leaks = require "support.leaks"

local cache = "build/test-cache"
local EADDRINUSE = 98

local function run_line(args)
  local parts = { "NSBUILD_LOG=debug", cli.nsbuild, "run", "--cache", cache }
  for _, a in ipairs(args) do
    parts[#parts + 1] = cli.quote(a)
  end
  return table.concat(parts, " ")
end

-- Run nsbuild run with debug logging; return the output, the exit code
-- and the pids of the slirp4netns processes it reported.
local function run(...)
  local out, code = cli.sh(run_line({ ... }))
  local pids = {}
  for pid in out:gmatch("slirp4netns %(pid (%d+)%) is ready") do
    pids[#pids + 1] = tonumber(pid)
  end
  return out, code, pids
end

local function process_exists(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if f then
    f:close()
    return true
  end
  return false
end

local function assert_gone(pids)
  for _, pid in ipairs(pids) do
    assert.is_false(process_exists(pid), "slirp4netns pid " .. pid .. " is still there")
  end
end

-- The interface names of a /proc/net/dev text, sorted.
local function interfaces(text)
  local names = {}
  for name in text:gmatch("\n%s*([%w@._-]+):") do
    names[#names + 1] = name
  end
  table.sort(names)
  return names
end

local function read(path)
  local f = assert(io.open(path))
  local text = f:read("a")
  f:close()
  return text
end

describe("net.parse_port", function()
  it("reads HOSTPORT:PORT", function()
    assert.are.same({ host_address = "127.0.0.1", host_port = 18080, container_port = 8080,
                      protocol = "tcp" }, net.parse_port("18080:8080"))
  end)

  it("reads an address and udp", function()
    assert.are.same({ host_address = "0.0.0.0", host_port = 5353, container_port = 53,
                      protocol = "udp" }, net.parse_port("0.0.0.0:5353:53/udp"))
  end)

  it("rejects malformed mappings", function()
    local cases = { "8080", "a:b", "0:80", "80:65536", "1:2:3:4", "18080:80/sctp",
                    "localhost:80:80", "::1:80:80", "300.1.1.1:80:80", "" }
    for _, spec in ipairs(cases) do
      local parsed, err = net.parse_port(spec)
      assert.is_nil(parsed, spec)
      assert.matches("invalid port mapping", err, 1, true)
    end
  end)

  it("names the accepted forms", function()
    local _, err = net.parse_port("8080")
    assert.matches("HOSTPORT:CONTAINERPORT", err, 1, true)
  end)
end)

describe("net files", function()
  local host = "nameserver 192.0.2.1\nsearch example.org\noptions ndots:2\n"

  it("points slirp at its DNS forwarder", function()
    local text = net.resolv_conf("slirp", host)
    assert.matches("^nameserver 10%.0%.2%.3\n", text)
    assert.is_nil(text:find("192.0.2.1", 1, true))
    assert.matches("search example.org", text, 1, true)
    assert.matches("options ndots:2", text, 1, true)
  end)

  it("copies the host's resolv.conf in host mode", function()
    assert.are.equal(host, net.resolv_conf("host", host))
  end)

  it("writes no resolv.conf in none", function()
    assert.is_nil(net.resolv_conf("none", host))
  end)

  it("names localhost and the hostname", function()
    local text = net.hosts("box", "none")
    assert.matches("127.0.0.1\tlocalhost\n", text, 1, true)
    assert.matches("127.0.1.1\tbox\n", text, 1, true)
    assert.matches("10.0.2.100\tbox\n", net.hosts("box", "slirp"), 1, true)
  end)
end)

describe("network policy", function()
  it("defaults to none for run", function()
    assert.are.equal("none", policy.default.network)
  end)

  it("uses slirp for build steps", function()
    assert.are.equal("slirp", policy.build.network)
  end)

  it("accepts each mode", function()
    for _, mode in ipairs({ "none", "host", "slirp" }) do
      assert.are.equal(mode, policy.extend(policy.default, { network = mode }).network)
    end
  end)

  it("rejects an unknown mode", function()
    local ok, err = pcall(policy.extend, policy.default, { network = "bridge" })
    assert.is_false(ok)
    assert.matches("network 'bridge' is not supported", err, 1, true)
  end)

  it("rejects ports without slirp", function()
    local ok, err = pcall(policy.extend, policy.default, { ports = { "18080:8080" } })
    assert.is_false(ok)
    assert.matches("only with network \"slirp\"", err, 1, true)
  end)

  it("rejects a bad port mapping", function()
    local ok, err = pcall(policy.extend, policy.default, { network = "slirp", ports = { "x:1" } })
    assert.is_false(ok)
    assert.matches("invalid port mapping 'x:1'", err, 1, true)
  end)

  it("replaces ports whole on extend", function()
    local base = policy.extend(policy.default, { network = "slirp", ports = { "1:1", "2:2" } })
    assert.are.same({ "3:3" }, policy.extend(base, { ports = { "3:3" } }).ports)
  end)

  it("rejects none without a network namespace", function()
    local ok, err = pcall(policy.extend, policy.default, { namespaces = { net = false } })
    assert.is_false(ok)
    assert.matches("network = \"host\"", err, 1, true)
  end)
end)

describe("network modes", function()
  leaks.guard()

  setup(function()
    local out, code = cli.run({ "--cache", cache, "recipes/busybox.lua" })
    assert(code == 0, "building recipes/busybox.lua failed:\n" .. out)
  end)

  it("none has only loopback", function()
    local out, code = run("busybox", "--", "cat", "/proc/net/dev")
    assert.are.equal(0, code, out)
    assert.are.same({ "lo" }, interfaces(out))
  end)

  it("none fails a connection at once", function()
    -- No route leaves the namespace: connect fails with ENETUNREACH, no timeout.
    local out, code = run("busybox", "--", "nc", "-w", "5", "10.0.2.2", "80")
    assert.are_not.equal(0, code)
    assert.matches("Network is unreachable", out, 1, true)
  end)

  it("none has hosts but no resolv.conf", function()
    local out, code = run("--hostname", "box-none", "busybox", "--", "sh", "-c",
                          "cat /etc/hosts; test -e /etc/resolv.conf && echo HAS-RESOLV; true")
    assert.are.equal(0, code, out)
    assert.matches("127.0.0.1\tlocalhost\n", out, 1, true)
    assert.matches("127.0.1.1\tbox-none\n", out, 1, true)
    assert.is_nil(out:find("HAS-RESOLV", 1, true))
  end)

  it("mounts /etc/hosts read-only", function()
    local out, code = run("busybox", "--", "sh", "-c", "echo x >> /etc/hosts")
    assert.are_not.equal(0, code)
    assert.matches("Read-only file system", out, 1, true)
  end)

  it("host mode sees the host's interfaces", function()
    local out, code = run("--network", "host", "busybox", "--", "cat", "/proc/net/dev")
    assert.are.equal(0, code, out)
    assert.are.same(interfaces(read("/proc/net/dev")), interfaces(out))
  end)

  it("host mode has the host's resolv.conf", function()
    local out, code = run("--network", "host", "busybox", "--", "cat", "/etc/resolv.conf")
    assert.are.equal(0, code, out)
    assert.are.equal(read("/etc/resolv.conf"), out)
  end)

  it("slirp configures tap0 and DNS", function()
    local out, code, pids = run("--network", "slirp", "busybox", "--", "sh", "-c",
                                "cat /etc/resolv.conf; ip -o addr show tap0; ip link show tap0; ip route")
    assert.are.equal(0, code, out)
    assert.are.equal(1, #pids, out)
    assert.matches("nameserver 10.0.2.3\n", out, 1, true)
    assert.matches("inet 10.0.2.100/24", out, 1, true)
    assert.matches("mtu 65520", out, 1, true)
    assert.matches("default via 10.0.2.2", out, 1, true)
    assert_gone(pids)
  end)

  it("slirp reaches Debian's registry", function()
    local url = "http://deb.debian.org/debian/dists/bookworm/Release"
    -- busybox-static 1.35's wget crashes with -T; the timeout applet bounds it instead.
    local fetch = "timeout 30 wget -q -O- " .. url .. " | head -1"
    local direct = run("--network", "host", "busybox", "--", "sh", "-c", fetch)
    if not direct:find("Origin: Debian", 1, true) then
      pending("this host cannot reach deb.debian.org itself: " .. direct)
      return
    end
    local out, code, pids = run("--network", "slirp", "busybox", "--", "sh", "-c", fetch)
    assert.are.equal(0, code, out)
    assert.matches("Origin: Debian", out, 1, true)
    assert_gone(pids)
  end)

  it("forwards a port to httpd", function()
    local probe, err, errno = core.bind_port("tcp", "127.0.0.1", 18080)
    if not probe then
      assert.are.equal(EADDRINUSE, errno, err)
      pending("127.0.0.1:18080 is taken on this host by another program")
      return
    end
    probe:close()
    -- The container serves until the host sends SIGTERM, which nsbuild
    -- forwards to its sh. As pid 1, sh acts on it only through a trap.
    -- sleep 60 bounds the container's life if the host never sends it.
    local container = run_line({ "-p", "18080:8080", "busybox", "--", "sh", "-c",
      "trap 'exit 0' TERM; mkdir -p /www; echo hello-from-httpd > /www/index.html; "
      .. "httpd -p 8080 -h /www; sleep 60 & wait" })
    local script = cli.tmpdir("nsbuild-net") .. "/serve.sh"
    local f = assert(io.open(script, "w"))
    f:write(container, " > ", script, ".log 2>&1 & nsb=$!\n", [[
# slirp4netns accepts on the host port as soon as the forward exists, before
# httpd listens inside: a connection may close empty, so retry until a reply.
for i in $(seq 100); do
  if exec 3<>/dev/tcp/127.0.0.1/18080; then
    printf 'GET /index.html HTTP/1.0\r\n\r\n' >&3
    reply=$(cat <&3)
    exec 3<&-
    if [ -n "$reply" ]; then
      printf '%s\n' "$reply"
      break
    fi
  fi 2>/dev/null
  sleep 0.1
done
kill -TERM $nsb
wait $nsb
echo "nsbuild exit $?"
]])
    f:close()
    local out = cli.sh("bash " .. cli.quote(script))
    local log = read(script .. ".log")
    cli.sh("rm -rf " .. cli.quote(script:match("^(.*)/")))
    assert.matches("HTTP/1.[01] 200 OK", out)
    assert.matches("hello-from-httpd", out, 1, true)
    assert.matches("nsbuild exit 0", out, 1, true)
    local pid = tonumber(log:match("slirp4netns %(pid (%d+)%) is ready"))
    assert.is_not_nil(pid, log)
    assert_gone({ pid })
    -- The forward ended with slirp4netns: the host can bind the port again.
    local again, again_err = core.bind_port("tcp", "127.0.0.1", 18080)
    assert.is_not_nil(again, again_err)
    again:close()
  end)

  it("reports a port in use", function()
    local holder, err = core.bind_port("tcp", "127.0.0.1", 18081)
    if not holder then
      pending("127.0.0.1:18081 is taken on this host: " .. err)
      return
    end
    local out, code, pids = run("-p", "18081:80", "busybox", "--", "true")
    holder:close()
    assert.are.equal(125, code)
    assert.matches("port 127.0.0.1:18081/tcp is already in use", out, 1, true)
    assert.are.equal(1, #pids, out)
    assert_gone(pids)
  end)

  it("stops slirp4netns when exec fails", function()
    local out, code, pids = run("--network", "slirp", "busybox", "--", "no-such-command")
    assert.are.equal(127, code)
    assert.are.equal(1, #pids, out)
    assert_gone(pids)
  end)

  it("slirp4netns exits with a killed nsbuild", function()
    -- SIGKILL leaves nsbuild no chance to stop slirp4netns: the exit pipe's
    -- hang-up must end it. Both loops are bounded (10 s each).
    local dir = cli.tmpdir("nsbuild-net-kill")
    local out = cli.sh(run_line({ "--network", "slirp", "busybox", "--", "sleep", "30" })
      .. " > " .. dir .. "/log 2>&1 & nsb=$!\n" .. [[
for i in $(seq 100); do
  pid=$(sed -n 's/.*slirp4netns (pid \([0-9]*\)) is ready.*/\1/p' ]] .. dir .. [[/log)
  [ -n "$pid" ] && break
  sleep 0.1
done
[ -n "$pid" ] || { echo "slirp4netns never became ready"; kill -9 $nsb; exit 1; }
kill -9 $nsb
wait $nsb
for i in $(seq 100); do
  [ -e /proc/$pid ] || { echo "slirp4netns $pid gone"; exit 0; }
  sleep 0.1
done
echo "slirp4netns $pid still running"
kill $pid
]])
    cli.sh("rm -rf " .. cli.quote(dir))
    assert.matches("slirp4netns %d+ gone", out)
  end)

  it("names slirp4netns when it is missing", function()
    local out, code = cli.sh("PATH=/nonexistent " .. run_line({ "--network", "slirp", "busybox", "--", "true" }))
    assert.are.equal(125, code)
    assert.matches("cannot start slirp4netns: exec 'slirp4netns': No such file or directory", out, 1, true)
  end)

  it("reports slirp4netns's own error", function()
    -- A stand-in that fails the way a broken slirp4netns would: a message, then exit 1.
    local dir = cli.tmpdir("nsbuild-fake-slirp")
    local f = assert(io.open(dir .. "/slirp4netns", "w"))
    f:write("#!/bin/sh\necho 'cannot open /dev/net/tun: Permission denied' >&2\nexit 1\n")
    f:close()
    cli.sh("chmod 755 " .. cli.quote(dir .. "/slirp4netns"))
    local out, code = cli.sh("PATH=" .. dir .. ":$PATH " .. run_line({ "--network", "slirp", "busybox", "--", "true" }))
    cli.sh("rm -rf " .. cli.quote(dir))
    assert.are.equal(125, code)
    assert.matches("slirp4netns failed: it exited before it was ready: "
                   .. "cannot open /dev/net/tun: Permission denied", out, 1, true)
  end)
end)

describe("build step network", function()
  leaks.guard()
  local dir

  before_each(function()
    dir = cli.tmpdir("nsbuild-net-build")
  end)

  after_each(function()
    cli.sh("rm -rf " .. cli.quote(dir))
  end)

  local function layer_entries(image)
    local record = read(cache .. "/images/" .. image .. ":latest.json")
    local list = {}
    for id in record:match('"layers":%[(.-)%]'):gmatch('"(%x+)"') do
      local out = cli.sh("cd " .. cli.quote(cache .. "/layers/" .. id) .. " && find . -mindepth 1 | sort")
      list[#list + 1] = out
    end
    return list
  end

  it("reaches Debian's registry by default", function()
    local url = "http://deb.debian.org/debian/dists/bookworm/Release"
    local fetch = "timeout 30 wget -q -O- " .. url .. " | head -1"
    local direct = run("--network", "host", "busybox", "--", "sh", "-c", fetch)
    if not direct:find("Origin: Debian", 1, true) then
      pending("this host cannot reach deb.debian.org itself: " .. direct)
      return
    end
    local recipe = dir .. "/net-fetch.lua"
    local f = assert(io.open(recipe, "w"))
    f:write([[
return from(deb "busybox-static")
  :run { "/bin/busybox", "--install", "-s", "/bin" }
  :run "]] .. fetch .. [[ > /release"
  :tag "net-fetch"
]])
    f:close()
    local out, code = cli.run({ "--cache", cache, "--no-cache", recipe })
    assert.are.equal(0, code, out)
    local record = read(cache .. "/images/net-fetch:latest.json")
    local top = record:match('"layers":%[.-"(%x+)"%]')
    assert.are.equal("Origin: Debian\n", read(cache .. "/layers/" .. top .. "/release"))
  end)

  it("uses a step's network option", function()
    local recipe = dir .. "/net-offline.lua"
    local f = assert(io.open(recipe, "w"))
    f:write([[
return from(deb "busybox-static")
  :run { "/bin/busybox", "--install", "-s", "/bin" }
  :run("cat /proc/net/dev > /interfaces", { network = "none" })
  :tag "net-offline"
]])
    f:close()
    local out, code = cli.run({ "--cache", cache, "--no-cache", recipe })
    assert.are.equal(0, code, out)
    local record = read(cache .. "/images/net-offline:latest.json")
    local top = record:match('"layers":%[.-"(%x+)"%]')
    assert.are.same({ "lo" }, interfaces(read(cache .. "/layers/" .. top .. "/interfaces")))
  end)

  it("leaves no mount targets in layers", function()
    local recipe = dir .. "/net-layers.lua"
    local f = assert(io.open(recipe, "w"))
    f:write([[
return from(deb "busybox-static")
  :run { "/bin/busybox", "--install", "-s", "/bin" }
  :run "cat /etc/resolv.conf > /dev/null; echo motd > /etc/motd"
  :run "test -s /etc/hosts"
  :tag "net-layers"
]])
    f:close()
    local out, code = cli.run({ "--cache", cache, "--no-cache", recipe })
    assert.are.equal(0, code, out)
    local layers = layer_entries("net-layers")
    -- The third step's layer contains only what it wrote, and the fourth made none.
    assert.are.equal(3, #layers, out)
    assert.are.equal("./etc\n./etc/motd\n", layers[3])
  end)
end)

-- container.run on the busybox layers with a crafted top layer, so that the
-- image's own /etc files are known. Commands write their results into the
-- upper directory, which the host reads after the run.
describe("network mount targets", function()
  leaks.guard()
  local container = require "nsbuild.container"
  local dir, busybox_layers

  setup(function()
    local out, code = cli.run({ "--cache", cache, "recipes/busybox.lua" })
    assert(code == 0, "building recipes/busybox.lua failed:\n" .. out)
    local record = read(cache .. "/images/busybox:latest.json")
    busybox_layers = {}
    for id in record:match('"layers":%[(.-)%]'):gmatch('"(%x+)"') do
      busybox_layers[#busybox_layers + 1] = core.realpath(cache .. "/layers/" .. id)
    end
  end)

  before_each(function()
    dir = cli.tmpdir("nsbuild-net-targets")
    for _, sub in ipairs({ "top", "top/etc", "upper", "work", "merged" }) do
      assert(core.mkdir(dir .. "/" .. sub, 0755))
    end
  end)

  after_each(function()
    cli.sh("rm -rf " .. cli.quote(dir))
  end)

  local function run_in(network, command, with_upper)
    local layers = {}
    for i, layer in ipairs(busybox_layers) do layers[i] = layer end
    layers[#layers + 1] = dir .. "/top"
    return container.run({
      rootfs = { layers = layers, upper = with_upper ~= false and dir .. "/upper" or nil,
                 work = dir .. "/work", target = dir .. "/merged" },
      argv = { "/bin/sh", "-c", command },
      env = container.environment(nil, nil, "targets"),
      hostname = "targets",
      policy = policy.extend(policy.default, { network = network }),
    })
  end

  it("shadows the image's hosts file", function()
    assert(core.write_file(dir .. "/top/etc/hosts", "image-hosts\n", 0644))
    local code = run_in("none", "cat /etc/hosts > /seen")
    assert.are.equal(0, code)
    assert.matches("127.0.1.1\ttargets\n", read(dir .. "/upper/seen"), 1, true)
    assert.are.equal("image-hosts\n", read(dir .. "/top/etc/hosts"))
    assert.is_nil(core.lstat(dir .. "/upper/etc"))
  end)

  it("rejects a dangling resolv.conf link", function()
    assert(core.symlink("/run/missing/resolv.conf", dir .. "/top/etc/resolv.conf"))
    local ok, err = pcall(run_in, "host", "true")
    assert.is_false(ok)
    assert.matches("/etc/resolv.conf in the image is a symlink to a missing file", tostring(err.message or err), 1, true)
    assert.is_nil(core.lstat(dir .. "/top/run"))
  end)

  it("names a read-only root's missing target", function()
    local ok, err = pcall(run_in, "none", "true", false)
    assert.is_false(ok)
    assert.matches("/etc/hosts is missing and the root is read-only", tostring(err.message or err), 1, true)
  end)

  it("removes created targets from upper", function()
    assert(core.rmdir(dir .. "/top/etc"))
    local code = run_in("slirp", "test -s /etc/hosts && test -s /etc/resolv.conf")
    assert.are.equal(0, code)
    assert.are.same({}, core.listdir(dir .. "/upper"))
  end)
end)
