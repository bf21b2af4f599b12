//! [`Session`]: the engine that runs one operation at a time over a
//! [`HostEndpoint`], with the resync, retry and resume policy.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::any::Any;
use core::marker::PhantomData;

use bytes::Bytes;
use omv_proto::caps::Caps;
use omv_proto::channel::ChannelEntry;
use omv_proto::fault::{Entropy, StreamDrops};
use omv_proto::header::Header;
use omv_proto::host::{response_limit, Completion, HostEndpoint, HostStats};
use omv_proto::rng::SimRng;
use omv_proto::version::Version;
use omv_proto::{Duration, Flags, Instant, Opcode};

use crate::config::SessionConfig;
use crate::error::{Error, Result};
use crate::events::{Event, EventKind, EventState};
use crate::ops::Operation;
use crate::task::{Action, Input, Task};
use crate::types::SystemInfo;

/// How long a driver keeps a serial port closed on [`PortCommand::Reopen`]
/// before opening it again, so that the other end sees the hang-up (a
/// pseudo-terminal reports it only while no one has the port open).
pub const REOPEN_PAUSE: Duration = Duration::from_millis(50);

/// Something the driver must do to the port for the session, then report
/// with [`Session::port_command_done`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortCommand {
    /// Close the port and open it again (TCP: reconnect). What unsticks a
    /// firmware still sending an abandoned read (PROTOCOL.md section 6).
    Reopen,
}

/// A started operation; pass it to [`Session::take_output`] for the result.
#[derive(Debug)]
#[must_use = "the operation's output is taken with this handle"]
pub struct Pending<O: Operation> {
    serial: u64,
    _op: PhantomData<fn() -> O>,
}

/// Progress of the transfer in flight: bytes done of the total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes transferred (received or acknowledged).
    pub done: u64,
    /// Bytes of the whole transfer.
    pub total: u64,
}

/// Counters of the session's policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Resyncs (the connect's included).
    pub resyncs: u64,
    /// Port reopens asked of the driver.
    pub reopens: u64,
    /// Operations resumed after a failure.
    pub resumes: u64,
    /// NAKs sent to ask for an overdue packet (fast retransmit).
    pub fast_naks: u64,
    /// ACKs sent again for an overdue answer (the cam may wait for one).
    pub ack_resends: u64,
    /// Requests given up early because their answer was overdue.
    pub fast_fails: u64,
    /// Packets lost on purpose by [`SessionConfig::drop_rate`] (received
    /// packets and ACKs sent).
    pub simulated_drops: u64,
}

/// Time per byte of a 921600-baud serial link (10 bits per byte): what
/// the fast threshold allows for a packet to get through the link until
/// the link's own speed is measured.
const SERIAL_BYTE_NS: u64 = 10_850;

/// Packets at least this long (long requests, an answer's long data
/// packets) measure the link's time per byte, and have their time through
/// the link added to the fast threshold of the packet awaited.
const BYTE_TIME_MIN_LEN: usize = 512;

/// Size classes of the fast-threshold backoff (payload lengths by `log2`).
const BACKOFF_CLASSES: usize = 18;

/// The backoff class of a request of `len` payload bytes.
fn backoff_class(len: usize) -> usize {
    ((usize::BITS - len.leading_zeros()) as usize).min(BACKOFF_CLASSES - 1)
}

/// What the request in flight is, for error messages and timers.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    op: Opcode,
    channel: u8,
    offset: Option<u32>,
    /// Give up after `thr × 3` (resumable reads) or `thr` (status
    /// answers) without progress instead of the full timeout: the task
    /// resumes, or reports after a resync.
    fast_fail: bool,
    /// The answer is retransmitted by the cam (data packets with ACKs on).
    resent_by_cam: bool,
    /// The answer is data, not a status packet.
    data_answer: bool,
    sent_at: Instant,
    /// Progress seen so far (`HostEndpoint::progress_at`).
    seen: Instant,
    got_first: bool,
    /// Fast-retransmit steps taken since the last progress.
    steps: u8,
    max_answer: Option<u32>,
    /// The request's payload length.
    len: usize,
    /// The longest data packet of the answer (its payload: at most the
    /// negotiated `max_payload`; 0 for a status answer).
    packet: usize,
    /// Answer bytes received at `seen`.
    received: usize,
}

#[derive(Debug)]
enum Phase {
    Idle,
    /// A request is in flight.
    Request(InFlight),
    /// Resyncing; `round` counts handshake rounds, `reopened` whether the
    /// port was reopened already.
    Resync {
        round: u8,
        reopened: bool,
        then: After,
    },
    /// Waiting for [`Session::port_command_done`]; `alive`: the cam
    /// answered SYNC (rounds may go on if the port cannot be reopened).
    Port {
        then: After,
        alive: bool,
    },
    /// The task waits until then ([`Action::Wait`]), then resumes.
    Wait {
        until: Instant,
    },
}

/// What follows a resync.
#[derive(Debug)]
enum After {
    /// Tell the task it may resume (with the data received before).
    Resume { partial: Bytes, rebooted: bool },
    /// Fail the task with this error (a non-retrying primitive).
    Fail(Error),
}

struct Running {
    serial: u64,
    task: Box<dyn Task>,
    deadline: Instant,
    budget: Duration,
    /// Retry after retryable failures (named operations) or only resync
    /// and report (by-id primitives).
    retries: bool,
    /// Whether a port reopen may be asked for.
    may_reopen: bool,
    /// The cam soft-rebooted since the task started.
    rebooted: bool,
}

/// The host session. See the crate documentation for the driver loop.
pub struct Session {
    config: SessionConfig,
    host: HostEndpoint,
    phase: Phase,
    running: Option<Running>,
    output: Option<(u64, Result<Box<dyn Any + Send>>)>,
    serial: u64,
    port_cmds: VecDeque<PortCommand>,
    pub(crate) cache: Cache,
    events: VecDeque<Event>,
    connected: bool,
    /// A resync is due before the next request (a SOFT_REBOOT, an
    /// abandoned request).
    needs_resync: bool,
    /// SOFT_REBOOT came while a request was in flight: its answer may
    /// still come (the cam answers what it received before its reset)
    /// until this instant; a resync follows either way, before the next
    /// request.
    reboot_grace: Option<Instant>,
    stats: SessionStats,
    /// The last round trips (request to first packet), microseconds; the
    /// estimate is their minimum, so that a sample inflated by a loss and
    /// the cam's 500 ms resend does not make the threshold useless.
    rtt_us: [u64; 8],
    rtt_at: usize,
    progress: Option<Progress>,
    /// The task waits for a resync before its first step.
    pending_start: bool,
    /// The resync in flight uses short attempts.
    resync_fast: bool,
    /// Rounds of the resync in flight in which SYNC got no answer.
    resync_silent: u8,
    /// Requests given up early on their status answer (fast fails of
    /// writes and the like), by request size class (`log2` of the payload
    /// length): each doubles the fast threshold (up to 64×) of requests of
    /// its class, so that a request whose answer takes longer than the
    /// threshold (a large write on a slow link: the round trip is measured
    /// on small packets) is not given up on forever. An answer of the class
    /// in less than half its threshold takes one step off.
    fast_backoff: [u8; BACKOFF_CLASSES],
    /// Time per request byte on the link, in ns, measured on long
    /// requests' answers ([`SERIAL_BYTE_NS`] until then): a request's
    /// status answer cannot come before the request is through the link.
    byte_ns: u64,
    /// The stock `drop_rate` (`None` when zero).
    drops: Option<StreamDrops>,
    /// What survived `drops` of the last input.
    rx_kept: Vec<u8>,
    /// The connect in flight, if any (see [`Connecting`]).
    connecting: Option<Connecting>,
    /// The endpoint's received-packet count, and when it last grew: when
    /// the cam was last heard from.
    heard: (u64, Instant),
}

/// A connect's handshake rounds: it starts over while its deadline allows
/// (a lost SYNC, GET_CAPS or SET_CAPS answer on a lossy link), except
/// against a cam that has sent nothing at all for `max_retry × timeout`.
#[derive(Debug)]
struct Connecting {
    /// When the connect started.
    start: Instant,
    /// The endpoint's received-packet count then.
    heard: u64,
    /// Packets other than events received before the round in flight.
    round_rx: u64,
    /// The failed round before, reported when the deadline ends the connect.
    last_err: Option<Error>,
}

/// What the session knows about the cam, shared with the tasks.
#[derive(Debug, Default)]
pub struct Cache {
    pub channels: Vec<ChannelEntry>,
    pub stale: bool,
    pub version: Option<Version>,
    pub sysinfo: Option<SystemInfo>,
    pub state: EventState,
    pub caps: Caps,
    /// Channels locked (bit per id) since the last resync.
    pub locks: u32,
    pub stdout_carry: Vec<u8>,
    /// The buffer of the streamed read in flight (lent by its task): the
    /// session appends the answer's fragments here as they arrive.
    pub read_buf: Vec<u8>,
    /// [`SessionConfig::unacked_read_max`].
    pub unacked_read_max: Option<u32>,
}

impl Cache {
    pub fn find(&self, name: &str) -> Option<&ChannelEntry> {
        self.channels.iter().find(|c| c.name == name)
    }
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("connected", &self.connected)
            .field("caps", &self.host.caps())
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session that is not connected yet.
    pub fn new(config: SessionConfig) -> Session {
        let drops = drops_for(&config);
        let unacked_read_max = config.unacked_read_max;
        Session {
            host: HostEndpoint::new(config.host_config()),
            config,
            phase: Phase::Idle,
            running: None,
            output: None,
            serial: 0,
            port_cmds: VecDeque::new(),
            cache: Cache {
                unacked_read_max,
                ..Cache::default()
            },
            events: VecDeque::new(),
            connected: false,
            needs_resync: false,
            reboot_grace: None,
            stats: SessionStats::default(),
            rtt_us: [0; 8],
            rtt_at: 0,
            progress: None,
            pending_start: false,
            resync_fast: false,
            fast_backoff: [0; BACKOFF_CLASSES],
            byte_ns: SERIAL_BYTE_NS,
            resync_silent: 0,
            drops,
            rx_kept: Vec::new(),
            connecting: None,
            heard: (0, Instant::ZERO),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Changes the configuration; caps apply at the next (re)negotiation.
    pub fn set_config(&mut self, config: SessionConfig) {
        self.host.set_config(config.host_config());
        if (config.drop_rate, config.seed) != (self.config.drop_rate, self.config.seed) {
            self.drops = drops_for(&config);
        }
        self.config = config;
    }

    /// Replaces the random source of [`SessionConfig::drop_rate`] (a test
    /// steering which packets are lost); no effect while the rate is zero.
    pub fn set_drop_entropy(&mut self, rng: impl Entropy + Send + 'static) {
        if let Some(d) = self.drops.as_mut() {
            d.set_entropy(rng);
        }
    }

    /// True after a successful connect, until the port is closed or a
    /// resync failed.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// True when no operation is in flight.
    pub fn is_idle(&self) -> bool {
        self.running.is_none()
    }

    /// The negotiated caps.
    pub fn caps(&self) -> Caps {
        self.host.caps()
    }

    /// False while the last handshake's caps are unconfirmed (late answers
    /// of an abandoned exchange may have completed it; see
    /// [`HostEndpoint::caps_confirmed`](omv_proto::host::HostEndpoint::caps_confirmed)):
    /// the next data answer confirms them, or fails its request and the
    /// session resyncs and retries.
    pub fn caps_confirmed(&self) -> bool {
        self.host.caps_confirmed()
    }

    /// The endpoint's counters.
    pub fn host_stats(&self) -> HostStats {
        self.host.stats()
    }

    /// The policy's counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Resyncs so far (a lock taken before a later resync is released).
    pub fn resync_count(&self) -> u64 {
        self.stats.resyncs
    }

    /// State derived from events.
    pub fn event_state(&self) -> EventState {
        self.cache.state
    }

    /// Records that the frame-ready flag was consumed (a frame was read).
    pub fn clear_frame_ready(&mut self) {
        self.cache.state.frame_ready = false;
    }

    /// The cached channel list (may be stale; operations refresh it).
    pub fn cached_channels(&self) -> &[ChannelEntry] {
        &self.cache.channels
    }

    /// True when a channel (un)registration was seen since the list was read.
    pub fn channels_stale(&self) -> bool {
        self.cache.stale
    }

    /// The cached version, if read.
    pub fn cached_version(&self) -> Option<Version> {
        self.cache.version
    }

    /// The cached system information, if read.
    pub fn cached_system_info(&self) -> Option<SystemInfo> {
        self.cache.sysinfo
    }

    /// Progress of the transfer in flight, when the operation moves data.
    pub fn progress(&self) -> Option<Progress> {
        self.progress
    }

    /// The round trip estimate: the least of the last 8 measured from a
    /// request to its answer's first packet (zero before any).
    pub fn round_trip(&self) -> Duration {
        let min = self.rtt_us.iter().copied().filter(|&v| v > 0).min();
        Duration::from_micros(min.unwrap_or(0))
    }

    /// The fast-retransmit threshold of short requests: `max(fast_min,
    /// 4 × round trip)`, at most half the per-packet timeout. Long
    /// requests given up early get a doubled threshold each time (one step
    /// off for each answered in less than half of it), and every awaited
    /// packet gets its time through the link added (see
    /// [`Session::packet_threshold`]).
    pub fn fast_threshold(&self) -> Duration {
        self.threshold(0, Duration::ZERO)
    }

    /// The fast-retransmit threshold of a data packet of the negotiated
    /// `max_payload` (a read's next packet): [`Session::fast_threshold`]
    /// plus the packet's time through the link at the measured time per
    /// byte (a 921600-baud serial link's until measured), at most half
    /// the per-packet timeout.
    pub fn packet_threshold(&self) -> Duration {
        let packet = usize::from(self.host.caps().max_payload);
        self.threshold(0, self.link_time(packet))
    }

    /// `max(fast_min, 4 × round trip)`, doubled `backoff` times, plus
    /// `through`, at most half the per-packet timeout.
    fn threshold(&self, backoff: u8, through: Duration) -> Duration {
        let t = (self.round_trip() * 4).max(self.config.fast_min);
        t.saturating_mul(1 << backoff)
            .saturating_add(through)
            .min(self.config.timeout / 2)
    }

    /// The threshold of the packet `f` awaits (raised for the request's
    /// size class after early give-ups, see `fast_backoff`): the
    /// round-trip threshold plus the time through the link of the request
    /// and of one packet of the answer, the longest it can be (a status
    /// answer is short): a packet cannot be overdue while it is still
    /// arriving (a 4 KiB packet takes 44 ms at 921600 baud).
    fn fast_threshold_for(&self, f: &InFlight) -> Duration {
        let through = self
            .link_time(f.len)
            .saturating_add(self.link_time(f.packet));
        self.threshold(self.fast_backoff[backoff_class(f.len)], through)
    }

    /// The time `bytes` take through the link at the measured rate; zero
    /// for a short packet (it goes through within the measured round trip).
    fn link_time(&self, bytes: usize) -> Duration {
        if bytes < BYTE_TIME_MIN_LEN {
            return Duration::ZERO;
        }
        Duration::from_micros((bytes as u64).saturating_mul(self.byte_ns) / 1000)
    }

    /// `len` bytes went through the link in `took` (a long request until
    /// its answer, or from one packet of an answer to the next) without
    /// being asked again: their time per byte beyond the round trip. A
    /// slower link is adopted at once, a faster one a quarter at a time.
    fn sample_byte_time(&mut self, len: usize, took: Duration) {
        if len < BYTE_TIME_MIN_LEN {
            return;
        }
        let beyond = took.saturating_sub(self.round_trip());
        let ns = u64::try_from(beyond.as_micros().saturating_mul(1000) / len as u128)
            .unwrap_or(u64::MAX);
        self.byte_ns = if ns >= self.byte_ns {
            ns
        } else {
            (self.byte_ns * 3 + ns) / 4
        };
    }

    fn sample_rtt(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        self.rtt_us[self.rtt_at % self.rtt_us.len()] = us;
        self.rtt_at = self.rtt_at.wrapping_add(1);
    }

    /// The port was closed (I/O error, or closed by the driver): every
    /// cached fact about the cam is forgotten and any operation fails.
    pub fn port_closed(&mut self) {
        self.host.disconnect();
        self.connected = false;
        self.needs_resync = false;
        self.cache.channels.clear();
        self.cache.stale = false;
        self.cache.version = None;
        self.cache.sysinfo = None;
        self.cache.stdout_carry.clear();
        self.cache.locks = 0;
        self.port_cmds.clear();
        if self.running.is_some() {
            self.finish(Err(Error::NotConnected));
        }
    }

    /// A fresh port was opened for [`ops::Connect`](crate::ops::Connect):
    /// the endpoint starts from scratch.
    pub fn port_opened(&mut self) {
        self.host = HostEndpoint::new(self.config.host_config());
        if let Some(d) = self.drops.as_mut() {
            d.clear();
        }
        self.connected = false;
        self.needs_resync = false;
        self.cache.locks = 0;
    }

    /// Starts `op`. Fails with [`Error::Busy`] while another operation is
    /// in flight, [`Error::NotConnected`] when the op needs a connection.
    pub fn start<O: Operation>(&mut self, now: Instant, op: O) -> Result<Pending<O>> {
        if self.running.is_some() {
            return Err(Error::Busy);
        }
        let connect = op.is_connect();
        if !connect && !self.connected {
            return Err(Error::NotConnected);
        }
        let retries = op.retries();
        let task = op.into_task();
        let budget = self.config.deadline_for(task.size());
        self.serial += 1;
        self.output = None;
        self.progress = if task.size() > 0 {
            Some(Progress {
                done: 0,
                total: task.size(),
            })
        } else {
            None
        };
        self.running = Some(Running {
            serial: self.serial,
            task,
            deadline: now + budget,
            budget,
            retries,
            may_reopen: !connect,
            rebooted: false,
        });
        self.connecting = connect.then(|| Connecting {
            start: now,
            heard: self.host.stats().received,
            round_rx: 0,
            last_err: None,
        });
        if self.needs_resync && !connect {
            self.needs_resync = false;
            self.begin_resync(
                now,
                After::Resume {
                    partial: Bytes::new(),
                    rebooted: false,
                },
            );
            // The task starts once the link is back.
            if let Some(r) = self.running.as_mut() {
                r.rebooted = false;
            }
            self.pending_start = true;
        } else {
            self.step(now, Input::Start);
        }
        Ok(Pending {
            serial: self.serial,
            _op: PhantomData,
        })
    }

    /// The output of a finished operation (once); `None` while it runs.
    pub fn take_output<O: Operation>(&mut self, op: &Pending<O>) -> Option<Result<O::Output>> {
        match &self.output {
            Some((serial, _)) if *serial == op.serial => {}
            _ => return None,
        }
        let (_, r) = self.output.take()?;
        Some(r.and_then(|b| {
            b.downcast::<O::Output>()
                .map(|b| *b)
                .map_err(|_| Error::InvalidArgument("operation output of another type".into()))
        }))
    }

    /// Abandons the operation in flight: it fails with [`Error::Cancelled`]
    /// and the link is resynced before the next one.
    pub fn cancel(&mut self) {
        if self.running.is_none() {
            return;
        }
        let op = match &self.phase {
            Phase::Request(f) => f.op,
            _ => Opcode::PROTO_SYNC,
        };
        if self.connected {
            self.needs_resync = true;
        }
        self.abandon_request();
        self.finish(Err(Error::Cancelled { op }));
    }

    /// Next port command for the driver.
    #[must_use]
    pub fn poll_port_command(&mut self) -> Option<PortCommand> {
        self.port_cmds.pop_front()
    }

    /// The driver carried out a [`PortCommand`]: `ok` when the port is open
    /// again.
    pub fn port_command_done(&mut self, now: Instant, ok: bool) {
        let Phase::Port { .. } = self.phase else {
            return;
        };
        let Phase::Port { then, alive } = core::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        if ok {
            // Short attempts on the fresh port too (any SYNC answer counts,
            // so a slow one is not missed): rounds go on while the cam has
            // been heard from lately (see `resync_failed`).
            self.resync_fast = self.connected;
            self.resync_silent = 0;
            self.host = HostEndpoint::new(self.host_config_now(self.resync_fast, 0));
            self.heard.0 = 0;
            if let Some(d) = self.drops.as_mut() {
                d.clear();
            }
            self.host.connect(now);
            self.stats.resyncs += 1;
            self.phase = Phase::Resync {
                round: 1,
                reopened: true,
                then,
            };
        } else if alive && self.running.as_ref().is_some_and(|r| now < r.deadline) {
            // A port that cannot be reopened (a caller's transport) and a
            // cam that answers SYNC: go on while the deadline allows.
            self.resync_fast = self.connected;
            self.handshake_round(now, 1, true, then);
        } else {
            self.connected = false;
            let e = Error::ResyncFailed {
                attempts: self.config.max_retry,
                timeout: self.config.timeout,
            };
            self.finish(Err(e));
        }
    }

    /// The next packet to write to the port, appended to `buf`; returns
    /// its length, `None` when there is nothing to send. One packet per
    /// call, so that a datagram transport (UDP) sends one per datagram;
    /// reuse `buf` (clear it after each write): this path does not
    /// allocate once `buf` has grown.
    #[must_use]
    pub fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<usize> {
        loop {
            let start = buf.len();
            let n = self.host.poll_transmit_into(buf)?;
            if let Some(d) = self.drops.as_mut() {
                let p = &buf[start..];
                if is_ack(p) && d.drops_packet(p) {
                    buf.truncate(start);
                    self.stats.simulated_drops += 1;
                    continue;
                }
            }
            return Some(n);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.host.poll_timeout();
        if let Some(r) = &self.running {
            if !matches!(self.phase, Phase::Port { .. }) {
                t = Some(t.map_or(r.deadline, |t| t.min(r.deadline)));
            }
        }
        if let Some(fast) = self.fast_deadline() {
            t = Some(t.map_or(fast, |t| t.min(fast)));
        }
        if let Phase::Wait { until } = self.phase {
            t = Some(t.map_or(until, |t| t.min(until)));
        }
        if let Some(g) = self.reboot_grace {
            t = Some(t.map_or(g, |t| t.min(g)));
        }
        t
    }

    /// Next event from the cam, classified, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Feeds bytes read from the port.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if let Some(d) = self.drops.as_mut() {
            let before = d.dropped();
            self.rx_kept.clear();
            d.filter(data, &mut self.rx_kept);
            self.stats.simulated_drops += d.dropped() - before;
            let kept = core::mem::take(&mut self.rx_kept);
            if !kept.is_empty() {
                self.host.handle_input(now, &kept);
            }
            self.rx_kept = kept;
        } else {
            self.host.handle_input(now, data);
        }
        self.after_endpoint(now);
    }

    /// Tells the session time has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(r) = &self.running {
            if now >= r.deadline && !matches!(self.phase, Phase::Port { .. }) {
                let (op, channel) = match &self.phase {
                    Phase::Request(f) => (f.op, f.channel),
                    _ => (Opcode::PROTO_SYNC, 0),
                };
                let e = Error::DeadlineExceeded {
                    op,
                    channel,
                    done: self.progress.map_or(0, |p| p.done),
                    deadline: r.budget,
                };
                // A connect that ran out of time in its handshake reports
                // the step that kept failing (a cam answering SYNC but
                // never GET_CAPS, say), as the stock host would.
                let e = match (&self.phase, self.connecting.as_mut()) {
                    (Phase::Resync { .. }, Some(c)) => c.last_err.take().unwrap_or(e),
                    _ => e,
                };
                if matches!(self.phase, Phase::Resync { .. }) {
                    self.host.set_config(self.config.host_config());
                }
                if self.connected {
                    self.needs_resync = true;
                }
                self.abandon_request();
                self.finish(Err(e));
                return;
            }
        }
        if self.reboot_grace.is_some_and(|g| now >= g) {
            self.reboot_grace = None;
            self.resync_after_reboot(now);
        }
        if let Some(fast) = self.fast_deadline() {
            if now >= fast {
                self.fast_step(now);
            }
        }
        if let Phase::Wait { until } = self.phase {
            if now >= until {
                self.phase = Phase::Idle;
                self.step(
                    now,
                    Input::Resumed {
                        partial: Bytes::new(),
                        rebooted: false,
                    },
                );
            }
        }
        self.host.handle_timeout(now);
        self.after_endpoint(now);
    }

    // ------------------------------------------------------------------

    /// The endpoint's settings after `silent` resync rounds in which SYNC
    /// got no answer at all.
    fn host_config_now(&self, fast: bool, silent: u8) -> omv_proto::host::HostConfig {
        let mut c = self.config.host_config();
        if fast {
            // In-session resyncs: the handshake's packets are tiny and the
            // cam answers at once, so wait a few round trips, not 1 s;
            // doubled after each round that got no answer at all, for a
            // loaded host or cam that answers late.
            let doubling = 1u32 << silent.min(5);
            c.timeout = (self.fast_threshold() * 2)
                .saturating_mul(doubling)
                .min(self.config.timeout);
        }
        c
    }

    fn fast_deadline(&self) -> Option<Instant> {
        let Phase::Request(f) = &self.phase else {
            return None;
        };
        // With ACKs off nothing can be asked for again: only a request
        // given up early has a fast deadline (over datagrams).
        if !self.host.caps().flags.ack() && !f.fast_fail {
            return None;
        }
        let thr = self.fast_threshold_for(f);
        let limit = match (f.resent_by_cam, f.fast_fail) {
            (true, true) => 3,
            (true, false) => 2,
            (false, _) => 1,
        };
        if f.steps >= limit {
            return None;
        }
        Some(f.seen + thr * u32::from(f.steps + 1))
    }

    /// The awaited packet is overdue: ask again, or give up early.
    fn fast_step(&mut self, now: Instant) {
        let Phase::Request(f) = &mut self.phase else {
            return;
        };
        f.steps += 1;
        let steps = f.steps;
        let f = *f;
        let (resent, fast_fail) = (f.resent_by_cam, f.fast_fail);
        let (op, channel, offset, len) = (f.op, f.channel, f.offset, f.len);
        let last = match (resent, fast_fail) {
            (true, true) => 3,
            (false, true) => 1,
            _ => u8::MAX,
        };
        if steps >= last {
            // Overdue after every ask: the request or its answer is gone
            // for good. Resync and resume rather than wait out the timeout.
            self.stats.fast_fails += 1;
            let e = Error::Timeout {
                op,
                channel,
                offset,
                timeout: self.fast_threshold_for(&f) * u32::from(steps),
            };
            if !resent && !f.data_answer {
                // A status answer (the cam never resends it): maybe
                // simply not due yet after a long request.
                let b = &mut self.fast_backoff[backoff_class(len)];
                *b = (*b + 1).min(6);
            }
            self.abandon_request();
            self.request_failed(now, e);
            return;
        }
        if steps == 1 && self.host.resend_last_ack() {
            self.stats.ack_resends += 1;
        }
        if resent && self.host.nak_awaited() {
            self.stats.fast_naks += 1;
        }
    }

    /// Forgets the endpoint's request in flight (its answer, if it comes,
    /// is dropped after the resync's SYNC); the data received so far stays
    /// for `take_partial`.
    fn abandon_request(&mut self) {
        if let Phase::Request(_) = self.phase {
            self.phase = Phase::Idle;
            self.host.abandon_request();
        }
    }

    fn after_endpoint(&mut self, now: Instant) {
        // A streamed read's fragments, into its buffer, before anything
        // (a completion, a failure's partial data) can follow them.
        let buf = &mut self.cache.read_buf;
        self.host.drain_received(|d| buf.extend_from_slice(d));
        let reboot = self.take_events();
        let received = self.host.stats().received;
        if received != self.heard.0 {
            self.heard = (received, now);
        }
        // Answers first: what arrived before a SOFT_REBOOT event (the link
        // is FIFO) was sent before the reboot. Resyncing first abandoned
        // an EXEC whose ACK came in the same read as the script's
        // SOFT_REBOOT, and ran the script again, over and over (DST seed
        // 583).
        while let Some(c) = self.host.poll_completion() {
            self.completion(now, c);
        }
        if reboot {
            self.soft_reboot(now);
        }
        if self.reboot_grace.is_some() && !matches!(self.phase, Phase::Request(_)) {
            // The request in flight at the reboot ended (its answer came,
            // or it failed into a resync): resync before the next one.
            self.reboot_grace = None;
            if self.connected && matches!(self.phase, Phase::Idle) {
                self.needs_resync = true;
            }
        }
        if let Phase::Request(f) = &self.phase {
            let got = self.host.received_len();
            if let Some(max) = f.max_answer.filter(|&m| got > m as usize) {
                // A cam sending more than asked for (fragments that never
                // end): stop now; the link is resynced before the next op.
                let e = Error::Overflow {
                    op: f.op,
                    channel: f.channel,
                    offset: f.offset.unwrap_or(0),
                    asked: max,
                    got,
                };
                self.abandon_request();
                let _ = self.host.take_partial();
                self.needs_resync = true;
                self.step(now, Input::Failed(e));
                return;
            }
        }
        if let Phase::Request(f) = &mut self.phase {
            let p = self.host.progress_at();
            let got = self.host.received_len();
            // Progress: later, or more bytes at the same instant (a link
            // faster than the clock's resolution).
            if p > f.seen || got > f.received {
                let sample = (!f.got_first && got > 0 && f.steps == 0)
                    .then(|| p.saturating_duration_since(f.sent_at));
                // From one data packet to the next, not asked again: the
                // link's time per byte (a packet is ACKed before the next).
                let packet = (f.got_first && f.steps == 0).then(|| {
                    (
                        got.saturating_sub(f.received),
                        p.saturating_duration_since(f.seen),
                    )
                });
                if got > 0 {
                    f.got_first = true;
                }
                f.seen = p;
                f.received = got;
                f.steps = 0;
                if let Some(d) = sample {
                    self.sample_rtt(d);
                }
                if let Some((bytes, took)) = packet {
                    self.sample_byte_time(bytes, took);
                }
            }
            if let (Some(r), Some(pr)) = (&self.running, self.progress.as_mut()) {
                pr.done = r.task.done() + self.host.received_len() as u64;
            }
        }
    }

    /// Takes the endpoint's events; true when one was SOFT_REBOOT.
    fn take_events(&mut self) -> bool {
        if self.host.take_channels_changed() {
            self.cache.stale = true;
        }
        let mut reboot = false;
        while let Some(raw) = self.host.poll_event() {
            let e = Event::classify(raw, &self.cache.channels);
            log::debug!("event: {e}");
            self.cache.state.record(&e);
            if e.kind == EventKind::SoftReboot {
                reboot = true;
            }
            if self.config.event_queue == 0 {
                self.cache.state.dropped += 1;
                continue;
            }
            if self.events.len() >= self.config.event_queue {
                self.events.pop_front();
                self.cache.state.dropped += 1;
            }
            self.events.push_back(e);
        }
        reboot
    }

    /// SOFT_REBOOT: the cam re-initialised its protocol (sequence 0,
    /// start-up caps) and dropped its dynamic channels. Resync at once.
    fn soft_reboot(&mut self, now: Instant) {
        log::info!("the cam soft-rebooted: resynchronizing");
        self.cache.stale = true;
        self.cache.locks = 0;
        if !self.connected {
            return;
        }
        if let Some(r) = self.running.as_mut() {
            r.rebooted = true;
        }
        match &self.phase {
            // Nothing of the answer yet: it may still come, sent before
            // the cam's reset (a consuming read's, stdout's, carries text
            // that exists nowhere else). Wait one threshold for it, then
            // resync. An answer already under way is cut at once: a read
            // across the reboot fails (or starts over) as any other.
            Phase::Request(f) if !f.got_first && self.host.received_len() == 0 => {
                if self.reboot_grace.is_none() {
                    self.reboot_grace = Some(now + self.fast_threshold_for(f));
                }
            }
            Phase::Request(_) => self.resync_after_reboot(now),
            Phase::Idle => self.needs_resync = true,
            // The task goes on after a resync instead of after its wait.
            Phase::Wait { .. } => self.begin_resync(
                now,
                After::Resume {
                    partial: Bytes::new(),
                    rebooted: true,
                },
            ),
            // The reboot may have undone the handshake's SET_CAPS: start
            // the resync over.
            Phase::Resync { .. } => {
                self.host.connect(now);
            }
            Phase::Port { .. } => {}
        }
    }

    /// The resync a SOFT_REBOOT asks for, once the request in flight at
    /// the reboot (if any) had its chance to be answered: the task resumes
    /// after it, told of the reboot.
    fn resync_after_reboot(&mut self, now: Instant) {
        if !self.connected {
            return;
        }
        let partial = match self.phase {
            Phase::Request(_) => {
                self.abandon_request();
                self.host.take_partial()
            }
            Phase::Idle => Bytes::new(),
            _ => return,
        };
        if self.running.is_none() {
            self.needs_resync = true;
            return;
        }
        self.begin_resync(
            now,
            After::Resume {
                partial,
                rebooted: true,
            },
        );
    }

    fn completion(&mut self, now: Instant, c: Completion) {
        match (&self.phase, c) {
            (Phase::Request(_), Completion::Request(r)) => {
                let Phase::Request(f) = core::mem::replace(&mut self.phase, Phase::Idle) else {
                    return;
                };
                if !f.got_first && f.steps == 0 {
                    // Karn: no sample from an answer that was asked for again.
                    self.sample_rtt(now.saturating_duration_since(f.sent_at));
                }
                match r {
                    Ok(reply) => {
                        // An answer well within the threshold: it was
                        // raised too far (by losses rather than a slow
                        // request); come down a step.
                        let took = now.saturating_duration_since(f.sent_at);
                        if f.steps == 0 {
                            self.sample_byte_time(f.len, took);
                        }
                        let class = backoff_class(f.len);
                        if self.fast_backoff[class] > 0 && took * 2 < self.fast_threshold_for(&f) {
                            self.fast_backoff[class] -= 1;
                        }
                        self.step(now, Input::Reply(reply))
                    }
                    Err(e) => {
                        let e = Error::from_request(e, f.op, f.channel, f.offset);
                        self.request_failed(now, e);
                    }
                }
            }
            (Phase::Resync { .. }, Completion::Connected(r)) => {
                let Phase::Resync {
                    round,
                    reopened,
                    then,
                } = core::mem::replace(&mut self.phase, Phase::Idle)
                else {
                    return;
                };
                match r {
                    Ok(caps) => {
                        self.host.set_config(self.config.host_config());
                        log::debug!("link up, caps {caps:?}");
                        self.connected = true;
                        self.cache.caps = caps;
                        self.cache.locks = 0;
                        match then {
                            After::Resume { partial, rebooted } => {
                                let rebooted =
                                    rebooted || self.running.as_ref().is_some_and(|r| r.rebooted);
                                if let Some(r) = self.running.as_mut() {
                                    r.rebooted = false;
                                }
                                if core::mem::take(&mut self.pending_start) {
                                    self.step(now, Input::Start);
                                } else {
                                    self.stats.resumes += 1;
                                    self.step(now, Input::Resumed { partial, rebooted });
                                }
                            }
                            After::Fail(e) => self.step(now, Input::Failed(e)),
                        }
                    }
                    Err(e) => {
                        let e = match e {
                            omv_proto::host::RequestError::ResyncFailed { attempts } => {
                                Error::ResyncFailed {
                                    attempts,
                                    timeout: self.host.config().timeout,
                                }
                            }
                            other => {
                                // The handshake step that failed: GET_CAPS,
                                // SET_CAPS or the confirming PROTO_VERSION.
                                let op = self
                                    .host
                                    .last_request()
                                    .filter(|o| *o != Opcode::PROTO_SYNC)
                                    .unwrap_or(Opcode::PROTO_GET_CAPS);
                                Error::from_request(other, op, 0, None)
                            }
                        };
                        self.resync_failed(now, round, reopened, then, e);
                    }
                }
            }
            _ => {}
        }
    }

    /// Starts handshake round `round` (a full one: SYNC, GET_CAPS,
    /// SET_CAPS) with the attempt timeouts the failures so far call for.
    fn handshake_round(&mut self, now: Instant, round: u8, reopened: bool, then: After) {
        self.host
            .set_config(self.host_config_now(self.resync_fast, self.resync_silent));
        self.host.connect(now);
        self.phase = Phase::Resync {
            round,
            reopened,
            then,
        };
    }

    fn resync_failed(&mut self, now: Instant, round: u8, reopened: bool, then: After, e: Error) {
        let connect = self.running.as_ref().is_some_and(|r| !r.may_reopen);
        if connect {
            self.connect_round_failed(now, round, reopened, then, e);
            return;
        }
        let rounds = self.config.max_retry.max(1);
        // In a session the attempts are short, so rounds go on after a
        // silent SYNC. A cam that answers SYNC but loses a GET_CAPS/SET_CAPS
        // answer is alive, and so is one heard from within the last
        // max_retry × timeout (a lossy link loses whole rounds): the
        // handshake starts over up to 2 × max_retry times, then the port is
        // reopened (a firmware still sending an abandoned read answers SYNC
        // but nothing after it, PROTOCOL.md section 6), then rounds go on
        // while the operation's deadline allows.
        let silent_for = self.config.timeout.saturating_mul(u32::from(rounds));
        let heard_lately = now.saturating_duration_since(self.heard.1) < silent_for;
        let alive = (e.is_retryable() || heard_lately)
            && (round < rounds.saturating_mul(2) || reopened)
            && self.running.as_ref().is_some_and(|r| now < r.deadline);
        let again = alive || (self.resync_fast && matches!(e, Error::ResyncFailed { .. }));
        if (round < rounds || alive) && again {
            log::debug!("handshake failed ({e}), starting over");
            if matches!(e, Error::ResyncFailed { .. }) {
                self.resync_silent = self.resync_silent.saturating_add(1);
            }
            self.handshake_round(now, round.saturating_add(1), reopened, then);
            return;
        }
        self.host.set_config(self.config.host_config());
        if !reopened && self.running.is_some() {
            log::warn!("resync failed ({e}): reopening the port");
            self.stats.reopens += 1;
            self.port_cmds.push_back(PortCommand::Reopen);
            let alive = e.is_retryable();
            self.phase = Phase::Port { then, alive };
            return;
        }
        self.connected = false;
        self.finish(Err(e));
    }

    /// A connect's handshake round failed. It starts over, on a lossy link
    /// as on a slow one, until the connect's deadline (the deadline then
    /// reports this round's error), unless the error is not retryable or
    /// the cam has sent nothing at all for `max_retry × timeout` (the stock
    /// host's SYNC budget: a silent cam fails as promptly as with it).
    /// Rounds use short timeouts (twice the fast threshold, as a resync in
    /// a session), so that a lost answer costs a few round trips, not the
    /// per-packet timeout. A round that got nothing at all, or got packets
    /// it did not use (late answers of an earlier attempt: a slow link or
    /// cam), doubles them (up to the timeout); a round that lost an answer
    /// and got nothing else keeps them (a loss, not slowness: an answer
    /// lost on the way never comes).
    fn connect_round_failed(
        &mut self,
        now: Instant,
        round: u8,
        reopened: bool,
        then: After,
        e: Error,
    ) {
        let Some(deadline) = self.running.as_ref().map(|r| r.deadline) else {
            return;
        };
        let silent_for = self
            .config
            .timeout
            .saturating_mul(u32::from(self.config.max_retry.max(1)));
        let st = self.host.stats();
        let rx = st.received.saturating_sub(st.events);
        let (silent, round_rx) = match &self.connecting {
            Some(c) => (
                st.received == c.heard && now.saturating_duration_since(c.start) >= silent_for,
                rx.saturating_sub(c.round_rx),
            ),
            None => (false, 0),
        };
        // The answers the round used: SYNC's once GET_CAPS timed out, and
        // GET_CAPS's too once SET_CAPS did (at most: a round that kept the
        // caps sends SET_CAPS after SYNC).
        let used = match &e {
            Error::Timeout { op, .. } if *op == Opcode::PROTO_GET_CAPS => 1,
            Error::Timeout { op, .. } if *op == Opcode::PROTO_SET_CAPS => 2,
            Error::ResyncFailed { .. } => 0,
            _ => round_rx,
        };
        let slower = round_rx == 0 || round_rx > used;
        let again = now < deadline
            && match &e {
                Error::ResyncFailed { .. } => !silent,
                _ => e.is_retryable(),
            };
        if again {
            log::debug!("handshake failed ({e}), starting over");
            if slower {
                self.resync_silent = self.resync_silent.saturating_add(1);
            }
            self.resync_fast = true;
            if let Some(c) = self.connecting.as_mut() {
                c.last_err = Some(e);
                c.round_rx = rx;
            }
            self.handshake_round(now, round.saturating_add(1), reopened, then);
            return;
        }
        self.host.set_config(self.config.host_config());
        self.connected = false;
        self.finish(Err(e));
    }

    fn request_failed(&mut self, now: Instant, e: Error) {
        let Some(r) = &self.running else {
            return;
        };
        let partial = self.host.take_partial();
        if matches!(e, Error::Overflow { .. }) {
            // The endpoint's own bound (host::response_limit): the rest of
            // that answer may still come; resync before the next request.
            self.needs_resync = true;
        }
        if e.is_retryable() {
            // Recovered from (resync, resume) while the deadline allows.
            log::debug!("{e}");
            let then = if r.retries && now < r.deadline {
                After::Resume {
                    partial,
                    rebooted: false,
                }
            } else {
                After::Fail(e)
            };
            self.begin_resync(now, then);
        } else {
            self.step(now, Input::Failed(e));
        }
    }

    fn begin_resync(&mut self, now: Instant, then: After) {
        self.begin_resync_with(now, then, true);
    }

    /// `keep`: keep the negotiated caps (not for a renegotiation).
    fn begin_resync_with(&mut self, now: Instant, then: After, keep: bool) {
        log::info!("resynchronizing");
        self.stats.resyncs += 1;
        let in_session = self.connected;
        // A connect's handshake, too, starts with short attempts (see
        // `connect_round_failed`).
        let fast = in_session || self.running.as_ref().is_some_and(|r| !r.may_reopen);
        self.resync_fast = fast;
        self.resync_silent = 0;
        self.host.set_config(self.host_config_now(fast, 0));
        let st = self.host.stats();
        if let Some(c) = self.connecting.as_mut() {
            c.round_rx = st.received.saturating_sub(st.events);
        }
        // In a session the negotiated caps stay: SYNC then SET_CAPS.
        if !(in_session && keep && self.host.resync_keep_caps(now)) {
            self.host.connect(now);
        }
        self.phase = Phase::Resync {
            round: 1,
            reopened: false,
            then,
        };
    }

    /// Runs the task until it sends a request or finishes.
    fn step(&mut self, now: Instant, mut input: Input) {
        loop {
            let Some(r) = self.running.as_mut() else {
                return;
            };
            let action = r.task.step(&mut self.cache, input);
            match action {
                Action::Send(..) if self.reboot_grace.is_some() => {
                    // The answer awaited at the reboot came; this request
                    // would meet the reset cam: resync first, then the
                    // task resumes (and sends it again).
                    self.reboot_grace = None;
                    self.resync_after_reboot(now);
                    return;
                }
                Action::Send(cmd, info) => {
                    let (op, channel) = (cmd.opcode, cmd.channel.0);
                    let retries = r.retries;
                    let sent = if info.stream {
                        self.host.request_streamed(now, &cmd)
                    } else {
                        self.host.request(now, &cmd)
                    };
                    match sent {
                        Ok(()) => {
                            let caps = self.host.caps();
                            let ack = caps.flags.ack();
                            // Over datagrams (`unacked_read_max` set) a
                            // datagram lost with ACKs off never comes
                            // (the cam sends an answer once): an overdue
                            // one is given up early as with ACKs on.
                            let early = ack || self.config.unacked_read_max.is_some();
                            self.phase = Phase::Request(InFlight {
                                op,
                                channel,
                                offset: info.offset,
                                // A status answer is never resent by the
                                // cam: once overdue it is gone. An
                                // operation that resends after a resync
                                // gives it up early; a by-id primitive,
                                // which would report a slow answer as an
                                // error, waits the timeout.
                                fast_fail: early
                                    && (info.resumable || (!info.data_answer && retries)),
                                resent_by_cam: ack && info.data_answer,
                                data_answer: info.data_answer,
                                sent_at: now,
                                seen: self.host.progress_at(),
                                got_first: false,
                                steps: 0,
                                max_answer: info.max_answer,
                                len: cmd.payload.len(),
                                packet: response_limit(&cmd, caps.max_payload)
                                    .min(usize::from(caps.max_payload)),
                                received: 0,
                            });
                            return;
                        }
                        Err(e) => {
                            input = Input::Failed(Error::from_request(e, op, channel, info.offset));
                        }
                    }
                }
                Action::Oneway(cmd, value) => {
                    let op = cmd.opcode;
                    let r = self.host.send_oneway(&cmd);
                    // The cam reboots: the link is gone.
                    self.connected = false;
                    let out: Result<Box<dyn Any + Send>> = match r {
                        Ok(()) => Ok(value),
                        Err(e) => Err(Error::from_request(e, op, 0, None)),
                    };
                    self.finish(out);
                    return;
                }
                Action::Resync => {
                    // Connect, resync() and a renegotiation: the full
                    // handshake, with the configuration's caps.
                    self.begin_resync_with(
                        now,
                        After::Resume {
                            partial: Bytes::new(),
                            rebooted: false,
                        },
                        false,
                    );
                    return;
                }
                Action::Wait { time, op, channel } => {
                    let until = now + time;
                    if until >= r.deadline {
                        // No time left to wait: the task decides.
                        input = Input::Failed(Error::DeadlineExceeded {
                            op,
                            channel,
                            done: r.task.done(),
                            deadline: r.budget,
                        });
                        continue;
                    }
                    self.phase = Phase::Wait { until };
                    return;
                }
                Action::Done(out) => {
                    if let Some(r) = &self.running {
                        if let Some(p) = self.progress.as_mut() {
                            p.done = r.task.done();
                        }
                    }
                    self.finish(out);
                    return;
                }
            }
        }
    }

    fn finish(&mut self, out: Result<Box<dyn Any + Send>>) {
        self.phase = Phase::Idle;
        if self.reboot_grace.take().is_some() && self.connected {
            self.needs_resync = true;
        }
        // A read that ended while its buffer was lent (cancelled, failed).
        self.cache.read_buf = Vec::new();
        if let Some(r) = self.running.take() {
            self.output = Some((r.serial, out));
        }
        self.pending_start = false;
        self.connecting = None;
    }
}

/// The drop simulation of `config`, when its rate is not zero.
fn drops_for(config: &SessionConfig) -> Option<StreamDrops> {
    (config.drop_rate > 0.0).then(|| StreamDrops::new(config.drop_rate, SimRng::new(config.seed)))
}

/// An ACK the host sends (the packets `drop_rate` loses on the way out).
fn is_ack(packet: &[u8]) -> bool {
    Header::decode(packet).is_ok_and(|h| h.flags.contains(Flags::ACK) && h.length == 0)
}

/// Where a request stands, for errors and timers.
#[derive(Clone, Copy, Debug, Default)]
pub struct SendInfo {
    /// Offset of a read or write.
    pub offset: Option<u32>,
    /// The task resumes after a failure: give up early on an overdue data
    /// answer (status answers are given up early always).
    pub resumable: bool,
    /// The answer is data (retransmitted by the cam), not a status packet.
    pub data_answer: bool,
    /// Most bytes the answer may carry (a read's length): more is
    /// [`Error::Overflow`] as soon as it arrives, never more memory.
    pub max_answer: Option<u32>,
    /// Stream the answer into [`Cache::read_buf`] as it arrives
    /// (`HostEndpoint::request_streamed`) instead of joining it.
    pub stream: bool,
}
