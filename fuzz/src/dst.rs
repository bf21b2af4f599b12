//! `dst`: the deterministic simulator of `omv-tests` (`omv_tests::dst`),
//! driven by the fuzz input instead of a seed.
//!
//! The whole stack runs: a proto-core host against a cam carrying the real
//! sim-device backends (stdin with a script runner, stdout, lockable user
//! buffers), over a faulty serial link on a virtual clock, with cam stalls,
//! silent protocol resets and reboots, under the DST's model and invariants
//! (`tests/README.md`).
//!
//! Structure-aware decoding: the input is not parsed up front. The DST's
//! `Dice::from_bytes` decodes it draw by draw, in the order the run makes
//! its decisions, each draw a typed choice taking the next bytes (like
//! `arbitrary::Unstructured`): the scenario first (link timing, host and
//! cam configuration, user channels, fault rates, phases), then, op by op,
//! cam activity, the operation kind and its channel, offset, size and
//! arguments, and per packet whether it is dropped, flipped (which bit),
//! duplicated, truncated (where), delayed (how long), preceded by garbage or
//! split (where). One changed byte changes the decisions from that byte on
//! only; when the input runs out a constant-seed generator finishes the
//! run, so every input is a complete run (an empty input too).
//!
//! Bounded: the number of operations is fixed by the scenario (2 to 4
//! phases of at most 25 + 6 operations) whatever the input length, and every
//! request is bounded by its virtual-time budget, so one input runs in a few
//! milliseconds in release (about 8 ms at worst over 3000 varied inputs).
//!
//! Checks: every DST invariant (answers equal the model, exactly-once
//! script uploads, time budgets, recovery once faults stop, caps and
//! sequence agreement, counter bounds; a panic inside the stack is reported
//! as a violation too). A violation panics with the DST's report, replayed
//! with the last 300 log lines.

use omv_tests::dst::{run_bytes, Options, SeedOutcome};

/// Log lines kept when a failing input is replayed for its report.
const REPORT_LINES: usize = 300;

/// Runs the DST on `data` and returns its outcome (no check).
pub fn run(data: &[u8], trace_lines: usize) -> SeedOutcome {
    run_bytes(
        data,
        &Options {
            trace_lines,
            ..Options::default()
        },
    )
}

/// The target's check: panics on any invariant violation. Set
/// OMV_FUZZ_TRACE=1 to print the run's log even when it passes.
pub fn check(data: &[u8]) {
    let tracing = std::env::var_os("OMV_FUZZ_TRACE").is_some();
    let o = run(data, if tracing { REPORT_LINES } else { 0 });
    if tracing {
        for l in &o.log {
            eprintln!("  {l}");
        }
        eprintln!(
            "dst: {} ops, {} faults, virtual time {:?}, trace {:016x}",
            o.stats.ops,
            o.stats.faults.total(),
            o.stats.virtual_time,
            o.trace_hash
        );
    }
    if o.violation.is_some() {
        let again = if tracing { o } else { run(data, REPORT_LINES) };
        panic!("{}", again.report());
    }
}
