//! [`SessionConfig`]: what the host asks for and how long it keeps trying.

use omv_proto::host::HostConfig;
use omv_proto::Duration;

/// Host settings: the stock `openmv.Camera` parameters (without the port)
/// and the session's own time budgets.
///
/// Build it with [`SessionConfig::default`] and change fields (the struct
/// is `#[non_exhaustive]`, so later fields do not break callers).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Ask for CRCs on every packet.
    pub crc: bool,
    /// Ask for sequence number checks.
    pub seq: bool,
    /// Ask the cam to request ACKs (and retransmit lost packets).
    pub ack: bool,
    /// Ask for event packets.
    pub events: bool,
    /// Largest payload wanted; clipped to what the cam announces (any
    /// value the cam announces is accepted: 498, 4082, 8178, ...).
    pub max_payload: u16,
    /// Per-packet timeout: the longest wait for the next packet of an
    /// answer before the request counts as failed (the session resyncs and
    /// resumes while the operation's deadline allows).
    pub timeout: Duration,
    /// SYNC attempts per handshake round, and rounds of an in-session
    /// resync before a port reopen. A connect's rounds go on while its
    /// deadline allows, unless the cam sends nothing at all for
    /// `max_retry × timeout`.
    pub max_retry: u8,
    /// Fixed part of every operation's deadline.
    pub deadline_base: Duration,
    /// Part of the deadline per MiB transferred: an operation moving `n`
    /// bytes must end within `deadline_base + n / 1 MiB × deadline_per_mib`.
    pub deadline_per_mib: Duration,
    /// Shortest fast-retransmit threshold: an awaited packet overdue by
    /// `max(fast_min, 4 × round trip)` plus its time through the link is
    /// asked for again (see the crate documentation).
    pub fast_min: Duration,
    /// Test only: probability of dropping each received packet and each
    /// ACK sent, in `[0, 1]` (the stock `drop_rate`). Applied by the
    /// session to the bytes the driver feeds and the packets it takes
    /// (with [`omv_proto::fault::StreamDrops`]), so every driver has it.
    pub drop_rate: f64,
    /// Seed of the drop simulation ([`Session::set_drop_entropy`] replaces
    /// the seeded generator).
    ///
    /// [`Session::set_drop_entropy`]: crate::Session::set_drop_entropy
    pub seed: u64,
    /// Most events kept for [`poll_event`](crate::Session::poll_event)
    /// before the oldest are dropped (counted in
    /// [`EventState::dropped`](crate::EventState::dropped)).
    pub event_queue: usize,
    /// Most bytes one CHANNEL_READ asks for while ACKs are off; a longer
    /// read is several requests. `None` (the default, as the stock host):
    /// one request. With ACKs off the cam sends a whole answer at once, and
    /// over UDP a burst longer than the host socket's receive buffer loses
    /// datagrams (each loss costs a resumed request); see
    /// [`DATAGRAM_UNACKED_READ`]. Set (a datagram link), it also gives up
    /// early on an overdue answer with ACKs off, as with ACKs on: a lost
    /// datagram never comes (the cam sends an answer once), so a lost
    /// request or last datagram costs a fast threshold and a resumed read,
    /// not the per-packet timeout.
    pub unacked_read_max: Option<u32>,
}

/// The [`SessionConfig::unacked_read_max`] datagram transports use: 64 KiB
/// (about 47 datagrams of 1400 bytes), well within Linux's default 208 KiB
/// socket receive buffer.
pub const DATAGRAM_UNACKED_READ: u32 = 64 << 10;

impl Default for SessionConfig {
    /// The stock defaults: CRC, sequence, ACK and events on, 1 s timeout,
    /// 3 SYNC attempts, max payload 4096 (clipped by the cam); deadlines
    /// of 10 s plus 20 s per MiB; fast retransmit after at least 20 ms.
    fn default() -> Self {
        SessionConfig {
            crc: true,
            seq: true,
            ack: true,
            events: true,
            max_payload: 4096,
            timeout: Duration::from_secs(1),
            max_retry: 3,
            deadline_base: Duration::from_secs(10),
            deadline_per_mib: Duration::from_secs(20),
            fast_min: Duration::from_millis(20),
            drop_rate: 0.0,
            seed: 0,
            event_queue: 1024,
            unacked_read_max: None,
        }
    }
}

impl SessionConfig {
    /// The deadline of an operation moving `bytes` bytes.
    pub fn deadline_for(&self, bytes: u64) -> Duration {
        let per = self.deadline_per_mib.as_micros() as u64;
        let extra = (u128::from(per) * u128::from(bytes) / (1 << 20)) as u64;
        self.deadline_base
            .saturating_add(Duration::from_micros(extra))
    }

    /// The sans-IO endpoint's settings.
    pub fn host_config(&self) -> HostConfig {
        HostConfig::default()
            .crc(self.crc)
            .seq(self.seq)
            .ack(self.ack)
            .events(self.events)
            .max_payload(self.max_payload)
            .timeout(self.timeout)
            .max_retry(self.max_retry)
    }
}
