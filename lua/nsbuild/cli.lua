--- The command line: parses arguments and calls the library.
local core = require "nsbuild.core"
local errors = require "nsbuild.errors"
local log = require "nsbuild.log"
local nsbuild = require "nsbuild"
local util = require "nsbuild.util"

-- Loaded on first use: building needs none of them.
local live = util.lazy "nsbuild.live"
local live_cli = util.lazy "nsbuild.live_cli"
local run_options = util.lazy "nsbuild.run_options"

local M = {}

local usage = [=[
usage:
  nsbuild [OPTIONS] RECIPE.lua [NAME...]   build the images a recipe returns
  nsbuild run [RUN OPTIONS] IMAGE [--] [COMMAND [ARG...]]
                                           run a command in a container of IMAGE
  nsbuild images                           list tagged images
  nsbuild rm IMAGE...                      remove tags
  nsbuild prune                            remove layers and cache entries no tag uses
  nsbuild du                               disk usage of the store
  nsbuild export IMAGE --oci DIR|FILE.tar | --rootfs DIR | --tar FILE | --bundle DIR
                                           write an OCI image layout, a flattened tree
                                           or tar, or an OCI runtime bundle (docs/oci.md)
  nsbuild run -d [RUN OPTIONS] IMAGE [--] [COMMAND...]
                                           run it detached: print its id, its output
                                           goes to nsbuild logs ID
  nsbuild ps                               list running containers (stale entries removed)
  nsbuild exec [-i] [-t] [-u USER] [-w DIR] [-e K=V] ID [--] COMMAND [ARG...]
                                           run a command in a running container: its
                                           namespaces, cgroup and policy restrictions
  nsbuild stop [-t SECONDS] ID...          SIGTERM, then SIGKILL after SECONDS (default 10)
  nsbuild logs [-f] ID                     output of a container started with run -d or
                                           nsbuild.start (a foreground run's goes to its
                                           terminal); -f follows it until the container ends
  nsbuild repl                             Lua prompt with the nsbuild API loaded
  nsbuild -e CODE [ARG...]                 run Lua code with the API loaded (arg[1]... = ARGs)
  nsbuild script FILE.lua [ARG...]         run a Lua script with the API loaded; a plain
                                           nsbuild FILE.lua builds it as a recipe instead
  nsbuild help | --help | --version

options:
  --cache DIR        layer store to use (default: $NSBUILD_CACHE, rootfs-cache/ in a
                     source checkout, /var/lib/nsbuild as root)
  --no-cache         build every step again
  -q, --quiet        no progress output (same as --progress=quiet)
  --progress MODE    plain, tty (colour) or quiet; default tty on a terminal
  --arg KEY=VALUE    a value the recipe reads as args.KEY (repeatable)
  -j N               build up to N of the recipe's named images in parallel
  --debug[=repl]     when a run step fails, open a shell (or the Lua REPL) in its
                     container, with the files as the step left them

run options:
  --hostname NAME    hostname inside the container (default: a random id)
  -e NAME=VALUE      set an environment variable (repeatable)
  -w DIR             working directory inside the container
  --network MODE     none (default: only loopback), host (the host's network) or
                     slirp (user-mode networking through slirp4netns)
  -p [ADDR:]HOSTPORT:PORT[/tcp|/udp]
                     forward host port HOSTPORT on ADDR (default 127.0.0.1) to
                     the container's PORT (repeatable; implies --network slirp)
  --memory SIZE      memory limit in bytes, or with a unit: 512M, 2G ("max": none)
  --pids-limit N     maximum number of processes ("max", -1 or 0: none)
  --cpus N           CPU time limit in cores, e.g. 0.5 for half of one core
  --stats            print the container's peak memory, CPU time, peak pids
                     and OOM kills when it ends
  --policy FILE      isolation policy: a Lua file returning a policy table or a
                     function(base) returning one (default: nsbuild.policy.default)
  -v SRC:DST[:OPTS]  bind-mount host path SRC on DST; OPTS: ro, nosuid, nodev, noexec
  -u USER            user as uid[:gid] or name[:group] of the image's /etc/passwd
  -i                 keep stdin attached (default: /dev/null)
  -t                 give the command a terminal (a pty of the container's devpts)
  -d                 detached: print the container's id and return while it runs;
                     its output goes to nsbuild logs ID, nsbuild stop ID ends it
  --read-only        mount the root file system read-only
  --cap-add CAP, --cap-drop CAP
                     add or drop a capability, e.g. net_admin or ALL (repeatable)
  --security-opt seccomp=default|strict|unconfined|FILE.lua
                     seccomp profile; also no-new-privileges=false
  --init, --no-init  run the command under the built-in init (default) or as PID 1
  --explain          print the steps the policy performs, run nothing

export options:
  --compression C    layer blobs as gzip (default), zstd or none
  --source-date-epoch N|none
                     clamp file mtimes and set created times to N seconds since
                     1970 (default: $SOURCE_DATE_EPOCH, else 0, so that exports
                     are reproducible; none keeps the files' mtimes)
  --ref NAME         org.opencontainers.image.ref.name in index.json (default: the tag)
  --policy FILE      the policy a --bundle maps onto config.json (default: the
                     default policy); a COMMAND after -- replaces the image's cmd
]=]

-- Split args[first..] into options and positional arguments. spec maps option
-- names to true (takes a value), false (a switch), "list" (repeatable) or
-- "optional" (a switch that may take =value). With stop_after_first, the
-- first positional argument ends option parsing: the rest is a command line.
local function parse(args, first, spec, stop_after_first)
  local opts, rest = { env = {}, args = {} }, {}
  local i = first
  while i <= #args do
    local a = args[i]
    if a == "--" then
      for j = i + 1, #args do rest[#rest + 1] = args[j] end
      break
    end
    local name, inline = a:match("^(%-%-?[%w-]+)=(.*)$")
    name = name or a
    -- Short switches given together: -it is -i -t.
    local letters = spec[name] == nil and a:match("^%-(%a%a+)$")
    if letters and letters:gsub("%a", function(l) return spec["-" .. l] == false and "" or l end) == "" then
      for l in letters:gmatch("%a") do opts["-" .. l] = true end
    elseif spec[name] == nil then
      if a:sub(1, 1) == "-" and a ~= "-" then
        errors.raise("unknown option '%s' (see nsbuild --help)", a)
      end
      rest[#rest + 1] = a
      if stop_after_first then
        local from = args[i + 1] == "--" and i + 2 or i + 1
        for j = from, #args do rest[#rest + 1] = args[j] end
        break
      end
    elseif spec[name] == "optional" then
      -- A value only as --name=value: a following argument is not taken.
      opts[name] = inline or true
    elseif spec[name] then
      local value = inline
      if value == nil then
        i = i + 1
        value = args[i]
      end
      if value == nil then
        errors.raise("option '%s' needs a value", name)
      end
      if name == "-e" then
        opts.env[#opts.env + 1] = value
      elseif name == "-p" then
        opts.ports = opts.ports or {}
        opts.ports[#opts.ports + 1] = value
      elseif name == "--arg" then
        opts.args[#opts.args + 1] = value
      elseif spec[name] == "list" then
        opts[name] = opts[name] or {}
        opts[name][#opts[name] + 1] = value
      else
        opts[name] = value
      end
    elseif inline == nil or inline == "true" then
      opts[name] = true
    elseif inline == "false" then
      opts[name] = false
    else
      errors.raise("option '%s' takes no value, or =true or =false", name)
    end
    i = i + 1
  end
  return opts, rest
end

local function open_store(opts)
  return nsbuild.store.open(opts["--cache"] or nsbuild.store.default_dir())
end

local function parse_args(list)
  local values = {}
  for _, a in ipairs(list) do
    local key, value = a:match("^([%a_][%w_]*)=(.*)$")
    if not key then
      errors.raise("invalid --arg '%s': expected KEY=VALUE", a)
    end
    values[key] = value
  end
  return values
end

local function build_one(store, entry, opts, view)
  local started = require("nsbuild.progress").clock()
  local result = nsbuild.build(store, entry.image, { no_cache = opts["--no-cache"], view = view,
                                                    debug = opts.debug })
  local names = entry.image.tags
  if #names == 0 and entry.name then
    names = { entry.name }
  end
  for _, name in ipairs(names) do
    store:tag(name, { key = result.key, layers = result.layers, steps = result.steps,
                      config = result.config, history = result.history })
  end
  local what = result.ran == 0 and "nothing to do, every step was cached"
               or string.format("%d %s run, %d cached", result.ran, result.ran == 1 and "step" or "steps", result.cached)
  view:summary(string.format("built %s: %s, %.2fs, %.1fM",
    #names > 0 and table.concat(names, ", ") or "(untagged image)", what,
    require("nsbuild.progress").clock() - started,
    require("nsbuild.build").image_size(store, result.layers) / 1048576))
end

-- Build each entry in a worker process of its own, at most `jobs` at once.
-- Workers share the store as separate builds do: a step that two of them need
-- is built by both and committed once. Raises the first failure once every
-- worker has ended.
local function build_parallel(store, entries, opts, mode, jobs)
  local running, count, failure = {}, 0, nil
  local function reap()
    local pid, how, value = errors.check(core.waitpid(-1))
    local job = running[pid]
    running[pid], count = nil, count - 1
    local ok, message = pcall(core.await_exec, job.errfd)
    job.errfd:close()
    if not failure and (not ok or how ~= "exited" or value ~= 0) then
      local code = how == "signaled" and 128 + value or value
      failure = errors.new(code ~= 0 and code or errors.FAILED, "%s: %s", job.name,
                           ok and ("exit code " .. code) or tostring(message))
    end
  end
  for _, entry in ipairs(entries) do
    while count >= jobs do reap() end
    local name = entry.name or "(untagged)"
    local pid, errfd = core.clone({}, function()
      local view = require("nsbuild.progress").new({ mode = mode == "quiet" and "quiet" or "plain",
                                                    prefix = name })
      build_one(store, entry, opts, view)
      return 0
    end)
    if not pid then
      failure = failure or errors.new(errors.FAILED, "cannot start the build of %s: %s", name, errfd)
      break
    end
    running[pid], count = { name = name, errfd = errfd }, count + 1
  end
  while count > 0 do reap() end
  if failure then
    error(failure, 0)
  end
end

local function cmd_build(args)
  local opts, rest = parse(args, 1, { ["--cache"] = true, ["--no-cache"] = false,
                                      ["-q"] = false, ["--quiet"] = false, ["--progress"] = true,
                                      ["--arg"] = true, ["-j"] = true, ["--debug"] = "optional" })
  local path = table.remove(rest, 1)
  if not path then
    errors.raise("missing RECIPE.lua (see nsbuild --help)")
  end
  local wanted = {}
  for _, name in ipairs(rest) do wanted[name] = true end

  local debug = opts["--debug"]
  if debug == true then
    debug = "shell"
  end
  if debug and debug ~= "shell" and debug ~= "repl" then
    errors.raise("invalid --debug '%s' (use --debug or --debug=shell for a shell, --debug=repl for a Lua REPL)",
                 tostring(debug))
  end
  opts.debug = debug or nil
  local mode = opts["--progress"]
  if opts["-q"] or opts["--quiet"] then
    mode = "quiet"
  end
  if mode and mode ~= "plain" and mode ~= "tty" and mode ~= "quiet" then
    errors.raise("invalid --progress '%s' (use plain, tty or quiet)", mode)
  end
  local view = require("nsbuild.progress").new({ mode = mode })

  local recipes = require("nsbuild.recipe").load(path, nsbuild, parse_args(opts.args))
  local store = open_store(opts)
  local release = store:build_lock()
  local build_all = next(wanted) == nil
  local selected = {}
  for _, entry in ipairs(recipes) do
    if build_all or wanted[entry.name] then
      wanted[entry.name or ""] = nil
      selected[#selected + 1] = entry
    end
  end
  local jobs = math.tointeger(tonumber(opts["-j"] or "1"))
  if not jobs or jobs < 1 then
    errors.raise("invalid -j '%s': expected a number of parallel builds, 1 or more", tostring(opts["-j"]))
  end
  local ok, err = pcall(function()
    if jobs > 1 and #selected > 1 then
      build_parallel(store, selected, opts, mode, jobs)
      return
    end
    for _, entry in ipairs(selected) do
      if entry.name then
        view:heading(entry.name)
      end
      build_one(store, entry, opts, view)
    end
  end)
  release()
  if not ok then
    error(err, 0)
  end
  local missing = next(wanted)
  if missing then
    errors.raise("recipe '%s' has no image named '%s'", path, missing)
  end
  return 0
end

local function cmd_rm(args)
  local opts, rest = parse(args, 2, { ["--cache"] = true })
  if #rest == 0 then
    errors.raise("rm: missing IMAGE (usage: nsbuild rm IMAGE...)")
  end
  local store = open_store(opts)
  local code = 0
  for _, name in ipairs(rest) do
    local ok, err = store:remove_tag(name)
    if ok then
      io.stdout:write("removed ", nsbuild.store.normalize_name(name), "\n")
    else
      log.error("rm: %s", err)
      code = errors.FAILED
    end
  end
  return code
end

local function cmd_prune(args)
  local opts = parse(args, 2, { ["--cache"] = true })
  local store = open_store(opts)
  local result = store:prune()
  io.stdout:write(string.format("removed %d layers, %d step records and %d blobs, %.1fM freed\n",
                                result.layers, result.steps, result.blobs, result.bytes / 1048576))
  -- The cgroups an nsbuild killed by SIGKILL left; every run removes them too.
  local stale = nsbuild.cgroup.remove_stale()
  if #stale > 0 then
    io.stdout:write(string.format("removed %d stale cgroups of nsbuild processes that no longer run\n", #stale))
  end
  return 0
end

local function cmd_du(args)
  local opts = parse(args, 2, { ["--cache"] = true })
  local store = open_store(opts)
  local usage = store:disk_usage()
  local total = 0
  for _, part in ipairs({ "layers", "downloads", "cache-mounts", "logs", "blobs", "tmp" }) do
    io.stdout:write(string.format("%-14s %9.1fM\n", part, usage[part] / 1048576))
    total = total + usage[part]
  end
  io.stdout:write(string.format("%-14s %9.1fM  %s\n", "total", total / 1048576, store.dir))
  return 0
end


-- The limits table of a policy from --memory, --pids-limit and --cpus;
-- numbers stay numbers so that the policy's validation names bad values.
local function run_limits(opts)
  local limits = {}
  if opts["--memory"] then
    limits.memory = math.tointeger(tonumber(opts["--memory"])) or opts["--memory"]
  end
  if opts["--pids-limit"] then
    limits.pids = math.tointeger(tonumber(opts["--pids-limit"])) or opts["--pids-limit"]
  end
  if opts["--cpus"] then
    limits.cpu = tonumber(opts["--cpus"]) or opts["--cpus"]
  end
  return limits
end

local function cmd_run(args)
  local spec = { ["--cache"] = true, ["--hostname"] = true, ["-e"] = true, ["-w"] = true,
                 ["--memory"] = true, ["--pids-limit"] = true, ["--cpus"] = true,
                 ["--stats"] = false, ["--network"] = true, ["-p"] = true,
                 ["-d"] = false, ["--supervised"] = true }
  for k, v in pairs(run_options.SPEC) do spec[k] = v end
  local opts, rest = parse(args, 2, spec, true)
  local run_policy = run_options.run_policy(opts, {
    limits = run_limits(opts),
    -- -p alone implies slirp: the only mode that forwards ports.
    network = opts["--network"] or (opts.ports and "slirp") or nil,
    ports = opts.ports,
  })
  local name = table.remove(rest, 1)
  if not name then
    errors.raise("run: missing IMAGE (usage: nsbuild run IMAGE [--] [COMMAND...])")
  end
  local store = open_store(opts)
  local img = store:image(name)
  if not img then
    errors.raise("run: image '%s' not found in %s; build it first (nsbuild RECIPE.lua) or see nsbuild images",
                 name, store.dir)
  end
  local config = img.config or {}
  local argv = {}
  for _, a in ipairs(config.entrypoint or {}) do argv[#argv + 1] = a end
  local cmd = #rest > 0 and rest or config.cmd or {}
  for _, a in ipairs(cmd) do argv[#argv + 1] = a end
  -- A policy's argv replaces the image's command; the command line wins over both.
  if #rest == 0 and run_policy.argv then
    argv = run_policy.argv
  end
  local user = opts["-u"] or opts["--user"] or run_policy.user or config.user
  if opts["--explain"] then
    io.stdout:write(run_options.explain(run_policy, argv, user))
    return 0
  end

  local id = live.new_id()
  -- -d: a supervisor of its own (this command line again, with
  -- --supervised) runs the container; this nsbuild returns once it runs.
  local supervised = live_cli.supervised(opts)
  if opts["-d"] and not supervised then
    return live_cli.detach(store, args, id, opts)
  end
  id = supervised and supervised.id or id
  local hostname = opts["--hostname"] or id
  -- Without -i the command reads /dev/null, as in podman.
  local stdin = not opts["-i"] and errors.check(core.open("/dev/null", { "rdonly" })) or nil
  local work, release = store:work_dir("container-" .. id)
  local ok, result, info = pcall(function()
    local upper, ovl_work, merged = work .. "/upper", work .. "/work", work .. "/merged"
    local lower = {}
    for i, layer in ipairs(img.layers) do lower[i] = store:layer_path(layer) end
    if #lower == 0 then
      lower[1] = work .. "/empty"
    end
    for _, d in ipairs({ upper, ovl_work, merged, #img.layers == 0 and lower[1] or nil }) do
      errors.check(core.mkdir(d, tonumber("755", 8)))
    end
    return nsbuild.container.run({
      rootfs = { layers = lower, upper = upper, work = ovl_work, target = merged },
      argv = argv,
      env = nsbuild.container.environment(config.env, opts.env, hostname),
      cwd = opts["-w"] or config.workdir or run_policy.cwd,
      hostname = hostname,
      policy = run_policy,
      user = user,
      tty = opts["-t"] and { input = opts["-i"] == true } or nil,
      stdin = stdin,
      seccomp_cache = store:path("seccomp"),
      on_exec = live_cli.recorder(store, id, nsbuild.store.normalize_name(name), supervised),
    })
  end)
  release(true)
  require("nsbuild.live").forget(store, id)
  if stdin then
    stdin:close()
  end
  if not ok then
    error(result, 0)
  end
  if opts["--stats"] then
    local stats = info and info.stats
    log.info("stats: %s", stats and nsbuild.cgroup.format_stats(stats) or "none (the container ran without a cgroup)")
  end
  return result
end

local function cmd_images(args)
  local opts = parse(args, 2, { ["--cache"] = true })
  local store = open_store(opts)
  io.stdout:write(string.format("%-30s %-14s %8s %10s\n", "NAME", "ID", "LAYERS", "SIZE"))
  for _, img in ipairs(store:images()) do
    local size = 0
    for _, layer in ipairs(img.layers) do
      local meta = store:layer_meta(layer)
      size = size + (meta and meta.size or 0)
    end
    io.stdout:write(string.format("%-30s %-14s %8d %9.1fM\n", img.name, (img.key or ""):sub(1, 12),
                                  #img.layers, size / 1048576))
  end
  return 0
end

local function cmd_repl()
  return require("nsbuild.repl").run(nsbuild)
end

local function dispatch(args)
  local command = args[1]
  if command == nil or command == "help" or command == "--help" or command == "-h" then
    io.stdout:write(usage)
    return command == nil and 2 or 0
  elseif command == "--version" then
    io.stdout:write("nsbuild ", nsbuild.version, "\n")
    return 0
  elseif command == "run" then
    return cmd_run(args)
  elseif command == "images" then
    return cmd_images(args)
  elseif command == "rm" then
    return cmd_rm(args)
  elseif command == "prune" then
    return cmd_prune(args)
  elseif command == "export" then
    return require("nsbuild.oci").command(args, parse, open_store)
  elseif command == "du" then
    return cmd_du(args)
  elseif command == "repl" then
    return cmd_repl()
  elseif command == "ps" or command == "exec" or command == "stop" or command == "logs" then
    return live_cli.command(args, parse, open_store)
  elseif command == "-e" or command == "script" then
    return require("nsbuild.script").command(args, nsbuild)
  end
  return cmd_build(args)
end

--- Run the command line; return the process exit code.
function M.main(args)
  local ok, result = xpcall(dispatch, function(e)
    if errors.is(e) or os.getenv("NSBUILD_TRACE") == nil then
      return e
    end
    return debug.traceback(tostring(e), 2)
  end, args)
  if ok then
    return result
  end
  local message, code = errors.describe(result)
  log.error("%s", message)
  return code
end

return M
