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
//! Every decision comes from [`SimRng`] streams derived from one seed, one
//! stream per kind of decision, so a run with the same seed and the same
//! traffic makes the same decisions. Every fault is counted in
//! [`FaultStats`] and logged at debug level.
//!
//! ```
//! use omv_sim::fault::{FaultConfig, FaultInjector};
//! use omv_proto::Instant;
//! let mut f = FaultInjector::new(FaultConfig { drop_rate: 1.0, ..FaultConfig::default() }).unwrap();
//! f.push_tx(Instant::ZERO, vec![0xaa, 0xd5, 0, 0, 1, 0, 0, 0, 0x08, 0x46]);
//! assert_eq!(f.pop_tx(Instant::ZERO), None);
//! assert_eq!(f.stats().tx_dropped, 1);
//! ```
//!
//! [`DeviceEndpoint`]: omv_proto::device::DeviceEndpoint

use std::collections::VecDeque;
use std::time::Duration as StdDuration;

use omv_proto::crc::crc16;
use omv_proto::header::{Header, HEADER_SIZE, SYNC_BYTES, TRAILER_SIZE};
use omv_proto::rng::SimRng;
use omv_proto::{Duration, Instant, Opcode};

/// Longest latency accepted (a minute: anything longer is a mistake).
pub const MAX_LATENCY: StdDuration = StdDuration::from_secs(60);

/// Most packets held back by the latency queue before the cam stops being
/// asked for more (bounds memory when acks are off).
const MAX_HELD: usize = 256;

/// What faults to inject. All probabilities are in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
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
    tx_rng: SimRng,
    rx_rng: SimRng,
    chunk_rng: SimRng,
    held: VecDeque<(Instant, Vec<u8>)>,
    chunks: VecDeque<Vec<u8>>,
    rx_buf: Vec<u8>,
    stats: FaultStats,
}

/// Derives an independent stream for each kind of decision.
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
            tx_rng: stream(config.seed, 1),
            rx_rng: stream(config.seed, 2),
            chunk_rng: stream(config.seed, 3),
            config,
            held: VecDeque::new(),
            chunks: VecDeque::new(),
            rx_buf: Vec::new(),
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
        self.held.clear();
        self.chunks.clear();
        self.rx_buf.clear();
    }

    /// True when more outgoing packets may be accepted without holding too
    /// many in memory.
    pub fn wants_tx(&self) -> bool {
        self.held.len() < MAX_HELD
    }

    /// Takes a packet the cam sends at `now`, applying drop and corruption,
    /// and queues it for [`pop_tx`](Self::pop_tx).
    pub fn push_tx(&mut self, now: Instant, mut packet: Vec<u8>) {
        self.stats.tx_packets += 1;
        if self.tx_rng.chance(self.config.drop_rate) {
            self.stats.tx_dropped += 1;
            log::debug!("fault: dropped sent packet {}", describe(&packet));
            return;
        }
        if !packet.is_empty() && self.tx_rng.chance(self.config.corrupt_rate) {
            let bit = self.tx_rng.below(packet.len() as u64 * 8);
            let (byte, mask) = ((bit / 8) as usize, 1u8 << (bit % 8));
            log::debug!(
                "fault: flipped bit {} of byte {byte} in sent packet {}",
                bit % 8,
                describe(&packet)
            );
            packet[byte] ^= mask;
            self.stats.tx_corrupted += 1;
        }
        let release = now + self.config.latency;
        if !self.config.latency.is_zero() {
            self.stats.tx_delayed += 1;
            log::debug!(
                "fault: holding sent packet {} for {:?}",
                describe(&packet),
                self.config.latency
            );
        }
        self.held.push_back((release, packet));
    }

    /// Next bytes to write at `now`: a whole packet or a chunk of one.
    pub fn pop_tx(&mut self, now: Instant) -> Option<Vec<u8>> {
        if let Some(c) = self.chunks.pop_front() {
            return Some(c);
        }
        if self.held.front().is_some_and(|(t, _)| *t <= now) {
            let (_, p) = self.held.pop_front()?;
            return Some(self.chunk(p));
        }
        None
    }

    /// When the oldest held packet becomes due (`None` when nothing is
    /// held). Chunks of a packet already due are returned by
    /// [`pop_tx`](Self::pop_tx) at once.
    pub fn next_release(&self) -> Option<Instant> {
        self.held.front().map(|(t, _)| *t)
    }

    /// True while something is waiting to be written now or later.
    pub fn has_pending_tx(&self) -> bool {
        !self.chunks.is_empty() || !self.held.is_empty()
    }

    fn chunk(&mut self, p: Vec<u8>) -> Vec<u8> {
        let max = self.config.chunk_max;
        if max == 0 || p.len() <= 1 {
            self.stats.tx_chunks += 1;
            return p;
        }
        let mut pieces = Vec::new();
        let mut rest = &p[..];
        while !rest.is_empty() {
            let n = 1 + self.chunk_rng.below(max.min(rest.len()) as u64) as usize;
            pieces.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        self.stats.tx_chunks += pieces.len() as u64;
        if pieces.len() > 1 {
            self.stats.tx_chunked += 1;
            log::debug!(
                "fault: split sent packet {} into {} chunks",
                describe(&p),
                pieces.len()
            );
        }
        let mut it = pieces.into_iter();
        let first = it.next().unwrap_or_default();
        self.chunks.extend(it);
        first
    }

    /// Filters bytes received from the host: appends to `out` what the cam
    /// should see. With `rx_drop_rate` off this is a plain copy; otherwise
    /// the stream is split at packet boundaries and whole packets are
    /// dropped. Bytes of a packet not yet complete are held until it is.
    pub fn filter_rx(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.config.rx_drop_rate <= 0.0 && self.rx_buf.is_empty() {
            out.extend_from_slice(data);
            return;
        }
        self.rx_buf.extend_from_slice(data);
        let mut pos = 0;
        loop {
            let buf = &self.rx_buf[pos..];
            // Forward everything before the next sync word.
            let Some(start) = find_sync(buf) else {
                // Keep a trailing 0xAA: it may start a sync word.
                let keep = usize::from(buf.last() == Some(&SYNC_BYTES[0]));
                out.extend_from_slice(&buf[..buf.len() - keep]);
                pos += buf.len() - keep;
                break;
            };
            out.extend_from_slice(&buf[..start]);
            pos += start;
            let buf = &self.rx_buf[pos..];
            if buf.len() < HEADER_SIZE {
                break;
            }
            let Some(total) = plausible_packet_len(buf) else {
                out.push(buf[0]);
                pos += 1;
                continue;
            };
            if buf.len() >= total {
                let packet = &buf[..total];
                self.stats.rx_packets += 1;
                if self.rx_rng.chance(self.config.rx_drop_rate) {
                    self.stats.rx_dropped += 1;
                    log::debug!("fault: dropped received packet {}", describe(packet));
                } else {
                    out.extend_from_slice(packet);
                }
                pos += total;
                continue;
            }
            // Incomplete: a host that gave up on a torn packet recovers with
            // a SYNC command, which must not wait behind the torn packet.
            if let Some(end) = find_sync_command(&buf[2..]) {
                let end = end + 2;
                out.extend_from_slice(&buf[..end]);
                pos += end;
                continue;
            }
            break;
        }
        self.rx_buf.drain(..pos);
    }
}

fn find_sync(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == SYNC_BYTES)
}

/// The wire length of a packet starting at `buf` (at least 10 bytes) when
/// its header looks real: a good header CRC, or a zero one (CRC off). Any
/// length is plausible: the protocol allows payloads up to 65535 bytes.
fn plausible_packet_len(buf: &[u8]) -> Option<usize> {
    let h = Header::decode(buf).ok()?;
    let hcrc = u16::from_le_bytes([buf[8], buf[9]]);
    if hcrc != 0 && hcrc != crc16(&buf[..8]) {
        return None;
    }
    Some(if h.length == 0 {
        HEADER_SIZE
    } else {
        HEADER_SIZE + usize::from(h.length) + TRAILER_SIZE
    })
}

/// The end offset of the first complete, valid SYNC command in `buf`.
fn find_sync_command(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = find_sync(&buf[from..]) {
        let at = from + i;
        let cand = &buf[at..];
        if cand.len() >= HEADER_SIZE && Header::crc_ok(cand) {
            if let Ok(h) = Header::decode(cand) {
                if h.opcode == Opcode::PROTO_SYNC && h.channel.0 == 0 && h.length == 0 {
                    return Some(at + HEADER_SIZE);
                }
            }
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use omv_proto::{ChannelId, Flags};

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
        while let Some(c) = f.pop_tx(Instant::ZERO) {
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
}
