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

--- Start an image from a source (deb, tarball, debootstrap, ...); given an
-- image, return it unchanged, so from(scratch()) reads naturally.
function M.from(source)
  if M.is_image(source) then
    return source
  end
  if type(source) ~= "table" or type(source.kind) ~= "string" then
    error("from: expected a source such as deb \"busybox-static\" or scratch()", 2)
  end
  return new(nil, { kind = "source", source = source, at = caller_position(2) })
end

local run_options = { env = "table", user = "string", cwd = "string", network = "string",
                      mounts = "table" }
local mount_fields = { type = "string", target = "string", source = "string", id = "string",
                       readonly = "boolean" }

local function check_options(opts, known, what, level)
  if opts == nil then
    return {}
  end
  if type(opts) ~= "table" then
    error(string.format("%s: options must be a table, not a %s", what, type(opts)), level + 1)
  end
  for field, value in pairs(opts) do
    if known[field] == nil then
      local names = {}
      for name in pairs(known) do names[#names + 1] = name end
      table.sort(names)
      error(string.format("%s: unknown option '%s' (known: %s)", what, tostring(field),
                          table.concat(names, ", ")), level + 1)
    end
    if type(value) ~= known[field] then
      error(string.format("%s: option '%s' must be a %s, not a %s", what, field, known[field],
                          type(value)), level + 1)
    end
  end
  return opts
end

local function check_mounts(mounts, level)
  local list = {}
  for i, m in ipairs(mounts or {}) do
    check_options(m, mount_fields, "run: mounts[" .. i .. "]", level + 1)
    if m.type ~= "cache" and m.type ~= "bind" and m.type ~= "tmpfs" then
      error(string.format("run: mounts[%d].type must be \"cache\", \"bind\" or \"tmpfs\"", i), level + 1)
    end
    if type(m.target) ~= "string" or m.target:sub(1, 1) ~= "/" then
      error(string.format("run: mounts[%d].target must be an absolute path", i), level + 1)
    end
    if m.type == "bind" and type(m.source) ~= "string" then
      error(string.format("run: mounts[%d] of type bind needs a source", i), level + 1)
    end
    list[i] = { type = m.type, target = m.target, source = m.source, readonly = m.readonly,
                id = m.id or (m.type == "cache" and m.target:gsub("[^%w._-]", "_")) or nil }
  end
  return list
end

local function env_list(vars, what, level)
  local list = {}
  for name, value in pairs(vars) do
    if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
      error(string.format("%s: invalid variable name '%s'", what, tostring(name)), level + 1)
    end
    list[#list + 1] = name .. "=" .. tostring(value)
  end
  table.sort(list)
  return list
end

--- Add a step running a command in a container on this image. A string runs
-- through /bin/sh -c; a table is the argv itself. opts (all optional): env
-- (extra variables for this step), user, cwd, network ("slirp", "none",
-- "host"), mounts (list of { type = "cache"|"bind"|"tmpfs", target, source, id,
-- readonly }). A cache mount keeps its contents between builds and is not
-- part of the layer.
function Image:run(command, opts)
  local argv
  if type(command) == "string" then
    argv = { "/bin/sh", "-c", command }
  else
    argv = check_string_list(command, "run: the command", 2)
  end
  opts = check_options(opts, run_options, "run", 2)
  return new(self, { kind = "run", argv = argv, text = type(command) == "string" and command or nil,
                     env = opts.env and env_list(opts.env, "run", 2) or nil, user = opts.user,
                     cwd = opts.cwd, network = opts.network, mounts = check_mounts(opts.mounts, 2),
                     at = caller_position(2) })
end

local copy_options = { exclude = "table", owner = "string", mode = "number" }

local function check_owner(owner, level)
  if owner and not owner:match("^%d+:%d+$") then
    error(string.format("copy: owner '%s' must be numeric UID:GID, e.g. \"1000:1000\"", owner), level + 1)
  end
  return owner or "0:0"
end

--- Add a step copying host files into the image. src is a file or directory,
-- relative to the recipe's directory unless absolute; a directory's contents
-- are copied into dst. dst is absolute; a trailing "/" or an existing
-- directory means "into". opts: exclude (list of glob patterns matched against
-- paths relative to src, e.g. "*.o", "build/*"), owner ("UID:GID", default
-- "0:0"). The cache key covers content, mode, owner and symlink targets of
-- every copied file, never mtimes.
function Image:copy(src, dst, opts)
  if type(src) ~= "string" or src == "" then
    error("copy: the source must be a path", 2)
  end
  if type(dst) ~= "string" or dst:sub(1, 1) ~= "/" then
    error("copy: the destination must be an absolute path", 2)
  end
  opts = check_options(opts, copy_options, "copy", 2)
  local base = debug.getinfo(2, "S").source
  base = base:sub(1, 1) == "@" and (base:sub(2):match("^(.*)/[^/]*$") or ".") or "."
  local path = src:sub(1, 1) == "/" and src or base .. "/" .. src
  return new(self, { kind = "copy", src = path, shown = src, dst = dst,
                     exclude = opts.exclude and check_string_list(opts.exclude, "copy: exclude", 2) or {},
                     owner = check_owner(opts.owner, 2), at = caller_position(2) })
end

--- Add a step copying a path of another image (built first) into this one:
-- the multi-stage build. opts: owner ("UID:GID"; default: the owner in the
-- other image).
function Image:copy_from(other, src, dst, opts)
  if not M.is_image(other) then
    error("copy_from: the first argument must be an image", 2)
  end
  if type(src) ~= "string" or src:sub(1, 1) ~= "/" then
    error("copy_from: the source must be an absolute path in the other image", 2)
  end
  if type(dst) ~= "string" or dst:sub(1, 1) ~= "/" then
    error("copy_from: the destination must be an absolute path", 2)
  end
  opts = check_options(opts, { owner = "string" }, "copy_from", 2)
  if opts.owner then
    check_owner(opts.owner, 2)
  end
  return new(self, { kind = "copy_from", from = other, src = src, dst = dst, owner = opts.owner,
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
  return new(self, { kind = "config", field = "env", value = env_list(vars, "env", 2),
                     at = caller_position(2) })
end

--- Set the user of later run steps and of containers of the image: "uid",
-- "uid:gid", or names looked up in the image's /etc/passwd and /etc/group.
function Image:user(user)
  if type(user) ~= "string" or user == "" then
    error("user: expected \"uid[:gid]\" or \"name[:group]\"", 2)
  end
  return new(self, { kind = "config", field = "user", value = user, at = caller_position(2) })
end

--- Add labels (string key-value metadata) to the image config.
function Image:label(labels)
  if type(labels) ~= "table" then
    error("label: expected a table { key = \"value\" }", 2)
  end
  local list = {}
  for k, v in pairs(labels) do
    if type(k) ~= "string" or type(v) ~= "string" then
      error("label: keys and values must be strings", 2)
    end
    list[#list + 1] = k .. "=" .. v
  end
  table.sort(list)
  return new(self, { kind = "config", field = "labels", value = list, at = caller_position(2) })
end

--- Declare ports the image listens on: numbers or "PORT/tcp", "PORT/udp".
function Image:expose(ports)
  if type(ports) ~= "table" then
    ports = { ports }
  end
  local list = {}
  for i, p in ipairs(ports) do
    local port, proto = tostring(p):match("^(%d+)/?(%a*)$")
    if not port or tonumber(port) < 1 or tonumber(port) > 65535 or
       (proto ~= "" and proto ~= "tcp" and proto ~= "udp") then
      error(string.format("expose: invalid port '%s' (1-65535, optionally /tcp or /udp)", tostring(p)), 2)
    end
    list[i] = port .. "/" .. (proto ~= "" and proto or "tcp")
  end
  table.sort(list)
  return new(self, { kind = "config", field = "exposed_ports", value = list, at = caller_position(2) })
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
