# Build figures: the fully cached rebuild of recipes/debian-dev.lua against
# buildah, import of a Debian minbase tarball against bsdtar and GNU tar, and
# export of the same tree as an OCI layer against tar -czf. Sourced by run.sh.

# buildah keeps its images and cache in the bench directory, not in /var/lib/containers.
buildah_cmd() {
  buildah --root "$BENCH_DIR/buildah/storage" --runroot "$BENCH_DIR/buildah/run" \
    --storage-driver overlay "$@"
}

# Commit the minbase tarball as buildah's base image, once per tarball: the
# Containerfile's FROM then finds it locally and pulls nothing.
make_buildah_base() {
  local stamp=$BENCH_DIR/buildah/base.sha256 container
  mkdir -p "$BENCH_DIR/buildah"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$minbase_sha256" ]; then
    return 0
  fi
  container=$(buildah_cmd from scratch)
  # ADD semantics: buildah extracts a local tar archive into the container.
  buildah_cmd add "$container" "$minbase_tarball" / >> "$BENCH_LOG"
  buildah_cmd commit -q --rm "$container" localhost/nsbuild-bench-debian-base >> "$BENCH_LOG"
  echo "$minbase_sha256" > "$stamp"
}

rebuild_nsbuild() {
  ./nsbuild --cache "$BENCH_CACHE" -q recipes/debian-dev.lua
}

# chroot isolation and the host network: the first build runs apt-get, which
# needs Debian's mirror, and no OCI runtime starts (crun refuses hybrid cgroups).
rebuild_buildah() {
  buildah_cmd bud -q --layers --pull=never --isolation chroot --network host \
    -f "$PWD/tools/bench/Containerfile.debian-dev" -t nsbuild-bench-hello recipes
}

bench_rebuild() {
  make_buildah_base
  # The warm-up run of interleave builds buildah's cache the first time (minutes).
  interleave rebuild "$BENCH_REBUILDS" nsbuild rebuild_nsbuild buildah rebuild_buildah
}

# Every import starts from empty directories and an empty store.
reset_import() {
  rm -rf "${BENCH_DIR:?}"/import/*
  mkdir -p "$BENCH_DIR/import/nsbuild-core" "$BENCH_DIR/import/bsdtar" "$BENCH_DIR/import/tar"
  printf 'return from(tarball "%s"):tag "bench-minbase"\n' "$minbase_tarball" \
    > "$BENCH_DIR/import/recipe.lua"
}

# A build of from(tarball ...) into an empty store: hash, extract, commit.
import_nsbuild() {
  ./nsbuild --cache "$BENCH_DIR/import/cache" -q "$BENCH_DIR/import/recipe.lua"
}

# The same at the level of nsbuild.core: sha256 checked, then extract.
import_nsbuild_core() {
  lua5.4 tools/bench/import.lua "$minbase_tarball" "$minbase_sha256" "$BENCH_DIR/import/nsbuild-core"
}

import_bsdtar() {
  bsdtar -xpf "$minbase_tarball" -C "$BENCH_DIR/import/bsdtar"
}

import_tar() {
  tar -xzf "$minbase_tarball" -C "$BENCH_DIR/import/tar"
}

# Mount a tmpfs on dir (in run.sh's private mount namespace). Trees of 200 MB
# written to the shared disk took from 0.7 s to 5 s to extract, as the
# writeback of earlier runs throttled later ones; in memory the figures
# measure the programs, and every contender alike.
mount_scratch() {
  mkdir -p "$1"
  mount -t tmpfs -o size=4g tmpfs "$1"
}

bench_import() {
  mount_scratch "$BENCH_DIR/import"
  before_each=reset_import
  interleave import "$BENCH_IMPORTS" nsbuild import_nsbuild nsbuild-core import_nsbuild_core \
    bsdtar import_bsdtar tar import_tar
  before_each=""
  umount "$BENCH_DIR/import"
}

# Every export starts from a copy of a store holding the minbase image and
# no blob: a second export would reuse the blob of the first.
reset_export() {
  local pristine=$BENCH_DIR/export-store
  if [ ! -d "$pristine" ]; then
    reset_import
    ./nsbuild --cache "$pristine" -q "$BENCH_DIR/import/recipe.lua"
  fi
  rm -rf "${BENCH_DIR:?}"/export/*
  cp -a "$pristine" "$BENCH_DIR/export/cache"
}

export_nsbuild() {
  ./nsbuild export --cache "$BENCH_DIR/export/cache" bench-minbase --oci "$BENCH_DIR/export/layout"
}

# The layer alone at the level of nsbuild.core.
export_nsbuild_core() {
  lua5.4 tools/bench/export.lua "$minbase_layer" "$BENCH_DIR/export/layer.tar.gz"
}

export_tar() {
  tar -C "$minbase_layer" --numeric-owner -czf "$BENCH_DIR/export/tree.tar.gz" .
}

bench_export() {
  rm -rf "$BENCH_DIR/export-store"
  mount_scratch "$BENCH_DIR/export"
  before_each=reset_export
  interleave export "$BENCH_IMPORTS" nsbuild export_nsbuild nsbuild-core export_nsbuild_core \
    tar export_tar
  before_each=""
  umount "$BENCH_DIR/export"
  rm -rf "$BENCH_DIR/export" "$BENCH_DIR/export-store" "$BENCH_DIR/import"
}
