--- Network modes of a container, and the files that name its hosts and
-- name servers.
--
--   none   a new network namespace with only loopback, up
--   host   the host's network namespace (no new one)
--   slirp  a new network namespace whose tap0 slirp4netns connects to the
--          host through a user-mode TCP/IP stack; ports are forwarded through
--          slirp4netns's API socket
--
-- The container runtime calls, in order: prepare(c) in the parent before the
-- clone, mount_files(c) in the child before pivot_root, attach(c, pid) in the
-- parent before it releases the child, and release(c) once the container has
-- been reaped. Requires nsbuild.core, nsbuild.log and cjson.
local cjson = require "cjson"
local core = require "nsbuild.core"
local log = require "nsbuild.log"

local M = {}

--- The mode names a policy's network field accepts.
M.MODES = { "none", "host", "slirp" }

-- slirp4netns's fixed addresses for its default network 10.0.2.0/24
-- (slirp4netns(1), version 1.2.0): the container, and the DNS forwarder.
M.SLIRP_GUEST = "10.0.2.100"
M.SLIRP_DNS = "10.0.2.3"

-- slirp4netns(1) uses 65520 in its example. Its default is 1500 and its
-- maximum 65521, and a larger MTU means fewer packets through the user-mode stack.
M.SLIRP_MTU = 65520

-- slirp4netns is ready within milliseconds; these bounds only keep a hung
-- helper from hanging nsbuild.
M.READY_TIMEOUT_MS = 10000
M.API_TIMEOUT_MS = 5000
M.STOP_TIMEOUT_MS = 5000

local API_SOCKET = "api.sock"
local LOG_FILE = "slirp4netns.log"
local CREATED_LIST = "created-targets"
-- Linux errno values (asm-generic/errno-base.h and errno.h).
local ENOENT, EAGAIN, EACCES, EEXIST, EADDRINUSE, EROFS = 2, 11, 13, 17, 98, 30

-- The mount targets of mount_files: the file on the host and its path in the root.
local FILES = { { "hosts", "etc/hosts" }, { "resolv.conf", "etc/resolv.conf" } }

--- Return true when mode is a network mode, else nil and a message listing them.
function M.check_mode(mode)
  for _, name in ipairs(M.MODES) do
    if mode == name then
      return true
    end
  end
  return nil, string.format("network '%s' is not supported (use \"none\", \"host\" or \"slirp\")",
                            tostring(mode))
end

local function parse_ipv4(text)
  local parts = { text:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$") }
  if #parts ~= 4 then
    return nil
  end
  for _, part in ipairs(parts) do
    if tonumber(part) > 255 then
      return nil
    end
  end
  return text
end

local function parse_port_number(text)
  local n = text and text:match("^%d+$") and tonumber(text)
  if n and n >= 1 and n <= 65535 then
    return n
  end
  return nil
end

--- Parse a port mapping: "HOSTPORT:CONTAINERPORT[/tcp|/udp]" or
-- "ADDRESS:HOSTPORT:CONTAINERPORT[/tcp|/udp]".
-- Returns { host_address, host_port, container_port, protocol }, the address
-- defaulting to 127.0.0.1 and the protocol to tcp; or nil and a message.
function M.parse_port(spec)
  local usage = "expected HOSTPORT:CONTAINERPORT[/tcp|/udp] or ADDRESS:HOSTPORT:CONTAINERPORT"
  if type(spec) ~= "string" then
    return nil, string.format("invalid port mapping %s: %s", tostring(spec), usage)
  end
  local body, protocol = spec:match("^(.-)/(%a+)$")
  body, protocol = body or spec, protocol or "tcp"
  if protocol ~= "tcp" and protocol ~= "udp" then
    return nil, string.format("invalid port mapping '%s': protocol '%s' is not tcp or udp", spec, protocol)
  end
  local fields = {}
  for field in (body .. ":"):gmatch("([^:]*):") do
    fields[#fields + 1] = field
  end
  if #fields ~= 2 and #fields ~= 3 then
    return nil, string.format("invalid port mapping '%s': %s", spec, usage)
  end
  local address = #fields == 3 and fields[1] or "127.0.0.1"
  if not parse_ipv4(address) then
    return nil, string.format("invalid port mapping '%s': '%s' is not an IPv4 address "
                              .. "(slirp4netns forwards IPv4 only)", spec, address)
  end
  local host_port = parse_port_number(fields[#fields - 1])
  local container_port = parse_port_number(fields[#fields])
  if not host_port or not container_port then
    return nil, string.format("invalid port mapping '%s': ports must be numbers from 1 to 65535", spec)
  end
  return { host_address = address, host_port = host_port, container_port = container_port,
           protocol = protocol }
end

--- Return the text of the container's /etc/resolv.conf for mode, or nil when
-- the container gets none (mode "none"). host_text is the host's file.
-- slirp keeps the host's search and options lines, with slirp4netns's DNS
-- forwarder as the only name server.
function M.resolv_conf(mode, host_text)
  if mode == "host" then
    return host_text
  elseif mode ~= "slirp" then
    return nil
  end
  local lines = { "nameserver " .. M.SLIRP_DNS }
  for line in (host_text or ""):gmatch("[^\n]+") do
    if line:match("^%s*search%s") or line:match("^%s*options%s") then
      lines[#lines + 1] = line
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

--- Return the text of the container's /etc/hosts: localhost, and the
-- hostname at the container's own address (127.0.1.1 without slirp).
function M.hosts(hostname, mode)
  local own = mode == "slirp" and M.SLIRP_GUEST or "127.0.1.1"
  return table.concat({
    "127.0.0.1\tlocalhost",
    "::1\tlocalhost ip6-localhost ip6-loopback",
    own .. "\t" .. hostname,
  }, "\n") .. "\n"
end

--- Return the state a container's network starts from: the mode and the
-- parsed port mappings of policy p. Raises on an invalid mode or mapping.
function M.new(p)
  local mode = p.network or "none"
  local ok, err = M.check_mode(mode)
  if not ok then
    error(err, 2)
  end
  if mode ~= "host" and p.namespaces and p.namespaces.net == false then
    error(string.format("network \"%s\" needs a network namespace: set namespaces.net = true, "
                        .. "or network = \"host\" for the host's network", mode), 2)
  end
  local ports = {}
  for i, spec in ipairs(p.ports or {}) do
    local port, perr = M.parse_port(spec)
    if not port then
      error(perr, 2)
    end
    ports[i] = port
  end
  if #ports > 0 and mode ~= "slirp" then
    error(string.format("ports are forwarded only with network \"slirp\", not \"%s\"", mode), 2)
  end
  return { mode = mode, ports = ports }
end

local must = require("nsbuild.errors").must

local function read_host_file(path)
  local f = io.open(path, "r")
  if not f then
    return nil
  end
  local text = f:read("a")
  f:close()
  return text
end

--- Write the container's hosts and resolv.conf into a new directory below
-- parent_dir, in the parent before the clone: the child bind-mounts them
-- from there. Raises when the mode needs a network namespace that the
-- policy turned off, or when the files cannot be written.
function M.prepare(c, parent_dir)
  local n = c.network
  if n.mode ~= "host" and not c.namespaces.net then
    -- slirp4netns would otherwise configure the host's own namespace.
    error(string.format("network \"%s\" needs a network namespace: set namespaces.net = true, "
                        .. "or network = \"host\"", n.mode), 0)
  end
  n.dir = must("create the network directory", core.mkdtemp(parent_dir .. "/network-"))
  n.files = {}
  local texts = {
    hosts = M.hosts(c.hostname, n.mode),
    ["resolv.conf"] = M.resolv_conf(n.mode, read_host_file("/etc/resolv.conf")),
  }
  for _, file in ipairs(FILES) do
    local text = texts[file[1]]
    if text then
      local path = n.dir .. "/" .. file[1]
      must("write " .. path, core.write_file(path, text, tonumber("644", 8)))
      n.files[#n.files + 1] = { source = path, target = file[2] }
    end
  end
end

-- {====================================================== the child's mounts

-- Record a mount target the child created, so that release can remove it
-- from a build step's layer.
local function note_created(c, path)
  local f = must("record " .. path, io.open(c.network.dir .. "/" .. CREATED_LIST, "a"))
  f:write(path, "\n")
  f:close()
end

--- Record a mount target (a path relative to the root) that another step of
-- the child created, so that release removes it too while it is empty.
M.note_created = note_created

local function creation_error(target, path, err, errno)
  if errno == EROFS then
    return string.format("/%s is missing and the root is read-only: add the file to the image", target)
  elseif errno == EEXIST and path == target then
    return string.format("/%s in the image is a symlink to a missing file: make it point to an "
                         .. "existing file, or remove it", target)
  end
  return string.format("create /%s: %s", path, err)
end

-- Create a missing mount target, and its directory when that is missing
-- too, recording each entry created. Raises a message naming the fix.
local function create_target(c, target)
  local parent = target:match("^(.*)/[^/]*$")
  local dir = core.open_in_root(c.root, parent, { "path", "directory" })
  if dir then
    dir:close()
  else
    local made, err, errno = core.mkdirs_in_root(c.root, parent, tonumber("755", 8))
    if not made then
      error(creation_error(target, parent, err, errno), 0)
    end
    note_created(c, parent)
  end

  -- O_EXCL does not follow a symlink: a dangling /etc/resolv.conf link fails
  -- here with EEXIST instead of creating a file wherever it points.
  local file, err, errno = core.open_in_root(c.root, target, { "creat", "excl", "wronly" }, tonumber("644", 8))
  if not file then
    error(creation_error(target, target, err, errno), 0)
  end
  file:close()
  note_created(c, target)
end

-- Open target inside the root for a bind mount, creating it only when the
-- image has none, so that an image's own file is never written to. O_PATH
-- causes no copy-up of an overlay's lower file.
local function open_target(c, target)
  local fd, err, errno = core.open_in_root(c.root, target, { "path" })
  if not fd and errno == ENOENT then
    create_target(c, target)
    fd, err = core.open_in_root(c.root, target, { "path" })
  end
  return must("open /" .. target, fd, err)
end

--- Bind-mount the container's hosts and resolv.conf read-only over the
-- paths resolved inside the root, in the child before pivot_root (the
-- sources are host paths). The image's own files stay untouched beneath.
function M.mount_files(c)
  for _, file in ipairs(c.network.files) do
    local what = "mount /" .. file.target
    local target = open_target(c, file.target)
    must(what, core.mount(file.source, target, nil, { "bind" }))
    target:close()
    -- The kernel ignores MS_RDONLY on the first MS_BIND, so a remount of the
    -- new mount, opened again so that the fd names it, makes it read-only.
    local mounted = must(what, core.open_in_root(c.root, file.target, { "path" }))
    must(what, core.mount(nil, mounted, nil, { "bind", "remount", "rdonly", "nosuid", "nodev", "noexec" }))
    mounted:close()
  end
end

-- }======================================================

-- {====================================================== slirp4netns

-- slirp4netns(1): --enable-sandbox needs /etc/resolv.conf not to be a symlink
-- to a file outside /etc and /run.
local function sandbox_possible()
  local real = core.realpath("/etc/resolv.conf")
  return real ~= nil and (real:match("^/etc/") ~= nil or real:match("^/run/") ~= nil)
end

local function slirp_argv(pid, ready_fd, exit_fd, sandbox)
  local argv = { "slirp4netns", "--configure", "--mtu=" .. M.SLIRP_MTU, "--disable-host-loopback",
                 "--api-socket", API_SOCKET,
                 "--ready-fd", tostring(ready_fd:fileno()), "--exit-fd", tostring(exit_fd:fileno()) }
  if sandbox then
    argv[#argv + 1] = "--enable-sandbox"
  end
  -- Only root of the user namespace that owns the container's network
  -- namespace may create its tap device: join it when it is not nsbuild's.
  local userns = string.format("/proc/%d/ns/user", pid)
  local theirs, ours = core.stat(userns), core.stat("/proc/self/ns/user")
  if theirs and ours and theirs.ino ~= ours.ino then
    argv[#argv + 1] = "--userns-path=" .. userns
  end
  argv[#argv + 1] = tostring(pid)
  argv[#argv + 1] = "tap0"
  return argv
end

local function log_tail(n)
  local text = read_host_file(n.dir .. "/" .. LOG_FILE) or ""
  local lines = {}
  for line in text:gmatch("[^\n]+") do
    lines[#lines + 1] = line
  end
  return table.concat(lines, "; ", math.max(1, #lines - 2))
end

-- Wait for slirp4netns to stop, killing it when it outlives the bound.
local function reap(pid)
  local pidfd = core.pidfd_open(pid)
  if pidfd and not core.poll_read(pidfd, M.STOP_TIMEOUT_MS) then
    log.warn("slirp4netns (pid %d) did not stop within %d ms; killing it", pid, M.STOP_TIMEOUT_MS)
    core.kill(pid, "KILL")
  end
  if pidfd then
    pidfd:close()
  end
  return core.waitpid(pid)
end

-- Start slirp4netns for the network namespace of pid and wait until it has
-- configured tap0 and listens on its API socket. Returns true, or nil and
-- a message naming slirp4netns.
local function start_slirp(n, pid, sandbox)
  local ready_r, ready_w = core.pipe()
  local exit_r, exit_w = core.pipe()
  if not ready_r or not exit_r then
    return nil, "cannot create a pipe for slirp4netns: " .. tostring(ready_w or exit_w)
  end
  local output = must("open " .. LOG_FILE, core.open(n.dir .. "/" .. LOG_FILE, { "wronly", "creat", "trunc" }, tonumber("644", 8)))
  local null = must("open /dev/null", core.open("/dev/null", { "rdonly" }))
  -- Its own session keeps a terminal's ^C away from it: nsbuild stops it
  -- through the exit pipe once the container has ended.
  local helper, err = core.spawn(slirp_argv(pid, ready_w, exit_r, sandbox), nil, {
    keep_fds = { ready_w, exit_r }, stdin = null, stdout = output, stderr = output,
    setsid = true, cwd = n.dir,
  })
  -- Only slirp4netns has these ends now, so its exit closes the ready pipe.
  ready_w:close()
  exit_r:close()
  output:close()
  null:close()
  if not helper then
    ready_r:close()
    exit_w:close()
    return nil, "cannot start slirp4netns: " .. err .. " (install the slirp4netns package, "
                .. "or use network \"none\" or \"host\")"
  end
  n.slirp = { pid = helper, exit_w = exit_w }

  local readable = core.poll_read(ready_r, M.READY_TIMEOUT_MS)
  local ready = readable and ready_r:read(1)
  ready_r:close()
  if ready == "1" then
    log.debug("slirp4netns (pid %d) is ready for container pid %d", helper, pid)
    return true
  end
  local reason = readable and "it exited before it was ready" or
                 string.format("not ready within %d ms", M.READY_TIMEOUT_MS)
  M.stop_slirp(n)
  local tail = log_tail(n)
  -- udev makes /dev/net/tun mode 0666; without it the node may stay 0600,
  -- which only the host's root may open.
  if tail:find("/dev/net/tun", 1, true) and tail:find("Permission denied", 1, true) then
    tail = tail .. " (as root, run: chmod 0666 /dev/net/tun; or use network \"none\")"
  end
  return nil, string.format("slirp4netns failed: %s: %s", reason, tail)
end

--- Stop slirp4netns if it runs: close its exit pipe, then reap it by pid.
-- Safe to call twice.
function M.stop_slirp(n)
  local slirp = n.slirp
  if not slirp then
    return
  end
  n.slirp = nil
  slirp.exit_w:close()
  local _, kind, value = reap(slirp.pid)
  log.debug("slirp4netns (pid %d) stopped: %s %s", slirp.pid, tostring(kind), tostring(value))
end

local function api_request(n, request)
  local path = n.dir .. "/" .. API_SOCKET
  local sock, err = core.unix_connect(path, M.API_TIMEOUT_MS)
  if not sock then
    return nil, err
  end
  local ok, werr, werrno = sock:write(cjson.encode(request))
  -- slirp4netns reads one request, writes one reply and closes the connection.
  local reply, rerr, rerrno
  if ok then
    reply, rerr, rerrno = sock:read_all()
  end
  sock:close()
  if not reply then
    if (werrno or rerrno) == EAGAIN then
      return nil, string.format("no reply on %s within %d ms", path, M.API_TIMEOUT_MS)
    end
    return nil, werr or rerr
  end
  local decoded, value = pcall(cjson.decode, reply)
  if not decoded or type(value) ~= "table" then
    return nil, string.format("invalid reply from slirp4netns: '%s'", reply)
  end
  if type(value.error) == "table" then
    return nil, tostring(value.error.desc)
  end
  return value
end

local function describe_port(port)
  return string.format("%s:%d/%s", port.host_address, port.host_port, port.protocol)
end

-- Explain a failed forward: slirp4netns reports only "slirp_add_hostfwd
-- failed", so bind the port here to learn whether it is taken.
local function forward_error(port, message)
  local probe, _, errno = core.bind_port(port.protocol, port.host_address, port.host_port)
  if probe then
    probe:close()
  elseif errno == EADDRINUSE then
    return string.format("port %s is already in use: stop the program that holds it, or choose "
                         .. "another host port", describe_port(port))
  elseif errno == EACCES then
    return string.format("port %s needs privileges to bind: choose a host port of 1024 or above",
                         describe_port(port))
  end
  return string.format("cannot forward %s to container port %d: slirp4netns: %s",
                       describe_port(port), port.container_port, message)
end

local function add_forwards(n)
  for _, port in ipairs(n.ports) do
    local reply, err = api_request(n, {
      execute = "add_hostfwd",
      arguments = { proto = port.protocol, host_addr = port.host_address, host_port = port.host_port,
                    guest_addr = M.SLIRP_GUEST, guest_port = port.container_port },
    })
    if not reply then
      return nil, forward_error(port, err)
    end
    log.debug("forwarding %s to %s:%d", describe_port(port), M.SLIRP_GUEST, port.container_port)
  end
  return true
end

-- }======================================================

--- Connect the network namespace of the container's first process (pid) in
-- the parent, while the child still waits: in slirp mode, start slirp4netns
-- and forward the ports. Raises an error naming slirp4netns on failure,
-- with slirp4netns already stopped. Other modes have nothing to do here.
function M.attach(c, pid)
  local n = c.network
  if n.mode ~= "slirp" then
    return
  end
  local sandbox = sandbox_possible()
  local ok, err = start_slirp(n, pid, sandbox)
  if not ok and sandbox and err:find("sandbox", 1, true) then
    log.warn_once("slirp sandbox", "slirp4netns --enable-sandbox failed (%s); running it without the sandbox", err)
    ok, err = start_slirp(n, pid, false)
  end
  if ok then
    ok, err = add_forwards(n)
  end
  if not ok then
    M.stop_slirp(n)
    error(err, 0)
  end
end

-- Return true when dir in the upper directory only repeats the lower layers'
-- dir, as overlayfs copied it up for a created mount target. It must be
-- empty, not opaque, and have the mode and owner of the topmost lower one.
local function copied_up_only(upper, layers, dir)
  local st = core.lstat(upper .. "/" .. dir)
  local names = core.listdir(upper .. "/" .. dir)
  if not st or st.type ~= "dir" or not names or #names > 0
     or core.getxattr(upper .. "/" .. dir, "trusted.overlay.opaque", true)
     or core.getxattr(upper .. "/" .. dir, "user.overlay.opaque", true) then
    return false
  end
  for i = #layers, 1, -1 do
    local lower = core.lstat(layers[i] .. "/" .. dir)
    if lower then
      return lower.type == "dir" and lower.mode == st.mode and lower.uid == st.uid and lower.gid == st.gid
    end
  end
  return false
end

-- Remove what open_target created in the root's writable directory (a
-- build step's upper directory), newest first, while it is still empty.
-- A parent directory that overlayfs copied up only for it goes too, so the
-- step's layer keeps no trace of the mount targets.
local function remove_created(n, rootfs)
  local base = rootfs.upper or rootfs.bind
  local text = base and read_host_file(n.dir .. "/" .. CREATED_LIST)
  if not text then
    return
  end
  local paths = {}
  for path in text:gmatch("[^\n]+") do
    table.insert(paths, 1, path)
  end
  for _, path in ipairs(paths) do
    local full = base .. "/" .. path
    local st = core.lstat(full)
    if st and st.type == "file" and st.size == 0 then
      core.unlink(full)
      local parent = path:match("^(.*)/[^/]*$")
      if parent and rootfs.upper and copied_up_only(base, rootfs.layers or {}, parent) then
        core.rmdir(base .. "/" .. parent)
      end
    elseif st and st.type == "dir" then
      core.rmdir(full)  -- fails, and keeps it, when the command wrote into it
    end
  end
end

--- Undo what prepare and attach did, once the container has been reaped:
-- stop slirp4netns, remove created mount targets and the network directory.
-- Raises no error, and logs a directory it cannot remove. Safe to call when
-- prepare never ran.
function M.release(c)
  local n = c.network
  if not n then
    return
  end
  M.stop_slirp(n)
  if n.dir then
    remove_created(n, c.rootfs)
    local ok, err = core.rmtree(n.dir)
    if not ok then
      log.warn("cannot remove %s: %s", n.dir, err)
    end
    n.dir = nil
  end
end

return M
