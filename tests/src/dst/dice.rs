//! The simulator's only source of randomness.
//!
//! Every decision of a run (scenario, workload, faults) is drawn from a
//! [`Dice`], so a run is a pure function of its seed. A fuzzer can drive the
//! same harness from its input bytes instead ([`Dice::from_bytes`]): the
//! bytes are consumed first, then a generator seeded from their hash takes
//! over, so every input is a complete, replayable run.

use proto_core::rng::SimRng;

/// A deterministic random source: a seeded generator, optionally preceded
/// by a fixed byte string.
#[derive(Clone, Debug)]
pub struct Dice {
    rng: SimRng,
    bytes: Vec<u8>,
    pos: usize,
}

/// Mixes a value (SplitMix64 finaliser); used to derive independent streams.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64-bit FNV-1a of a byte string.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Dice {
    /// Dice driven by `seed` alone.
    pub fn from_seed(seed: u64) -> Dice {
        Dice {
            rng: SimRng::new(mix(seed)),
            bytes: Vec::new(),
            pos: 0,
        }
    }

    /// Dice that consume `data` first (8 bytes per draw), then continue with
    /// a generator seeded from the hash of `data`.
    pub fn from_bytes(data: &[u8]) -> Dice {
        Dice {
            rng: SimRng::new(mix(fnv1a(data))),
            bytes: data.to_vec(),
            pos: 0,
        }
    }

    /// An independent stream derived from this one (`salt` names it), so
    /// that e.g. fault decisions do not shift the workload's draws.
    pub fn fork(&mut self, salt: u64) -> Dice {
        let s = self.u64() ^ mix(salt);
        Dice::from_seed(s)
    }

    /// 64 random bits.
    pub fn u64(&mut self) -> u64 {
        if self.pos < self.bytes.len() {
            let end = (self.pos + 8).min(self.bytes.len());
            let mut b = [0u8; 8];
            b[..end - self.pos].copy_from_slice(&self.bytes[self.pos..end]);
            self.pos = end;
            // Mix in the generator so short inputs still vary every bit.
            return u64::from_le_bytes(b) ^ self.rng.next_u64();
        }
        self.rng.next_u64()
    }

    /// A value in `0..n` (0 when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.u64() % n
        }
    }

    /// A value in `lo..=hi` (`lo` when `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.below(hi - lo + 1)
        }
    }

    /// A `usize` in `lo..=hi`.
    pub fn range_usize(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as u64, hi as u64) as usize
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// A fair coin.
    pub fn coin(&mut self) -> bool {
        self.u64() & 1 == 1
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// An index chosen with the given relative weights (all zero: 0).
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut r = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if r < u64::from(w) {
                return i;
            }
            r -= u64::from(w);
        }
        0
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws() {
        let mut a = Dice::from_seed(7);
        let mut b = Dice::from_seed(7);
        for _ in 0..100 {
            assert_eq!(a.u64(), b.u64());
        }
        let mut c = Dice::from_bytes(b"abc");
        let mut d = Dice::from_bytes(b"abc");
        assert_eq!(c.bytes(40), d.bytes(40));
    }

    #[test]
    fn ranges_and_weights() {
        let mut d = Dice::from_seed(1);
        for _ in 0..1000 {
            let v = d.range(3, 5);
            assert!((3..=5).contains(&v));
        }
        assert_eq!(d.range(9, 2), 9);
        for _ in 0..100 {
            assert_eq!(d.weighted(&[0, 5, 0]), 1);
        }
    }
}
