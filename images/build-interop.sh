#!/usr/bin/env bash
# Build the interop image natlab-interop:<hash> (README "Interop") on top of the current lab image; prints its
# reference. Called by `make interop-image`, which fetches the wheels into $1 first. Tagged, like the lab image,
# with a hash of its inputs (the lab image, the Dockerfile, the pinned requirements, the wheels' names and the
# drivers), so a warm call with nothing changed builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=${1:?usage: images/build-interop.sh WHEEL_DIR}
lab=$(images/build.sh)
base=$(images/build-base.sh)
inputs=$( { echo "$lab"; ls "$wheels"; find images/Dockerfile.interop interop -type f -not -path '*/__pycache__/*' \
            -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-12)
ref="natlab-interop:$inputs"
if ! docker image inspect "$ref" >/dev/null 2>&1; then
  echo "[natlab] building $ref on $lab" >&2
  context=$(mktemp -d)
  trap 'rm -rf "$context"' EXIT
  cp -r "$wheels" "$context/wheels"
  cp interop/requirements.txt "$context/"
  cp -r interop "$context/interop" && find "$context/interop" -name __pycache__ -prune -exec rm -rf {} +
  cp images/Dockerfile.interop "$context/Dockerfile"
  if ! out=$(DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$base" --build-arg "LAB=$lab" -t "$ref" "$context" 2>&1); then
    echo "$out" >&2; exit 1
  fi
fi
echo "$ref"
