//! The host application: each workload operation is one (or a few) of the
//! shipped session's typed operations ([`omv_session::ops`]), run by
//! [`World::run_op`]; this module holds no protocol policy (retries,
//! resync, resume, exactly-once are the session's), only the application's
//! own steps (open the port and connect when it is closed, pick new caps)
//! and the checks of every outcome against the model.

use bytes::Bytes;
use omv_proto::caps::CapFlags;
use omv_proto::{ChannelId, Opcode, Status};
use omv_session::{ops, Error};

use super::workload::{Op, Wanted};
use super::world::{error_kind, World};

/// How an operation ended, as the checks classify it.
#[derive(Debug)]
pub enum Outcome {
    /// The answer the model predicted.
    Ok,
    /// A predicted refusal (NAK INVALID/FAILED/BUSY, an invalid argument).
    Refused,
    /// A typed error the model did not predict (a link or cam failure).
    Failed(Failure),
}

/// A typed error as the checks keep it: its kind (see
/// [`error_kind`]) and its message (the error type holds I/O errors and
/// is not `Clone`).
#[derive(Debug)]
pub struct Failure {
    /// The error's kind, as the statistics count it.
    pub kind: String,
    /// The error's message.
    pub message: String,
}

impl From<&Error> for Failure {
    fn from(e: &Error) -> Failure {
        Failure {
            kind: error_kind(e),
            message: e.to_string(),
        }
    }
}

/// True for errors that answer the request (the cam understood it and
/// refused), or that the session raised on the caller's arguments.
pub fn is_refusal(e: &Error) -> bool {
    match e {
        Error::Nak { status, .. } => {
            *status == Status::INVALID || *status == Status::FAILED || *status == Status::BUSY
        }
        Error::InvalidArgument(_) | Error::Unsupported { .. } => true,
        _ => false,
    }
}

fn classify<T>(r: &Result<T, Error>) -> Option<Outcome> {
    match r {
        Ok(_) => None,
        Err(e) if is_refusal(e) => Some(Outcome::Refused),
        Err(e) => Some(Outcome::Failed(Failure::from(e))),
    }
}

impl World {
    /// Counts an outcome and applies the recovery rule: in a quiet phase
    /// at most one failure (before the first success over the link), then
    /// none.
    pub fn outcome(&mut self, name: &'static str, o: Outcome) -> Result<(), super::Violation> {
        self.stats.ops += 1;
        match o {
            // The recovery allowance ends with the first operation that
            // succeeds over the link (see `run::World::step`).
            Outcome::Ok => self.stats.success(name, false),
            Outcome::Refused => self.stats.success(name, true),
            Outcome::Failed(e) => {
                self.stats.fail(name, e.kind.clone());
                if self.app.quiet {
                    // The cam reset on its own during the operation (a
                    // script's end, an injected reset): a disruption. A
                    // retransmit give-up is no excuse: faults are off.
                    if self.external_resets() != self.app.silent_at_start {
                        self.stats.quiet_recoveries += 1;
                        self.stats.note("quiet_failure_after_cam_reset");
                    } else if self.app.recovery_left > 0 {
                        self.app.recovery_left -= 1;
                        self.stats.quiet_recoveries += 1;
                    } else {
                        return Err(self.violation(format!(
                            "{name} failed with faults off after the link recovered: {}",
                            e.message
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Opens the port and connects when the session is not connected (at
    /// the start, after a reboot dropped the port, after a failed resync).
    pub fn ensure_connected(&mut self) -> Result<bool, super::Violation> {
        if self.port_open && self.session.is_connected() {
            return Ok(true);
        }
        if self.port_open {
            // A user closes and reopens the port of a cam that stopped
            // answering.
            self.cam.sim.port_reopened();
        }
        self.session.port_opened();
        self.port_open = true;
        self.stats.resyncs += 1;
        let r = self.run_op("connect", ops::Connect)?;
        if r.is_err() {
            self.stats.resync_failures += 1;
        }
        let o = classify(&r).unwrap_or(Outcome::Ok);
        self.outcome("connect", o)?;
        Ok(r.is_ok())
    }

    /// Runs one workload operation and checks its outcome.
    pub fn run_workload_op(&mut self, op: &Op) -> Result<(), super::Violation> {
        self.app.silent_at_start = self.external_resets();
        if !self.ensure_connected()? {
            return Ok(());
        }
        let name = op.name();
        let o = match op {
            Op::Read { ch, offset, len } => self.read(*ch, *offset, *len)?,
            Op::Write { ch, offset, data } => self.write(*ch, *offset, data)?,
            Op::Upload { script } => self.exec(script)?,
            Op::Ioctl { ch, request, args } => {
                let r = self.run_op(
                    name,
                    ops::Ioctl {
                        id: *ch,
                        request: *request,
                        args: args.clone(),
                    },
                )?;
                classify(&r).unwrap_or(Outcome::Ok)
            }
            Op::ReadStdout => {
                let r = self.run_op(name, ops::ReadStdoutBytes)?;
                match r {
                    Ok(data) => {
                        if let Err(e) = self.model.stdout.check_unanchored_read(&data) {
                            return Err(self.violation(e));
                        }
                        self.stats.payload_bytes += data.len() as u64;
                        Outcome::Ok
                    }
                    Err(e) => {
                        // A failed read may have consumed a prefix.
                        self.model.stdout.anchored = false;
                        classify::<()>(&Err(e)).unwrap_or(Outcome::Ok)
                    }
                }
            }
            Op::Size { ch } => {
                let r = self.run_op(name, ops::Size { id: *ch })?;
                if let (Ok(n), Some(b)) = (&r, self.model.users.get(&ch.0)) {
                    if *n as usize != b.len() {
                        return Err(self.violation(format!(
                            "CHANNEL_SIZE of {ch:?} is {n}, the model says {}",
                            b.len()
                        )));
                    }
                }
                classify(&r).unwrap_or(Outcome::Ok)
            }
            Op::Shape { ch } => {
                let r = self.run_op(name, ops::ShapeOf { id: *ch })?;
                classify(&r).unwrap_or(Outcome::Ok)
            }
            Op::Poll => {
                let r = self.run_op(name, ops::Poll)?;
                classify(&r).unwrap_or(Outcome::Ok)
            }
            Op::Status => {
                let r = self.run_op(name, ops::ReadStatus)?;
                classify(&r).unwrap_or(Outcome::Ok)
            }
            Op::Stop => {
                let r = self.run_op(name, ops::Stop)?;
                classify(&r).unwrap_or(Outcome::Ok)
            }
            Op::ReadFrame => {
                let r = self.run_op(name, ops::ReadFrame)?;
                if let Ok(Some(f)) = &r {
                    self.stats.note("frame_read");
                    self.stats.payload_bytes += f.data.len() as u64;
                }
                classify(&r).unwrap_or(Outcome::Ok)
            }
            Op::Lock { ch } => {
                let r = self.run_op(name, ops::Lock { id: *ch })?;
                classify(&r).unwrap_or(Outcome::Ok)
            }
            Op::Unlock { ch } => {
                let r = self.run_op(name, ops::Unlock { id: *ch })?;
                classify(&r).unwrap_or(Outcome::Ok)
            }
            Op::LockCycle { ch } => {
                let mut worst = Outcome::Ok;
                for lock in [true, false, true, false] {
                    let r = if lock {
                        self.run_op(name, ops::Lock { id: *ch })?
                    } else {
                        self.run_op(name, ops::Unlock { id: *ch })?
                    };
                    if lock && matches!(r, Ok(false)) {
                        self.stats.note("lock_refused");
                    }
                    match classify(&r) {
                        Some(Outcome::Failed(e)) => {
                            worst = Outcome::Failed(e);
                            break;
                        }
                        Some(Outcome::Refused) => worst = Outcome::Refused,
                        _ => {}
                    }
                }
                worst
            }
            Op::Renegotiate { want, full } => self.renegotiate(*want, *full)?,
            Op::List => {
                let r = self.run_op(name, ops::ChannelList)?;
                if let Ok(list) = &r {
                    if self.app.quiet {
                        let mut got: Vec<(u8, String)> =
                            list.iter().map(|c| (c.id.0, c.name.clone())).collect();
                        let mut want: Vec<(u8, String)> = self
                            .cam
                            .channels()
                            .iter()
                            .map(|c| (c.id.0, c.name.clone()))
                            .collect();
                        got.sort();
                        want.sort();
                        if got != want {
                            return Err(self.violation(format!(
                                "CHANNEL_LIST answered {got:?}, the cam has {want:?}"
                            )));
                        }
                    }
                }
                classify(&r).unwrap_or(Outcome::Ok)
            }
            Op::Query { opcode } => self.query(*opcode)?,
            Op::Bad { cmd, why } => {
                let r = self.run_op(
                    name,
                    ops::Request {
                        opcode: cmd.opcode,
                        channel: cmd.channel,
                        payload: cmd.payload.clone(),
                    },
                )?;
                match &r {
                    // SYS_RESET/SYS_BOOT on a data channel: sent without
                    // waiting for an answer (the session then reconnects);
                    // if the cam reboots, the port drops.
                    Ok(None) => {
                        self.await_port_drop()?;
                        Outcome::Ok
                    }
                    Ok(Some(reply)) => {
                        return Err(self.violation(format!(
                            "the cam accepted a bad request ({why}): {reply:?}"
                        )))
                    }
                    Err(_) => classify(&r).unwrap_or(Outcome::Ok),
                }
            }
            Op::SysReset => {
                let r = self.run_op(name, ops::Reset)?;
                if r.is_ok() {
                    self.await_port_drop()?;
                }
                classify(&r).unwrap_or(Outcome::Ok)
            }
        };
        self.outcome(name, o)
    }

    /// After a request without answer that may reboot the cam: the
    /// application waits for the port to drop, as a user of a rebooting
    /// cam does.
    fn await_port_drop(&mut self) -> Result<(), super::Violation> {
        let wait = self.session.config().timeout.saturating_mul(4);
        let end = self.now + wait;
        self.run_until(end, |w| !w.port_open)?;
        Ok(())
    }

    fn read(&mut self, ch: ChannelId, offset: u32, len: u32) -> Result<Outcome, super::Violation> {
        let r = self.run_op(
            "read",
            ops::ReadAt {
                id: ch,
                offset,
                len,
            },
        )?;
        let Ok(data) = &r else {
            if ch == ChannelId::STDOUT {
                self.model.stdout.anchored = false;
            }
            return Ok(classify(&r).unwrap_or(Outcome::Ok));
        };
        self.stats.payload_bytes += data.len() as u64;
        if ch == ChannelId::STDOUT {
            if let Err(e) = self.model.stdout.check_unanchored_read(data) {
                return Err(self.violation(e));
            }
            return Ok(Outcome::Ok);
        }
        if let Some(b) = self.model.users.get_mut(&ch.0) {
            if data.len() != len as usize {
                return Err(self.violation(format!(
                    "a read of {len} bytes at {offset} of {ch:?} returned {} bytes",
                    data.len()
                )));
            }
            if let Err(e) = b.check_read(offset, data) {
                return Err(self.violation(format!("read of {ch:?}: {e}")));
            }
        }
        Ok(Outcome::Ok)
    }

    fn write(
        &mut self,
        ch: ChannelId,
        offset: u32,
        data: &[u8],
    ) -> Result<Outcome, super::Violation> {
        let r = self.run_op(
            "write",
            ops::WriteAt {
                id: ch,
                offset,
                data: Bytes::copy_from_slice(data),
            },
        )?;
        if let Some(b) = self.model.users.get_mut(&ch.0) {
            let whole = b.in_range(offset, data.len());
            match &r {
                Ok(()) if whole => {
                    b.write(offset, data);
                    self.stats.payload_bytes += data.len() as u64;
                }
                Ok(()) => {
                    let size = b.len();
                    return Err(self.violation(format!(
                        "a write of {} bytes at {offset} of {ch:?} ({size} bytes) succeeded",
                        data.len()
                    )));
                }
                Err(_) => {
                    // The part inside the buffer may have been written.
                    let end = b.len().saturating_sub(offset as usize).min(data.len());
                    if (offset as usize) < b.len() {
                        b.maybe_write(offset, &data[..end]);
                    }
                }
            }
        }
        Ok(classify(&r).unwrap_or(Outcome::Ok))
    }

    fn exec(&mut self, script: &[u8]) -> Result<Outcome, super::Violation> {
        self.model.exec_credits.push(script.to_vec());
        let before = self.cam.run_count();
        let r = self.run_op(
            "upload",
            ops::Exec {
                script: Bytes::copy_from_slice(script),
            },
        )?;
        self.check_runs()?;
        let runs = (before..self.cam.run_count())
            .filter(|&i| self.cam.run(i).as_deref() == Some(script))
            .count() as u64;
        if r.is_ok() {
            if runs == 0 {
                return Err(self.violation(format!(
                    "Exec of a {}-byte script succeeded but the cam never ran it",
                    script.len()
                )));
            }
            self.stats.uploads_ok += 1;
            self.stats.payload_bytes += script.len() as u64;
        }
        if runs > 1 {
            self.stats.reexecutions += runs - 1;
            // Without faults no EXEC answer or script-started event is
            // lost: exactly once.
            if self.app.quiet {
                return Err(
                    self.violation(format!("Exec ran its script {runs} times with faults off"))
                );
            }
        }
        Ok(classify(&r).unwrap_or(Outcome::Ok))
    }

    fn renegotiate(&mut self, want: Wanted, full: bool) -> Result<Outcome, super::Violation> {
        let mut cfg = self.session.config().clone();
        cfg.crc = want.crc;
        cfg.seq = want.seq;
        cfg.ack = want.ack;
        cfg.events = want.events;
        cfg.max_payload = want.max_payload;
        self.session.set_config(cfg);
        let r = if full {
            self.run_op("reconnect", ops::Resync)?
        } else {
            self.run_op("renegotiate", ops::UpdateCaps)?
        };
        if r.is_ok() {
            let caps = self.session.caps();
            let supported = self.setup.device.supported;
            let asked = CapFlags::NONE
                .set(CapFlags::CRC, want.crc)
                .set(CapFlags::SEQ, want.seq)
                .set(CapFlags::ACK, want.ack)
                .set(CapFlags::EVENTS, want.events);
            if caps.flags.0 & !(asked.0 & supported.0) != 0 {
                return Err(self.violation(format!(
                    "the session negotiated {caps:?}, more than asked ({asked:?}) and supported ({supported:?})"
                )));
            }
        }
        Ok(classify(&r).unwrap_or(Outcome::Ok))
    }

    fn query(&mut self, opcode: Opcode) -> Result<Outcome, super::Violation> {
        let o = match opcode {
            Opcode::PROTO_STATS => {
                let r = self.run_op("query", ops::GetDeviceStats)?;
                classify(&r)
            }
            Opcode::PROTO_VERSION => {
                let r = self.run_op("query", ops::GetVersion)?;
                if let Ok(v) = &r {
                    if *v != self.cam.sim.board().version {
                        return Err(self.violation(format!(
                            "PROTO_VERSION {v:?}, the cam's is {:?}",
                            self.cam.sim.board().version
                        )));
                    }
                }
                classify(&r)
            }
            Opcode::SYS_INFO => {
                let r = self.run_op("query", ops::GetSystemInfo)?;
                classify(&r)
            }
            Opcode::SYS_MEMORY => {
                let r = self.run_op("query", ops::GetMemoryStats)?;
                classify(&r)
            }
            _ => {
                let r = self.run_op("query", ops::Request::new(opcode, ChannelId::SYSTEM, &[]))?;
                classify(&r)
            }
        };
        Ok(o.unwrap_or(Outcome::Ok))
    }
}
