#!/bin/bash
# Run the benchmarks side by side with their peers and rewrite the results
# section of docs/benchmarks.md: per figure the median, min and max of N runs
# and the ratio to its peer. `make bench` runs it; it needs root.
#   tools/bench/run.sh [FIGURE...]   FIGURE: start many network rebuild import export
#                                    (default: all of them)
# Runs per figure: BENCH_STARTS (20), BENCH_RSS_RUNS (5), BENCH_BATCHES (3 batches
# of 50 starts), BENCH_REBUILDS (5), BENCH_IMPORTS (5, also for export).
set -euo pipefail
cd "$(dirname "$0")/../.."

# crun refuses to start on hybrid cgroups (v1 controllers beside a cgroup2
# tree). Everything runs in one private mount namespace without the cgroup2
# mount, so every contender finds the same v1 layout, and the mounts the
# fixtures make end with the namespace.
if [ -z "${BENCH_PRIVATE_NS:-}" ]; then
  exec env BENCH_PRIVATE_NS=1 unshare --mount --propagation private -- "$0" "$@"
fi
if mountpoint -q /sys/fs/cgroup/unified; then
  umount /sys/fs/cgroup/unified
fi

BENCH_DIR=$PWD/build/bench
BENCH_CACHE=$PWD/build/bench-cache
BENCH_RESULTS=$BENCH_DIR/results.tsv
BENCH_LOG=$BENCH_DIR/bench.log
BENCH_STARTS=${BENCH_STARTS:-20}
BENCH_RSS_RUNS=${BENCH_RSS_RUNS:-5}
BENCH_BATCHES=${BENCH_BATCHES:-3}
BENCH_REBUILDS=${BENCH_REBUILDS:-5}
BENCH_IMPORTS=${BENCH_IMPORTS:-5}

source tools/bench/lib.sh
source tools/bench/fixtures.sh
source tools/bench/start.sh
source tools/bench/build.sh

# The peers are not needed by make test, so they have their own list.
install_packages() {
  local missing="" package
  for package in $(grep -v '^#' tools/bench/packages); do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
      missing="$missing $package"
  done
  if [ -n "$missing" ]; then
    echo "bench: installing$missing"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
  fi
}

# Print "name<TAB>value" lines naming the machine and every program measured.
describe_machine() {
  local commit
  commit=$(git rev-parse --short HEAD)
  git diff --quiet HEAD -- core lua || commit="$commit with uncommitted changes"
  printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
  printf 'cpu\t%s\n' "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
  printf 'cores\t%s\n' "$(nproc)"
  printf 'memory\t%s MiB\n' "$(( $(awk '/^MemTotal/ { print $2 }' /proc/meminfo) / 1024 ))"
  printf 'kernel\t%s\n' "$(uname -r)"
  printf 'cgroups\tv1 (hybrid host; cgroup2 unmounted in the private namespace)\n'
  printf 'nsbuild\t%s\n' "$commit"
  printf 'crun\t%s\n' "$(crun --version | head -n 1)"
  printf 'runc\t%s\n' "$(runc --version | head -n 1)"
  printf 'bwrap\t%s\n' "$(bwrap --version)"
  printf 'unshare\t%s\n' "$(unshare --version)"
  printf 'buildah\t%s\n' "$(buildah --version)"
  printf 'bsdtar\t%s\n' "$(bsdtar --version)"
  printf 'tar\t%s\n' "$(tar --version | head -n 1)"
  printf 'slirp4netns\t%s\n' "$(slirp4netns --version | head -n 1)"
}

main() {
  local figures=("$@") figure
  trap remove_crun_parents EXIT
  [ ${#figures[@]} -gt 0 ] || figures=(start many network rebuild import export)

  install_packages
  mkdir -p "$BENCH_DIR"
  : > "$BENCH_LOG"
  : > "$BENCH_RESULTS"
  describe_machine > "$BENCH_DIR/machine.tsv"

  echo "bench: preparing the images and fixtures (the first run downloads Debian packages)"
  build_images
  make_minbase_tarball
  for figure in "${figures[@]}"; do
    echo "bench: $figure"
    "bench_$figure"
  done
  lua5.4 tools/bench/report.lua "$BENCH_RESULTS" "$BENCH_DIR/machine.tsv" docs/benchmarks.md
  echo "bench: wrote docs/benchmarks.md"
}

main "$@"
