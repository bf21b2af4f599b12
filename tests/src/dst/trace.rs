//! The run's trace: a hash of every significant happening (so two runs of
//! a seed can be compared bit for bit) and, when enabled, the last lines of
//! a readable log for debugging a failing seed.

use std::cell::RefCell;
use std::collections::VecDeque;

use omv_proto::Instant;

use super::dice::mix;

/// Trace hash plus an optional bounded log.
#[derive(Clone, Debug)]
pub struct Trace {
    hash: u64,
    lines: Option<VecDeque<String>>,
    cap: usize,
    /// Also log every chunk delivered (verbose).
    pub deliveries: bool,
}

impl Trace {
    /// A trace keeping the last `cap` log lines (`0`: hash only).
    pub fn new(cap: usize) -> Trace {
        Trace {
            hash: 0x6f6d_765f_6473_7421,
            lines: (cap > 0).then(VecDeque::new),
            cap,
            deliveries: false,
        }
    }

    /// Folds values into the hash.
    pub fn mix(&mut self, values: &[u64]) {
        for &v in values {
            self.hash = mix(self.hash ^ v);
        }
    }

    /// True when log lines are kept (callers skip formatting otherwise).
    pub fn logging(&self) -> bool {
        self.lines.is_some()
    }

    /// Appends a log line (built only when logging), after the session's
    /// own log records since the last line (see [`capture_session_log`]).
    pub fn log(&mut self, now: Instant, line: impl FnOnce() -> String) {
        if self.lines.is_some() {
            for record in SESSION_LOG.with(|l| core::mem::take(&mut *l.borrow_mut())) {
                self.push(now, format!("  [session] {record}"));
            }
            self.push(now, line());
        }
    }

    fn push(&mut self, now: Instant, line: String) {
        if let Some(lines) = &mut self.lines {
            if lines.len() >= self.cap {
                lines.pop_front();
            }
            let us = now.as_micros();
            lines.push_back(format!(
                "{:>6}.{:06} {}",
                us / 1_000_000,
                us % 1_000_000,
                line
            ));
        }
    }

    /// The hash so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The kept log lines.
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .as_ref()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }
}

thread_local! {
    static SESSION_LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Keeps this thread's `log` records for the trace (the session's debug
/// lines: why it resynced, what it retried), interleaved with the wire
/// lines at the virtual time of the next traced happening.
struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Debug
    }

    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            SESSION_LOG.with(|l| {
                let mut l = l.borrow_mut();
                if l.len() < 1000 {
                    l.push(format!("{} {}", r.level(), r.args()));
                }
            });
        }
    }

    fn flush(&self) {}
}

/// Sends the process's `log` records (the session's) into traces. For the
/// `dst` tool's `--trace`: a no-op when a logger is already installed.
pub fn capture_session_log() {
    static CAPTURE: Capture = Capture;
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
}
