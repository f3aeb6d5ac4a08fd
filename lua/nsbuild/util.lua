--- Small helpers shared by the library: shell quoting and running host tools.
local M = {}

--- Return a stand-in for module name that requires it on the first field read.
-- A fully cached rebuild then never compiles the container runtime. A module
-- the child of a clone uses must be touched in the parent first, because after
-- pivot_root the host's lua/ directory is gone.
function M.lazy(name)
  return setmetatable({}, {
    __index = function(_, key) return require(name)[key] end,
  })
end

--- Quote s for /bin/sh.
function M.shell_quote(s)
  if s:match("^[%w%%+,./:=@_-]+$") then
    return s
  end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- Return argv as one shell command line.
function M.command_line(argv)
  local out = {}
  for i, a in ipairs(argv) do
    out[i] = M.shell_quote(a)
  end
  return table.concat(out, " ")
end

--- Run a host command and return its standard output and standard error
-- together, and whether it exited 0 (then its exit status).
-- opts.cwd: directory to run it in.
function M.capture(argv, opts)
  local line = M.command_line(argv) .. " 2>&1"
  if opts and opts.cwd then
    line = "cd " .. M.shell_quote(opts.cwd) .. " && " .. line
  end
  local pipe = assert(io.popen(line, "r"))
  local output = pipe:read("a")
  local ok, _, status = pipe:close()
  return output, ok == true, status
end

--- Return the last non-empty line of text, trimmed, for one-line error messages.
function M.last_line(text)
  local last = ""
  for line in text:gmatch("[^\n]+") do
    if line:match("%S") then
      last = line
    end
  end
  return (last:gsub("^%s+", ""):gsub("%s+$", ""))
end

return M
