#!/usr/bin/env bash
# Transfers on a hostile link, one or more `omv` binaries side by side:
# a 1 MiB read and a 1 MiB write (read back and compared) against
# `omv-sim --pty --drop-rate 0.2 --rx-drop-rate 0.05 --corrupt-rate 0.02`,
# and a clean-link 4 MiB read, each at the default options.
#
# Usage: scripts/hostile_link.sh [NAME=OMV_BINARY ...]
#   default: "now=$CARGO_TARGET_DIR/release/omv" (built if needed)
# Environment: SIM (omv-sim binary), LIMIT (seconds per transfer, default 120),
#   SEED (fault seed, default 1).
# Prints one line per host and case: ok/FAILED, correct, wall seconds of the
# whole command (connect included), and omv's own last stderr line (for
# reads: the transfer's time and rate; for failures: the error).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
limit="${LIMIT:-120}"
seed="${SEED:-1}"
hosts=("$@")
if [[ ${#hosts[@]} -eq 0 ]]; then
    (cd "$repo" && cargo build -q --release -p omv-cli -p omv-sim --bin omv --bin omv-sim) || exit 2
    hosts=("now=$target/release/omv")
fi
sim="${SIM:-$target/release/omv-sim}"
work="$(mktemp -d)"
sim_pid=""
stop_sim() { [[ -n "$sim_pid" ]] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null; sim_pid=""; }
trap 'stop_sim; rm -rf "$work"' EXIT

start_sim() { # args for omv-sim
    "$sim" --pty --seed "$seed" "$@" >"$work/sim.out" 2>"$work/sim.err" &
    sim_pid=$!
    for _ in $(seq 100); do [[ -s "$work/sim.out" ]] && break; sleep 0.05; done
    pty="$(head -1 "$work/sim.out")"
}
pattern() { python3 -c "import sys; n=int(sys.argv[1]); sys.stdout.buffer.write(bytes(i % 251 for i in range(n)))" "$1"; }
pattern $((1 << 20)) >"$work/p1.bin"
pattern $((4 << 20)) >"$work/p4.bin"
head -c $((1 << 20)) /dev/urandom >"$work/w.bin"
now() { date +%s.%N; }
run() { # name label expected-file omv-args...
    local name="$1" label="$2" exp="$3"; shift 3
    local t0 t1 rc ok
    t0=$(now)
    timeout "$limit" "$@" >"$work/out.txt" 2>"$work/err.txt"; rc=$?
    t1=$(now)
    ok=-
    if [[ -n "$exp" && $rc -eq 0 ]]; then cmp -s "$work/got.bin" "$exp" && ok=yes || ok=NO; fi
    printf '%-8s %-22s %-7s correct=%-3s %6.2fs  %s\n' "$name" "$label" \
        "$([[ $rc -eq 0 ]] && echo ok || echo "FAILED")" "$ok" \
        "$(echo "$t1 - $t0" | bc)" "$(tail -1 "$work/err.txt" | sed 's/^read [0-9]* bytes from bulk in //')"
}
faults=(--drop-rate 0.2 --rx-drop-rate 0.05 --corrupt-rate 0.02)
for h in "${hosts[@]}"; do
    name="${h%%=*}"; omv="${h#*=}"
    start_sim "${faults[@]}" --channel bulk:1M
    run "$name" "heavy read 1 MiB" "$work/p1.bin" "$omv" --port "$pty" read bulk --out "$work/got.bin"
    stop_sim
    start_sim "${faults[@]}" --channel bulk:1M
    run "$name" "heavy write 1 MiB" "" "$omv" --port "$pty" write bulk --file "$work/w.bin"
    wrc=$?
    run "$name" "  (read back)" "$work/w.bin" "$omv" --port "$pty" read bulk --out "$work/got.bin"
    stop_sim
    start_sim --channel bulk:4M
    for i in 1 2 3; do
        run "$name" "clean read 4 MiB #$i" "$work/p4.bin" "$omv" --port "$pty" read bulk --out "$work/got.bin"
    done
    stop_sim
done
