--- One-off scripts: `nsbuild -e CODE [ARG...]` and `nsbuild script FILE
-- [ARG...]` run Lua with the API loaded, as the REPL has it: `nsbuild`,
-- `core`, the recipe names (from, deb, scratch, ..., policy) as globals,
-- and `arg` holding the ARGs. A plain `nsbuild FILE.lua` stays a recipe
-- build: a script is named by the `script` command, never guessed from
-- what the file returns.
--
-- The exit code is the script's integer result, else 0; an nsbuild error
-- ends it with its own code, any other error with 1 and a traceback.
local errors = require "nsbuild.errors"

local M = {}

local function environment(nsbuild, args, name)
  local env = setmetatable({ nsbuild = nsbuild, core = nsbuild.core }, { __index = _G })
  for _, n in ipairs(nsbuild.recipe_api) do
    env[n] = nsbuild[n]
  end
  env.arg = { [0] = name }
  for i, a in ipairs(args) do env.arg[i] = a end
  return env
end

-- The traceback of an error, cut where nsbuild's own frames (the xpcall
-- that runs the script, and the CLI below it) begin.
local function traceback(e)
  if errors.is(e) then
    return e
  end
  local text = debug.traceback(tostring(e), 2)
  local cut = text:find("\n%s*%[C%]: in function 'xpcall'")
  return cut and text:sub(1, cut - 1) or text
end

--- Run `nsbuild -e CODE [ARG...]` or `nsbuild script FILE [ARG...]` (args
-- is the whole command line); return the exit code.
function M.command(args, nsbuild)
  local source, name = args[2], nil
  if source == nil then
    errors.raise("%s: missing %s (usage: nsbuild -e CODE [ARG...] or nsbuild script FILE.lua [ARG...])",
                 args[1], args[1] == "-e" and "CODE" or "FILE")
  end
  local rest = { table.unpack(args, 3) }
  local chunk, err
  if args[1] == "-e" then
    name = "-e"
    chunk, err = load(source, "=(command line)", "t", environment(nsbuild, rest, name))
  else
    name = source
    chunk, err = loadfile(source, "t", environment(nsbuild, rest, name))
  end
  if not chunk then
    errors.raise("%s", err)
  end
  local ok, result = xpcall(chunk, traceback, table.unpack(rest))
  io.stdout:flush()
  if ok then
    return math.tointeger(result) or 0
  end
  if errors.is(result) then
    error(result, 0)
  end
  io.stderr:write("nsbuild: ", tostring(result), "\n")
  return 1
end

return M
