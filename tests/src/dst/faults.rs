//! What can go wrong, how often, and which faults the negotiated
//! capabilities can detect.
//!
//! Every fault is drawn from the seed. Packet faults are decided when a
//! packet is handed to the wire; cam faults (stall, reset, reboot) are
//! scheduled at random instants inside an operation.
//!
//! Some faults are undetectable *by design* under some capabilities, and
//! injecting them would only prove the protocol's documented limits:
//! without CRCs a flipped bit is accepted, without sequence numbers a
//! duplicated request is executed twice, without sequence numbers *and*
//! ACKs a lost response fragment is silently skipped. [`Guard`] encodes
//! these rules: a fault kind is injected only when the capabilities in
//! force on both sides (and the ones being negotiated) can detect it.

use omv_proto::fault::{self, PacketFaults};
use omv_proto::Duration;

use super::dice::Dice;

/// Direction of a byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dir {
    /// Host to cam.
    HostToCam,
    /// Cam to host.
    CamToHost,
}

impl Dir {
    /// Short name used in reports and traces.
    pub fn name(self) -> &'static str {
        match self {
            Dir::HostToCam => "h2c",
            Dir::CamToHost => "c2h",
        }
    }

    fn index(self) -> usize {
        match self {
            Dir::HostToCam => 0,
            Dir::CamToHost => 1,
        }
    }
}

/// A kind of injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// A whole packet lost.
    Drop,
    /// One bit of a packet flipped.
    BitFlip,
    /// A packet delivered twice.
    Duplicate,
    /// A packet cut short (its tail lost).
    Truncate,
    /// Random bytes inserted before a packet.
    Garbage,
    /// A packet (and, the link being FIFO, everything behind it) delayed.
    Delay,
    /// A packet split into several chunks delivered separately.
    Split,
    /// The cam stops reading and answering for a while.
    Stall,
    /// The cam's protocol state is reset silently (channels kept).
    ProtocolReset,
    /// The cam reboots: fresh state, the link drops (the host is told).
    Reboot,
}

impl FaultKind {
    /// Every kind, in report order.
    pub const ALL: [FaultKind; 10] = [
        FaultKind::Drop,
        FaultKind::BitFlip,
        FaultKind::Duplicate,
        FaultKind::Truncate,
        FaultKind::Garbage,
        FaultKind::Delay,
        FaultKind::Split,
        FaultKind::Stall,
        FaultKind::ProtocolReset,
        FaultKind::Reboot,
    ];

    /// Short name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Drop => "drop",
            FaultKind::BitFlip => "bit_flip",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Truncate => "truncate",
            FaultKind::Garbage => "garbage",
            FaultKind::Delay => "delay",
            FaultKind::Split => "split",
            FaultKind::Stall => "stall",
            FaultKind::ProtocolReset => "protocol_reset",
            FaultKind::Reboot => "reboot",
        }
    }

    fn index(self) -> usize {
        FaultKind::ALL.iter().position(|&k| k == self).unwrap_or(0)
    }
}

impl From<fault::FaultKind> for FaultKind {
    fn from(k: fault::FaultKind) -> FaultKind {
        match k {
            fault::FaultKind::Drop => FaultKind::Drop,
            fault::FaultKind::BitFlip => FaultKind::BitFlip,
            fault::FaultKind::Duplicate => FaultKind::Duplicate,
            fault::FaultKind::Truncate => FaultKind::Truncate,
            fault::FaultKind::Garbage => FaultKind::Garbage,
            fault::FaultKind::Delay => FaultKind::Delay,
            // Split, and any kind added later: harmless on a byte stream.
            _ => FaultKind::Split,
        }
    }
}

/// Counters of injected faults, per direction for packet faults (cam
/// faults are counted under [`Dir::HostToCam`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    counts: [[u64; 10]; 2],
}

impl FaultCounts {
    /// Counts one fault.
    pub fn add(&mut self, dir: Dir, kind: FaultKind) {
        self.counts[dir.index()][kind.index()] += 1;
    }

    /// Faults of `kind` in `dir`.
    pub fn get(&self, dir: Dir, kind: FaultKind) -> u64 {
        self.counts[dir.index()][kind.index()]
    }

    /// Faults of `kind` in both directions.
    pub fn kind_total(&self, kind: FaultKind) -> u64 {
        self.get(Dir::HostToCam, kind) + self.get(Dir::CamToHost, kind)
    }

    /// Every fault, all kinds (chunk splitting excluded: it is not an error).
    pub fn total(&self) -> u64 {
        FaultKind::ALL
            .iter()
            .filter(|&&k| k != FaultKind::Split)
            .map(|&k| self.kind_total(k))
            .sum()
    }

    /// Adds another set of counters.
    pub fn merge(&mut self, other: &FaultCounts) {
        for d in 0..2 {
            for k in 0..10 {
                self.counts[d][k] += other.counts[d][k];
            }
        }
    }
}

/// Everything a run may inject, drawn once per seed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultProfile {
    /// Host-to-cam packet faults.
    pub h2c: PacketFaults,
    /// Cam-to-host packet faults.
    pub c2h: PacketFaults,
    /// Probability that an operation suffers a cam stall.
    pub stall: f64,
    /// Longest stall.
    pub stall_max: Duration,
    /// Probability that an operation suffers a silent protocol reset.
    pub protocol_reset: f64,
    /// Probability that an operation suffers a reboot.
    pub reboot: f64,
}

impl FaultProfile {
    /// No faults at all.
    pub const NONE: FaultProfile = FaultProfile {
        h2c: PacketFaults::NONE,
        c2h: PacketFaults::NONE,
        stall: 0.0,
        stall_max: Duration::ZERO,
        protocol_reset: 0.0,
        reboot: 0.0,
    };

    /// A random profile: an intensity (none, light, medium, heavy), then
    /// each rate scaled by an independent factor so that seeds stress
    /// different mixes. `timeout` is the host's response timeout, which
    /// scales delays and stalls.
    pub fn random(d: &mut Dice, timeout: Duration) -> FaultProfile {
        let intensity = match d.weighted(&[1, 4, 4, 2]) {
            0 => return FaultProfile::NONE,
            1 => 0.01,
            2 => 0.04,
            _ => 0.12,
        };
        let rate = |d: &mut Dice| {
            if d.chance(0.2) {
                0.0
            } else {
                intensity * d.unit() * 2.0
            }
        };
        let dir = |d: &mut Dice| {
            let (drop, flip) = (rate(d), rate(d));
            let (duplicate, truncate, garbage) = (rate(d) / 2.0, rate(d) / 2.0, rate(d) / 2.0);
            let delay = rate(d);
            let delay_max = timeout.saturating_mul(d.range(1, 3) as u32) / 2;
            PacketFaults::NONE
                .with_drop(drop)
                .with_flip(flip)
                .with_duplicate(duplicate)
                .with_truncate(truncate)
                .with_garbage(garbage)
                .with_delay(delay, delay_max)
        };
        let h2c = dir(d);
        let c2h = dir(d);
        FaultProfile {
            h2c,
            c2h,
            stall: rate(d) * 2.0,
            stall_max: timeout.saturating_mul(d.range(1, 4) as u32),
            protocol_reset: rate(d),
            reboot: rate(d) / 2.0,
        }
    }

    /// The packet faults of one direction.
    pub fn packet(&self, dir: Dir) -> &PacketFaults {
        match dir {
            Dir::HostToCam => &self.h2c,
            Dir::CamToHost => &self.c2h,
        }
    }
}

/// The capabilities every party currently relies on: the intersection of
/// the host's configuration (what it is negotiating), the host's caps and
/// the cam's caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guard {
    /// CRCs checked on both sides.
    pub crc: bool,
    /// Sequence numbers checked on both sides.
    pub seq: bool,
    /// ACKs (and retransmission) in force.
    pub ack: bool,
}

impl Guard {
    /// May `kind` be injected in `dir` now?
    ///
    /// * drops and delays are always detectable host-to-cam (no answer:
    ///   timeout); cam-to-host a lost packet is detected by the sequence
    ///   check or recovered by retransmission, so one of them must be on;
    /// * bit flips, truncations and garbage need CRCs (and, cam-to-host,
    ///   destroy a packet like a drop does);
    /// * duplicates and delays need sequence numbers (a delayed packet of
    ///   an abandoned exchange would pass for the next one's);
    /// * splitting is harmless on a byte stream.
    pub fn allows(&self, dir: Dir, kind: FaultKind) -> bool {
        let loss_ok = dir == Dir::HostToCam || self.seq || self.ack;
        match kind {
            FaultKind::Drop => loss_ok,
            FaultKind::BitFlip | FaultKind::Truncate | FaultKind::Garbage => self.crc && loss_ok,
            // A held-back packet of an exchange the host gave up on is,
            // without sequence numbers, taken for the answer to the next
            // request (requests carry no id): undetectable by design.
            FaultKind::Duplicate | FaultKind::Delay => self.seq,
            FaultKind::Split => true,
            FaultKind::Stall | FaultKind::ProtocolReset | FaultKind::Reboot => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_rules() {
        let none = Guard {
            crc: false,
            seq: false,
            ack: false,
        };
        assert!(none.allows(Dir::HostToCam, FaultKind::Drop));
        assert!(!none.allows(Dir::CamToHost, FaultKind::Drop));
        assert!(!none.allows(Dir::HostToCam, FaultKind::BitFlip));
        assert!(!none.allows(Dir::CamToHost, FaultKind::Duplicate));
        let crc_ack = Guard {
            crc: true,
            seq: false,
            ack: true,
        };
        assert!(crc_ack.allows(Dir::CamToHost, FaultKind::BitFlip));
        assert!(!crc_ack.allows(Dir::CamToHost, FaultKind::Duplicate));
    }

    #[test]
    fn counts() {
        let mut c = FaultCounts::default();
        c.add(Dir::HostToCam, FaultKind::Drop);
        c.add(Dir::CamToHost, FaultKind::Drop);
        c.add(Dir::CamToHost, FaultKind::Split);
        assert_eq!(c.kind_total(FaultKind::Drop), 2);
        assert_eq!(c.total(), 2);
        let mut d = FaultCounts::default();
        d.merge(&c);
        assert_eq!(d, c);
    }
}
