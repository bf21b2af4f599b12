//! The host endpoint: the PC side of the link, as a state machine with no I/O.
//!
//! Drive it like this (see `host-blocking` for a complete driver):
//!
//! 1. [`HostEndpoint::connect`] (or [`HostEndpoint::request`] once connected);
//! 2. write every [`poll_transmit`](HostEndpoint::poll_transmit) buffer to the port;
//! 3. feed what the port returns to [`handle_input`](HostEndpoint::handle_input),
//!    or call [`handle_timeout`](HostEndpoint::handle_timeout) when
//!    [`poll_timeout`](HostEndpoint::poll_timeout) has passed;
//! 4. collect [`poll_completion`](HostEndpoint::poll_completion) and
//!    [`poll_event`](HostEndpoint::poll_event).
//!
//! ```
//! use omv_proto::host::{HostConfig, HostEndpoint, Completion};
//! use omv_proto::Instant;
//! let mut host = HostEndpoint::new(HostConfig::default());
//! host.connect(Instant::ZERO);
//! let sync = host.poll_transmit().unwrap();
//! assert_eq!(sync, [0xaa, 0xd5, 0, 0, 0, 0, 0, 0, 0xb0, 0xac]);
//! // No answer within the timeout: the endpoint retries SYNC.
//! host.handle_timeout(host.poll_timeout().unwrap());
//! assert!(host.poll_transmit().is_some());
//! assert!(host.poll_completion().is_none());
//! ```

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use bytes::{Bytes, BytesMut};

use crate::caps::{CapFlags, Caps};
use crate::framer::{Frame, Framer, FramerConfig, Role};
use crate::header::Header;
use crate::packet::encode_packet;
use crate::txqueue::TxQueue;
use crate::{ChannelId, Duration, Flags, Instant, Opcode, Packet, Status};

/// Host settings, with the stock Python package's defaults.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct HostConfig {
    /// Ask for CRCs.
    pub crc: bool,
    /// Ask for sequence checking.
    pub seq: bool,
    /// Ask the cam to request ACKs (and retransmit).
    pub ack: bool,
    /// Ask for events.
    pub events: bool,
    /// Largest payload wanted; clipped to the cam's.
    pub max_payload: u16,
    /// How long to wait for each packet of a response.
    pub timeout: Duration,
    /// SYNC attempts before a resync fails.
    pub max_retry: u8,
}

/// Chainable setters, one per field (the struct is `#[non_exhaustive]`:
/// build it from [`Default::default`] and these, not with a struct literal).
impl HostConfig {
    /// Sets [`crc`](Self::crc).
    #[must_use]
    pub fn crc(mut self, crc: bool) -> Self {
        self.crc = crc;
        self
    }
    /// Sets [`seq`](Self::seq).
    #[must_use]
    pub fn seq(mut self, seq: bool) -> Self {
        self.seq = seq;
        self
    }
    /// Sets [`ack`](Self::ack).
    #[must_use]
    pub fn ack(mut self, ack: bool) -> Self {
        self.ack = ack;
        self
    }
    /// Sets [`events`](Self::events).
    #[must_use]
    pub fn events(mut self, events: bool) -> Self {
        self.events = events;
        self
    }
    /// Sets [`max_payload`](Self::max_payload).
    #[must_use]
    pub fn max_payload(mut self, max_payload: u16) -> Self {
        self.max_payload = max_payload;
        self
    }
    /// Sets [`timeout`](Self::timeout).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Sets [`max_retry`](Self::max_retry).
    #[must_use]
    pub fn max_retry(mut self, max_retry: u8) -> Self {
        self.max_retry = max_retry;
        self
    }
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            crc: true,
            seq: true,
            ack: true,
            events: true,
            max_payload: 4096,
            timeout: Duration::from_secs(1),
            max_retry: 3,
        }
    }
}

/// A request: opcode, channel and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Opcode.
    pub opcode: Opcode,
    /// Channel (0 for system opcodes).
    pub channel: ChannelId,
    /// Payload.
    pub payload: Bytes,
}

impl Command {
    /// A command with no payload.
    pub fn new(opcode: Opcode, channel: ChannelId) -> Command {
        Command {
            opcode,
            channel,
            payload: Bytes::new(),
        }
    }

    /// A system command (channel 0, no payload).
    pub fn system(opcode: Opcode) -> Command {
        Command::new(opcode, ChannelId::SYSTEM)
    }

    /// CHANNEL_READ of `length` bytes at `offset`.
    pub fn read(channel: ChannelId, offset: u32, length: u32) -> Command {
        let mut p = Vec::with_capacity(8);
        p.extend_from_slice(&offset.to_le_bytes());
        p.extend_from_slice(&length.to_le_bytes());
        Command {
            opcode: Opcode::CHANNEL_READ,
            channel,
            payload: p.into(),
        }
    }

    /// One CHANNEL_WRITE packet of `data` at `offset` (the caller splits to `max_payload - 8`).
    pub fn write(channel: ChannelId, offset: u32, data: &[u8]) -> Command {
        Command::write_in(&mut BytesMut::new(), channel, offset, data)
    }

    /// [`write`](Self::write), built in `buf`: once the command is dropped
    /// the next call reuses `buf`'s memory, so that a writer sending packet
    /// after packet allocates nothing per packet.
    pub fn write_in(buf: &mut BytesMut, channel: ChannelId, offset: u32, data: &[u8]) -> Command {
        buf.clear();
        buf.reserve(8 + data.len());
        buf.extend_from_slice(&offset.to_le_bytes());
        buf.extend_from_slice(&(data.len() as u32).to_le_bytes());
        buf.extend_from_slice(data);
        Command {
            opcode: Opcode::CHANNEL_WRITE,
            channel,
            payload: buf.split().freeze(),
        }
    }

    /// CHANNEL_IOCTL `request` with raw argument bytes.
    pub fn ioctl(channel: ChannelId, request: u32, args: &[u8]) -> Command {
        let mut p = Vec::with_capacity(4 + args.len());
        p.extend_from_slice(&request.to_le_bytes());
        p.extend_from_slice(args);
        Command {
            opcode: Opcode::CHANNEL_IOCTL,
            channel,
            payload: p.into(),
        }
    }
}

/// A successful response.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// A status ACK (no data).
    Ack,
    /// Data, reassembled from all fragments.
    Data(Bytes),
}

impl Reply {
    /// The data bytes (empty for an ACK).
    pub fn into_bytes(self) -> Bytes {
        match self {
            Reply::Ack => Bytes::new(),
            Reply::Data(b) => b,
        }
    }
}

/// Why a request or a connect failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The cam answered with a NAK.
    #[error("cam answered NAK {0}")]
    Nak(Status),
    /// No packet of the response arrived within the timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// SYNC got no answer after every attempt.
    #[error("resync failed after {attempts} SYNC attempts")]
    ResyncFailed {
        /// Attempts made.
        attempts: u8,
    },
    /// The response carried another opcode than the request.
    #[error("response opcode {got} does not match request {expected}")]
    UnexpectedOpcode {
        /// Request opcode.
        expected: Opcode,
        /// Response opcode.
        got: Opcode,
    },
    /// A response payload could not be decoded.
    #[error("malformed response: {0}")]
    Malformed(crate::DecodeError),
    /// A packet of the answer was lost and the cam will not resend it (ACKs
    /// off): a later packet failed the sequence check.
    #[error("a packet of the answer was lost (expected sequence {expected})")]
    LostPacket {
        /// The sequence number the host was waiting for.
        expected: u8,
    },
    /// The answer carried more bytes than the request can legitimately
    /// return (see [`response_limit`]): a CHANNEL_READ of N bytes answered
    /// with more than N, or fragments that never end. The request fails as
    /// soon as the bound is passed; the bytes are neither kept nor returned.
    #[error(
        "the answer to {opcode} carried {received} bytes or more; it can carry at most {limit}"
    )]
    ResponseTooLong {
        /// Request opcode.
        opcode: Opcode,
        /// The most data bytes the request can legitimately return.
        limit: usize,
        /// Data bytes received when the bound was passed.
        received: usize,
    },
    /// Not connected (connect first).
    #[error("not connected")]
    NotConnected,
    /// Another request is still in flight.
    #[error("another request is in flight")]
    Busy,
    /// The payload is longer than the negotiated `max_payload`.
    #[error("payload of {len} bytes exceeds max_payload {max}")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
        /// Negotiated maximum.
        max: u16,
    },
    /// A command the host cannot send: a channel id over 31. (A system
    /// opcode on a data channel is sent as asked; the cam NAKs it INVALID.)
    #[error("invalid command: {0}")]
    InvalidCommand(&'static str),
    /// The first data packet after an unconfirmed handshake (see
    /// [`HostEndpoint::caps_confirmed`]) showed the cam had not taken the
    /// caps the host set: the SET_CAPS ACK the host took was a late answer
    /// of an abandoned attempt. Resync and retry.
    #[error("the cam did not take the negotiated caps (its answer {} an ACK)", if *.asks_ack { "asked for" } else { "did not ask for" })]
    CapsNotApplied {
        /// The packet carried ACK_REQ.
        asks_ack: bool,
    },
}

/// What finished.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Completion {
    /// [`HostEndpoint::connect`] or [`HostEndpoint::renegotiate`] ended.
    Connected(Result<Caps, RequestError>),
    /// [`HostEndpoint::request`] ended.
    Request(Result<Reply, RequestError>),
}

/// An event sent by the cam.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CamEvent {
    /// Channel (0 for system events).
    pub channel: ChannelId,
    /// Event id; 0xFFFF for a payload-less NOTIFY.
    pub event: u16,
}

impl CamEvent {
    /// The id reported for an event without payload.
    pub const NOTIFY: u16 = 0xFFFF;
    /// System event: a channel was registered.
    pub const CHANNEL_REGISTERED: u16 = 0;
    /// System event: a channel was unregistered.
    pub const CHANNEL_UNREGISTERED: u16 = 1;
    /// System event: the cam soft-rebooted (a script ended).
    pub const SOFT_REBOOT: u16 = 2;
}

/// Host-side counters (the stock four, plus more).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostStats {
    /// Packets sent (requests and ACKs).
    pub sent: u64,
    /// Packets received and accepted.
    pub received: u64,
    /// Payload CRC errors.
    pub checksum: u64,
    /// Headers dropped by the sequence check.
    pub sequence: u64,
    /// Headers with a bad CRC.
    pub header_checksum: u64,
    /// Retransmitted duplicates discarded.
    pub duplicates: u64,
    /// Events received.
    pub events: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Packets that arrived with no request pending.
    pub unexpected: u64,
    /// Bytes dropped while hunting for a packet.
    pub dropped_bytes: u64,
}

#[derive(Clone, Debug)]
enum Op {
    Idle,
    Sync {
        attempt: u8,
    },
    GetCaps,
    SetCaps {
        caps: Caps,
    },
    Request {
        opcode: Opcode,
        /// The answer's fragments so far (empty when streamed: they go to
        /// `HostEndpoint::streamed`).
        data: BytesMut,
        /// Data bytes of the answer received so far.
        received: usize,
        /// The most data bytes the answer may carry ([`response_limit`]).
        limit: usize,
        /// Fragments go to `streamed`, for [`HostEndpoint::drain_received`].
        stream: bool,
    },
}

/// The most data bytes a well-behaved cam's answer to `cmd` can carry, with
/// `max_payload` negotiated; the host fails a request whose answer carries
/// more with [`RequestError::ResponseTooLong`], so a misbehaving cam can
/// never make it buffer more than this.
///
/// * CHANNEL_READ: the length asked for (a cam may send less, never more);
///   0 when the request is too short to carry a length (the cam NAKs it);
/// * fixed-size answers: GET_CAPS 16, STATS 32, VERSION 16, SYS_INFO 76,
///   CHANNEL_POLL 4, CHANNEL_SIZE 4, CHANNEL_SHAPE 16 (4 × u32);
/// * SYS_MEMORY: 4 + 24 × 255 (the count is a u8); CHANNEL_LIST: 32 entries
///   of 16 bytes (one per channel id);
/// * status-only requests (SYNC, SET_CAPS, SYS_RESET, SYS_BOOT, LOCK, UNLOCK,
///   WRITE, IOCTL): 0, an ACK or a NAK;
/// * any other opcode (unknown to the protocol): one packet, `max_payload`.
pub fn response_limit(cmd: &Command, max_payload: u16) -> usize {
    use crate::channel::ENTRY_SIZE;
    match cmd.opcode {
        Opcode::CHANNEL_READ => crate::request::ReadRequest::decode(&cmd.payload)
            .map(|r| usize::try_from(r.length).unwrap_or(usize::MAX))
            .unwrap_or(0),
        Opcode::PROTO_GET_CAPS => Caps::LEN,
        Opcode::PROTO_STATS => crate::stats::Stats::LEN,
        Opcode::PROTO_VERSION => crate::version::Version::LEN,
        Opcode::SYS_INFO => crate::sysinfo::SysInfo::LEN,
        Opcode::SYS_MEMORY => {
            crate::memory::MemoryStats::HEADER_LEN
                + crate::memory::MemoryEntry::LEN * crate::memory::MemoryStats::MAX_ENTRIES
        }
        Opcode::CHANNEL_LIST => ChannelId::COUNT * ENTRY_SIZE,
        Opcode::CHANNEL_POLL => crate::poll::PollBitmap::LEN,
        Opcode::CHANNEL_SIZE => 4,
        Opcode::CHANNEL_SHAPE => 4 * crate::shape::Shape::MAX_DIMS,
        Opcode::PROTO_SYNC
        | Opcode::PROTO_SET_CAPS
        | Opcode::SYS_RESET
        | Opcode::SYS_BOOT
        | Opcode::CHANNEL_LOCK
        | Opcode::CHANNEL_UNLOCK
        | Opcode::CHANNEL_WRITE
        | Opcode::CHANNEL_IOCTL => 0,
        _ => usize::from(max_payload),
    }
}

/// The host endpoint. See the module documentation.
#[derive(Debug)]
pub struct HostEndpoint {
    config: HostConfig,
    framer: Framer,
    /// Negotiated caps (DEFAULT until a connect succeeds).
    caps: Caps,
    connected: bool,
    sequence: u8,
    op: Op,
    deadline: Option<Instant>,
    /// When the operation last made progress (request sent, fragment received).
    progress_at: Instant,
    transmits: TxQueue,
    completions: VecDeque<Completion>,
    events: VecDeque<CamEvent>,
    stats: HostStats,
    channels_changed: bool,
    /// Channel of the request in flight (for a NAK asking for a resend).
    req_channel: ChannelId,
    /// The last ACK sent (to send it again when the cam may have missed it).
    last_ack: Option<Header>,
    /// Data received of the last request that failed (for resuming a read).
    partial: BytesMut,
    /// Opcode of the last request sent (ACKs and NAKs excluded).
    last_request: Option<Opcode>,
    /// A resync that keeps the negotiated caps: SET_CAPS right after SYNC.
    keep_caps: Option<Caps>,
    /// CRC off: the header of the last packet that asked for an ACK, and
    /// its payload in `last_acked_payload`, to recognise the cam's resends,
    /// which carry no RTX flag then (PROTOCOL.md section 4).
    last_acked: Option<Header>,
    last_acked_payload: Vec<u8>,
    /// Fragments of a streamed request's answer not yet drained (reused).
    streamed: BytesMut,
    /// An exchange was abandoned before its whole answer came (a timeout,
    /// an early failure, an abandoned request): its answer may still be on
    /// the link. Every handshake round uses the same sequence numbers and
    /// gets the same answers, so such a late SYNC, GET_CAPS or SET_CAPS
    /// answer can complete the next handshake while the cam never took its
    /// SET_CAPS. Such a handshake is `unconfirmed` until a data packet
    /// shows the caps.
    unsettled: bool,
    /// The last handshake may have been completed by late answers and set
    /// caps that differ from the cam's start-up ones where a data packet
    /// tells (ACK_REQ); the first data packet of an answer confirms them or
    /// fails its request with [`RequestError::CapsNotApplied`].
    unconfirmed: bool,
    /// The caps the cam announced in its last GET_CAPS answer: after a
    /// SYNC, those it starts with (the firmware announces the caps in
    /// force).
    announced: Option<Caps>,
    /// The caps the cam keeps if this round's SET_CAPS is not taken, when
    /// no SYNC preceded it ([`renegotiate`](HostEndpoint::renegotiate)):
    /// the caps in force; after a SYNC, `announced`.
    fallback: Option<Caps>,
}

impl HostEndpoint {
    /// A disconnected endpoint.
    pub fn new(config: HostConfig) -> HostEndpoint {
        HostEndpoint {
            framer: Framer::new(default_framer()),
            caps: Caps::DEFAULT,
            connected: false,
            sequence: 0,
            op: Op::Idle,
            deadline: None,
            progress_at: Instant::ZERO,
            transmits: TxQueue::default(),
            completions: VecDeque::new(),
            events: VecDeque::new(),
            stats: HostStats::default(),
            channels_changed: false,
            req_channel: ChannelId::SYSTEM,
            last_ack: None,
            partial: BytesMut::new(),
            last_request: None,
            keep_caps: None,
            last_acked: None,
            last_acked_payload: Vec::new(),
            streamed: BytesMut::new(),
            unsettled: false,
            unconfirmed: false,
            announced: None,
            fallback: None,
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Changes the configuration used by the next connect (caps, timeout...).
    pub fn set_config(&mut self, config: HostConfig) {
        self.config = config;
    }

    /// Negotiated capabilities (protocol defaults before the first connect).
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// False while the caps of the last handshake are unconfirmed: an
    /// exchange abandoned before it may have left late answers on the link
    /// that completed the handshake in place of the cam's (every round
    /// gets the same answers), and the caps differ from the cam's start-up
    /// ones where a data packet tells (ACKs). The first data packet of an
    /// answer then confirms them, or shows the cam never took them and
    /// fails its request with [`RequestError::CapsNotApplied`].
    pub fn caps_confirmed(&self) -> bool {
        !self.unconfirmed
    }

    /// True after a successful connect, until a failed resync or [`disconnect`](Self::disconnect).
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// True while a connect or request is in flight.
    pub fn is_busy(&self) -> bool {
        !matches!(self.op, Op::Idle)
    }

    /// Current sequence counter.
    pub fn sequence(&self) -> u8 {
        self.sequence
    }

    /// Counters.
    pub fn stats(&self) -> HostStats {
        let f = self.framer.stats();
        HostStats {
            checksum: self.stats.checksum + f.payload_crc_errors,
            sequence: self.stats.sequence + f.sequence_errors,
            header_checksum: self.stats.header_checksum + f.header_crc_errors,
            dropped_bytes: self.stats.dropped_bytes + f.dropped_bytes,
            ..self.stats
        }
    }

    /// True (once) when a CHANNEL_REGISTERED/UNREGISTERED event arrived since
    /// the last call: the channel list must be refreshed before a lookup.
    pub fn take_channels_changed(&mut self) -> bool {
        core::mem::take(&mut self.channels_changed)
    }

    /// Starts a resync: SYNC (with `max_retry` attempts), GET_CAPS, then
    /// SET_CAPS with the configured flags and the clipped `max_payload`.
    /// Ends with [`Completion::Connected`]. Abandons any request in flight.
    ///
    /// After an exchange was abandoned (its answer may still arrive, and
    /// would look like this handshake's), the caps stay unconfirmed (see
    /// [`caps_confirmed`](Self::caps_confirmed)) until a data packet shows
    /// them; no exchange is added, the handshake is the stock one.
    pub fn connect(&mut self, now: Instant) {
        self.reset_link();
        self.connected = false;
        self.op = Op::Sync { attempt: 1 };
        self.send_sync(now);
    }

    /// Resyncs keeping the negotiated caps: SYNC, then SET_CAPS with the
    /// caps the cam accepted before (GET_CAPS would tell nothing new), two
    /// exchanges instead of three. False (nothing done) when not
    /// connected; then use [`connect`](Self::connect). Ends with
    /// [`Completion::Connected`].
    pub fn resync_keep_caps(&mut self, now: Instant) -> bool {
        if !self.connected {
            return false;
        }
        let caps = self.caps;
        self.reset_link();
        self.connected = false;
        self.keep_caps = Some(caps);
        self.op = Op::Sync { attempt: 1 };
        self.send_sync(now);
        true
    }

    /// Re-runs GET_CAPS/SET_CAPS on a connected link (after changing the config).
    pub fn renegotiate(&mut self, now: Instant) -> Result<(), RequestError> {
        self.check_idle()?;
        self.fallback = Some(self.caps);
        self.op = Op::GetCaps;
        self.send_request(now, &Command::system(Opcode::PROTO_GET_CAPS));
        Ok(())
    }

    /// Forgets the connection (the driver closes the port).
    pub fn disconnect(&mut self) {
        self.reset_link();
        self.connected = false;
        // A closed port ends whatever the cam was still sending.
        self.unsettled = false;
    }

    /// Sends one request; its outcome is a [`Completion::Request`].
    pub fn request(&mut self, now: Instant, cmd: &Command) -> Result<(), RequestError> {
        self.start_request(now, cmd, false)
    }

    /// [`request`](Self::request), with the answer's fragments handed out
    /// as they arrive instead of joined: take them with
    /// [`drain_received`](Self::drain_received) after each
    /// [`handle_input`](Self::handle_input) (they come before the
    /// completion's [`Reply`], which carries only the last packet's data),
    /// so that a large answer is reassembled in the caller's buffer. What
    /// was not drained when the request fails goes to
    /// [`take_partial`](Self::take_partial).
    pub fn request_streamed(&mut self, now: Instant, cmd: &Command) -> Result<(), RequestError> {
        self.start_request(now, cmd, true)
    }

    fn start_request(
        &mut self,
        now: Instant,
        cmd: &Command,
        stream: bool,
    ) -> Result<(), RequestError> {
        self.check_idle()?;
        self.check_command(cmd)?;
        self.req_channel = cmd.channel;
        self.partial.clear();
        self.streamed.clear();
        self.op = Op::Request {
            opcode: cmd.opcode,
            data: BytesMut::new(),
            received: 0,
            limit: response_limit(cmd, self.caps.max_payload),
            stream,
        };
        self.send_request(now, cmd);
        Ok(())
    }

    /// Hands the fragments of a streamed request's answer received since
    /// the last call to `sink` (nothing when there are none); see
    /// [`request_streamed`](Self::request_streamed).
    pub fn drain_received(&mut self, sink: impl FnOnce(&[u8])) {
        if !self.streamed.is_empty() {
            sink(&self.streamed);
            self.streamed.clear();
        }
    }

    /// Sends a request that has no response (SYS_RESET, SYS_BOOT): the link
    /// is considered down afterwards.
    pub fn send_oneway(&mut self, cmd: &Command) -> Result<(), RequestError> {
        self.check_idle()?;
        self.check_command(cmd)?;
        let header = self.header(cmd.channel, Flags::NONE, cmd.opcode, self.sequence);
        self.transmit(&header, &cmd.payload);
        self.connected = false;
        Ok(())
    }

    /// Next bytes to write to the port (one packet).
    /// [`poll_transmit_into`](Self::poll_transmit_into) is the same without
    /// a new `Vec` per packet.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.poll_transmit_into(&mut out).map(|_| out)
    }

    /// The next packet to write, appended to `buf`; returns its length.
    /// Allocates nothing once `buf` and the endpoint's queue have grown.
    #[must_use]
    pub fn poll_transmit_into(&mut self, buf: &mut Vec<u8>) -> Option<usize> {
        self.transmits.pop_into(buf)
    }

    /// Next finished operation.
    #[must_use]
    pub fn poll_completion(&mut self) -> Option<Completion> {
        self.completions.pop_front()
    }

    /// Next cam event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<CamEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Tells the endpoint time has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        self.deadline = None;
        self.unsettled |= !matches!(self.op, Op::Idle);
        match core::mem::replace(&mut self.op, Op::Idle) {
            Op::Idle => {}
            Op::Sync { attempt } => {
                if attempt < self.config.max_retry.max(1) {
                    self.op = Op::Sync {
                        attempt: attempt + 1,
                    };
                    self.send_sync(now);
                } else {
                    self.connected = false;
                    let e = RequestError::ResyncFailed { attempts: attempt };
                    self.completions.push_back(Completion::Connected(Err(e)));
                }
            }
            Op::GetCaps | Op::SetCaps { .. } => {
                self.stats.timeouts += 1;
                self.connected = false;
                let e = RequestError::Timeout(self.config.timeout);
                self.completions.push_back(Completion::Connected(Err(e)));
            }
            Op::Request { data, .. } => {
                self.keep_partial(data);
                self.stats.timeouts += 1;
                self.completions
                    .push_back(Completion::Request(Err(RequestError::Timeout(
                        self.config.timeout,
                    ))));
            }
        }
    }

    /// Feeds bytes read from the port.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.framer.push(data);
        loop {
            let expected = if self.caps.flags.seq() {
                Some(self.sequence)
            } else {
                None
            };
            let rejected = self.framer.stats().sequence_errors;
            let frame = self.framer.next(expected);
            if self.framer.stats().sequence_errors != rejected {
                self.sequence_gap();
            }
            let Some(frame) = frame else {
                break;
            };
            if let Frame::Packet(p) = frame {
                self.handle_packet(now, p);
            }
        }
    }

    /// A packet failed the sequence check. While a request waits for its
    /// answer and the cam does not retransmit (ACKs off), that means a packet
    /// of the answer was lost, and the rest cannot be trusted: the 8-bit
    /// counter wraps, so a fragment 256 packets later would pass the check
    /// and be appended to the wrong data. The request fails instead.
    fn sequence_gap(&mut self) {
        if self.caps.flags.ack() || !matches!(self.op, Op::Request { .. }) {
            return;
        }
        self.finish(Err(RequestError::LostPacket {
            expected: self.sequence,
        }));
    }

    fn handle_packet(&mut self, now: Instant, p: Packet) {
        self.stats.received += 1;
        let h = p.header;
        // A retransmitted copy of a packet already received: re-ACK, discard.
        if (h.flags.contains(Flags::RTX) && h.sequence != self.sequence)
            || self.is_plain_copy(&h, &p.payload)
        {
            self.stats.duplicates += 1;
            if h.flags.contains(Flags::ACK_REQ) {
                self.send_ack(&h);
            }
            return;
        }
        // The framer lets through, with CRC off, a packet numbered one
        // before the counter (a possible resend without RTX); one that is
        // not a copy of the last packet fails the sequence check after all.
        if self.caps.flags.seq()
            && h.sequence != self.sequence
            && !h.flags.intersects(Flags::EVENT | Flags::RTX)
            && h.opcode != Opcode::PROTO_SYNC
        {
            self.stats.sequence += 1;
            return;
        }
        // An answer on another channel than the request's: a late packet of
        // an earlier exchange whose sequence happens to match (requests
        // carry no id). Dropped unACKed, the counter unchanged. Channel 0
        // is accepted too: early firmware answered every request on it.
        if matches!(self.op, Op::Request { .. })
            && !h.flags.contains(Flags::EVENT)
            && h.channel != self.req_channel
            && h.channel != ChannelId::SYSTEM
        {
            self.stats.unexpected += 1;
            return;
        }
        if !self.caps.flags.crc()
            && h.flags.contains(Flags::ACK_REQ)
            && !h.flags.contains(Flags::EVENT)
        {
            self.last_acked = Some(h);
            self.last_acked_payload.clear();
            self.last_acked_payload.extend_from_slice(&p.payload);
        }
        if h.flags.contains(Flags::ACK_REQ) {
            self.send_ack(&h);
        }
        // A late ACK of an earlier SYNC (the link is FIFO, so it belongs to
        // an abandoned attempt): nothing waits for it.
        if h.opcode == Opcode::PROTO_SYNC
            && !h.flags.contains(Flags::EVENT)
            && !matches!(self.op, Op::Sync { .. })
        {
            self.stats.unexpected += 1;
            return;
        }
        if h.flags.contains(Flags::EVENT) {
            self.handle_event(now, &h, &p.payload);
            return;
        }
        self.sequence = self.sequence.wrapping_add(1);
        self.handle_response(now, h, p.payload);
    }

    /// With CRC off the firmware resends a packet unchanged (no RTX flag,
    /// PROTOCOL.md section 4): a packet asking for an ACK that repeats the
    /// last one, header and payload, is a copy whose ACK was lost. (The cam
    /// numbers every packet, so two different consecutive packets never
    /// share a sequence number.)
    fn is_plain_copy(&self, h: &Header, payload: &[u8]) -> bool {
        if self.caps.flags.crc()
            || !h.flags.contains(Flags::ACK_REQ)
            || h.flags.contains(Flags::EVENT)
        {
            return false;
        }
        self.last_acked.as_ref().is_some_and(|last| {
            last.sequence == h.sequence
                && last.channel == h.channel
                && last.opcode == h.opcode
                && last.length == h.length
                && Flags(last.flags.0 & !Flags::RTX.0) == Flags(h.flags.0 & !Flags::RTX.0)
                && self.last_acked_payload == payload
        })
    }

    fn handle_event(&mut self, now: Instant, h: &Header, payload: &[u8]) {
        self.stats.events += 1;
        let event = match payload.len() {
            0 => CamEvent::NOTIFY,
            1 => return, // malformed: ignore rather than guess
            _ => u16::from_le_bytes([payload[0], payload[1]]),
        };
        if h.channel == ChannelId::SYSTEM
            && (event == CamEvent::CHANNEL_REGISTERED || event == CamEvent::CHANNEL_UNREGISTERED)
        {
            self.channels_changed = true;
        }
        self.events.push_back(CamEvent {
            channel: h.channel,
            event,
        });
        // An event proves the cam is alive: extend the wait, as the stock host
        // does, but to at most two timeouts after the last progress, so a cam
        // that keeps sending events (stdout NOTIFY every 50 ms) but never
        // answers cannot hold a request forever.
        if let Some(d) = self.deadline {
            let cap = self.progress_at + self.config.timeout.saturating_mul(2);
            self.deadline = Some(d.max((now + self.config.timeout).min(cap)));
        }
    }

    fn handle_response(&mut self, now: Instant, h: Header, payload: Bytes) {
        let expected = match &self.op {
            Op::Idle => {
                self.stats.unexpected += 1;
                return;
            }
            Op::Sync { .. } => Opcode::PROTO_SYNC,
            Op::GetCaps => Opcode::PROTO_GET_CAPS,
            Op::SetCaps { .. } => Opcode::PROTO_SET_CAPS,
            Op::Request { opcode, .. } => *opcode,
        };
        if h.opcode != expected {
            if matches!(self.op, Op::Sync { .. }) {
                // Leftovers of an earlier exchange while resyncing: ignore.
                return;
            }
            self.finish(Err(RequestError::UnexpectedOpcode {
                expected,
                got: h.opcode,
            }));
            return;
        }
        if let Op::Request {
            received, limit, ..
        } = &self.op
        {
            let received = received + payload.len();
            if !h.flags.contains(Flags::NAK) && received > *limit {
                let limit = *limit;
                self.finish(Err(RequestError::ResponseTooLong {
                    opcode: expected,
                    limit,
                    received,
                }));
                return;
            }
        }
        if self.unconfirmed
            && matches!(self.op, Op::Request { .. })
            && !h.flags.contains(Flags::NAK)
            && !h.flags.contains(Flags::ACK)
        {
            // A data packet: ACK_REQ exactly when ACKs are on (PROTOCOL.md
            // section 4).
            let asks_ack = h.flags.contains(Flags::ACK_REQ);
            if asks_ack != self.caps.flags.ack() {
                self.finish(Err(RequestError::CapsNotApplied { asks_ack }));
                return;
            }
            self.unconfirmed = false;
            self.unsettled = false;
        }
        if h.flags.contains(Flags::FRAGMENT) && !h.flags.contains(Flags::NAK) {
            if let Op::Request {
                data,
                received,
                stream,
                ..
            } = &mut self.op
            {
                *received += payload.len();
                if *stream {
                    self.streamed.extend_from_slice(&payload);
                } else {
                    data.extend_from_slice(&payload);
                }
                self.progress_at = now;
                self.deadline = Some(now + self.config.timeout);
                return;
            }
        }
        let result = if h.flags.contains(Flags::NAK) {
            match Status::decode(&payload) {
                Ok(s) => Err(RequestError::Nak(s)),
                Err(e) => Err(RequestError::Malformed(e)),
            }
        } else {
            Ok(payload)
        };
        match core::mem::replace(&mut self.op, Op::Idle) {
            Op::Idle => {}
            Op::Sync { attempt } => match result {
                Ok(_) if self.keep_caps.is_some() => {
                    self.sequence = 0;
                    let caps = self.keep_caps.take().unwrap_or(Caps::DEFAULT);
                    self.op = Op::SetCaps { caps };
                    let cmd = Command {
                        opcode: Opcode::PROTO_SET_CAPS,
                        channel: ChannelId::SYSTEM,
                        payload: Bytes::copy_from_slice(&caps.encode()),
                    };
                    self.send_request(now, &cmd);
                }
                Ok(_) => {
                    self.sequence = 0;
                    self.op = Op::GetCaps;
                    self.send_request(now, &Command::system(Opcode::PROTO_GET_CAPS));
                }
                Err(_) => {
                    // Treat like a lost answer: the timer retries.
                    self.op = Op::Sync { attempt };
                }
            },
            Op::GetCaps => {
                match result.and_then(|p| Caps::decode(&p).map_err(RequestError::Malformed)) {
                    Ok(cam) => {
                        self.announced = Some(cam);
                        let want = self.requested_caps(cam);
                        self.op = Op::SetCaps { caps: want };
                        let cmd = Command {
                            opcode: Opcode::PROTO_SET_CAPS,
                            channel: ChannelId::SYSTEM,
                            payload: Bytes::copy_from_slice(&want.encode()),
                        };
                        self.send_request(now, &cmd);
                    }
                    Err(e) => self.fail_connect(e),
                }
            }
            Op::SetCaps { caps } => match result {
                Ok(_) => {
                    self.unconfirmed = self.unsettled && self.confirmable(caps);
                    self.deadline = None;
                    self.apply_caps(caps);
                    self.connected = true;
                    self.completions.push_back(Completion::Connected(Ok(caps)));
                }
                Err(e) => self.fail_connect(e),
            },
            Op::Request { mut data, .. } => {
                self.deadline = None;
                if result.is_err() {
                    self.keep_partial(core::mem::take(&mut data));
                }
                let r = result.map(|p| {
                    if data.is_empty() {
                        if p.is_empty() && h.flags.contains(Flags::ACK) {
                            Reply::Ack
                        } else {
                            Reply::Data(p)
                        }
                    } else {
                        data.extend_from_slice(&p);
                        Reply::Data(data.freeze())
                    }
                });
                // A whole answer came: the link is FIFO and the cam answers
                // in order, so whatever an abandoned exchange had on it
                // came before.
                self.unsettled = false;
                self.completions.push_back(Completion::Request(r));
            }
        }
    }

    /// A SET_CAPS the cam did not take leaves it with its start-up caps
    /// (after a SYNC) or the caps in force (a renegotiation); a data packet
    /// tells the two apart when ACKs differ (the firmware starts with them
    /// on).
    fn confirmable(&self, caps: Caps) -> bool {
        let kept = self.fallback.or(self.announced);
        caps.flags.ack() != kept.map_or(true, |c| c.flags.ack())
    }

    fn finish(&mut self, r: Result<Reply, RequestError>) {
        self.deadline = None;
        self.unsettled = true;
        match core::mem::replace(&mut self.op, Op::Idle) {
            Op::Request { data, .. } => {
                self.keep_partial(data);
                self.completions.push_back(Completion::Request(r))
            }
            Op::Idle => {}
            _ => self.fail_connect(r.err().unwrap_or(RequestError::NotConnected)),
        }
    }

    fn fail_connect(&mut self, e: RequestError) {
        self.deadline = None;
        self.unsettled = true;
        self.op = Op::Idle;
        self.connected = false;
        self.completions.push_back(Completion::Connected(Err(e)));
    }

    fn requested_caps(&self, cam: Caps) -> Caps {
        let c = &self.config;
        // Only what the cam announced: it masks SET_CAPS with what it
        // supports, so asking for more would leave the two sides disagreeing.
        let wanted = CapFlags::NONE
            .set(CapFlags::CRC, c.crc)
            .set(CapFlags::SEQ, c.seq)
            .set(CapFlags::ACK, c.ack)
            .set(CapFlags::EVENTS, c.events);
        let flags = CapFlags(wanted.0 & cam.flags.0);
        let max = c
            .max_payload
            .min(cam.max_payload)
            .clamp(crate::MIN_PAYLOAD, crate::MAX_PAYLOAD);
        Caps {
            flags,
            max_payload: max,
        }
    }

    fn apply_caps(&mut self, caps: Caps) {
        self.caps = caps;
        self.framer.set_config(FramerConfig::new(
            Role::Host,
            caps.flags.crc(),
            caps.max_payload,
        ));
    }

    fn reset_link(&mut self) {
        self.unsettled |= !matches!(self.op, Op::Idle);
        self.unconfirmed = false;
        self.fallback = None;
        self.keep_caps = None;
        self.last_acked = None;
        self.op = Op::Idle;
        self.deadline = None;
        self.sequence = 0;
        self.caps = Caps::DEFAULT;
        self.framer.set_config(default_framer());
        self.framer.clear();
        self.transmits.clear();
    }

    fn check_idle(&self) -> Result<(), RequestError> {
        if !self.connected {
            return Err(RequestError::NotConnected);
        }
        if self.is_busy() {
            return Err(RequestError::Busy);
        }
        Ok(())
    }

    fn check_command(&self, cmd: &Command) -> Result<(), RequestError> {
        if cmd.payload.len() > usize::from(self.caps.max_payload) {
            return Err(RequestError::PayloadTooLarge {
                len: cmd.payload.len(),
                max: self.caps.max_payload,
            });
        }
        if usize::from(cmd.channel.0) >= ChannelId::COUNT {
            return Err(RequestError::InvalidCommand("channel id over 31"));
        }
        Ok(())
    }

    fn send_sync(&mut self, now: Instant) {
        self.sequence = 0;
        self.last_acked = None;
        // Sequence numbers start over: an ACK of the exchange before could
        // match a packet of the next one (DST seed 261).
        self.last_ack = None;
        self.framer.clear();
        let h = self.header(ChannelId::SYSTEM, Flags::NONE, Opcode::PROTO_SYNC, 0);
        self.transmit(&h, &[]);
        self.progress_at = now;
        self.deadline = Some(now + self.config.timeout);
    }

    fn send_request(&mut self, now: Instant, cmd: &Command) {
        self.last_request = Some(cmd.opcode);
        let h = self.header(cmd.channel, Flags::NONE, cmd.opcode, self.sequence);
        self.transmit(&h, &cmd.payload);
        self.progress_at = now;
        self.deadline = Some(now + self.config.timeout);
    }

    fn send_ack(&mut self, of: &Header) {
        let h = self.header(of.channel, Flags::ACK, of.opcode, of.sequence);
        self.last_ack = Some(h);
        self.transmit(&h, &[]);
    }

    /// When the request in flight last made progress (sent, or a fragment
    /// of its answer received).
    pub fn progress_at(&self) -> Instant {
        self.progress_at
    }

    /// Bytes of the answer received so far by the request in flight
    /// (drained ones included).
    pub fn received_len(&self) -> usize {
        match &self.op {
            Op::Request { received, .. } => *received,
            _ => 0,
        }
    }

    /// A failed request's data: what was joined, or the streamed fragments
    /// not drained yet.
    fn keep_partial(&mut self, data: BytesMut) {
        self.partial = data;
        if !self.streamed.is_empty() {
            self.partial.extend_from_slice(&self.streamed);
            self.streamed.clear();
        }
    }

    /// The data that arrived for the last request that failed, before it
    /// failed (so that a read can resume after it). Empty once taken.
    pub fn take_partial(&mut self) -> Bytes {
        core::mem::take(&mut self.partial).freeze()
    }

    /// Opcode of the last request sent: the handshake step a failed
    /// connect was waiting on.
    pub fn last_request(&self) -> Option<Opcode> {
        self.last_request
    }

    /// Abandons the request in flight without a completion; the data
    /// received so far goes to [`take_partial`](Self::take_partial). The
    /// link must be resynced before the next request (its answer may
    /// still arrive).
    pub fn abandon_request(&mut self) {
        if let Op::Request { data, .. } = core::mem::replace(&mut self.op, Op::Idle) {
            self.keep_partial(data);
            self.deadline = None;
            self.unsettled = true;
        }
    }

    /// Asks the cam to resend the packet the request in flight waits for:
    /// a 10-byte NAK with the request's opcode and the expected sequence
    /// (the firmware resends at once, spending one of its resends). False
    /// when no request is in flight or ACKs are off (nothing to resend).
    pub fn nak_awaited(&mut self) -> bool {
        let Op::Request { opcode, .. } = self.op else {
            return false;
        };
        if !self.caps.flags.ack() {
            return false;
        }
        let h = self.header(self.req_channel, Flags::NAK, opcode, self.sequence);
        self.transmit(&h, &[]);
        true
    }

    /// Sends the last ACK again (the cam may still wait for it when it was
    /// lost; a cam that does not ignores it). False when none was sent
    /// since the last SYNC.
    pub fn resend_last_ack(&mut self) -> bool {
        match self.last_ack {
            Some(h) if self.connected => {
                self.transmit(&h, &[]);
                true
            }
            _ => false,
        }
    }

    fn header(&self, channel: ChannelId, flags: Flags, opcode: Opcode, sequence: u8) -> Header {
        Header {
            sequence,
            channel,
            flags,
            opcode,
            length: 0,
        }
    }

    fn transmit(&mut self, h: &Header, payload: &[u8]) {
        let crc = self.caps.flags.crc();
        self.transmits
            .push_with(|out| encode_packet(h, payload, crc, out));
        self.stats.sent += 1;
    }
}

fn default_framer() -> FramerConfig {
    FramerConfig::new(Role::Host, true, crate::HOST_DEFAULT_PAYLOAD)
}
