--- `nsbuild repl`: a Lua prompt with the nsbuild API as globals.
--
-- On a terminal it edits lines with libedit, keeps a history in the user's
-- data directory and completes names with Tab; elsewhere it reads plain lines.
-- Input that is an incomplete chunk continues on the next line, expressions
-- print their values (tables pretty-printed, cycles marked), an error prints
-- its traceback and the prompt returns, and Ctrl-C interrupts a running call,
-- not the REPL.
local core = require "nsbuild.core"

local M = {}

local PROMPT, CONTINUE = "nsbuild> ", ">> "

local keywords = { "and", "break", "do", "else", "elseif", "end", "false", "for", "function",
                   "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then",
                   "true", "until", "while" }

local function incomplete(err)
  return err:sub(-5) == "<eof>"
end

-- Compile a line as an expression first, so that "1 + 1" prints 2.
local function compile(source, env)
  local chunk = load("return " .. source, "=stdin", "t", env)
  if chunk then
    return chunk
  end
  return load(source, "=stdin", "t", env)
end

local function is_identifier(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  return keys
end

--- Format a value for display: strings quoted, tables expanded (sorted keys,
-- "<cycle>" for a table already being printed, "{...}" past depth 4), values
-- with a __tostring metamethod (images, fd handles, containers) as their
-- one-line summary.
function M.pretty(value)
  local open = {}
  local function format(v, indent, depth)
    if type(v) == "string" then
      return (string.format("%q", v):gsub("\\\n", "\\n"))
    end
    local mt = getmetatable(v)
    if type(v) ~= "table" or (mt and mt.__tostring) then
      return tostring(v)
    end
    if open[v] then
      return "<cycle>"
    end
    if depth > 4 then
      return "{...}"
    end
    open[v] = true
    local items, n = {}, #v
    for i = 1, n do
      items[#items + 1] = format(v[i], indent .. "  ", depth + 1)
    end
    for _, k in ipairs(sorted_keys(v)) do
      if not (math.type(k) == "integer" and k >= 1 and k <= n) then
        local key = is_identifier(k) and k or "[" .. format(k, indent .. "  ", depth + 1) .. "]"
        items[#items + 1] = key .. " = " .. format(v[k], indent .. "  ", depth + 1)
      end
    end
    open[v] = nil
    if #items == 0 then
      return "{}"
    end
    local one_line = "{ " .. table.concat(items, ", ") .. " }"
    if #one_line <= 72 and not one_line:find("\n", 1, true) then
      return one_line
    end
    return "{\n" .. indent .. "  " .. table.concat(items, ",\n" .. indent .. "  ") .. "\n" .. indent .. "}"
  end
  return format(value, "", 0)
end

-- Find the dotted name of a value in the API, for help().
local function find_name(nsbuild, value)
  for name, v in pairs(nsbuild.core) do
    if v == value then return "core." .. name, name end
  end
  for name, v in pairs(nsbuild) do
    if v == value then return "nsbuild." .. name end
  end
  return nil
end

-- The "---"/"--" comment block right above line `line` of a Lua source file.
local function comment_above(path, line)
  local f = io.open(path)
  if not f then
    return nil
  end
  local lines = {}
  for l in f:lines() do lines[#lines + 1] = l end
  f:close()
  local doc = {}
  for i = line - 1, 1, -1 do
    local text = lines[i]:match("^%s*%-%-%-?%s?(.*)$")
    if not text then break end
    table.insert(doc, 1, text)
  end
  if #doc == 0 then
    return nil
  end
  return table.concat(doc, "\n") .. "\n" .. (lines[line] or "")
end

--- Return the documentation of a function of the API (a C function of
-- nsbuild.core, or a Lua function with a comment above its definition), or
-- nil and a message.
function M.help_text(nsbuild, f)
  if type(f) == "string" then
    local value = nsbuild
    for part in f:gsub("^nsbuild%.", ""):gmatch("[^.:]+") do
      value = type(value) == "table" and value[part] or nil
    end
    f = value
  end
  if type(f) ~= "function" then
    return nil, "help: expected a function of the API, e.g. help(nsbuild.from) or help(core.clone)"
  end
  local name, core_name = find_name(nsbuild, f)
  local info = debug.getinfo(f, "S")
  if info.what == "C" then
    local ok, docs = pcall(require, "nsbuild.core_doc")
    local doc = ok and core_name and docs[core_name]
    if doc then
      return doc
    end
    return nil, "help: no documentation for " .. (name or "this C function")
  end
  local doc = info.source:sub(1, 1) == "@" and comment_above(info.source:sub(2), info.linedefined)
  if doc then
    return doc
  end
  return nil, string.format("help: no documentation above %s:%d", info.short_src, info.linedefined)
end

local function print_results(n, ...)
  if n == 0 then
    return
  end
  local out = {}
  for i = 1, n do
    out[i] = M.pretty((select(i, ...)))
  end
  io.stdout:write(table.concat(out, "\t"), "\n")
end

-- The keys a completion may offer for value: its own and its metatable's __index.
local function fields_of(value, methods_only)
  local names, seen = {}, {}
  local function add_from(t)
    if type(t) ~= "table" then return end
    for k, v in pairs(t) do
      if is_identifier(k) and not seen[k] and (not methods_only or type(v) == "function") then
        seen[k] = true
        names[#names + 1] = k
      end
    end
  end
  if type(value) == "table" then
    add_from(value)
  end
  local mt = getmetatable(value)
  if mt and type(mt.__index) == "table" then
    add_from(mt.__index)
  end
  table.sort(names)
  return names
end

--- Return the completions of word (e.g. "nsbuild.st", "img:ru", "pri") in env.
function M.complete(env, word)
  local base, sep, partial = word:match("^(.*)([.:])([%w_]*)$")
  local candidates = {}
  if base then
    local value = env
    for part in base:gmatch("[^.]+") do
      if not is_identifier(part) then return {} end
      local ok, v = pcall(function() return value[part] end)
      if not ok then return {} end
      value = v
    end
    for _, name in ipairs(fields_of(value, sep == ":")) do
      if name:sub(1, #partial) == partial then
        candidates[#candidates + 1] = base .. sep .. name
      end
    end
    return candidates
  end
  local seen = {}
  for _, list in ipairs({ fields_of(env), fields_of(_G), keywords }) do
    for _, name in ipairs(list) do
      if name:sub(1, #word) == word and not seen[name] then
        seen[name] = true
        candidates[#candidates + 1] = name
      end
    end
  end
  table.sort(candidates)
  return candidates
end

local function history_path()
  local data = os.getenv("XDG_DATA_HOME")
  if not data or data == "" then
    local home = os.getenv("HOME")
    if not home or home == "" then
      return nil
    end
    data = home .. "/.local/share"
  end
  local dir = data .. "/nsbuild"
  if not core.mkdirs(dir, tonumber("700", 8)) then
    return nil
  end
  return dir .. "/repl_history"
end

-- A line source: libedit on a terminal, plain reads elsewhere (pipes, tests).
local function line_reader(env)
  if not core.isatty(0) then
    return function(prompt)
      io.stdout:write(prompt)
      io.stdout:flush()
      local line = io.stdin:read("L")
      return line and line:gsub("\n$", "")
    end, function() end
  end
  local history = history_path()
  if history then
    core.read_history(history)
  end
  core.set_completer(function(word) return M.complete(env, word) end)
  local function read(prompt)
    while true do
      local line, why = core.readline(prompt)
      if line then
        if line:match("%S") then core.add_history(line) end
        return line
      end
      if why ~= "interrupted" then
        return nil
      end
      -- Ctrl-C at the prompt drops the line being typed.
      io.stdout:write("\n")
    end
  end
  local function close()
    if history then core.write_history(history, 1000) end
  end
  return read, close
end

--- Read, evaluate and print until end of input; return exit code 0.
function M.run(nsbuild)
  local env = setmetatable({ nsbuild = nsbuild, core = nsbuild.core }, { __index = _G })
  for _, name in ipairs(nsbuild.recipe_api) do
    env[name] = nsbuild[name]
  end
  env.pretty = function(v) io.stdout:write(M.pretty(v), "\n") end
  env.help = function(f)
    if f == nil then
      io.stdout:write("help(f) shows the documentation of an API function, e.g. help(from), "
                      .. "help(core.clone), help(\"nsbuild.build\").\nThe API: ",
                      table.concat(fields_of(nsbuild), ", "), "\n")
      return
    end
    local text, err = M.help_text(nsbuild, f)
    io.stdout:write(text or err, "\n")
  end

  local read, close = line_reader(env)
  io.stdout:write("nsbuild ", nsbuild.version, " repl (Lua 5.4): the API is loaded; help() explains, "
                  .. "Ctrl-D leaves\n")
  local buffer = nil
  while true do
    local line = read(buffer and CONTINUE or PROMPT)
    if line == nil then
      io.stdout:write("\n")
      close()
      return 0
    end
    buffer = buffer and (buffer .. "\n" .. line) or line
    local chunk, err = compile(buffer, env)
    if chunk then
      buffer = nil
      local results = table.pack(core.interruptible(chunk))
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
