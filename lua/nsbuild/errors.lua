--- Errors that end nsbuild with a given exit code. A failure is raised as
-- { message = ..., code = ... } so that the command line can print one line and
-- exit with the code users expect: 125 when nsbuild failed, 126 when a command
-- could not be invoked, 127 when it was not found, or a build step's own code.
local M = {}

local Error = {}
Error.__index = Error
Error.__tostring = function(e) return e.message end

M.FAILED = 125
M.CANNOT_INVOKE = 126
M.NOT_FOUND = 127

--- Create an error value with a formatted message and an exit code.
function M.new(code, fmt, ...)
  return setmetatable({ code = code, message = string.format(fmt, ...) }, Error)
end

--- Raise an nsbuild failure (exit code 125) with a formatted message.
function M.raise(fmt, ...)
  error(M.new(M.FAILED, fmt, ...), 0)
end

--- Raise with an explicit exit code.
function M.raise_code(code, fmt, ...)
  error(M.new(code, fmt, ...), 0)
end

--- Return true when e is an error value made by this module.
function M.is(e)
  return getmetatable(e) == Error
end

--- Return e's message and exit code, whatever kind of error value e is.
function M.describe(e)
  if M.is(e) then
    return e.message, e.code
  end
  return tostring(e), M.FAILED
end

--- Return the value of a core call, or raise its message with code 125.
-- Use it where a failed system call ends the operation: `check(core.mkdir(p))`.
function M.check(value, message, ...)
  if value == nil then
    error(M.new(M.FAILED, "%s", message), 2)
  end
  return value, message, ...
end

--- Return value, or raise "what: message" (a plain string, no position) when
-- value is nil: the check for core calls in the container's start, whose
-- messages name the step that failed.
function M.must(what, value, message)
  if value == nil then
    error(what .. ": " .. tostring(message), 0)
  end
  return value
end

return M
