--- File trees for copy steps: scan a source tree into a listing (type, mode,
-- owner, content hash or symlink target of every entry, with exclude
-- patterns), give its canonical form for the cache key, and copy it into a
-- root with every destination path resolved inside that root.
local core = require "nsbuild.core"
local errors = require "nsbuild.errors"

local M = {}

local check = errors.check

--- Convert a glob ("*.o", "build/**", "a?c") to an anchored Lua pattern:
-- "*" and "?" stop at "/", "**" crosses it.
function M.glob_pattern(glob)
  local out = { "^" }
  local i = 1
  while i <= #glob do
    local c = glob:sub(i, i)
    if c == "*" and glob:sub(i + 1, i + 1) == "*" then
      out[#out + 1] = ".*"
      i = i + 1
    elseif c == "*" then
      out[#out + 1] = "[^/]*"
    elseif c == "?" then
      out[#out + 1] = "[^/]"
    elseif c:match("%p") then
      out[#out + 1] = "%" .. c
    else
      out[#out + 1] = c
    end
    i = i + 1
  end
  out[#out + 1] = "$"
  return table.concat(out)
end

local function excluded(rel, patterns)
  for _, p in ipairs(patterns) do
    if rel:match(p) then
      return true
    end
  end
  return false
end

local function basename(path)
  return path:match("([^/]*)/*$")
end

local function dirname(path)
  local d = path:match("^(.*)/[^/]*$")
  if d == nil or d == "" then
    return "/"
  end
  return d
end

local function entry_of(path, rel, st, opts)
  local e = { path = path, rel = rel, type = st.type, mode = st.mode, uid = st.uid, gid = st.gid }
  if st.type == "file" then
    if opts.hash ~= false then
      e.sha256 = opts.store and opts.store:file_sha256(path, st) or check(core.sha256_file(path))
    end
  elseif st.type == "link" then
    e.target = check(core.readlink(path))
  elseif st.type == "char" or st.type == "block" then
    e.target = st.rdev_major .. ":" .. st.rdev_minor
  end
  return e
end

--- Scan a file or directory. opts: exclude (list of globs, matched against
-- paths relative to src), store (to reuse remembered content hashes), hash
-- (false to skip hashing), name (the basename to use for a single file).
-- Returns { type, name, entries = { { path, rel, type, mode, uid, gid,
-- sha256 | target }, ... } } with directories before their contents, sorted.
-- Raises when src does not exist.
function M.scan(src, opts)
  -- Absolute, because the copy runs where the working directory is elsewhere.
  -- Only the parent is resolved: a symlink given as src is copied, not followed.
  if src:sub(1, 1) ~= "/" then
    local parent, name = src:match("^(.*)/([^/]+)/*$")
    local dir = core.realpath(parent or ".")
    if dir then
      src = dir .. "/" .. (name or src)
    end
  end
  local st, err = core.lstat(src)
  if not st then
    errors.raise("copy: source not found: %s", err)
  end
  local listing = { type = st.type, name = opts.name or basename(src), entries = {} }
  if st.type ~= "dir" then
    listing.entries[1] = entry_of(src, "", st, opts)
    return listing
  end
  local patterns = {}
  for i, glob in ipairs(opts.exclude or {}) do
    patterns[i] = M.glob_pattern(glob)
  end
  local function walk(dir, prefix)
    for _, name in ipairs(check(core.listdir(dir))) do
      local rel = prefix == "" and name or prefix .. "/" .. name
      if not excluded(rel, patterns) then
        local path = dir .. "/" .. name
        local est = check(core.lstat(path))
        listing.entries[#listing.entries + 1] = entry_of(path, rel, est, opts)
        if est.type == "dir" then
          walk(path, rel)
        end
      end
    end
  end
  walk(src, "")
  return listing
end

--- Return the canonical form of a listing: one line per entry with type, mode,
-- content hash or link target, and path; never times.
function M.canonical(listing)
  local lines = { "root " .. listing.type .. " " .. listing.name }
  for _, e in ipairs(listing.entries) do
    lines[#lines + 1] = string.format("%s %o %s %s", e.type, e.mode, e.sha256 or e.target or "-", e.rel)
  end
  return table.concat(lines, "\n")
end

local function parse_owner(owner)
  if not owner then
    return nil
  end
  local uid, gid = owner:match("^(%d+):(%d+)$")
  return tonumber(uid), tonumber(gid)
end

-- Replace whatever is at path (a /proc/self/fd/N/name path) with entry e.
local function place(e, path, uid, gid)
  local existing = core.lstat(path)
  if e.type == "dir" then
    if existing and existing.type ~= "dir" then
      check(core.unlink(path))
      existing = nil
    end
    if not existing then
      check(core.mkdir(path, tonumber("755", 8)))
    end
  else
    if existing and existing.type == "dir" then
      check(core.rmtree(path))
    elseif existing then
      check(core.unlink(path))
    end
    check(core.copy_tree(e.path, path))
  end
  if uid then
    check(core.chown(path, uid, gid, true))
  end
  -- chown clears setuid and setgid bits, so the mode comes after it.
  if e.type ~= "link" then
    check(core.chmod(path, e.mode))
  end
end

--- Copy a scanned listing into root at dst: a directory's contents go into
-- dst; a single file goes to dst, or into dst when dst ends with "/".
-- owner "UID:GID" sets the owner of everything copied; nil keeps the source's.
-- Every parent directory is resolved inside root, so a symlink in the image
-- cannot send a file outside it.
function M.copy_in(listing, root, dst, owner)
  local uid, gid = parse_owner(owner)
  local base = dst
  if listing.type ~= "dir" then
    base = dst:sub(-1) == "/" and dst .. listing.name or dst
  else
    check(core.mkdirs_in_root(root, dst, tonumber("755", 8)))
  end
  for _, e in ipairs(listing.entries) do
    local target = e.rel == "" and base or base .. "/" .. e.rel
    local parent = dirname(target)
    check(core.mkdirs_in_root(root, parent, tonumber("755", 8)))
    local parentfd = check(core.open_in_root(root, parent, { "path", "directory" }))
    local ok, err = pcall(place, e, "/proc/self/fd/" .. parentfd:fileno() .. "/" .. basename(target),
                          uid, gid)
    parentfd:close()
    if not ok then
      errors.raise("copy %s to %s: %s", e.rel ~= "" and e.rel or listing.name, target,
                   errors.describe(err))
    end
  end
end

return M
