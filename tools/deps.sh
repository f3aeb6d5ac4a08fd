#!/bin/sh
# Install the Debian packages nsbuild needs to build, test and run, when any is missing.
#   tools/deps.sh check     exit 1 when a package is missing, install nothing
#   tools/deps.sh install   install the missing packages with apt-get (needs root)
set -eu

packages="
  gcc make pkg-config
  lua5.4 liblua5.4-dev lua-cjson lua-busted
  libcap-dev libarchive-dev libseccomp-dev libssl-dev libedit-dev
  zlib1g-dev libzstd-dev
  apt util-linux iproute2 procps tmux
  binutils xz-utils zstd bzip2 libcap2-bin attr
  debootstrap
  slirp4netns uidmap
  umoci skopeo podman runc crun docker-registry
  qemu-system-x86 cpio
"

missing=""
for p in $packages; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$status" in
    *"install ok installed"*) ;;
    *) missing="$missing $p" ;;
  esac
done

case "${1:-install}" in
  check)
    [ -z "$missing" ] || { echo "nsbuild: missing Debian packages:$missing (run: make deps)" >&2; exit 1; }
    ;;
  install)
    [ -n "$missing" ] || exit 0
    if [ "$(id -u)" -ne 0 ]; then
      echo "nsbuild: missing Debian packages:$missing; run 'make deps' as root" >&2
      exit 1
    fi
    echo "nsbuild: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine has no package lists yet, and old lists may name files the mirror dropped.
    apt-get update -q
    apt-get install -y -q --no-install-recommends $missing
    ;;
  *)
    echo "usage: $0 check|install" >&2
    exit 2
    ;;
esac
