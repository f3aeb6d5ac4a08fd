--- The layer store in rootfs-cache/: layers, the step index, tags, work in
-- progress, and the lock that serialises commits.
--
--   layers/<id>/        a committed layer tree (overlay format), read-only by convention
--   layers/<id>.json    its metadata: parent, size, created_by
--   steps/<key>.json    what a step produced: its layer id (if any)
--   images/<name>.json  tags: the layer list and config of a built image
--   downloads/          fetched inputs, named by their sha256
--   cache-mounts/<id>/  directories that persist between builds (run mounts of type "cache")
--   logs/<key>.log      output of the run step with that key
--   hashes.json         content hashes of copied files, by device, inode, size, mtime and ctime
--   tmp/<work>/         work in progress, each held by tmp/<work>.lock (flock)
--   lock                flock taken to commit
--   build.lock          flock: shared by every build, exclusive for prune
--
-- Every commit is write-to-tmp then rename, so a build killed at any moment
-- leaves the store as it was. Requires nsbuild.core and cjson.
--
-- For a user other than root, layers hold files of its subordinate ids, which
-- it can neither read nor remove directly: trees are measured and removed in
-- a child mapped like a container (userns.du, userns.rmtree).
local core = require "nsbuild.core"
local cjson = require "cjson"
local errors = require "nsbuild.errors"
local log = require "nsbuild.log"
local userns = require "nsbuild.userns"

local M = {}

local EEXIST = 17

local Store = {}
Store.__index = Store

local check = errors.check

local subdirs = { "layers", "steps", "images", "downloads", "tmp", "logs", "blobs", "blobs/sha256",
                  "cache-mounts" }

-- The checkout nsbuild runs from, when it runs from its source tree: the
-- directory holding lua/nsbuild/init.lua, a Makefile and rootfs-cache/.
local function source_tree()
  local init = package.searchpath("nsbuild", package.path)
  local top = init and init:match("^(.-)/?lua/nsbuild/init%.lua$")
  if top == nil then
    return nil
  end
  if top == "" then
    top = "."
  end
  if core.lstat(top .. "/Makefile") and core.lstat(top .. "/rootfs-cache") then
    return top
  end
  return nil
end

--- Return the store directory to use when none is given: NSBUILD_CACHE, else
-- rootfs-cache/ of the source tree nsbuild runs from, else /var/lib/nsbuild for
-- root and $XDG_DATA_HOME/nsbuild (~/.local/share/nsbuild) for other users.
function M.default_dir()
  local env = os.getenv("NSBUILD_CACHE")
  if env and env ~= "" then
    return env
  end
  local top = source_tree()
  if top then
    return top .. "/rootfs-cache"
  end
  if core.geteuid() == 0 then
    return "/var/lib/nsbuild"
  end
  local data = os.getenv("XDG_DATA_HOME")
  if not data or data == "" then
    data = (os.getenv("HOME") or "") .. "/.local/share"
  end
  return data .. "/nsbuild"
end

--- Open (creating if needed) the store at dir. Removes work directories left by
-- builds that no longer run. Raises when dir cannot be created.
function M.open(dir)
  local ok, err = core.mkdirs(dir, tonumber("755", 8))
  if not ok then
    errors.raise("cannot create the cache directory: %s (use --cache DIR or NSBUILD_CACHE)", err)
  end
  dir = check(core.realpath(dir))
  -- One mkdir each, in order (parents first): an existing store costs one
  -- failed call per directory, not one per path component.
  for _, sub in ipairs(subdirs) do
    local made, err, errno = core.mkdir(dir .. "/" .. sub, tonumber("755", 8))
    if not made and errno ~= EEXIST then
      errors.raise("cannot create the cache directory: %s", err)
    end
  end
  local store = setmetatable({ dir = dir, held = {} }, Store)
  store:clean_stale_work()
  return store
end

function Store:path(...)
  return table.concat({ self.dir, ... }, "/")
end

--- Take the store's commit lock; returns a function that releases it.
function Store:lock()
  local fd = check(core.open(self:path("lock"), { "rdwr", "creat" }, tonumber("644", 8)))
  check(core.flock(fd, "ex"))
  return function()
    core.flock(fd, "un")
    fd:close()
  end
end

--- Take the build lock, shared with other builds and exclusive of prune, for
-- as long as layers are used without a tag protecting them. Returns a
-- function that releases it.
function Store:build_lock(exclusive)
  local fd = check(core.open(self:path("build.lock"), { "rdwr", "creat" }, tonumber("644", 8)))
  check(core.flock(fd, exclusive and "ex" or "sh"))
  return function()
    core.flock(fd, "un")
    fd:close()
  end
end

--- Create a work directory under tmp/ held by this process until released.
-- Returns its path and a release function; release(true) also removes it.
-- A work directory whose holder died is removed by the next open of the store.
function Store:work_dir(purpose)
  local base = check(core.mkdtemp(self:path("tmp", purpose .. "-")))
  -- The lock is taken under a name that clean_stale_work skips, then renamed
  -- into place: another nsbuild opening the store never finds the lock of a
  -- live work directory free, so it never removes one.
  local pending = base .. ".lock-new"
  local lockfd = check(core.open(pending, { "rdwr", "creat", "excl" }, tonumber("600", 8)))
  check(core.flock(lockfd, "ex", true))
  check(core.rename(pending, base .. ".lock"))
  self.held[base] = lockfd
  local function release(remove)
    if remove then
      local ok, err = userns.rmtree(base)
      if not ok then
        log.warn("cannot remove the work directory: %s", err)
      end
    end
    core.unlink(base .. ".lock")
    lockfd:close()
    self.held[base] = nil
  end
  return base, release
end

--- Remove tmp/ entries whose lock no process has taken: the leftovers of a
-- killed build.
function Store:clean_stale_work()
  local tmp = self:path("tmp")
  for _, name in ipairs(check(core.listdir(tmp))) do
    local work = name:match("^(.*)%.lock$")
    if work then
      local fd = core.open(tmp .. "/" .. name, { "rdwr" })
      if fd and core.flock(fd, "ex", true) then
        local ok, err = userns.rmtree(tmp .. "/" .. work)
        if ok then
          core.unlink(tmp .. "/" .. name)
          log.debug("removed stale work directory %s", work)
        else
          log.warn("cannot remove stale work directory: %s", err)
        end
      end
      if fd then
        fd:close()
      end
    end
  end
end

function Store:layer_path(id)
  return self:path("layers", id)
end

function Store:has_layer(id)
  return core.lstat(self:layer_path(id)) ~= nil and core.lstat(self:layer_path(id) .. ".json") ~= nil
end

local function read_json(path)
  local data = core.read_file(path)
  if not data then
    return nil
  end
  local ok, value = pcall(cjson.decode, data)
  if not ok then
    log.warn("ignoring corrupt store file %s: %s", path, value)
    return nil
  end
  return value
end

local function write_json(path, value)
  check(core.write_file(path, cjson.encode(value), tonumber("644", 8)))
end

--- Move a finished layer tree from a work directory into layers/<id>.
-- When another build committed the same id first, its layer is kept and ours
-- removed: equal ids mean equal steps. The metadata file is written last, so
-- a layer counts as present only once it is complete.
function Store:commit_layer(tree, id, meta)
  local unlock = self:lock()
  local ok, err = pcall(function()
    local target = self:layer_path(id)
    if core.lstat(target) then
      check(userns.rmtree(tree))
    else
      check(userns.rename(tree, target))
    end
    meta.size = meta.size or (userns.du(target))
    write_json(target .. ".json", meta)
  end)
  unlock()
  if not ok then
    error(err, 0)
  end
end

function Store:layer_meta(id)
  return read_json(self:layer_path(id) .. ".json")
end

--- Return the record of a step by cache key, or nil when it was never built.
function Store:step(key)
  local rec = read_json(self:path("steps", key .. ".json"))
  if rec and rec.layer and not self:has_layer(rec.layer) then
    return nil
  end
  return rec
end

function Store:put_step(key, record)
  write_json(self:path("steps", key .. ".json"), record)
end

-- Deep equality of two decoded JSON values.
local function same_value(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then
    return a == b
  end
  for k, v in pairs(a) do
    if not same_value(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function image_file(name)
  return (name:gsub("[%%/]", function(c) return string.format("%%%02X", c:byte()) end)) .. ".json"
end

--- Normalise an image reference: "busybox" means "busybox:latest".
function M.normalize_name(name)
  if not name:find(":", 1, true) then
    return name .. ":latest"
  end
  return name
end

--- Remove a tag; returns true, or nil and a message when there is no such tag.
function Store:remove_tag(name)
  name = M.normalize_name(name)
  local ok = core.unlink(self:path("images", image_file(name)))
  if not ok then
    return nil, string.format("image '%s' not found", name)
  end
  return true
end

--- Record a built image under a tag name.
function Store:tag(name, image)
  name = M.normalize_name(name)
  image.name = name
  local path = self:path("images", image_file(name))
  -- A rebuild that changed nothing skips the write and its two fsyncs. The
  -- values are compared, not the text: cjson's key order varies per process.
  local data = cjson.encode(image)
  if not same_value(read_json(path), cjson.decode(data)) then
    check(core.write_file(path, data, tonumber("644", 8)))
  end
end

--- Return the image record of a tag, or nil.
function Store:image(name)
  return read_json(self:path("images", image_file(M.normalize_name(name))))
end

--- Return every tagged image record, sorted by name.
function Store:images()
  local list = {}
  for _, file in ipairs(check(core.listdir(self:path("images")))) do
    if file:sub(-5) == ".json" then
      local rec = read_json(self:path("images", file))
      if rec then
        list[#list + 1] = rec
      end
    end
  end
  table.sort(list, function(a, b) return a.name < b.name end)
  return list
end

--- Return the content sha256 of a regular file, hashing it only when its
-- device, inode, size, mtime or ctime changed since it was last hashed (as
-- git's index does): a file merely touched hashes again to the same value.
-- st is the file's lstat table. Call save_hashes() once the build is done.
function Store:file_sha256(path, st)
  if not self.hashes then
    self.hashes = read_json(self:path("hashes.json")) or {}
  end
  local stamp = string.format("%d:%d:%d:%d.%09d:%d.%09d", st.dev, st.ino, st.size,
                              st.mtime_sec, st.mtime_nsec, st.ctime_sec, st.ctime_nsec)
  local known = self.hashes[path]
  if known and known.stamp == stamp then
    return known.sha256
  end
  local sum = check(core.sha256_file(path))
  self.hashes[path] = { stamp = stamp, sha256 = sum }
  self.hashes_changed = true
  return sum
end

function Store:save_hashes()
  if self.hashes_changed then
    write_json(self:path("hashes.json"), self.hashes)
    self.hashes_changed = false
  end
end

--- Return the directory of a cache mount, created on first use.
function Store:cache_mount_dir(id)
  if not id:match("^[%w._-]+$") then
    errors.raise("invalid cache mount id '%s' (letters, digits, '.', '_' and '-')", id)
  end
  local dir = self:path("cache-mounts", id)
  check(core.mkdirs(dir, tonumber("755", 8)))
  return dir
end

local function remove_tree(path, what)
  local ok, err = userns.rmtree(path)
  if not ok then
    log.warn("cannot remove %s: %s", what, err)
  end
  return ok
end

--- Remove every layer, step record and blob that no tag reaches, the logs of
-- removed steps and leftover work directories. Waits for running builds to
-- finish. Returns { layers = n, steps = n, blobs = n, bytes = freed }.
function Store:prune()
  local release = self:build_lock(true)
  local unlock = self:lock()
  local result = { layers = 0, steps = 0, blobs = 0, bytes = 0 }
  local ok, err = pcall(function()
    self:clean_stale_work()
    local live_layers, live_steps = {}, {}
    for _, img in ipairs(self:images()) do
      for _, id in ipairs(img.layers or {}) do live_layers[id] = true end
      for _, key in ipairs(img.steps or {}) do live_steps[key] = true end
    end
    for _, name in ipairs(check(core.listdir(self:path("layers")))) do
      local id = name:match("^(.-)%.json$") or name
      if not live_layers[id] then
        local path = self:path("layers", name)
        if name == id then
          result.bytes = result.bytes + (userns.du(path) or 0)
          if remove_tree(path, "layer " .. id) then
            result.layers = result.layers + 1
          end
        else
          core.unlink(path)
        end
      end
    end
    -- Layer blobs are named in the live layers' metadata. Image configs and
    -- manifests are not kept: an export writes them again, in a few bytes.
    -- NOTE: an export running during the prune can lose a config blob it just
    -- wrote; it then fails and can be rerun.
    local live_blobs = {}
    for id in pairs(live_layers) do
      local meta = self:layer_meta(id)
      for _, blob in pairs(meta and meta.blobs or {}) do
        if type(blob) == "table" and type(blob.digest) == "string" then
          live_blobs[blob.digest:match("^sha256:(%x+)$") or ""] = true
        end
      end
    end
    for _, name in ipairs(check(core.listdir(self:path("blobs", "sha256")))) do
      if not live_blobs[name] then
        local path = self:path("blobs", "sha256", name)
        result.bytes = result.bytes + (core.du(path) or 0)
        core.unlink(path)
        result.blobs = result.blobs + 1
      end
    end
    for _, name in ipairs(check(core.listdir(self:path("steps")))) do
      local key = name:match("^(.-)%.json$")
      if key and not live_steps[key] then
        core.unlink(self:path("steps", name))
        core.unlink(self:path("logs", key .. ".log"))
        result.steps = result.steps + 1
      end
    end
  end)
  unlock()
  release()
  if not ok then
    error(err, 0)
  end
  return result
end

--- Return the disk usage of the store by part: { layers = bytes, downloads = ..., ... }.
function Store:disk_usage()
  local usage = {}
  for _, part in ipairs({ "layers", "downloads", "cache-mounts", "logs", "blobs", "tmp" }) do
    usage[part] = userns.du(self:path(part)) or 0
  end
  return usage
end

return M
