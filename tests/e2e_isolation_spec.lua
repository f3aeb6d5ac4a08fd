-- End to end: the isolation a policy gives a real container, read from
-- inside it. Builds three images into build/test-cache: busybox with a
-- static syscall probe and an /etc/passwd, and an image whose /dev, /proc,
-- /sys and /mnt are symlinks to a host directory this spec creates.
local cli = require "support.cli"
local leaks = require "support.leaks"

local cache = "build/test-cache"
local cache_abs
local dir            -- recipes, the probe and policy files of this spec
local host_dir       -- the host directory the symlink image points into
local probe_error    -- why the probe image could not be built, if it could not

local EPERM, ENOSYS = 1, 38
-- podman's default set: chown dac_override fowner fsetid kill setgid setuid
-- setpcap net_bind_service sys_chroot setfcap, as bits of /proc/self/status.
local DEFAULT_CAPS = "00000000800405fb"
local NONE = "0000000000000000"

local function run(...)
  return cli.run({ "run", "--cache", cache, ... })
end

local function write(name, text)
  local f = assert(io.open(dir .. "/" .. name, "w"))
  f:write(text)
  f:close()
  return dir .. "/" .. name
end

local function cap_field(status, name)
  return status:match(name .. ":%s*(%x+)")
end

local function build_probe_image()
  local out, code = cli.sh("cc -static -O2 -o " .. dir .. "/probe tests/support/syscall_probe.c -lseccomp")
  if code ~= 0 then
    probe_error = "cannot compile the probe statically: " .. out
    return
  end
  write("passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n")
  write("group", "root:x:0:\napp:x:1000:\nextra:x:2000:app\n")
  local recipe = write("probe.lua", [[
return from(deb "busybox-static")
  :run { "/bin/busybox", "--install", "-s", "/bin" }
  :copy("probe", "/probe")
  :copy("passwd", "/etc/passwd")
  :copy("group", "/etc/group")
  :tag "iso-probe"
]])
  out, code = cli.run({ "--cache", cache, recipe })
  if code ~= 0 then
    probe_error = "cannot build the probe image: " .. out
  end
end

-- An image whose /dev, /proc, /sys and /mnt are absolute symlinks to
-- host_dir/dev, host_dir/proc, ...: a tarball, because a run step's
-- container has /dev mounted.
local function build_escape_image()
  local busybox = cli.sh("find " .. cache .. "/layers -path '*/bin/busybox' -type f | head -1"):gsub("\n$", "")
  local root = dir .. "/escape-root"
  local script = table.concat({
    "mkdir -p " .. root .. "/bin",
    "cp " .. busybox .. " " .. root .. "/bin/busybox",
    "ln -s busybox " .. root .. "/bin/sh",
    "ln -s busybox " .. root .. "/bin/ls",
    "for d in dev proc sys mnt; do ln -s " .. host_dir .. "/$d " .. root .. "/$d; done",
    "tar -C " .. root .. " -cf " .. dir .. "/escape.tar .",
  }, " && ")
  local out, code = cli.sh(script)
  assert(code == 0, out)
  local recipe = write("escape.lua", 'return from(tarball "escape.tar"):tag "iso-escape"\n')
  out, code = cli.run({ "--cache", cache, recipe })
  assert(code == 0, "building the symlink image failed:\n" .. out)
end

setup(function()
  local out, code = cli.run({ "--cache", cache, "recipes/busybox.lua" })
  assert(code == 0, "building recipes/busybox.lua failed:\n" .. out)
  cache_abs = cli.sh("realpath " .. cache):gsub("\n$", "")
  dir = cli.tmpdir("nsbuild-isolation")
  host_dir = cli.tmpdir("nsbuild-host-target")
  build_probe_image()
  build_escape_image()
end)

teardown(function()
  cli.sh("rm -rf " .. cli.quote(dir) .. " " .. cli.quote(host_dir))
end)

local function need_probe()
  if probe_error then
    pending(probe_error)
    return false
  end
  return true
end

--- Run the probe for one syscall in a container; return its result and errno.
local function probe(extra, ...)
  local args = { "run" , "--cache", cache }
  for _, a in ipairs(extra) do args[#args + 1] = a end
  local call = table.concat({ ... }, " ")
  for _, a in ipairs({ "iso-probe", "--", "sh", "-c", "/probe /out " .. call .. " && cat /out" }) do
    args[#args + 1] = a
  end
  local out, code = cli.run(args)
  assert.are.equal(0, code, out)
  local result, errno = out:match("(%-?%d+) (%d+)")
  return tonumber(result), tonumber(errno)
end

describe("capabilities", function()
  leaks.guard()

  it("match the default set for root", function()
    local out, code = run("busybox", "--", "cat", "/proc/self/status")
    assert.are.equal(0, code)
    assert.are.equal(DEFAULT_CAPS, cap_field(out, "CapEff"))
    assert.are.equal(DEFAULT_CAPS, cap_field(out, "CapPrm"))
    assert.are.equal(DEFAULT_CAPS, cap_field(out, "CapBnd"))
    assert.are.equal(NONE, cap_field(out, "CapInh"))
    assert.are.equal(NONE, cap_field(out, "CapAmb"))
  end)

  it("keep CapInh 0 in a started process", function()
    local out, code = run("busybox", "--", "sh", "-c", "sh -c 'cat /proc/self/status'")
    assert.are.equal(0, code)
    assert.are.equal(NONE, cap_field(out, "CapInh"))
    assert.are.equal(DEFAULT_CAPS, cap_field(out, "CapEff"))
  end)

  it("give a non-root user none", function()
    local out, code = run("-u", "1000:1000", "busybox", "--", "cat", "/proc/self/status")
    assert.are.equal(0, code)
    assert.are.equal(NONE, cap_field(out, "CapEff"))
    assert.are.equal(NONE, cap_field(out, "CapPrm"))
    assert.are.equal(DEFAULT_CAPS, cap_field(out, "CapBnd"))
    assert.are.equal(NONE, cap_field(out, "CapInh"))
  end)

  it("give a non-root user its ambient set", function()
    local policy = write("ambient.lua", 'return { caps = { ambient = { "net_bind_service" } } }\n')
    local out, code = run("--policy", policy, "-u", "1000", "busybox", "--", "cat", "/proc/self/status")
    assert.are.equal(0, code, out)
    -- net_bind_service is capability 10.
    assert.are.equal("0000000000000400", cap_field(out, "CapEff"))
    assert.are.equal("0000000000000400", cap_field(out, "CapAmb"))
    assert.are.equal("0000000000000400", cap_field(out, "CapInh"))
  end)

  it("follow --cap-add and --cap-drop", function()
    local out, code = run("--cap-add", "NET_ADMIN", "--cap-drop", "chown", "busybox", "--",
                          "cat", "/proc/self/status")
    assert.are.equal(0, code)
    -- Add net_admin (bit 12), drop chown (bit 0).
    assert.are.equal("00000000800415fa", cap_field(out, "CapEff"))
    assert.are.equal("00000000800415fa", cap_field(out, "CapBnd"))
  end)

  it("drop all with --cap-drop ALL", function()
    local out, code = run("--cap-drop", "ALL", "busybox", "--", "cat", "/proc/self/status")
    assert.are.equal(0, code)
    assert.are.equal(NONE, cap_field(out, "CapEff"))
    assert.are.equal(NONE, cap_field(out, "CapBnd"))
  end)
end)

describe("users", function()
  leaks.guard()

  it("resolve names in the image", function()
    if not need_probe() then return end
    local out, code = run("-u", "app", "iso-probe", "--", "sh", "-c", "id -u; id -g; id -G; echo $HOME")
    assert.are.equal(0, code, out)
    assert.are.equal("1000\n1000\n1000 2000\n/home/app\n", out)
  end)

  it("name a user missing from the image", function()
    if not need_probe() then return end
    local out, code = run("-u", "nobody", "iso-probe", "--", "true")
    assert.are.equal(125, code)
    assert.matches("user 'nobody' not found in the image's /etc/passwd", out, 1, true)
  end)
end)

describe("default seccomp", function()
  leaks.guard()

  it("fails keyctl with EPERM", function()
    if not need_probe() then return end
    local result, errno = probe({}, "keyctl", "0")
    assert.are.equal(-1, result)
    assert.are.equal(EPERM, errno)
  end)

  it("answers an unknown syscall with ENOSYS", function()
    if not need_probe() then return end
    local result, errno = probe({}, "1000")
    assert.are.equal(-1, result)
    assert.are.equal(ENOSYS, errno)
  end)

  it("is off with seccomp=unconfined", function()
    if not need_probe() then return end
    local _, errno = probe({ "--security-opt", "seccomp=unconfined" }, "keyctl", "0")
    assert.are_not.equal(EPERM, errno)
  end)
end)

describe("proc and sys", function()
  leaks.guard()

  it("reads /proc/kcore as empty", function()
    local f = io.open("/proc/kcore")
    if not f then
      pending("this kernel has no /proc/kcore to mask")
      return
    end
    f:close()
    local out, code = run("busybox", "--", "sh", "-c", "wc -c < /proc/kcore")
    assert.are.equal(0, code)
    assert.are.equal("0\n", out)
  end)

  it("reads /proc/keys as empty", function()
    local out, code = run("busybox", "--", "sh", "-c", "wc -c < /proc/keys")
    assert.are.equal(0, code)
    assert.are.equal("0\n", out)
  end)

  it("fails writes under /proc/sys with EROFS", function()
    local out, code = run("busybox", "--", "sh", "-c", "echo x > /proc/sys/kernel/hostname")
    assert.are_not.equal(0, code)
    assert.matches("Read-only file system", out, 1, true)
  end)

  it("mounts /sys read-only", function()
    local out, code = run("busybox", "--", "sh", "-c", "touch /sys/x")
    assert.are_not.equal(0, code)
    assert.matches("Read-only file system", out, 1, true)
  end)

  it("keeps the root writable by default", function()
    local _, code = run("busybox", "--", "touch", "/x")
    assert.are.equal(0, code)
  end)

  it("makes the root read-only on request", function()
    local out, code = run("--read-only", "busybox", "--", "touch", "/x")
    assert.are_not.equal(0, code)
    assert.matches("Read-only file system", out, 1, true)
  end)

  it("provides /etc/hostname", function()
    local out, code = run("--hostname", "iso-host", "busybox", "--", "cat", "/etc/hostname")
    assert.are.equal(0, code)
    assert.are.equal("iso-host\n", out)
  end)
end)

describe("symlinks in the image", function()
  leaks.guard()

  it("leave the host directory untouched", function()
    local src = cli.tmpdir("nsbuild-volume")
    local out, code = run("-v", src .. ":/mnt/vol", "iso-escape", "--", "/bin/sh", "-c",
                          "echo data > /dev/shm/x; echo vol > /mnt/vol/y; ls /proc/self > /dev/null; echo ok")
    cli.sh("rm -rf " .. cli.quote(src))
    assert.are.equal(0, code, out)
    assert.matches("ok\n", out, 1, true)
    assert.are.same({}, cli.entries(host_dir))
    assert.are.same({}, cli.mounts_below(host_dir))
  end)
end)

describe("descriptors", function()
  leaks.guard()

  it("show only 0, 1 and 2", function()
    -- "; true" keeps the shell from exec'ing ls, so the list is the shell's.
    local line = "exec 7</etc/hostname 8</tmp 9>>" .. dir .. "/extra; " .. cli.nsbuild
                 .. " run --cache " .. cache .. " busybox -- sh -c 'ls /proc/$$/fd; true'"
    local out, code = cli.sh(line)
    assert.are.equal(0, code)
    assert.are.equal("0\n1\n2\n", out)
  end)

  it("reject -w /proc/self/fd/N", function()
    local line = "exec 8</tmp; " .. cli.nsbuild .. " run --cache " .. cache
                 .. " -w /proc/self/fd/8 busybox -- ls"
    local out, code = cli.sh(line)
    assert.are.equal(125, code)
    assert.matches("cwd '/proc/self/fd/8' is inside /proc", out, 1, true)
  end)

  it("give the command its own exe", function()
    local out, code = run("busybox", "--", "readlink", "/proc/self/exe")
    assert.are.equal(0, code)
    assert.are.equal("/bin/busybox\n", out)
  end)

  it("hide nsbuild's exe behind the init", function()
    local out, code = run("busybox", "--", "sh", "-c",
                          "cat /proc/1/exe > /dev/null || echo no-read; echo x >> /proc/1/exe || echo no-write")
    assert.are.equal(0, code)
    assert.matches("no-read", out, 1, true)
    assert.matches("no-write", out, 1, true)
  end)
end)

describe("init", function()
  leaks.guard()

  -- Start nsbuild in the background with a sleep as command, wait (at most
  -- 10 s) until the sleep runs, then run action with $nsb and $init set.
  local function with_sleep(action)
    return cli.sh(table.concat({
      cli.nsbuild .. " run --cache " .. cache .. " busybox -- sleep 30 & nsb=$!",
      "init=; cmd=",
      "for i in $(seq 200); do init=$(pgrep -P $nsb); [ -n \"$init\" ] && cmd=$(pgrep -x -P $init sleep); "
        .. "[ -n \"$cmd\" ] && break; sleep 0.05; done",
      "[ -n \"$cmd\" ] || { echo 'the command never ran'; kill -9 $nsb; exit 99; }",
      action,
      "wait $nsb",
    }, "\n"))
  end

  it("makes the command PID 2", function()
    local out, code = run("busybox", "--", "sh", "-c", "echo $$")
    assert.are.equal(0, code)
    assert.are.equal("2\n", out)
  end)

  it("reaps orphaned zombies", function()
    local out, code = run("busybox", "--", "sh", "-c",
      "sh -c 'sleep 0.3 &'; sleep 0.1; grep -h '(sleep)' /proc/[0-9]*/stat; sleep 0.8; echo ---; cat /proc/[0-9]*/stat")
    assert.are.equal(0, code)
    local before, after = out:match("^(.-)%-%-%-\n(.*)$")
    -- The orphan ran with the init as its parent.
    assert.matches("%(sleep%) S 1 ", before)
    for line in after:gmatch("[^\n]+") do
      assert.is_nil(line:match("^%d+ %(.-%) Z "), line)
    end
  end)

  it("passes SIGTERM to a trapping command", function()
    local out, code = cli.sh(table.concat({
      cli.nsbuild .. " run --cache " .. cache .. " busybox -- sh -c "
        .. "'trap \"echo got-term; exit 7\" TERM; touch /ready; while :; do sleep 0.05; done' & nsb=$!",
      "for i in $(seq 200); do init=$(pgrep -P $nsb) && [ -n \"$(pgrep -x -P $init sleep)\" ] && break; sleep 0.05; done",
      "kill -TERM $nsb",
      "wait $nsb",
    }, "\n"))
    assert.are.equal(7, code, out)
    assert.matches("got-term", out, 1, true)
  end)

  it("gives 143 for SIGTERM", function()
    local out, code = with_sleep("kill -TERM $nsb")
    assert.are.equal(143, code, out)
  end)

  it("gives 130 for SIGINT", function()
    local out, code = with_sleep("kill -INT $nsb")
    assert.are.equal(130, code, out)
  end)

  it("gives 137 for SIGKILL", function()
    local out, code = with_sleep("kill -KILL $init")
    assert.are.equal(137, code, out)
  end)
end)

describe("namespace joins", function()
  leaks.guard()

  -- Run unshare_args with a sleep in the background, find the sleep's pid
  -- (at most 10 s), run nsbuild with a policy joining its namespace kind,
  -- then stop the sleep. Returns the output and nsbuild's exit code.
  local function joined(unshare_args, kind, command)
    local policy = write("join-" .. kind .. ".lua", string.format(
      'return { namespaces = { %s = os.getenv("JOIN") } }\n', kind))
    return cli.sh(table.concat({
      "unshare " .. unshare_args .. " & helper=$!",
      "target=",
      -- unshare execs the sleep itself, or with --fork starts it as its child.
      "for i in $(seq 200); do if [ \"$(cat /proc/$helper/comm)\" = sleep ]; then target=$helper; "
        .. "else target=$(pgrep -x -P $helper sleep); fi; [ -n \"$target\" ] && break; sleep 0.05; done",
      "JOIN=/proc/$target/ns/" .. kind .. " " .. cli.nsbuild .. " run --cache " .. cache
        .. " --policy " .. policy .. " busybox -- " .. command .. "; code=$?",
      -- SIGKILL: PID 1 of a pid namespace ignores SIGTERM without a handler.
      "{ kill -KILL $target $helper; wait $helper; } 2>/dev/null",
      "exit $code",
    }, "\n"))
  end

  it("joins a uts namespace by path", function()
    local out, code = joined("--uts sh -c 'hostname joined-uts; exec sleep 30'", "uts", "hostname")
    assert.are.equal(0, code, out)
    assert.are.equal("joined-uts\n", out)
  end)

  it("joins a pid namespace by path", function()
    local out, code = joined("--pid --fork sleep 30", "pid", "sh -c 'cat /proc/1/comm'")
    assert.are.equal(0, code, out)
    -- PID 1 of the joined namespace is the sleep, not nsbuild's init.
    assert.are.equal("sleep\n", out)
  end)
end)

describe("hooks", function()
  leaks.guard()

  it("write a file before exec", function()
    local out, code = run("--policy", "recipes/hook-example.lua", "busybox", "--", "cat", "/run-info")
    assert.are.equal(0, code, out)
    assert.matches("uid 0 gid 0 argv cat /run-info", out, 1, true)
    assert.matches("hook-example: exited with code 0", out, 1, true)
  end)

  it("fail the start cleanly when raising", function()
    local policy = write("raising.lua",
                         'return { hooks = { after_mounts = function() error("refusing to start", 0) end } }\n')
    local out, code = run("--policy", policy, "busybox", "--", "true")
    assert.are.equal(125, code)
    assert.matches("hook after_mounts: refusing to start", out, 1, true)
    assert.are.same({}, cli.entries(cache_abs .. "/tmp"))
    assert.are.same({}, cli.mounts_below(cache_abs))
  end)

  it("fail the start in the parent cleanly", function()
    local policy = write("created.lua",
                         'return { hooks = { created = function() error("no thanks", 0) end } }\n')
    local out, code = run("--policy", policy, "busybox", "--", "true")
    assert.are.equal(125, code)
    assert.matches("hook created: no thanks", out, 1, true)
    assert.are.same({}, cli.entries(cache_abs .. "/tmp"))
  end)
end)

describe("sandbox policy", function()
  leaks.guard()

  it("runs as nobody on a read-only root", function()
    local out, code = run("--policy", "recipes/sandbox.lua", "busybox", "--", "sh", "-c",
                          "id -u; echo hi > /tmp/x && cat /tmp/x; touch /y 2>/dev/null || echo ro")
    assert.are.equal(0, code, out)
    assert.are.equal("65534\nhi\nro\n", out)
  end)

  it("has no capabilities", function()
    local out, code = run("--policy", "recipes/sandbox.lua", "busybox", "--", "cat", "/proc/self/status")
    assert.are.equal(0, code)
    assert.are.equal(NONE, cap_field(out, "CapBnd"))
    assert.are.equal(NONE, cap_field(out, "CapEff"))
  end)
end)

describe("explain", function()
  leaks.guard()

  it("prints the steps and runs nothing", function()
    local out, code = run("--explain", "--cap-add", "net_admin", "busybox", "--", "sh")
    assert.are.equal(0, code)
    assert.matches("namespaces: pid, mount, uts, ipc, net", out, 1, true)
    assert.matches("net_admin", out, 1, true)
    assert.matches("seccomp: default, %d+ rules", out)
    assert.are.same({}, cli.entries(cache_abs .. "/tmp"))
  end)
end)

describe("terminal", function()
  leaks.guard()
  local socket = "nsbuild-test-" .. require("nsbuild.core").getpid()

  local function tmux(args)
    return cli.sh("tmux -L " .. socket .. " " .. args)
  end

  local function screen()
    return (tmux("capture-pane -p -t t"))
  end

  --- Poll the pane (every 0.1 s, at most 10 s) until it contains text.
  local function wait_for(text)
    for _ = 1, 100 do
      local s = screen()
      if s:find(text, 1, true) then
        return s
      end
      cli.sh("sleep 0.1")
    end
    return screen()
  end

  it("gives a prompt, the size and restores the terminal", function()
    if cli.sh("command -v tmux") == "" then
      pending("tmux is missing: install it (tools/deps.sh lists it)")
      return
    end
    local before, after = dir .. "/stty-before", dir .. "/stty-after"
    local _, code = tmux("new-session -d -s t -x 100 -y 30 'bash --norc --noprofile'")
    assert.are.equal(0, code)
    local ok, err = pcall(function()
      tmux("send-keys -t t " .. cli.quote("stty -g > " .. before .. "; " .. cli.nsbuild
           .. " run --cache " .. cache .. " -it busybox sh; stty -g > " .. after .. "; echo AFTER-$((1+1))") .. " Enter")
      assert.matches("/ #", wait_for("/ #"), 1, true)
      tmux("send-keys -t t 'stty size; tty' Enter")
      local s = wait_for("/dev/pts/0")
      -- tmux gives the whole 100x30 window to its one pane.
      assert.matches("30 100", s, 1, true)
      assert.matches("/dev/pts/0", s, 1, true)
      -- A resize reaches the pty through SIGWINCH.
      tmux("resize-window -t t -x 80 -y 20")
      tmux("send-keys -t t 'clear; stty size' Enter")
      assert.matches("20 80", wait_for("20 80"), 1, true)
      tmux("send-keys -t t 'exit' Enter")
      -- The command line reads AFTER-$((1+1)); only the echo prints AFTER-2.
      assert.matches("AFTER-2", wait_for("AFTER-2"), 1, true)
    end)
    tmux("kill-server")
    assert(ok, err)
    local f1, f2 = io.open(before), io.open(after)
    local saved, restored = f1 and f1:read("a"), f2 and f2:read("a")
    if f1 then f1:close() end
    if f2 then f2:close() end
    assert.is_not_nil(saved)
    assert.are.equal(saved, restored)
  end)
end)
