//! The model: what the cam should contain, kept by the simulator beside the
//! real cam and updated only from what the host was told (or, for what the
//! cam did on its own, from cam-side events), so that every answer and
//! every cam state can be checked against it.
//!
//! Uncertainty is explicit. A write whose outcome the host never learned
//! (its ACK was lost) leaves each byte as "old or new" ([`Cell::Either`]);
//! a stdout read that failed leaves the stdout model unanchored until the
//! next resync, when the cam's actual text must be a suffix of what the
//! model expected (a failed read may only have consumed a prefix).

use std::collections::{BTreeMap, VecDeque};

use omv_proto::Instant;

use super::cam::{runner_text, UserSpec, SOFT_REBOOT_TEXT};

/// One byte of a user channel as the model knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// Exactly this value.
    Known(u8),
    /// One of two values (an unacknowledged write).
    Either(u8, u8),
    /// Anything (several unacknowledged writes).
    Any,
}

impl Cell {
    /// True if the cam may hold `b` here.
    pub fn admits(self, b: u8) -> bool {
        match self {
            Cell::Known(v) => v == b,
            Cell::Either(x, y) => x == b || y == b,
            Cell::Any => true,
        }
    }

    /// The cell after a write of `b` that may or may not have happened.
    fn maybe(self, b: u8) -> Cell {
        match self {
            Cell::Known(v) if v == b => Cell::Known(v),
            Cell::Known(v) => Cell::Either(v, b),
            Cell::Either(x, y) if x == b || y == b => Cell::Either(x, y),
            _ => Cell::Any,
        }
    }
}

/// Lock state of a lockable channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockModel {
    /// Locked? `None` after a lock/unlock whose answer was lost.
    pub locked: Option<bool>,
}

/// A user buffer channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufModel {
    /// Its definition.
    pub spec: UserSpec,
    /// Every byte.
    pub cells: Vec<Cell>,
    /// Lock state.
    pub lock: LockModel,
}

impl BufModel {
    /// A channel as registered.
    pub fn new(spec: UserSpec) -> BufModel {
        let cells = spec.initial_bytes().into_iter().map(Cell::Known).collect();
        BufModel {
            spec,
            cells,
            lock: LockModel {
                locked: Some(false),
            },
        }
    }

    /// Buffer size.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// True for a zero-size buffer.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// True if `offset..offset + len` lies inside the buffer.
    pub fn in_range(&self, offset: u32, len: usize) -> bool {
        (offset as usize)
            .checked_add(len)
            .is_some_and(|e| e <= self.cells.len())
    }

    /// Checks data read at `offset`; on success the model learns the bytes.
    pub fn check_read(&mut self, offset: u32, data: &[u8]) -> Result<(), String> {
        let o = offset as usize;
        if !self.in_range(offset, data.len()) {
            return Err(format!("read of {} bytes at {o} out of range", data.len()));
        }
        for (i, &b) in data.iter().enumerate() {
            if !self.cells[o + i].admits(b) {
                return Err(format!(
                    "byte {} is {b:#04x}, model says {:?}",
                    o + i,
                    self.cells[o + i]
                ));
            }
        }
        for (i, &b) in data.iter().enumerate() {
            self.cells[o + i] = Cell::Known(b);
        }
        Ok(())
    }

    /// A write the cam acknowledged.
    pub fn write(&mut self, offset: u32, data: &[u8]) {
        let o = offset as usize;
        for (i, &b) in data.iter().enumerate() {
            self.cells[o + i] = Cell::Known(b);
        }
    }

    /// A write that may or may not have been applied.
    pub fn maybe_write(&mut self, offset: u32, data: &[u8]) {
        let o = offset as usize;
        for (i, &b) in data.iter().enumerate() {
            self.cells[o + i] = self.cells[o + i].maybe(b);
        }
    }

    /// Checks the cam's actual bytes.
    pub fn check_actual(&self, actual: &[u8]) -> Result<(), String> {
        if actual.len() != self.cells.len() {
            return Err(format!(
                "size {} but model has {}",
                actual.len(),
                self.cells.len()
            ));
        }
        match self
            .cells
            .iter()
            .zip(actual)
            .position(|(c, &b)| !c.admits(b))
        {
            None => Ok(()),
            Some(i) => Err(format!(
                "byte {i} is {:#04x}, model says {:?}",
                actual[i], self.cells[i]
            )),
        }
    }
}

/// The stdout ring buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StdoutModel {
    /// Unread text (when anchored, exactly the cam's; otherwise the cam's
    /// is a suffix of it).
    pub unread: VecDeque<u8>,
    /// True when `unread` is exact.
    pub anchored: bool,
    /// Ring capacity.
    pub capacity: usize,
}

impl StdoutModel {
    /// An empty buffer.
    pub fn new(capacity: usize) -> StdoutModel {
        StdoutModel {
            unread: VecDeque::new(),
            anchored: true,
            capacity,
        }
    }

    /// Text written by the cam; the oldest text is dropped on overflow.
    pub fn produce(&mut self, text: &[u8]) {
        self.unread.extend(text.iter().copied());
        while self.unread.len() > self.capacity {
            self.unread.pop_front();
        }
    }

    /// What a read of `len` bytes must return when anchored: `None` means
    /// NAK FAILED (nothing to read).
    pub fn expect_read(&self, len: usize) -> Option<Vec<u8>> {
        if self.unread.is_empty() {
            return None;
        }
        let n = len.min(self.unread.len());
        Some(self.unread.iter().take(n).copied().collect())
    }

    /// A read returned `data` while unanchored: it must be a contiguous run
    /// of the expected text; the model drops everything up to its end.
    pub fn check_unanchored_read(&mut self, data: &[u8]) -> Result<(), String> {
        if data.is_empty() {
            return Ok(());
        }
        let u: Vec<u8> = self.unread.iter().copied().collect();
        match u.windows(data.len()).position(|w| w == data) {
            Some(k) => {
                self.unread.drain(..k + data.len());
                Ok(())
            }
            None => Err(format!(
                "stdout read returned {} bytes that were never printed in this order: {:?} (expected, {} bytes: {:?})",
                data.len(),
                String::from_utf8_lossy(&data[..data.len().min(120)]),
                u.len(),
                String::from_utf8_lossy(&u[..u.len().min(120)])
            )),
        }
    }

    /// After a resync: the cam's actual text must be a suffix of the model's;
    /// the model becomes exact again.
    pub fn reanchor(&mut self, actual: &[u8]) -> Result<(), String> {
        let u: Vec<u8> = self.unread.iter().copied().collect();
        if actual.len() > u.len() || u[u.len() - actual.len()..] != *actual {
            return Err(format!(
                "stdout holds {} bytes that are not the tail of the {} expected",
                actual.len(),
                u.len()
            ));
        }
        self.unread = actual.iter().copied().collect();
        self.anchored = true;
        Ok(())
    }
}

/// The whole model.
#[derive(Clone, Debug)]
pub struct Model {
    /// User channels by id.
    pub users: BTreeMap<u8, BufModel>,
    /// stdout.
    pub stdout: StdoutModel,
    /// The stdin upload buffer, `None` when unknown (failed upload).
    pub stdin: Option<Vec<u8>>,
    /// Scripts an `Exec` was started for: every run must be exactly one of
    /// them (never doubled, truncated or mixed).
    pub exec_credits: Vec<Vec<u8>>,
    /// Runs already checked.
    pub runs_seen: usize,
    /// Host-side (send, answer) times of the last successful lock of any
    /// channel: the cam keeps one timestamp and refuses every lock for
    /// `lock_interval` after it (PROTOCOL.md section 3).
    pub last_lock: Option<(Instant, Instant)>,
    /// The channel of `last_lock`.
    pub last_lock_channel: Option<u8>,
    /// The latest time a lock whose answer was lost may have succeeded.
    pub maybe_lock: Option<Instant>,
    /// A lock whose answer was lost may still be waiting in the cam (a
    /// stalled cam processes it later): until the next lock's answer, when
    /// it has been processed for sure, any time counts.
    pub maybe_lock_pending: bool,
}

impl Model {
    /// A model of a freshly booted cam.
    pub fn new(users: impl IntoIterator<Item = (u8, UserSpec)>, stdout_capacity: usize) -> Model {
        Model {
            users: users
                .into_iter()
                .map(|(id, s)| (id, BufModel::new(s)))
                .collect(),
            stdout: StdoutModel::new(stdout_capacity),
            stdin: Some(Vec::new()),
            exec_credits: Vec::new(),
            runs_seen: 0,
            last_lock: None,
            last_lock_channel: None,
            maybe_lock: None,
            maybe_lock_pending: false,
        }
    }

    /// The cam reset its protocol state: every lock is released.
    pub fn on_protocol_reset(&mut self) {
        for b in self.users.values_mut() {
            b.lock = LockModel {
                locked: Some(false),
            };
        }
        // The lock timestamp survives a protocol reset (the firmware's does).
    }

    /// The cam re-initialised its protocol (a fresh endpoint, as the
    /// firmware's protocol init after a soft reset): locks released and,
    /// unlike after a SYNC, the lock timestamp cleared.
    pub fn on_protocol_reinit(&mut self) {
        self.on_protocol_reset();
        self.last_lock = None;
        self.last_lock_channel = None;
        self.maybe_lock = None;
        self.maybe_lock_pending = false;
    }

    /// The cam rebooted.
    pub fn on_reboot(&mut self, keep_user: bool) {
        self.on_protocol_reinit();
        if !keep_user {
            for b in self.users.values_mut() {
                *b = BufModel::new(b.spec.clone());
            }
        }
        self.stdout = StdoutModel::new(self.stdout.capacity);
        self.stdin = Some(Vec::new());
    }

    /// The runner received its `index`-th script: it must match an EXEC
    /// credit exactly; its output goes to stdout.
    pub fn on_run(&mut self, index: usize, script: &[u8]) -> Result<(), String> {
        match self.exec_credits.iter().position(|c| c == script) {
            Some(_) => {}
            None => {
                let hint = self
                    .exec_credits
                    .iter()
                    .map(|c| describe_mismatch(c, script))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(format!(
                    "the runner received a {}-byte script that no EXEC was sent for ({})",
                    script.len(),
                    if hint.is_empty() {
                        "no EXEC pending".to_string()
                    } else {
                        hint
                    }
                ));
            }
        }
        // The script prints, ends, and the cam soft-resets.
        self.stdout.produce(&runner_text(index, script));
        self.stdout.produce(SOFT_REBOOT_TEXT);
        self.runs_seen = index + 1;
        Ok(())
    }
}

fn describe_mismatch(expected: &[u8], got: &[u8]) -> String {
    if got.len() == 2 * expected.len() && got[..expected.len()] == *expected {
        return "the expected script twice".into();
    }
    if got.len() < expected.len() && expected.starts_with(got) {
        return format!("a prefix of the expected {}-byte script", expected.len());
    }
    if got.len() < expected.len() && expected.ends_with(got) {
        return format!("a suffix of the expected {}-byte script", expected.len());
    }
    format!("expected {} bytes", expected.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size: usize) -> UserSpec {
        UserSpec {
            name: "b".into(),
            size,
            lockable: false,
            salt: 1,
        }
    }

    #[test]
    fn cells_track_uncertain_writes() {
        let mut b = BufModel::new(spec(4));
        let init = spec(4).initial_bytes();
        b.maybe_write(0, &[init[0] ^ 1]);
        assert!(b.check_actual(&init).is_ok());
        let mut other = init.clone();
        other[0] ^= 1;
        assert!(b.check_actual(&other).is_ok());
        other[0] ^= 2;
        assert!(b.check_actual(&other).is_err());
        b.check_read(0, &init[..1]).unwrap();
        assert_eq!(b.cells[0], Cell::Known(init[0]));
        assert!(b.check_read(2, &[0, 0, 0]).is_err());
    }

    #[test]
    fn stdout_ring_and_anchoring() {
        let mut s = StdoutModel::new(8);
        assert_eq!(s.expect_read(4), None);
        s.produce(b"abcdefghij");
        assert_eq!(s.expect_read(4), Some(b"cdef".to_vec()));
        s.anchored = false;
        s.check_unanchored_read(b"ef").unwrap();
        assert!(s.check_unanchored_read(b"zz").is_err());
        assert!(s.reanchor(b"hij").is_ok());
        assert!(s.anchored);
        assert!(s.reanchor(b"x").is_err());
    }

    #[test]
    fn runs_need_credits() {
        let mut m = Model::new([], 512);
        assert!(m.on_run(0, b"abc").is_err());
        m.exec_credits.push(b"abc".to_vec());
        assert!(m.on_run(0, b"abcabc").unwrap_err().contains("twice"));
        m.on_run(0, b"abc").unwrap();
        assert_eq!(
            m.stdout.unread.len(),
            runner_text(0, b"abc").len() + SOFT_REBOOT_TEXT.len()
        );
    }
}
