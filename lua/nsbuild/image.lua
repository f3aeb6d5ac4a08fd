--- Immutable image values: a base source and an ordered chain of steps.
-- Every method returns a new image and leaves its receiver unchanged, so images
-- branch like any Lua value:
--
--   local base = from(deb "busybox-static")
--   local a = base:run { "/bin/busybox", "--install", "-s", "/bin" }
--   local b = base:cmd { "/bin/busybox", "sh" }   -- base is still as it was
local M = {}

local Image = {}
Image.__index = Image

local function new(parent, step, tags)
  return setmetatable({ parent = parent, step = step, tags = tags or {} }, Image)
end

--- Return true when v is an image value.
function M.is_image(v)
  return getmetatable(v) == Image
end

local function check_string_list(value, what, level)
  if type(value) ~= "table" or #value == 0 then
    error(string.format("%s must be a non-empty list of strings", what), level + 1)
  end
  for i, s in ipairs(value) do
    if type(s) ~= "string" then
      error(string.format("%s[%d] must be a string, not a %s", what, i, type(s)), level + 1)
    end
  end
  local copy = {}
  for i, s in ipairs(value) do copy[i] = s end
  return copy
end

-- Where in the recipe a step was written: "recipe.lua:12". NOTE: Lua 5.4
-- reports every call of a method chain at the line where the chain starts.
local function caller_position(level)
  local info = debug.getinfo(level + 1, "Sl")
  if info and info.currentline and info.currentline > 0 then
    return info.short_src .. ":" .. info.currentline
  end
  return nil
end

--- Start an image from a source (deb, scratch, ...).
function M.from(source)
  if type(source) ~= "table" or type(source.kind) ~= "string" then
    error("from: expected a source such as deb \"busybox-static\" or scratch()", 2)
  end
  return new(nil, { kind = "source", source = source, at = caller_position(2) })
end

--- Add a step running a command in a container on this image. A string runs
-- through /bin/sh -c; a table is the argv itself.
function Image:run(command)
  local argv
  if type(command) == "string" then
    argv = { "/bin/sh", "-c", command }
  else
    argv = check_string_list(command, "run: the command", 2)
  end
  return new(self, { kind = "run", argv = argv, text = type(command) == "string" and command or nil,
                     at = caller_position(2) })
end

--- Set the default command of the image.
function Image:cmd(argv)
  return new(self, { kind = "config", field = "cmd", value = check_string_list(argv, "cmd", 2),
                     at = caller_position(2) })
end

--- Set the entrypoint of the image.
function Image:entrypoint(argv)
  return new(self, { kind = "config", field = "entrypoint",
                     value = check_string_list(argv, "entrypoint", 2), at = caller_position(2) })
end

--- Set environment variables for later steps and for containers of the image.
-- vars: a table { NAME = "value", ... }.
function Image:env(vars)
  if type(vars) ~= "table" then
    error("env: expected a table { NAME = \"value\" }", 2)
  end
  local list = {}
  for name, value in pairs(vars) do
    if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
      error(string.format("env: invalid variable name '%s'", tostring(name)), 2)
    end
    list[#list + 1] = name .. "=" .. tostring(value)
  end
  table.sort(list)
  return new(self, { kind = "config", field = "env", value = list, at = caller_position(2) })
end

--- Set the working directory for later steps and for containers of the image.
function Image:workdir(path)
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
    error("workdir: expected an absolute path", 2)
  end
  return new(self, { kind = "config", field = "workdir", value = path, at = caller_position(2) })
end

--- Return the same image with a tag name to store it under once built.
function Image:tag(name)
  if type(name) ~= "string" or not name:match("^[%w][%w._/-]*:?[%w._-]*$") then
    error(string.format("tag: invalid image name '%s' (letters, digits, . _ - / and one :tag)",
                        tostring(name)), 2)
  end
  local tags = {}
  for i, t in ipairs(self.tags) do tags[i] = t end
  tags[#tags + 1] = name
  return new(self.parent, self.step, tags)
end

--- Return the steps of the image from its source to its last step.
function Image:steps()
  local list = {}
  local img = self
  while img do
    table.insert(list, 1, img.step)
    img = img.parent
  end
  return list
end

function Image:__tostring()
  local steps = self:steps()
  return string.format("image (%d steps%s)", #steps,
                       #self.tags > 0 and ", tagged " .. table.concat(self.tags, ", ") or "")
end

return M
