#!/usr/bin/env bash
# Build the natlab base image (Debian bookworm + the packages in base-packages.txt) without a registry.
# Prints the base image reference. The tag is a hash of the package list, so the bootstrap re-runs only
# when that list changes. If debian:bookworm-slim is already in the local engine, it is used as the root;
# otherwise the root file system is bootstrapped from the host's own apt sources with mmdebstrap.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
packages=$(grep -v '^\s*#' "$here/base-packages.txt" | grep -v '^\s*$' | sort | paste -sd, -)
tag=$(printf '%s\n%s\n' "$packages" "$(cat "$here/Dockerfile.slim")" | sha256sum | cut -c1-12)
ref="natlab-base:$tag"

if docker image inspect "$ref" >/dev/null 2>&1; then
  echo "$ref"; exit 0
fi

log() { printf '[natlab] %s\n' "$*" >&2; }
if docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  log "building $ref from the local debian:bookworm-slim"
  docker build -q -f "$here/Dockerfile.slim" --build-arg "PACKAGES=${packages//,/ }" \
    --label natlab=base -t "$ref" "$here" >&2
else
  if ! command -v mmdebstrap >/dev/null; then
    log "installing mmdebstrap (no debian:bookworm-slim here and no registry to pull it from)"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >&2
  fi
  sources=$(ls /etc/apt/sources.list.d/debian.sources 2>/dev/null || echo /etc/apt/sources.list)
  log "bootstrapping $ref with mmdebstrap from $sources (about 20 s)"
  mmdebstrap --quiet --variant=minbase --include="$packages" \
    --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
    bookworm - "$sources" \
    | docker import --change 'LABEL natlab=base' --change 'CMD ["/bin/bash"]' - "$ref" >&2
fi
echo "$ref"
