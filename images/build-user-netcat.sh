#!/usr/bin/env bash
# Build the example user image natlab-user-netcat (plain Debian + netcat-openbsd, no natlab code) if its inputs
# changed, and print its reference. Only the bring-your-own-host scenario and `make user-image` ask for it, so
# `make lab-up` never builds it. The tag hashes the base image and the Dockerfile, as images/build.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
base=$(images/build-base.sh)
inputs=$( { echo "$base"; sha256sum images/user-netcat/Dockerfile; } | sha256sum | cut -c1-12)
ref="natlab-user-netcat:$inputs"
if ! docker image inspect "$ref" >/dev/null 2>&1; then
  echo "[natlab] building $ref on $base" >&2
  if ! out=$(DOCKER_BUILDKIT=0 docker build -q -f images/user-netcat/Dockerfile --build-arg "BASE=$base" \
               -t "$ref" images/user-netcat 2>&1); then
    echo "$out" >&2; exit 1
  fi
fi
echo "$ref"
