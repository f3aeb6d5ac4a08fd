--- The leveled logger: every message of nsbuild to stderr goes through here,
-- prefixed with "nsbuild:". The level comes from NSBUILD_LOG (debug, info, warn,
-- error; default info).
local M = {}

local levels = { debug = 1, info = 2, warn = 3, error = 4 }
local threshold = levels[os.getenv("NSBUILD_LOG") or ""] or levels.info
local warned = {}

local function emit(level, fmt, ...)
  if levels[level] < threshold then
    return
  end
  local prefix = level == "info" and "nsbuild: " or ("nsbuild: " .. level .. ": ")
  io.stderr:write(prefix, string.format(fmt, ...), "\n")
end

--- Set the level below which messages are dropped ("debug", "info", "warn", "error").
function M.set_level(level)
  assert(levels[level], "unknown log level")
  threshold = levels[level]
end

function M.debug(fmt, ...) emit("debug", fmt, ...) end
function M.info(fmt, ...) emit("info", fmt, ...) end
function M.warn(fmt, ...) emit("warn", fmt, ...) end
function M.error(fmt, ...) emit("error", fmt, ...) end

--- Warn once per process for a given key, so a repeated condition is reported once.
function M.warn_once(key, fmt, ...)
  if warned[key] then
    return
  end
  warned[key] = true
  emit("warn", fmt, ...)
end

return M
