--- Loading recipes: a recipe is a Lua file that sees the nsbuild API as
-- globals and returns an image or a table of named images.
local errors = require "nsbuild.errors"
local image = require "nsbuild.image"

local M = {}

-- args.KEY reads a --arg value. A value used in a step's definition is part of
-- that step's canonical form, so changing it rebuilds exactly those steps.
local function read_only(values)
  return setmetatable({}, {
    __index = values,
    __newindex = function(_, key) error("args is read-only (cannot set '" .. tostring(key) .. "')", 2) end,
    __pairs = function() return next, values, nil end,
  })
end

local function recipe_env(nsbuild, args)
  local env = { nsbuild = nsbuild, args = read_only(args or {}) }
  local api = {}
  for _, name in ipairs(nsbuild.recipe_api) do
    api[name] = true
  end
  -- API names are looked up when the recipe first uses them, so that a recipe
  -- loads only the parts of nsbuild it needs.
  return setmetatable(env, {
    __index = function(t, key)
      if api[key] then
        local value = nsbuild[key]
        rawset(t, key, value)
        return value
      end
      return _G[key]
    end,
  })
end

-- Strip the traceback the message handler adds, so the error stays one line.
local function first_line(msg)
  return (tostring(msg):match("^[^\n]*"))
end

--- Load and evaluate a recipe file; args are the --arg values. Returns a list of { name = ..., image = ... }
-- sorted by name (name is nil for a recipe that returns a single image).
-- Raises an nsbuild error naming file:line for a syntax or runtime error.
function M.load(path, nsbuild, args)
  local chunk, err = loadfile(path, "t", recipe_env(nsbuild, args))
  if not chunk then
    if err:find("No such file", 1, true) or err:find("cannot open", 1, true) then
      errors.raise("cannot read recipe '%s': %s", path, err:gsub("^cannot open ", ""))
    end
    errors.raise("%s", err)
  end
  local ok, result = xpcall(chunk, function(e)
    if errors.is(e) then return e end
    return first_line(e)
  end)
  if not ok then
    if errors.is(result) then
      error(result, 0)
    end
    errors.raise("%s", result)
  end

  if image.is_image(result) then
    return { { image = result } }
  end
  if type(result) ~= "table" then
    errors.raise("recipe '%s' must return an image or a table of named images, not a %s", path,
                 type(result))
  end
  local list = {}
  for name, img in pairs(result) do
    if type(name) ~= "string" or not image.is_image(img) then
      errors.raise("recipe '%s': the returned table must map names to images (entry '%s' is a %s)",
                   path, tostring(name), type(img))
    end
    list[#list + 1] = { name = name, image = img }
  end
  table.sort(list, function(a, b) return a.name < b.name end)
  return list
end

return M
