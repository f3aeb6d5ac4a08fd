-- Import a tarball as nsbuild's core does it: verify its sha256, then extract it.
--   lua5.4 tools/bench/import.lua ARCHIVE SHA256 DEST
-- Run from the top of the tree, where lua/nsbuild/core.so is.
package.cpath = "lua/?.so;" .. package.cpath
local core = require "nsbuild.core"

local archive, expected, dest = arg[1], arg[2], arg[3]
local sum = assert(core.sha256_file(archive))
if sum ~= expected then
  io.stderr:write(string.format("import: %s has sha256 %s, expected %s\n", archive, sum, expected))
  os.exit(1)
end
assert(core.extract(archive, dest))
