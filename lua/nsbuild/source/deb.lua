--- The deb source: Debian packages, fetched with apt-get download (or given as
-- local .deb files) and extracted into one layer, in the order listed.
--
-- A package named by name is pinned to the version and sha256 that apt's index
-- lists, and that pin is its cache key: a cached rebuild asks apt-cache, never
-- the network. Downloads are kept in the store's downloads/ by sha256.
local core = require "nsbuild.core"
local errors = require "nsbuild.errors"
local log = require "nsbuild.log"
local userns = require "nsbuild.userns"
local util = require "nsbuild.util"
local cjson = require "cjson"

local M = {}

local Deb = {}
Deb.__index = Deb

local function is_local_file(name)
  return name:sub(-4) == ".deb" and (name:find("/", 1, true) ~= nil)
end

--- Create a deb source from a package name, a local .deb path, or a list of them.
function M.deb(spec)
  local list = type(spec) == "string" and { spec } or spec
  if type(list) ~= "table" or #list == 0 then
    error("deb: expected a package name, a .deb path, or a list of them", 2)
  end
  local packages = {}
  for i, name in ipairs(list) do
    if type(name) ~= "string" then
      error(string.format("deb: entry %d must be a string, not a %s", i, type(name)), 2)
    end
    if not is_local_file(name) and not name:match("^[a-z0-9][a-z0-9+.-]+$") then
      error(string.format("deb: invalid package name '%s' (a local file must end in .deb "
                          .. "and contain a '/', e.g. ./%s.deb)", name, name), 2)
    end
    packages[i] = name
  end
  return setmetatable({ kind = "deb", packages = packages }, Deb)
end

local function parse_fields(text)
  local fields = {}
  for line in text:gmatch("[^\n]+") do
    if line == "" then
      break
    end
    local name, value = line:match("^([%w-]+):%s*(.*)$")
    if name and fields[name] == nil then
      fields[name] = value
    end
  end
  return fields
end

-- What decides apt's candidate for a package: its lists and its configuration.
local apt_inputs = { "/var/lib/apt/lists", "/etc/apt/sources.list", "/etc/apt/sources.list.d",
                     "/etc/apt/preferences", "/etc/apt/preferences.d", "/etc/apt/apt.conf.d" }

-- A fingerprint of apt's state: name, size and mtime (ns) of every input file.
-- Any `apt-get update` or configuration change alters it.
local function apt_fingerprint()
  local parts = {}
  local function add(path, st)
    parts[#parts + 1] = string.format("%s %d %d.%09d", path, st.size, st.mtime_sec, st.mtime_nsec)
  end
  for _, path in ipairs(apt_inputs) do
    local st = core.stat(path)
    if st and st.type == "dir" then
      for _, name in ipairs(core.listdir(path) or {}) do
        local entry = core.stat(path .. "/" .. name)
        if entry and entry.type == "file" then
          add(path .. "/" .. name, entry)
        end
      end
    elseif st then
      add(path, st)
    end
  end
  return core.sha256(table.concat(parts, "\n"))
end

-- Look a package up in apt's index: version, architecture and sha256 of the
-- candidate. Raises when apt does not know it.
local function query_apt(name)
  local output, ok = util.capture({ "apt-cache", "show", "--no-all-versions", "--", name })
  local fields = ok and parse_fields(output) or {}
  if not ok or not fields.Version or not fields.SHA256 then
    errors.raise("deb: package '%s' not found in apt's package index (%s); check the name, "
                 .. "or run 'apt-get update'", name, util.last_line(output))
  end
  return { name = name, version = fields.Version, arch = fields.Architecture or "all",
           sha256 = fields.SHA256 }
end

-- apt-cache takes most of a second when apt keeps no binary cache, so the pins
-- are remembered in the store for as long as apt's fingerprint is unchanged.
local function resolve_package(store, name)
  local memo_path = store:path("downloads", "apt-pins.json")
  local fingerprint = apt_fingerprint()
  local data = core.read_file(memo_path)
  local ok, memo = pcall(cjson.decode, data or "")
  if not ok or type(memo) ~= "table" or memo.fingerprint ~= fingerprint then
    memo = { fingerprint = fingerprint, packages = {} }
  end
  local pin = memo.packages[name]
  if pin then
    return pin
  end
  pin = query_apt(name)
  memo.packages[name] = pin
  core.write_file(memo_path, cjson.encode(memo), tonumber("644", 8))
  return pin
end

--- Return the canonical description of this source, which its cache key hashes.
-- Resolves package names against apt's index and hashes local files.
function Deb:describe(store)
  local parts = { "deb" }
  self.resolved = {}
  for _, name in ipairs(self.packages) do
    local pkg
    if is_local_file(name) then
      local sum, err = core.sha256_file(name)
      if not sum then
        errors.raise("deb: cannot read the local package: %s", err)
      end
      pkg = { file = name, sha256 = sum }
      parts[#parts + 1] = "file sha256:" .. sum
    else
      pkg = resolve_package(store, name)
      parts[#parts + 1] = string.format("%s=%s %s sha256:%s", pkg.name, pkg.version, pkg.arch, pkg.sha256)
    end
    self.resolved[#self.resolved + 1] = pkg
  end
  return table.concat(parts, "\n")
end

function Deb:summary()
  return "deb " .. table.concat(self.packages, " ")
end

-- Fetch one package into the store's downloads/ unless it is there already;
-- return the path of the verified .deb.
local function fetch(store, pkg)
  local cached = store:path("downloads", pkg.sha256 .. ".deb")
  if core.lstat(cached) then
    return cached
  end
  local work, release = store:work_dir("download")
  local ok, err = pcall(function()
    local argv = { "apt-get", "download", "-q" }
    -- As root, apt drops to the _apt user, which cannot write into our private work directory.
    if core.geteuid() == 0 then
      argv[#argv + 1] = "-o"
      argv[#argv + 1] = "APT::Sandbox::User=root"
    end
    argv[#argv + 1] = string.format("%s:%s=%s", pkg.name, pkg.arch, pkg.version)
    local output, downloaded = util.capture(argv, { cwd = work })
    if not downloaded then
      errors.raise("deb: apt-get download %s failed: %s", pkg.name, util.last_line(output))
    end
    local files = errors.check(core.listdir(work))
    if #files ~= 1 then
      errors.raise("deb: apt-get download %s left %d files, expected one .deb", pkg.name, #files)
    end
    local file = work .. "/" .. files[1]
    local sum = errors.check(core.sha256_file(file))
    if sum ~= pkg.sha256 then
      errors.raise("deb: %s downloaded with sha256 %s, but apt's index lists %s; run 'apt-get update'",
                   pkg.name, sum, pkg.sha256)
    end
    errors.check(core.rename(file, cached))
  end)
  release(true)
  if not ok then
    error(err, 0)
  end
  return cached
end

--- Extract every package, in order, into dir, with the owners the packages
-- give (mapped through the subordinate ids for a user other than root).
function Deb:materialize(store, dir)
  for _, pkg in ipairs(self.resolved) do
    local path = pkg.file or fetch(store, pkg)
    local stats, err = userns.extract(path, dir)
    if not stats then
      errors.raise("deb: %s", err)
    end
    for _, skipped in ipairs(stats.skipped) do
      log.info("deb: %s: %s", pkg.name or pkg.file, skipped)
    end
  end
end

return M
