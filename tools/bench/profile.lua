-- Run the nsbuild command line under plain lua5.4 with every function of the
-- nsbuild modules and of nsbuild.core wrapped in a CPU timer, and print where
-- the process's CPU time went: module loading, then each function's calls and
-- inclusive milliseconds. A container's child prints the time of each step of
-- container.child_steps before exec. Waits (a blocking write, a grace period)
-- cost no CPU and do not show: `perf trace --duration 1` shows those.
--   lua5.4 tools/bench/profile.lua run --cache build/bench-cache busybox -- /bin/true
-- Run from the top of the tree. os.clock is the process's user and system time.
-- With PROFILE_MARKS=1 each call of a function of the nsbuild modules, and each
-- child step, also opens "/.mark/NAME" (which fails), so that
--   strace -f -ttt --seccomp-bpf -e trace=openat,clone3,execve,wait4 lua5.4 ...
-- shows a wall-clock timeline with the blocking calls between the marks.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "lua/?.so;" .. package.cpath

local clock = os.clock
local totals, calls = {}, {}
local wrapped = {}
local marks = os.getenv("PROFILE_MARKS") == "1"

local function mark(name)
  if marks then
    io.open("/.mark/" .. name)
  end
end

local function wrap(name, fn)
  local marked = not name:match("^nsbuild%.core%.")
  return function(...)
    if marked then mark(name) end
    local start = clock()
    local results = table.pack(fn(...))
    if marked then mark("end " .. name) end
    totals[name] = (totals[name] or 0) + clock() - start
    calls[name] = (calls[name] or 0) + 1
    return table.unpack(results, 1, results.n)
  end
end

local function wrap_module(name, module)
  if type(module) ~= "table" or wrapped[module] then
    return
  end
  wrapped[module] = true
  for key, value in pairs(module) do
    if type(value) == "function" then
      module[key] = wrap(name .. "." .. key, value)
    end
  end
end

-- Time every require; wrap each nsbuild module as it loads, so that calls
-- between modules go through the wrappers.
local plain_require = require
local loads = {}
require = function(name)
  if package.loaded[name] then
    return package.loaded[name]
  end
  local start = clock()
  local module = plain_require(name)
  loads[#loads + 1] = { name, clock() - start }
  if name:match("^nsbuild") then
    wrap_module(name, module)
  end
  return module
end

local function report()
  local out = io.stderr
  out:write("module loading (inclusive ms):\n")
  for _, load in ipairs(loads) do
    out:write(string.format("  %-28s %7.2f\n", load[1], load[2] * 1000))
  end
  local names = {}
  for name in pairs(totals) do names[#names + 1] = name end
  table.sort(names, function(a, b) return totals[a] > totals[b] end)
  out:write("functions (calls, inclusive ms), top 40:\n")
  for i = 1, math.min(40, #names) do
    local name = names[i]
    out:write(string.format("  %-44s %5d %8.2f\n", name, calls[name], totals[name] * 1000))
  end
  out:write(string.format("process CPU: %.2f ms\n", clock() * 1000))
end

local start = clock()
local cli = require "nsbuild.cli"
loads[#loads + 1] = { "(all, from the start)", clock() - start }

-- The child's steps run after the fork: each prints its own time, since the
-- last one execs and no report runs there.
local container = package.loaded["nsbuild.container"]
for _, step in ipairs(container and container.child_steps or {}) do
  local name, fn = step[1], step[2]
  step[2] = function(...)
    mark("child step " .. name)
    local t = clock()
    fn(...)
    io.stderr:write(string.format("  child step %-44s %6.2f ms\n", name, (clock() - t) * 1000))
  end
end

local code = cli.main({ [0] = "nsbuild", table.unpack(arg) })
report()
os.exit(code)
