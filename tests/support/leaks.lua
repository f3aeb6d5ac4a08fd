--- A leak guard for specs: call guard() inside a describe block, and each test
-- of it fails when it leaves a mount or a child process behind.
local assert = require "luassert"

local M = {}

local function mounts()
  local set = {}
  for line in io.lines("/proc/self/mountinfo") do
    local mount_point = line:match("^%S+ %S+ %S+ %S+ (%S+)")
    set[mount_point] = (set[mount_point] or 0) + 1
  end
  return set
end

--- Return the pids whose parent is this process, sorted.
function M.children()
  local me = tostring(require("nsbuild.core").getpid())
  local list = {}
  local p = io.popen("exec ls /proc")
  for name in p:lines() do
    if name:match("^%d+$") then
      local f = io.open("/proc/" .. name .. "/stat")
      local stat = f and f:read("a")
      if f then f:close() end
      -- The ppid is the second field after the parenthesised command name.
      local comm, ppid = stat and stat:match("^%d+ %((.*)%) %S+ (%d+)")
      -- The ls that lists /proc is a child too, while it runs.
      if ppid == me and comm ~= "ls" then
        list[#list + 1] = tonumber(name)
      end
    end
  end
  p:close()
  table.sort(list)
  return list
end

local function new_mounts(before)
  local added = {}
  for mount_point, n in pairs(mounts()) do
    if n > (before[mount_point] or 0) then
      added[#added + 1] = mount_point
    end
  end
  table.sort(added)
  return added
end

--- Register before_each/after_each hooks that assert no mount and no child
-- process outlives a test.
function M.guard()
  local busted = require "busted"
  local before_each, after_each = busted.before_each, busted.after_each
  local before
  before_each(function()
    before = mounts()
  end)
  after_each(function()
    local added = new_mounts(before)
    assert.are.same({}, added, "mounts left behind")
    assert.are.same({}, M.children(), "child processes left behind")
  end)
end

return M
