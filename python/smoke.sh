#!/usr/bin/env bash
# Installs the omv wheel already built for PYTHON_WITH_OMV (the abi3 wheel
# from pip's cache) into a fresh venv of the system's python3 (or $PYTHON),
# then reads a channel of an in-process simulated cam: the wheel works on
# another CPython than the one it was built with.
#
# Usage: python/smoke.sh PYTHON_WITH_OMV
set -euo pipefail
built="${1:?usage: smoke.sh PYTHON_WITH_OMV}"
base="${PYTHON:-python3}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# The wheel, rebuilt from the same sources (a no-op cargo build by now).
"$built" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$tmp/dist" "$here"
"$base" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-index "$tmp"/dist/omv-*.whl
"$tmp/venv/bin/python" - <<'PY'
import sys
from omv import Camera
cam = Camera.simulated(channels={"bulk": 100_000})
with cam:
    data = cam.channel_read("bulk")
    assert data == bytes(i % 251 for i in range(100_000)), "wrong bytes"
    v = cam.version()["firmware_version"]
cam.close_simulation()
print(f"smoke: omv on Python {sys.version.split()[0]}: 100000 bytes read, firmware {v}")
PY
