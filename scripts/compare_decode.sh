#!/usr/bin/env bash
# Differential test: decode every generated stream with the stock Python host's
# parser (scripts/stock_decode.py) and with our Rust decoder
# (proto-core/examples/decode.rs), and diff the outputs.
#
# Usage: scripts/compare_decode.sh [--streams DIR] [--keep] [--chunk N]
#   --streams DIR  use (and fill) DIR instead of a temporary directory
#   --keep         keep the work directory (outputs and diffs) afterwards
#   --chunk N      feed the stock parser N bytes at a time (default 4096)
# Environment:
#   PYTHON         python with openmv==1.0.7 (default: the repo's .venv,
#                  created with scripts/setup-venv.sh when missing)
#   DECODE_CMD     command to run instead of `cargo run -q --release -p
#                  proto-core --example decode --` (word-split, then given
#                  `--input FILE`), e.g. a prebuilt binary
#   CARGO_TARGET_DIR is honoured as usual.
#
# Prints one line per stream and a summary; exits 0 when every output is
# identical, 1 on any difference or decoder failure, 2 on a setup error.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

streams=""
keep=0
chunk=4096
while [[ $# -gt 0 ]]; do
    case "$1" in
        --streams) streams="${2:?--streams needs a directory}"; shift 2 ;;
        --keep) keep=1; shift ;;
        --chunk) chunk="${2:?--chunk needs a number}"; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "compare_decode: unknown argument: $1" >&2; exit 2 ;;
    esac
done

die() { echo "compare_decode: $*" >&2; exit 2; }

# --- the reference side ---------------------------------------------------
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
    py="$repo/.venv/bin/python"
    if ! "$py" -c 'import openmv' >/dev/null 2>&1; then
        echo "compare_decode: setting up $repo/.venv" >&2
        py="$("$here/setup-venv.sh" "$repo/.venv" | tail -n 1)" || die "setup-venv.sh failed"
    fi
fi
"$py" -c 'import openmv.transport' >/dev/null 2>&1 || die "$py cannot import openmv (run scripts/setup-venv.sh)"

work="$(mktemp -d "${TMPDIR:-/tmp}/compare_decode.XXXXXX")" || die "mktemp failed"
if [[ $keep -eq 0 ]]; then
    trap 'rm -rf "$work"' EXIT
else
    echo "compare_decode: work directory $work" >&2
fi
[[ -n "$streams" ]] || streams="$work/streams"

"$py" "$here/gen_streams.py" "$streams" >/dev/null || die "gen_streams.py failed"

# --- the Rust side: build once, so per-stream runs only execute ------------
cd "$repo" || die "cannot cd to $repo"
if [[ -n "${DECODE_CMD:-}" ]]; then
    read -r -a ours_cmd <<<"$DECODE_CMD"
else
    if ! cargo build -q --release -p omv-proto --example decode; then
        die "cannot build proto-core's 'decode' example (does proto-core/examples/decode.rs exist?)"
    fi
    ours_cmd=(cargo run -q --release -p omv-proto --example decode --)
fi

total=0
same=0
failed=()
for f in "$streams"/*.bin; do
    [[ -e "$f" ]] || die "no streams in $streams"
    name="$(basename "$f" .bin)"
    total=$((total + 1))
    ref="$work/$name.stock"
    ours="$work/$name.rust"
    if ! "$py" "$here/stock_decode.py" --input "$f" --chunk "$chunk" >"$ref" 2>"$ref.err"; then
        printf '%-22s ERROR  stock_decode.py failed: %s\n' "$name" "$(tail -n 1 "$ref.err")"
        failed+=("$name")
        continue
    fi
    if ! "${ours_cmd[@]}" --input "$f" >"$ours" 2>"$ours.err"; then
        printf '%-22s ERROR  decode example failed: %s\n' "$name" "$(tail -n 1 "$ours.err")"
        failed+=("$name")
        continue
    fi
    n="$(wc -l <"$ref" | tr -d ' ')"
    if cmp -s "$ref" "$ours"; then
        same=$((same + 1))
        printf '%-22s ok     %s packets\n' "$name" "$n"
    else
        diff -u "$ref" "$ours" >"$work/$name.diff"
        printf '%-22s DIFF   stock %s packets, rust %s packets; first differences:\n' \
            "$name" "$n" "$(wc -l <"$ours" | tr -d ' ')"
        # Long hex payloads make lines huge: show the first few, truncated.
        grep -m 6 '^[-+][^-+]' "$work/$name.diff" | cut -c 1-160 | sed 's/^/    /'
        failed+=("$name")
    fi
done

echo "compare_decode: $same of $total streams identical"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "compare_decode: differing or failed: ${failed[*]}"
    [[ $keep -eq 1 ]] && echo "compare_decode: diffs are in $work"
    exit 1
fi
exit 0
