--- The debootstrap source: a Debian root filesystem made by the host's
-- debootstrap into a new layer, cached by its arguments.
--
-- debootstrap runs in a private mount namespace (unshare), so the /proc and
-- /sys it mounts in the target cannot outlive it, even when it fails.
local core = require "nsbuild.core"
local errors = require "nsbuild.errors"
local util = require "nsbuild.util"

local M = {}

local Debootstrap = {}
Debootstrap.__index = Debootstrap

local fields = { suite = "string", variant = "string", include = "table", mirror = "string",
                 components = "table", arch = "string" }

M.DEFAULT_MIRROR = "http://deb.debian.org/debian"

local function check_names(list, what)
  for i, name in ipairs(list) do
    if type(name) ~= "string" or not name:match("^[a-z0-9][a-z0-9+.-]*$") then
      error(string.format("debootstrap: %s[%d] is not a package or component name: %s", what, i,
                          tostring(name)), 3)
    end
  end
end

--- Create a debootstrap source: { suite = "bookworm", variant = "minbase",
-- include = { packages }, mirror = URL, components = { "main" }, arch = "amd64" }.
function M.debootstrap(spec)
  if type(spec) ~= "table" then
    error("debootstrap: expected a table { suite = \"bookworm\", ... }", 2)
  end
  for k, v in pairs(spec) do
    if fields[k] == nil then
      error(string.format("debootstrap: unknown field '%s' (known: arch, components, include, "
                          .. "mirror, suite, variant)", tostring(k)), 2)
    end
    if type(v) ~= fields[k] then
      error(string.format("debootstrap: field '%s' must be a %s", k, fields[k]), 2)
    end
  end
  if not spec.suite or not spec.suite:match("^[%w.-]+$") then
    error("debootstrap: suite is required, e.g. suite = \"bookworm\"", 2)
  end
  local include = spec.include or {}
  check_names(include, "include")
  check_names(spec.components or {}, "components")
  return setmetatable({
    kind = "debootstrap",
    suite = spec.suite,
    variant = spec.variant or "minbase",
    include = include,
    components = spec.components or {},
    mirror = spec.mirror or M.DEFAULT_MIRROR,
    arch = spec.arch,
  }, Debootstrap)
end

function Debootstrap:argv(target)
  local argv = { "unshare", "--mount", "--propagation", "private", "--",
                 "debootstrap", "--variant=" .. self.variant }
  if #self.include > 0 then
    argv[#argv + 1] = "--include=" .. table.concat(self.include, ",")
  end
  if #self.components > 0 then
    argv[#argv + 1] = "--components=" .. table.concat(self.components, ",")
  end
  if self.arch then
    argv[#argv + 1] = "--arch=" .. self.arch
  end
  argv[#argv + 1] = self.suite
  argv[#argv + 1] = target
  argv[#argv + 1] = self.mirror
  return argv
end

function Debootstrap:describe()
  return table.concat({ "debootstrap", "suite=" .. self.suite, "variant=" .. self.variant,
                        "include=" .. table.concat(self.include, ","),
                        "components=" .. table.concat(self.components, ","),
                        "arch=" .. (self.arch or ""), "mirror=" .. self.mirror }, "\n")
end

function Debootstrap:summary()
  local s = "debootstrap " .. self.variant .. " " .. self.suite
  if #self.include > 0 then
    s = s .. " +" .. table.concat(self.include, ",")
  end
  return s
end

function Debootstrap:materialize(_, dir, ctx)
  -- debootstrap creates device nodes, chroots and runs maintainer scripts as
  -- root; a user namespace gives none of that on the host's tree.
  if core.geteuid() ~= 0 then
    errors.raise("debootstrap %s: the debootstrap source needs root; build this image as root, "
                 .. "or start from a tarball of a root filesystem instead (for "
                 .. "recipes/debian-dev.lua: --arg base=ROOTFS.tar, made by root with nsbuild "
                 .. "export IMAGE --tar ROOTFS.tar)", self.suite)
  end
  if os.execute("command -v debootstrap >/dev/null 2>&1") ~= true then
    errors.raise("debootstrap: the debootstrap command is not installed (apt-get install debootstrap)")
  end
  local line = util.command_line(self:argv(dir)) .. " 2>&1"
  local pipe = assert(io.popen(line, "r"))
  local last = ""
  for output in pipe:lines() do
    last = output
    if ctx and ctx.view then
      ctx.view:output(output)
    end
  end
  local ok, _, code = pipe:close()
  if not ok then
    errors.raise("debootstrap %s failed with exit code %s: %s", self.suite, tostring(code), last)
  end
end

return M
