#!/usr/bin/env bash
# Create (idempotently) a Python virtual environment holding the stock OpenMV
# host SDK, used as the reference implementation by the scripts beside this one.
#
# Usage: scripts/setup-venv.sh [VENV_DIR]
#   VENV_DIR defaults to .venv in the repository root.
#   Set PYTHON=/path/to/python3.x to choose the interpreter (must be >= 3.12).
#
# Installs openmv==1.0.7, pillow and numpy (numpy lets the stock SDK show
# RGB565/grayscale frames). The last line printed is the venv's python path.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
venv="${1:-$repo/.venv}"
packages=(openmv==1.0.7 pillow numpy)

log() { echo "setup-venv: $*" >&2; }

# True when "$1" runs and is CPython >= 3.12.
good_python() {
    "$1" -c 'import sys, platform
sys.exit(0 if sys.version_info >= (3, 12) and platform.python_implementation() == "CPython" else 1)' \
        >/dev/null 2>&1
}

find_python() {
    local c candidates=()
    [[ -n "${PYTHON:-}" ]] && candidates+=("$PYTHON")
    candidates+=(python3.13 python3.12 python3)
    local pyenv_root="${PYENV_ROOT:-}"
    if [[ -z "$pyenv_root" ]] && command -v pyenv >/dev/null 2>&1; then
        pyenv_root="$(pyenv root 2>/dev/null || true)"
    fi
    [[ -z "$pyenv_root" ]] && pyenv_root="$HOME/.pyenv"
    # Newest first; pyenv shims for versions not selected fail good_python.
    for c in $(ls -d "$pyenv_root"/versions/3.1[2-9]* "$pyenv_root"/versions/3.[2-9][0-9]* 2>/dev/null | sort -rV); do
        candidates+=("$c/bin/python")
    done
    candidates+=(/usr/bin/python3.13 /usr/bin/python3.12 /usr/local/bin/python3.13 /usr/local/bin/python3.12)
    for c in "${candidates[@]}"; do
        if good_python "$c"; then
            command -v "$c" 2>/dev/null || echo "$c"
            return 0
        fi
    done
    return 1
}

venv_py="$venv/bin/python"

if [[ -x "$venv_py" ]] && good_python "$venv_py"; then
    log "reusing $venv"
else
    if ! base="$(find_python)"; then
        log "error: no CPython >= 3.12 found (tried \$PYTHON, python3.13, python3.12, python3, pyenv versions 3.12+)."
        log "Install one (e.g. 'pyenv install 3.12') or set PYTHON=/path/to/python3.12."
        exit 1
    fi
    log "creating $venv with $base ($("$base" -c 'import sys; print(sys.version.split()[0])'))"
    # --clear replaces a broken or too-old venv at the same path.
    "$base" -m venv --clear "$venv"
fi

if "$venv_py" - <<'EOF' >/dev/null 2>&1
import importlib.metadata as m
import numpy, PIL, openmv  # noqa: F401
raise SystemExit(0 if m.version("openmv") == "1.0.7" else 1)
EOF
then
    log "packages already installed"
else
    log "installing ${packages[*]}"
    "$venv_py" -m pip install --quiet --disable-pip-version-check "${packages[@]}" >&2
fi

echo "$venv_py"
