--- Isolation policies: plain tables with defaults, validated so that an unknown
-- field or a wrong type is an error naming the field.
local M = {}

local namespace_names = { "pid", "mount", "uts", "ipc", "net", "user", "cgroup", "time" }

-- The type of every field a policy may set, and of the namespace switches.
local schema = {
  namespaces = "table",
  hostname = "string",
  env = "table",
  cwd = "string",
  network = "string",
  ports = "table",
  limits = "table",
}

--- The policy of `nsbuild run`: new pid, mount, uts, ipc and net namespaces,
-- only loopback, the host's user ids. Build steps use M.build.
M.default = {
  namespaces = { pid = true, mount = true, uts = true, ipc = true, net = true,
                 user = false, cgroup = false, time = false },
  env = {},
  cwd = "/",
  network = "none",
  ports = {},
  limits = {},
}

local function copy(value)
  if type(value) ~= "table" then
    return value
  end
  local out = {}
  for k, v in pairs(value) do
    out[k] = copy(v)
  end
  return out
end

--- Raise an error naming the first invalid field of p; return p when valid.
function M.validate(p)
  for field, value in pairs(p) do
    local expected = schema[field]
    if expected == nil then
      local known = {}
      for name in pairs(schema) do known[#known + 1] = name end
      table.sort(known)
      error(string.format("policy: unknown field '%s' (known fields: %s)", tostring(field),
                          table.concat(known, ", ")), 2)
    end
    if type(value) ~= expected then
      error(string.format("policy: field '%s' must be a %s, not a %s", field, expected, type(value)), 2)
    end
  end
  for name, on in pairs(p.namespaces or {}) do
    local known = false
    for _, n in ipairs(namespace_names) do known = known or n == name end
    if not known then
      error(string.format("policy: unknown namespace '%s' (known: %s)", tostring(name),
                          table.concat(namespace_names, ", ")), 2)
    end
    if type(on) ~= "boolean" then
      error(string.format("policy: namespaces.%s must be true or false", name), 2)
    end
  end
  if p.limits then
    local ok, err = pcall(require("nsbuild.cgroup").parse_limits, p.limits)
    if not ok then
      error("policy: " .. tostring(err), 2)
    end
  end
  if p.network or p.ports then
    local ok, err = pcall(require("nsbuild.net").new, p)
    if not ok then
      error("policy: " .. tostring(err), 2)
    end
  end
  return p
end

--- Return a new policy: base with changes applied; tables merge field by field.
function M.extend(base, changes)
  local out = copy(base)
  for field, value in pairs(changes) do
    if type(value) == "table" and type(out[field]) == "table" and field ~= "env" and field ~= "ports" then
      for k, v in pairs(value) do
        out[field][k] = copy(v)
      end
    else
      out[field] = copy(value)
    end
  end
  return M.validate(out)
end

--- Return the list of namespace names a policy turns on, in a fixed order.
-- The network mode "host" keeps the host's network namespace.
function M.namespace_list(p)
  local list = {}
  for _, name in ipairs(namespace_names) do
    if p.namespaces[name] and not (name == "net" and p.network == "host") then
      list[#list + 1] = name
    end
  end
  return list
end

--- The policy of build steps: the default with network "slirp", so that a
-- step reaches package registries the way the host does.
M.build = M.extend(M.default, { network = "slirp" })

return M
