#!/usr/bin/env bash
# Reads and writes of a 1 MiB channel on clean and faulty links, in one run:
# our `omv` next to the stock Python SDK (openmv==1.0.7), each against its
# own `omv-sim --pty` started with the same seed and the same faults.
#
# Usage: scripts/compare_faults.sh [--size SIZE] [--limit SECS] [--seed N] [--case NAME]...
#   --size SIZE   channel size and transfer size (default 1M)
#   --limit SECS  wall-clock limit per operation (default 120); an
#                 operation past it counts as failed
#   --seed N      omv-sim's --seed (default 7)
#   --case NAME   run only this case (repeatable): clean, drop2, heavy, latency20
# Environment:
#   PYTHON            python with openmv==1.0.7 (default: the repo's .venv,
#                     created with scripts/setup-venv.sh)
#   CARGO_TARGET_DIR  honoured; release binaries are built if needed
#
# Both hosts run at their default options. Per case and host: the read
# (checked against the channel's pattern, byte i = i % 251), then the write
# of a different pattern, checked by reading the channel back (on the same
# faulty link; "unverified" when that read fails). omv's times include
# starting the process and the handshake; the stock SDK's the call only.
# Prints one table row per
# case and host: success, correctness and time. Exit status 0 (the table is
# the result; a failing host is a finding, not a script error), 2 when the
# script itself could not run.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
size=1M
limit=120
seed=7
cases=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --size) size="${2:?--size needs a size}"; shift 2 ;;
        --limit) limit="${2:?--limit needs seconds}"; shift 2 ;;
        --seed) seed="${2:?--seed needs a number}"; shift 2 ;;
        --case) cases+=("${2:?--case needs a name}"); shift 2 ;;
        *) echo "compare_faults: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ ${#cases[@]} -gt 0 ]] || cases=(clean drop2 heavy latency20)

faults_of() {
    case "$1" in
        clean) echo "" ;;
        drop2) echo "--drop-rate 0.02" ;;
        heavy) echo "--drop-rate 0.2 --rx-drop-rate 0.05 --corrupt-rate 0.02" ;;
        latency20) echo "--latency-ms 20" ;;
        *) echo "compare_faults: unknown case $1" >&2; exit 2 ;;
    esac
}

target="${CARGO_TARGET_DIR:-$repo/target}"
echo "compare_faults: building release binaries..." >&2
(cd "$repo" && cargo build -q --release -p omv-cli -p omv-sim --bin omv --bin omv-sim) || exit 2
omv="$target/release/omv"
sim="$target/release/omv-sim"

py="${PYTHON:-}"
if [[ -z "$py" ]]; then
    py="$("$here/setup-venv.sh" "$repo/.venv" | tail -1)" || { echo "compare_faults: no Python SDK" >&2; exit 2; }
fi

work="$(mktemp -d)"
sim_pid=""
stop_sim() {
    if [[ -n "$sim_pid" ]]; then
        kill "$sim_pid" 2>/dev/null
        wait "$sim_pid" 2>/dev/null
        sim_pid=""
    fi
}
cleanup() { stop_sim; rm -rf "$work"; }
trap cleanup EXIT

bytes="$("$py" -c "
s = '$size'.upper(); m = {'K': 1 << 10, 'M': 1 << 20}
print(int(s[:-1]) * m[s[-1]] if s[-1] in m else int(s))")"
"$py" -c "
import sys
n = int(sys.argv[1])
open(sys.argv[2], 'wb').write(bytes(i % 251 for i in range(n)))
open(sys.argv[3], 'wb').write(bytes((i * 7 + 3) % 253 for i in range(n)))
" "$bytes" "$work/expected.bin" "$work/written.bin"

# Starts omv-sim with the case's faults; sets $pty.
start_sim() {
    rm -f "$work/sim.out"
    # shellcheck disable=SC2046
    "$sim" --pty --channel "bulk:$size" --seed "$seed" $(faults_of "$1") >"$work/sim.out" 2>"$work/sim.err" &
    sim_pid=$!
    for _ in $(seq 100); do
        [[ -s "$work/sim.out" ]] && break
        sleep 0.05
    done
    pty="$(head -1 "$work/sim.out")"
    [[ -e "$pty" ]] || { echo "compare_faults: omv-sim did not start: $(cat "$work/sim.err")" >&2; exit 2; }
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b - a}'; }

row() { # case host read_ok read_correct read_s write_ok write_correct write_s note
    printf '| %-9s | %-12s | %-4s | %-7s | %7s | %-5s | %-10s | %7s | %s |\n' "$@"
}

# One case with omv.
run_omv() {
    local c="$1" t0 t1 rok=no rcor=- rs wok=no wcor=- ws note=""
    start_sim "$c"
    t0=$(now)
    if timeout "$limit" "$omv" --port "$pty" read bulk --out "$work/ours.bin" 2>"$work/omv.err"; then
        rok=yes; cmp -s "$work/ours.bin" "$work/expected.bin" && rcor=yes || rcor=NO
    else
        note="read: $(tail -1 "$work/omv.err" | cut -c1-70)"
    fi
    t1=$(now); rs=$(elapsed "$t0" "$t1")
    t0=$(now)
    if timeout "$limit" "$omv" --port "$pty" write bulk --file "$work/written.bin" 2>"$work/omv.err" >/dev/null; then
        wok=yes
        t1=$(now)
        if timeout "$limit" "$omv" --port "$pty" read bulk --out "$work/back.bin" 2>/dev/null; then
            cmp -s "$work/back.bin" "$work/written.bin" && wcor=yes || wcor=NO
        else
            wcor=unverified
        fi
    else
        t1=$(now)
        note="$note write: $(tail -1 "$work/omv.err" | cut -c1-70)"
    fi
    ws=$(elapsed "$t0" "$t1")
    stop_sim
    row "$c" "omv" "$rok" "$rcor" "$rs" "$wok" "$wcor" "$ws" "$note"
}

# One case with the stock SDK: one connection, read, write, read back.
run_stock() {
    local c="$1" out
    start_sim "$c"
    timeout "$((limit * 3 + 30))" "$py" - "$pty" "$work/expected.bin" "$work/written.bin" "$limit" \
        >"$work/py.out" 2>"$work/py.err" <<'EOF'
import signal, sys, time
from openmv.camera import Camera
port, expected, written, limit = sys.argv[1], open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read(), int(sys.argv[4])

class Limit(Exception):
    pass

def on_alarm(*_):
    raise Limit("over the time limit")

signal.signal(signal.SIGALRM, on_alarm)

def timed(f):
    signal.alarm(limit)
    t = time.perf_counter()
    try:
        return f(), time.perf_counter() - t, ""
    except BaseException as e:  # the stock SDK calls sys.exit on some errors
        return None, time.perf_counter() - t, f"{type(e).__name__}: {e}"[:70]
    finally:
        signal.alarm(0)

res = {}
try:
    cam, _, err = timed(lambda: Camera(port).__enter__())
except BaseException as e:
    cam, err = None, str(e)
if cam is None:
    print(f"no no - - no - - connect: {err}")
    sys.exit(0)
d, rs, rerr = timed(lambda: cam.channel_read("bulk"))
rok = "yes" if d is not None else "no"
rcor = ("yes" if bytes(d) == expected else "NO") if d is not None else "-"
w, ws, werr = timed(lambda: cam.channel_write("bulk", written))
wok = "yes" if w is not None and werr == "" else "no"
wcor = "-"
if wok == "yes":
    b, _, _ = timed(lambda: cam.channel_read("bulk"))
    wcor = ("yes" if bytes(b) == written else "NO") if b is not None else "unverified"
note = " ".join(x for x in (f"read: {rerr}" if rerr else "", f"write: {werr}" if werr else "") if x)
print(rok, rcor, f"{rs:.2f}", wok, wcor, f"{ws:.2f}", note)
EOF
    if [[ -s "$work/py.out" ]]; then
        read -r rok rcor rs wok wcor ws note <"$work/py.out"
        row "$c" "stock SDK" "$rok" "$rcor" "$rs" "$wok" "$wcor" "$ws" "$note"
    else
        row "$c" "stock SDK" "no" "-" "-" "no" "-" "-" "python: $(tail -1 "$work/py.err" | cut -c1-70)"
    fi
    stop_sim
}

echo "== $bytes-byte read and write per host, omv-sim --pty --seed $seed, limit ${limit}s per operation"
row case host read correct "read s" write correct "write s" note
row --------- ------------ ---- ------- ------- ----- ---------- ------- ----
for c in "${cases[@]}"; do
    faults_of "$c" >/dev/null || exit 2
    run_omv "$c"
    run_stock "$c"
done
exit 0
