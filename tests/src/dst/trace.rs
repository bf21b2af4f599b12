//! The run's trace: a hash of every significant happening (so two runs of
//! a seed can be compared bit for bit) and, when enabled, the last lines of
//! a readable log for debugging a failing seed.

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

    /// Appends a log line (built only when logging).
    pub fn log(&mut self, now: Instant, line: impl FnOnce() -> String) {
        if let Some(lines) = &mut self.lines {
            if lines.len() >= self.cap {
                lines.pop_front();
            }
            let us = now.as_micros();
            lines.push_back(format!(
                "{:>6}.{:06} {}",
                us / 1_000_000,
                us % 1_000_000,
                line()
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
