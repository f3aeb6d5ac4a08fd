--- The oci source: an image made by another tool, read from an OCI image layout
-- (a directory, or a tar of one as `podman save --format oci-archive` writes)
-- or from a docker-archive tar (`docker save`, `podman save`).
--
-- Every digest is checked before anything reaches the store: the manifest
-- against its descriptor in index.json, the config and each layer blob against
-- the manifest, and each uncompressed layer against the config's diff_ids.
-- Each layer then becomes a store layer of its own, its OCI whiteouts turned
-- into the overlay format. A hardlink to a file of a lower layer copies that
-- file up into the new layer first, as overlayfs does.
--
-- The cache key is the manifest digest (the config digest for a docker-archive,
-- which has no manifest). Unlike other sources, this one commits its layers
-- itself: build.lua calls import() instead of materialize(), and the image
-- config it returns is the image's initial config.
local core = require "nsbuild.core"
local errors = require "nsbuild.errors"
local json = require "nsbuild.oci_json"
local log = require "nsbuild.log"
local oci = require "nsbuild.oci"
local userns = require "nsbuild.userns"

local M = {}

local Oci = {}
Oci.__index = Oci

local check = errors.check
local MODE_DIR = tonumber("755", 8)
local MAX_DOCUMENT = 4 * 1024 * 1024
local MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
local MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

--- Create an oci source from the path of a layout directory or tar, relative to
-- the recipe's directory unless absolute. ref picks an image of the layout by
-- its org.opencontainers.image.ref.name, or a docker-archive's image by a
-- RepoTags entry. Without ref the input must hold exactly one image.
function M.oci(path, ref)
  if type(path) ~= "string" or path == "" then
    error("oci: expected the path of an OCI image layout (a directory or a .tar)", 2)
  end
  if ref ~= nil and (type(ref) ~= "string" or ref == "") then
    error("oci: the ref must be a non-empty string such as \"latest\"", 2)
  end
  local shown = path
  if path:sub(1, 1) ~= "/" then
    local src = debug.getinfo(2, "S").source
    local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$") or "."
    path = dir .. "/" .. path
  end
  return setmetatable({ kind = "oci", path = path, shown = shown, ref = ref }, Oci)
end

function Oci:summary()
  return "oci " .. self.shown .. (self.ref and (":" .. self.ref) or "")
end

-- {====================================================== reading the input

-- Return path when it resolves inside dir; an input whose symlinks lead
-- elsewhere (a blob that links to a host file) is rejected.
local function inside(dir, path, what)
  local root, real = core.realpath(dir), core.realpath(path)
  if root and real and real:sub(1, #root + 1) ~= root .. "/" then
    errors.raise("oci: %s '%s' resolves to %s, outside the image %s", what, path, real, dir)
  end
  return path
end

-- A reader of the input's files: a directory, or members of a tar.
local function reader(path)
  local st, err = core.stat(path)
  if not st then
    errors.raise("oci: cannot read the image: %s", err)
  end
  if st.type == "dir" then
    return {
      dir = path,
      read = function(name)
        return core.read_file(inside(path, path .. "/" .. name, "file"))
      end,
    }
  end
  return {
    tar = path,
    read = function(name)
      return core.tar_member(path, name, MAX_DOCUMENT)
    end,
  }
end

local function decode(text, what)
  local value, err = json.decode(text, what)
  if not value then
    errors.raise("oci: %s", err)
  end
  return value
end

local function check_digest(digest, what)
  if type(digest) ~= "string" or not digest:match("^sha256:%x+$") or #digest ~= 71 then
    errors.raise("oci: %s has the digest '%s': only sha256 digests (sha256: and 64 hex digits) are supported",
                 what, tostring(digest))
  end
  return digest
end

local function blob_name(digest)
  return "blobs/sha256/" .. digest:sub(8)
end

-- Read a JSON blob and check it against its descriptor.
local function read_blob(input, desc, what)
  local digest = check_digest(desc.digest, what)
  local text = input.read(blob_name(digest))
  if not text then
    errors.raise("oci: %s blob %s is missing from %s", what, digest, input.dir or input.tar)
  end
  local actual = "sha256:" .. core.sha256(text)
  if actual ~= digest then
    errors.raise("oci: %s blob %s is corrupt: its content has the digest %s", what, digest, actual)
  end
  if desc.size and math.tointeger(desc.size) ~= #text then
    errors.raise("oci: %s blob %s has %d bytes, but its descriptor says %s", what, digest, #text,
                 tostring(math.tointeger(desc.size) or desc.size))
  end
  return decode(text, what .. " " .. digest)
end

local function is_index(media_type)
  return media_type == oci.MEDIA_INDEX or media_type == MEDIA_DOCKER_LIST
end

-- Pick this machine's manifest from the manifests of an image index.
local function platform_manifest(index, digest)
  local arch = oci.architecture()
  for _, m in ipairs(index.manifests or {}) do
    local p = type(m.platform) == "table" and m.platform or {}
    if p.os == "linux" and p.architecture == arch then
      return m
    end
  end
  errors.raise("oci: the image index %s has no manifest for linux/%s", digest, arch)
end

local function ref_names(manifests)
  local names = {}
  for _, m in ipairs(manifests) do
    local a = type(m.annotations) == "table" and m.annotations or {}
    names[#names + 1] = a[oci.REF_ANNOTATION] or m.digest
  end
  return table.concat(names, ", ")
end

-- Choose the descriptor of index.json that ref names, or the only one.
local function select_manifest(index, ref, where)
  local manifests = index.manifests or {}
  if ref == nil then
    if #manifests ~= 1 then
      errors.raise("oci: %s holds %d images (%s): name one, as oci(path, ref)", where, #manifests,
                   ref_names(manifests))
    end
    return manifests[1]
  end
  for _, m in ipairs(manifests) do
    local a = type(m.annotations) == "table" and m.annotations or {}
    if a[oci.REF_ANNOTATION] == ref or a["io.containerd.image.name"] == ref then
      return m
    end
  end
  errors.raise("oci: %s has no image named '%s' (it has: %s)", where, ref, ref_names(manifests))
end

-- Resolve the manifest descriptor of an OCI layout: index.json, then a nested
-- image index when the image has several platforms.
local function layout_manifest(input, ref)
  local where = input.dir or input.tar
  local text = input.read("index.json")
  if not text then
    errors.raise("oci: %s has no index.json: not an OCI image layout or docker-archive", where)
  end
  local desc = select_manifest(decode(text, where .. "/index.json"), ref, where)
  while is_index(desc.mediaType) do
    desc = platform_manifest(read_blob(input, desc, "image index"), desc.digest)
  end
  return desc
end

-- The entry of a docker-archive's manifest.json that ref names, or the only one.
local function docker_entry(input, ref)
  local where = input.dir or input.tar
  local text = input.read("manifest.json")
  if not text then
    return nil
  end
  local list = decode(text, where .. "/manifest.json")
  if ref == nil and #list ~= 1 then
    errors.raise("oci: %s holds %d images: name one by its tag, as oci(path, ref)", where, #list)
  end
  for _, entry in ipairs(list) do
    if ref == nil then
      return entry
    end
    for _, tag in ipairs(type(entry.RepoTags) == "table" and entry.RepoTags or {}) do
      if tag == ref or tag:match(":([^:/]+)$") == ref then
        return entry
      end
    end
  end
  errors.raise("oci: %s has no image tagged '%s'", where, ref)
end

-- The config digest a docker-archive names its config file by.
local function docker_config_digest(entry)
  local hex = type(entry.Config) == "string" and (entry.Config:match("^(%x+)%.json$")
                                                  or entry.Config:match("^blobs/sha256/(%x+)$"))
  if not hex or #hex ~= 64 then
    errors.raise("oci: docker-archive config '%s' is not named by its sha256", tostring(entry.Config))
  end
  return "sha256:" .. hex
end

--- Return the canonical description of this source, which its cache key hashes:
-- the manifest digest of the image, or the config digest of a docker-archive.
function Oci:describe()
  local input = reader(self.path)
  if input.read("index.json") then
    self.manifest = layout_manifest(input, self.ref)
    return "oci manifest " .. check_digest(self.manifest.digest, "manifest")
  end
  local entry = docker_entry(input, self.ref)
  if not entry then
    errors.raise("oci: %s has neither index.json nor manifest.json: not an OCI image layout or "
                 .. "docker-archive", self.path)
  end
  self.docker = entry
  return "oci docker-archive config " .. docker_config_digest(entry)
end

-- }======================================================

-- {====================================================== the image's documents

-- Return the layers { digest, media_type, diff_id, path } and the config of
-- an OCI layout whose files are in dir.
local function layout_image(dir, manifest_desc)
  local input = reader(dir)
  local manifest = read_blob(input, manifest_desc, "manifest")
  if manifest.mediaType ~= nil and manifest.mediaType ~= oci.MEDIA_MANIFEST
     and manifest.mediaType ~= MEDIA_DOCKER_MANIFEST then
    errors.raise("oci: manifest %s has the media type %s, not an image manifest", manifest_desc.digest,
                 tostring(manifest.mediaType))
  end
  local config = read_blob(input, manifest.config or {}, "config")
  local layers = {}
  for i, desc in ipairs(manifest.layers or {}) do
    local digest = check_digest(desc.digest, "layer " .. i)
    layers[i] = { digest = digest, size = desc.size, media_type = desc.mediaType,
                  path = inside(dir, dir .. "/" .. blob_name(digest), "layer blob") }
  end
  return layers, config
end

-- The same for a docker-archive: layer tars are named in manifest.json and
-- checked by their diff_ids only.
local function docker_image(dir, entry)
  local config_digest = docker_config_digest(entry)
  local text = core.read_file(inside(dir, dir .. "/" .. entry.Config, "config"))
  if not text then
    errors.raise("oci: docker-archive config %s is missing", entry.Config)
  end
  if "sha256:" .. core.sha256(text) ~= config_digest then
    errors.raise("oci: docker-archive config %s is corrupt: its content has the digest sha256:%s",
                 entry.Config, core.sha256(text))
  end
  local layers = {}
  for i, name in ipairs(type(entry.Layers) == "table" and entry.Layers or {}) do
    if type(name) ~= "string" or name:sub(1, 1) == "/" or ("/" .. name .. "/"):find("/../", 1, true) then
      errors.raise("oci: docker-archive layer %d has an invalid path '%s'", i, tostring(name))
    end
    layers[i] = { name = name, path = inside(dir, dir .. "/" .. name, "layer") }
  end
  return layers, decode(text, "docker-archive config " .. entry.Config)
end

local function value(v)
  if v == json.null then
    return nil
  end
  return v
end

local function sorted_pairs_list(object, fn)
  local list = {}
  for k, v in pairs(type(value(object)) == "table" and object or {}) do
    list[#list + 1] = fn(k, v)
  end
  table.sort(list)
  return list
end

local function strings(list)
  list = value(list)
  if type(list) ~= "table" then
    return nil
  end
  local out = {}
  for i, s in ipairs(list) do out[i] = tostring(s) end
  return out
end

--- Return the nsbuild image config of an OCI image config document.
function M.image_config(doc)
  local c = type(value(doc.config)) == "table" and doc.config or {}
  local workdir, user = value(c.WorkingDir), value(c.User)
  return {
    env = strings(c.Env) or {},
    cmd = strings(c.Cmd),
    entrypoint = strings(c.Entrypoint),
    workdir = workdir ~= "" and workdir or nil,
    user = user ~= "" and user or nil,
    stop_signal = value(c.StopSignal),
    labels = sorted_pairs_list(c.Labels, function(k, v) return k .. "=" .. tostring(v) end),
    exposed_ports = sorted_pairs_list(c.ExposedPorts, function(k) return k end),
    created = value(doc.created),
    architecture = value(doc.architecture),
    variant = value(doc.variant),
  }
end

local function image_history(doc)
  local list = {}
  for i, h in ipairs(type(value(doc.history)) == "table" and doc.history or {}) do
    list[i] = { created_by = value(h.created_by), created = value(h.created), comment = value(h.comment),
                author = value(h.author), empty_layer = value(h.empty_layer) == true or nil }
  end
  return list
end

-- }======================================================

-- {====================================================== layers

-- Copy every layer blob into the work directory, checking its digests; the
-- copies are what is extracted, so a blob cannot change after its check.
local function verify_layers(layers, diff_ids, work)
  if #diff_ids ~= #layers then
    errors.raise("oci: the manifest lists %d layers but the config's rootfs.diff_ids lists %d",
                 #layers, #diff_ids)
  end
  for i, layer in ipairs(layers) do
    local name = layer.digest or layer.name
    if not core.lstat(layer.path) then
      errors.raise("oci: layer %d blob %s is missing", i, name)
    end
    layer.copy = string.format("%s/blob-%d", work, i)
    local res, err = core.blob_digest(layer.path, layer.copy)
    if not res then
      -- A damaged blob fails to decompress: name the digest mismatch, the cause.
      local actual = layer.digest and core.sha256_file(layer.path)
      if actual and "sha256:" .. actual ~= layer.digest then
        errors.raise("oci: layer %d blob %s is corrupt: its content has the digest sha256:%s", i, name, actual)
      end
      errors.raise("oci: layer %d blob %s cannot be read: %s", i, name, err)
    end
    if layer.digest and res.digest ~= layer.digest then
      errors.raise("oci: layer %d blob %s is corrupt: its content has the digest %s", i, name, res.digest)
    end
    if layer.size and math.tointeger(layer.size) ~= res.size then
      errors.raise("oci: layer %d blob %s has %d bytes, but the manifest says %s", i, name, res.size,
                   tostring(math.tointeger(layer.size) or layer.size))
    end
    if res.diff_id ~= diff_ids[i] then
      errors.raise("oci: layer %d blob %s uncompresses to %s, but the config's diff_id is %s", i, name,
                   res.diff_id, tostring(diff_ids[i]))
    end
    layer.verified = res
  end
end

-- Return the directory of the layer of lower (layer directories, bottom to top)
-- that provides path, following overlay rules: a whiteout hides it, an opaque
-- directory hides what lies below it.
local function find_lower(lower, path)
  for i = #lower, 1, -1 do
    local root = lower[i]
    local prefix, hidden = "", false
    for part in path:gmatch("[^/]+") do
      prefix = prefix .. "/" .. part
      local st = core.lstat(root .. prefix)
      if st and st.type == "char" and st.rdev_major == 0 and st.rdev_minor == 0 then
        return nil
      end
      -- trusted.overlay.* in root's store, user.overlay.* in a user's (userxattr).
      if st and st.type == "dir" and prefix ~= "/" .. path
         and (core.getxattr(root .. prefix, "trusted.overlay.opaque", true) == "y"
              or core.getxattr(root .. prefix, "user.overlay.opaque", true) == "y") then
        hidden = true
      end
    end
    local st = core.lstat(root .. "/" .. path)
    if st then
      return st.type == "file" and root or nil
    end
    if hidden then
      return nil
    end
  end
  return nil
end

local function normalise(name)
  local parts = {}
  for part in name:gmatch("[^/]+") do
    if part ~= "." then parts[#parts + 1] = part end
  end
  return table.concat(parts, "/")
end

-- Copy the hardlink targets that the layer tar does not contain from the
-- layers below into tree, parents included, as overlayfs copies a file up
-- before linking it.
local function copy_up_link_targets(lower, tar, tree, name)
  local entries, err = core.tar_hardlinks(tar)
  if not entries then
    errors.raise("oci: layer blob %s: %s", name, err)
  end
  for _, target in ipairs(entries) do
    target = normalise(target)
    if not core.lstat(tree .. "/" .. target) then
      local root = find_lower(lower, target)
      if not root then
        errors.raise("oci: layer blob %s has a hardlink to '%s', which neither it nor a lower layer has",
                     name, target)
      end
      local parent = target:match("^(.*)/[^/]*$")
      if parent then
        check(core.mkdirs(tree .. "/" .. parent, MODE_DIR))
      end
      check(core.copy_tree(root .. "/" .. target, tree .. "/" .. target))
    end
  end
end

-- The id of an imported layer: the chain of diff_ids below and including it,
-- so images sharing base layers share store layers.
local function layer_id(parent, diff_id)
  return core.sha256("nsbuild-oci-layer\n" .. (parent or "") .. "\n" .. diff_id)
end

-- Apply one verified layer blob into the directory tree, a new layer on lower.
local function apply_layer(lower, layer, tree)
  local name = layer.digest or layer.name
  check(core.mkdir(tree, MODE_DIR))
  copy_up_link_targets(lower, layer.copy, tree, name)
  -- A user other than root extracts in a user namespace with its subordinate
  -- ids mapped, so that owners are kept, and marks opaque directories with the
  -- xattr its overlays read.
  local stats, err = userns.extract(layer.copy, tree)
  if not stats then
    errors.raise("oci: layer blob %s: %s", name, err)
  end
  for _, skipped in ipairs(stats.skipped) do
    log.warn("oci: layer blob %s: %s", name, skipped)
  end
  local _, werr = userns.call(core.layer_whiteouts, tree, { opaque_xattr = userns.opaque_xattr() })
  if werr then
    errors.raise("oci: layer blob %s: %s", name, werr)
  end
end

-- Commit an applied layer. A compressed blob is kept in the store, so that an
-- export reuses it instead of writing a new one.
local function commit_layer(store, layer, id)
  local res = layer.verified
  local meta = { created_by = "oci layer " .. res.diff_id }
  if res.compression ~= "none" then
    local blob = { digest = res.digest, diff_id = res.diff_id, size = res.size,
                   media_type = oci.MEDIA_LAYER[res.compression] }
    local target = oci.blob_path(store, blob.digest)
    if not core.lstat(target) then
      check(core.rename(layer.copy, target))
    end
    meta.blobs = { source = blob }
  end
  store:commit_layer(layer.tree, id, meta)
end

-- Apply every layer the store lacks into the work directory, then commit them,
-- so that a layer that fails to apply leaves the store as it was.
local function apply_layers(store, layers, work)
  local ids, lower = {}, {}
  for i, layer in ipairs(layers) do
    ids[i] = layer_id(ids[i - 1], layer.verified.diff_id)
    if store:has_layer(ids[i]) then
      lower[i] = store:layer_path(ids[i])
    else
      layer.tree = string.format("%s/layer-%d", work, i)
      apply_layer(lower, layer, layer.tree)
      lower[i] = layer.tree
    end
  end
  for i, layer in ipairs(layers) do
    if layer.tree then
      commit_layer(store, layer, ids[i])
    end
  end
  return ids
end

-- }======================================================

-- Unpack a tar input into the work directory; return the directory to read.
local function unpack_input(path, work)
  local st = check(core.stat(path))
  if st.type == "dir" then
    return path
  end
  local dir = work .. "/input"
  check(core.mkdir(dir, MODE_DIR))
  local stats, err = core.extract(path, dir, { same_owner = false, skip_devices = true })
  if not stats then
    errors.raise("oci: cannot unpack %s: %s", path, err)
  end
  return dir
end

--- Import the image into the store, one store layer per image layer.
-- Returns { layers = {ids, bottom to top}, config = the image config,
-- history = the image's history entries }. Raises an error naming the blob
-- when a digest does not match or a layer cannot be applied. Layers are
-- committed only once every layer is verified and applied.
function Oci:import(store)
  if not self.manifest and not self.docker then
    self:describe()
  end
  local work, release = store:work_dir("oci")
  local ok, result = pcall(function()
    local dir = unpack_input(self.path, work)
    local layers, config
    if self.manifest then
      layers, config = layout_image(dir, self.manifest)
    else
      layers, config = docker_image(dir, self.docker)
    end
    local rootfs = type(value(config.rootfs)) == "table" and config.rootfs or {}
    verify_layers(layers, strings(rootfs.diff_ids) or {}, work)

    local arch = value(config.architecture)
    if arch and arch ~= oci.architecture() then
      log.warn("oci: %s is an image for %s, this machine is %s", self.shown, arch, oci.architecture())
    end
    local ids = apply_layers(store, layers, work)
    return { layers = ids, config = M.image_config(config), history = image_history(config) }
  end)
  release(true)
  if not ok then
    error(result, 0)
  end
  return result
end

return M
