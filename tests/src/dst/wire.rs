//! The simulated serial link: two FIFO pipes in virtual time (omv-proto's
//! [`fault::Pipe`], the one link model every harness uses) and the
//! [`Injector`] that draws their packet faults (omv-proto's shared
//! [`fault`] decisions) under the DST's phases and guard.
//!
//! A serial link never reorders bytes, so every chunk's delivery time is at
//! least the previous chunk's: a delayed packet holds back everything
//! behind it. Each pipe has a base latency and a per-byte serialisation
//! time (about 10.9 µs per byte at 921600 baud).

use omv_proto::fault;
use omv_proto::Instant;

use super::dice::Dice;
use super::faults::{Dir, FaultCounts, FaultKind, FaultProfile, Guard};

pub use omv_proto::fault::{Chunk, PipeTiming as Timing};

/// One direction of the link: a [`fault::Pipe`] and which way it goes.
#[derive(Debug)]
pub struct Wire {
    dir: Dir,
    pipe: fault::Pipe,
}

impl Wire {
    /// An empty pipe.
    pub fn new(dir: Dir, timing: Timing) -> Wire {
        Wire {
            dir,
            pipe: fault::Pipe::new(timing),
        }
    }

    /// The direction.
    pub fn dir(&self) -> Dir {
        self.dir
    }
}

impl core::ops::Deref for Wire {
    type Target = fault::Pipe;
    fn deref(&self) -> &fault::Pipe {
        &self.pipe
    }
}

impl core::ops::DerefMut for Wire {
    fn deref_mut(&mut self) -> &mut fault::Pipe {
        &mut self.pipe
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
        wire.send(now, &packet, &plan);
        plan.fate
    }
}
