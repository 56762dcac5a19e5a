#!/usr/bin/env bash
# Build the lab image natlab-lab:latest if its inputs changed; a warm call with nothing changed builds nothing.
# The image is tagged with a hash of the base image and every file copied into it, so an unchanged tree
# is recognised without asking the builder, and a code change re-runs only the thin code layer.
set -euo pipefail
cd "$(dirname "$0")/.."
base=$(images/build-base.sh)
inputs=$( { echo "$base"; find images/Dockerfile images/bin common protocol trust server client nat attacks seedclient -type f \
            -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-12)
ref="natlab-lab:$inputs"
if ! docker image inspect "$ref" >/dev/null 2>&1; then
  echo "[natlab] building $ref on $base" >&2
  # The legacy builder: this engine has BuildKit but the CLI has no buildx. Its output only matters on failure.
  if ! out=$(DOCKER_BUILDKIT=0 docker build -q -f images/Dockerfile --build-arg "BASE=$base" -t "$ref" . 2>&1); then
    echo "$out" >&2; exit 1
  fi
fi
docker tag "$ref" natlab-lab:latest
echo "$ref"
