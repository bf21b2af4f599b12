//! The simulated world: host endpoint, cam and link on one virtual clock,
//! stepped deterministically on a single thread.
//!
//! [`World::pump`] moves everything that can move at the current instant
//! (due chunks, packets the endpoints want to send, due timers, scheduled
//! cam faults); when nothing moves, time jumps to the next wake-up. A
//! request is run with [`World::call`], which also enforces its time
//! budget: a request with timeout T whose answer spans at most N packets
//! must end, one way or another, within (N + 1)·2·T of virtual time (each
//! packet is awaited for T, which cam events may stretch to 2·T); a
//! connect with K SYNC attempts within (K + 2)·2·T.

use std::collections::VecDeque;

use bytes::Bytes;
use omv_proto::caps::{CapFlags, Caps};
use omv_proto::device::{DeviceEvent, ResetCause};
use omv_proto::host::{Command, Completion, HostConfig, HostEndpoint, Reply, RequestError};
use omv_proto::stats::Stats;
use omv_proto::{Duration, Instant, Status};

use super::cam::{CamSetup, DstCam};
use super::dice::{fnv1a, Dice};
use super::faults::{Dir, FaultKind, FaultProfile, Guard};
use super::model::Model;
use super::report::RunStats;
use super::trace::Trace;
use super::wire::{Chunk, Injector, Timing, Wire};
use super::workload::EventSpec;

/// An invariant the run broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// What went wrong.
    pub what: String,
    /// Virtual time.
    pub at: Instant,
    /// The operation in progress.
    pub op: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = self.at.as_micros();
        write!(
            f,
            "{} (at {}.{:06} s, during {})",
            self.what,
            us / 1_000_000,
            us % 1_000_000,
            self.op
        )
    }
}

/// Why a request (or an operation) failed, as the host application sees
/// it: a typed error from the endpoint, or the link dropping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpError {
    /// The endpoint's error.
    Request(RequestError),
    /// The port went away (the cam rebooted).
    LinkDropped,
}

impl OpError {
    /// Short name for the failure counters.
    pub fn kind(&self) -> String {
        match self {
            OpError::Request(RequestError::Nak(s)) => format!("nak_{}", s.name().unwrap_or("?")),
            OpError::Request(RequestError::Timeout(_)) => "timeout".into(),
            OpError::Request(RequestError::ResyncFailed { .. }) => "resync_failed".into(),
            OpError::Request(RequestError::UnexpectedOpcode { .. }) => "unexpected_opcode".into(),
            OpError::Request(RequestError::Malformed(_)) => "malformed".into(),
            OpError::Request(RequestError::LostPacket { .. }) => "lost_packet".into(),
            OpError::Request(e) => format!("other: {e}"),
            OpError::LinkDropped => "link_dropped".into(),
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpError::Request(e) => write!(f, "{e}"),
            OpError::LinkDropped => f.write_str("link dropped"),
        }
    }
}

/// A request's outcome at the application level: a reply, or a NAK that
/// is an answer (INVALID, FAILED, BUSY) rather than a link problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// ACK or data.
    Reply(Reply),
    /// An application NAK.
    Nak(Status),
}

/// True for NAKs that answer the request (the cam understood it); the
/// others (CHECKSUM, SEQUENCE, OVERFLOW, TIMEOUT...) are link problems.
pub fn is_answer_nak(s: Status) -> bool {
    s == Status::INVALID || s == Status::FAILED || s == Status::BUSY
}

/// Something the cam suffers at a scheduled instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CamAction {
    /// Stop reading and answering for a while.
    Stall(Duration),
    /// A silent protocol reset.
    ProtocolReset,
    /// A reboot (the host is told: the port drops).
    Reboot {
        /// Keep the user channels' contents.
        keep_user: bool,
    },
    /// The application sends events.
    Events(Vec<EventSpec>),
}

/// Link timing and splitting, drawn per seed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkSetup {
    /// Host-to-cam timing.
    pub h2c: Timing,
    /// Cam-to-host timing.
    pub c2h: Timing,
    /// Probability of splitting a packet into chunks.
    pub split: f64,
}

/// The world. See the module documentation.
pub struct World {
    /// Virtual time.
    pub now: Instant,
    /// The host endpoint.
    pub host: HostEndpoint,
    /// The cam.
    pub cam: DstCam,
    /// The cam's boot definition.
    pub setup: CamSetup,
    h2c: Wire,
    c2h: Wire,
    /// Packet fault injection.
    pub inj: Injector,
    stall_until: Option<Instant>,
    actions: Vec<(Instant, u64, CamAction)>,
    action_seq: u64,
    /// What the cam should contain.
    pub model: Model,
    /// Trace hash and log.
    pub trace: Trace,
    /// Counters.
    pub stats: RunStats,
    completions: VecDeque<Completion>,
    pub(super) link_dropped: bool,
    /// Resets the host was not part of (fault resets, reboots, retransmit
    /// give-ups) so far.
    pub disruptions: u64,
    // Counter invariants, per cam incarnation.
    cam_prev: Stats,
    cam_intact_in: u64,
    cam_packets_out: u64,
    host_intact_in: u64,
    host_packets_out: u64,
    stats_reply_prev: Option<(u32, Stats)>,
    /// The operation in progress (for reports).
    pub op_label: String,
    /// The host application's state.
    pub app: App,
    /// The host received CHANNEL_REGISTERED/UNREGISTERED since last cleared.
    pub saw_list_event: bool,
    /// The cam reset its protocol state after it last applied SET_CAPS (a
    /// late SYNC): its caps are the defaults, whatever the host negotiated.
    pub cam_reset_since_caps: bool,
    /// Cam protocol resets of any cause (SYNC, give-up, fault, reboot).
    pub cam_resets: u64,
}

/// The host application's state (see the `driver` module).
#[derive(Clone, Debug, Default)]
pub struct App {
    /// A link-level failure happened: resync before the next request.
    pub needs_resync: bool,
    /// The channel list changed (CHANNEL_REGISTERED seen): refresh it.
    pub list_stale: bool,
    /// The host's view of the channel list.
    pub host_view: Option<Vec<omv_proto::channel::ChannelEntry>>,
    /// Faults are off: the link must recover after at most one failure.
    pub quiet: bool,
    /// Link failures still tolerated in this quiet phase (one, before the
    /// first success).
    pub recovery_left: u32,
    /// Attempts per operation in fault phases.
    pub attempts: u32,
    /// Bytes of the current write already acknowledged.
    pub write_done: usize,
}

/// How long a host may wait per packet, in timeouts: the timeout T, which
/// events from the cam may extend to at most 2·T after the last progress
/// (request sent, fragment received).
pub const WAIT_FACTOR: u32 = 2;

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// The caps a connect with `config` must end with against a cam announcing `cam`.
pub fn expected_caps(config: &HostConfig, cam: Caps) -> Caps {
    let flags = CapFlags::NONE
        .set(CapFlags::CRC, config.crc)
        .set(CapFlags::SEQ, config.seq)
        .set(CapFlags::ACK, config.ack)
        .set(CapFlags::EVENTS, config.events);
    Caps {
        flags: CapFlags(flags.0 & cam.flags.0),
        max_payload: config
            .max_payload
            .min(cam.max_payload)
            .clamp(omv_proto::MIN_PAYLOAD, omv_proto::MAX_PAYLOAD),
    }
}

impl World {
    /// A world at time zero; the host is not connected yet.
    pub fn new(
        host: HostConfig,
        setup: CamSetup,
        link: LinkSetup,
        faults: FaultProfile,
        fault_dice: Dice,
        trace_lines: usize,
    ) -> World {
        let cam = DstCam::new(&setup);
        let model = Model::new(
            cam.users().map(|(id, s)| (id.0, s.clone())),
            cam.stdout_capacity(),
        );
        World {
            now: Instant::ZERO,
            host: HostEndpoint::new(host),
            cam,
            setup,
            h2c: Wire::new(Dir::HostToCam, link.h2c),
            c2h: Wire::new(Dir::CamToHost, link.c2h),
            inj: Injector::new(faults, link.split, fault_dice),
            stall_until: None,
            actions: Vec::new(),
            action_seq: 0,
            model,
            trace: Trace::new(trace_lines),
            stats: RunStats::default(),
            completions: VecDeque::new(),
            link_dropped: false,
            disruptions: 0,
            cam_prev: Stats::default(),
            cam_intact_in: 0,
            cam_packets_out: 0,
            host_intact_in: 0,
            host_packets_out: 0,
            stats_reply_prev: None,
            op_label: "setup".into(),
            app: App::default(),
            saw_list_event: false,
            cam_reset_since_caps: false,
            cam_resets: 0,
        }
    }

    /// A violation at the current instant.
    pub fn violation(&self, what: impl Into<String>) -> Violation {
        Violation {
            what: what.into(),
            at: self.now,
            op: self.op_label.clone(),
        }
    }

    /// The capabilities every party relies on now (see [`Guard`]): those
    /// in force on both sides and in the caps being negotiated (what the
    /// host asks for, masked by what the cam supports), since a SET_CAPS
    /// may be in flight while a packet is damaged.
    pub fn guard(&self) -> Guard {
        let c = self.host.config();
        let s = self.setup.config.supported;
        let h = self.host.caps().flags;
        let m = self.cam.ep.caps().flags;
        Guard {
            crc: c.crc && s.crc() && h.crc() && m.crc(),
            seq: c.seq && s.seq() && h.seq() && m.seq(),
            ack: c.ack && s.ack() && h.ack() && m.ack(),
        }
    }

    /// True while the cam is stalled.
    pub fn stalled(&self) -> bool {
        self.stall_until.is_some()
    }

    /// Schedules a cam action `after` from now.
    pub fn schedule(&mut self, after: Duration, action: CamAction) {
        let at = self.now + after;
        self.action_seq += 1;
        let seq = self.action_seq;
        let i = self
            .actions
            .iter()
            .position(|(t, s, _)| (*t, *s) > (at, seq))
            .unwrap_or(self.actions.len());
        self.actions.insert(i, (at, seq, action));
    }

    /// Faults stop (quiet phase) or resume.
    pub fn set_faults(&mut self, on: bool) {
        self.inj.enabled = on;
        if !on {
            self.actions
                .retain(|(_, _, a)| matches!(a, CamAction::Events(_)));
            if self.stall_until.take().is_some() {
                self.trace
                    .log(self.now, || "stall cut short: faults stop".into());
            }
        }
        self.trace.mix(&[0xFA, u64::from(on)]);
        self.trace.log(self.now, || {
            format!("faults {}", if on { "on" } else { "off" })
        });
    }

    /// True when nothing is in flight and the cam is running.
    pub fn quiescent(&self) -> bool {
        self.h2c.is_empty() && self.c2h.is_empty() && !self.stalled()
    }

    fn send(&mut self, dir: Dir, packet: Vec<u8>) {
        let guard = self.guard();
        let now = self.now;
        let (len, h) = (packet.len(), fnv1a(&packet));
        let trace_line = self.trace.logging().then(|| summarize(&packet));
        let wire = match dir {
            Dir::HostToCam => &mut self.h2c,
            Dir::CamToHost => &mut self.c2h,
        };
        let long_garbage = self.inj.long_garbage;
        let fate = self.inj.transmit(wire, now, packet, guard);
        if self.inj.long_garbage > long_garbage {
            self.stats.note("garbage_burst_over_max_packet");
        }
        self.trace.mix(&[
            dir as u64,
            now.as_micros(),
            len as u64,
            h,
            u64::from(fate.0),
        ]);
        if let Some(s) = trace_line {
            self.trace.log(now, || {
                let faults: Vec<&str> = FaultKind::ALL
                    .iter()
                    .filter(|k| fate.0 & (1 << (**k as u16)) != 0)
                    .map(|k| k.name())
                    .collect();
                format!("{} {s} {}", dir.name(), faults.join(","))
            });
        }
    }

    fn deliver_to_host(&mut self, c: Chunk) {
        self.trace
            .mix(&[0xD1, c.at.as_micros(), c.bytes.len() as u64]);
        self.host_intact_in += c.intact_ends;
        if c.intact_ends > 1 {
            self.stats.note("read_ending_2plus_packets");
        }
        if self.trace.deliveries {
            self.trace.log(self.now, || {
                format!(
                    "   host <- {} bytes (host seq {})",
                    c.bytes.len(),
                    self.host.sequence()
                )
            });
        }
        let dups = self.host.stats().duplicates;
        self.host.handle_input(self.now, &c.bytes);
        if self.host.stats().duplicates > dups {
            // With CRC off the cam resends without RTX (PROTOCOL.md
            // section 4): the host recognised such a copy by its content.
            self.stats.note(if self.host.caps().flags.crc() {
                "host_dropped_rtx_copy"
            } else {
                "host_dropped_crc_off_copy"
            });
        }
    }

    fn deliver_to_cam(&mut self, c: Chunk) -> Result<(), Violation> {
        self.trace
            .mix(&[0xD2, c.at.as_micros(), c.bytes.len() as u64]);
        self.cam_intact_in += c.intact_ends;
        if c.intact_ends > 1 {
            self.stats.note("read_ending_2plus_packets");
        }
        if self.trace.deliveries {
            self.trace.log(self.now, || {
                format!(
                    "   cam <- {} bytes (cam seq {})",
                    c.bytes.len(),
                    self.cam.ep.sequence()
                )
            });
        }
        self.cam.handle_input(self.now, &c.bytes);
        self.after_cam()
    }

    /// Handles what the cam reported after processing input or time.
    fn after_cam(&mut self) -> Result<(), Violation> {
        let mut reboot = false;
        while let Some(ev) = self.cam.ep.poll_event() {
            match ev {
                DeviceEvent::ProtocolReset(cause) => {
                    self.cam_reset_since_caps = true;
                    self.cam_resets += 1;
                    self.model.on_protocol_reset();
                    let name = match cause {
                        ResetCause::Sync => "sync",
                        ResetCause::RetransmitGaveUp => {
                            self.disruptions += 1;
                            "retransmit_gave_up"
                        }
                        _ => {
                            self.disruptions += 1;
                            "restart"
                        }
                    };
                    *self.stats.cam_resets.entry(name).or_default() += 1;
                    self.trace.mix(&[0xE0, cause as u64]);
                    self.trace.log(self.now, || format!("cam reset: {name}"));
                }
                DeviceEvent::ResetRequested => reboot = true,
                DeviceEvent::CapsChanged(_) => self.cam_reset_since_caps = false,
                DeviceEvent::BootRequested => {}
            }
        }
        if reboot {
            self.stats.cam_action("sys_reset_reboot");
            self.reboot(false);
        }
        self.check_runs()
    }

    /// Every script the runner received must match an EXEC credit.
    fn check_runs(&mut self) -> Result<(), Violation> {
        let n = self.cam.run_count();
        while self.model.runs_seen < n {
            let i = self.model.runs_seen;
            let script = self.cam.run(i);
            self.trace.mix(&[0xE1, i as u64, fnv1a(&script)]);
            self.trace.log(self.now, || {
                format!("runner got script {i} ({} bytes)", script.len())
            });
            if let Err(e) = self.model.on_run(i, &script) {
                return Err(self.violation(e));
            }
        }
        Ok(())
    }

    fn new_incarnation(&mut self) {
        self.cam_prev = Stats::default();
        self.cam_intact_in = 0;
        self.cam_packets_out = 0;
    }

    /// The cam reboots; the port drops, so the host is told.
    pub fn reboot(&mut self, keep_user: bool) {
        self.cam_resets += 1;
        self.cam_reset_since_caps = true;
        self.cam.reboot(keep_user);
        self.model.on_reboot(keep_user);
        self.new_incarnation();
        self.h2c.clear();
        self.c2h.clear();
        self.stall_until = None;
        self.host.disconnect();
        self.link_dropped = true;
        self.disruptions += 1;
        self.trace.mix(&[0xE2, u64::from(keep_user)]);
        self.trace.log(self.now, || {
            format!("cam reboot (keep user data: {keep_user})")
        });
    }

    fn apply(&mut self, action: CamAction) -> Result<(), Violation> {
        match action {
            CamAction::Stall(d) => {
                self.inj.counts.add(Dir::HostToCam, FaultKind::Stall);
                let until = self.now + d;
                self.stall_until = Some(self.stall_until.map_or(until, |t| t.max(until)));
                self.trace.mix(&[0xE3, d.as_micros() as u64]);
                self.trace.log(self.now, || format!("cam stalls for {d:?}"));
            }
            CamAction::ProtocolReset => {
                self.inj
                    .counts
                    .add(Dir::HostToCam, FaultKind::ProtocolReset);
                self.cam_resets += 1;
                self.cam_reset_since_caps = true;
                self.cam.protocol_reset();
                self.model.on_protocol_reinit();
                self.new_incarnation();
                self.disruptions += 1;
                self.trace.mix(&[0xE4]);
                self.trace
                    .log(self.now, || "cam protocol reset (silent)".into());
            }
            CamAction::Reboot { keep_user } => {
                self.inj.counts.add(Dir::HostToCam, FaultKind::Reboot);
                self.reboot(keep_user);
            }
            CamAction::Events(evs) => {
                self.stats.cam_action("event_burst");
                for e in &evs {
                    self.cam.ep.send_event(e.channel, e.event, e.ack_req);
                }
                self.trace.mix(&[0xE5, evs.len() as u64]);
                self.trace
                    .log(self.now, || format!("cam sends {} events", evs.len()));
            }
        }
        self.check_runs()
    }

    /// Moves everything that can move at the current instant.
    pub fn pump(&mut self) -> Result<(), Violation> {
        let mut timer_spins = 0u32;
        loop {
            let mut moved = false;
            let mut timers = false;
            while self.actions.first().is_some_and(|(t, _, _)| *t <= self.now) {
                let (_, _, a) = self.actions.remove(0);
                self.apply(a)?;
                moved = true;
            }
            if self.stall_until.is_some_and(|t| t <= self.now) {
                self.stall_until = None;
                self.trace.log(self.now, || "cam resumes".into());
                moved = true;
            }
            while let Some(c) = self.c2h.pop_due(self.now) {
                self.deliver_to_host(c);
                moved = true;
            }
            if !self.stalled() {
                while let Some(c) = self.h2c.pop_due(self.now) {
                    self.deliver_to_cam(c)?;
                    moved = true;
                }
            }
            while let Some(p) = self.host.poll_transmit() {
                self.host_packets_out += 1;
                self.send(Dir::HostToCam, p);
                moved = true;
            }
            if !self.stalled() {
                if self.cam.poll_timeout().is_some_and(|t| t <= self.now) {
                    self.cam.handle_timeout(self.now);
                    self.after_cam()?;
                    timers = true;
                }
                while let Some(p) = self.cam.poll_transmit(self.now) {
                    self.cam_packets_out += 1;
                    self.send(Dir::CamToHost, p);
                    moved = true;
                }
            }
            if self.host.poll_timeout().is_some_and(|t| t <= self.now) {
                self.host.handle_timeout(self.now);
                timers = true;
            }
            while let Some(c) = self.host.poll_completion() {
                self.completions.push_back(c);
            }
            while let Some(e) = self.host.poll_event() {
                self.stats.events += 1;
                if e.channel == omv_proto::ChannelId::SYSTEM
                    && (e.event == omv_proto::host::CamEvent::CHANNEL_REGISTERED
                        || e.event == omv_proto::host::CamEvent::CHANNEL_UNREGISTERED)
                {
                    self.saw_list_event = true;
                }
                self.trace
                    .mix(&[0xE6, u64::from(e.channel.0), u64::from(e.event)]);
            }
            if moved {
                timer_spins = 0;
            } else if timers {
                timer_spins += 1;
                if timer_spins > 1000 {
                    return Err(self.violation(format!(
                        "livelock: timers keep firing at the same instant (host {:?}, cam {:?})",
                        self.host.poll_timeout(),
                        self.cam.poll_timeout()
                    )));
                }
            } else {
                return Ok(());
            }
        }
    }

    /// The next instant something happens.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let mut t = min_opt(self.c2h.next_due(), self.host.poll_timeout());
        t = min_opt(t, self.actions.first().map(|a| a.0));
        t = min_opt(t, self.stall_until);
        if !self.stalled() {
            t = min_opt(t, self.h2c.next_due());
            t = min_opt(t, self.cam.poll_timeout());
        }
        t.map(|t| t.max(self.now))
    }

    /// Runs until `done` or `deadline`; true if `done`.
    pub fn run_until(
        &mut self,
        deadline: Instant,
        mut done: impl FnMut(&World) -> bool,
    ) -> Result<bool, Violation> {
        loop {
            self.pump()?;
            if done(self) {
                return Ok(true);
            }
            match self.next_wakeup() {
                Some(t) if t <= deadline => self.now = t,
                _ => return Ok(false),
            }
        }
    }

    /// Lets `d` of virtual time pass.
    pub fn idle(&mut self, d: Duration) -> Result<(), Violation> {
        let end = self.now + d;
        self.run_until(end, |_| false)?;
        self.now = self.now.max(end);
        self.pump()
    }

    /// Runs until nothing is in flight (at most `max`); true if reached.
    pub fn settle(&mut self, max: Duration) -> Result<bool, Violation> {
        let end = self.now + max;
        self.run_until(end, |w| w.quiescent())
    }

    fn min_piece(&self) -> usize {
        let rp = self.setup.config.read_piece.unwrap_or(u16::MAX);
        usize::from(rp.clamp(1, omv_proto::MIN_PAYLOAD))
    }

    fn budget(&mut self, start: Instant, bound: Duration) {
        let used = self.now.saturating_duration_since(start).as_micros();
        let permille = (used * 1000 / bound.as_micros().max(1)) as u64;
        self.stats.worst_budget_permille = self.stats.worst_budget_permille.max(permille);
    }

    /// Sends one request and waits for its outcome, within its budget.
    /// `resp_max` is the longest answer it can get (for the budget).
    pub fn call(
        &mut self,
        cmd: &Command,
        resp_max: usize,
    ) -> Result<Result<Answer, OpError>, Violation> {
        let t = self.host.config().timeout;
        let packets = resp_max.div_ceil(self.min_piece()).max(1) as u32;
        let bound = t.saturating_mul(WAIT_FACTOR * (packets + 1));
        self.stats.requests += 1;
        if !self.completions.is_empty() {
            return Err(self.violation("a completion arrived with no request in flight"));
        }
        // A reboot before this call already disconnected the host.
        self.link_dropped = false;
        if let Err(e) = self.host.request(self.now, cmd) {
            return Err(self.violation(format!("the host refused a well-formed request: {e}")));
        }
        self.trace
            .mix(&[0xC0, u64::from(cmd.opcode.0), cmd.payload.len() as u64]);
        self.trace.log(self.now, || {
            format!(
                "request {} on {:?} ({} bytes)",
                cmd.opcode,
                cmd.channel,
                cmd.payload.len()
            )
        });
        let start = self.now;
        let done = self.run_until(start + bound, |w| {
            !w.completions.is_empty() || w.link_dropped
        })?;
        if std::mem::take(&mut self.link_dropped) {
            self.completions.clear();
            return Ok(Err(OpError::LinkDropped));
        }
        if !done {
            return Err(self.violation(format!(
                "{} did not end within its budget of {bound:?} (timeout {t:?}, up to {packets} packets); host deadline {:?}",
                cmd.opcode,
                self.host.poll_timeout()
            )));
        }
        self.budget(start, bound);
        let r = match self.completions.pop_front() {
            Some(Completion::Request(r)) => r,
            other => {
                return Err(self.violation(format!("request ended with {other:?}")));
            }
        };
        self.trace.log(self.now, || format!("  -> {r:?}"));
        self.trace.mix(&[0xC1, u64::from(r.is_ok())]);
        Ok(match r {
            Ok(reply) => Ok(Answer::Reply(reply)),
            Err(RequestError::Nak(s)) if is_answer_nak(s) => Ok(Answer::Nak(s)),
            Err(
                e @ (RequestError::NotConnected
                | RequestError::Busy
                | RequestError::PayloadTooLarge { .. }
                | RequestError::InvalidCommand(_)),
            ) => {
                return Err(self.violation(format!("request completed with a usage error: {e}")));
            }
            Err(e) => Err(OpError::Request(e)),
        })
    }

    /// A connect (`renegotiate` false) or renegotiation, within its budget:
    /// max_retry SYNC attempts then GET_CAPS and SET_CAPS, T each.
    pub fn connect_call(&mut self, renegotiate: bool) -> Result<Result<Caps, OpError>, Violation> {
        let c = self.host.config();
        let t = c.timeout;
        let rounds = if renegotiate {
            2
        } else {
            u32::from(c.max_retry.max(1)) + 2
        };
        let bound = t.saturating_mul(WAIT_FACTOR * rounds);
        self.stats.requests += 1;
        if !self.completions.is_empty() {
            return Err(self.violation("a completion arrived with no request in flight"));
        }
        self.link_dropped = false;
        if renegotiate {
            if let Err(e) = self.host.renegotiate(self.now) {
                return Err(self.violation(format!("renegotiate refused: {e}")));
            }
        } else {
            self.host.connect(self.now);
        }
        self.trace.mix(&[0xC2, u64::from(renegotiate)]);
        self.trace.log(self.now, || {
            format!(
                "{} with {:?}",
                if renegotiate {
                    "renegotiate"
                } else {
                    "connect"
                },
                self.host.config()
            )
        });
        let start = self.now;
        let done = self.run_until(start + bound, |w| {
            !w.completions.is_empty() || w.link_dropped
        })?;
        if std::mem::take(&mut self.link_dropped) {
            self.completions.clear();
            return Ok(Err(OpError::LinkDropped));
        }
        if !done {
            return Err(self.violation(format!(
                "{} did not end within its budget of {bound:?}; host deadline {:?}",
                if renegotiate {
                    "renegotiation"
                } else {
                    "connect"
                },
                self.host.poll_timeout()
            )));
        }
        self.budget(start, bound);
        let r = match self.completions.pop_front() {
            Some(Completion::Connected(r)) => r,
            other => return Err(self.violation(format!("connect ended with {other:?}"))),
        };
        self.trace.log(self.now, || format!("  -> {r:?}"));
        self.trace.mix(&[0xC3, u64::from(r.is_ok())]);
        Ok(r.map_err(OpError::Request))
    }

    /// Counter invariants: the cam's counters only grow (within one
    /// incarnation) and are bounded by the packets the link carried; the
    /// host's likewise.
    pub fn check_counters(&mut self) -> Result<(), Violation> {
        let s = self.cam.ep.stats();
        let p = self.cam_prev;
        let fields = |s: &Stats| {
            [
                s.sent,
                s.received,
                s.checksum_errors,
                s.sequence_errors,
                s.retransmits,
                s.transport_errors,
                s.sent_events,
            ]
        };
        if fields(&s).iter().zip(fields(&p).iter()).any(|(a, b)| a < b) {
            return Err(self.violation(format!("cam counters went backwards: {p:?} -> {s:?}")));
        }
        if u64::from(s.received) > self.cam_intact_in {
            return Err(self.violation(format!(
                "cam counted {} packets received but the link delivered only {} intact",
                s.received, self.cam_intact_in
            )));
        }
        if u64::from(s.sent) < self.cam_packets_out {
            return Err(self.violation(format!(
                "cam counted {} packets sent but put {} on the link",
                s.sent, self.cam_packets_out
            )));
        }
        if s.sent_events > s.sent || s.retransmits > s.sent {
            return Err(self.violation(format!("cam counters inconsistent: {s:?}")));
        }
        let h = self.host.stats();
        if h.received > self.host_intact_in || h.sent < self.host_packets_out {
            return Err(self.violation(format!(
                "host counters {h:?} disagree with the link (delivered {} intact, sent {})",
                self.host_intact_in, self.host_packets_out
            )));
        }
        self.cam_prev = s;
        Ok(())
    }

    /// A PROTO_STATS answer: between the previous answer (same incarnation)
    /// and the cam's counters now. Only for answers from the incarnation
    /// running now (no reset during the request).
    pub fn check_stats_reply(&mut self, data: &Bytes) -> Result<(), Violation> {
        let got = match Stats::decode(data) {
            Ok(s) => s,
            Err(e) => return Err(self.violation(format!("PROTO_STATS answer undecodable: {e}"))),
        };
        let now = self.cam.ep.stats();
        let le = |a: &Stats, b: &Stats| {
            a.sent <= b.sent
                && a.received <= b.received
                && a.checksum_errors <= b.checksum_errors
                && a.sequence_errors <= b.sequence_errors
                && a.retransmits <= b.retransmits
                && a.transport_errors <= b.transport_errors
                && a.sent_events <= b.sent_events
        };
        if !le(&got, &now) {
            return Err(self.violation(format!(
                "PROTO_STATS reported {got:?}, more than the cam's {now:?}"
            )));
        }
        let inc = self.cam.incarnation;
        if let Some((i, prev)) = self.stats_reply_prev {
            if i == inc && !le(&prev, &got) {
                return Err(
                    self.violation(format!("PROTO_STATS went backwards: {prev:?} then {got:?}"))
                );
            }
        }
        self.stats_reply_prev = Some((inc, got));
        Ok(())
    }
}

/// `opcode/seq/flags/len` of a packet, for the log.
fn summarize(p: &[u8]) -> String {
    match omv_proto::header::Header::decode(p) {
        Ok(h) => format!(
            "{} ch{} seq{} {:?} len{}",
            h.opcode, h.channel.0, h.sequence, h.flags, h.length
        ),
        Err(_) => format!("{} bytes", p.len()),
    }
}
