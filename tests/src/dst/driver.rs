//! The host application: how it uses the endpoint (resync policy, write
//! splitting, the exactly-once upload), and the checks of every answer
//! against the model.
//!
//! Policy, as the protocol document prescribes: an application NAK
//! (INVALID, FAILED, BUSY) is an answer; any other failure (timeout, link
//! NAK, unexpected opcode, link drop) makes the host resync before its next
//! request and retry the operation, up to the run's attempt budget. In a
//! quiet phase (no faults) one such failure is tolerated before the first
//! success — the cam may still be in a state the faults left it in — and
//! none after.

use bytes::Bytes;
use omv_proto::caps::Caps;
use omv_proto::channel::ChannelEntry;
use omv_proto::host::{Command, Reply};
use omv_proto::poll::PollBitmap;
use omv_proto::{ChannelId, Duration, Opcode, Status};
use omv_sim::stdio::{STDIN_EXEC, STDIN_RESET, STDIN_STOP};

use super::workload::Op;
use super::world::{expected_caps, Answer, OpError, Violation, World, WAIT_FACTOR};

/// Returns the link-level error of a request from the enclosing attempt.
macro_rules! link {
    ($e:expr) => {
        match $e {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        }
    };
}

/// An attempt's outcome: `Ok(Ok(nak))` when the answers matched the model
/// (`nak`: the operation's answer was a predicted NAK), `Ok(Err(_))` on a
/// link-level failure, `Err(_)` when an invariant broke.
pub type Attempt = Result<Result<bool, OpError>, Violation>;

/// What kind of channel an id is, per the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    User,
    Stdin,
    Stdout,
    Missing,
}

fn brief(a: &Answer) -> String {
    match a {
        Answer::Reply(Reply::Data(d)) if d.len() > 16 => {
            format!("{} bytes of data starting {:02x?}", d.len(), &d[..16])
        }
        other => format!("{other:?}"),
    }
}

impl World {
    fn kind(&self, ch: ChannelId) -> Kind {
        match ch {
            ChannelId::STDIN => Kind::Stdin,
            ChannelId::STDOUT => Kind::Stdout,
            _ if self.model.users.contains_key(&ch.0) => Kind::User,
            _ => Kind::Missing,
        }
    }

    fn want_ack(&self, a: &Answer, what: &str) -> Result<(), Violation> {
        match a {
            Answer::Reply(Reply::Ack) => Ok(()),
            other => Err(self.violation(format!("{what}: expected ACK, got {}", brief(other)))),
        }
    }

    fn want_nak(&self, a: &Answer, s: Status, what: &str) -> Result<bool, Violation> {
        match a {
            Answer::Nak(got) if *got == s => Ok(true),
            other => Err(self.violation(format!("{what}: expected NAK {s}, got {}", brief(other)))),
        }
    }

    fn want_data(&self, a: Answer, what: &str) -> Result<Bytes, Violation> {
        match a {
            Answer::Reply(Reply::Data(d)) => Ok(d),
            other => Err(self.violation(format!("{what}: expected data, got {}", brief(&other)))),
        }
    }

    fn max_data(&self) -> usize {
        usize::from(self.host.caps().max_payload) - 8
    }

    /// Checks a connect/renegotiation result: the caps are what the config
    /// asks for, clipped to the cam's, and both sides apply them.
    fn check_caps(&self, caps: Caps, disruptions_before: u64) -> Result<(), Violation> {
        let c = &self.setup.config;
        let announced = Caps {
            flags: c.supported,
            max_payload: c.max_payload,
        };
        let want = expected_caps(self.host.config(), announced);
        if caps != want {
            return Err(self.violation(format!(
                "negotiated {caps:?}, expected {want:?} (cam announces {announced:?})"
            )));
        }
        if self.host.caps() != caps {
            return Err(self.violation(format!(
                "connect reported {caps:?} but the host applies {:?}",
                self.host.caps()
            )));
        }
        // Excused: the cam was reset after applying these caps (a delayed
        // SYNC from an earlier attempt; the host completed on stale answers,
        // which alias because sequence numbers restart at every SYNC).
        if self.disruptions == disruptions_before
            && !self.cam_reset_since_caps
            && self.cam.ep.caps() != caps
        {
            return Err(self.violation(format!(
                "host applies {caps:?} but the cam {:?}",
                self.cam.ep.caps()
            )));
        }
        Ok(())
    }

    /// Resync: connect (SYNC, caps), then refresh the channel list as the
    /// stock host does. After it the stdout model is re-anchored: no read
    /// can consume text any more.
    pub fn resync(&mut self) -> Result<Result<(), OpError>, Violation> {
        self.stats.resyncs += 1;
        let before = self.disruptions;
        match self.connect_call(false)? {
            Ok(caps) => {
                self.check_caps(caps, before)?;
                self.app.needs_resync = false;
                if !self.model.stdout.anchored {
                    let actual = self.cam.peek_stdout();
                    if let Err(e) = self.model.stdout.reanchor(&actual) {
                        return Err(self.violation(e));
                    }
                }
                let r = self.refresh_list()?;
                if r.is_err() {
                    self.app.needs_resync = true;
                }
                Ok(r)
            }
            Err(e) => {
                self.stats.resync_failures += 1;
                self.app.needs_resync = true;
                Ok(Err(e))
            }
        }
    }

    /// CHANNEL_LIST: must equal the cam's list.
    pub fn refresh_list(&mut self) -> Result<Result<(), OpError>, Violation> {
        let a = link!(self.call(&Command::system(Opcode::CHANNEL_LIST), 16 * 32)?);
        let data = self.want_data(a, "CHANNEL_LIST")?;
        let list = match ChannelEntry::decode_list(&data) {
            Ok(l) => l,
            Err(e) => return Err(self.violation(format!("CHANNEL_LIST undecodable: {e}"))),
        };
        let truth = self.cam.ep.channels();
        if list != truth {
            return Err(self.violation(format!(
                "host's channel list {list:?} differs from the cam's {truth:?}"
            )));
        }
        self.app.host_view = Some(list);
        self.app.list_stale = false;
        Ok(Ok(()))
    }

    fn link_failure(&mut self, e: &OpError) -> Result<(), Violation> {
        self.app.needs_resync = true;
        if self.app.quiet {
            if self.app.recovery_left == 0 {
                return Err(self.violation(format!(
                    "the link did not recover after faults stopped: {e}"
                )));
            }
            self.app.recovery_left -= 1;
            self.stats.quiet_recoveries += 1;
        }
        Ok(())
    }

    /// An a-priori bound on an operation's virtual time: per attempt, a
    /// resync (connect with every SYNC attempt, channel list), a list
    /// refresh, and the operation's requests, each request within its own
    /// budget ((N + 1)·2·T for at most N answer packets).
    pub fn op_budget(&self, op: &Op, attempts: u32) -> Duration {
        let c = self.host.config();
        let w = c.timeout.saturating_mul(WAIT_FACTOR);
        let piece = usize::from(
            self.setup
                .config
                .read_piece
                .unwrap_or(u16::MAX)
                .clamp(1, omv_proto::MIN_PAYLOAD),
        );
        let call = |answer: usize| w.saturating_mul(answer.div_ceil(piece).max(1) as u32 + 1);
        // Smallest write piece: max_payload 50 minus the 8-byte header.
        let pieces = |len: usize| len.div_ceil(usize::from(omv_proto::MIN_PAYLOAD) - 8) as u32;
        let connect = w.saturating_mul(u32::from(c.max_retry.max(1)) + 2);
        let list = call(16 * 32);
        let requests = match op {
            Op::Read { len, .. } => call(*len as usize),
            Op::ReadStdout { len } => call(*len as usize),
            Op::Write { data, .. } => call(0).saturating_mul(pieces(data.len())),
            Op::Upload { script } => call(0).saturating_mul(2 + pieces(script.len())),
            Op::LockCycle { .. } => call(0).saturating_mul(4),
            Op::Renegotiate { .. } => connect + list,
            Op::Query { .. } => call(4 + 24 * 255),
            Op::List => list,
            Op::SysReset => c.timeout,
            _ => call(64),
        };
        (connect + list + list + requests).saturating_mul(attempts)
    }

    /// Runs one operation with the resync-and-retry policy.
    pub fn run_op(&mut self, op: &Op) -> Result<(), Violation> {
        let name = op.name();
        let attempts = if self.app.quiet { 2 } else { self.app.attempts };
        let budget = self.op_budget(op, attempts);
        let start = self.now;
        let r = self.run_op_attempts(op, name, attempts);
        let took = self.now.saturating_duration_since(start);
        if r.is_ok() && took > budget {
            return Err(self.violation(format!(
                "{name} took {took:?}, over its budget of {budget:?} ({attempts} attempts)"
            )));
        }
        r
    }

    fn run_op_attempts(
        &mut self,
        op: &Op,
        name: &'static str,
        attempts: u32,
    ) -> Result<(), Violation> {
        self.stats.ops += 1;
        self.app.write_done = 0;
        let runs_before = self.cam.run_count();
        let mut last = None;
        for _ in 0..attempts {
            if self.app.needs_resync || !self.host.is_connected() {
                if let Err(e) = self.resync()? {
                    self.link_failure(&e)?;
                    last = Some(e);
                    continue;
                }
            }
            if self.host.take_channels_changed() {
                self.app.list_stale = true;
            }
            if self.app.list_stale {
                if let Err(e) = self.refresh_list()? {
                    self.link_failure(&e)?;
                    last = Some(e);
                    continue;
                }
            }
            match self.attempt(op)? {
                Ok(nak) => {
                    self.stats.success(name, nak);
                    if last.is_some() {
                        self.stats.note("op_succeeded_after_retry");
                    }
                    if self.app.quiet {
                        self.app.recovery_left = 0;
                    }
                    if let Op::Upload { script } = op {
                        if !script.is_empty() {
                            self.stats.uploads_ok += 1;
                        }
                    }
                    self.count_reexecutions(op, runs_before);
                    return Ok(());
                }
                Err(e) => {
                    self.link_failure(&e)?;
                    last = Some(e);
                }
            }
        }
        self.count_reexecutions(op, runs_before);
        let kind = last.map_or_else(|| "no attempt".to_string(), |e| e.kind());
        self.stats.fail(name, kind);
        Ok(())
    }

    fn count_reexecutions(&mut self, op: &Op, runs_before: usize) {
        if let Op::Upload { script } = op {
            let n = (runs_before..self.cam.run_count())
                .filter(|&i| self.cam.run(i) == *script)
                .count() as u64;
            self.stats.reexecutions += n.saturating_sub(1);
        }
    }

    fn attempt(&mut self, op: &Op) -> Attempt {
        match op {
            Op::Read { ch, offset, len } => self.read(*ch, *offset, *len),
            Op::Write { ch, offset, data } => self.write(*ch, *offset, data),
            Op::Upload { script } => self.upload(script),
            Op::Ioctl { ch, request, args } => self.ioctl(*ch, *request, args),
            Op::ReadStdout { len } => self.read_stdout(*len),
            Op::Size { ch } => self.size(*ch),
            Op::Shape { ch } => {
                let a = link!(self.call(&Command::new(Opcode::CHANNEL_SHAPE, *ch), 16)?);
                self.want_nak(&a, Status::INVALID, "CHANNEL_SHAPE").map(Ok)
            }
            Op::Poll => self.poll(),
            Op::Lock { ch } => self.lock(*ch),
            Op::Unlock { ch } => self.unlock(*ch),
            Op::LockCycle { ch } => {
                let mut nak = false;
                for step in 0..4 {
                    let r = if step % 2 == 0 {
                        self.lock(*ch)?
                    } else {
                        self.unlock(*ch)?
                    };
                    nak |= link!(r);
                }
                Ok(Ok(nak))
            }
            Op::Renegotiate { want, full } => {
                let mut c = self.host.config().clone();
                c.crc = want.crc;
                c.seq = want.seq;
                c.ack = want.ack;
                c.events = want.events;
                c.max_payload = want.max_payload;
                self.host.set_config(c);
                if *full {
                    return Ok(self.resync()?.map(|()| false));
                }
                let before = self.disruptions;
                let caps = link!(self.connect_call(true)?);
                self.check_caps(caps, before)?;
                Ok(Ok(false))
            }
            Op::List => Ok(self.refresh_list()?.map(|()| false)),
            Op::Query { opcode } => self.query(*opcode),
            Op::Bad { cmd, why } => {
                let a = link!(self.call(cmd, 64)?);
                self.want_nak(&a, Status::INVALID, why).map(Ok)
            }
            Op::SysReset => {
                self.link_dropped = false;
                if let Err(e) = self.host.send_oneway(&Command::system(Opcode::SYS_RESET)) {
                    return Err(self.violation(format!("SYS_RESET refused: {e}")));
                }
                self.stats.requests += 1;
                self.app.needs_resync = true;
                let t = self.host.config().timeout;
                let end = self.now + t;
                let rebooted = self.run_until(end, |w| w.link_dropped)?;
                self.link_dropped = false;
                if rebooted {
                    Ok(Ok(false))
                } else {
                    Ok(Err(OpError::Request(
                        omv_proto::host::RequestError::Timeout(t),
                    )))
                }
            }
        }
    }

    fn read(&mut self, ch: ChannelId, offset: u32, len: u32) -> Attempt {
        let valid = len > 0 && offset.checked_add(len).is_some();
        if valid && self.kind(ch) == Kind::Stdout {
            return self.read_stdout(len);
        }
        let a = link!(self.call(&Command::read(ch, offset, len), len as usize)?);
        let what = format!("read {ch:?} @{offset}+{len}");
        if !valid || self.kind(ch) != Kind::User {
            return self.want_nak(&a, Status::INVALID, &what).map(Ok);
        }
        if !self.model.users[&ch.0].in_range(offset, len as usize) {
            return self.want_nak(&a, Status::FAILED, &what).map(Ok);
        }
        let data = self.want_data(a, &what)?;
        if data.len() != len as usize {
            return Err(self.violation(format!("{what}: got {} bytes", data.len())));
        }
        let b = self.model.users.get_mut(&ch.0).expect("user channel");
        if let Err(e) = b.check_read(offset, &data) {
            return Err(self.violation(format!("{what}: {e}")));
        }
        self.stats.payload_bytes += u64::from(len);
        if len as usize > 255 * usize::from(self.host.caps().max_payload) {
            self.stats.note("read_of_256_plus_packets");
        }
        Ok(Ok(false))
    }

    fn read_stdout(&mut self, len: u32) -> Attempt {
        let r = self.call(&Command::read(ChannelId::STDOUT, 0, len), len as usize)?;
        let a = match r {
            Ok(a) => a,
            Err(e) => {
                // The cam may have consumed any prefix of the text.
                self.model.stdout.anchored = false;
                return Ok(Err(e));
            }
        };
        let what = format!("stdout read of {len}");
        if !self.model.stdout.anchored {
            return match a {
                Answer::Nak(Status::FAILED) => Ok(Ok(true)),
                a => {
                    let d = self.want_data(a, &what)?;
                    if let Err(e) = self.model.stdout.check_unanchored_read(&d) {
                        return Err(self.violation(format!("{what}: {e}")));
                    }
                    Ok(Ok(false))
                }
            };
        }
        match self.model.stdout.expect_read(len as usize) {
            None => self.want_nak(&a, Status::FAILED, &what).map(Ok),
            Some(want) => {
                let d = self.want_data(
                    a,
                    &format!("{what} ({} bytes unread)", self.model.stdout.unread.len()),
                )?;
                if d[..] != want[..] {
                    return Err(self.violation(format!(
                        "{what}: got {} bytes, expected the {} oldest unread bytes",
                        d.len(),
                        want.len()
                    )));
                }
                self.model.stdout.unread.drain(..want.len());
                self.stats.payload_bytes += want.len() as u64;
                if want.len() < len as usize {
                    self.stats.note("stdout_short_read");
                }
                Ok(Ok(false))
            }
        }
    }

    fn write(&mut self, ch: ChannelId, offset: u32, data: &[u8]) -> Attempt {
        while self.app.write_done < data.len() {
            let from = self.app.write_done;
            let to = (from + self.max_data()).min(data.len());
            let piece = &data[from..to];
            let at = offset + from as u32;
            let what = format!("write {ch:?} @{at}+{}", piece.len());
            let user_ok =
                self.kind(ch) == Kind::User && self.model.users[&ch.0].in_range(at, piece.len());
            let r = self.call(&Command::write(ch, at, piece), 0)?;
            let a = match r {
                Ok(a) => a,
                Err(e) => {
                    if user_ok {
                        let b = self.model.users.get_mut(&ch.0).expect("user channel");
                        b.maybe_write(at, piece);
                    }
                    return Ok(Err(e));
                }
            };
            match self.kind(ch) {
                Kind::User if user_ok => {
                    self.want_ack(&a, &what)?;
                    let b = self.model.users.get_mut(&ch.0).expect("user channel");
                    b.write(at, piece);
                    self.stats.payload_bytes += piece.len() as u64;
                }
                Kind::User => return self.want_nak(&a, Status::FAILED, &what).map(Ok),
                Kind::Stdin => {
                    return Err(self.violation("the workload wrote to stdin outside an upload"))
                }
                Kind::Stdout | Kind::Missing => {
                    return self.want_nak(&a, Status::INVALID, &what).map(Ok)
                }
            }
            self.app.write_done = to;
        }
        Ok(Ok(false))
    }

    /// The exactly-once upload: STDIN RESET, writes from offset 0 split to
    /// max_payload - 8, EXEC; any failure restarts it from RESET (next
    /// attempt, after a resync).
    fn upload(&mut self, script: &[u8]) -> Attempt {
        let stdin = ChannelId::STDIN;
        let r = self.call(&Command::ioctl(stdin, STDIN_RESET, &[]), 0)?;
        let a = match r {
            Ok(a) => a,
            Err(e) => {
                self.model.stdin = None;
                return Ok(Err(e));
            }
        };
        self.want_ack(&a, "upload: STDIN RESET")?;
        self.model.stdin = Some(Vec::new());
        let mut off = 0;
        while off < script.len() {
            let end = (off + self.max_data()).min(script.len());
            let r = self.call(&Command::write(stdin, off as u32, &script[off..end]), 0)?;
            match r {
                Ok(a) => self.want_ack(&a, &format!("upload: write @{off}"))?,
                Err(e) => {
                    self.model.stdin = None;
                    return Ok(Err(e));
                }
            }
            off = end;
        }
        // Every piece was acknowledged, each exactly once and in order.
        self.model.stdin = Some(script.to_vec());
        self.exec(script)
    }

    /// EXEC of what the model says stdin holds. A run of exactly those bytes
    /// must happen before the ACK.
    fn exec(&mut self, script: &[u8]) -> Attempt {
        let runs_before = self.cam.run_count();
        if !script.is_empty() {
            self.model.exec_credits.push(script.to_vec());
        }
        let a = link!(self.call(&Command::ioctl(ChannelId::STDIN, STDIN_EXEC, &[]), 0)?);
        if script.is_empty() {
            return self
                .want_nak(&a, Status::FAILED, "EXEC of an empty script")
                .map(Ok);
        }
        self.want_ack(&a, "EXEC")?;
        let ran = (runs_before..self.cam.run_count()).any(|i| self.cam.run(i) == script);
        if !ran {
            return Err(self.violation(format!(
                "EXEC acknowledged but the runner did not receive the {}-byte script",
                script.len()
            )));
        }
        Ok(Ok(false))
    }

    fn ioctl(&mut self, ch: ChannelId, request: u32, args: &[u8]) -> Attempt {
        let what = format!("ioctl {request} on {ch:?}");
        let known = matches!(request, STDIN_STOP | STDIN_EXEC | STDIN_RESET);
        if self.kind(ch) != Kind::Stdin || !args.is_empty() || !known {
            let a = link!(self.call(&Command::ioctl(ch, request, args), 0)?);
            return self.want_nak(&a, Status::INVALID, &what).map(Ok);
        }
        match request {
            STDIN_EXEC => match self.model.stdin.clone() {
                Some(s) => self.exec(&s),
                None => {
                    // Unknown buffer: any answer but a link failure is fine,
                    // and whatever runs must still match a credit.
                    let a = link!(self.call(&Command::ioctl(ch, request, args), 0)?);
                    Ok(Ok(matches!(a, Answer::Nak(_))))
                }
            },
            _ => {
                let r = self.call(&Command::ioctl(ch, request, args), 0)?;
                let a = match r {
                    Ok(a) => a,
                    Err(e) => {
                        if request == STDIN_RESET {
                            self.model.stdin = None;
                        }
                        return Ok(Err(e));
                    }
                };
                self.want_ack(&a, &what)?;
                if request == STDIN_RESET {
                    self.model.stdin = Some(Vec::new());
                }
                Ok(Ok(false))
            }
        }
    }

    fn size(&mut self, ch: ChannelId) -> Attempt {
        let a = link!(self.call(&Command::new(Opcode::CHANNEL_SIZE, ch), 4)?);
        let what = format!("size of {ch:?}");
        let want = match self.kind(ch) {
            Kind::User => self.model.users[&ch.0].len() as u32,
            Kind::Stdout => {
                let d = self.want_data(a, &what)?;
                if self.model.stdout.anchored
                    && d[..] != (self.model.stdout.unread.len() as u32).to_le_bytes()
                {
                    return Err(self.violation(format!(
                        "{what}: {d:?}, model has {} unread",
                        self.model.stdout.unread.len()
                    )));
                }
                return Ok(Ok(false));
            }
            Kind::Stdin | Kind::Missing => {
                return self.want_nak(&a, Status::INVALID, &what).map(Ok);
            }
        };
        let d = self.want_data(a, &what)?;
        if d[..] != want.to_le_bytes() {
            return Err(self.violation(format!("{what}: {d:?}, expected {want}")));
        }
        Ok(Ok(false))
    }

    fn poll(&mut self) -> Attempt {
        let a = link!(self.call(&Command::system(Opcode::CHANNEL_POLL), 4)?);
        let d = self.want_data(a, "CHANNEL_POLL")?;
        let bits = match PollBitmap::decode(&d) {
            Ok(b) => b.0,
            Err(e) => return Err(self.violation(format!("CHANNEL_POLL undecodable: {e}"))),
        };
        let stdout_bit = 1u32 << ChannelId::STDOUT.0;
        let (mask, want) = if self.model.stdout.anchored {
            let ready = !self.model.stdout.unread.is_empty();
            (u32::MAX, if ready { stdout_bit } else { 0 })
        } else {
            (!stdout_bit, 0)
        };
        if bits & mask != want {
            return Err(self.violation(format!(
                "CHANNEL_POLL answered {bits:#x}, expected {want:#x} (mask {mask:#x})"
            )));
        }
        Ok(Ok(false))
    }

    fn lockable(&self, ch: ChannelId) -> bool {
        self.kind(ch) == Kind::User && self.model.users[&ch.0].spec.lockable
    }

    fn lock(&mut self, ch: ChannelId) -> Attempt {
        let send = self.now;
        let resets = self.cam_resets;
        let r = self.call(&Command::new(Opcode::CHANNEL_LOCK, ch), 0)?;
        let lockable = self.lockable(ch);
        let a = match r {
            Ok(a) => a,
            Err(e) => {
                if lockable {
                    self.model.users.get_mut(&ch.0).expect("user").lock.locked = None;
                    // The request may still be on the wire (delayed) or
                    // waiting at a stalled cam: the lock may be taken as late
                    // as a delay plus a stall after the host gave up.
                    let p = self.inj.profile;
                    let late = p.h2c.delay_max + p.stall_max;
                    self.model.maybe_lock = Some(self.now + late);
                    self.model.maybe_lock_pending = true;
                }
                return Ok(Err(e));
            }
        };
        let what = format!("lock {ch:?}");
        if !lockable {
            return self.want_nak(&a, Status::INVALID, &what).map(Ok);
        }
        let recv = self.now;
        let interval = self.setup.config.lock_interval;
        let b = &self.model.users[&ch.0];
        let (lm, empty) = (b.lock, b.is_empty());
        let (last, maybe) = (self.model.last_lock, self.model.maybe_lock);
        // Any lock sent earlier has been processed by the time this answer
        // came (the cam handles requests in order).
        let pending = std::mem::take(&mut self.model.maybe_lock_pending);
        if pending {
            self.model.maybe_lock = Some(recv);
        }
        if self.cam_resets != resets {
            // The cam reset while the request was out: its answer reflects
            // the state before or after the reset, and the lock may or may
            // not have survived it.
            let b = self.model.users.get_mut(&ch.0).expect("user");
            return match a {
                Answer::Reply(Reply::Ack) => {
                    b.lock.locked = None;
                    // Locked before or after the reset: a re-initialisation
                    // forgets the timestamp, a SYNC keeps it. It may count.
                    self.model.maybe_lock = Some(recv);
                    Ok(Ok(false))
                }
                Answer::Nak(Status::BUSY) => Ok(Ok(true)),
                other => Err(self.violation(format!("{what}: got {}", brief(&other)))),
            };
        }
        match a {
            Answer::Reply(Reply::Ack) => {
                let interval_ok =
                    last.map_or(true, |(s, _)| recv.saturating_duration_since(s) >= interval);
                if lm.locked == Some(true) || empty || !interval_ok {
                    return Err(self.violation(format!(
                        "{what}: ACK but the model says locked={:?} empty={empty} last lock {last:?} (interval {interval:?})",
                        lm.locked
                    )));
                }
                let b = self.model.users.get_mut(&ch.0).expect("user");
                b.lock.locked = Some(true);
                self.model.last_lock = Some((send, recv));
                self.model.last_lock_channel = Some(ch.0);
                self.model.maybe_lock = None;
                Ok(Ok(false))
            }
            Answer::Nak(Status::BUSY) => {
                // Any channel's lock counts: the cam keeps one timestamp.
                let too_soon = pending
                    || last
                        .map(|(_, r)| r)
                        .into_iter()
                        .chain(maybe)
                        .any(|r| send.saturating_duration_since(r) < interval);
                self.stats.note(if lm.locked == Some(false) && !empty {
                    "lock_busy_interval"
                } else {
                    "lock_busy_locked_or_empty"
                });
                if self.model.last_lock_channel.is_some_and(|c| c != ch.0) && too_soon {
                    // The cam keeps one lock timestamp for all channels.
                    self.stats.note("lock_busy_after_another_channel");
                }
                if lm.locked == Some(false) && !empty && !too_soon {
                    return Err(self.violation(format!(
                        "{what}: BUSY but the channel is unlocked, not empty, and the last lock {last:?} (maybe {maybe:?}) was over {interval:?} before"
                    )));
                }
                if !too_soon && !empty {
                    self.model.users.get_mut(&ch.0).expect("user").lock.locked = Some(true);
                }
                Ok(Ok(true))
            }
            other => Err(self.violation(format!("{what}: got {}", brief(&other)))),
        }
    }

    fn unlock(&mut self, ch: ChannelId) -> Attempt {
        let resets = self.cam_resets;
        let r = self.call(&Command::new(Opcode::CHANNEL_UNLOCK, ch), 0)?;
        let lockable = self.lockable(ch);
        let a = match r {
            Ok(a) => a,
            Err(e) => {
                if lockable {
                    self.model.users.get_mut(&ch.0).expect("user").lock.locked = None;
                }
                return Ok(Err(e));
            }
        };
        let what = format!("unlock {ch:?}");
        if !lockable {
            return self.want_nak(&a, Status::INVALID, &what).map(Ok);
        }
        let locked = if self.cam_resets != resets {
            None // judged against the state before or after the reset
        } else {
            self.model.users[&ch.0].lock.locked
        };
        let ok = match a {
            Answer::Reply(Reply::Ack) => locked != Some(false),
            Answer::Nak(Status::BUSY) => locked != Some(true),
            _ => false,
        };
        if !ok {
            return Err(self.violation(format!(
                "{what}: got {} but the model says locked={locked:?}",
                brief(&a)
            )));
        }
        self.model.users.get_mut(&ch.0).expect("user").lock.locked = Some(false);
        Ok(Ok(matches!(a, Answer::Nak(_))))
    }

    fn query(&mut self, opcode: Opcode) -> Attempt {
        let c = self.setup.config.clone();
        let memory = c.memory.as_ref().map(|m| m.encode());
        let max = memory.as_ref().map_or(76, |m| m.len().max(76));
        let before = self.disruptions;
        let a = link!(self.call(&Command::system(opcode), max)?);
        let what = format!("{opcode}");
        let want: Vec<u8> = match opcode {
            Opcode::PROTO_STATS => {
                let d = self.want_data(a, &what)?;
                if self.disruptions == before {
                    self.check_stats_reply(&d)?;
                }
                return Ok(Ok(false));
            }
            Opcode::PROTO_VERSION => c.version.encode().to_vec(),
            Opcode::SYS_INFO => c.sysinfo.encode().to_vec(),
            Opcode::PROTO_GET_CAPS => Caps {
                flags: c.supported,
                max_payload: c.max_payload,
            }
            .encode()
            .to_vec(),
            Opcode::SYS_MEMORY => match memory {
                Some(m) => m,
                None => return self.want_nak(&a, Status::INVALID, &what).map(Ok),
            },
            other => return Err(self.violation(format!("no check for query {other}"))),
        };
        let d = self.want_data(a, &what)?;
        if d[..] != want[..] {
            return Err(self.violation(format!("{what}: {d:?}, expected {want:?}")));
        }
        Ok(Ok(false))
    }
}
