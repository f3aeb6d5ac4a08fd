--- The public API of nsbuild, as recipes and the REPL see it.
--
--   local nsbuild = require "nsbuild"
--   local img = nsbuild.from(nsbuild.deb "busybox-static"):run { "/bin/busybox", "--install", "-s", "/bin" }
local image = require "nsbuild.image"

local M = {}

M.version = "0.1.0"

M.core = require "nsbuild.core"
M.policy = require "nsbuild.policy"
M.container = require "nsbuild.container"
M.cgroup = require "nsbuild.cgroup"
M.store = require "nsbuild.store"
M.build = require("nsbuild.build").build
--- nsbuild.start(image, policy [, { argv = {...} }]): start a container and
-- return a handle at once (c:pid, c:exec, c:stats, c:kill, c:wait, c:logs).
M.start = require("nsbuild.live").start

M.from = image.from
M.is_image = image.is_image
M.deb = require("nsbuild.source.deb").deb
local scratch_source = require("nsbuild.source.scratch").scratch

--- Return the empty image, to build on with copy_from or copy.
function M.scratch()
  return image.from(scratch_source())
end
M.tarball = require("nsbuild.source.tarball").tarball
M.debootstrap = require("nsbuild.source.debootstrap").debootstrap
M.oci = require("nsbuild.source.oci").oci

--- The names a recipe sees as globals.
M.recipe_api = { "from", "deb", "scratch", "tarball", "debootstrap", "oci", "policy" }

return M
