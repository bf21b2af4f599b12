//! Counters of a run and totals over many seeds.

use std::collections::BTreeMap;
use std::fmt;

use omv_proto::Duration;

use super::faults::{Dir, FaultCounts, FaultKind};

/// What one seed did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Host operations run (reads, writes, uploads, queries...).
    pub ops: u64,
    /// Operations that ended with the answer the model predicted.
    pub ok: u64,
    /// Of those, operations whose predicted answer was a NAK.
    pub expected_naks: u64,
    /// Operations that failed with a typed error, by kind.
    pub failures: BTreeMap<String, u64>,
    /// Per operation kind: (succeeded, failed).
    pub by_op: BTreeMap<&'static str, (u64, u64)>,
    /// Requests sent (every attempt of every operation, resyncs included).
    pub requests: u64,
    /// Resyncs (connects) started, and how many failed.
    pub resyncs: u64,
    /// Failed resyncs.
    pub resync_failures: u64,
    /// Link-level failures seen in quiet phases before recovery (each
    /// recovery may use one).
    pub quiet_recoveries: u64,
    /// Scripts uploaded and acknowledged.
    pub uploads_ok: u64,
    /// Scripts run more than once by one `Exec` (its ACK and the
    /// script-started event both lost, or events off).
    pub reexecutions: u64,
    /// Scripts the cam's runner received.
    pub script_runs: u64,
    /// Cam events the host received.
    pub events: u64,
    /// Cam-side activity: prints, event bursts, registrations...
    pub cam_actions: BTreeMap<&'static str, u64>,
    /// Cam protocol resets seen (SYNC, retransmit give-up).
    pub cam_resets: BTreeMap<&'static str, u64>,
    /// Faults injected.
    pub faults: FaultCounts,
    /// Virtual time covered.
    pub virtual_time: Duration,
    /// Largest fraction of its time budget a request used (per mille).
    pub worst_budget_permille: u64,
    /// Payload bytes read and written by successful operations.
    pub payload_bytes: u64,
    /// How often interesting paths were taken (lock refused within the
    /// lock interval, short stdout reads, answers of 256+ packets...).
    pub notes: BTreeMap<&'static str, u64>,
}

impl RunStats {
    /// Counts a failure of `kind`.
    pub fn fail(&mut self, op: &'static str, kind: String) {
        *self.failures.entry(kind).or_default() += 1;
        self.by_op.entry(op).or_default().1 += 1;
    }

    /// Counts a success.
    pub fn success(&mut self, op: &'static str, nak: bool) {
        self.ok += 1;
        if nak {
            self.expected_naks += 1;
        }
        self.by_op.entry(op).or_default().0 += 1;
    }

    /// Counts a cam-side action.
    pub fn cam_action(&mut self, what: &'static str) {
        *self.cam_actions.entry(what).or_default() += 1;
    }

    /// Counts an interesting path.
    pub fn note(&mut self, what: &'static str) {
        *self.notes.entry(what).or_default() += 1;
    }
}

/// Totals over many seeds.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    /// Seeds run.
    pub seeds: u64,
    /// Seeds that violated an invariant.
    pub failed_seeds: Vec<(u64, String)>,
    /// Sum of the runs' counters.
    pub stats: RunStats,
    /// Wall-clock time spent.
    pub wall: std::time::Duration,
}

fn add_map<K: Ord + Clone>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

impl Totals {
    /// Adds one seed's counters.
    pub fn add(&mut self, s: &RunStats) {
        let t = &mut self.stats;
        t.ops += s.ops;
        t.ok += s.ok;
        t.expected_naks += s.expected_naks;
        add_map(&mut t.failures, &s.failures);
        for (k, (a, b)) in &s.by_op {
            let e = t.by_op.entry(k).or_default();
            e.0 += a;
            e.1 += b;
        }
        t.requests += s.requests;
        t.resyncs += s.resyncs;
        t.resync_failures += s.resync_failures;
        t.quiet_recoveries += s.quiet_recoveries;
        t.uploads_ok += s.uploads_ok;
        t.reexecutions += s.reexecutions;
        t.script_runs += s.script_runs;
        t.events += s.events;
        add_map(&mut t.cam_actions, &s.cam_actions);
        add_map(&mut t.cam_resets, &s.cam_resets);
        t.faults.merge(&s.faults);
        t.virtual_time += s.virtual_time;
        t.worst_budget_permille = t.worst_budget_permille.max(s.worst_budget_permille);
        t.payload_bytes += s.payload_bytes;
        add_map(&mut t.notes, &s.notes);
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(
            f,
            "seeds: {} ({} failed), wall time {:.1?}",
            self.seeds,
            self.failed_seeds.len(),
            self.wall
        )?;
        let vt = s.virtual_time.as_secs();
        writeln!(
            f,
            "virtual time: {}h{:02}m{:02}s",
            vt / 3600,
            vt / 60 % 60,
            vt % 60
        )?;
        let failed: u64 = s.failures.values().sum();
        writeln!(
            f,
            "operations: {} — {} succeeded ({} of them predicted NAKs), {} failed with a typed error ({:.2}%)",
            s.ops,
            s.ok,
            s.expected_naks,
            failed,
            failed as f64 * 100.0 / s.ops.max(1) as f64
        )?;
        writeln!(
            f,
            "requests: {}, resyncs: {} ({} failed), quiet-phase recoveries: {}",
            s.requests, s.resyncs, s.resync_failures, s.quiet_recoveries
        )?;
        writeln!(
            f,
            "uploads acknowledged: {}, script runs: {}, scripts re-run by one exec: {}, payload bytes: {}",
            s.uploads_ok, s.script_runs, s.reexecutions, s.payload_bytes
        )?;
        writeln!(
            f,
            "events received: {}, worst time-budget use: {}.{}%",
            s.events,
            s.worst_budget_permille / 10,
            s.worst_budget_permille % 10
        )?;
        writeln!(f, "failures by kind:")?;
        for (k, v) in &s.failures {
            writeln!(f, "  {k:<28} {v}")?;
        }
        writeln!(f, "operations by kind (ok / failed):")?;
        for (k, (a, b)) in &s.by_op {
            writeln!(f, "  {k:<28} {a} / {b}")?;
        }
        writeln!(f, "faults injected (h2c / c2h):")?;
        for k in FaultKind::ALL {
            let (a, b) = (
                s.faults.get(Dir::HostToCam, k),
                s.faults.get(Dir::CamToHost, k),
            );
            match k {
                FaultKind::Stall | FaultKind::ProtocolReset | FaultKind::Reboot => {
                    writeln!(f, "  {:<28} {a}", k.name())?
                }
                _ => writeln!(f, "  {:<28} {a} / {b}", k.name())?,
            }
        }
        writeln!(f, "cam activity:")?;
        for (k, v) in &s.cam_actions {
            writeln!(f, "  {k:<28} {v}")?;
        }
        for (k, v) in &s.cam_resets {
            writeln!(f, "  cam reset: {k:<17} {v}")?;
        }
        writeln!(f, "notable paths:")?;
        for (k, v) in &s.notes {
            writeln!(f, "  {k:<28} {v}")?;
        }
        for (seed, why) in &self.failed_seeds {
            writeln!(f, "FAILED seed {seed}: {why}")?;
        }
        Ok(())
    }
}
