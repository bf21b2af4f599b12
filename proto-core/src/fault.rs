//! Packet fault injection for simulations and tests, in the spirit of
//! smoltcp's `FaultInjector`: one set of per-packet decisions (drop, bit
//! flip, duplicate, truncate, garbage, delay, split) used by every harness.
//!
//! [`plan`] draws what happens to one packet from [`PacketFaults`] and an
//! [`Entropy`] source (seeded [`SimRng`], or any other, such as a
//! fuzzer's input), [`Plan::apply`] turns the plan into the byte runs to
//! deliver, and [`Pipe`], the one link model in virtual time, delivers
//! them: a FIFO pipe per direction with latency, serialisation time and
//! read periods (the DST, proto-core's endpoint tests, the fuzz harness and
//! the simulated cam's fault wrappers all use it). [`Reframer`] cuts a
//! byte stream back into packets, for injectors that sit on a stream
//! rather than on an endpoint's output ([`StreamDrops`]: the host's
//! stock-compatible `drop_rate`, the simulated cam's `rx_drop_rate`).
//!
//! ```
//! use omv_proto::fault::{plan, FaultKind, PacketFaults};
//! use omv_proto::rng::SimRng;
//! let sync = [0xaa, 0xd5, 0, 0, 0, 0, 0, 0, 0xb0, 0xac];
//! let faults = PacketFaults::drops(1.0);
//! let p = plan(&faults, true, |_| true, &mut SimRng::new(7), &sync);
//! assert!(p.fate.has(FaultKind::Drop));
//! assert!(p.apply(&sync).is_empty());
//! let faults = PacketFaults::NONE.with_flip(1.0);
//! let p = plan(&faults, true, |_| true, &mut SimRng::new(7), &sync);
//! let d = p.apply(&sync);
//! assert_eq!(d.len(), 1);
//! assert!(!d[0].intact && d[0].bytes != sync);
//! ```

use alloc::vec;
use alloc::vec::Vec;

use crate::crc::crc16;
use crate::header::{Header, HEADER_SIZE, SYNC_BYTES, TRAILER_SIZE};
use crate::rng::SimRng;
use crate::{Duration, Opcode};

/// A source of fault decisions. Implemented by [`SimRng`]; a harness may
/// implement it over any other source (a fuzzer's input bytes) to steer
/// every decision.
pub trait Entropy {
    /// A value in `0..n` (0 when `n == 0`).
    fn below(&mut self, n: u64) -> u64;
    /// True with probability `p` (never for `p <= 0` or NaN).
    fn chance(&mut self, p: f64) -> bool;
    /// `n` random bytes.
    fn bytes(&mut self, n: usize) -> Vec<u8>;
    /// A value in `lo..=hi` (`lo` when `hi <= lo`).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.below(hi - lo + 1)
        }
    }
}

impl Entropy for SimRng {
    fn below(&mut self, n: u64) -> u64 {
        SimRng::below(self, n)
    }
    fn chance(&mut self, p: f64) -> bool {
        !p.is_nan() && SimRng::chance(self, p)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// A kind of packet fault.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// The packet is lost.
    Drop,
    /// One bit of the packet is flipped.
    BitFlip,
    /// The packet is delivered twice.
    Duplicate,
    /// The packet is cut short (its tail is lost).
    Truncate,
    /// Random bytes arrive before the packet.
    Garbage,
    /// The packet is held back (and, on a FIFO link, what follows it).
    Delay,
    /// The packet arrives in several pieces (harmless on a byte stream).
    Split,
}

impl FaultKind {
    /// Every kind, in report order (the order of [`Fate`]'s bits).
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Drop,
        FaultKind::BitFlip,
        FaultKind::Duplicate,
        FaultKind::Truncate,
        FaultKind::Garbage,
        FaultKind::Delay,
        FaultKind::Split,
    ];

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Drop => "drop",
            FaultKind::BitFlip => "bit_flip",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Truncate => "truncate",
            FaultKind::Garbage => "garbage",
            FaultKind::Delay => "delay",
            FaultKind::Split => "split",
        }
    }

    /// Position in [`FaultKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The set of faults applied to one packet, one bit per [`FaultKind`]
/// (bit `kind.index()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Fate(pub u16);

impl Fate {
    /// Adds `kind`.
    pub fn set(&mut self, kind: FaultKind) {
        self.0 |= 1 << kind.index();
    }

    /// True when `kind` was applied.
    pub fn has(self, kind: FaultKind) -> bool {
        self.0 & (1 << kind.index()) != 0
    }

    /// The kinds applied, in [`FaultKind::ALL`] order.
    pub fn kinds(self) -> impl Iterator<Item = FaultKind> {
        FaultKind::ALL.into_iter().filter(move |k| self.has(*k))
    }
}

/// Per-packet probabilities of each fault in one direction, and the
/// shape of delays and splits. The default injects nothing.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PacketFaults {
    /// Lose the packet.
    pub drop: f64,
    /// Flip one random bit.
    pub flip: f64,
    /// Deliver it twice.
    pub duplicate: f64,
    /// Cut it short (keep 1 to len-1 bytes).
    pub truncate: f64,
    /// Insert a garbage burst before it (1 to 80 bytes, and 5% of the
    /// bursts 4200 to 6000, longer than a packet of the firmware's default
    /// buffer).
    pub garbage: f64,
    /// Hold it back by a random 1 µs to `delay_max`.
    pub delay: f64,
    /// Longest random delay.
    pub delay_max: Duration,
    /// Fixed delay of every packet (a slow link), on top of `delay`.
    pub latency: Duration,
    /// Split it at 1 to 3 random points (no fault: a byte stream may
    /// deliver a packet in pieces). Drawn even when faults are disabled.
    pub split: f64,
    /// When non-zero, every packet is cut into pieces of random sizes in
    /// `1..=chunk_max` bytes instead of by `split`.
    pub chunk_max: usize,
}

impl PacketFaults {
    /// Nothing injected.
    pub const NONE: PacketFaults = PacketFaults {
        drop: 0.0,
        flip: 0.0,
        duplicate: 0.0,
        truncate: 0.0,
        garbage: 0.0,
        delay: 0.0,
        delay_max: Duration::ZERO,
        latency: Duration::ZERO,
        split: 0.0,
        chunk_max: 0,
    };

    /// Only whole-packet drops with probability `p`.
    pub fn drops(p: f64) -> PacketFaults {
        PacketFaults::NONE.with_drop(p)
    }

    /// With [`drop`](Self::drop) set to `p`.
    pub fn with_drop(mut self, p: f64) -> PacketFaults {
        self.drop = p;
        self
    }

    /// With [`flip`](Self::flip) set to `p`.
    pub fn with_flip(mut self, p: f64) -> PacketFaults {
        self.flip = p;
        self
    }

    /// With [`duplicate`](Self::duplicate) set to `p`.
    pub fn with_duplicate(mut self, p: f64) -> PacketFaults {
        self.duplicate = p;
        self
    }

    /// With [`truncate`](Self::truncate) set to `p`.
    pub fn with_truncate(mut self, p: f64) -> PacketFaults {
        self.truncate = p;
        self
    }

    /// With [`garbage`](Self::garbage) set to `p`.
    pub fn with_garbage(mut self, p: f64) -> PacketFaults {
        self.garbage = p;
        self
    }

    /// With random delays of probability `p`, up to `max`.
    pub fn with_delay(mut self, p: f64, max: Duration) -> PacketFaults {
        self.delay = p;
        self.delay_max = max;
        self
    }

    /// With a fixed [`latency`](Self::latency).
    pub fn with_latency(mut self, latency: Duration) -> PacketFaults {
        self.latency = latency;
        self
    }

    /// With [`split`](Self::split) set to `p`.
    pub fn with_split(mut self, p: f64) -> PacketFaults {
        self.split = p;
        self
    }

    /// With [`chunk_max`](Self::chunk_max) set.
    pub fn with_chunk_max(mut self, chunk_max: usize) -> PacketFaults {
        self.chunk_max = chunk_max;
        self
    }

    /// True when no fault and no split is configured.
    pub fn is_none(&self) -> bool {
        *self == PacketFaults::NONE
    }
}

/// What happens to one delivered copy of a packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyPlan {
    /// Keep only this many bytes (truncation).
    pub keep: Option<usize>,
    /// Flip this bit (byte `bit / 8`, bit `bit % 8`), counted after
    /// truncation.
    pub flip: Option<usize>,
    /// Extra delay (the fixed latency plus any random delay).
    pub extra: Duration,
    /// True when a random delay was drawn.
    pub delayed: bool,
    /// Split points, ascending, each in `1..len`.
    pub cuts: Vec<usize>,
}

/// What happens to one packet: see [`plan`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Bytes delivered before the packet.
    pub garbage: Option<Vec<u8>>,
    /// The copies delivered: none (dropped), one, or two (duplicated).
    pub copies: Vec<CopyPlan>,
    /// The faults applied.
    pub fate: Fate,
}

/// One run of bytes to deliver, from [`Plan::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The bytes (a packet, possibly damaged, or garbage).
    pub bytes: Vec<u8>,
    /// Extra delay.
    pub extra: Duration,
    /// Split points, ascending.
    pub cuts: Vec<usize>,
    /// True for a copy with no flipped bit (a truncated one may still be
    /// completed by what follows); false for garbage and damaged copies.
    pub intact: bool,
}

impl Plan {
    /// The packet delivered once, untouched.
    pub fn deliver() -> Plan {
        Plan {
            garbage: None,
            copies: vec![CopyPlan::default()],
            fate: Fate::default(),
        }
    }

    /// The packet lost.
    pub fn dropped() -> Plan {
        let mut fate = Fate::default();
        fate.set(FaultKind::Drop);
        Plan {
            garbage: None,
            copies: Vec::new(),
            fate,
        }
    }

    /// Every fault applied, once per copy it applies to (a duplicated
    /// packet truncated twice counts two truncations), in [`FaultKind`]
    /// order per copy.
    pub fn faults(&self) -> Vec<FaultKind> {
        let mut v = Vec::new();
        for k in [FaultKind::Garbage, FaultKind::Drop, FaultKind::Duplicate] {
            if self.fate.has(k) {
                v.push(k);
            }
        }
        for c in &self.copies {
            if c.keep.is_some() {
                v.push(FaultKind::Truncate);
            }
            if c.flip.is_some() {
                v.push(FaultKind::BitFlip);
            }
            if c.delayed {
                v.push(FaultKind::Delay);
            }
            if !c.cuts.is_empty() {
                v.push(FaultKind::Split);
            }
        }
        v
    }

    /// The byte runs to deliver, in order: the garbage (if any), then each
    /// copy. Out-of-range truncations, flips and cuts are ignored.
    pub fn apply(&self, packet: &[u8]) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(self.copies.len() + 1);
        if let Some(g) = &self.garbage {
            out.push(Delivery {
                bytes: g.clone(),
                extra: Duration::ZERO,
                cuts: Vec::new(),
                intact: false,
            });
        }
        for c in &self.copies {
            let mut bytes = packet.to_vec();
            if let Some(k) = c.keep {
                bytes.truncate(k);
            }
            let mut intact = true;
            if let Some(bit) = c.flip {
                if let Some(b) = bytes.get_mut(bit / 8) {
                    *b ^= 1 << (bit % 8);
                    intact = false;
                }
            }
            let cuts = c
                .cuts
                .iter()
                .copied()
                .filter(|&x| x > 0 && x < bytes.len())
                .collect();
            out.push(Delivery {
                bytes,
                extra: c.extra,
                cuts,
                intact,
            });
        }
        out
    }
}

/// Draws what happens to `packet`.
///
/// A fault kind is drawn only when `enabled` and `allow(kind)` say so (a
/// harness forbids the faults the negotiated capabilities cannot detect);
/// splits are drawn whatever `enabled` says. The draws come in a fixed
/// order (garbage, drop, duplicate, then per copy truncate, flip, delay,
/// split), so the same entropy gives the same plan.
pub fn plan<R: Entropy + ?Sized>(
    faults: &PacketFaults,
    enabled: bool,
    allow: impl Fn(FaultKind) -> bool,
    rng: &mut R,
    packet: &[u8],
) -> Plan {
    let mut fate = Fate::default();
    let roll = |kind: FaultKind, p: f64, rng: &mut R, fate: &mut Fate| {
        if enabled && allow(kind) && rng.chance(p) {
            fate.set(kind);
            true
        } else {
            false
        }
    };
    let garbage = if roll(FaultKind::Garbage, faults.garbage, rng, &mut fate) {
        Some(garbage(rng, packet))
    } else {
        None
    };
    if roll(FaultKind::Drop, faults.drop, rng, &mut fate) {
        return Plan {
            garbage,
            copies: Vec::new(),
            fate,
        };
    }
    let n = if roll(FaultKind::Duplicate, faults.duplicate, rng, &mut fate) {
        2
    } else {
        1
    };
    let mut copies = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = CopyPlan::default();
        let mut len = packet.len();
        if len > 1 && roll(FaultKind::Truncate, faults.truncate, rng, &mut fate) {
            len = rng.range(1, len as u64 - 1) as usize;
            c.keep = Some(len);
        }
        if len > 0 && roll(FaultKind::BitFlip, faults.flip, rng, &mut fate) {
            c.flip = Some(rng.below(len as u64 * 8) as usize);
        }
        c.extra = faults.latency;
        if roll(FaultKind::Delay, faults.delay, rng, &mut fate) {
            let max = faults.delay_max.as_micros() as u64;
            c.extra += Duration::from_micros(rng.range(1, max.max(1)));
            c.delayed = true;
        }
        if len > 1 {
            if faults.chunk_max > 0 {
                let mut at = 0;
                while len - at > 1 {
                    let step = 1 + rng.below(faults.chunk_max.min(len - at) as u64) as usize;
                    at += step;
                    if at < len {
                        c.cuts.push(at);
                    }
                }
            } else if rng.chance(faults.split) {
                for _ in 0..rng.range(1, 3) {
                    c.cuts.push(rng.range(1, len as u64 - 1) as usize);
                }
                c.cuts.sort_unstable();
            }
            if !c.cuts.is_empty() {
                fate.set(FaultKind::Split);
            }
        }
        copies.push(c);
    }
    Plan {
        garbage,
        copies,
        fate,
    }
}

/// Shortest garbage burst that is longer than a packet of the firmware's
/// default 4096-byte buffer.
pub const LONG_GARBAGE_MIN: usize = 4200;

/// A burst of random bytes, sprinkled with sync words, that cannot form a
/// header with a valid CRC together with `next` (the packet after it), so
/// it can only cost packets, never forge one. Mostly 1 to 80 bytes; one
/// in twenty is 4200 to 6000 ([`LONG_GARBAGE_MIN`]), which no framer may
/// buffer whole.
pub fn garbage<R: Entropy + ?Sized>(rng: &mut R, next: &[u8]) -> Vec<u8> {
    let n = if rng.chance(0.05) {
        rng.range(LONG_GARBAGE_MIN as u64, 6000) as usize
    } else {
        rng.range(1, 80) as usize
    };
    let mut g = rng.bytes(n);
    g.resize(n, 0);
    for _ in 0..rng.below(4) {
        if n >= 2 {
            let i = rng.below(n as u64 - 1) as usize;
            g[i..i + 2].copy_from_slice(&SYNC_BYTES);
        }
    }
    let mut joined = g.clone();
    joined.extend_from_slice(&next[..next.len().min(HEADER_SIZE)]);
    for i in 0..n.saturating_sub(1) {
        let w = &joined[i..];
        if w.len() >= HEADER_SIZE
            && w[..2] == SYNC_BYTES
            && crc16(&w[..8]) == u16::from_le_bytes([w[8], w[9]])
        {
            g[i + 1] = 0;
        }
    }
    g
}

/// A piece of a byte stream cut by [`Reframer`].
///
/// Not `#[non_exhaustive]`: a stream is cut into packets and the bytes
/// between them, nothing else, and callers match on both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Bytes that cannot start a packet, to pass on as they are.
    Bytes(Vec<u8>),
    /// One whole packet whose header looks real.
    Packet(Vec<u8>),
}

/// Cuts a byte stream back into packets, so that a fault injector on a
/// stream (a transport's bytes) can treat whole packets.
///
/// A header "looks real" when its CRC is good, or zero (CRC off), and its
/// length at most `max_payload`. A packet not yet complete is held until
/// it is, except that a complete SYNC command inside it is passed on at
/// once (a host that gave up on a torn packet recovers with a SYNC, which
/// must not wait behind it). At most one max-size packet plus the last
/// pushed bytes are held.
#[derive(Clone, Debug)]
pub struct Reframer {
    buf: Vec<u8>,
    max_payload: u16,
}

impl Reframer {
    /// A reframer accepting payloads up to `max_payload` bytes.
    pub fn new(max_payload: u16) -> Reframer {
        Reframer {
            buf: Vec::new(),
            max_payload,
        }
    }

    /// Forgets held bytes.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Bytes held back, waiting for the rest of a packet.
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// Appends `data` and calls `out` with every piece now complete, in
    /// stream order.
    pub fn push(&mut self, data: &[u8], mut out: impl FnMut(Piece)) {
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        let mut pass = Vec::new();
        loop {
            let buf = &self.buf[pos..];
            let Some(start) = find_sync(buf) else {
                // Keep a trailing 0xAA: it may start a sync word.
                let keep = usize::from(buf.last() == Some(&SYNC_BYTES[0]));
                pass.extend_from_slice(&buf[..buf.len() - keep]);
                pos += buf.len() - keep;
                break;
            };
            pass.extend_from_slice(&buf[..start]);
            pos += start;
            let buf = &self.buf[pos..];
            if buf.len() < HEADER_SIZE {
                break;
            }
            let Some(total) = self.plausible_len(buf) else {
                pass.push(buf[0]);
                pos += 1;
                continue;
            };
            if buf.len() >= total {
                if !pass.is_empty() {
                    out(Piece::Bytes(core::mem::take(&mut pass)));
                }
                out(Piece::Packet(buf[..total].to_vec()));
                pos += total;
                continue;
            }
            if let Some(end) = find_sync_command(&buf[2..]) {
                let end = end + 2;
                pass.extend_from_slice(&buf[..end]);
                pos += end;
                continue;
            }
            break;
        }
        if !pass.is_empty() {
            out(Piece::Bytes(pass));
        }
        self.buf.drain(..pos);
    }

    fn plausible_len(&self, buf: &[u8]) -> Option<usize> {
        let h = Header::decode(buf).ok()?;
        let hcrc = u16::from_le_bytes([buf[8], buf[9]]);
        if h.length > self.max_payload || (hcrc != 0 && hcrc != crc16(&buf[..8])) {
            return None;
        }
        Some(if h.length == 0 {
            HEADER_SIZE
        } else {
            HEADER_SIZE + usize::from(h.length) + TRAILER_SIZE
        })
    }
}

/// Whole packets of a byte stream lost at random: a [`Reframer`] cuts the
/// stream into packets and each is dropped with probability `p`; bytes
/// that are not part of a packet pass through. The one implementation of
/// the stock `drop_rate` (a host losing what it receives, in the session)
/// and of the simulated cam's `rx_drop_rate`.
///
/// The decisions come from any [`Entropy`] (a seeded [`SimRng`] by
/// default), so a test may steer them.
///
/// ```
/// use omv_proto::fault::StreamDrops;
/// use omv_proto::rng::SimRng;
/// let sync = [0xaa, 0xd5, 0, 0, 0, 0, 0, 0, 0xb0, 0xac];
/// let mut d = StreamDrops::new(1.0, SimRng::new(1));
/// let mut out = Vec::new();
/// d.filter(&[1, 2], &mut out);
/// d.filter(&sync, &mut out);
/// assert_eq!(out, [1, 2]);
/// assert_eq!((d.packets(), d.dropped()), (1, 1));
/// ```
pub struct StreamDrops {
    faults: PacketFaults,
    rng: alloc::boxed::Box<dyn Entropy + Send>,
    reframer: Reframer,
    packets: u64,
    dropped: u64,
}

impl core::fmt::Debug for StreamDrops {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StreamDrops")
            .field("p", &self.faults.drop)
            .field("packets", &self.packets)
            .field("dropped", &self.dropped)
            .field("held", &self.reframer.held())
            .finish_non_exhaustive()
    }
}

impl StreamDrops {
    /// Drops each packet with probability `p`, deciding with `rng`.
    pub fn new(p: f64, rng: impl Entropy + Send + 'static) -> StreamDrops {
        StreamDrops {
            faults: PacketFaults::drops(p),
            rng: alloc::boxed::Box::new(rng),
            reframer: Reframer::new(crate::MAX_PAYLOAD),
            packets: 0,
            dropped: 0,
        }
    }

    /// The drop probability.
    pub fn rate(&self) -> f64 {
        self.faults.drop
    }

    /// Decides with `rng` from now on.
    pub fn set_entropy(&mut self, rng: impl Entropy + Send + 'static) {
        self.rng = alloc::boxed::Box::new(rng);
    }

    /// Appends to `out` what survives of `data`. With the rate zero and
    /// nothing held this is a plain copy; otherwise bytes of a packet not
    /// yet complete are held until it is.
    pub fn filter(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.faults.drop <= 0.0 && self.reframer.held() == 0 {
            out.extend_from_slice(data);
            return;
        }
        let (faults, rng) = (&self.faults, &mut self.rng);
        let (packets, dropped) = (&mut self.packets, &mut self.dropped);
        self.reframer.push(data, |piece| match piece {
            Piece::Bytes(b) => out.extend_from_slice(&b),
            Piece::Packet(p) => {
                *packets += 1;
                if plan(faults, true, |_| true, &mut **rng, &p)
                    .copies
                    .is_empty()
                {
                    *dropped += 1;
                } else {
                    out.extend_from_slice(&p);
                }
            }
        });
    }

    /// Decides for one whole packet (one the owner sends): `true` when it
    /// is lost. Counted like the packets of [`filter`](Self::filter).
    pub fn drops_packet(&mut self, packet: &[u8]) -> bool {
        self.packets += 1;
        let lost = plan(&self.faults, true, |_| true, &mut *self.rng, packet)
            .copies
            .is_empty();
        self.dropped += u64::from(lost);
        lost
    }

    /// Forgets held bytes (the port was reopened); counters go on.
    pub fn clear(&mut self) {
        self.reframer.clear();
    }

    /// Bytes held back, waiting for the rest of a packet.
    pub fn held(&self) -> usize {
        self.reframer.held()
    }

    /// Packets seen.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Packets dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

fn find_sync(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == SYNC_BYTES)
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

/// Timing of a [`Pipe`]: zero everywhere by default (every piece due at
/// once, in order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipeTiming {
    /// Fixed latency added to every piece.
    pub latency: Duration,
    /// Serialisation time per byte, in nanoseconds (about 10,850 at
    /// 921600 baud); the sender is busy while its bytes go out.
    pub byte_ns: u64,
    /// The receiver takes what arrived in whole periods of this length
    /// (USB full-speed frames are 1 ms): deliveries are rounded up to a
    /// period boundary and everything due together is handed over in one
    /// read, so one read can end one packet and start the next. Zero: each
    /// piece is delivered on its own as soon as it arrives.
    pub read_period: Duration,
}

impl PipeTiming {
    /// A timing (see the fields).
    pub const fn new(latency: Duration, byte_ns: u64, read_period: Duration) -> PipeTiming {
        PipeTiming {
            latency,
            byte_ns,
            read_period,
        }
    }

    /// Only a fixed latency.
    pub const fn latency(latency: Duration) -> PipeTiming {
        PipeTiming::new(latency, 0, Duration::ZERO)
    }

    /// Time to put `n` bytes on the wire (rounded up to a microsecond).
    pub fn serialise(&self, n: usize) -> Duration {
        Duration::from_micros((n as u64).saturating_mul(self.byte_ns).div_ceil(1000))
    }

    /// When a byte arriving at `at` is read: the end of its read period.
    pub fn read_at(&self, at: crate::Instant) -> crate::Instant {
        let p = u64::try_from(self.read_period.as_micros()).unwrap_or(u64::MAX);
        if p == 0 {
            return at;
        }
        crate::Instant::from_micros(at.as_micros().div_ceil(p).saturating_mul(p))
    }
}

/// Bytes a [`Pipe`] delivers together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Delivery time.
    pub at: crate::Instant,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Undamaged packets whose last byte is in this chunk (they count
    /// towards what the receiver may accept).
    pub intact_ends: u64,
}

/// One direction of a link in virtual time, with packet faults: a packet
/// goes in with its [`Plan`] ([`send`](Pipe::send)) and comes out as
/// timed chunks ([`pop_due`](Pipe::pop_due)), damaged, duplicated,
/// delayed or split as planned. The link is FIFO, as a serial line or a
/// TCP stream: a delayed packet holds back everything behind it.
///
/// Every harness that moves packets in virtual time (the DST, proto-core's
/// endpoint tests, the fuzz harness, the simulated cam's fault wrapper)
/// uses this one pipe; what differs between them is only where the plans
/// come from ([`plan`] with seeded dice, a fuzzer's choices).
///
/// ```
/// use omv_proto::fault::{plan, PacketFaults, Pipe, PipeTiming};
/// use omv_proto::rng::SimRng;
/// use omv_proto::{Duration, Instant};
/// let sync = [0xaa, 0xd5, 0, 0, 0, 0, 0, 0, 0xb0, 0xac];
/// let mut pipe = Pipe::new(PipeTiming::latency(Duration::from_millis(5)));
/// let faults = PacketFaults::NONE.with_chunk_max(4);
/// let p = plan(&faults, true, |_| true, &mut SimRng::new(3), &sync);
/// pipe.send(Instant::ZERO, &sync, &p);
/// assert_eq!(pipe.next_due(), Some(Instant::from_millis(5)));
/// let mut got = Vec::new();
/// while let Some(t) = pipe.next_due() {
///     got.extend(pipe.pop_due(t).unwrap().bytes);
/// }
/// assert_eq!(got, sync);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Pipe {
    timing: PipeTiming,
    queue: alloc::collections::VecDeque<Chunk>,
    /// Delivery time of the last queued chunk (FIFO floor).
    last_at: crate::Instant,
    /// When the transmitter is free again (serialisation).
    free_at: crate::Instant,
    /// Packets handed to the pipe without a flipped bit (copies and
    /// truncated ones included): an upper bound on what the receiver can
    /// accept.
    pub intact_packets: u64,
    /// Packets handed to the pipe by the sender.
    pub packets_sent: u64,
    /// Bytes delivered to the receiver.
    pub bytes_delivered: u64,
}

impl Pipe {
    /// An empty pipe.
    pub fn new(timing: PipeTiming) -> Pipe {
        Pipe {
            timing,
            ..Pipe::default()
        }
    }

    /// The timing.
    pub fn timing(&self) -> PipeTiming {
        self.timing
    }

    /// Hands `packet`, sent at `now`, to the pipe as `plan` says.
    pub fn send(&mut self, now: crate::Instant, packet: &[u8], plan: &Plan) {
        self.packets_sent += 1;
        for d in plan.apply(packet) {
            if d.intact {
                self.intact_packets += 1;
            }
            self.enqueue(now, d.bytes, d.extra, &d.cuts, d.intact);
        }
    }

    /// Queues `bytes` sent at `now`, held back by `extra`, split at the
    /// given offsets (each piece a little later than the previous one);
    /// `intact` says the bytes are a whole undamaged packet.
    pub fn enqueue(
        &mut self,
        now: crate::Instant,
        bytes: Vec<u8>,
        extra: Duration,
        cuts: &[usize],
        intact: bool,
    ) {
        if bytes.is_empty() {
            return;
        }
        let start = self.free_at.max(now);
        self.free_at = start + self.timing.serialise(bytes.len());
        let mut at = (self.free_at + self.timing.latency + extra).max(self.last_at);
        let mut from = 0;
        for &cut in cuts.iter().chain(core::iter::once(&bytes.len())) {
            if cut <= from || cut > bytes.len() {
                continue;
            }
            let due = self.timing.read_at(at).max(self.last_at);
            self.queue.push_back(Chunk {
                at: due,
                bytes: bytes[from..cut].to_vec(),
                intact_ends: u64::from(intact && cut == bytes.len()),
            });
            self.last_at = due;
            from = cut;
            // Later pieces of a split packet trickle in.
            at = at + Duration::from_micros(7);
        }
    }

    /// When the next chunk is due.
    pub fn next_due(&self) -> Option<crate::Instant> {
        self.queue.front().map(|c| c.at)
    }

    /// The bytes due at or before `now`: with a read period, everything
    /// due at the same instant comes in one chunk (one read).
    pub fn pop_due(&mut self, now: crate::Instant) -> Option<Chunk> {
        if !self.queue.front().is_some_and(|c| c.at <= now) {
            return None;
        }
        let mut c = self.queue.pop_front()?;
        if !self.timing.read_period.is_zero() {
            while self.queue.front().is_some_and(|next| next.at == c.at) {
                let Some(next) = self.queue.pop_front() else {
                    break;
                };
                c.bytes.extend_from_slice(&next.bytes);
                c.intact_ends += next.intact_ends;
            }
        }
        self.bytes_delivered += c.bytes.len() as u64;
        Some(c)
    }

    /// Drops everything in flight (the link went down): nothing holds
    /// back later packets any more.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.last_at = crate::Instant::ZERO;
        self.free_at = crate::Instant::ZERO;
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Chunks in flight.
    pub fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_is_fifo_even_with_delays() {
        let timing = PipeTiming::new(Duration::from_micros(100), 1000, Duration::ZERO);
        let mut w = Pipe::new(timing);
        let t0 = crate::Instant::ZERO;
        w.enqueue(t0, vec![1; 10], Duration::from_millis(50), &[], true);
        w.enqueue(t0, vec![2; 10], Duration::ZERO, &[3, 7], true);
        let mut got = Vec::new();
        let mut last = t0;
        while let Some(t) = w.next_due() {
            assert!(t >= last);
            last = t;
            got.extend(w.pop_due(t).unwrap().bytes);
        }
        assert_eq!(got, [vec![1u8; 10], vec![2u8; 10]].concat());
        assert!(last >= crate::Instant::from_millis(50));
    }

    #[test]
    fn a_read_period_hands_over_what_is_due_together_in_one_read() {
        let timing = PipeTiming::new(Duration::ZERO, 0, Duration::from_millis(1));
        let mut w = Pipe::new(timing);
        let t0 = crate::Instant::from_micros(10);
        w.enqueue(t0, vec![1; 4], Duration::ZERO, &[], true);
        w.enqueue(t0, vec![2; 4], Duration::ZERO, &[], true);
        assert_eq!(w.next_due(), Some(crate::Instant::from_millis(1)));
        let c = w.pop_due(crate::Instant::from_millis(1)).unwrap();
        assert_eq!((c.bytes.len(), c.intact_ends), (8, 2));
        assert!(w.is_empty());
        assert_eq!(w.bytes_delivered, 8);
    }
    use crate::packet::encode_packet;

    fn pkt(op: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let h = Header {
            opcode: op,
            ..Header::default()
        };
        encode_packet(&h, payload, true, &mut v);
        v
    }

    #[test]
    fn no_faults_deliver_once_untouched() {
        let p = pkt(Opcode::CHANNEL_READ, &[7; 100]);
        let mut r = SimRng::new(1);
        for _ in 0..100 {
            let plan = plan(&PacketFaults::NONE, true, |_| true, &mut r, &p);
            assert_eq!(plan, Plan::deliver());
            let d = plan.apply(&p);
            assert_eq!(d.len(), 1);
            assert_eq!(d[0].bytes, p);
            assert!(d[0].intact);
        }
    }

    #[test]
    fn every_kind_is_applied_as_planned() {
        let p = pkt(Opcode::CHANNEL_READ, &[7; 100]);
        let all = PacketFaults {
            drop: 0.2,
            flip: 0.5,
            duplicate: 0.5,
            truncate: 0.5,
            garbage: 0.5,
            delay: 0.5,
            delay_max: Duration::from_millis(10),
            split: 0.5,
            ..PacketFaults::NONE
        };
        let mut r = SimRng::new(2);
        let mut seen = Fate::default();
        for _ in 0..2000 {
            let plan = plan(&all, true, |_| true, &mut r, &p);
            seen.0 |= plan.fate.0;
            let d = plan.apply(&p);
            let g = usize::from(plan.garbage.is_some());
            assert_eq!(d.len(), g + plan.copies.len());
            assert_eq!(plan.fate.has(FaultKind::Drop), plan.copies.is_empty());
            for (c, d) in plan.copies.iter().zip(&d[g..]) {
                assert_eq!(d.bytes.len(), c.keep.unwrap_or(p.len()));
                assert_eq!(d.intact, c.flip.is_none());
                assert_eq!(c.delayed, c.extra > Duration::ZERO);
                let diff = d.bytes.iter().zip(&p).filter(|(a, b)| a != b).count();
                assert_eq!(diff, usize::from(c.flip.is_some()));
                assert!(c.extra <= Duration::from_millis(10));
                assert!(d.cuts.windows(2).all(|w| w[0] <= w[1]));
            }
        }
        assert_eq!(seen.kinds().count(), FaultKind::ALL.len());
    }

    #[test]
    fn disabled_or_disallowed_kinds_are_not_drawn() {
        let p = pkt(Opcode::CHANNEL_READ, &[1; 10]);
        let f = PacketFaults {
            drop: 1.0,
            split: 1.0,
            ..PacketFaults::NONE
        };
        let plan_off = plan(&f, false, |_| true, &mut SimRng::new(3), &p);
        assert_eq!(plan_off.copies.len(), 1);
        assert!(plan_off.fate.has(FaultKind::Split), "splits ignore enabled");
        let plan_no_drop = plan(&f, true, |k| k != FaultKind::Drop, &mut SimRng::new(3), &p);
        assert_eq!(plan_no_drop.copies.len(), 1);
    }

    #[test]
    fn faults_count_each_copy() {
        let p = pkt(Opcode::CHANNEL_READ, &[1; 50]);
        let f = PacketFaults::NONE.with_duplicate(1.0).with_truncate(1.0);
        let plan = plan(&f, true, |_| true, &mut SimRng::new(6), &p);
        assert_eq!(plan.copies.len(), 2);
        assert_eq!(
            plan.faults(),
            [
                FaultKind::Duplicate,
                FaultKind::Truncate,
                FaultKind::Truncate
            ]
        );
        let d = plan.apply(&p);
        assert!(d.iter().all(|d| d.bytes.len() < p.len() && d.intact));
        let lat = PacketFaults::NONE.with_latency(Duration::from_millis(3));
        let plan = super::plan(&lat, true, |_| true, &mut SimRng::new(6), &p);
        assert_eq!(plan.copies[0].extra, Duration::from_millis(3));
        assert!(plan.faults().is_empty(), "a fixed latency is not a fault");
    }

    #[test]
    fn chunking_covers_the_packet() {
        let p = pkt(Opcode::CHANNEL_READ, &[1; 300]);
        let f = PacketFaults {
            chunk_max: 16,
            ..PacketFaults::NONE
        };
        let mut r = SimRng::new(4);
        for _ in 0..100 {
            let plan = plan(&f, true, |_| true, &mut r, &p);
            let cuts = &plan.copies[0].cuts;
            let mut last = 0;
            for &c in cuts.iter().chain(core::iter::once(&p.len())) {
                assert!(c > last && c - last <= 16);
                last = c;
            }
        }
    }

    #[test]
    fn garbage_never_forges_a_header() {
        let sync = pkt(Opcode::PROTO_SYNC, &[]);
        let mut r = SimRng::new(5);
        let mut long = 0;
        for _ in 0..2000 {
            let g = garbage(&mut r, &sync);
            long += usize::from(g.len() >= LONG_GARBAGE_MIN);
            let mut j = g.clone();
            j.extend_from_slice(&sync);
            for i in 0..g.len() {
                let w = &j[i..];
                if w.len() >= HEADER_SIZE && w[..2] == SYNC_BYTES {
                    assert_ne!(crc16(&w[..8]), u16::from_le_bytes([w[8], w[9]]));
                }
            }
        }
        assert!(long > 0);
    }

    #[test]
    fn reframer_finds_packets_in_any_chunking() {
        let a = pkt(Opcode::CHANNEL_WRITE, &[3; 200]);
        let b = pkt(Opcode::PROTO_SYNC, &[]);
        let mut stream = vec![1, 2, 0xaa];
        stream.extend_from_slice(&a);
        stream.extend_from_slice(&[9, 9]);
        stream.extend_from_slice(&b);
        for chunk in [1, 3, 7, 64, stream.len()] {
            let mut r = Reframer::new(crate::MAX_PAYLOAD);
            let mut got = Vec::new();
            let mut bytes = Vec::new();
            for c in stream.chunks(chunk) {
                r.push(c, |p| match p {
                    Piece::Packet(p) => got.push(p),
                    Piece::Bytes(b) => bytes.extend(b),
                });
            }
            assert_eq!(got, [a.clone(), b.clone()], "chunk {chunk}");
            assert_eq!(bytes, [1, 2, 0xaa, 9, 9], "chunk {chunk}");
            assert_eq!(r.held(), 0);
        }
    }

    #[test]
    fn stream_drops_lose_whole_packets_only() {
        let a = pkt(Opcode::CHANNEL_READ, &[5; 300]);
        let mut stream = vec![9, 8];
        for _ in 0..200 {
            stream.extend_from_slice(&a);
        }
        let mut d = StreamDrops::new(0.25, SimRng::new(11));
        let mut out = Vec::new();
        for c in stream.chunks(77) {
            d.filter(c, &mut out);
        }
        assert_eq!(d.packets(), 200);
        assert_eq!(d.held(), 0);
        let kept = 200 - d.dropped() as usize;
        assert!(d.dropped() > 20 && d.dropped() < 80, "{d:?}");
        assert_eq!(out.len(), 2 + kept * a.len());
        assert!(out[2..].chunks(a.len()).all(|p| p == a));
        let mut none = StreamDrops::new(0.0, SimRng::new(11));
        let mut copy = Vec::new();
        none.filter(&stream, &mut copy);
        assert_eq!((copy, none.packets()), (stream, 0));
        let mut all = StreamDrops::new(1.0, SimRng::new(1));
        assert!(all.drops_packet(&a));
        assert!(!none.drops_packet(&a));
    }

    #[test]
    fn reframer_lets_a_sync_through_a_torn_packet() {
        let torn = pkt(Opcode::CHANNEL_WRITE, &[1; 1000]);
        let sync = pkt(Opcode::PROTO_SYNC, &[]);
        let mut r = Reframer::new(crate::MAX_PAYLOAD);
        let mut out = Vec::new();
        r.push(&torn[..100], |p| {
            let (Piece::Bytes(b) | Piece::Packet(b)) = p;
            out.extend(b)
        });
        r.push(&sync, |p| {
            let (Piece::Bytes(b) | Piece::Packet(b)) = p;
            out.extend(b)
        });
        assert!(out.ends_with(&sync));
    }
}
