//! The simulator's only source of randomness.
//!
//! Every decision of a run (scenario, workload, faults) is drawn from a
//! [`Dice`], so a run is a pure function of its seed ([`Dice::from_seed`]).
//!
//! A fuzzer drives the same harness from its input bytes instead
//! ([`Dice::from_bytes`]). This is the structure-aware decoder of the `dst`
//! fuzz target: every draw is a typed choice (an operation kind, a size, an
//! offset, whether this packet is dropped, where a bit flips) and takes the
//! next few input bytes in order, like `arbitrary::Unstructured` does:
//!
//! * [`Dice::below`] (and [`range`](Dice::range), [`pick`](Dice::pick),
//!   [`weighted`](Dice::weighted)) takes as many bytes as `n - 1` needs
//!   (one for up to 256 choices), the value being their little-endian
//!   number modulo `n`; a single choice takes none;
//! * [`chance`](Dice::chance) and [`coin`](Dice::coin) take one byte
//!   (`chance(p)` is true when it is below `ceil(256 p)`, so any `p > 0`
//!   is reachable); [`unit`](Dice::unit) two, [`u64`](Dice::u64) eight;
//! * [`bytes`](Dice::bytes) of up to [`TAPE_BYTES_MAX`] bytes (request
//!   arguments, short payloads) takes them verbatim; longer bulk data
//!   (buffer writes, script text) comes from a fixed-seed filler generator,
//!   since its contents do not steer the protocol and would otherwise eat
//!   the input;
//! * a draw that finds the input partly consumed pads it with zeros; once
//!   the input is exhausted, every draw comes from a generator with a
//!   *constant* seed ([`FALLBACK_SEED`]), so every input is a complete run,
//!   and a change to one input byte only changes the decisions from that
//!   byte on (nothing is hashed or mixed with the whole input).
//!
//! Forks of byte-driven dice (the fault and workload streams) share the one
//! input: the bytes are consumed in the order the run makes its decisions.

use std::cell::RefCell;
use std::rc::Rc;

use omv_proto::rng::SimRng;

/// Seed of the generator that takes over when fuzz bytes run out.
pub const FALLBACK_SEED: u64 = 0x0F0F_FA11_BAC4_0001;
/// Seed of the generator of bulk data in byte-driven runs.
pub const FILLER_SEED: u64 = 0x0F0F_F111_E400_0002;
/// Longest [`Dice::bytes`] string a byte-driven run takes from the input.
pub const TAPE_BYTES_MAX: usize = 16;

/// A deterministic random source: a seeded generator, or fuzz bytes.
#[derive(Clone, Debug)]
pub struct Dice {
    src: Source,
}

#[derive(Clone, Debug)]
enum Source {
    /// Seeded: every draw from the generator.
    Seed(SimRng),
    /// Byte-driven, shared with every fork.
    Tape(Rc<RefCell<Tape>>),
}

/// The fuzz input being consumed.
#[derive(Debug)]
struct Tape {
    data: Vec<u8>,
    pos: usize,
    /// Seeded dice for draws after the input ran out.
    rest: Dice,
    /// Seeded dice for bulk data.
    filler: Dice,
}

impl Tape {
    /// The next `k` bytes as a little-endian number (zero-padded at the
    /// end of the input); `None` once the input is exhausted.
    fn take(&mut self, k: usize) -> Option<u64> {
        if self.pos >= self.data.len() {
            return None;
        }
        let end = (self.pos + k).min(self.data.len());
        let mut b = [0u8; 8];
        b[..end - self.pos].copy_from_slice(&self.data[self.pos..end]);
        self.pos = end;
        Some(u64::from_le_bytes(b))
    }
}

/// Bytes needed to hold `v`.
fn width(v: u64) -> usize {
    (64 - v.leading_zeros() as usize).div_ceil(8)
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
            src: Source::Seed(SimRng::new(mix(seed))),
        }
    }

    /// Dice that decode `data` draw by draw (see the module documentation),
    /// then continue with a constant-seed generator.
    pub fn from_bytes(data: &[u8]) -> Dice {
        let tape = Tape {
            data: data.to_vec(),
            pos: 0,
            rest: Dice::from_seed(FALLBACK_SEED),
            filler: Dice::from_seed(FILLER_SEED),
        };
        Dice {
            src: Source::Tape(Rc::new(RefCell::new(tape))),
        }
    }

    /// Input bytes consumed so far (0 for seeded dice).
    pub fn consumed(&self) -> usize {
        match &self.src {
            Source::Seed(_) => 0,
            Source::Tape(t) => t.borrow().pos,
        }
    }

    /// True once byte-driven dice have consumed their whole input (always
    /// false for seeded dice).
    pub fn exhausted(&self) -> bool {
        match &self.src {
            Source::Seed(_) => false,
            Source::Tape(t) => {
                let t = t.borrow();
                t.pos >= t.data.len()
            }
        }
    }

    /// Byte-driven: `k` input bytes, or `None` (seeded, or input exhausted).
    fn tape(&mut self, k: usize) -> Option<u64> {
        match &self.src {
            Source::Seed(_) => None,
            Source::Tape(t) => t.borrow_mut().take(k),
        }
    }

    /// Where a draw goes when it cannot take input bytes: the seeded
    /// generator itself, or the tape's fallback dice.
    fn seeded<R>(&mut self, f: impl FnOnce(&mut SimRng) -> R) -> R {
        match &mut self.src {
            Source::Seed(rng) => f(rng),
            Source::Tape(t) => t.borrow_mut().rest.seeded(f),
        }
    }

    /// An independent stream derived from this one (`salt` names it), so
    /// that e.g. fault decisions do not shift the workload's draws. Forks
    /// of byte-driven dice share the input.
    pub fn fork(&mut self, salt: u64) -> Dice {
        if let Source::Tape(t) = &self.src {
            return Dice {
                src: Source::Tape(Rc::clone(t)),
            };
        }
        let s = self.u64() ^ mix(salt);
        Dice::from_seed(s)
    }

    /// 64 random bits.
    pub fn u64(&mut self) -> u64 {
        match self.tape(8) {
            Some(v) => v,
            None => self.seeded(|r| r.next_u64()),
        }
    }

    /// A value in `0..n` (0 when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        if let Source::Tape(_) = self.src {
            if n == 1 {
                return 0;
            }
            if let Some(v) = self.tape(width(n - 1)) {
                return v % n;
            }
        }
        self.seeded(|r| r.next_u64() % n)
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
        match self.tape(2) {
            Some(v) => v as f64 / 65536.0,
            None => self.seeded(|r| (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64),
        }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        if p.is_nan() || p <= 0.0 {
            return false;
        }
        match self.tape(1) {
            Some(v) => (v as f64) < (p * 256.0).ceil(),
            None => self.seeded(|r| (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p,
        }
    }

    /// A fair coin.
    pub fn coin(&mut self) -> bool {
        match self.tape(1) {
            Some(v) => v & 1 == 1,
            None => self.seeded(|r| r.next_u64() & 1 == 1),
        }
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
        if let Source::Tape(t) = &self.src {
            let mut t = t.borrow_mut();
            if n > TAPE_BYTES_MAX {
                return t.filler.bytes(n);
            }
            if t.pos < t.data.len() {
                let end = (t.pos + n).min(t.data.len());
                let mut v = t.data[t.pos..end].to_vec();
                t.pos = end;
                v.resize(n, 0);
                return v;
            }
            return t.rest.bytes(n);
        }
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// The DST's dice drive omv-proto's shared fault decisions, so that a
/// fuzzer's input decides every fault too.
impl omv_proto::fault::Entropy for Dice {
    fn below(&mut self, n: u64) -> u64 {
        Dice::below(self, n)
    }
    fn chance(&mut self, p: f64) -> bool {
        Dice::chance(self, p)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        Dice::bytes(self, n)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        Dice::range(self, lo, hi)
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
    fn bytes_are_decoded_in_order() {
        let mut d = Dice::from_bytes(&[7, 0x34, 0x12, 200, 3, 1, 2, 3, 9]);
        assert_eq!(d.below(10), 7);
        assert_eq!(d.range(0, 0xffff), 0x1234);
        assert!(!d.chance(0.5)); // 200 >= 128
        assert!(d.coin()); // 3
        assert_eq!(d.below(1), 0); // no byte
        let mut f = d.fork(1); // shares the input
        assert_eq!(f.bytes(3), vec![1, 2, 3]);
        assert_eq!(d.weighted(&[5, 5]), 1); // 9 % 10
        assert!(d.exhausted() && f.exhausted());
        assert_eq!(d.consumed(), 9);
        // Then the constant-seed generator, whatever the input was.
        let mut rest = Dice::from_seed(FALLBACK_SEED);
        assert_eq!(d.u64(), rest.u64());
        assert_eq!(f.u64(), rest.u64());
        let mut e = Dice::from_bytes(b"");
        assert_eq!(e.u64(), Dice::from_seed(FALLBACK_SEED).u64());
    }

    #[test]
    fn a_changed_byte_only_changes_later_draws() {
        let a: Vec<u8> = (0..64u32).map(|i| (i * 37) as u8).collect();
        let mut b = a.clone();
        b[40] ^= 0x55;
        let (mut da, mut db) = (Dice::from_bytes(&a), Dice::from_bytes(&b));
        for _ in 0..40 {
            assert_eq!(da.below(200), db.below(200));
        }
        assert_ne!(da.below(200), db.below(200));
        // Past the change (and after the input), the same draws again.
        for _ in 0..100 {
            assert_eq!(da.u64(), db.u64());
        }
    }

    #[test]
    fn any_positive_chance_is_reachable_from_bytes() {
        assert!(Dice::from_bytes(&[0]).chance(1e-9));
        assert!(!Dice::from_bytes(&[1]).chance(1e-9));
        assert!(Dice::from_bytes(&[255]).chance(1.0));
        assert!(!Dice::from_bytes(&[0]).chance(0.0));
    }

    #[test]
    fn bulk_bytes_do_not_eat_the_input() {
        let mut d = Dice::from_bytes(&[1, 2, 3]);
        let bulk = d.bytes(TAPE_BYTES_MAX + 1);
        assert_eq!(bulk, Dice::from_seed(FILLER_SEED).bytes(TAPE_BYTES_MAX + 1));
        assert_eq!(d.consumed(), 0);
        assert_eq!(d.bytes(5), vec![1, 2, 3, 0, 0]);
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
