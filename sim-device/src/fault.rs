//! Seeded, reproducible fault injection at packet granularity, on the cam
//! side of the link.
//!
//! A [`FaultInjector`] sits between a [`DeviceEndpoint`] and the transport:
//!
//! * **outgoing** (cam -> host): each packet the cam sends may be dropped
//!   (`drop_rate`), have one random bit flipped (`corrupt_rate`), be held
//!   back for `latency`, and be split into random byte chunks (`chunk_max`);
//! * **incoming** (host -> cam): the byte stream is split at packet
//!   boundaries by scanning headers, and whole packets are dropped with
//!   probability `rx_drop_rate`.
//!
//! The decisions are omv-proto's shared ones ([`omv_proto::fault`]): each
//! direction draws [`fault::plan`]s from its own [`SimRng`] stream derived
//! from one seed, so a run with the same seed and the same traffic makes the
//! same decisions; the incoming stream is cut into packets by
//! [`fault::Reframer`]. Every fault is counted in [`FaultStats`] and logged
//! at debug level.
//!
//! Two wrappers apply an injector: [`FaultyEndpoint`] over any sans-IO cam
//! (virtual time: the caller passes `now`), and [`FaultyTransport`] over any
//! [`Transport`] (real time: for a cam served on a real link, or a host
//! driver's transport).
//!
//! ```
//! use omv_sim::fault::{FaultConfig, FaultInjector};
//! use omv_proto::Instant;
//! let mut f = FaultInjector::new(FaultConfig::default().drop_rate(1.0)).unwrap();
//! f.push_tx(Instant::ZERO, vec![0xaa, 0xd5, 0, 0, 1, 0, 0, 0, 0x08, 0x46]);
//! assert_eq!(f.pop_tx(Instant::ZERO), None);
//! assert_eq!(f.stats().tx_dropped, 1);
//! ```
//!
//! [`DeviceEndpoint`]: omv_proto::device::DeviceEndpoint

use std::time::{Duration as StdDuration, Instant as StdInstant};

use std::io;

use omv_proto::fault::{self, Piece, Reframer};
use omv_proto::header::Header;
use omv_proto::rng::SimRng;
use omv_proto::{Duration, Instant, MAX_PAYLOAD};

use crate::serve::{MonotonicClock, Recv, SansIoCam, Transport};

/// Longest latency accepted (a minute: anything longer is a mistake).
pub const MAX_LATENCY: StdDuration = StdDuration::from_secs(60);

/// Most chunks held back by the latency before the cam stops being asked
/// for more (bounds memory when acks are off).
const MAX_HELD: usize = 1024;

/// What faults to inject. All probabilities are in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FaultConfig {
    /// Probability that a packet the cam sends is dropped.
    pub drop_rate: f64,
    /// Probability that a packet the cam receives is dropped.
    pub rx_drop_rate: f64,
    /// Probability that a packet the cam sends has one random bit flipped.
    pub corrupt_rate: f64,
    /// Delay added to every packet the cam sends.
    pub latency: Duration,
    /// When non-zero, every packet the cam sends is split into chunks of
    /// random sizes in `1..=chunk_max` bytes, each written on its own.
    pub chunk_max: usize,
    /// Seed of every random decision.
    pub seed: u64,
}

/// Chainable setters, one per field (the struct is `#[non_exhaustive]`:
/// build it from [`Default::default`] and these, not with a struct literal).
impl FaultConfig {
    /// Sets [`drop_rate`](Self::drop_rate).
    #[must_use]
    pub fn drop_rate(mut self, drop_rate: f64) -> Self {
        self.drop_rate = drop_rate;
        self
    }
    /// Sets [`rx_drop_rate`](Self::rx_drop_rate).
    #[must_use]
    pub fn rx_drop_rate(mut self, rx_drop_rate: f64) -> Self {
        self.rx_drop_rate = rx_drop_rate;
        self
    }
    /// Sets [`corrupt_rate`](Self::corrupt_rate).
    #[must_use]
    pub fn corrupt_rate(mut self, corrupt_rate: f64) -> Self {
        self.corrupt_rate = corrupt_rate;
        self
    }
    /// Sets [`latency`](Self::latency).
    #[must_use]
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }
    /// Sets [`chunk_max`](Self::chunk_max).
    #[must_use]
    pub fn chunk_max(mut self, chunk_max: usize) -> Self {
        self.chunk_max = chunk_max;
        self
    }
    /// Sets [`seed`](Self::seed).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            drop_rate: 0.0,
            rx_drop_rate: 0.0,
            corrupt_rate: 0.0,
            latency: Duration::ZERO,
            chunk_max: 0,
            seed: 1,
        }
    }
}

/// An invalid [`FaultConfig`].
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FaultError {
    /// A probability outside `[0, 1]` (or NaN).
    #[error("{name} must be a probability between 0 and 1, got {value}")]
    BadProbability {
        /// The option's name.
        name: &'static str,
        /// The value given.
        value: f64,
    },
    /// A latency over [`MAX_LATENCY`].
    #[error("latency {0:?} is over the maximum of 60 s")]
    LatencyTooLong(Duration),
}

impl FaultConfig {
    /// Checks every probability is in `[0, 1]` and the latency is sane.
    pub fn validate(&self) -> Result<(), FaultError> {
        for (name, value) in [
            ("drop_rate", self.drop_rate),
            ("rx_drop_rate", self.rx_drop_rate),
            ("corrupt_rate", self.corrupt_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(FaultError::BadProbability { name, value });
            }
        }
        if self.latency > MAX_LATENCY {
            return Err(FaultError::LatencyTooLong(self.latency));
        }
        Ok(())
    }

    /// True when no fault is configured at all.
    pub fn is_none(&self) -> bool {
        self.drop_rate == 0.0
            && self.rx_drop_rate == 0.0
            && self.corrupt_rate == 0.0
            && self.latency.is_zero()
            && self.chunk_max == 0
    }
}

/// Counters of every injected fault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultStats {
    /// Packets the cam sent (before faults).
    pub tx_packets: u64,
    /// Sent packets dropped.
    pub tx_dropped: u64,
    /// Sent packets with a flipped bit.
    pub tx_corrupted: u64,
    /// Sent packets held back by the added latency.
    pub tx_delayed: u64,
    /// Sent packets split into more than one chunk.
    pub tx_chunked: u64,
    /// Chunks written (each packet is at least one).
    pub tx_chunks: u64,
    /// Whole packets recognised in the received byte stream (counted only
    /// when `rx_drop_rate` is on).
    pub rx_packets: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
}

impl FaultStats {
    /// Total faults injected (drops, corruptions, delays, chunkings).
    pub fn total(&self) -> u64 {
        self.tx_dropped + self.tx_corrupted + self.tx_delayed + self.tx_chunked + self.rx_dropped
    }
}

/// Applies a [`FaultConfig`]. See the module documentation.
#[derive(Debug)]
pub struct FaultInjector {
    config: FaultConfig,
    tx_faults: fault::PacketFaults,
    tx_rng: SimRng,
    rx_drops: fault::StreamDrops,
    /// What the cam sent, held back by the latency and cut into chunks.
    tx: fault::Pipe,
    stats: FaultStats,
}

/// Derives an independent stream for each direction.
fn stream(seed: u64, salt: u64) -> SimRng {
    let mut r = SimRng::new(seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    r.next_u64();
    r
}

fn describe(p: &[u8]) -> String {
    match Header::decode(p) {
        Ok(h) => format!(
            "seq={} chan={} flags={:#04x} opcode={:#04x} len={}",
            h.sequence, h.channel.0, h.flags.0, h.opcode.0, h.length
        ),
        Err(_) => format!("{} bytes", p.len()),
    }
}

impl FaultInjector {
    /// An injector; fails when the configuration is invalid.
    pub fn new(config: FaultConfig) -> Result<FaultInjector, FaultError> {
        config.validate()?;
        Ok(FaultInjector {
            tx_faults: fault::PacketFaults::NONE
                .with_drop(config.drop_rate)
                .with_flip(config.corrupt_rate)
                .with_latency(config.latency)
                .with_chunk_max(config.chunk_max),
            tx_rng: stream(config.seed, 1),
            rx_drops: fault::StreamDrops::new(config.rx_drop_rate, stream(config.seed, 2)),
            config,
            tx: fault::Pipe::default(),
            stats: FaultStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Fault counters.
    pub fn stats(&self) -> FaultStats {
        self.stats
    }

    /// Forgets every held packet, chunk and partial input (a cam reboot);
    /// counters and random streams go on.
    pub fn clear(&mut self) {
        self.tx.clear();
        self.rx_drops.clear();
    }

    /// True when more outgoing packets may be accepted without holding too
    /// many in memory.
    pub fn wants_tx(&self) -> bool {
        self.tx.len() < MAX_HELD
    }

    /// Takes a packet the cam sends at `now`, applying drop and corruption,
    /// and queues it for [`pop_tx`](Self::pop_tx).
    pub fn push_tx(&mut self, now: Instant, packet: Vec<u8>) {
        self.stats.tx_packets += 1;
        let plan = fault::plan(&self.tx_faults, true, |_| true, &mut self.tx_rng, &packet);
        if plan.copies.is_empty() {
            self.stats.tx_dropped += 1;
            log::debug!("fault: dropped sent packet {}", describe(&packet));
            return;
        }
        // Counted from the plan; the pipe applies it (once).
        for c in &plan.copies {
            if let Some(bit) = c.flip {
                log::debug!(
                    "fault: flipped bit {} of byte {} in sent packet {}",
                    bit % 8,
                    bit / 8,
                    describe(&packet)
                );
                self.stats.tx_corrupted += 1;
            }
            if !c.extra.is_zero() {
                self.stats.tx_delayed += 1;
                log::debug!(
                    "fault: holding sent packet {} for {:?}",
                    describe(&packet),
                    c.extra
                );
            }
            self.stats.tx_chunks += c.cuts.len() as u64 + 1;
            if !c.cuts.is_empty() {
                self.stats.tx_chunked += 1;
                log::debug!(
                    "fault: split sent packet {} into {} chunks",
                    describe(&packet),
                    c.cuts.len() + 1
                );
            }
        }
        self.tx.send(now, &packet, &plan);
    }

    /// Queues bytes that are not a packet (nothing applies to them) behind
    /// what is held back: the link stays FIFO.
    pub fn push_raw(&mut self, now: Instant, bytes: Vec<u8>) {
        self.tx.enqueue(now, bytes, Duration::ZERO, &[], false);
    }

    /// Next bytes to write at `now`: a whole packet or a chunk of one.
    pub fn pop_tx(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.tx.pop_due(now).map(|c| c.bytes)
    }

    /// When the oldest held packet (or chunk) becomes due (`None` when
    /// nothing is held).
    pub fn next_release(&self) -> Option<Instant> {
        self.tx.next_due()
    }

    /// True while something is waiting to be written now or later.
    pub fn has_pending_tx(&self) -> bool {
        !self.tx.is_empty()
    }

    /// Filters bytes received from the host: appends to `out` what the cam
    /// should see. With `rx_drop_rate` off this is a plain copy; otherwise
    /// the stream is split at packet boundaries and whole packets are
    /// dropped. Bytes of a packet not yet complete are held until it is.
    pub fn filter_rx(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let dropped = self.rx_drops.dropped();
        self.rx_drops.filter(data, out);
        if self.rx_drops.dropped() > dropped {
            log::debug!(
                "fault: dropped {} received packet(s)",
                self.rx_drops.dropped() - dropped
            );
        }
        self.stats.rx_packets = self.rx_drops.packets();
        self.stats.rx_dropped = self.rx_drops.dropped();
    }
}

/// A fault injector over any sans-IO cam, on the caller's (virtual)
/// clock: what the cam sends goes through [`FaultInjector::push_tx`] and
/// comes out delayed, damaged or chunked; what it receives goes through
/// [`FaultInjector::filter_rx`]; [`poll_timeout`](SansIoCam::poll_timeout)
/// includes the release of held packets.
///
/// ```
/// use omv_proto::device::{DeviceConfig, DeviceEndpoint};
/// use omv_proto::host::{HostConfig, HostEndpoint};
/// use omv_sim::fault::{FaultConfig, FaultyEndpoint};
/// use omv_sim::link::SimLink;
/// let cam = FaultyEndpoint::new(
///     DeviceEndpoint::new(DeviceConfig::default()),
///     FaultConfig::default().latency(omv_proto::Duration::from_millis(30)),
/// )
/// .unwrap();
/// let mut link = SimLink::new(HostEndpoint::new(HostConfig::default()), cam);
/// link.connect().unwrap();
/// assert!(link.now() >= omv_proto::Instant::from_millis(30));
/// ```
#[derive(Debug)]
pub struct FaultyEndpoint<E> {
    /// The wrapped cam.
    pub inner: E,
    /// The faults applied.
    pub faults: FaultInjector,
    rx: Vec<u8>,
}

impl<E: SansIoCam> FaultyEndpoint<E> {
    /// Wraps `inner`; fails when `config` is invalid.
    pub fn new(inner: E, config: FaultConfig) -> Result<FaultyEndpoint<E>, FaultError> {
        Ok(FaultyEndpoint {
            inner,
            faults: FaultInjector::new(config)?,
            rx: Vec::new(),
        })
    }
}

impl<E: SansIoCam> SansIoCam for FaultyEndpoint<E> {
    fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.rx.clear();
        self.faults.filter_rx(data, &mut self.rx);
        if !self.rx.is_empty() {
            self.inner.handle_input(now, &self.rx);
        }
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        loop {
            if let Some(c) = self.faults.pop_tx(now) {
                return Some(c);
            }
            if !self.faults.wants_tx() {
                return None;
            }
            let p = self.inner.poll_transmit(now)?;
            self.faults.push_tx(now, p);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.inner.poll_timeout(), self.faults.next_release()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A fault injector over any [`Transport`], in real time: the "tx" faults
/// apply to what this side sends (cut into packets by a
/// [`Reframer`], so `send` may be given any bytes), the "rx" drop to what it
/// receives. Delayed packets are written by a later `send` or `recv` once
/// due (`recv` waits no longer than the next release).
#[derive(Debug)]
pub struct FaultyTransport<T> {
    inner: T,
    faults: FaultInjector,
    out: Reframer,
    clock: MonotonicClock,
    rx: Vec<u8>,
    scratch: Vec<u8>,
}

impl<T: Transport> FaultyTransport<T> {
    /// Wraps `inner`; fails when `config` is invalid.
    pub fn new(inner: T, config: FaultConfig) -> Result<FaultyTransport<T>, FaultError> {
        Ok(FaultyTransport {
            inner,
            faults: FaultInjector::new(config)?,
            out: Reframer::new(MAX_PAYLOAD),
            clock: MonotonicClock::new(),
            rx: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Fault counters.
    pub fn stats(&self) -> FaultStats {
        self.faults.stats()
    }

    /// The wrapped transport.
    pub fn into_inner(self) -> T {
        self.inner
    }

    fn flush_due(&mut self) -> io::Result<()> {
        let now = self.clock.now();
        while let Some(c) = self.faults.pop_tx(now) {
            self.inner.send(&c)?;
        }
        Ok(())
    }
}

impl<T: Transport> Transport for FaultyTransport<T> {
    fn recv(&mut self, buf: &mut [u8], timeout: StdDuration) -> io::Result<Recv> {
        let deadline = StdInstant::now() + timeout;
        self.scratch.resize(buf.len().max(1), 0);
        loop {
            self.flush_due()?;
            if !self.rx.is_empty() {
                let n = buf.len().min(self.rx.len());
                buf[..n].copy_from_slice(&self.rx[..n]);
                self.rx.drain(..n);
                return Ok(Recv::Data(n));
            }
            let left = deadline.saturating_duration_since(StdInstant::now());
            // Wake up for the next held packet, whatever arrives.
            let wait = match self.faults.next_release() {
                Some(t) => {
                    let us = t.saturating_duration_since(self.clock.now()).as_micros();
                    left.min(StdDuration::from_micros(us as u64))
                }
                None => left,
            };
            match self.inner.recv(&mut self.scratch, wait)? {
                Recv::Data(n) => self.faults.filter_rx(&self.scratch[..n], &mut self.rx),
                Recv::Closed => return Ok(Recv::Closed),
                Recv::Timeout => {}
            }
            if self.rx.is_empty() && StdInstant::now() >= deadline {
                self.flush_due()?;
                return Ok(Recv::Timeout);
            }
        }
    }

    /// Packets go through the faults; bytes between packets (which no
    /// decision applies to) go through the same FIFO link untouched, so
    /// they never land inside a packet held back or still trickling in.
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let mut pieces = Vec::new();
        self.out.push(data, |p| pieces.push(p));
        for piece in pieces {
            match piece {
                Piece::Bytes(b) => {
                    self.faults.push_raw(self.clock.now(), b);
                    self.flush_due()?;
                }
                Piece::Packet(p) => {
                    self.faults.push_tx(self.clock.now(), p);
                    self.flush_due()?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omv_proto::{ChannelId, Flags, Opcode};

    fn pkt(seq: u8, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let h = Header {
            sequence: seq,
            channel: ChannelId(0),
            flags: Flags::NONE,
            opcode,
            length: payload.len() as u16,
        };
        let mut v = Vec::new();
        omv_proto::packet::encode_packet(&h, payload, true, &mut v);
        v
    }

    fn injector(c: FaultConfig) -> FaultInjector {
        FaultInjector::new(c).unwrap()
    }

    #[test]
    fn validation() {
        for bad in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            let c = FaultConfig {
                drop_rate: bad,
                ..Default::default()
            };
            assert!(FaultInjector::new(c).is_err());
            let c = FaultConfig {
                rx_drop_rate: bad,
                ..Default::default()
            };
            assert!(c.validate().is_err());
            let c = FaultConfig {
                corrupt_rate: bad,
                ..Default::default()
            };
            assert!(c.validate().is_err());
        }
        let c = FaultConfig {
            latency: Duration::from_secs(61),
            ..Default::default()
        };
        assert!(c.validate().is_err());
        assert!(FaultConfig::default().is_none());
        assert!(FaultConfig {
            drop_rate: 1.0,
            ..Default::default()
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn passthrough_without_faults() {
        let mut f = injector(FaultConfig::default());
        let p = pkt(0, Opcode::PROTO_SYNC, &[]);
        f.push_tx(Instant::ZERO, p.clone());
        assert_eq!(f.pop_tx(Instant::ZERO), Some(p.clone()));
        assert_eq!(f.pop_tx(Instant::ZERO), None);
        let mut out = Vec::new();
        f.filter_rx(&p[..3], &mut out);
        f.filter_rx(&p[3..], &mut out);
        assert_eq!(out, p);
        assert_eq!(f.stats().total(), 0);
    }

    #[test]
    fn drop_rate_is_seeded_and_roughly_right() {
        let run = |seed| {
            let mut f = injector(FaultConfig {
                drop_rate: 0.3,
                seed,
                ..Default::default()
            });
            let mut kept = Vec::new();
            for i in 0..1000u32 {
                f.push_tx(
                    Instant::ZERO,
                    pkt(i as u8, Opcode::CHANNEL_READ, &i.to_le_bytes()),
                );
                if let Some(p) = f.pop_tx(Instant::ZERO) {
                    kept.push(p);
                }
            }
            (kept, f.stats())
        };
        let (a, sa) = run(7);
        let (b, sb) = run(7);
        let (c, _) = run(8);
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        assert_ne!(a, c);
        assert!((250..350).contains(&sa.tx_dropped), "{sa:?}");
        assert_eq!(sa.tx_packets, 1000);
    }

    #[test]
    fn corruption_flips_exactly_one_bit() {
        let mut f = injector(FaultConfig {
            corrupt_rate: 1.0,
            ..Default::default()
        });
        let p = pkt(3, Opcode::CHANNEL_READ, b"hello");
        f.push_tx(Instant::ZERO, p.clone());
        let q = f.pop_tx(Instant::ZERO).unwrap();
        let flipped: u32 = p.iter().zip(&q).map(|(a, b)| (a ^ b).count_ones()).sum();
        assert_eq!(flipped, 1);
        assert_eq!(f.stats().tx_corrupted, 1);
    }

    #[test]
    fn latency_holds_until_due() {
        let mut f = injector(FaultConfig {
            latency: Duration::from_millis(20),
            ..Default::default()
        });
        let p = pkt(0, Opcode::PROTO_SYNC, &[]);
        f.push_tx(Instant::from_millis(5), p.clone());
        assert_eq!(f.next_release(), Some(Instant::from_millis(25)));
        assert_eq!(f.pop_tx(Instant::from_millis(24)), None);
        assert_eq!(f.pop_tx(Instant::from_millis(25)), Some(p));
        assert_eq!(f.next_release(), None);
        assert_eq!(f.stats().tx_delayed, 1);
    }

    #[test]
    fn chunking_splits_and_preserves_bytes() {
        let mut f = injector(FaultConfig {
            chunk_max: 7,
            seed: 3,
            ..Default::default()
        });
        let p = pkt(0, Opcode::CHANNEL_READ, &[0x55; 100]);
        f.push_tx(Instant::ZERO, p.clone());
        let mut got = Vec::new();
        let mut n = 0;
        // The pieces trickle in, a few microseconds apart.
        while let Some(t) = f.next_release() {
            let c = f.pop_tx(t).unwrap();
            assert!((1..=7).contains(&c.len()));
            got.extend(c);
            n += 1;
        }
        assert_eq!(got, p);
        assert!(n >= 114 / 7);
        assert_eq!(f.stats().tx_chunks, n);
        assert_eq!(f.stats().tx_chunked, 1);
    }

    #[test]
    fn rx_drop_whole_packets_in_any_chunking() {
        let mut stream = Vec::new();
        let mut packets = Vec::new();
        stream.extend_from_slice(b"\x00\xaa\x01garbage");
        for i in 0..200u32 {
            let p = pkt(
                i as u8,
                Opcode::CHANNEL_WRITE,
                &i.to_le_bytes().repeat(1 + (i as usize % 5)),
            );
            stream.extend_from_slice(&p);
            packets.push(p);
        }
        let run = |piece: usize| {
            let mut f = injector(FaultConfig {
                rx_drop_rate: 0.25,
                seed: 11,
                ..Default::default()
            });
            let mut out = Vec::new();
            for c in stream.chunks(piece) {
                f.filter_rx(c, &mut out);
            }
            (out, f.stats())
        };
        let (a, sa) = run(1);
        let (b, sb) = run(4096);
        let (c, _) = run(13);
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(sa, sb);
        assert_eq!(sa.rx_packets, 200);
        assert!((25..80).contains(&sa.rx_dropped), "{sa:?}");
        // The output is the garbage followed by the kept packets, whole.
        assert!(a.starts_with(b"\x00\xaa\x01garbage"));
        let mut rest = &a[10..];
        let mut kept = 0;
        for p in &packets {
            if rest.starts_with(p) {
                rest = &rest[p.len()..];
                kept += 1;
            }
        }
        assert!(rest.is_empty());
        assert_eq!(kept, 200 - sa.rx_dropped);
    }

    #[test]
    fn rx_torn_packet_does_not_hold_back_a_sync() {
        let mut f = injector(FaultConfig {
            rx_drop_rate: 0.0001,
            ..Default::default()
        });
        let torn = pkt(0, Opcode::CHANNEL_WRITE, &[1; 1000]);
        let sync = pkt(0, Opcode::PROTO_SYNC, &[]);
        let mut out = Vec::new();
        f.filter_rx(&torn[..100], &mut out);
        f.filter_rx(&sync, &mut out);
        assert!(out.ends_with(&sync), "the SYNC must get through at once");
    }

    #[test]
    fn faulty_transport_drops_delays_and_filters() {
        use crate::link::duplex;
        use std::io::Read;
        let p = pkt(1, Opcode::CHANNEL_READ, &[9; 40]);
        // Latency: a packet sent now reaches the peer once a later call
        // finds it due.
        let (a, mut b) = duplex();
        let mut t = FaultyTransport::new(
            a,
            FaultConfig {
                latency: Duration::from_millis(30),
                ..Default::default()
            },
        )
        .unwrap();
        let t0 = StdInstant::now();
        t.send(&[0x01, 0x02]).unwrap();
        t.send(&p[..5]).unwrap();
        t.send(&p[5..]).unwrap();
        assert_eq!(b.available(), 2, "bytes between packets pass at once");
        let mut buf = [0u8; 64];
        assert_eq!(
            t.recv(&mut buf, StdDuration::from_millis(100)).unwrap(),
            Recv::Timeout
        );
        assert!(t0.elapsed() >= StdDuration::from_millis(30));
        let mut got = vec![0u8; 2 + p.len()];
        b.set_read_timeout(Some(StdDuration::from_millis(100)));
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got[2..], &p[..]);
        assert_eq!(t.stats().tx_delayed, 1);
        // Drops both ways.
        let (a, mut b) = duplex();
        let mut t = FaultyTransport::new(
            a,
            FaultConfig {
                drop_rate: 1.0,
                rx_drop_rate: 1.0,
                ..Default::default()
            },
        )
        .unwrap();
        t.send(&p).unwrap();
        assert_eq!(b.available(), 0);
        std::io::Write::write_all(&mut b, &[&p[..], b"xyz"].concat()).unwrap();
        assert_eq!(
            t.recv(&mut buf, StdDuration::from_millis(50)).unwrap(),
            Recv::Data(3)
        );
        assert_eq!(&buf[..3], b"xyz");
        assert_eq!((t.stats().tx_dropped, t.stats().rx_dropped), (1, 1));
    }

    #[test]
    fn faulty_endpoint_drops_what_the_cam_sends() {
        use omv_proto::device::{DeviceConfig, DeviceEndpoint};
        let mut cam = FaultyEndpoint::new(
            DeviceEndpoint::new(DeviceConfig::default()),
            FaultConfig {
                drop_rate: 1.0,
                ..Default::default()
            },
        )
        .unwrap();
        cam.handle_input(Instant::ZERO, &pkt(0, Opcode::PROTO_SYNC, &[]));
        assert_eq!(cam.poll_transmit(Instant::ZERO), None);
        assert_eq!(cam.faults.stats().tx_dropped, 1);
    }
}
