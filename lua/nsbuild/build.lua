--- The build engine: walks an image's chain of steps, reuses every step whose
-- cache key the store has seen, and materialises the rest.
--
-- A step's key is sha256 of the previous step's key and the step's canonical
-- description, so a change anywhere invalidates that step and all after it.
-- Requires the store, the container runtime and, for copies, nsbuild.core.
local core = require "nsbuild.core"
local errors = require "nsbuild.errors"
local log = require "nsbuild.log"
local progress = require "nsbuild.progress"
local tree = require "nsbuild.tree"
local userns = require "nsbuild.userns"
local util = require "nsbuild.util"

-- Loaded on first use: a fully cached rebuild runs no container.
local container = util.lazy "nsbuild.container"
local policy = util.lazy "nsbuild.policy"

local M = {}

local KEY_VERSION = "nsbuild-step-v1"

local check = errors.check

local function chain_key(parent_key, canonical)
  return core.sha256(KEY_VERSION .. "\n" .. (parent_key or "") .. "\n" .. canonical)
end

--- Return the one-line description of a step shown in progress and errors.
function M.step_summary(step)
  if step.kind == "source" then
    return step.source:summary()
  elseif step.kind == "run" then
    return "run " .. (step.text or util.command_line(step.argv))
  elseif step.kind == "copy" then
    return "copy " .. step.shown .. " " .. step.dst
  elseif step.kind == "copy_from" then
    return "copy_from " .. step.src .. " " .. step.dst
  end
  local value = step.value
  if type(value) == "table" then
    value = util.command_line(value)
  end
  return step.field .. " " .. tostring(value)
end

-- Merge "NAME=value" entries into a list, later names replacing earlier ones.
local function merge_assignments(list, entries)
  local out, index = {}, {}
  for _, set in ipairs({ list, entries }) do
    for _, e in ipairs(set) do
      local name = e:match("^[^=]*")
      if index[name] then
        out[index[name]] = e
      else
        out[#out + 1] = e
        index[name] = #out
      end
    end
  end
  return out
end

local function apply_config(config, step)
  if step.field == "env" or step.field == "labels" then
    config[step.field] = merge_assignments(config[step.field] or {}, step.value)
  elseif step.field == "exposed_ports" then
    local seen, list = {}, {}
    for _, set in ipairs({ config.exposed_ports or {}, step.value }) do
      for _, p in ipairs(set) do
        if not seen[p] then seen[p] = true; list[#list + 1] = p end
      end
    end
    table.sort(list)
    config.exposed_ports = list
  else
    config[step.field] = step.value
  end
end

local function config_canonical(step)
  local value = type(step.value) == "table" and step.value or { step.value }
  return step.field .. "=" .. table.concat(value, "\0")
end

-- The settings a run step executes with: the image config, then the step's own.
local function run_settings(step, config)
  return {
    env = merge_assignments(config.env or {}, step.env or {}),
    user = step.user or config.user,
    cwd = step.cwd or config.workdir or "/",
    network = step.network,
  }
end

-- The canonical form of a run step: everything that decides what it does.
local function run_canonical(step, settings)
  local mounts = {}
  for _, m in ipairs(step.mounts) do
    mounts[#mounts + 1] = table.concat({ m.type, m.target, m.source or "", m.id or "",
                                         m.readonly and "ro" or "rw" }, ",")
  end
  return table.concat({
    "run",
    "argv=" .. table.concat(step.argv, "\0"),
    "env=" .. table.concat(settings.env, "\0"),
    "user=" .. (settings.user or ""),
    "cwd=" .. settings.cwd,
    "network=" .. (settings.network or ""),
    "mounts=" .. table.concat(mounts, "\0"),
  }, "\n")
end

local function is_empty_dir(path)
  local names = core.listdir(path)
  return names ~= nil and #names == 0
end

-- Give fn a fresh work directory under the store's tmp/, removed afterwards
-- whatever fn does.
local function with_work_dir(store, purpose, fn)
  local work, release = store:work_dir(purpose)
  local ok, result = pcall(fn, work)
  release(true)
  if not ok then
    error(result, 0)
  end
  return result
end

local function layer_dirs(store, layers, work)
  local lower = {}
  for i, id in ipairs(layers) do
    lower[i] = store:layer_path(id)
  end
  if #lower == 0 then
    -- overlayfs needs at least one lower directory.
    lower[1] = work .. "/empty"
    check(core.mkdir(lower[1], tonumber("755", 8)))
  end
  return lower
end

-- Materialise a source step into a new layer; return its id, or nil for an empty source.
local function build_source(store, step, key, ctx)
  if step.source.import then
    -- A source that brings its own layers and config (oci) commits them itself.
    return nil, step.source:import(store, ctx)
  end
  if step.source.empty then
    return nil
  end
  return with_work_dir(store, "layer", function(work)
    local dir = work .. "/layer"
    check(core.mkdir(dir, tonumber("755", 8)))
    step.source:materialize(store, dir, ctx)
    store:commit_layer(dir, key, { created_by = step.source:summary() })
    return key
  end)
end

-- Add the layers, history and config of an image a source imported: the
-- start of the result, which later steps build on.
local function add_image(store, result, image)
  for _, id in ipairs(image.layers) do
    if not store:has_layer(id) then
      return false
    end
  end
  for _, id in ipairs(image.layers) do result.layers[#result.layers + 1] = id end
  for _, h in ipairs(image.history or {}) do result.history[#result.history + 1] = h end
  for field, value in pairs(image.config or {}) do result.config[field] = value end
  return true
end

-- Commit an upper directory as the step's layer; an empty one makes no layer.
local function commit_upper(store, upper, key, summary)
  if is_empty_dir(upper) then
    return nil
  end
  store:commit_layer(upper, key, { created_by = summary })
  return key
end

local function resolve_mounts(store, step)
  local mounts = {}
  for _, m in ipairs(step.mounts) do
    local options = m.readonly and { "ro" } or nil
    if m.type == "cache" then
      mounts[#mounts + 1] = { type = "bind", source = store:cache_mount_dir(m.id), target = m.target }
    elseif m.type == "bind" then
      mounts[#mounts + 1] = { type = "bind", source = m.source, target = m.target, options = options }
    else
      mounts[#mounts + 1] = { type = "tmpfs", target = m.target }
    end
  end
  return mounts
end

-- Read the command's output until every writer closed it, showing and logging each line.
local function drain_output(read_end, view, log_file)
  local pending = ""
  while true do
    local data = read_end:read(65536)
    if not data then
      break
    end
    log_file:write(data)
    pending = pending .. data
    for line in pending:gmatch("([^\n]*)\n") do
      view:output(line)
    end
    pending = pending:match("[^\n]*$")
  end
  if pending ~= "" then
    view:output(pending)
  end
end

-- Open a shell (or with mode "repl" the nsbuild REPL) in the container of a
-- failed step: the same layers, the upper directory as the step left it, the
-- same environment, mounts and policy. Nothing of it is committed.
local function debug_failed_step(spec, mode, view)
  view:summary("nsbuild: opening a " .. (mode == "repl" and "Lua REPL" or "shell")
               .. " in the failed step's container; leave it to end the build (nothing is committed)")
  local debug_spec = {}
  for k, v in pairs(spec) do debug_spec[k] = v end
  debug_spec.stdin, debug_spec.stdout, debug_spec.stderr, debug_spec.on_started = nil, nil, nil, nil
  debug_spec.argv = { "/bin/sh" }
  if mode == "repl" then
    -- Loaded here: after pivot_root the container cannot see lua/. pairs
    -- loads every lazily loaded part of the API.
    local repl, nsbuild = require "nsbuild.repl", require "nsbuild"
    for _ in pairs(nsbuild) do end
    pcall(require, "nsbuild.core_doc")
    debug_spec.lua_main = function()
      return repl.run(nsbuild)
    end
  end
  if core.isatty(0) and core.isatty(1) then
    debug_spec.tty = { input = true }
  end
  local ok, err = pcall(container.run, debug_spec)
  if not ok then
    log.warn("cannot open the debug %s: %s", mode, errors.describe(err))
  end
end

-- Run a command on an overlay of the layers so far. Its upper directory
-- becomes the step's layer, or no layer when the command changed nothing.
local function build_run(store, step, key, ctx)
  local settings = ctx.settings
  return with_work_dir(store, "run", function(work)
    local upper, ovl_work, merged = work .. "/upper", work .. "/work", work .. "/merged"
    for _, d in ipairs({ upper, ovl_work, merged }) do
      check(core.mkdir(d, tonumber("755", 8)))
    end
    local changes = { mounts = resolve_mounts(store, step) }
    if settings.user then changes.user = settings.user end
    if settings.network then changes.network = settings.network end
    local step_policy = policy.extend(policy.build or policy.default, changes)

    local read_end, write_end = check(core.pipe())
    -- A build step reads nothing from nsbuild's terminal, as `nsbuild run` without -i.
    local null = check(core.open("/dev/null", { "rdonly" }))
    local log_path = store:path("logs", key .. ".log")
    local log_file = check(io.open(log_path, "w"))
    local spec = {
      rootfs = { layers = layer_dirs(store, ctx.layers, work), upper = upper, work = ovl_work,
                 target = merged },
      argv = step.argv,
      env = container.environment(settings.env, nil, "nsbuild"),
      cwd = settings.cwd,
      hostname = "nsbuild",
      policy = step_policy,
      seccomp_cache = store:path("seccomp"),
      stdin = null,
      stdout = write_end,
      stderr = write_end,
      on_started = function()
        write_end:close()
        drain_output(read_end, ctx.view, log_file)
      end,
    }
    local ok, code = pcall(container.run, spec)
    null:close()
    write_end:close()
    read_end:close()
    log_file:close()
    if not ok then
      error(code, 0)
    end
    if code ~= 0 then
      if ctx.debug then
        debug_failed_step(spec, ctx.debug, ctx.view)
      end
      errors.raise_code(code, "step %s failed with exit code %d: %s (output in %s%s)", ctx.position,
                        code, M.step_summary(step), log_path,
                        ctx.debug and "" or "; rerun with --debug for a shell in its container")
    end
    return commit_upper(store, upper, key, M.step_summary(step))
  end)
end

-- Mount an overlay of layers with a fresh upper directory in a child process
-- with its own mount namespace, and call fn(merged) there. Mounts end with the
-- child, so nothing is left mounted whatever fn does. A user other than root
-- gets a user namespace mapped as a container's, for the mount and the owners.
local function in_overlay(store, layers, work, fn)
  local upper, ovl_work, merged = work .. "/upper", work .. "/work", work .. "/merged"
  for _, d in ipairs({ upper, ovl_work, merged }) do
    check(core.mkdir(d, tonumber("755", 8)))
  end
  local lower = layer_dirs(store, layers, work)
  -- Taken here, in the parent: the child must not be the first to load a module.
  local overlay_options = container.overlay_options
  local pid, errfd = userns.clone({ "mount" }, function()
    check(core.mount(nil, "/", nil, { "rec", "private" }))
    local data, parent = overlay_options(lower, upper, ovl_work)
    if parent then check(core.chdir(parent)) end
    check(core.mount("overlay", merged, "overlay", {}, data))
    fn(merged)
    return 0
  end)
  if not pid then
    errors.raise("cannot start the copy: %s", errfd)
  end
  local ok, err = pcall(core.await_exec, errfd)
  errfd:close()
  local _, _, code = core.waitpid(pid)
  if not ok or code ~= 0 then
    errors.raise("%s", ok and ("copy failed with exit code " .. code) or tostring(err))
  end
  return upper
end

-- Mount the root of another image read-only at dir (in the current mount namespace).
local function mount_image(store, layers, dir)
  if #layers == 0 then
    error("the source image has no files (it is built on scratch with no steps adding any)", 0)
  end
  if #layers == 1 then
    check(core.mount(store:layer_path(layers[1]), dir, nil, { "bind" }))
    check(core.mount(nil, dir, nil, { "remount", "bind", "rdonly" }))
    return
  end
  local lower = {}
  for i, id in ipairs(layers) do lower[i] = store:layer_path(id) end
  local data, parent = container.overlay_options(lower)
  if parent then check(core.chdir(parent)) end
  check(core.mount("overlay", dir, "overlay", { "rdonly" }, data))
end

local function build_copy(store, step, key, ctx)
  return with_work_dir(store, "copy", function(work)
    local upper = in_overlay(store, ctx.layers, work, function(merged)
      tree.copy_in(ctx.listing, merged, step.dst, step.owner)
    end)
    return commit_upper(store, upper, key, M.step_summary(step))
  end)
end

local function build_copy_from(store, step, key, ctx)
  local from_layers = ctx.from.layers
  return with_work_dir(store, "copy", function(work)
    local from_root = work .. "/from"
    check(core.mkdir(from_root, tonumber("755", 8)))
    local upper = in_overlay(store, ctx.layers, work, function(merged)
      mount_image(store, from_layers, from_root)
      -- The parent is resolved inside the other image; the last component is
      -- named through it, so a symlink there is copied, not followed.
      local parent, name = step.src:match("^(.*)/([^/]*)$")
      if name == "" then
        parent, name = step.src, "."
      end
      local dir = check(core.open_in_root(from_root, parent ~= "" and parent or "/", { "path", "directory" }))
      local listing = tree.scan("/proc/self/fd/" .. dir:fileno() .. "/" .. name,
                                { hash = false, name = name })
      tree.copy_in(listing, merged, step.dst, step.owner)
      dir:close()
    end)
    return commit_upper(store, upper, key, M.step_summary(step))
  end)
end

-- Return the canonical form of a filesystem step, preparing what it needs in ctx.
local function canonical_form(store, step, ctx, opts)
  if step.kind == "source" then
    return step.source:describe(store)
  elseif step.kind == "run" then
    ctx.settings = run_settings(step, ctx.config)
    return run_canonical(step, ctx.settings)
  elseif step.kind == "copy" then
    ctx.listing = tree.scan(step.src, { exclude = step.exclude, store = store })
    return "copy\ndst=" .. step.dst .. "\nowner=" .. step.owner .. "\n" .. tree.canonical(ctx.listing)
  else
    if not opts.built[step.from] then
      opts.view:heading("the image copy_from " .. step.src .. " reads")
    end
    ctx.from = M.build(store, step.from, opts)
    return table.concat({ "copy_from", "from=" .. ctx.from.key, "src=" .. step.src,
                          "dst=" .. step.dst, "owner=" .. (step.owner or "") }, "\n")
  end
end

local builders = {
  source = build_source,
  run = build_run,
  copy = build_copy,
  copy_from = build_copy_from,
}

--- Build an image value into the store.
-- opts: { no_cache = bool, view = a view from progress.new (default: plain on
-- stderr), debug = "shell" | "repl" to enter the container of a failed run step }.
-- Returns { key, layers = {layer ids, bottom to top}, steps = {step keys},
-- config, history, ran, cached }. Raises an nsbuild error naming the step when
-- a step fails; the store then contains nothing of that step.
function M.build(store, img, opts)
  opts = opts or {}
  opts.view = opts.view or progress.new({})
  opts.built = opts.built or {}
  if opts.built[img] then
    return opts.built[img]
  end

  local view = opts.view
  local steps = img:steps()
  local result = { layers = {}, steps = {}, config = { env = {} }, history = {}, ran = 0, cached = 0 }
  local key

  for i, step in ipairs(steps) do
    local position = string.format("%d/%d", i, #steps)
    local summary = M.step_summary(step)

    if step.kind == "config" then
      view:step(position, summary)
      apply_config(result.config, step)
      key = chain_key(key, config_canonical(step))
      result.history[#result.history + 1] = { created_by = summary, empty_layer = true }
    else
      local ctx = { config = result.config, layers = result.layers, view = view, position = position,
                    debug = opts.debug }
      key = chain_key(key, canonical_form(store, step, ctx, opts))
      view:step(position, summary)
      local record = not opts.no_cache and store:step(key)
      local layer, imported
      -- A cached import counts only while every layer it made is still stored.
      if record and record.image and not add_image(store, result, record.image) then
        record = nil
      end
      if record then
        result.cached = result.cached + 1
        view:cached()
        layer, imported = record.layer, record.image
      else
        local started = progress.clock()
        layer, imported = builders[step.kind](store, step, key, ctx)
        store:put_step(key, { layer = layer, created_by = summary, image = imported })
        if imported then
          add_image(store, result, imported)
        end
        result.ran = result.ran + 1
        view:done(progress.clock() - started)
      end
      if layer then
        result.layers[#result.layers + 1] = layer
      end
      if not imported then
        result.history[#result.history + 1] = { created_by = summary, empty_layer = layer == nil }
      end
    end
    result.steps[#result.steps + 1] = key
  end
  store:save_hashes()
  result.key = key
  -- Steps of the images copy_from read count too: they ran for this build.
  for _, dep in pairs(opts.built) do
    if dep ~= result and not dep.counted then
      dep.counted = true
      result.ran, result.cached = result.ran + dep.ran, result.cached + dep.cached
    end
  end
  opts.built[img] = result
  log.debug("built %s: %s", tostring(img), tostring(key))
  return result
end

--- Return the total size in bytes of the layers of a build result.
function M.image_size(store, layers)
  local size = 0
  for _, id in ipairs(layers) do
    local meta = store:layer_meta(id)
    size = size + (meta and meta.size or 0)
  end
  return size
end

return M
