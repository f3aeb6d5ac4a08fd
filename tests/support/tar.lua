--- Writer of ustar archives, so that tests can build exactly the archive they need,
-- hostile ones included (absolute names, "..", links that point outside).
--
--     local tar = require "support.tar"
--     tar.write(path, { { name = "etc/", type = "dir" },
--                       { name = "etc/motd", data = "hi\n", mode = 420 } })
--
-- Entry fields: name, type ("file" (default), "dir", "symlink", "hardlink", "char",
-- "block", "fifo"), data, mode, uid, gid, mtime (seconds), mtime_nsec, linkname,
-- major, minor, xattrs (a table name -> value).  Names longer than 100 bytes are
-- split into the ustar prefix field.  xattrs and mtime_nsec go into a pax extended
-- header (SCHILY.xattr.*, mtime), which libarchive and GNU tar read.
local M = {}

local BLOCK = 512

local TYPEFLAGS = {
  file = "0", hardlink = "1", symlink = "2", char = "3", block = "4", dir = "5", fifo = "6",
}

local DEFAULT_MODES = { dir = 493, symlink = 511 }  -- 0755, 0777; 0644 otherwise
local DEFAULT_MTIME = 1600000000

local function octal(value, width)
  local s = string.format("%0" .. (width - 1) .. "o", value)
  assert(#s == width - 1, "value too large for a ustar field: " .. value)
  return s .. "\0"
end

local function field(s, width)
  assert(#s <= width, "string too long for a ustar field: " .. s)
  return s .. string.rep("\0", width - #s)
end

local function pad(data)
  local rest = #data % BLOCK
  if rest == 0 then
    return data
  end
  return data .. string.rep("\0", BLOCK - rest)
end

-- Split name into the ustar name (at most 100 bytes) and prefix (at most 155) fields.
local function split_name(name)
  if #name <= 100 then
    return name, ""
  end
  for i = #name, 1, -1 do
    if name:sub(i, i) == "/" and #name - i <= 100 and i - 1 <= 155 then
      return name:sub(i + 1), name:sub(1, i - 1)
    end
  end
  error("name cannot be split into the ustar name and prefix fields: " .. name, 3)
end

local function header(h)
  local name, prefix = split_name(h.name)
  local fields = {
    field(name, 100),
    octal(h.mode, 8),
    octal(h.uid, 8),
    octal(h.gid, 8),
    octal(h.size, 12),
    octal(h.mtime, 12),
    "        ",                 -- checksum, counted as spaces
    h.typeflag,
    field(h.linkname, 100),
    "ustar\0", "00",
    field("", 32), field("", 32), -- uname, gname: extraction uses the numeric ids
    octal(h.major, 8),
    octal(h.minor, 8),
    field(prefix, 155),
  }
  local block = pad(table.concat(fields))
  local sum = 0
  for i = 1, #block do
    sum = sum + block:byte(i)
  end
  return block:sub(1, 148) .. string.format("%06o\0 ", sum) .. block:sub(157)
end

-- A pax record is "<length> <key>=<value>\n", where length counts the whole record.
local function pax_record(key, value)
  local body = " " .. key .. "=" .. value .. "\n"
  local length = #body + 1
  while #tostring(length) + #body ~= length do
    length = #tostring(length) + #body
  end
  return length .. body
end

local function pax_header(entry)
  local keys, values = {}, {}
  for name, value in pairs(entry.xattrs or {}) do
    local key = "SCHILY.xattr." .. name
    keys[#keys + 1] = key
    values[key] = value
  end
  if entry.mtime_nsec then
    keys[#keys + 1] = "mtime"
    values.mtime = string.format("%d.%09d", entry.mtime or DEFAULT_MTIME, entry.mtime_nsec)
  end
  if #keys == 0 then
    return ""
  end
  table.sort(keys)
  local records = {}
  for i, key in ipairs(keys) do
    records[i] = pax_record(key, values[key])
  end
  local data = table.concat(records)
  return header {
    name = "PaxHeaders/" .. (entry.name:match("([^/]*)/?$") or "entry"):sub(1, 80),
    mode = 420, uid = 0, gid = 0, size = #data, mtime = 0, typeflag = "x",
    linkname = "", major = 0, minor = 0,
  } .. pad(data)
end

--- Encode entries as a ustar archive.
-- @treturn string the archive, ending with the two zero blocks
function M.encode(entries)
  local parts = {}
  for i, entry in ipairs(entries) do
    local kind = entry.type or "file"
    local typeflag = TYPEFLAGS[kind]
    if typeflag == nil then
      error(string.format("entry %d: unknown type '%s'", i, tostring(kind)), 2)
    end
    local data = kind == "file" and (entry.data or "") or ""
    parts[#parts + 1] = pax_header(entry)
    parts[#parts + 1] = header {
      name = entry.name,
      mode = entry.mode or DEFAULT_MODES[kind] or 420,
      uid = entry.uid or 0,
      gid = entry.gid or 0,
      size = #data,
      mtime = entry.mtime or DEFAULT_MTIME,
      typeflag = typeflag,
      linkname = entry.linkname or "",
      major = entry.major or 0,
      minor = entry.minor or 0,
    }
    parts[#parts + 1] = pad(data)
  end
  parts[#parts + 1] = string.rep("\0", 2 * BLOCK)
  return table.concat(parts)
end

--- Write entries as a ustar archive to path.
-- Raises an error when the file cannot be written.
function M.write(path, entries)
  local archive = M.encode(entries)
  local f = assert(io.open(path, "wb"))
  assert(f:write(archive))
  assert(f:close())
end

return M
