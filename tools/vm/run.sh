#!/bin/bash
# Boot Debian's kernel under qemu on a cgroup v2 only command line and run
# cgroup specs inside (see tools/vm/init and tools/vm/stage2.sh).
#   tools/vm/run.sh [SPEC...]     default: tests/core_cgroup_spec.lua tests/cgroup_spec.lua
# Exits 0 when the specs passed in the VM, 1 when one failed, 2 when the VM
# could not run them. QEMU_TIMEOUT (seconds, default 600) bounds the run.
set -euo pipefail
cd "$(dirname "$0")/../.."

out=build/vm
release=$(tools/vm/fetch.sh "$out")
kernel_dir="$out/kernel-$release"
modules_dir="$kernel_dir/lib/modules/$release/kernel"

# The modules the VM's /init loads, each after its dependencies. The kernel
# package ships no modules.dep, so the "depends=" entry of each module's
# .modinfo section gives them.
wanted="virtio_pci 9pnet_virtio 9p overlay"
declare -A path_of=() loaded=()
while IFS= read -r ko; do
  name=$(basename "$ko" .ko)
  path_of[$name]=$ko
  path_of[${name//-/_}]=$ko
done < <(find "$modules_dir" -name '*.ko')
order=()
add_module() {
  local name=$1 dep
  [ -z "${loaded[$name]:-}" ] || return 0
  loaded[$name]=1
  [ -n "${path_of[$name]:-}" ] || { echo "nsbuild: module $name not found in $modules_dir" >&2; exit 2; }
  for dep in $(strings -a "${path_of[$name]}" | sed -n 's/^depends=//p' | tr ',' ' '); do
    add_module "$dep"
  done
  order+=("$name")
}
for m in $wanted; do add_module "$m"; done
# virtio_pci finds its optional transports only when loaded with them present.
for m in virtio_pci_modern_dev virtio_pci_legacy_dev; do
  if [ -n "${path_of[$m]:-}" ] && [ -z "${loaded[$m]:-}" ]; then
    order=("$m" "${order[@]}")
    loaded[$m]=1
  fi
done

initramfs="$out/initramfs"
rm -rf "$initramfs"
mkdir -p "$initramfs/bin" "$initramfs/modules"
cp "$out/busybox/bin/busybox" "$initramfs/bin/busybox"
cp tools/vm/init "$initramfs/init"
: > "$initramfs/modules.order"
for m in "${order[@]}"; do
  cp "${path_of[$m]}" "$initramfs/modules/$m.ko"
  echo "$m.ko" >> "$initramfs/modules.order"
done
(cd "$initramfs" && find . | cpio -o -H newc --quiet | gzip -1) > "$out/initramfs.cpio.gz"

specs=("$@")
[ ${#specs[@]} -gt 0 ] || specs=(tests/core_cgroup_spec.lua tests/cgroup_spec.lua)
spec_list=$(IFS=,; echo "${specs[*]}")
# Specs run a second time as a user in a delegated cgroup (VM_USER_SPECS,
# comma-separated; empty to skip).
user_specs=${VM_USER_SPECS-tests/cgroup_spec.lua}

started=$(date +%s)
set +e
timeout "${QEMU_TIMEOUT:-600}" qemu-system-x86_64 \
  -accel tcg -cpu max -M pc -smp 2 -m 1024 \
  -nic none -display none -no-reboot -serial stdio -monitor none \
  -kernel "$kernel_dir/boot/vmlinuz-$release" \
  -initrd "$out/initramfs.cpio.gz" \
  -append "console=ttyS0 quiet loglevel=3 panic=1 cgroup_no_v1=all nsbuild_dir=$PWD nsbuild_tests=$spec_list nsbuild_user_tests=$user_specs" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs local,path="$PWD",mount_tag=checkout,security_model=none,readonly=on,multidevs=remap \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04
status=$?
set -e
echo "nsbuild: test VM ran $(( $(date +%s) - started )) s, qemu exit status $status"

# isa-debug-exit makes qemu exit with (byte << 1) | 1; a panic or a reboot
# exits 0, which is never a pass.
case $status in
  1) exit 0 ;;
  3) echo "nsbuild: specs failed in the test VM" >&2; exit 1 ;;
  124) echo "nsbuild: the test VM timed out after ${QEMU_TIMEOUT:-600} s" >&2; exit 2 ;;
  *) echo "nsbuild: the test VM did not report a verdict (qemu exit status $status)" >&2; exit 2 ;;
esac
