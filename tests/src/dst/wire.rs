//! The simulated serial link: two FIFO byte pipes with a virtual-time
//! delivery schedule, and the [`Injector`] that applies packet faults.
//!
//! A serial link never reorders bytes, so every chunk's delivery time is at
//! least the previous chunk's: a delayed packet holds back everything
//! behind it. Each pipe has a base latency and a per-byte serialisation
//! time (about 10.9 µs per byte at 921600 baud).

use std::collections::VecDeque;

use omv_proto::crc::crc16;
use omv_proto::header::{HEADER_SIZE, SYNC_BYTES};
use omv_proto::{Duration, Instant};

use super::dice::Dice;
use super::faults::{Dir, FaultCounts, FaultKind, FaultProfile, Guard};

/// Timing of one pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Fixed latency added to every chunk.
    pub latency: Duration,
    /// Serialisation time per byte, in nanoseconds.
    pub byte_ns: u64,
    /// The receiver takes what arrived in whole periods of this length
    /// (USB full-speed frames are 1 ms): deliveries are rounded up to a
    /// period boundary and everything due together is handed over in one
    /// read, so one read can end one packet and start the next. Zero: each
    /// piece is delivered on its own as soon as it arrives.
    pub read_period: Duration,
}

impl Timing {
    /// Time to put `n` bytes on the wire (rounded up to a microsecond).
    pub fn serialise(&self, n: usize) -> Duration {
        Duration::from_micros((n as u64 * self.byte_ns).div_ceil(1000))
    }

    /// When a byte arriving at `at` is read: the end of its read period.
    pub fn read_at(&self, at: Instant) -> Instant {
        let p = self.read_period.as_micros() as u64;
        if p == 0 {
            return at;
        }
        Instant::from_micros(at.as_micros().div_ceil(p) * p)
    }
}

/// Bytes delivered together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Delivery time.
    pub at: Instant,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Undamaged packets whose last byte is in this chunk (they count
    /// towards what the receiver may accept).
    pub intact_ends: u64,
}

/// One direction of the link.
#[derive(Debug)]
pub struct Wire {
    dir: Dir,
    timing: Timing,
    queue: VecDeque<Chunk>,
    /// Delivery time of the last queued chunk (FIFO floor).
    last_at: Instant,
    /// When the transmitter is free again (serialisation).
    free_at: Instant,
    /// Packets handed to the wire without a flipped bit (copies and
    /// truncated ones included): an upper bound on what the receiver can
    /// accept.
    pub intact_packets: u64,
    /// Packets handed to the wire by the sender.
    pub packets_sent: u64,
    /// Bytes delivered to the receiver.
    pub bytes_delivered: u64,
}

impl Wire {
    /// An empty pipe.
    pub fn new(dir: Dir, timing: Timing) -> Wire {
        Wire {
            dir,
            timing,
            queue: VecDeque::new(),
            last_at: Instant::ZERO,
            free_at: Instant::ZERO,
            intact_packets: 0,
            packets_sent: 0,
            bytes_delivered: 0,
        }
    }

    /// The direction.
    pub fn dir(&self) -> Dir {
        self.dir
    }

    /// Queues `bytes` sent at `now`, held back by `extra`, split at the
    /// given offsets (each piece a little later than the previous one);
    /// `intact` says the bytes are a whole undamaged packet.
    pub fn enqueue(
        &mut self,
        now: Instant,
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
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            if cut <= from || cut > bytes.len() {
                continue;
            }
            self.queue.push_back(Chunk {
                at: self.timing.read_at(at).max(self.last_at),
                bytes: bytes[from..cut].to_vec(),
                intact_ends: u64::from(intact && cut == bytes.len()),
            });
            self.last_at = self.timing.read_at(at).max(self.last_at);
            from = cut;
            // Later pieces of a split packet trickle in.
            at = at + Duration::from_micros(7);
        }
    }

    /// When the next chunk is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|c| c.at)
    }

    /// The bytes due at or before `now`: with a read period, everything
    /// due at the same instant comes in one chunk (one read).
    pub fn pop_due(&mut self, now: Instant) -> Option<Chunk> {
        if !self.queue.front().is_some_and(|c| c.at <= now) {
            return None;
        }
        let mut c = self.queue.pop_front()?;
        if !self.timing.read_period.is_zero() {
            while let Some(next) = self.queue.front() {
                if next.at != c.at {
                    break;
                }
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
        self.last_at = Instant::ZERO;
        self.free_at = Instant::ZERO;
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// What the injector did to one packet (for the trace).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fate(pub u16);

impl Fate {
    fn set(&mut self, k: FaultKind) {
        self.0 |= 1 << (k as u16);
    }
}

/// Applies the seed's packet faults to the packets handed to a wire.
#[derive(Debug)]
pub struct Injector {
    /// What may be injected.
    pub profile: FaultProfile,
    /// False during quiet phases: packets pass untouched (but may still be
    /// split into chunks, which is not an error on a byte stream).
    pub enabled: bool,
    /// Probability of splitting a packet into chunks.
    pub split: f64,
    dice: Dice,
    /// Faults injected so far.
    pub counts: FaultCounts,
    /// Garbage bursts longer than a max-size packet.
    pub long_garbage: u64,
}

impl Injector {
    /// An injector drawing from `dice`.
    pub fn new(profile: FaultProfile, split: f64, dice: Dice) -> Injector {
        Injector {
            profile,
            enabled: true,
            split,
            dice,
            counts: FaultCounts::default(),
            long_garbage: 0,
        }
    }

    /// Draws for a cam fault of probability `p` (false when disabled).
    pub fn roll(&mut self, p: f64) -> bool {
        self.enabled && self.dice.chance(p)
    }

    /// The injector's dice, for cam-fault parameters.
    pub fn dice(&mut self) -> &mut Dice {
        &mut self.dice
    }

    fn fault(&mut self, dir: Dir, kind: FaultKind, p: f64, guard: Guard, fate: &mut Fate) -> bool {
        if self.enabled && guard.allows(dir, kind) && self.dice.chance(p) {
            self.counts.add(dir, kind);
            fate.set(kind);
            true
        } else {
            false
        }
    }

    /// Hands `packet` (one whole packet, as an endpoint produced it) to
    /// `wire` at `now`, applying the faults `guard` allows.
    pub fn transmit(
        &mut self,
        wire: &mut Wire,
        now: Instant,
        packet: Vec<u8>,
        guard: Guard,
    ) -> Fate {
        let dir = wire.dir();
        let pf = *self.profile.packet(dir);
        let mut fate = Fate::default();
        wire.packets_sent += 1;
        if self.fault(dir, FaultKind::Garbage, pf.garbage, guard, &mut fate) {
            let g = self.garbage(&packet);
            wire.enqueue(now, g, Duration::ZERO, &[], false);
        }
        if self.fault(dir, FaultKind::Drop, pf.drop, guard, &mut fate) {
            return fate;
        }
        let copies = if self.fault(dir, FaultKind::Duplicate, pf.duplicate, guard, &mut fate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut bytes = packet.clone();
            let mut intact = true;
            if bytes.len() > 1
                && self.fault(dir, FaultKind::Truncate, pf.truncate, guard, &mut fate)
            {
                let keep = self.dice.range_usize(1, bytes.len() - 1);
                bytes.truncate(keep);
                // Still counted as receivable: the bytes that follow may
                // complete it exactly (every packet starts with 0xAA, and a
                // CRC may end with it).
            }
            if self.fault(dir, FaultKind::BitFlip, pf.flip, guard, &mut fate) {
                let bit = self.dice.below(bytes.len() as u64 * 8) as usize;
                bytes[bit / 8] ^= 1 << (bit % 8);
                intact = false;
            }
            let extra = if self.fault(dir, FaultKind::Delay, pf.delay, guard, &mut fate) {
                let max = pf.delay_max.as_micros() as u64;
                Duration::from_micros(self.dice.range(1, max.max(1)))
            } else {
                Duration::ZERO
            };
            let mut cuts = Vec::new();
            if bytes.len() > 1 && self.dice.chance(self.split) {
                self.counts.add(dir, FaultKind::Split);
                fate.set(FaultKind::Split);
                for _ in 0..self.dice.range(1, 3) {
                    cuts.push(self.dice.range_usize(1, bytes.len() - 1));
                }
                cuts.sort_unstable();
            }
            if intact {
                wire.intact_packets += 1;
            }
            wire.enqueue(now, bytes, extra, &cuts, intact);
        }
        fate
    }

    /// A burst of random bytes, sprinkled with sync words, that cannot
    /// form a header with a valid CRC together with the packet after it
    /// (so it can only cost packets, never forge one).
    fn garbage(&mut self, next: &[u8]) -> Vec<u8> {
        // Mostly short bursts; now and then one longer than a max-size
        // packet, which no framer may buffer whole.
        let n = if self.dice.chance(0.05) {
            self.long_garbage += 1;
            self.dice.range_usize(4200, 6000)
        } else {
            self.dice.range_usize(1, 80)
        };
        let mut g = self.dice.bytes(n);
        for _ in 0..self.dice.below(4) {
            if n >= 2 {
                let i = self.dice.below(n as u64 - 1) as usize;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            latency: Duration::from_micros(100),
            byte_ns: 1000,
            read_period: Duration::ZERO,
        }
    }

    #[test]
    fn fifo_even_with_delays() {
        let mut w = Wire::new(Dir::HostToCam, timing());
        w.enqueue(
            Instant::ZERO,
            vec![1; 10],
            Duration::from_millis(50),
            &[],
            true,
        );
        w.enqueue(Instant::ZERO, vec![2; 10], Duration::ZERO, &[3, 7], true);
        let mut got = Vec::new();
        let mut last = Instant::ZERO;
        while let Some(t) = w.next_due() {
            assert!(t >= last);
            last = t;
            got.extend(w.pop_due(t).unwrap().bytes);
        }
        assert_eq!(got, [vec![1u8; 10], vec![2u8; 10]].concat());
        assert!(last >= Instant::from_millis(50));
    }

    #[test]
    fn garbage_never_forges_a_header() {
        let mut inj = Injector::new(FaultProfile::NONE, 0.0, Dice::from_seed(3));
        let sync = [0xaa, 0xd5, 0, 0, 0, 0, 0, 0, 0xb0, 0xac];
        for _ in 0..2000 {
            let g = inj.garbage(&sync);
            let mut j = g.clone();
            j.extend_from_slice(&sync);
            for i in 0..g.len() {
                let w = &j[i..];
                if w.len() >= 10 && w[..2] == SYNC_BYTES {
                    assert_ne!(crc16(&w[..8]), u16::from_le_bytes([w[8], w[9]]));
                }
            }
        }
    }
}
