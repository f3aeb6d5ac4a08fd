-- Summarise the samples of tools/bench/run.sh into the results section of
-- docs/benchmarks.md: the part between the two marker lines is replaced, the
-- hand-written text around it (profiles, findings) is kept.
--   lua5.4 tools/bench/report.lua RESULTS.tsv MACHINE.tsv docs/benchmarks.md

local results_path, machine_path, doc_path = arg[1], arg[2], arg[3]

local BEGIN = "<!-- results: written by make bench (tools/bench/report.lua) -->"
local END = "<!-- end of results -->"

-- Each figure: the samples' name in results.tsv, how to show them, and the
-- contender the ratio column divides by.
local figures = {
  { id = "start", title = "Start and exit of /bin/true in the busybox image", unit = "ms",
    reference = "unshare",
    about = "Each contender makes pid, mount, uts, ipc and net namespaces, and nsbuild, crun "
      .. "and runc also a cgroup. crun and runc run the bundle of `nsbuild export --bundle`: nsbuild's default "
      .. "policy (mounts, masked paths, capabilities, seccomp profile) without its init. "
      .. "nsbuild-bare is `nsbuild run --no-init --security-opt seccomp=unconfined`; bwrap and "
      .. "unshare mount only /proc (and bwrap /dev) and filter no system call." },
  { id = "start-rss", title = "Peak RSS of the same starts (GNU time, %M)", unit = "MiB",
    reference = "unshare",
    about = "The largest RSS among the process and the children it waited for. For nsbuild "
      .. "that is the supervisor or its fork before exec, which shares its pages." },
  { id = "start-50", title = "50 nsbuild containers: one after another, all at once", unit = "ms",
    reference = "sequential", about = "Wall time of the whole batch." },
  { id = "network", title = "nsbuild start by network mode", unit = "ms", reference = "none",
    about = "`nsbuild run --network MODE busybox -- /bin/true`." },
  { id = "rebuild", title = "Fully cached rebuild of recipes/debian-dev.lua", unit = "ms",
    reference = "buildah",
    about = "buildah: `buildah bud --layers` of tools/bench/Containerfile.debian-dev, its base "
      .. "committed from the minbase tarball." },
  { id = "import", title = "Import of the Debian minbase tar.gz", unit = "ms", reference = "bsdtar",
    about = "nsbuild: a `from(tarball ...)` recipe built into an empty store (hash, extract, "
      .. "commit); nsbuild-core: `core.sha256_file` checked, then `core.extract` "
      .. "(tools/bench/import.lua); `bsdtar -xpf`; `tar -xzf`. Every tree is written to a tmpfs, "
      .. "so that the writeback of the shared disk does not decide the figure." },
  { id = "export", title = "Export of the same tree as a gzip layer", unit = "ms", reference = "tar",
    about = "nsbuild: `nsbuild export IMAGE --oci DIR` of the image the import built, from a "
      .. "store without its blob (layer tar, config, manifest, the blob copied into the layout "
      .. "and verified); nsbuild-core: `core.layer_tar` alone, both digests computed while "
      .. "writing (tools/bench/export.lua); `tar -czf` of the same tree. Outputs go to a tmpfs." },
}

-- Targets: subject's median at most factor times the reference's, or at most limit.
local targets = {
  { figure = "start", subject = "nsbuild", reference = "bwrap", factor = 1, text = "start at most bwrap's" },
  { figure = "start", subject = "nsbuild-bare", reference = "bwrap", factor = 1, text = "start at most bwrap's" },
  { figure = "start", subject = "nsbuild", reference = "crun", factor = 0.5, text = "start at most half of crun's" },
  { figure = "start", subject = "nsbuild-bare", reference = "crun", factor = 0.5, text = "start at most half of crun's" },
  { figure = "start", subject = "nsbuild", reference = "unshare", factor = 1.3, text = "start within 1.3× of unshare" },
  { figure = "start", subject = "nsbuild-bare", reference = "unshare", factor = 1.3, text = "start within 1.3× of unshare" },
  { figure = "start-rss", subject = "nsbuild", limit = 2, text = "peak RSS at most 2 MiB" },
  { figure = "rebuild", subject = "nsbuild", limit = 100, text = "cached rebuild under 100 ms" },
  { figure = "rebuild", subject = "nsbuild", reference = "buildah", factor = 1 / 20,
    text = "cached rebuild at least 20× faster than buildah" },
  { figure = "import", subject = "nsbuild", reference = "bsdtar", factor = 1, text = "import at most bsdtar's" },
  { figure = "import", subject = "nsbuild-core", reference = "bsdtar", factor = 1, text = "import at most bsdtar's" },
  { figure = "export", subject = "nsbuild", reference = "tar", factor = 1, text = "export at most tar -czf's" },
  { figure = "export", subject = "nsbuild-core", reference = "tar", factor = 1, text = "export at most tar -czf's" },
}

local function read_lines(path)
  local f = assert(io.open(path))
  local lines = {}
  for line in f:lines() do lines[#lines + 1] = line end
  f:close()
  return lines
end

-- Samples by figure and contender, contenders in order of first appearance.
local function load_samples()
  local samples, order = {}, {}
  for _, line in ipairs(read_lines(results_path)) do
    local figure, name, value = line:match("^([^\t]+)\t([^\t]+)\t(%d+)$")
    if figure then
      if not samples[figure] then
        samples[figure], order[figure] = {}, {}
      end
      if not samples[figure][name] then
        samples[figure][name] = {}
        table.insert(order[figure], name)
      end
      table.insert(samples[figure][name], tonumber(value))
    end
  end
  return samples, order
end

local function summarise(values)
  table.sort(values)
  local n = #values
  local median = n % 2 == 1 and values[(n + 1) // 2] or (values[n // 2] + values[n // 2 + 1]) / 2
  return { median = median, min = values[1], max = values[n], n = n }
end

-- Format a sample of microseconds or KiB in ms or MiB.
local function show(value, unit)
  local v = value / 1024
  if unit == "ms" then
    v = value / 1000
  end
  if v >= 100 then
    return string.format("%.0f", v)
  end
  return string.format("%.2f", v)
end

local function figure_table(out, figure, stats, order)
  local ref = stats[figure.reference]
  out[#out + 1] = string.format("### %s\n\n%s\n", figure.title, figure.about)
  out[#out + 1] = string.format("| contender | median %s | min | max | runs | × %s |",
                                figure.unit, figure.reference)
  out[#out + 1] = "|---|---:|---:|---:|---:|---:|"
  for _, name in ipairs(order) do
    local s = stats[name]
    local ratio = ref and string.format("%.3g", s.median / ref.median) or "–"
    out[#out + 1] = string.format("| %s | %s | %s | %s | %d | %s |", name, show(s.median, figure.unit),
                                  show(s.min, figure.unit), show(s.max, figure.unit), s.n, ratio)
  end
  out[#out + 1] = ""
end

local function target_rows(out, stats_by_figure, units)
  out[#out + 1] = "### Targets\n"
  out[#out + 1] = "| target | contender | measured (medians) | met |"
  out[#out + 1] = "|---|---|---|---|"
  for _, t in ipairs(targets) do
    local stats = stats_by_figure[t.figure]
    local subject = stats and stats[t.subject]
    local unit = units[t.figure]
    if subject then
      local measured, met
      if t.limit then
        measured = show(subject.median, unit) .. " " .. unit
        met = subject.median / (unit == "ms" and 1000 or 1024) <= t.limit
      elseif stats[t.reference] then
        local ratio = subject.median / stats[t.reference].median
        measured = string.format("%s vs %s %s: %.3g×", show(subject.median, unit), t.reference,
                                 show(stats[t.reference].median, unit), ratio)
        met = ratio <= t.factor
      end
      if measured then
        out[#out + 1] = string.format("| %s | %s | %s | %s |", t.text, t.subject, measured,
                                      met and "met" or "**missed**")
      end
    end
  end
  out[#out + 1] = ""
end

local function results_section()
  local samples, order = load_samples()
  local out = { BEGIN, "" }
  out[#out + 1] = "| machine | |"
  out[#out + 1] = "|---|---|"
  for _, line in ipairs(read_lines(machine_path)) do
    local name, value = line:match("^([^\t]+)\t(.*)$")
    if name then
      out[#out + 1] = string.format("| %s | %s |", name, value)
    end
  end
  out[#out + 1] = ""

  local stats_by_figure, units = {}, {}
  for _, figure in ipairs(figures) do
    if samples[figure.id] then
      local stats = {}
      for name, values in pairs(samples[figure.id]) do
        stats[name] = summarise(values)
      end
      stats_by_figure[figure.id], units[figure.id] = stats, figure.unit
      figure_table(out, figure, stats, order[figure.id])
    end
  end
  target_rows(out, stats_by_figure, units)
  out[#out + 1] = END
  return table.concat(out, "\n")
end

-- Replace the marked section of the document, or start the document with it.
local function rewrite(doc, section)
  local f = io.open(doc)
  local text = f and f:read("a") or "# Benchmarks\n\n" .. BEGIN .. "\n" .. END .. "\n"
  if f then f:close() end
  local first = text:find(BEGIN, 1, true)
  local _, last = text:find(END, 1, true)
  if not first or not last then
    error(doc .. ": the markers of the results section are missing; restore them:\n"
          .. BEGIN .. "\n" .. END, 0)
  end
  text = text:sub(1, first - 1) .. section .. text:sub(last + 1)
  local tmp = doc .. ".tmp"
  local w = assert(io.open(tmp, "w"))
  w:write(text)
  w:close()
  assert(os.rename(tmp, doc))
end

rewrite(doc_path, results_section())
