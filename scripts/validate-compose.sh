#!/usr/bin/env bash
# Validates docker-compose.yml without a Docker engine, with the docker-compose Python package.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=${OPSLOOP_COMPOSE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/opsloop/compose-venv}
if [ ! -x "$venv/bin/docker-compose" ]; then
    python3 -m venv "$venv"
    # Later PyYAML 5.x releases fail to build; docker-compose 1.29.2 accepts 5.3.1.
    "$venv/bin/pip" install -q PyYAML==5.3.1
    "$venv/bin/pip" install -q docker-compose==1.29.2
fi
"$venv/bin/docker-compose" -f docker-compose.yml config --quiet
echo "docker-compose.yml is valid"
