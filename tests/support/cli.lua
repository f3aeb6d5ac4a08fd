--- Run the nsbuild executable of the checkout from specs.
local M = {}

M.nsbuild = "./nsbuild"

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end
M.quote = quote

--- Run a shell command line; return its combined output and exit code.
function M.sh(line)
  local p = io.popen("(" .. line .. ") 2>&1; echo \"::exit $?\"")
  local out = p:read("a")
  p:close()
  local body, code = out:match("^(.-)::exit (%d+)\n$")
  return body, tonumber(code)
end

--- Run nsbuild with the given arguments (each quoted); return output and exit code.
function M.run(args)
  local parts = { M.nsbuild }
  for _, a in ipairs(args) do
    parts[#parts + 1] = quote(a)
  end
  return M.sh(table.concat(parts, " "))
end

--- Run nsbuild with stdout and stderr kept apart; return stdout, stderr, code.
function M.run_split(args)
  local err = os.tmpname()
  local parts = { M.nsbuild }
  for _, a in ipairs(args) do
    parts[#parts + 1] = quote(a)
  end
  local out, code = M.sh(table.concat(parts, " ") .. " 2>" .. err)
  local f = io.open(err)
  local stderr = f:read("a")
  f:close()
  os.remove(err)
  return out, stderr, code
end

--- Create a temporary directory and return its path.
function M.tmpdir(prefix)
  local out = M.sh("mktemp -d /tmp/" .. (prefix or "nsbuild-test") .. "-XXXXXX")
  return (out:gsub("\n$", ""))
end

--- Return the mount points below prefix in this mount namespace.
function M.mounts_below(prefix)
  local list = {}
  for line in io.lines("/proc/self/mountinfo") do
    local point = line:match("^%S+ %S+ %S+ %S+ (%S+)")
    if point:sub(1, #prefix) == prefix then
      list[#list + 1] = point
    end
  end
  return list
end

--- Return the sorted entries of a directory (empty when it does not exist).
function M.entries(dir)
  local out = M.sh("ls -A " .. quote(dir) .. " 2>/dev/null")
  local list = {}
  for name in out:gmatch("[^\n]+") do
    list[#list + 1] = name
  end
  return list
end

return M
