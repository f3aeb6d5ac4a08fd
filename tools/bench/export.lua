-- Export a layer directory as nsbuild's core does it for OCI: a gzip tar blob
-- written once, both digests (diff_id, blob digest) computed while writing.
--   lua5.4 tools/bench/export.lua LAYER_DIR OUT
-- Run from the top of the tree, where lua/nsbuild/core.so is.
package.cpath = "lua/?.so;" .. package.cpath
local core = require "nsbuild.core"

assert(core.layer_tar(arg[1], arg[2], { compression = "gzip" }))
