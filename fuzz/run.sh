#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS_PER_TARGET seconds
# each, and fails on the first crash, panic, leak, timeout or OOM.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 10 s, all targets)
#
# Environment:
#   FUZZ_RSS_MB    libFuzzer -rss_limit_mb (default 2048)
#   FUZZ_TIMEOUT   libFuzzer -timeout per input, seconds (default 10, and
#                  never more than SECONDS_PER_TARGET)
#   FUZZ_GRACE     seconds past SECONDS_PER_TARGET before the outer guard
#                  (coreutils timeout) kills a target's run and fails it
#                  (default 60: startup, corpus loading, the last input)
#   FUZZ_JOBS      parallel fuzzing jobs per target (default 1)
#   FUZZ_SANITIZER cargo-fuzz -s (default address; `none` builds under
#                  fuzz/target/san-none: the code under test forbids unsafe,
#                  and dst runs about 3.5x faster without ASan)
#   FUZZ_WORK      where new corpus entries go (default fuzz/target/corpus-work);
#                  the committed seeds in fuzz/corpus/ are read, never written
#
# Crash inputs land in fuzz/artifacts/<target>/; reproduce one with
#   cd fuzz && cargo +nightly fuzz run <target> artifacts/<target>/crash-...
set -euo pipefail

secs=${1:-10}
shift || true
case "$secs" in
    '' | *[!0-9]* | 0) echo "run.sh: SECONDS_PER_TARGET must be a positive integer, not '$secs'" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "run.sh: installing the nightly toolchain (cargo-fuzz needs -Zsanitizer)" >&2
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz from crates.io" >&2
    cargo install cargo-fuzz --locked
fi

rss=${FUZZ_RSS_MB:-2048}
per_input=${FUZZ_TIMEOUT:-10}
if [ "$per_input" -gt "$secs" ]; then
    per_input=$secs
fi
grace=${FUZZ_GRACE:-60}
jobs=${FUZZ_JOBS:-1}
work=${FUZZ_WORK:-$here/target/corpus-work}

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

san=${FUZZ_SANITIZER:-address}
fuzz_opts=(-O -s "$san")
if [ "$san" != address ]; then
    # Other RUSTFLAGS: keep the default build intact.
    fuzz_opts+=(--target-dir "$here/target/san-$san")
fi

if [ $# -gt 0 ]; then
    for t in "${targets[@]}"; do
        cargo +nightly fuzz build "${fuzz_opts[@]}" "$t"
    done
else
    cargo +nightly fuzz build "${fuzz_opts[@]}"
fi

status=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "corpus/$t"
    log="$work/$t.log"
    echo "== $t: ${secs}s" >&2
    extra=()
    if [ "$jobs" -gt 1 ]; then
        extra=(-jobs="$jobs" -workers="$jobs")
    fi
    # libFuzzer stops itself after -max_total_time; the outer guard makes
    # the run strictly bounded even if it does not (a hang outside an
    # input, a stuck job).
    rc=0
    timeout --kill-after=10 "$((secs + grace))" \
        cargo +nightly fuzz run "${fuzz_opts[@]}" "$t" "$work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb="$rss" -timeout="$per_input" \
        -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
        result=ok
    else
        result=FAILED
        status=1
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
            result="FAILED (killed by the outer guard after $((secs + grace)) s)"
        fi
        grep -E "panicked|ERROR|SUMMARY|Test unit written|artifact_prefix" "$log" | head -20 >&2 || true
    fi
    execs=$(grep -h "stat::number_of_executed_units" "$log" | awk '{s += $2} END {print s + 0}')
    cov=$(grep -oE "cov: [0-9]+" "$log" | tail -1 || true)
    summary+=("$t: $result, ${execs} execs in ${secs}s, ${cov:-cov: ?} (log: $log)")
done

printf '%s\n' "${summary[@]}"
exit $status
