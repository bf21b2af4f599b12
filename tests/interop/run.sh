#!/usr/bin/env bash
# Interop test entry point: builds omv-sim (release) and drives it with the
# stock OpenMV Python SDK (openmv==1.0.7) through a pseudo-terminal.
#
# Usage: tests/interop/run.sh [VENV_PYTHON]
#   VENV_PYTHON: a python with openmv 1.0.7, pillow and numpy; when omitted,
#   scripts/setup-venv.sh creates (or reuses) .venv and its python is used.
# Extra arguments after VENV_PYTHON go to stock_sdk.py (e.g. -v).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

if [[ $# -ge 1 ]]; then
    py="$1"
    shift
else
    py="$(bash scripts/setup-venv.sh | tail -n 1)"
fi

echo "interop: building omv-sim (release)" >&2
cargo build --release -p omv-sim --bin omv-sim >&2
target_dir="$(cargo metadata --format-version 1 --no-deps \
    | "$py" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
sim="$target_dir/release/omv-sim"

echo "interop: $py tests/interop/stock_sdk.py $sim" >&2
# A hard limit so a hung run cannot eat CI's time (it normally takes ~10 s after the build).
timeout --kill-after=10 300 "$py" "$here/stock_sdk.py" "$sim" "$@"
