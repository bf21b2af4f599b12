//! The simulated serial link: two FIFO byte pipes with a virtual-time
//! delivery schedule, and the [`Injector`] that applies packet faults
//! (omv-proto's shared [`fault`] decisions).
//!
//! A serial link never reorders bytes, so every chunk's delivery time is at
//! least the previous chunk's: a delayed packet holds back everything
//! behind it. Each pipe has a base latency and a per-byte serialisation
//! time (about 10.9 µs per byte at 921600 baud).

use std::collections::VecDeque;

use omv_proto::fault;
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

pub use omv_proto::fault::Fate;

/// Applies the seed's packet faults to the packets handed to a wire: the
/// decisions are omv-proto's shared ones ([`fault::plan`]), drawn from the
/// run's dice; this type only adds the DST's phases, guard and counters.
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
        let faults = self.profile.packet(dir).with_split(self.split);
        wire.packets_sent += 1;
        let plan = fault::plan(
            &faults,
            self.enabled,
            |k| guard.allows(dir, FaultKind::from(k)),
            &mut self.dice,
            &packet,
        );
        for k in plan.faults() {
            self.counts.add(dir, FaultKind::from(k));
        }
        if plan
            .garbage
            .as_ref()
            .is_some_and(|g| g.len() >= fault::LONG_GARBAGE_MIN)
        {
            self.long_garbage += 1;
        }
        for d in plan.apply(&packet) {
            if d.intact {
                wire.intact_packets += 1;
            }
            wire.enqueue(now, d.bytes, d.extra, &d.cuts, d.intact);
        }
        plan.fate
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
}
