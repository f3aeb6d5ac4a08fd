--- OCI images out of the store: image layouts (a directory or a tar), flattened
-- root file systems (a directory or a tar) and runtime bundles.
--
-- Each layer becomes a tar blob, written once by core.layer_tar and kept in the
-- store's blobs/sha256/, its digests recorded in layers/<id>.json under
-- `blobs`, so a second export reuses it. A layer imported from an OCI image
-- keeps the compressed blob it came in (`blobs.source`), so an image imported
-- and exported unchanged keeps its digests. The image config, manifest and index are canonical JSON (oci_json),
-- so the same layers and config always give the same digests.
--
-- Requires nsbuild.core, the store, nsbuild.container (overlay options) and
-- nsbuild.oci_json.
local core = require "nsbuild.core"
local cjson = require "cjson"
local container = require "nsbuild.container"
local errors = require "nsbuild.errors"
local json = require "nsbuild.oci_json"
local log = require "nsbuild.log"
local userns = require "nsbuild.userns"

local M = {}

M.MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
M.MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
M.MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
M.MEDIA_LAYER = {
  none = "application/vnd.oci.image.layer.v1.tar",
  gzip = "application/vnd.oci.image.layer.v1.tar+gzip",
  zstd = "application/vnd.oci.image.layer.v1.tar+zstd",
}
M.REF_ANNOTATION = "org.opencontainers.image.ref.name"
M.LAYOUT_VERSION = '{"imageLayoutVersion":"1.0.0"}'

local check = errors.check
local MODE_FILE, MODE_DIR = tonumber("644", 8), tonumber("755", 8)

-- {====================================================== settings

-- GOARCH names of the architectures libseccomp reports, as OCI configs use them.
local architectures = { x86_64 = "amd64", x86 = "386", aarch64 = "arm64", arm = "arm",
                        ppc64le = "ppc64le", s390x = "s390x", riscv64 = "riscv64",
                        mips64el = "mips64le", loongarch64 = "loong64" }

--- Return the OCI (GOARCH) name of this machine's architecture.
function M.architecture()
  local native = core.seccomp_arch_native()
  return architectures[native] or native
end

--- Return the time to clamp layer mtimes to: value (a number or a string of
-- digits), else $SOURCE_DATE_EPOCH, else 0, so that an export is reproducible
-- by default: files a run step wrote carry the day of the build otherwise.
-- "none" returns nil, which keeps the files' mtimes. Raises on a value that is
-- not whole seconds since 1970.
function M.source_date_epoch(value)
  local from = "--source-date-epoch"
  if value == nil then
    value, from = os.getenv("SOURCE_DATE_EPOCH"), "SOURCE_DATE_EPOCH"
  end
  if value == "none" then
    return nil
  end
  if value == nil or value == "" then
    return 0
  end
  local n = math.tointeger(tonumber(value))
  if not n or n < 0 or not tostring(value):match("^%d+$") then
    errors.raise("invalid %s '%s': expected whole seconds since 1970, e.g. $(git log -1 --format=%%ct)",
                 from, tostring(value))
  end
  return n
end

local function check_compression(name)
  if M.MEDIA_LAYER[name] == nil then
    errors.raise("invalid compression '%s' (use gzip, zstd or none)", tostring(name))
  end
  return name
end

-- }======================================================

-- {====================================================== blobs in the store

local function hex(digest)
  return digest:match("^sha256:(%x+)$")
end

--- Return the path of a blob in the store's blobs/sha256/.
function M.blob_path(store, digest)
  return store:path("blobs", "sha256", hex(digest))
end

-- Move a finished file into blobs/sha256/ under its digest. A blob already there
-- has the same bytes, because its name is their digest.
local function commit_blob(store, file, digest)
  local target = M.blob_path(store, digest)
  if core.lstat(target) then
    core.unlink(file)
  else
    check(core.rename(file, target))
  end
  return target
end

--- Store bytes as a blob; return its digest and size.
function M.put_blob(store, bytes)
  local digest = "sha256:" .. core.sha256(bytes)
  if not core.lstat(M.blob_path(store, digest)) then
    local work, release = store:work_dir("blob")
    local ok, err = pcall(function()
      check(core.write_file(work .. "/blob", bytes, MODE_FILE))
      commit_blob(store, work .. "/blob", digest)
    end)
    release(true)
    if not ok then
      error(err, 0)
    end
  end
  return digest, #bytes
end

--- Change a layer's metadata file under the store's commit lock: fn(meta)
-- edits the decoded table, which is then written back atomically.
function M.update_layer_meta(store, id, fn)
  local unlock = store:lock()
  local ok, err = pcall(function()
    local meta = store:layer_meta(id) or {}
    fn(meta)
    check(core.write_file(store:layer_path(id) .. ".json", cjson.encode(meta), MODE_FILE))
  end)
  unlock()
  if not ok then
    error(err, 0)
  end
end

local function usable(store, blob)
  return blob ~= nil and core.lstat(M.blob_path(store, blob.digest)) ~= nil
end

-- Write the tar blob of a layer into the store; return its descriptor.
local function write_layer_blob(store, id, compression, epoch)
  local work, release = store:work_dir("export")
  local ok, result = pcall(function()
    local out = work .. "/blob"
    -- A user other than root writes the tar in a mapped child: there it can
    -- read the files of its subordinate ids, and the tar gets the image's ids.
    local res, err = userns.call(core.layer_tar, store:layer_path(id), out,
                                 { compression = compression, mtime_clamp = epoch })
    if not res then
      errors.raise("cannot export layer %s: %s", id, err)
    end
    for _, skipped in ipairs(res.skipped) do
      log.warn("layer %s: %s", id, skipped)
    end
    commit_blob(store, out, res.digest)
    return { digest = res.digest, diff_id = res.diff_id, size = res.size,
             media_type = M.MEDIA_LAYER[compression] }
  end)
  release(true)
  if not ok then
    error(result, 0)
  end
  return result
end

--- Return the blob of a layer as { digest, diff_id, size, media_type }, written
-- into the store on first use and reused afterwards. A compressed blob the
-- layer was imported from is reused whatever compression is asked for.
function M.layer_blob(store, id, compression, epoch)
  local meta = store:layer_meta(id)
  if not meta then
    errors.raise("layer %s is missing from the store %s: build the image again", id, store.dir)
  end
  local blobs = meta.blobs or {}
  local key = compression .. "@" .. (epoch and tostring(epoch) or "mtime")
  if usable(store, blobs.source) then
    return blobs.source
  end
  if usable(store, blobs[key]) then
    return blobs[key]
  end
  local blob = write_layer_blob(store, id, compression, epoch)
  M.update_layer_meta(store, id, function(m)
    m.blobs = m.blobs or {}
    m.blobs[key] = blob
  end)
  return blob
end

-- }======================================================

-- {====================================================== config and manifest

local function string_array(list)
  local out = json.array()
  for i, v in ipairs(list or {}) do out[i] = v end
  return out
end

-- The `config` object of an image config: only the fields that are set.
local function runtime_config(c)
  local out = json.object()
  if c.env and #c.env > 0 then out.Env = string_array(c.env) end
  if c.entrypoint then out.Entrypoint = string_array(c.entrypoint) end
  if c.cmd then out.Cmd = string_array(c.cmd) end
  if c.workdir then out.WorkingDir = c.workdir end
  if c.user then out.User = c.user end
  if c.stop_signal then out.StopSignal = c.stop_signal end
  if c.labels and #c.labels > 0 then
    out.Labels = json.object()
    for _, entry in ipairs(c.labels) do
      local k, v = entry:match("^([^=]*)=(.*)$")
      out.Labels[k] = v
    end
  end
  if c.exposed_ports and #c.exposed_ports > 0 then
    out.ExposedPorts = json.object()
    for _, port in ipairs(c.exposed_ports) do out.ExposedPorts[port] = json.object() end
  end
  return out
end

-- The history of an image config. OCI tools expect one entry without
-- empty_layer per layer; a record that does not match gets one entry per layer.
local function history(record, layer_count, created)
  local list, filled = json.array(), 0
  for _, h in ipairs(record.history or {}) do
    if not h.empty_layer then filled = filled + 1 end
  end
  local source = record.history or {}
  if filled ~= layer_count then
    source = {}
    for i = 1, layer_count do source[i] = { created_by = "nsbuild layer " .. i } end
  end
  for i, h in ipairs(source) do
    list[i] = json.object({ created = h.created or created, created_by = h.created_by,
                            comment = h.comment, author = h.author,
                            empty_layer = h.empty_layer or nil })
  end
  return list
end

--- Return the image config document of an image record whose layer blobs
-- are layers; epoch (or the imported config's time) sets `created`.
function M.config_document(record, layers, epoch)
  local c = record.config or {}
  local created = epoch and os.date("!%Y-%m-%dT%H:%M:%SZ", epoch) or c.created
  local diff_ids = json.array()
  for i, layer in ipairs(layers) do diff_ids[i] = layer.diff_id end
  return json.object({
    created = created,
    architecture = c.architecture or M.architecture(),
    variant = c.variant,
    os = "linux",
    config = runtime_config(c),
    rootfs = json.object({ type = "layers", diff_ids = diff_ids }),
    history = history(record, #layers, created),
  })
end

local function descriptor(media_type, digest, size)
  return json.object({ mediaType = media_type, digest = digest, size = size })
end

--- Write every blob of an image record into the store and return
-- { manifest = descriptor, config = descriptor, layers = {descriptor...} },
-- each { mediaType, digest, size }. opts: compression ("gzip", "zstd" or
-- "none"), epoch (clamp mtimes to it; nil keeps them).
function M.image_blobs(store, record, opts)
  local compression = check_compression(opts.compression or "gzip")
  local layers, layer_descriptors = {}, json.array()
  for i, id in ipairs(record.layers or {}) do
    layers[i] = M.layer_blob(store, id, compression, opts.epoch)
    layer_descriptors[i] = descriptor(layers[i].media_type, layers[i].digest, layers[i].size)
  end
  local config_digest, config_size = M.put_blob(store, json.encode(M.config_document(record, layers, opts.epoch)))
  local config = descriptor(M.MEDIA_CONFIG, config_digest, config_size)
  local manifest_doc = json.object({ schemaVersion = 2, mediaType = M.MEDIA_MANIFEST, config = config,
                                     layers = layer_descriptors })
  local manifest_digest, manifest_size = M.put_blob(store, json.encode(manifest_doc))
  return { manifest = descriptor(M.MEDIA_MANIFEST, manifest_digest, manifest_size), config = config,
           layers = layer_descriptors }
end

-- }======================================================

-- {====================================================== image layouts

-- Copy a store blob into a layout's blobs/sha256/ and verify its digest on the
-- way. With link, hardlink it instead, for a layout that only feeds a tar.
local function place_blob(store, desc, dir, link)
  local target = dir .. "/blobs/sha256/" .. hex(desc.digest)
  local st = core.lstat(target)
  if st and st.size == desc.size then
    return
  end
  local source = M.blob_path(store, desc.digest)
  if link then
    check(core.link(source, target))
    return
  end
  local partial = target .. ".partial"
  core.unlink(partial)
  local res, err = core.blob_digest(source, partial)
  if not res or res.digest ~= desc.digest then
    core.unlink(partial)
    errors.raise("store blob %s is damaged (%s): remove it and export again",
                 desc.digest, res and ("its digest is " .. res.digest) or err)
  end
  check(core.rename(partial, target))
end

-- Read the manifests of an existing index.json, dropping the one named ref.
local function other_manifests(dir, ref)
  local list = json.array()
  local text = core.read_file(dir .. "/index.json")
  if not text then
    return list
  end
  local index, err = json.decode(text, dir .. "/index.json")
  if not index then
    errors.raise("%s: write the image to a new directory", err)
  end
  for _, m in ipairs(index.manifests or {}) do
    local annotations = type(m.annotations) == "table" and m.annotations or {}
    if annotations[M.REF_ANNOTATION] ~= ref then
      list[#list + 1] = m
    end
  end
  return list
end

--- Write an image (the result of image_blobs) into the OCI image layout dir,
-- created when missing. Other images of an existing layout stay; one with the
-- same ref is replaced. ref is written as org.opencontainers.image.ref.name.
-- opts.link hardlinks the store's blobs instead of copying them.
function M.write_layout(store, dir, ref, image, opts)
  opts = opts or {}
  check(core.mkdirs(dir .. "/blobs/sha256", MODE_DIR))
  local layout = core.read_file(dir .. "/oci-layout")
  if layout and not layout:find('"imageLayoutVersion"%s*:%s*"1%.') then
    errors.raise("%s/oci-layout is not an OCI image layout 1.x: write the image to a new directory", dir)
  elseif not layout then
    check(core.write_file(dir .. "/oci-layout", M.LAYOUT_VERSION, MODE_FILE))
  end
  for _, desc in ipairs(image.layers) do
    place_blob(store, desc, dir, opts.link)
  end
  place_blob(store, image.config, dir, opts.link)
  place_blob(store, image.manifest, dir, opts.link)

  local manifests = other_manifests(dir, ref)
  local entry = descriptor(image.manifest.mediaType, image.manifest.digest, image.manifest.size)
  entry.annotations = json.object({ [M.REF_ANNOTATION] = ref })
  manifests[#manifests + 1] = entry
  local index = json.object({ schemaVersion = 2, mediaType = M.MEDIA_INDEX, manifests = manifests })
  check(core.write_file(dir .. "/index.json", json.encode(index), MODE_FILE))
end

-- Write path through a temporary sibling file renamed into place, so that a
-- failed export leaves no partial file under the name asked for.
local function write_atomically(path, fn)
  local partial = path .. ".partial"
  core.unlink(partial)
  local ok, err = pcall(fn, partial)
  if not ok then
    core.unlink(partial)
    error(err, 0)
  end
  check(core.rename(partial, path))
end

--- Write an image as an OCI layout in a tar file (what `podman load` and
-- skopeo's oci-archive read). Entries are sorted and their mtimes are epoch,
-- or 0, so the tar depends only on the image.
function M.write_layout_tar(store, file, ref, image, epoch)
  local work, release = store:work_dir("layout")
  local ok, err = pcall(function()
    M.write_layout(store, work .. "/layout", ref, image, { link = true })
    write_atomically(file, function(partial)
      local res, terr = core.layer_tar(work .. "/layout", partial, { compression = "none", overlay = false,
                                                                     mtime_clamp = epoch or 0 })
      if not res then
        errors.raise("cannot write %s: %s", file, terr)
      end
    end)
  end)
  release(true)
  if not ok then
    error(err, 0)
  end
end

-- }======================================================

-- {====================================================== flattened root file systems

-- Mount the layers (bottom to top) read-only in a child process with its own
-- mount namespace and call fn(root) there. The mount ends with the child, so
-- nothing stays mounted whatever fn does. Raises fn's error.
local function in_rootfs(store, layers, fn)
  local work, release = store:work_dir("rootfs")
  local ok, err = pcall(function()
    local empty, merged = work .. "/empty", work .. "/merged"
    check(core.mkdir(empty, MODE_DIR))
    check(core.mkdir(merged, MODE_DIR))
    if #layers == 0 then
      fn(empty)
      return
    end
    -- A read-only overlay needs two lower directories: the empty one is the bottom.
    local lower = { empty }
    for _, id in ipairs(layers) do lower[#lower + 1] = store:layer_path(id) end
    -- A user other than root mounts only as root of a user namespace.
    local pid, errfd = userns.clone({ "mount" }, function()
      check(core.mount(nil, "/", nil, { "rec", "private" }))
      local data, parent = container.overlay_options(lower)
      if parent then check(core.chdir(parent)) end
      check(core.mount("overlay", merged, "overlay", { "rdonly" }, data))
      fn(merged)
      return 0
    end)
    if not pid then
      errors.raise("cannot start the export process: %s", errfd)
    end
    local awaited, message = pcall(core.await_exec, errfd)
    errfd:close()
    local _, how, code = core.waitpid(pid)
    if not awaited then
      errors.raise("%s", tostring(message))
    elseif how ~= "exited" or code ~= 0 then
      errors.raise("the export process ended with %s %s", how, tostring(code))
    end
  end)
  release(true)
  if not ok then
    error(err, 0)
  end
end

--- Copy the image's flattened tree into dir, which must not exist or be empty.
function M.export_rootfs(store, record, dir)
  local names = core.listdir(dir)
  if names and #names > 0 then
    errors.raise("%s is not empty: export the root file system into a new directory", dir)
  elseif names then
    check(core.rmdir(dir))
  end
  in_rootfs(store, record.layers or {}, function(root)
    local ok, err = core.copy_tree(root, dir)
    if not ok then
      error(string.format("cannot copy the image into %s: %s", dir, err), 0)
    end
  end)
end

--- Write the image's flattened tree as one tar file. opts: compression
-- ("none" by default), epoch (clamp mtimes to it).
function M.export_tar(store, record, file, opts)
  local compression = check_compression(opts.compression or "none")
  write_atomically(file, function(partial)
    in_rootfs(store, record.layers or {}, function(root)
      local res, err = core.layer_tar(root, partial, { compression = compression, overlay = false,
                                                       mtime_clamp = opts.epoch })
      if not res then
        error(string.format("cannot write %s: %s", file, err), 0)
      end
    end)
  end)
end

-- }======================================================

--- Return the image ref of an image name: its tag ("busybox:latest" gives "latest").
function M.default_ref(name)
  return name:match(":([^:/]+)$") or "latest"
end

--- Export a tagged image of the store. opts: oci (a layout directory, or a file
-- ending in .tar), rootfs, tar, bundle (each a path), ref, compression, epoch,
-- policy (for bundle), argv (for bundle). Returns a one-line summary.
function M.export(store, name, opts)
  local record = store:image(name)
  if not record then
    errors.raise("export: image '%s' not found in %s; build it first or see nsbuild images", name, store.dir)
  end
  if opts.rootfs then
    M.export_rootfs(store, record, opts.rootfs)
    return string.format("exported %s to %s", record.name, opts.rootfs)
  elseif opts.tar then
    M.export_tar(store, record, opts.tar, opts)
    return string.format("exported %s to %s", record.name, opts.tar)
  elseif opts.bundle then
    require("nsbuild.oci_bundle").write(store, record, opts.bundle, opts)
    return string.format("exported %s as a runtime bundle in %s", record.name, opts.bundle)
  end
  local image = M.image_blobs(store, record, opts)
  local ref = opts.ref or M.default_ref(record.name)
  if opts.oci:match("%.tar$") then
    M.write_layout_tar(store, opts.oci, ref, image, opts.epoch)
  else
    M.write_layout(store, opts.oci, ref, image)
  end
  return string.format("exported %s to %s as %s: manifest %s, %d layers", record.name, opts.oci, ref,
                       image.manifest.digest, #image.layers)
end

local EXPORT_USAGE = "usage: nsbuild export IMAGE --oci DIR|FILE.tar | --rootfs DIR | --tar FILE | "
                     .. "--bundle DIR [--policy FILE] [-- COMMAND...]"

--- Run `nsbuild export`; parse and open_store are the CLI's argument parser
-- and store opener. Returns the exit code.
function M.command(args, parse, open_store)
  local opts, rest = parse(args, 2, { ["--cache"] = true, ["--oci"] = true, ["--rootfs"] = true,
                                      ["--tar"] = true, ["--bundle"] = true, ["--ref"] = true,
                                      ["--compression"] = true, ["--source-date-epoch"] = true,
                                      ["--policy"] = true })
  local name = table.remove(rest, 1)
  if not name then
    errors.raise("export: missing IMAGE (%s)", EXPORT_USAGE)
  end
  local targets = 0
  for _, t in ipairs({ "--oci", "--rootfs", "--tar", "--bundle" }) do
    if opts[t] then targets = targets + 1 end
  end
  if targets ~= 1 then
    errors.raise("export: give exactly one of --oci, --rootfs, --tar and --bundle (%s)", EXPORT_USAGE)
  end
  if #rest > 0 and not opts["--bundle"] then
    errors.raise("export: a command (%s) is only taken with --bundle", table.concat(rest, " "))
  end
  if opts["--policy"] and not opts["--bundle"] then
    errors.raise("export: --policy is only taken with --bundle")
  end
  local summary = M.export(open_store(opts), name, {
    oci = opts["--oci"], rootfs = opts["--rootfs"], tar = opts["--tar"], bundle = opts["--bundle"],
    ref = opts["--ref"], compression = opts["--compression"],
    epoch = M.source_date_epoch(opts["--source-date-epoch"]),
    policy_file = opts["--policy"], argv = #rest > 0 and rest or nil,
  })
  io.stdout:write(summary, "\n")
  return 0
end

return M
