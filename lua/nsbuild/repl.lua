--- `nsbuild repl`: a Lua prompt with the nsbuild API as globals. Input that is
-- an incomplete chunk continues on the next line; expressions print their values.
local M = {}

local function incomplete(err)
  return err:sub(-5) == "<eof>"
end

local function compile(source, env)
  local chunk, err = load("return " .. source, "=stdin", "t", env)
  if chunk then
    return chunk
  end
  return load(source, "=stdin", "t", env)
end

local function print_results(n, ...)
  if n > 0 then
    local out = {}
    for i = 1, n do
      out[i] = tostring((select(i, ...)))
    end
    io.stdout:write(table.concat(out, "\t"), "\n")
  end
end

--- Read, evaluate and print until end of input; return exit code 0.
function M.run(nsbuild)
  local env = setmetatable({ nsbuild = nsbuild, core = nsbuild.core }, { __index = _G })
  for _, name in ipairs(nsbuild.recipe_api) do
    env[name] = nsbuild[name]
  end
  io.stdout:write("nsbuild ", nsbuild.version, " repl (Lua 5.4); the API is loaded, Ctrl-D leaves\n")
  local buffer = nil
  while true do
    io.stdout:write(buffer and ">> " or "nsbuild> ")
    io.stdout:flush()
    local line = io.stdin:read("L")
    if line == nil then
      io.stdout:write("\n")
      return 0
    end
    buffer = (buffer or "") .. line
    local chunk, err = compile(buffer, env)
    if chunk then
      buffer = nil
      local results = table.pack(xpcall(chunk, debug.traceback))
      if results[1] then
        print_results(results.n - 1, table.unpack(results, 2, results.n))
      else
        io.stderr:write(tostring(results[2]), "\n")
      end
    elseif not incomplete(err) then
      buffer = nil
      io.stderr:write(err, "\n")
    end
  end
end

return M
