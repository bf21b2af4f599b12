//! The cam (device) endpoint: receives requests, validates them, dispatches
//! them to a table of [`ChannelBackend`]s and answers, with fragmentation,
//! ACK waiting and retransmission. No I/O: drive it like the host endpoint.
//!
//! * [`DeviceEndpoint::handle_input`] with bytes from the transport;
//! * [`DeviceEndpoint::poll_transmit`] until `None`, writing each buffer;
//! * [`DeviceEndpoint::handle_timeout`] when [`DeviceEndpoint::poll_timeout`] passes;
//! * [`DeviceEndpoint::poll_event`] for what the application must act on
//!   (reset, bootloader, protocol reset).
//!
//! Every request is checked before it reaches a backend, including the
//! length checks the stock firmware misses: short READ/WRITE/IOCTL payloads,
//! a WRITE whose length field disagrees with its payload, zero-length reads,
//! and `offset + length` overflowing u32 all NAK INVALID.
//!
//! ```
//! use omv_proto::device::{DeviceConfig, DeviceEndpoint};
//! use omv_proto::Instant;
//! let mut cam = DeviceEndpoint::new(DeviceConfig::default());
//! cam.handle_input(Instant::ZERO, &[0xaa, 0xd5, 0, 0, 0, 0, 0, 0, 0xb0, 0xac]); // SYNC
//! let ack = cam.poll_transmit(Instant::ZERO).unwrap();
//! assert_eq!(ack, [0xaa, 0xd5, 0, 0, 1, 0, 0, 0, 0x08, 0x46]);
//! ```

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;

use crate::backend::{derived_flags, ChannelBackend, ChannelError, Ops};
use crate::caps::{CapFlags, Caps};
use crate::channel::{ChannelEntry, MAX_NAME_LEN};
use crate::crc::crc32;
use crate::framer::{Frame, Framer, FramerConfig, Reject, Role};
use crate::header::{Header, HEADER_SIZE};
use crate::memory::MemoryStats;
use crate::packet::encode_packet;
use crate::poll::PollBitmap;
use crate::request::{IoctlRequest, ReadRequest, WriteRequest};
use crate::stats::Stats;
use crate::sysinfo::SysInfo;
use crate::txqueue::TxQueue;
use crate::version::Version;
use crate::{ChannelFlags, ChannelId, Duration, Flags, Instant, Opcode, Packet, Status};

/// Cam settings.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DeviceConfig {
    /// Largest payload this cam supports (announced by GET_CAPS).
    pub max_payload: u16,
    /// Capability flags this cam supports (announced by GET_CAPS).
    pub supported: CapFlags,
    /// First retransmit timeout; doubled after each timeout.
    pub rtx_timeout: Duration,
    /// Resends before giving up and resetting the protocol state.
    pub rtx_retries: u8,
    /// Shortest time between two successful locks. The firmware keeps one
    /// timestamp for all channels (PROTOCOL.md section 3), and a SYNC does
    /// not clear it.
    pub lock_interval: Duration,
    /// Largest read piece per packet (the firmware uses 512 for callback
    /// channels); `None` means `max_payload`.
    pub read_piece: Option<u16>,
    /// Most events queued before the oldest are dropped.
    pub event_queue: usize,
    /// PROTO_VERSION answer.
    pub version: Version,
    /// SYS_INFO answer.
    pub sysinfo: SysInfo,
    /// SYS_MEMORY answer; `None` makes SYS_MEMORY NAK INVALID (firmware < 4.8).
    pub memory: Option<MemoryStats>,
    /// Name listed for channel 0 (the transport), e.g. `usb`.
    pub transport_name: String,
    /// The start-up configuration: the caps the cam boots with and that a
    /// SYNC (or [`DeviceEndpoint::restore_startup_config`]) restores
    /// (PROTOCOL.md section 6). `None`: the firmware's, every supported
    /// flag on (CRC and sequence numbers always) and `max_payload`. A script's `protocol.init` replaces it
    /// ([`DeviceEndpoint::set_startup_caps`]).
    pub startup_caps: Option<Caps>,
    /// Behave like the firmware's blocking send loop (PROTOCOL.md sections
    /// 4, 6 and 7) instead of abandoning an answer when the host moves on:
    ///
    /// * while the cam waits for an ACK (or sends an answer with ACKs off)
    ///   it sees only SYNC and that ACK; other requests wait in its input
    ///   buffer (at most one packet buffer, `max_payload + 14` bytes) and
    ///   are processed, sequence check included, once the answer is done;
    /// * a read from a channel without zero-copy reads (`readp`) is sent
    ///   piece by piece, and neither a SYNC nor a retransmit give-up ends
    ///   it: they reset the protocol and cancel only the current piece; the
    ///   read goes on with the next one, each with its full resend schedule;
    /// * only closing the port ([`DeviceEndpoint::set_transport_active`])
    ///   ends it (the remaining pieces are still read from the channel, as
    ///   the firmware's loop does, so stdout text is consumed).
    ///
    /// Off by default: a host must close and reopen the port to get out.
    pub firmware_send_loop: bool,
}

/// Chainable setters, one per field (the struct is `#[non_exhaustive]`:
/// build it from [`Default::default`] and these, not with a struct literal).
impl DeviceConfig {
    /// Sets [`max_payload`](Self::max_payload).
    #[must_use]
    pub fn max_payload(mut self, max_payload: u16) -> Self {
        self.max_payload = max_payload;
        self
    }
    /// Sets [`supported`](Self::supported).
    #[must_use]
    pub fn supported(mut self, supported: CapFlags) -> Self {
        self.supported = supported;
        self
    }
    /// Sets [`rtx_timeout`](Self::rtx_timeout).
    #[must_use]
    pub fn rtx_timeout(mut self, rtx_timeout: Duration) -> Self {
        self.rtx_timeout = rtx_timeout;
        self
    }
    /// Sets [`rtx_retries`](Self::rtx_retries).
    #[must_use]
    pub fn rtx_retries(mut self, rtx_retries: u8) -> Self {
        self.rtx_retries = rtx_retries;
        self
    }
    /// Sets [`lock_interval`](Self::lock_interval).
    #[must_use]
    pub fn lock_interval(mut self, lock_interval: Duration) -> Self {
        self.lock_interval = lock_interval;
        self
    }
    /// Sets [`read_piece`](Self::read_piece).
    #[must_use]
    pub fn read_piece(mut self, read_piece: Option<u16>) -> Self {
        self.read_piece = read_piece;
        self
    }
    /// Sets [`event_queue`](Self::event_queue).
    #[must_use]
    pub fn event_queue(mut self, event_queue: usize) -> Self {
        self.event_queue = event_queue;
        self
    }
    /// Sets [`version`](Self::version).
    #[must_use]
    pub fn version(mut self, version: Version) -> Self {
        self.version = version;
        self
    }
    /// Sets [`sysinfo`](Self::sysinfo).
    #[must_use]
    pub fn sysinfo(mut self, sysinfo: SysInfo) -> Self {
        self.sysinfo = sysinfo;
        self
    }
    /// Sets [`memory`](Self::memory).
    #[must_use]
    pub fn memory(mut self, memory: Option<MemoryStats>) -> Self {
        self.memory = memory;
        self
    }
    /// Sets [`transport_name`](Self::transport_name).
    #[must_use]
    pub fn transport_name(mut self, transport_name: String) -> Self {
        self.transport_name = transport_name;
        self
    }
    /// Sets [`startup_caps`](Self::startup_caps).
    #[must_use]
    pub fn startup_caps(mut self, startup_caps: Option<Caps>) -> Self {
        self.startup_caps = startup_caps;
        self
    }
    /// Sets [`firmware_send_loop`](Self::firmware_send_loop).
    #[must_use]
    pub fn firmware_send_loop(mut self, firmware_send_loop: bool) -> Self {
        self.firmware_send_loop = firmware_send_loop;
        self
    }
}

impl DeviceConfig {
    /// The start-up configuration this configuration gives: `startup_caps`
    /// (or every supported flag and `max_payload`), limited to what the cam
    /// supports (CRC and sequence numbers always) and to
    /// `[MIN_PAYLOAD, max_payload]`.
    pub fn startup(&self) -> Caps {
        resolve_startup(self)
    }
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            max_payload: crate::FIRMWARE_DEFAULT_PAYLOAD,
            supported: CapFlags::KNOWN,
            rtx_timeout: Duration::from_millis(500),
            rtx_retries: 3,
            lock_interval: crate::LOCK_INTERVAL,
            read_piece: None,
            event_queue: 64,
            version: Version {
                protocol: [1, 0, 2],
                bootloader: [1, 0, 0],
                firmware: [5, 0, 0],
            },
            sysinfo: SysInfo::default(),
            memory: None,
            transport_name: String::from("usb"),
            startup_caps: None,
            firmware_send_loop: false,
        }
    }
}

/// Something the application must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceEvent {
    /// SYS_RESET arrived: reboot (the link drops).
    ResetRequested,
    /// SYS_BOOT arrived: enter the bootloader.
    BootRequested,
    /// The protocol state was reset.
    ProtocolReset(ResetCause),
    /// New caps took effect.
    CapsChanged(Caps),
}

/// Why the protocol state was reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetCause {
    /// A PROTO_SYNC arrived.
    Sync,
    /// A packet was never acknowledged after every retransmission.
    RetransmitGaveUp,
    /// The application called [`DeviceEndpoint::restore_startup_config`]
    /// (the soft reset after a script, `protocol.init`).
    Restart,
}

/// Why [`DeviceEndpoint::set_startup_caps`] refused a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StartupCapsError {
    /// `max_payload` outside `[MIN_PAYLOAD, the cam's largest]` (the
    /// firmware's `protocol.init` raises then).
    #[error("start-up max_payload {got} is outside {min}..={max}")]
    MaxPayload {
        /// The value asked for.
        got: u16,
        /// [`MIN_PAYLOAD`](crate::MIN_PAYLOAD).
        min: u16,
        /// The cam's largest payload ([`DeviceConfig::max_payload`]).
        max: u16,
    },
}

/// Why a channel could not be registered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// All 31 data channel ids are taken.
    #[error("no free channel id")]
    NoFreeId,
    /// The id is 0, over 31, or taken.
    #[error("channel id {0} is not available")]
    IdUnavailable(u8),
    /// The name is empty, longer than 13 bytes, or contains NUL.
    #[error("invalid channel name {0:?} (1 to 13 bytes, no NUL)")]
    BadName(String),
    /// Another channel has this name.
    #[error("a channel named {0:?} exists")]
    DuplicateName(String),
}

struct Slot {
    name: String,
    flags: ChannelFlags,
    ops: Ops,
    backend: Box<dyn ChannelBackend>,
}

/// A packet sent with ACK_REQ, waiting for its ACK (its bytes are in
/// [`DeviceEndpoint::inflight_wire`], held once for every resend).
struct Inflight {
    header: Header,
    deadline: Instant,
    timeout: Duration,
    resends: u8,
}

/// A response still being sent.
enum Message {
    /// Bytes already known (system answers, shapes...).
    Buffer {
        header: Header,
        data: Bytes,
        pos: usize,
    },
    /// A channel read, generated piece by piece from the backend.
    Read {
        header: Header,
        offset: u32,
        remaining: u32,
        /// A piece was already sent (with FRAGMENT).
        started: bool,
    },
    /// A channel request whose backend answered [`ChannelError::Pending`]:
    /// asked again each time the endpoint is driven.
    Deferred { header: Header, op: ChannelOp },
}

/// A channel request answered by a status or a small buffer, kept while
/// its backend's answer is pending.
enum ChannelOp {
    Shape,
    Size,
    Lock,
    Unlock,
    Write { offset: u32, data: Bytes },
    Ioctl { request: u32, args: Vec<u8> },
}

/// Input that arrived while the firmware send loop was busy.
enum Deferred {
    /// A complete packet.
    Packet(Packet),
    /// A CRC-valid header the framer rejected: NAK it later.
    Nak(Header, Status),
}

impl Deferred {
    fn wire_len(&self) -> usize {
        match self {
            Deferred::Packet(p) => p.header.wire_len(),
            Deferred::Nak(..) => HEADER_SIZE,
        }
    }
}

struct QueuedEvent {
    channel: ChannelId,
    event: Option<u16>,
    ack_req: bool,
}

/// The cam endpoint. See the module documentation.
pub struct DeviceEndpoint {
    config: DeviceConfig,
    framer: Framer,
    caps: Caps,
    sequence: u8,
    slots: Vec<Option<Slot>>,
    transmits: TxQueue,
    inflight: Option<Inflight>,
    /// The wire bytes of the packet in `inflight`, resent from here.
    inflight_wire: Vec<u8>,
    /// Where the next data packet is built (reused, as `inflight_wire`).
    scratch: Vec<u8>,
    message: Option<Message>,
    events: VecDeque<QueuedEvent>,
    app_events: VecDeque<DeviceEvent>,
    stats: Stats,
    dropped_events: u64,
    /// Event packets the host acknowledged.
    event_acks: u64,
    /// When the last successful CHANNEL_LOCK of any channel happened.
    last_lock: Option<Instant>,
    /// A host has the port open (see [`DeviceEndpoint::set_transport_active`]).
    transport_active: bool,
    /// Firmware send loop: input waiting for the current answer to end.
    deferred: VecDeque<Deferred>,
    deferred_bytes: usize,
    deferred_dropped: u64,
}

impl core::fmt::Debug for DeviceEndpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceEndpoint")
            .field("caps", &self.caps)
            .field("sequence", &self.sequence)
            .field("channels", &self.channels())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl DeviceEndpoint {
    /// A cam with no channels but the transport (channel 0).
    pub fn new(config: DeviceConfig) -> DeviceEndpoint {
        let mut slots = Vec::with_capacity(ChannelId::COUNT);
        slots.resize_with(ChannelId::COUNT, || None);
        // The cam boots with its start-up configuration.
        let caps = resolve_startup(&config);
        DeviceEndpoint {
            framer: Framer::new(device_framer(caps)),
            caps,
            sequence: 0,
            slots,
            transmits: TxQueue::default(),
            inflight: None,
            inflight_wire: Vec::new(),
            scratch: Vec::new(),
            message: None,
            events: VecDeque::new(),
            app_events: VecDeque::new(),
            stats: Stats::default(),
            dropped_events: 0,
            event_acks: 0,
            last_lock: None,
            transport_active: true,
            deferred: VecDeque::new(),
            deferred_bytes: 0,
            deferred_dropped: 0,
            config,
        }
    }

    /// Re-initialises the protocol as the firmware's `omv_protocol_init`
    /// does (a script's `protocol.init`, the soft reset after a script):
    /// the configuration is replaced, `startup` becomes its start-up
    /// configuration ([`DeviceConfig::startup_caps`], limited to what the
    /// configuration supports), in force now and what PROTO_SYNC restores
    /// from now on; the sequence is 0, queued packets, events, the
    /// unfinished answer and buffered input are dropped, locks are released
    /// and the lock timestamp forgotten. Channels and statistics stay. No
    /// application event (see [`restore_startup_config`](Self::restore_startup_config)
    /// for the same with the current configuration, and an event).
    pub fn reinit(&mut self, config: DeviceConfig, startup: Caps) {
        self.config = config;
        self.config.startup_caps = Some(startup);
        self.reset_state(true);
        self.framer.clear();
    }

    /// Event packets sent with ACK_REQ that the host acknowledged so far.
    pub fn event_acks(&self) -> u64 {
        self.event_acks
    }

    /// The configuration.
    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    /// Replaces the SYS_MEMORY answer.
    pub fn set_memory_stats(&mut self, memory: Option<MemoryStats>) {
        self.config.memory = memory;
    }

    /// Current caps.
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// The start-up configuration a SYNC restores (see
    /// [`DeviceConfig::startup_caps`]): flags limited to the supported ones,
    /// `max_payload` to `[MIN_PAYLOAD, DeviceConfig::max_payload]`.
    pub fn startup_caps(&self) -> Caps {
        resolve_startup(&self.config)
    }

    /// Replaces the start-up configuration (what a script's
    /// `protocol.init` does); it takes effect at the next SYNC or
    /// [`restore_startup_config`](Self::restore_startup_config). Flags the
    /// cam does not support are dropped.
    pub fn set_startup_caps(&mut self, caps: Caps) -> Result<(), StartupCapsError> {
        let max = self.config.max_payload;
        if caps.max_payload < crate::MIN_PAYLOAD || caps.max_payload > max {
            return Err(StartupCapsError::MaxPayload {
                got: caps.max_payload,
                min: crate::MIN_PAYLOAD,
                max,
            });
        }
        self.config.startup_caps = Some(caps);
        Ok(())
    }

    /// Whether a host has the port open. Starts true; input makes it true.
    pub fn transport_active(&self) -> bool {
        self.transport_active
    }

    /// Tells the endpoint the port closed (`false`: the host closed its
    /// serial port, the TCP connection ended) or opened again. While
    /// closed nothing is sent and events are dropped, as the firmware's
    /// inactive transport does. Closing ends the answer being sent (with
    /// [`DeviceConfig::firmware_send_loop`] the only way to end an
    /// abandoned long read), drops queued packets, events and buffered
    /// input, and stops waiting for an ACK. Input arriving marks the
    /// transport active again.
    pub fn set_transport_active(&mut self, active: bool) {
        if self.transport_active && !active {
            self.close_transport();
        }
        self.transport_active = active;
    }

    /// Requests dropped because they arrived while the firmware send loop
    /// was busy and its input buffer was full.
    pub fn deferred_dropped(&self) -> u64 {
        self.deferred_dropped
    }

    /// Restores the start-up configuration now, as the firmware does when
    /// it re-initialises its protocol (the soft reset after a script ends,
    /// `protocol.init`): the reset a PROTO_SYNC performs, without its ACK.
    /// Sequence 0, the start-up caps, the input buffer emptied, every lock
    /// released and the lock timestamp forgotten, any answer being sent and
    /// every queued event dropped.
    /// Reports [`DeviceEvent::ProtocolReset`] with [`ResetCause::Restart`].
    pub fn restore_startup_config(&mut self) {
        self.reset_protocol(ResetCause::Restart);
    }

    /// Current sequence counter.
    pub fn sequence(&self) -> u8 {
        self.sequence
    }

    /// Device statistics (what PROTO_STATS reports).
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Framer drop counters.
    pub fn framer_stats(&self) -> crate::framer::FramerStats {
        self.framer.stats()
    }

    /// Events dropped because the queue was full or events were off.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events
    }

    /// Bytes buffered by the framer (bounded by one packet plus a chunk).
    pub fn buffered(&self) -> usize {
        self.framer.buffered()
    }

    /// The channel list as CHANNEL_LIST reports it (channel 0 first).
    pub fn channels(&self) -> Vec<ChannelEntry> {
        let mut v = Vec::new();
        v.push(ChannelEntry {
            id: ChannelId::SYSTEM,
            flags: ChannelFlags::PHYSICAL,
            name: self.config.transport_name.clone(),
        });
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(s) = s {
                v.push(ChannelEntry {
                    id: ChannelId(i as u8),
                    flags: s.flags,
                    name: s.name.clone(),
                });
            }
        }
        v
    }

    /// Registers a built-in channel at a fixed id, with no event (boot time).
    pub fn register_at(
        &mut self,
        id: ChannelId,
        name: &str,
        backend: Box<dyn ChannelBackend>,
    ) -> Result<ChannelId, RegisterError> {
        let i = usize::from(id.0);
        if i == 0 || i >= ChannelId::COUNT || self.slots[i].is_some() {
            return Err(RegisterError::IdUnavailable(id.0));
        }
        self.check_name(name)?;
        let ops = backend.ops();
        let flags = backend.flags().unwrap_or_else(|| derived_flags(ops));
        self.slots[i] = Some(Slot {
            name: String::from(name),
            flags,
            ops,
            backend,
        });
        Ok(id)
    }

    /// Registers a channel at run time: first free id >= 1, DYNAMIC flag and
    /// flags derived from the backend, and a CHANNEL_REGISTERED event.
    pub fn register(
        &mut self,
        name: &str,
        backend: Box<dyn ChannelBackend>,
    ) -> Result<ChannelId, RegisterError> {
        let free = (1..ChannelId::COUNT)
            .find(|&i| self.slots[i].is_none())
            .ok_or(RegisterError::NoFreeId)?;
        self.check_name(name)?;
        let ops = backend.ops();
        let flags = derived_flags(ops);
        self.slots[free] = Some(Slot {
            name: String::from(name),
            flags,
            ops,
            backend,
        });
        self.send_event(
            ChannelId::SYSTEM,
            Some(crate::event::EventId::CHANNEL_REGISTERED.0),
            false,
        );
        Ok(ChannelId(free as u8))
    }

    /// Removes a channel and sends CHANNEL_UNREGISTERED; returns its backend.
    /// A request of that channel whose backend's answer was pending is
    /// answered NAK FAILED (its backend went away mid-call).
    pub fn unregister(&mut self, id: ChannelId) -> Option<Box<dyn ChannelBackend>> {
        let slot = self.slots.get_mut(usize::from(id.0))?.take()?;
        match &self.message {
            Some(Message::Read { header, .. }) if header.channel == id => self.message = None,
            Some(Message::Deferred { header, .. }) if header.channel == id => {
                let header = *header;
                self.message = None;
                self.nak(&header, Status::FAILED);
            }
            _ => {}
        }
        self.send_event(
            ChannelId::SYSTEM,
            Some(crate::event::EventId::CHANNEL_UNREGISTERED.0),
            false,
        );
        Some(slot.backend)
    }

    /// The backend of a channel, to drive it from the application.
    pub fn channel_mut(&mut self, id: ChannelId) -> Option<&mut (dyn ChannelBackend + 'static)> {
        match self.slots.get_mut(usize::from(id.0)) {
            Some(Some(s)) => Some(s.backend.as_mut()),
            _ => None,
        }
    }

    /// The id of the channel called `name`.
    pub fn channel_id(&self, name: &str) -> Option<ChannelId> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.name == name))
            .map(|i| ChannelId(i as u8))
    }

    /// Queues an event: a system event on channel 0 (SYS_EVENT) or a channel
    /// event (CHANNEL_EVENT); `None` is a payload-less NOTIFY. Dropped when
    /// the host has not enabled events. An event identical to the last one
    /// queued is redundant and not queued again, so that a periodic event
    /// (stdout's NOTIFY) cannot push older events out of a full queue.
    pub fn send_event(&mut self, channel: ChannelId, event: Option<u16>, ack_req: bool) {
        if !self.caps.flags.events() || !self.transport_active {
            self.dropped_events += 1;
            return;
        }
        if self
            .events
            .back()
            .is_some_and(|e| e.channel == channel && e.event == event && e.ack_req == ack_req)
        {
            return;
        }
        if self.events.len() >= self.config.event_queue.max(1) {
            self.events.pop_front();
            self.dropped_events += 1;
        }
        self.events.push_back(QueuedEvent {
            channel,
            event,
            ack_req,
        });
    }

    /// Feeds bytes received from the host (which marks the transport active).
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.transport_active = true;
        self.framer.push(data);
        loop {
            let expected = if self.caps.flags.seq() {
                Some(self.sequence)
            } else {
                None
            };
            match self.framer.next(expected) {
                None => break,
                Some(Frame::Packet(p)) => {
                    self.stats.received = self.stats.received.wrapping_add(1);
                    self.handle_packet(now, p);
                }
                Some(Frame::Rejected { header, reason }) => {
                    let status = match reason {
                        Reject::Overflow => Status::OVERFLOW,
                        Reject::Sequence => {
                            self.stats.sequence_errors = self.stats.sequence_errors.wrapping_add(1);
                            Status::SEQUENCE
                        }
                        Reject::PayloadCrc => {
                            self.stats.checksum_errors = self.stats.checksum_errors.wrapping_add(1);
                            Status::CHECKSUM
                        }
                    };
                    // While waiting for an ACK, a damaged packet is most likely
                    // that ACK: let the retransmit timer handle it.
                    if self.inflight.is_none() && !header.flags.intersects(Flags::ACK | Flags::NAK)
                    {
                        if self.config.firmware_send_loop && self.message.is_some() {
                            self.defer(Deferred::Nak(header, status));
                        } else {
                            self.abort_message();
                            self.nak(&header, status);
                        }
                    }
                }
            }
        }
        self.collect_backend_events(now);
    }

    /// Tells the endpoint time has passed (retransmissions, channel timers).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(inf) = &mut self.inflight {
            if now >= inf.deadline {
                if inf.resends < self.config.rtx_retries {
                    inf.resends += 1;
                    inf.timeout = inf.timeout.saturating_mul(2);
                    inf.deadline = now + inf.timeout;
                    set_rtx(&mut self.inflight_wire, self.caps.flags.crc());
                    self.transmits.push(&self.inflight_wire);
                    self.stats.retransmits = self.stats.retransmits.wrapping_add(1);
                    self.stats.sent = self.stats.sent.wrapping_add(1);
                } else {
                    self.stats.transport_errors = self.stats.transport_errors.wrapping_add(1);
                    // The firmware's read loop ignores the failed send and
                    // goes on with the next piece.
                    let read = self.take_continuing_read();
                    self.reset_protocol(ResetCause::RetransmitGaveUp);
                    self.message = read;
                }
            }
        }
        self.collect_backend_events(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let rtx = self.inflight.as_ref().map(|i| i.deadline);
        let chans = self
            .slots
            .iter()
            .flatten()
            .filter_map(|s| s.backend.next_deadline())
            .min();
        match (rtx, chans) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Next bytes to send to the host. Responses are generated lazily, one
    /// packet per call, so a large read never sits in memory at once.
    /// [`poll_transmit_into`](Self::poll_transmit_into) is the same without
    /// a new `Vec` per packet.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.poll_transmit_into(now, &mut out).map(|_| out)
    }

    /// The next packet to send, appended to `buf`; returns its length.
    /// Allocates nothing once `buf` and the endpoint's buffers have grown
    /// (reuse `buf`, clearing it after each write).
    #[must_use]
    pub fn poll_transmit_into(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<usize> {
        if !self.transport_active {
            return None;
        }
        if self.transmits.is_empty() {
            self.pump(now);
        }
        self.transmits.pop_into(buf)
    }

    /// True when nothing waits to go out: no packet waits for its ACK, and
    /// no answer, event or packet is queued. A cam loop that must finish
    /// sending before it re-initialises the protocol (the firmware's send
    /// is blocking: the SOFT_REBOOT event goes out, acknowledged or given
    /// up, before the soft reset) waits for this.
    pub fn is_idle(&self) -> bool {
        self.inflight.is_none()
            && self.transmits.is_empty()
            && self.message.is_none()
            && self.events.is_empty()
    }

    /// Next application event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.app_events.pop_front()
    }

    fn check_name(&self, name: &str) -> Result<(), RegisterError> {
        if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains('\0') {
            return Err(RegisterError::BadName(String::from(name)));
        }
        if self.channel_id(name).is_some() || name == self.config.transport_name {
            return Err(RegisterError::DuplicateName(String::from(name)));
        }
        Ok(())
    }

    fn collect_backend_events(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            // Bounded: a backend can produce at most a queue's worth per call.
            for _ in 0..self.config.event_queue.max(1) {
                let Some(slot) = self.slots[i].as_mut() else {
                    break;
                };
                let Some(ev) = slot.backend.poll_event(now) else {
                    break;
                };
                self.send_event(ChannelId(i as u8), ev.event, ev.ack_req);
            }
        }
    }

    fn handle_packet(&mut self, now: Instant, p: Packet) {
        let h = p.header;
        if h.flags.contains(Flags::ACK) {
            if let Some(inf) = &self.inflight {
                if inf.header.sequence == h.sequence && inf.header.opcode == h.opcode {
                    if inf.header.flags.contains(Flags::EVENT) {
                        self.event_acks = self.event_acks.wrapping_add(1);
                    }
                    self.inflight = None;
                }
            }
            return;
        }
        if h.flags.contains(Flags::NAK) {
            // The host rejected what we sent: resend it now.
            if let Some(inf) = &mut self.inflight {
                inf.deadline = now;
            }
            return;
        }
        let busy = self.inflight.is_some() || self.message.is_some();
        if self.config.firmware_send_loop && busy {
            // The firmware scans for SYNC only while it waits for an ACK;
            // sending with ACKs off it reads no input at all.
            let sync = h.opcode == Opcode::PROTO_SYNC && h.channel == ChannelId::SYSTEM;
            if !(sync && self.inflight.is_some()) {
                self.defer(Deferred::Packet(p));
                return;
            }
        }
        if h.opcode == Opcode::PROTO_SYNC && h.channel == ChannelId::SYSTEM {
            // A SYNC in the firmware's read loop cancels the current piece
            // only; the read goes on.
            let read = self.take_continuing_read();
            self.reset_protocol(ResetCause::Sync);
            self.message = read;
            // The ACK carries the SYNC's sequence and does not advance the counter.
            let ack = Header {
                sequence: h.sequence,
                channel: h.channel,
                flags: Flags::ACK,
                opcode: h.opcode,
                length: 0,
            };
            self.send_raw(&ack, &[]);
            return;
        }
        // A new request: the host has everything we sent (it only moves on
        // after the last packet of a response), so an outstanding ACK is
        // implied and any unfinished answer is abandoned.
        if let Some(inf) = self.inflight.take() {
            if inf.header.flags.contains(Flags::EVENT) {
                self.event_acks = self.event_acks.wrapping_add(1);
            }
        }
        self.abort_message();
        self.dispatch(now, h, &p.payload);
    }

    fn dispatch(&mut self, now: Instant, h: Header, payload: &Bytes) {
        if h.opcode.is_system() && h.channel != ChannelId::SYSTEM {
            return self.nak(&h, Status::INVALID);
        }
        match h.opcode {
            Opcode::PROTO_GET_CAPS => {
                // The start-up configuration: what the firmware reports
                // after a SYNC, when hosts ask. (Asked again on a link
                // whose caps were changed, the firmware reports the current
                // ones; hosts renegotiating expect what the cam can do.)
                // The flags SET_CAPS honours (a host asking for what is
                // announced gets it, even after a re-init that started with
                // fewer), and the start-up payload.
                let caps = Caps {
                    flags: CapFlags(self.config.supported.0 & CapFlags::KNOWN.0),
                    max_payload: self.startup_caps().max_payload,
                };
                self.respond(&h, Bytes::copy_from_slice(&caps.encode()));
            }
            Opcode::PROTO_SET_CAPS => match Caps::decode_exact(payload) {
                Ok(c)
                    if c.max_payload >= crate::MIN_PAYLOAD
                        && c.max_payload <= self.config.max_payload =>
                {
                    self.ack(&h);
                    let caps = Caps {
                        flags: CapFlags(c.flags.0 & self.config.supported.0 & CapFlags::KNOWN.0),
                        max_payload: c.max_payload,
                    };
                    self.caps = caps;
                    self.framer.set_config(device_framer(caps));
                    self.app_events.push_back(DeviceEvent::CapsChanged(caps));
                }
                _ => self.nak(&h, Status::INVALID),
            },
            Opcode::PROTO_STATS => {
                let s = self.stats.encode();
                self.respond(&h, Bytes::copy_from_slice(&s));
            }
            Opcode::PROTO_VERSION => {
                let v = self.config.version.encode();
                self.respond(&h, Bytes::copy_from_slice(&v));
            }
            Opcode::SYS_RESET => self.app_events.push_back(DeviceEvent::ResetRequested),
            Opcode::SYS_BOOT => self.app_events.push_back(DeviceEvent::BootRequested),
            Opcode::SYS_INFO => {
                let s = self.config.sysinfo.encode();
                self.respond(&h, Bytes::copy_from_slice(&s));
            }
            Opcode::SYS_MEMORY => match &self.config.memory {
                Some(m) => {
                    let data = Bytes::from(m.encode());
                    self.respond(&h, data);
                }
                None => self.nak(&h, Status::INVALID),
            },
            Opcode::CHANNEL_LIST => {
                let data = ChannelEntry::encode_list(&self.channels());
                self.respond(&h, Bytes::from(data));
            }
            Opcode::CHANNEL_POLL => {
                let mut bits = PollBitmap(0);
                for (i, s) in self.slots.iter_mut().enumerate() {
                    if let Some(s) = s {
                        if s.backend.poll(now) {
                            bits.set(ChannelId(i as u8));
                        }
                    }
                }
                self.respond(&h, Bytes::copy_from_slice(&bits.encode()));
            }
            Opcode::CHANNEL_LOCK => self.channel_op(now, h, ChannelOp::Lock),
            Opcode::CHANNEL_UNLOCK => self.channel_op(now, h, ChannelOp::Unlock),
            Opcode::CHANNEL_SHAPE => self.channel_op(now, h, ChannelOp::Shape),
            Opcode::CHANNEL_SIZE => self.channel_op(now, h, ChannelOp::Size),
            Opcode::CHANNEL_READ => self.channel_read(h, payload),
            Opcode::CHANNEL_WRITE => match WriteRequest::decode(payload) {
                Ok(w) if w.end_offset().is_some() => {
                    // A view of the received packet, not a copy.
                    let op = ChannelOp::Write {
                        offset: w.offset,
                        data: payload.slice_ref(w.data),
                    };
                    self.channel_op(now, h, op)
                }
                _ => self.nak(&h, Status::INVALID),
            },
            Opcode::CHANNEL_IOCTL => match IoctlRequest::decode(payload) {
                Ok(io) => {
                    let op = ChannelOp::Ioctl {
                        request: io.request,
                        args: io.args.to_vec(),
                    };
                    self.channel_op(now, h, op)
                }
                Err(_) => self.nak(&h, Status::INVALID),
            },
            _ => self.nak(&h, Status::INVALID),
        }
    }

    fn with_slot<T>(
        &mut self,
        h: &Header,
        f: impl FnOnce(&mut Slot) -> Result<T, ChannelError>,
    ) -> Result<T, ChannelError> {
        match self.slots.get_mut(usize::from(h.channel.0)) {
            Some(Some(s)) => f(s),
            _ => Err(ChannelError::Invalid),
        }
    }

    /// Runs a channel request answered by a status or a small buffer; a
    /// pending answer keeps the request (see [`ChannelError::Pending`]).
    fn channel_op(&mut self, now: Instant, h: Header, op: ChannelOp) {
        // One lock timestamp for every channel, as the firmware keeps: a lock
        // within lock_interval of the last success on any channel is BUSY.
        // (A channel that cannot lock NAKs INVALID first, as PROTOCOL.md
        // says of missing methods; the firmware answers BUSY there too.)
        let interval = self.config.lock_interval;
        let last = self.last_lock;
        let mut locked = false;
        let r = self.with_slot(&h, |s| match &op {
            ChannelOp::Lock => {
                if !s.ops.contains(Ops::LOCK) {
                    return Err(ChannelError::Unsupported);
                }
                if last.is_some_and(|t| now.saturating_duration_since(t) < interval) {
                    return Err(ChannelError::Busy);
                }
                s.backend.lock()?;
                locked = true;
                Ok(None)
            }
            ChannelOp::Unlock => s.backend.unlock().map(|()| None),
            ChannelOp::Shape => s.backend.shape().map(|shape| {
                let mut buf = [0u8; 16];
                let n = shape.encode(&mut buf);
                Some(Bytes::copy_from_slice(&buf[..n]))
            }),
            ChannelOp::Size => s
                .backend
                .size()
                .map(|n| Some(Bytes::copy_from_slice(&n.to_le_bytes()))),
            ChannelOp::Write { offset, data } => {
                if !s.ops.contains(Ops::WRITE) {
                    return Err(ChannelError::Unsupported);
                }
                s.backend.write(*offset, data)?;
                if s.ops.contains(Ops::FLUSH) {
                    s.backend.flush()?;
                }
                Ok(None)
            }
            ChannelOp::Ioctl { request, args } => s.backend.ioctl(*request, args).map(|()| None),
        });
        if locked {
            self.last_lock = Some(now);
        }
        match r {
            Ok(Some(data)) => self.respond(&h, data),
            Ok(None) => self.ack(&h),
            Err(ChannelError::Pending) => {
                self.message = Some(Message::Deferred { header: h, op });
            }
            Err(e) => self.nak(&h, e.status()),
        }
    }

    fn channel_read(&mut self, h: Header, payload: &[u8]) {
        let req = match ReadRequest::decode(payload) {
            Ok(r) if r.length > 0 && r.offset.checked_add(r.length).is_some() => r,
            _ => return self.nak(&h, Status::INVALID),
        };
        let readable = match self.slots.get(usize::from(h.channel.0)) {
            Some(Some(s)) => s.ops.contains(Ops::READ) || s.ops.contains(Ops::READP),
            _ => false,
        };
        if !readable {
            return self.nak(&h, Status::INVALID);
        }
        self.message = Some(Message::Read {
            header: h,
            offset: req.offset,
            remaining: req.length,
            started: false,
        });
    }

    fn respond(&mut self, h: &Header, data: Bytes) {
        self.message = Some(Message::Buffer {
            header: *h,
            data,
            pos: 0,
        });
    }

    fn ack(&mut self, request: &Header) {
        let h = Header {
            sequence: self.sequence,
            channel: request.channel,
            flags: Flags::ACK,
            opcode: request.opcode,
            length: 0,
        };
        self.send_numbered(h, &[]);
    }

    fn nak(&mut self, request: &Header, status: Status) {
        let h = Header {
            sequence: self.sequence,
            channel: request.channel,
            flags: Flags::NAK,
            opcode: request.opcode,
            length: 0,
        };
        self.send_numbered(h, &status.encode());
    }

    fn abort_message(&mut self) {
        self.message = None;
    }

    /// Emits queued events and the next piece of the current message while
    /// no ACK is outstanding.
    fn pump(&mut self, now: Instant) {
        while self.inflight.is_none() && self.transmits.is_empty() {
            if self.message.is_none() {
                if let Some(d) = self.deferred.pop_front() {
                    self.deferred_bytes -= d.wire_len();
                    self.process_deferred(now, d);
                    continue;
                }
            }
            if let Some(ev) = self.events.pop_front() {
                self.emit_event(now, ev);
                continue;
            }
            match self.message.take() {
                None => return,
                Some(Message::Buffer { header, data, pos }) => {
                    let piece = usize::from(self.caps.max_payload);
                    let end = (pos + piece).min(data.len());
                    let more = end < data.len();
                    let mut h = header;
                    h.sequence = self.sequence;
                    h.flags = if more { Flags::FRAGMENT } else { Flags::NONE };
                    self.send_data(now, h, &data[pos..end]);
                    if more {
                        self.message = Some(Message::Buffer {
                            header,
                            data,
                            pos: end,
                        });
                    }
                }
                Some(Message::Read {
                    header,
                    offset,
                    remaining,
                    started,
                }) => {
                    if !self.emit_read_piece(now, header, offset, remaining, started) {
                        return;
                    }
                }
                Some(Message::Deferred { header, op }) => {
                    self.channel_op(now, header, op);
                    if matches!(self.message, Some(Message::Deferred { .. })) {
                        return;
                    }
                }
            }
        }
    }

    /// Sends the next piece of a read; false when the backend's answer is
    /// pending (the read is kept, nothing sent).
    fn emit_read_piece(
        &mut self,
        now: Instant,
        request: Header,
        offset: u32,
        remaining: u32,
        started: bool,
    ) -> bool {
        let Some(Some(slot)) = self.slots.get_mut(usize::from(request.channel.0)) else {
            self.nak(&request, Status::FAILED);
            return true;
        };
        let piece = self
            .config
            .read_piece
            .unwrap_or(self.caps.max_payload)
            .min(slot.backend.read_piece().unwrap_or(u16::MAX))
            .min(self.caps.max_payload)
            .max(1);
        let want = remaining.min(u32::from(piece)) as usize;
        let mut wire = core::mem::take(&mut self.scratch);
        wire.clear();
        wire.resize(HEADER_SIZE + want, 0);
        let got = if slot.ops.contains(Ops::READP) {
            match slot.backend.readp(offset, want as u32) {
                Ok(view) => {
                    let n = view.len().min(want);
                    wire[HEADER_SIZE..HEADER_SIZE + n].copy_from_slice(&view[..n]);
                    Ok(n)
                }
                Err(e) => Err(e),
            }
        } else {
            slot.backend
                .read(offset, &mut wire[HEADER_SIZE..])
                .map(|n| n.min(want))
        };
        if got == Err(ChannelError::Pending) {
            self.scratch = wire;
            self.message = Some(Message::Read {
                header: request,
                offset,
                remaining,
                started,
            });
            return false;
        }
        let got = match got {
            // The last piece filled its request exactly and the channel has
            // nothing more (a short read): end the answer with an empty last
            // packet. A NAK now would lose the data already sent (and, for
            // stdout, consumed).
            Ok(0) if started => 0,
            Ok(0) | Err(_) => {
                self.scratch = wire;
                let status = match got {
                    Err(e) => e.status(),
                    _ => Status::FAILED,
                };
                self.nak(&request, status);
                return true;
            }
            Ok(n) => n,
        };
        wire.truncate(HEADER_SIZE + got);
        let left = remaining - got as u32;
        let more = left > 0 && got == want;
        let h = Header {
            sequence: self.sequence,
            channel: request.channel,
            flags: if more { Flags::FRAGMENT } else { Flags::NONE },
            opcode: request.opcode,
            length: got as u16,
        };
        if more {
            self.message = Some(Message::Read {
                header: request,
                offset: offset.wrapping_add(got as u32),
                remaining: left,
                started: true,
            });
        }
        self.finish_data_packet(now, h, wire);
        true
    }

    /// Sends a data packet (adds ACK_REQ when acks are on) and advances the counter.
    fn send_data(&mut self, now: Instant, h: Header, payload: &[u8]) {
        let mut wire = core::mem::take(&mut self.scratch);
        wire.clear();
        wire.resize(HEADER_SIZE, 0);
        wire.extend_from_slice(payload);
        let mut h = h;
        h.length = payload.len() as u16;
        self.finish_data_packet(now, h, wire);
    }

    /// `wire` holds a placeholder header followed by the payload; it is
    /// queued (copied), kept as the in-flight packet when it waits for an
    /// ACK, and its buffer reused for the next packet.
    fn finish_data_packet(&mut self, now: Instant, mut h: Header, mut wire: Vec<u8>) {
        let crc = self.caps.flags.crc();
        if self.caps.flags.ack() {
            h.flags = h.flags | Flags::ACK_REQ;
        }
        h.length = (wire.len() - HEADER_SIZE) as u16;
        wire[..HEADER_SIZE].copy_from_slice(&h.encode(crc));
        if h.length > 0 {
            let c = if crc { crc32(&wire[HEADER_SIZE..]) } else { 0 };
            wire.extend_from_slice(&c.to_le_bytes());
        }
        self.sequence = self.sequence.wrapping_add(1);
        self.stats.sent = self.stats.sent.wrapping_add(1);
        self.transmits.push(&wire);
        if h.flags.contains(Flags::ACK_REQ) {
            core::mem::swap(&mut self.inflight_wire, &mut wire);
            self.inflight = Some(Inflight {
                header: h,
                deadline: now + self.config.rtx_timeout,
                timeout: self.config.rtx_timeout,
                resends: 0,
            });
        }
        self.scratch = wire;
    }

    fn emit_event(&mut self, now: Instant, ev: QueuedEvent) {
        let opcode = if ev.channel == ChannelId::SYSTEM {
            Opcode::SYS_EVENT
        } else {
            Opcode::CHANNEL_EVENT
        };
        let mut flags = Flags::EVENT;
        if ev.ack_req && self.caps.flags.ack() {
            flags = flags | Flags::ACK_REQ;
        }
        let (buf, n) = crate::event::encode_event_payload(ev.event);
        let h = Header {
            sequence: self.sequence,
            channel: ev.channel,
            flags,
            opcode,
            length: n as u16,
        };
        let crc = self.caps.flags.crc();
        self.transmits
            .push_with(|out| encode_packet(&h, &buf[..n], crc, out));
        self.stats.sent = self.stats.sent.wrapping_add(1);
        self.stats.sent_events = self.stats.sent_events.wrapping_add(1);
        if flags.contains(Flags::ACK_REQ) {
            self.inflight_wire.clear();
            encode_packet(&h, &buf[..n], crc, &mut self.inflight_wire);
            self.inflight = Some(Inflight {
                header: h,
                deadline: now + self.config.rtx_timeout,
                timeout: self.config.rtx_timeout,
                resends: 0,
            });
        }
    }

    /// A status packet (ACK/NAK): numbered, never waits for an ACK.
    fn send_numbered(&mut self, h: Header, payload: &[u8]) {
        self.send_raw(&h, payload);
        self.sequence = self.sequence.wrapping_add(1);
    }

    fn send_raw(&mut self, h: &Header, payload: &[u8]) {
        let crc = self.caps.flags.crc();
        self.transmits
            .push_with(|out| encode_packet(h, payload, crc, out));
        self.stats.sent = self.stats.sent.wrapping_add(1);
    }

    /// Firmware send loop: keeps input for when the current answer is done,
    /// within the firmware's input buffer (one packet buffer).
    fn defer(&mut self, d: Deferred) {
        let room = usize::from(self.config.max_payload) + HEADER_SIZE + crate::header::TRAILER_SIZE;
        if self.deferred_bytes + d.wire_len() > room {
            self.deferred_dropped += 1;
            return;
        }
        self.deferred_bytes += d.wire_len();
        self.deferred.push_back(d);
    }

    /// Input deferred by the firmware send loop, now that it is idle: the
    /// checks the firmware makes when it parses the packet at last.
    fn process_deferred(&mut self, now: Instant, d: Deferred) {
        match d {
            Deferred::Nak(h, status) => self.nak(&h, status),
            Deferred::Packet(p) => {
                let h = p.header;
                let exempt = h.flags.intersects(Flags::ACK | Flags::NAK)
                    || h.opcode.is_event()
                    || h.opcode == Opcode::PROTO_SYNC;
                if self.caps.flags.seq() && h.sequence != self.sequence && !exempt {
                    self.stats.sequence_errors = self.stats.sequence_errors.wrapping_add(1);
                    self.nak(&h, Status::SEQUENCE);
                } else {
                    self.handle_packet(now, p);
                }
            }
        }
    }

    /// Firmware send loop: the read that survives a protocol reset (one
    /// sent piece by piece from a channel without `readp`), taken out of
    /// `message` so the reset does not drop it.
    fn take_continuing_read(&mut self) -> Option<Message> {
        if !self.config.firmware_send_loop {
            return None;
        }
        let Some(Message::Read { header, .. }) = &self.message else {
            return None;
        };
        let readp = match self.slots.get(usize::from(header.channel.0)) {
            Some(Some(s)) => s.ops.contains(Ops::READP),
            _ => return None,
        };
        if readp {
            return None;
        }
        self.message.take()
    }

    /// The port closed: nothing more can be sent.
    fn close_transport(&mut self) {
        if let (
            true,
            Some(Message::Read {
                header,
                offset,
                remaining,
                ..
            }),
        ) = (self.config.firmware_send_loop, self.message.take())
        {
            // The firmware's read loop runs to its end with every send
            // failing: each remaining piece is still read from the channel.
            let piece = self.read_piece_len();
            if let Some(Some(slot)) = self.slots.get_mut(usize::from(header.channel.0)) {
                if !slot.ops.contains(Ops::READP) {
                    let mut scratch = alloc::vec![0u8; usize::from(piece)];
                    let (mut offset, mut remaining) = (offset, remaining);
                    while remaining > 0 {
                        let want = remaining.min(u32::from(piece)) as usize;
                        match slot.backend.read(offset, &mut scratch[..want]) {
                            Ok(n) if n > 0 => {
                                let n = n.min(want) as u32;
                                remaining -= n;
                                offset = offset.wrapping_add(n);
                            }
                            _ => break,
                        }
                    }
                }
            }
        }
        self.message = None;
        self.inflight = None;
        self.transmits.clear();
        self.events.clear();
        self.deferred.clear();
        self.deferred_bytes = 0;
        self.framer.clear();
    }

    fn read_piece_len(&self) -> u16 {
        self.config
            .read_piece
            .unwrap_or(self.caps.max_payload)
            .min(self.caps.max_payload)
            .max(1)
    }

    fn reset_protocol(&mut self, cause: ResetCause) {
        self.reset_state(cause == ResetCause::Restart);
        if cause != ResetCause::Sync {
            self.framer.clear();
        }
        self.app_events.push_back(DeviceEvent::ProtocolReset(cause));
    }

    /// What every protocol reset does. The firmware restores its start-up
    /// configuration (PROTOCOL.md section 6), not the protocol's minimal
    /// defaults. A re-initialisation (`reinit`: the firmware's init after a
    /// soft reset) also forgets the lock timestamp; a SYNC or a give-up
    /// keeps it.
    fn reset_state(&mut self, reinit: bool) {
        self.sequence = 0;
        self.caps = self.startup_caps();
        self.framer.set_config(device_framer(self.caps));
        self.transmits.clear();
        self.inflight = None;
        self.message = None;
        self.events.clear();
        if reinit {
            self.last_lock = None;
        }
        // The firmware empties its input buffer.
        self.deferred.clear();
        self.deferred_bytes = 0;
        for s in self.slots.iter_mut().flatten() {
            s.backend.reset();
        }
    }
}

/// The start-up caps of `config`, limited to what the cam supports. CRC
/// and sequence numbers count as supported at start-up whatever
/// `supported` says: every handshake begins with them (the host's default
/// caps), and a cam without them could never be reached.
fn resolve_startup(config: &DeviceConfig) -> Caps {
    let supported = CapFlags((config.supported.0 | Caps::DEFAULT.flags.0) & CapFlags::KNOWN.0);
    match config.startup_caps {
        Some(c) => Caps {
            flags: CapFlags(c.flags.0 & supported.0),
            max_payload: c.max_payload.clamp(
                crate::MIN_PAYLOAD,
                config.max_payload.max(crate::MIN_PAYLOAD),
            ),
        },
        None => Caps {
            flags: supported,
            max_payload: config.max_payload.max(crate::MIN_PAYLOAD),
        },
    }
}

fn device_framer(caps: Caps) -> FramerConfig {
    FramerConfig::new(Role::Device, caps.flags.crc(), caps.max_payload)
}

/// Marks an encoded packet as a resend: with CRC on, sets RTX and
/// recomputes the header CRC. With CRC off the firmware sends the packet
/// again unchanged, without RTX (it only sets the flag when it recomputes
/// the CRC; PROTOCOL.md section 4), and so does this endpoint.
fn set_rtx(wire: &mut [u8], crc: bool) {
    if wire.len() < HEADER_SIZE || !crc {
        return;
    }
    wire[4] |= Flags::RTX.0;
    let c = crate::crc::crc16(&wire[..8]);
    wire[8..10].copy_from_slice(&c.to_le_bytes());
}
