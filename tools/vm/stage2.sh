#!/bin/bash
# PID 1 of the test VM after switch_root: the host's root, read-only under a
# tmpfs overlay, on a cgroup v2 only kernel. Mounts what a Linux system has,
# runs the specs named in nsbuild_tests (comma-separated, from the kernel
# command line) with busted, and reports through isa-debug-exit on port 0xf4:
# byte 0 when they pass (qemu exits 1), 1 when one fails (qemu exits 3), 2
# when the VM could not run them (qemu exits 5).
set -u

verdict() {
  printf "\\$(printf '%03o' "$1")" | dd of=/dev/port bs=1 seek=244 count=1 status=none
  # Reached only when the write did not end qemu.
  echo o > /proc/sysrq-trigger
}

fail() {
  echo "nsbuild-vm: error: $*"
  verdict 2
}

mount -t proc proc /proc || fail "mount /proc failed"
mount -t sysfs sysfs /sys || fail "mount /sys failed"
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || fail "mount cgroup2 failed"
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run

# The checkout comes as its own 9p share, because the tmpfs mounts above may
# hide it (a clone under /tmp); writable under a tmpfs overlay like the root.
mkdir -p /run/checkout/lower /run/checkout/upper /run/checkout/work "$nsbuild_dir"
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose checkout /run/checkout/lower ||
  fail "mount the checkout over 9p failed"
mount -t overlay -o lowerdir=/run/checkout/lower,upperdir=/run/checkout/upper,workdir=/run/checkout/work \
  overlay "$nsbuild_dir" || fail "mount the checkout overlay failed"
cd "$nsbuild_dir" || fail "cd $nsbuild_dir failed"
# Overlayfs takes no overlayfs as upper directory: the store's work
# directories, where containers get theirs, live on a tmpfs.
mkdir -p build/test-cache/tmp
mount -t tmpfs tmpfs build/test-cache/tmp || fail "mount tmpfs on the store's tmp failed"

# A 16 MiB RAM disk for the io limit spec: the module comes from the unpacked
# kernel package, insmod from busybox-static (the host may have no kmod).
brd=$(find "build/vm/kernel-$(uname -r)/lib/modules" -name brd.ko | head -n 1)
if [ -n "$brd" ] && build/vm/busybox/bin/busybox insmod "$brd" rd_nr=1 rd_size=16384; then
  export NSBUILD_TEST_BLOCK_DEVICE=/dev/ram0
fi

export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
echo "nsbuild-vm: kernel $(uname -r), $(nproc) cpus, cgroup controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
IFS=, read -r -a specs <<<"${nsbuild_tests:-tests/core_cgroup_spec.lua,tests/cgroup_spec.lua}"
started=$(date +%s.%N)
lua5.4 /usr/bin/busted --output=plainTerminal "${specs[@]}"
status=$?
echo "nsbuild-vm: specs as root took $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $started }") s"

# The cgroup specs again as the user nobody in a delegated subtree: the user
# owns the directory and its cgroup.procs, cgroup.subtree_control and
# cgroup.threads, and the parent offers the controllers. The specs that need
# root say pending.
if [ -n "${nsbuild_user_tests:-}" ]; then
  delegated=/sys/fs/cgroup/nsbuild-user
  user=65534
  echo "+memory +pids +cpu +io" > /sys/fs/cgroup/cgroup.subtree_control || fail "enable controllers at the root failed"
  mkdir "$delegated" || fail "mkdir $delegated failed"
  chown "$user:$user" "$delegated" "$delegated"/cgroup.{procs,subtree_control,threads} || fail "chown $delegated failed"
  IFS=, read -r -a user_specs <<<"$nsbuild_user_tests"
  started=$(date +%s.%N)
  # The subshell moves itself into the delegated cgroup, then becomes the user.
  (
    echo "$BASHPID" > "$delegated/cgroup.procs" &&
    exec setpriv --reuid="$user" --regid="$user" --clear-groups \
      env -u NSBUILD_TEST_BLOCK_DEVICE HOME=/tmp lua5.4 /usr/bin/busted --output=plainTerminal "${user_specs[@]}"
  )
  user_status=$?
  echo "nsbuild-vm: specs as user $user took $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $started }") s"
  # What may stay: the empty leaf the user's process moved itself into.
  left=$(find "$delegated" -mindepth 1 -type d ! -name 'nsbuild-*-self')
  if [ -n "$left" ]; then
    echo "nsbuild-vm: cgroups left behind by the user's specs: $left"
    user_status=1
  fi
  [ "$user_status" -eq 0 ] || status=1
fi

if [ "$status" -eq 0 ]; then
  verdict 0
fi
verdict 1
