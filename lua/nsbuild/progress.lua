--- Build progress: a line per step as it starts ("[3/7] run apt-get install
-- -y gcc"), then its time or CACHED, the step's output indented, and a
-- summary. Modes: "plain" (lines, the default off a terminal), "tty" (colour,
-- the default on a terminal), "quiet" (nothing but errors).
local M = {}

local View = {}
View.__index = View

local colours = { step = "\27[1m", cached = "\27[32m", done = "\27[36m", output = "\27[2m",
                  reset = "\27[0m" }

--- Return seconds since boot as a number with fractions, for durations.
function M.clock()
  local f = io.open("/proc/uptime")
  if f then
    local t = f:read("n")
    f:close()
    if t then return t end
  end
  return os.time()
end

local function stderr_is_tty()
  return require("nsbuild.core").isatty(2)
end

--- Create a view. opts: mode ("plain", "tty", "quiet"; default: "tty" when
-- stderr is a terminal), output (a file, default io.stderr), prefix (a name put
-- before every line, for builds running side by side).
function M.new(opts)
  local mode = opts.mode
  if mode == nil then
    mode = stderr_is_tty() and "tty" or "plain"
  end
  if mode ~= "plain" and mode ~= "tty" and mode ~= "quiet" then
    error(string.format("invalid progress mode '%s' (use plain, tty or quiet)", tostring(mode)), 2)
  end
  return setmetatable({ mode = mode, out = opts.output or io.stderr,
                        prefix = opts.prefix and ("[" .. opts.prefix .. "] ") or "" }, View)
end

function View:paint(kind, text)
  if self.mode == "tty" then
    return colours[kind] .. text .. colours.reset
  end
  return text
end

-- Write one line; a line is written whole, so lines of parallel builds do not mix.
function View:write(...)
  if self.mode ~= "quiet" then
    self.out:write(self.prefix .. table.concat({ ... }))
    self.out:flush()
  end
end

function View:step(position, summary)
  self:write(self:paint("step", "[" .. position .. "] " .. summary), "\n")
end

function View:cached()
  self:write("  ", self:paint("cached", "CACHED"), "\n")
end

function View:done(seconds)
  self:write("  ", self:paint("done", string.format("done in %.2fs", seconds)), "\n")
end

--- Show one line of a step's output, indented under its step.
function View:output(line)
  self:write("  | ", self:paint("output", line), "\n")
end

function View:heading(text)
  self:write(self:paint("step", "== " .. text), "\n")
end

function View:summary(text)
  self:write(text, "\n")
end

return M
