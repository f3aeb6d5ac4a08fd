#!/bin/bash
# Print the start cost of each network mode: wall time of `nsbuild run IMAGE -- true`,
# median and mean over N runs, and the extra cost of slirp over none.
#   tools/net-start-cost.sh [N] [CACHE]     (default: 20 runs, build/test-cache)
# Needs the busybox image in CACHE: ./nsbuild --cache CACHE recipes/busybox.lua
# A rough number for comparing changes on one machine, not a benchmark.
set -eu

runs=${1:-20}
cache=${2:-build/test-cache}
nsbuild=${NSBUILD:-./nsbuild}

# Print the wall time of one run in microseconds.
time_run() {
  local start end
  start=$(date +%s%N)
  "$nsbuild" run --cache "$cache" --network "$1" busybox -- true
  end=$(date +%s%N)
  echo $(( (end - start) / 1000 ))
}

# Print "median mean" in milliseconds of the numbers on stdin (microseconds).
summarize() {
  sort -n | awk '{ v[NR] = $1; sum += $1 }
    END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          printf "%.1f %.1f\n", m / 1000, sum / NR / 1000 }'
}

"$nsbuild" run --cache "$cache" busybox -- true || {
  echo "net-start-cost: cannot run the busybox image from $cache; build it first:" >&2
  echo "  $nsbuild --cache $cache recipes/busybox.lua" >&2
  exit 1
}

declare -A median mean
for mode in none host slirp; do
  # One warm-up run per mode keeps cold caches out of the numbers.
  time_run "$mode" > /dev/null
  read -r median[$mode] mean[$mode] < <(for _ in $(seq "$runs"); do time_run "$mode"; done | summarize)
done

printf "%-6s %10s %10s   (%d runs each, %s)\n" mode "median ms" "mean ms" "$runs" "$(uname -r)"
for mode in none host slirp; do
  printf "%-6s %10s %10s\n" "$mode" "${median[$mode]}" "${mean[$mode]}"
done
awk -v s="${median[slirp]}" -v n="${median[none]}" \
  'BEGIN { printf "slirp costs %.1f ms more than none at the median\n", s - n }'
