--- The scratch source: an image with no files at all.
local M = {}

local Scratch = {}
Scratch.__index = Scratch

--- Create the empty source.
function M.scratch()
  return setmetatable({ kind = "scratch" }, Scratch)
end

function Scratch:describe()
  return "scratch"
end

function Scratch:summary()
  return "scratch"
end

--- Scratch adds no layer.
Scratch.empty = true

function Scratch.materialize()
end

return M
