# Container start figures: start and exit of /bin/true in the busybox image,
# peak RSS, 50 containers at once, and the network modes. Sourced by run.sh.

# Each contender starts "${wrap[@]}" COMMAND (see lib.sh). Every one makes
# pid, mount, uts, ipc and net namespaces, and nsbuild, crun and runc also a
# cgroup. nsbuild runs with its default policy, which the OCI bundles carry
# too without the init (fixtures.sh). nsbuild-bare runs without init and seccomp.
start_nsbuild() {
  "${wrap[@]}" ./nsbuild run --cache "$BENCH_CACHE" busybox -- /bin/true
}

start_nsbuild_bare() {
  "${wrap[@]}" ./nsbuild run --cache "$BENCH_CACHE" --no-init --security-opt seccomp=unconfined \
    busybox -- /bin/true
}

start_crun() {
  "${wrap[@]}" crun --root "$BENCH_DIR/state-crun" run -b "$BENCH_DIR/bundle-crun" bench-crun
}

start_runc() {
  "${wrap[@]}" runc --root "$BENCH_DIR/state-runc" run -b "$BENCH_DIR/bundle-runc" bench-runc
}

start_bwrap() {
  "${wrap[@]}" bwrap --unshare-pid --unshare-uts --unshare-ipc --unshare-net \
    --bind "$rootfs" / --proc /proc --dev /dev /bin/true
}

start_unshare() {
  "${wrap[@]}" unshare -pfmuin --root "$rootfs" /bin/true
}

bench_start() {
  make_bundles
  crun_missing=$BENCH_DIR/crun-missing-cgroups
  crun_missing_parents "$crun_parent" > "$crun_missing"

  local -a contenders=(nsbuild start_nsbuild nsbuild-bare start_nsbuild_bare crun start_crun
                       runc start_runc bwrap start_bwrap unshare start_unshare)
  interleave start "$BENCH_STARTS" "${contenders[@]}"
  rss start-rss "$BENCH_RSS_RUNS" "${contenders[@]}"
  remove_crun_parents
}

# 50 nsbuild containers one after another, and all started at once.
many_sequential() {
  local i
  for i in $(seq 50); do
    ./nsbuild run --cache "$BENCH_CACHE" busybox -- /bin/true
  done
}

many_parallel() {
  local i pid failed=0
  local -a pids=()
  for i in $(seq 50); do
    ./nsbuild run --cache "$BENCH_CACHE" busybox -- /bin/true &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
  done
  return "$failed"
}

bench_many() {
  interleave start-50 "$BENCH_BATCHES" sequential many_sequential parallel many_parallel
}

network_none() {
  ./nsbuild run --cache "$BENCH_CACHE" --network none busybox -- /bin/true
}

network_host() {
  ./nsbuild run --cache "$BENCH_CACHE" --network host busybox -- /bin/true
}

network_slirp() {
  ./nsbuild run --cache "$BENCH_CACHE" --network slirp busybox -- /bin/true
}

bench_network() {
  interleave network "$BENCH_STARTS" none network_none host network_host slirp network_slirp
}
