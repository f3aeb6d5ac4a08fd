--- Steps of the container's child that shape the process it execs: joined
-- namespaces, user and groups, working directory, rlimits, umask,
-- capabilities, no_new_privs, seccomp and the exec itself. Each function
-- takes the context c of container.lua and raises a message naming the value
-- and the fix. The order in which container.lua calls them matters, and each
-- constraint is stated where the step is listed.
local core = require "nsbuild.core"
local errors = require "nsbuild.errors"
local security = require "nsbuild.security"

local M = {}

local ENOENT = 2

local must = errors.must

local function read_file(path)
  local f = io.open(path, "r")
  if not f then
    return nil
  end
  local text = f:read("a")
  f:close()
  return text
end

--- Join the namespaces the policy names by path (the user namespace first).
-- A joined mount namespace is copied at once (unshare), so the setup that
-- follows changes the copy and never the namespace joined.
function M.join_namespaces(c)
  for _, join in ipairs(c.joins) do
    local name, path = join[1], join[2]
    if name ~= "pid" then
      must("join the " .. name .. " namespace " .. path, core.setns(path, name))
    end
    if name == "mount" then
      must("copy the joined mount namespace", core.unshare({ "mount" }))
    end
  end
end

--- Resolve the policy's user in the image's /etc/passwd and /etc/group, read
-- after pivot_root so that they are the container's files. Sets c.ids.
function M.resolve_user(c)
  local passwd = read_file("/etc/passwd")
  local group = read_file("/etc/group")
  c.ids = security.resolve_user(c.user, passwd, group, c.groups)
  -- container.environment's default HOME is root's; another user gets the
  -- home of its /etc/passwd entry instead.
  if c.ids.uid ~= 0 and c.ids.home and c.ids.home ~= "" then
    for i, entry in ipairs(c.env) do
      if entry == "HOME=/root" then
        c.env[i] = "HOME=" .. c.ids.home
      end
    end
  end
end

--- Enter the working directory, resolved inside the root without following
-- a magic link: a /proc/self/fd/N there would name a descriptor that nsbuild
-- left open, outside the container.
function M.enter_cwd(c)
  local fd, err = core.open_in_root("/", c.cwd:gsub("^/+", ""), { "path", "directory" })
  must("enter the working directory " .. c.cwd, fd, err)
  local ok, cerr = core.fchdir(fd)
  fd:close()
  must("enter the working directory " .. c.cwd, ok, cerr)
end

--- Apply the policy's rlimits and umask.
function M.set_limits(c)
  local names = {}
  for name in pairs(c.rlimits) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local soft, hard = security.rlimit_values(name, c.rlimits[name])
    must("set rlimit " .. name, core.setrlimit(name, soft, hard))
  end
  core.umask(security.umask_value(c.umask))
end

--- Switch to the container's groups and user. PR_SET_KEEPCAPS keeps the
-- permitted set across the change of uid, so that the capability step after
-- it can still drop the bounding set (which needs CAP_SETPCAP) and grant
-- what the policy gives a non-root user.
function M.switch_user(c)
  local ids = c.ids
  -- A user namespace mapped without newgidmap denies setgroups: the process
  -- keeps the groups it has, which is right only when none is requested.
  local setgroups = read_file("/proc/self/setgroups")
  if setgroups and setgroups:match("^deny") then
    if #ids.groups > 0 then
      error(string.format("setgroups: cannot set the supplementary groups %s because this user "
                          .. "namespace denies setgroups (the user has no range in /etc/subgid; "
                          .. "add one with usermod --add-subgids)", table.concat(ids.groups, ",")), 0)
    end
  else
    must("setgroups", core.setgroups(ids.groups))
  end
  must("setresgid " .. ids.gid, core.setresgid(ids.gid, ids.gid, ids.gid))
  must("keep capabilities", core.set_keepcaps(true))
  must("setresuid " .. ids.uid, core.setresuid(ids.uid, ids.uid, ids.uid))
end

--- Set the capability sets the policy computes for the container's user.
function M.set_caps(c)
  local sets = security.capability_sets(c.caps, c.ids.uid == 0)
  must("set capabilities", core.caps_set(sets))
end

function M.set_no_new_privs(c)
  if c.no_new_privs then
    must("set no_new_privs", core.set_no_new_privs())
  end
end

--- Load the seccomp filter (c.seccomp, computed by the parent), if any.
function M.load_seccomp(c)
  if c.seccomp_program then
    must("load the seccomp filter",
         core.seccomp_load_bpf(c.seccomp_program, { no_new_privs = c.seccomp.no_new_privs ~= false }))
  elseif c.seccomp then
    must("load the seccomp filter", core.seccomp_load(c.seccomp))
  end
end

--- Exec the command, through the built-in init unless the policy turns it
-- off. Marks every descriptor above 2 close-on-exec first: none of nsbuild's
-- reaches the command (the init closes its own once the command runs).
function M.exec(c)
  must("mark descriptors close-on-exec", core.cloexec_from(3))
  -- A Lua function in place of the command (the REPL of nsbuild --debug=repl)
  -- runs here, with every restriction of the policy already in force.
  if c.lua_main then
    local ok, result = pcall(c.lua_main)
    if not ok then
      io.stderr:write("nsbuild: ", tostring(result), "\n")
    end
    io.stdout:flush()
    core._exit(ok and (math.tointeger(result) or 0) or errors.FAILED)
  end
  local _, message, errno
  if c.init then
    _, message, errno = core.init_exec(c.argv, c.env)
  else
    _, message, errno = core.execve(c.argv[1], c.argv, c.env)
  end
  local code = errno == ENOENT and errors.NOT_FOUND or errors.CANNOT_INVOKE
  error({ message = message, code = code }, 0)
end

return M
