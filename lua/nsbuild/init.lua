--- The public API of nsbuild, as recipes and the REPL see it.
--
--   local nsbuild = require "nsbuild"
--   local img = nsbuild.from(nsbuild.deb "busybox-static"):run { "/bin/busybox", "--install", "-s", "/bin" }
local image = require "nsbuild.image"

local M = {}

M.version = "0.1.0"

M.core = require "nsbuild.core"
M.store = require "nsbuild.store"
M.build = require("nsbuild.build").build

M.from = image.from
M.is_image = image.is_image
M.deb = require("nsbuild.source.deb").deb
local scratch_source = require("nsbuild.source.scratch").scratch

--- Return the empty image, to build on with copy_from or copy.
function M.scratch()
  return image.from(scratch_source())
end

-- The rest of the API is loaded on first use, so that a fully cached rebuild
-- does not compile the container runtime, the OCI code or live containers.
local lazy = {
  policy = function() return require "nsbuild.policy" end,
  container = function() return require "nsbuild.container" end,
  cgroup = function() return require "nsbuild.cgroup" end,
  --- nsbuild.start(image, policy [, { argv = {...} }]): start a container and
  -- return a handle at once (c:pid, c:exec, c:stats, c:kill, c:wait, c:logs).
  start = function() return require("nsbuild.live").start end,
  tarball = function() return require("nsbuild.source.tarball").tarball end,
  debootstrap = function() return require("nsbuild.source.debootstrap").debootstrap end,
  oci = function() return require("nsbuild.source.oci").oci end,
}

local function load_field(t, key)
  local loader = lazy[key]
  if loader then
    local value = loader()
    rawset(t, key, value)
    return value
  end
  return nil
end

setmetatable(M, {
  __index = load_field,
  -- pairs (the REPL's completion and help) lists the whole API.
  __pairs = function(t)
    for key in pairs(lazy) do
      if rawget(t, key) == nil then load_field(t, key) end
    end
    return next, t, nil
  end,
})

--- The API names a recipe can use as globals.
M.recipe_api = { "from", "deb", "scratch", "tarball", "debootstrap", "oci", "policy" }

return M
