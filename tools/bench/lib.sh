# Timing helpers shared by the benchmarks, sourced by tools/bench/run.sh.
# Every sample goes to $BENCH_RESULTS as "figure<TAB>contender<TAB>value", wall
# times in microseconds and peak RSS in KiB, for tools/bench/report.lua.

# Append one sample.
record() {
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$BENCH_RESULTS"
}

# Run a command with its output in $BENCH_LOG and set elapsed_us to its wall time.
# A global instead of $(...): a command substitution would fork a subshell
# around the timed command. A failing command stops the benchmark.
time_us() {
  local start=${EPOCHREALTIME/./} status=0
  "$@" < /dev/null >> "$BENCH_LOG" 2>&1 || status=$?
  elapsed_us=$(( ${EPOCHREALTIME/./} - start ))
  if [ "$status" -ne 0 ]; then
    echo "bench: '$*' failed with exit code $status (output in $BENCH_LOG)" >&2
    exit 1
  fi
}

# Contender functions start their command as "${wrap[@]}" COMMAND...: empty
# when timed, GNU time when its peak RSS is measured (time cannot run a function).
wrap=()

# Print the peak RSS in KiB of a contender function's command, as GNU time
# reports it: the largest of the process and the descendants it waited for.
peak_rss_kib() {
  local out=$BENCH_DIR/time.out
  wrap=(/usr/bin/time -f %M -o "$out")
  "$@" < /dev/null >> "$BENCH_LOG" 2>&1 || {
    echo "bench: '$*' failed (output in $BENCH_LOG)" >&2
    exit 1
  }
  wrap=()
  tail -n 1 "$out"
}

# A function run untimed before each timed run when set, to reset state
# such as an extraction directory.
before_each=""

# Time one contender function, after before_each.
time_contender() {
  if [ -n "$before_each" ]; then
    "$before_each"
  fi
  time_us "$1"
}

# interleave FIGURE RUNS NAME FUNCTION [NAME FUNCTION...]
# Run each contender once untimed to warm caches, then RUNS rounds of one
# timed run each, so that the noise of the shared machine hits all alike.
# Each round starts one contender further on: none always follows the same one.
interleave() {
  local figure=$1 runs=$2 i round first
  shift 2
  local -a names=() functions=()
  while [ $# -gt 0 ]; do
    names+=("$1")
    functions+=("$2")
    shift 2
  done
  local count=${#names[@]}

  for i in "${!functions[@]}"; do
    time_contender "${functions[$i]}"
  done
  for round in $(seq 0 $((runs - 1))); do
    first=$((round % count))
    for i in $(seq 0 $((count - 1))); do
      i=$(( (first + i) % count ))
      time_contender "${functions[$i]}"
      record "$figure" "${names[$i]}" "$elapsed_us"
    done
  done
}

# rss FIGURE RUNS NAME FUNCTION [NAME FUNCTION...]: peak RSS of each contender, interleaved.
rss() {
  local figure=$1 runs=$2 i round
  shift 2
  local -a names=() functions=()
  while [ $# -gt 0 ]; do
    names+=("$1")
    functions+=("$2")
    shift 2
  done
  for round in $(seq "$runs"); do
    for i in "${!functions[@]}"; do
      record "$figure" "${names[$i]}" "$(peak_rss_kib "${functions[$i]}")"
    done
  done
}
