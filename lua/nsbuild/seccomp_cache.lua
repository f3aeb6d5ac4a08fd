--- Generated seccomp programs, kept so that each profile is generated once.
--
-- libseccomp takes tens of milliseconds to generate the BPF program of a
-- profile of a few hundred rules, and the kernel a fraction of one to load it
-- (docs/benchmarks.md). M.program generates a profile's program once per
-- process and, given a directory, once for every process using it: they read the
-- file and load it with core.seccomp_load_bpf. A program depends on the
-- profile, the libseccomp version (its syscall tables) and the architecture,
-- which together make the file's name. Requires nsbuild.core.
local core = require "nsbuild.core"

local M = {}

local FORMAT = "nsbuild-seccomp-program-v1"

local programs = {}

-- Append a canonical encoding of value to out: table keys in sorted order,
-- so that equal profiles encode to equal strings.
local function encode(value, out)
  local kind = type(value)
  if kind == "table" then
    local keys = {}
    for k in pairs(value) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b)
      if type(a) ~= type(b) then return type(a) < type(b) end
      return a < b
    end)
    out[#out + 1] = "{"
    for _, k in ipairs(keys) do
      encode(k, out)
      out[#out + 1] = "="
      encode(value[k], out)
      out[#out + 1] = ","
    end
    out[#out + 1] = "}"
  elseif kind == "string" then
    out[#out + 1] = string.format("%q", value)
  elseif math.type(value) == "integer" then
    out[#out + 1] = string.format("%d", value)
  elseif kind == "number" then
    out[#out + 1] = string.format("%.17g", value)
  elseif kind == "boolean" then
    out[#out + 1] = tostring(value)
  else
    error("seccomp profile: a " .. kind .. " value cannot be part of a profile", 0)
  end
end

--- Return the key that names the program of profile: sha256 of the profile's
-- canonical encoding, the libseccomp version and the native architecture.
function M.key(profile)
  local out = { FORMAT, "\n", core.seccomp_version(), "\n", core.seccomp_arch_native(), "\n" }
  encode(profile, out)
  return core.sha256(table.concat(out))
end

-- A file is "sha256 HEX\nskipped NAME...\n" followed by the program, so that a
-- damaged file is noticed before its program is loaded.
local function parse(data)
  local digest, names, program = data:match("^sha256 (%x+)\nskipped([^\n]*)\n(.*)$")
  if not digest or core.sha256(program) ~= digest then
    return nil
  end
  local skipped = {}
  for name in names:gmatch("%S+") do skipped[#skipped + 1] = name end
  return { program = program, skipped = skipped }
end

local function serialize(entry)
  return string.format("sha256 %s\nskipped %s\n%s", core.sha256(entry.program),
                       table.concat(entry.skipped, " "), entry.program)
end

--- Return the BPF program of a seccomp profile (as core.seccomp_bpf returns
-- it) and the list of syscall names libseccomp skipped. The program is
-- generated once per process, and once per directory when dir is given: it is
-- kept there as KEY.bpf (dir is created). Returns nil, message, errno when
-- libseccomp cannot generate it; a profile that is not a valid profile raises.
function M.program(profile, dir)
  local key = M.key(profile)
  local entry = programs[key]
  local path = dir and (dir .. "/" .. key .. ".bpf")
  if not entry and path then
    local data = core.read_file(path)
    entry = data and parse(data)
  end
  if not entry then
    local program, skipped, errno = core.seccomp_bpf(profile)
    if not program then
      return nil, skipped, errno
    end
    entry = { program = program, skipped = skipped }
    -- The cache only saves time: a directory that cannot be written costs a
    -- generation in the next process, nothing else.
    if path and core.mkdirs(dir, tonumber("755", 8)) then
      core.write_file(path, serialize(entry), tonumber("644", 8))
    end
  end
  programs[key] = entry
  return entry.program, entry.skipped
end

return M
