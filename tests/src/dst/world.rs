//! The simulated world: the shipped host [`Session`], the shipped cam
//! ([`SimCam`](omv_sim::cam::SimCam), in [`DstCam`]) and the faulty link on
//! one virtual clock, stepped deterministically on a single thread.
//!
//! [`World::pump`] is the driver loop of `omv-blocking`'s `driver.rs` on
//! virtual time: it writes what the session transmits onto the link,
//! carries out its port commands (a reopen clears what was in flight and
//! tells the cam), hands it the bytes and timers that are due, and does
//! the same for the cam; when nothing moves, time jumps to the next
//! wake-up. [`World::run_op`] runs one session operation and enforces its
//! time budget: the session's own deadline
//! ([`SessionConfig::deadline_for`](omv_session::SessionConfig::deadline_for)
//! of the operation's size, 10 s + 20 s per MiB by default): an operation
//! ends, with its output or a typed error, by then.

use omv_proto::framer::{Frame, Framer, FramerConfig, Role};
use omv_proto::{Duration, Instant};
use omv_session::{Error, EventKind, Operation, PortCommand, Session};

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

/// Short name of a session error for the failure counters.
pub fn error_kind(e: &Error) -> String {
    match e {
        Error::Timeout { .. } => "timeout".into(),
        Error::Checksum { .. } => "nak_checksum".into(),
        Error::Sequence { .. } => "nak_sequence".into(),
        Error::Nak { status, .. } => format!("nak_{}", status.name().unwrap_or("?")),
        Error::UnexpectedResponse { .. } => "unexpected_response".into(),
        Error::LostPacket { .. } => "lost_packet".into(),
        Error::ResyncFailed { .. } => "resync_failed".into(),
        Error::NotConnected => "not_connected".into(),
        Error::Busy => "busy".into(),
        Error::InvalidArgument(_) => "invalid_argument".into(),
        Error::Malformed { .. } => "malformed".into(),
        Error::Overflow { .. } => "overflow".into(),
        Error::Rebooted { .. } => "rebooted".into(),
        Error::DeadlineExceeded { .. } => "deadline_exceeded".into(),
        Error::Cancelled { .. } => "cancelled".into(),
        Error::Endpoint { .. } => "endpoint".into(),
        _ => "other".into(),
    }
}

/// Something the cam suffers at a scheduled instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CamAction {
    /// Stop reading and answering for a while.
    Stall(Duration),
    /// A silent protocol reset.
    ProtocolReset,
    /// A reboot (the port drops: the host is told).
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

/// The host application's state (see the `driver` module).
#[derive(Clone, Debug, Default)]
pub struct App {
    /// Faults are off: the link must recover after at most one failure.
    pub quiet: bool,
    /// Failures still tolerated in this quiet phase (one, before the
    /// first success).
    pub recovery_left: u32,
    /// [`World::external_resets`] when the operation started.
    pub silent_at_start: u64,
}

/// The world. See the module documentation.
pub struct World {
    /// Virtual time.
    pub now: Instant,
    /// The shipped host session.
    pub session: Session,
    /// The port is open (false after a reboot dropped it, until the
    /// application opens it again).
    pub port_open: bool,
    /// The cam.
    pub cam: DstCam,
    /// The cam's boot definition.
    pub setup: CamSetup,
    h2c: Wire,
    c2h: Wire,
    /// Packet fault injection (omv-proto's `fault` module).
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
    /// Cam faults so far (resets, reboots).
    pub disruptions: u64,
    /// The operation in progress (for reports).
    pub op_label: String,
    /// The host application's state.
    pub app: App,
    /// The session reported CHANNEL_REGISTERED/UNREGISTERED since cleared.
    pub saw_list_event: bool,
    tbuf: Vec<u8>,
    /// The cam's reboot counter last seen (a SYS_RESET reboots it).
    reboots_seen: u64,
    /// Soft reboots (scripts that ended) of the cam, and SOFT_REBOOT
    /// events the session reported, counted by [`World::unheard_soft_reboot`].
    soft_seen: (u64, u64),
    /// The session's resync count when a soft reboot went unheard.
    pub unheard_since: Option<u64>,
    /// The session's resync count and the cam's silent resets when it
    /// last changed.
    resync_mark: (u64, u64),
    /// The cam's retransmit give-ups (each a protocol reset the host is
    /// not told of), summed over its incarnations, and its counter now.
    give_ups: (u64, u32),
    /// Packets the session put on the link.
    pub host_packets: u64,
    /// Silent protocol resets injected.
    injected_resets: u64,
    /// With `--deliveries`: frames the host-bound bytes as the host
    /// receives them, to log what reached it.
    host_rx: Option<Framer>,
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

impl World {
    /// A world at time zero; the port is closed, the session not connected.
    pub fn new(
        session: omv_session::SessionConfig,
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
            session: Session::new(session),
            port_open: false,
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
            disruptions: 0,
            op_label: "setup".into(),
            app: App::default(),
            saw_list_event: false,
            tbuf: Vec::new(),
            reboots_seen: 0,
            soft_seen: (0, 0),
            unheard_since: None,
            resync_mark: (0, 0),
            give_ups: (0, 0),
            host_packets: 0,
            injected_resets: 0,
            host_rx: None,
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
    /// the session asks for, in force on the host's endpoint and on the
    /// cam, and supported by the cam (a SET_CAPS may be in flight while a
    /// packet is damaged).
    pub fn guard(&self) -> Guard {
        let c = self.session.config();
        let s = self.setup.device.supported;
        let h = self.session.caps().flags;
        let m = self.cam.sim.endpoint().caps().flags;
        let st = self.cam.sim.endpoint().startup_caps().flags;
        Guard {
            crc: c.crc && s.crc() && h.crc() && m.crc() && st.crc(),
            seq: c.seq && s.seq() && h.seq() && m.seq() && st.seq(),
            ack: c.ack && s.ack() && h.ack() && m.ack() && st.ack(),
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
                let faults: Vec<&str> = fate.kinds().map(|k| k.name()).collect();
                format!("{} {s} {}", dir.name(), faults.join(","))
            });
        }
    }

    fn deliver_to_host(&mut self, c: Chunk) {
        self.trace
            .mix(&[0xD1, c.at.as_micros(), c.bytes.len() as u64]);
        if c.intact_ends > 1 {
            self.stats.note("read_ending_2plus_packets");
        }
        if self.trace.deliveries {
            self.trace
                .log(self.now, || format!("   host <- {} bytes", c.bytes.len()));
            let rx = self.host_rx.get_or_insert_with(|| {
                Framer::new(FramerConfig::new(Role::Host, true, omv_proto::MAX_PAYLOAD))
            });
            rx.push(&c.bytes);
            while let Some(f) = rx.next(None) {
                if let Frame::Packet(p) = f {
                    let mut bytes = Vec::new();
                    p.encode_into(true, &mut bytes);
                    self.trace
                        .log(self.now, || format!("   host got {}", summarize(&bytes)));
                }
            }
        }
        if !self.port_open {
            return;
        }
        let dups = self.session.host_stats().duplicates;
        self.session.handle_input(self.now, &c.bytes);
        if self.session.host_stats().duplicates > dups {
            // With CRC off the cam resends without RTX (PROTOCOL.md
            // section 4): the host recognised such a copy by its content.
            self.stats.note(if self.session.caps().flags.crc() {
                "host_dropped_rtx_copy"
            } else {
                "host_dropped_crc_off_copy"
            });
        }
    }

    fn deliver_to_cam(&mut self, c: Chunk) -> Result<(), Violation> {
        self.trace
            .mix(&[0xD2, c.at.as_micros(), c.bytes.len() as u64]);
        if c.intact_ends > 1 {
            self.stats.note("read_ending_2plus_packets");
        }
        if self.trace.deliveries {
            self.trace.log(self.now, || {
                format!(
                    "   cam <- {} bytes (cam seq {})",
                    c.bytes.len(),
                    self.cam.sim.endpoint().sequence()
                )
            });
        }
        self.cam.handle_input(self.now, &c.bytes);
        self.check_runs()
    }

    /// Every script the runner received since the last check must be
    /// exactly one an `Exec` was started for.
    pub fn check_runs(&mut self) -> Result<(), Violation> {
        while self.model.runs_seen < self.cam.run_count() {
            let i = self.model.runs_seen;
            let Some(script) = self.cam.run(i) else { break };
            if let Err(e) = self.model.on_run(i, &script) {
                return Err(self.violation(e));
            }
            self.stats.script_runs += 1;
            self.trace.mix(&[0xE0, i as u64, fnv1a(&script)]);
            self.trace.log(self.now, || {
                format!("cam runs script {i} ({} bytes)", script.len())
            });
        }
        Ok(())
    }

    /// The cam reboots: the port drops (the session is told at once, as a
    /// driver is by its port's I/O error), what was in flight is lost.
    fn reboot(&mut self, keep_user: bool) {
        self.cam.reboot(keep_user);
        self.reboots_seen = self.cam.sim.stats().reboots;
        self.model.on_reboot(keep_user);
        self.h2c.clear();
        self.c2h.clear();
        self.stall_until = None;
        self.disruptions += 1;
        if self.port_open {
            self.port_open = false;
            self.session.port_closed();
        }
        self.stats.note("reboot");
        self.trace.mix(&[0xE3, u64::from(keep_user)]);
        self.trace.log(self.now, || {
            format!("cam reboots (user channels kept: {keep_user}); the port drops")
        });
    }

    fn apply(&mut self, a: CamAction) -> Result<(), Violation> {
        match a {
            CamAction::Stall(d) => {
                self.inj.counts.add(Dir::HostToCam, FaultKind::Stall);
                let until = self.now + d;
                self.stall_until = Some(self.stall_until.map_or(until, |t| t.max(until)));
                self.trace.mix(&[0xE2, d.as_micros() as u64]);
                self.trace.log(self.now, || format!("cam stalls for {d:?}"));
            }
            CamAction::ProtocolReset => {
                self.inj
                    .counts
                    .add(Dir::HostToCam, FaultKind::ProtocolReset);
                self.cam.protocol_reset();
                self.injected_resets += 1;
                self.model.on_protocol_reinit();
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
                    self.cam.sim.send_event(e.channel, e.event);
                }
                self.trace.mix(&[0xE5, evs.len() as u64]);
                self.trace
                    .log(self.now, || format!("cam sends {} events", evs.len()));
            }
        }
        self.check_runs()
    }

    /// A SYS_RESET the host sent reached the cam: it reboots (keeping the
    /// user channels' contents, as the API-registered channels are).
    fn after_cam(&mut self) {
        let reboots = self.cam.sim.stats().reboots;
        if reboots > self.reboots_seen {
            self.reboots_seen = reboots;
            self.cam.sim.port_closed();
            self.stats.note("sys_reset_reboot");
            self.model.on_reboot(true);
            self.cam.incarnation += 1;
            self.h2c.clear();
            self.c2h.clear();
            if self.port_open {
                self.port_open = false;
                self.session.port_closed();
            }
            self.trace.log(self.now, || {
                "cam reboots on SYS_RESET; the port drops".into()
            });
        }
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
                    self.after_cam();
                    moved = true;
                }
            }
            self.tbuf.clear();
            while self
                .session
                .poll_transmit(self.now, &mut self.tbuf)
                .is_some()
            {
                let p = std::mem::take(&mut self.tbuf);
                if self.port_open {
                    self.host_packets += 1;
                    self.send(Dir::HostToCam, p);
                }
                moved = true;
            }
            while let Some(cmd) = self.session.poll_port_command() {
                moved = true;
                match cmd {
                    PortCommand::Reopen => {
                        // Closing the port ends what the cam was sending
                        // and drops what was in flight.
                        self.stats.note("port_reopen");
                        self.h2c.clear();
                        self.c2h.clear();
                        self.cam.sim.port_reopened();
                        self.trace.mix(&[0xE7]);
                        self.trace.log(self.now, || "host reopens the port".into());
                        self.session.port_command_done(self.now, self.port_open);
                    }
                    _ => self.session.port_command_done(self.now, false),
                }
            }
            if !self.stalled() {
                if self.cam.poll_timeout().is_some_and(|t| t <= self.now) {
                    self.cam.handle_timeout(self.now);
                    self.check_runs()?;
                    self.after_cam();
                    timers = true;
                }
                while let Some(p) = self.cam.poll_transmit(self.now) {
                    if self.port_open {
                        self.send(Dir::CamToHost, p);
                    }
                    moved = true;
                }
            }
            if self.session.poll_timeout().is_some_and(|t| t <= self.now) {
                self.session.handle_timeout(self.now);
                timers = true;
            }
            let te = self.cam.sim.endpoint().stats().transport_errors;
            if te != self.give_ups.1 {
                let (sum, last) = self.give_ups;
                // A reboot starts the counter over.
                let new = if te >= last { te - last } else { te };
                self.give_ups = (sum + u64::from(new), te);
                self.stats.note("cam_retransmit_give_up");
            }
            if self.session.resync_count() != self.resync_mark.0 {
                self.resync_mark = (self.session.resync_count(), self.silent_resets());
            }
            while let Some(e) = self.session.poll_event() {
                self.stats.events += 1;
                if matches!(
                    e.kind,
                    EventKind::ChannelRegistered | EventKind::ChannelUnregistered
                ) {
                    self.saw_list_event = true;
                }
                self.trace
                    .mix(&[0xE6, u64::from(e.raw.channel.0), u64::from(e.raw.event)]);
            }
            if moved {
                timer_spins = 0;
            } else if timers {
                timer_spins += 1;
                if timer_spins > 1000 {
                    return Err(self.violation(format!(
                        "livelock: timers keep firing at the same instant (session {:?}, cam {:?})",
                        self.session.poll_timeout(),
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
        let mut t = min_opt(self.c2h.next_due(), self.session.poll_timeout());
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

    /// Protocol resets of the cam that only a SOFT_REBOOT event could
    /// tell the host: scripts that ended, and retransmit give-ups and
    /// injected silent resets (never told).
    pub fn silent_resets(&self) -> u64 {
        self.cam.sim.stats().soft_reboots + self.give_ups.0 + self.injected_resets
    }

    /// The silent resets the host has no part in: scripts that ended and
    /// injected resets. A retransmit give-up is not one of them: with
    /// faults off only the host's own early asks (NAKs of packets still
    /// arriving) can exhaust the cam's resends.
    pub fn external_resets(&self) -> u64 {
        self.cam.sim.stats().soft_reboots + self.injected_resets
    }

    /// A script ended or the cam gave up a retransmission (it restarted
    /// its protocol with its start-up caps) and the session was not told (events off on either side, or
    /// the event lost): until the session resyncs, host and cam may
    /// disagree, and the first request may fail. Updated before each
    /// operation; true while such a soft reboot is pending.
    pub fn unheard_soft_reboot(&mut self) -> bool {
        let cam = self.silent_resets();
        let heard = self.session.event_state().soft_reboots;
        let (c0, h0) = self.soft_seen;
        if cam.saturating_sub(c0) > heard.saturating_sub(h0) {
            self.unheard_since = Some(self.session.resync_count());
            self.stats.note("soft_reboot_unheard");
        }
        self.soft_seen = (cam, heard);
        if self
            .unheard_since
            .is_some_and(|r| self.session.resync_count() > r)
        {
            self.unheard_since = None;
        }
        self.unheard_since.is_some()
    }

    /// The cam soft-rebooted since the session's last resync: the session
    /// resyncs before its next request (or after it fails, if it was not
    /// told), so the two sides may disagree until then.
    pub fn soft_reboot_since_resync(&mut self) -> bool {
        let (r, soft) = (self.session.resync_count(), self.silent_resets());
        if r != self.resync_mark.0 {
            self.resync_mark = (r, soft);
        }
        soft > self.resync_mark.1
    }

    /// Runs one session operation to its end, within the session's
    /// deadline for it. `Ok(Err(e))` is a typed error the operation ended
    /// with; `Err(v)` a broken invariant (no end within the deadline, a
    /// usage error, a livelock).
    pub fn run_op<O: Operation>(
        &mut self,
        name: &'static str,
        op: O,
    ) -> Result<Result<O::Output, Error>, Violation> {
        self.stats.requests += 1;
        let pending = match self.session.start(self.now, op) {
            Ok(p) => p,
            Err(Error::NotConnected) => return Ok(Err(Error::NotConnected)),
            Err(e) => {
                return Err(self.violation(format!("the session refused to start {name}: {e}")))
            }
        };
        let size = self.session.progress().map_or(0, |p| p.total);
        let budget = self.session.config().deadline_for(size);
        let start = self.now;
        self.trace.mix(&[0xC0, size]);
        self.trace.log(self.now, || {
            format!("start {name} ({size} bytes, budget {budget:?})")
        });
        loop {
            self.pump()?;
            if let Some(out) = self.session.take_output(&pending) {
                let used = self.now.saturating_duration_since(start);
                let permille = (used.as_micros() * 1000 / budget.as_micros().max(1)) as u64;
                self.stats.worst_budget_permille = self.stats.worst_budget_permille.max(permille);
                self.trace.mix(&[0xC1, u64::from(out.is_ok())]);
                self.trace.log(self.now, || match &out {
                    Ok(_) => format!("  -> {name} ok after {used:?}"),
                    Err(e) => format!("  -> {name} failed after {used:?}: {e}"),
                });
                return Ok(out);
            }
            match self.next_wakeup() {
                Some(t) if t <= start + budget => self.now = t,
                next => {
                    return Err(self.violation(format!(
                        "{name} did not end within its deadline of {budget:?} ({size} bytes); next wake-up {next:?}, session {:?}, progress {:?}",
                        self.session.poll_timeout(),
                        self.session.progress()
                    )))
                }
            }
        }
    }
}

/// `opcode/seq/flags/len` of a packet, for the log.
fn summarize(p: &[u8]) -> String {
    match omv_proto::header::Header::decode(p) {
        Ok(h) => {
            let body = p.get(omv_proto::header::HEADER_SIZE..).unwrap_or(&[]);
            let caps = match omv_proto::caps::Caps::decode(body) {
                Ok(c)
                    if h.length == 16
                        && (h.opcode == omv_proto::Opcode::PROTO_SET_CAPS
                            || h.opcode == omv_proto::Opcode::PROTO_GET_CAPS) =>
                {
                    format!(" {:?}/{}", c.flags, c.max_payload)
                }
                _ => String::new(),
            };
            format!(
                "{} ch{} seq{} {:?} len{}{caps}",
                h.opcode, h.channel.0, h.sequence, h.flags, h.length
            )
        }
        Err(_) => format!("{} bytes", p.len()),
    }
}
