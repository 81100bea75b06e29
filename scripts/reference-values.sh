#!/usr/bin/env bash
# Regenerates the numpy/scipy/statsmodels reference values the parity tests compare with
# (udfs/tests/fixtures/*.json), in a virtualenv with the pinned versions.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

requirements=udfs/tests/reference/requirements.txt
venv=${OPSLOOP_REFERENCE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/opsloop/py-reference}
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$stamp"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r "$requirements"
    cp "$requirements" "$stamp"
fi
"$venv/bin/python" udfs/tests/reference/generate.py
