--- The tarball source: a tar archive in any compression libarchive reads,
-- extracted into one layer. Its cache key is the archive's content hash.
local core = require "nsbuild.core"
local errors = require "nsbuild.errors"
local log = require "nsbuild.log"
local userns = require "nsbuild.userns"

local M = {}

local Tarball = {}
Tarball.__index = Tarball

--- Create a tarball source; a relative path is relative to the recipe's directory.
function M.tarball(path)
  if type(path) ~= "string" or path == "" then
    error("tarball: expected the path of a tar archive", 2)
  end
  local shown = path
  if path:sub(1, 1) ~= "/" then
    local src = debug.getinfo(2, "S").source
    local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$") or "."
    path = dir .. "/" .. path
  end
  return setmetatable({ kind = "tarball", path = path, shown = shown }, Tarball)
end

function Tarball:describe(store)
  local st, err = core.stat(self.path)
  if not st then
    errors.raise("tarball: cannot read the archive: %s", err)
  end
  if st.type ~= "file" then
    errors.raise("tarball: '%s' is not a file", self.path)
  end
  return "tarball sha256:" .. store:file_sha256(self.path, st)
end

function Tarball:summary()
  return "tarball " .. self.shown
end

--- Extract the archive into dir with its owners (mapped through the
-- subordinate ids for a user other than root, who gets no device nodes).
function Tarball:materialize(_, dir)
  local stats, err = userns.extract(self.path, dir)
  if not stats then
    errors.raise("tarball: %s", err)
  end
  for _, skipped in ipairs(stats.skipped) do
    log.info("tarball %s: %s", self.shown, skipped)
  end
end

return M
