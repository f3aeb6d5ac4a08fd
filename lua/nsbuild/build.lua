--- The build engine: walks an image's chain of steps, reuses every step whose
-- cache key the store has seen, and materialises the rest.
--
-- A step's key is sha256 of the previous step's key and the step's canonical
-- description, so a change anywhere invalidates that step and all after it.
local core = require "nsbuild.core"
local container = require "nsbuild.container"
local errors = require "nsbuild.errors"
local util = require "nsbuild.util"

local M = {}

local KEY_VERSION = "nsbuild-step-v1"

local function chain_key(parent_key, canonical)
  return core.sha256(KEY_VERSION .. "\n" .. (parent_key or "") .. "\n" .. canonical)
end

local function step_summary(step)
  if step.kind == "source" then
    return step.source:summary()
  elseif step.kind == "run" then
    return "run " .. (step.text or util.command_line(step.argv))
  else
    local value = step.value
    if type(value) == "table" then
      value = util.command_line(value)
    end
    return step.field .. " " .. tostring(value)
  end
end

local function merge_env(env, entries)
  local out = {}
  local index = {}
  for _, e in ipairs(env) do
    out[#out + 1] = e
    index[e:match("^[^=]*")] = #out
  end
  for _, e in ipairs(entries) do
    local name = e:match("^[^=]*")
    if index[name] then
      out[index[name]] = e
    else
      out[#out + 1] = e
      index[name] = #out
    end
  end
  return out
end

-- The canonical form of a run step: everything that decides what it does.
local function run_canonical(step, config)
  return table.concat({
    "run",
    "argv=" .. table.concat(step.argv, "\0"),
    "env=" .. table.concat(config.env, "\0"),
    "workdir=" .. (config.workdir or "/"),
  }, "\n")
end

local Progress = {}
Progress.__index = Progress

local function new_progress(opts)
  return setmetatable({ quiet = opts.quiet, out = opts.output or io.stderr }, Progress)
end

function Progress:start(index, total, summary)
  if not self.quiet then
    self.out:write(string.format("[%d/%d] %s\n", index, total, summary))
    self.out:flush()
  end
end

function Progress:done(what)
  if not self.quiet then
    self.out:write("  ", what, "\n")
    self.out:flush()
  end
end

local function clock()
  local f = io.open("/proc/uptime")
  if f then
    local t = f:read("n")
    f:close()
    if t then return t end
  end
  return os.time()
end

-- Materialise a source step into a new layer; return its id, or nil for an empty source.
local function build_source(store, step, key)
  if step.source.empty then
    return nil
  end
  local work, release = store:work_dir("layer")
  local ok, err = pcall(function()
    local tree = work .. "/layer"
    errors.check(core.mkdir(tree, 0755))
    step.source:materialize(store, tree)
    store:commit_layer(tree, key, { created_by = step.source:summary() })
  end)
  release(true)
  if not ok then
    error(err, 0)
  end
  return key
end

local function is_empty_dir(path)
  local names = core.listdir(path)
  return names ~= nil and #names == 0
end

-- Run a command on an overlay of the layers so far; its upper directory
-- becomes the step's layer, or no layer when the command changed nothing.
local function build_run(store, step, key, layers, config, position)
  local work, release = store:work_dir("run")
  local ok, err = pcall(function()
    local upper, ovl_work, merged = work .. "/upper", work .. "/work", work .. "/merged"
    for _, d in ipairs({ upper, ovl_work, merged }) do
      errors.check(core.mkdir(d, 0755))
    end
    local lower = {}
    for i, id in ipairs(layers) do
      lower[i] = store:layer_path(id)
    end
    if #lower == 0 then
      -- overlayfs needs at least one lower directory.
      lower[1] = work .. "/empty"
      errors.check(core.mkdir(lower[1], 0755))
    end
    local code = container.run({
      rootfs = { layers = lower, upper = upper, work = ovl_work, target = merged },
      argv = step.argv,
      env = container.environment(config.env, nil, "nsbuild"),
      cwd = config.workdir or "/",
      hostname = "nsbuild",
    })
    if code ~= 0 then
      errors.raise_code(code, "step %s failed with exit code %d: %s", position, code, step_summary(step))
    end
    if is_empty_dir(upper) then
      key = nil
    else
      store:commit_layer(upper, key, { created_by = step_summary(step) })
    end
  end)
  release(true)
  if not ok then
    error(err, 0)
  end
  return key
end

--- Build an image value into the store.
-- opts: { no_cache = bool, quiet = bool, output = file for progress }.
-- Returns { key, layers = {layer ids bottom to top}, config, ran, cached }.
-- Raises an nsbuild error naming the step when a step fails.
function M.build(store, img, opts)
  opts = opts or {}
  local progress = new_progress(opts)
  local steps = img:steps()
  local key
  local layers = {}
  local config = { env = {} }
  local ran, cached = 0, 0

  for i, step in ipairs(steps) do
    local position = string.format("%d/%d", i, #steps)
    local summary = step_summary(step)
    progress:start(i, #steps, summary)

    if step.kind == "config" then
      if step.field == "env" then
        config.env = merge_env(config.env, step.value)
      else
        config[step.field] = step.value
      end
      key = chain_key(key, step.field .. "=" .. util.command_line(
        type(step.value) == "table" and step.value or { step.value }))
    else
      local canonical = step.kind == "source" and step.source:describe(store) or run_canonical(step, config)
      key = chain_key(key, canonical)
      local record = not opts.no_cache and store:step(key)
      if record then
        cached = cached + 1
        progress:done("CACHED")
        if record.layer then
          layers[#layers + 1] = record.layer
        end
      else
        local started = clock()
        local layer
        if step.kind == "source" then
          layer = build_source(store, step, key)
        else
          layer = build_run(store, step, key, layers, config, position)
        end
        store:put_step(key, { layer = layer, created_by = summary })
        if layer then
          layers[#layers + 1] = layer
        end
        ran = ran + 1
        progress:done(string.format("done in %.2fs", clock() - started))
      end
    end
  end
  return { key = key, layers = layers, config = config, ran = ran, cached = cached }
end

return M
