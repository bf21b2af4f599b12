#!/usr/bin/env bash
# Read throughput of a 4 MiB channel over a pseudo-terminal, in one run:
# our `omv read` (host-blocking) next to the stock Python SDK's
# Camera.channel_read, both against the same `omv-sim --pty` cam.
#
# Usage: scripts/compare_read.sh [--reps N] [--size SIZE]
#   --reps N     reads per host (default 5); each is timed on its own
#   --size SIZE  channel size for omv-sim (default 4M)
# Environment:
#   PYTHON            python with openmv==1.0.7 (default: /tmp/omvenv, else
#                     the repo's .venv, created with scripts/setup-venv.sh)
#   CARGO_TARGET_DIR  honoured; release binaries are built if needed
#
# Both hosts use the stock defaults (CRC, sequence numbers, ACKs, events
# on, max payload 4096 clipped to 4082). Each read is checked against the
# channel's pattern (byte i = i % 251). Prints one line per read and a
# summary; exits 1 if a read was wrong or a host failed.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
reps=5
size=4M
while [[ $# -gt 0 ]]; do
    case "$1" in
        --reps) reps="${2:?--reps needs a number}"; shift 2 ;;
        --size) size="${2:?--size needs a size}"; shift 2 ;;
        *) echo "compare_read: unknown option $1" >&2; exit 2 ;;
    esac
done

target="${CARGO_TARGET_DIR:-$repo/target}"
echo "compare_read: building release binaries..." >&2
(cd "$repo" && cargo build -q --release -p omv-cli -p omv-sim --bin omv --bin omv-sim) || exit 2
omv="$target/release/omv"
sim="$target/release/omv-sim"

py="${PYTHON:-}"
if [[ -z "$py" ]]; then
    if [[ -x /tmp/omvenv/bin/python ]]; then
        py=/tmp/omvenv/bin/python
    else
        py="$("$here/setup-venv.sh" | tail -1)" || { echo "compare_read: no Python SDK" >&2; exit 2; }
    fi
fi

work="$(mktemp -d)"
sim_pid=""
cleanup() {
    [[ -n "$sim_pid" ]] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

"$sim" --pty --channel "bulk:$size" >"$work/sim.out" 2>"$work/sim.err" &
sim_pid=$!
for _ in $(seq 100); do
    [[ -s "$work/sim.out" ]] && break
    sleep 0.05
done
pty="$(head -1 "$work/sim.out")"
[[ -e "$pty" ]] || { echo "compare_read: omv-sim did not start: $(cat "$work/sim.err")" >&2; exit 2; }
echo "compare_read: omv-sim on $pty, channel bulk:$size, $reps reads per host" >&2

# The expected channel contents, for checking both hosts' bytes.
"$py" -c "
import sys
n = int(sys.argv[1]); open(sys.argv[2], 'wb').write(bytes(i % 251 for i in range(n)))
" "$("$py" -c "
s = '$size'.upper(); m = {'K': 1 << 10, 'M': 1 << 20}
print(int(s[:-1]) * m[s[-1]] if s[-1] in m else int(s))")" "$work/expected.bin"

fail=0
ours=()
for i in $(seq "$reps"); do
    if ! "$omv" --port "$pty" read bulk --out "$work/ours.bin" 2>"$work/omv.err"; then
        echo "omv: $(cat "$work/omv.err")"; fail=1; break
    fi
    line="$(tail -1 "$work/omv.err")"        # read N bytes from bulk in T s: R MiB/s
    secs="$(sed -E 's/.* in ([0-9.]+)s:.*/\1/' <<<"$line")"
    ok=yes; cmp -s "$work/ours.bin" "$work/expected.bin" || { ok=NO; fail=1; }
    echo "omv (Rust)  read $i: $line  correct=$ok"
    ours+=("$secs")
done

"$py" - "$pty" "$reps" "$work/expected.bin" >"$work/py.out" 2>"$work/py.err" <<'EOF'
import sys, time
from openmv.camera import Camera
port, reps, expected = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], "rb").read()
with Camera(port) as cam:
    for i in range(reps):
        t = time.perf_counter()
        d = cam.channel_read("bulk")
        dt = time.perf_counter() - t
        print(f"{dt:.6f} {len(d)} {'yes' if bytes(d) == expected else 'NO'}")
EOF
[[ $? -eq 0 ]] || { echo "python: $(tail -3 "$work/py.err")"; fail=1; }
theirs=()
i=0
while read -r secs n ok; do
    i=$((i + 1))
    [[ "$ok" == yes ]] || fail=1
    echo "stock Python read $i: read $n bytes in ${secs}s: $(awk -v n="$n" -v s="$secs" 'BEGIN{printf "%.2f MiB/s", n/s/1048576}')  correct=$ok"
    theirs+=("$secs")
done <"$work/py.out"

bytes=$(stat -c %s "$work/expected.bin")
summary() { # name secs...
    local name="$1"; shift
    [[ $# -gt 0 ]] || { echo "$name: no successful read"; return; }
    printf '%s\n' "$@" | sort -g | awk -v n="$bytes" -v name="$name" '
        { v[NR] = $1; sum += $1 }
        END { med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
              printf "%-13s median %.3fs  %8.2f MiB/s   (best %.2f MiB/s, %d reads)\n",
                     name, med, n / med / 1048576, n / v[1] / 1048576, NR }'
}
echo "== $bytes bytes over $pty"
summary "omv (Rust)" "${ours[@]}"
summary "stock Python" "${theirs[@]}"
if [[ ${#ours[@]} -gt 0 && ${#theirs[@]} -gt 0 ]]; then
    a=$(printf '%s\n' "${ours[@]}" | sort -g | awk '{v[NR]=$1} END{print (NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2}')
    b=$(printf '%s\n' "${theirs[@]}" | sort -g | awk '{v[NR]=$1} END{print (NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2}')
    awk -v a="$a" -v b="$b" 'BEGIN{printf "speed-up (median): %.1fx\n", b / a}'
fi
exit $fail
