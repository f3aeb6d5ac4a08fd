#!/bin/sh
# Fetch the pieces of the test VM into build/vm without installing them on the
# host: Debian's kernel (the version the linux-image-amd64 metapackage depends
# on) and busybox-static, each unpacked with dpkg-deb -x.
#   tools/vm/fetch.sh OUT_DIR     prints the kernel release, e.g. 6.1.0-57-amd64
set -eu

out=${1:-build/vm}
mkdir -p "$out/deb"

resolve_kernel() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}
kernel_pkg=$(resolve_kernel)
# A fresh machine has no package lists yet.
if [ -z "$kernel_pkg" ] && [ "$(id -u)" -eq 0 ]; then
  apt-get update -q >&2
  kernel_pkg=$(resolve_kernel)
fi
if [ -z "$kernel_pkg" ]; then
  echo "nsbuild: cannot resolve linux-image-amd64 to a kernel package; run apt-get update" >&2
  exit 1
fi
release=${kernel_pkg#linux-image-}

fetch() {  # fetch PACKAGE DIR: download and unpack PACKAGE into DIR once
  if [ -e "$2/.unpacked" ]; then
    return
  fi
  rm -rf "$2" "$out/deb/$1"_*.deb
  # apt-get download writes into the working directory.
  (cd "$out/deb" && apt-get download -q "$1" >&2)
  mkdir -p "$2"
  dpkg-deb -x "$out/deb/$1"_*.deb "$2"
  touch "$2/.unpacked"
}

fetch "$kernel_pkg" "$out/kernel-$release"
fetch busybox-static "$out/busybox"
echo "$release"
