# What the benchmarks start from: the nsbuild images, the busybox image as OCI
# bundles for crun and runc, and a Debian minbase tarball. Sourced by
# tools/bench/run.sh.

# Print the layer ids of a tagged image in the bench cache, bottom to top.
image_layers() {
  local json=$BENCH_CACHE/images/$1:latest.json
  # The tag file is one line of JSON, and "layers" is a flat list of hex ids.
  grep -o '"layers":\[[^]]*\]' "$json" | grep -o '[0-9a-f]\{64\}'
}

# Build the recipes the benchmarks use. Once they are in the bench cache, every step is cached.
build_images() {
  ./nsbuild --cache "$BENCH_CACHE" -q recipes/busybox.lua
  # The first build fetches Debian packages (debootstrap, apt-get) and takes minutes.
  ./nsbuild --cache "$BENCH_CACHE" -q recipes/debian-dev.lua
}

# Print the cgroup path for crun's config.json. crun 1.8 takes a relative
# cgroupsPath from the root of each v1 hierarchy, where this process may not
# be. So the path is absolute: the deepest cgroup this process is in (on this
# machine the memory hierarchy's). Every other hierarchy's own cgroup must be
# above it, so that the container's cgroups are below this process's own.
crun_cgroup_parent() {
  local deepest=/ path prefix
  for path in $(cut -d: -f3 /proc/self/cgroup); do
    [ ${#path} -gt ${#deepest} ] && deepest=$path
  done
  for path in $(cut -d: -f3 /proc/self/cgroup); do
    prefix=${path%/}
    case $deepest/ in
      "$prefix"/*) ;;
      *) echo "bench: cannot place crun's cgroup below this process's cgroups $path and $deepest," \
           "which are not nested" >&2
         return 1 ;;
    esac
  done
  echo "${deepest%/}"
}

# Set the command and the cgroup of an exported bundle's config.json, the
# root given as an absolute path so that two bundles share one tree. The
# JSON is edited as text: cjson would write its empty arrays as objects.
patch_oci_config() {
  local config=$1 rootfs=$2 cgroups_path=$3
  lua5.4 - "$config" "$rootfs" "$cgroups_path" <<'EOF'
local path, rootfs, cgroups_path = arg[1], arg[2], arg[3]
local f = assert(io.open(path))
local text = f:read("a")
f:close()
local function replace(s, pattern, value)
  local out, count = s:gsub(pattern, function() return value end, 1)
  assert(count == 1, path .. ": no match for " .. pattern)
  return out
end
-- Seccomp rules have "args" too: only the one in "process" is the command.
local process = text:match('"process":%b{}')
text = replace(text, '"process":%b{}', replace(process, '"args":%b[]', '"args":["/bin/true"]'))
text = replace(text, '"root":%b{}', '"root":{"path":"' .. rootfs .. '","readonly":false}')
text = replace(text, '"linux":{', '"linux":{"cgroupsPath":"' .. cgroups_path .. '",')
f = assert(io.open(path, "w"))
f:write(text)
f:close()
EOF
}

# Export the busybox image as OCI runtime bundles for crun and runc. The root
# tree is shared, and bwrap and unshare use it too. config.json has nsbuild's
# default policy (namespaces, mounts, masked paths, capabilities, seccomp
# profile) without its init, because the runtime spec has no field for one.
make_bundles() {
  rm -rf "$BENCH_DIR/bundle-crun" "$BENCH_DIR/bundle-runc"
  ./nsbuild export --cache "$BENCH_CACHE" busybox --bundle "$BENCH_DIR/bundle-crun" 2>> "$BENCH_LOG"
  mkdir -p "$BENCH_DIR/bundle-runc"
  cp "$BENCH_DIR/bundle-crun/config.json" "$BENCH_DIR/bundle-runc/"
  rootfs=$BENCH_DIR/bundle-crun/rootfs
  crun_parent=$(crun_cgroup_parent)
  patch_oci_config "$BENCH_DIR/bundle-crun/config.json" "$rootfs" "$crun_parent/nsbuild-bench-crun"
  # runc 1.1 reads a relative cgroupsPath below its own cgroup in each hierarchy.
  patch_oci_config "$BENCH_DIR/bundle-runc/config.json" "$rootfs" "nsbuild-bench-runc"
}

# Print the directories crun will create for its cgroupsPath, deepest first:
# it makes every missing component in each hierarchy but removes only the leaf.
crun_missing_parents() {
  local parent=$1 hierarchy path
  for hierarchy in /sys/fs/cgroup/*/; do
    [ -f "${hierarchy}cgroup.procs" ] || continue
    path=$parent
    while [ -n "$path" ] && [ "$path" != / ]; do
      [ -d "$hierarchy${path#/}" ] || echo "$hierarchy${path#/}"
      path=${path%/*}
    done
  done
}

# Remove the directories crun_missing_parents listed in $crun_missing, if
# empty. run.sh calls it on exit, so that a failed run leaves none either.
remove_crun_parents() {
  local dir
  [ -f "${crun_missing:-}" ] || return 0
  while read -r dir; do
    rmdir "$dir" 2>/dev/null || true
  done < "$crun_missing"
  rm -f "$crun_missing"
}

# Write the Debian minbase tarball: the debootstrap layer of debian-dev, in
# GNU tar's gzip format. Named by the layer id, so it is made once per layer.
make_minbase_tarball() {
  local id
  id=$(image_layers debian-dev | head -n 1)
  minbase_layer=$BENCH_CACHE/layers/$id
  minbase_tarball=$BENCH_DIR/minbase-${id:0:12}.tar.gz
  if [ ! -f "$minbase_tarball" ]; then
    rm -f "$BENCH_DIR"/minbase-*.tar.gz
    tar -C "$minbase_layer" --numeric-owner -czf "$minbase_tarball.tmp" .
    mv "$minbase_tarball.tmp" "$minbase_tarball"
  fi
  minbase_sha256=$(sha256sum "$minbase_tarball" | cut -d' ' -f1)
}
