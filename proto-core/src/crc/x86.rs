//! The payload CRC-32 by carry-less multiply on x86 and x86_64 (PCLMULQDQ
//! with SSE4.1), after Intel's "Fast CRC Computation for Generic
//! Polynomials Using PCLMULQDQ Instruction" (Gopal et al., 2009), for this
//! MSB-first (not reflected) polynomial.
//!
//! Each 16-byte block is loaded byte-reversed, so a 128-bit lane holds the
//! block as a polynomial with its first bit as the coefficient of x^127
//! and bit `i` of the register as the coefficient of x^i, the same order
//! carry-less multiply uses. A lane `A = A_hi·x^64 + A_lo` standing `d` bits
//! before another one `B` is folded into it as
//! `A_hi·(x^(d+64) mod P) ⊕ A_lo·(x^d mod P) ⊕ B`, which is congruent to
//! `A·x^d ⊕ B` modulo P and still fits 128 bits (64 × 32-bit products).
//! Eight lanes run side by side over 128-byte strides, then fold into one,
//! single blocks follow, the last lane reduces to 32 bits (two folds and a
//! Barrett reduction), and the last `len % 16` bytes go through a byte
//! table. Every constant is computed below, at compile time, from
//! [`PAYLOAD_CRC`]'s polynomial.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86")]
use core::arch::x86::*;
#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

use super::PAYLOAD_CRC;

/// The low 32 coefficients of P (its x^32 term is implied).
const POLY: u32 = PAYLOAD_CRC.poly;

/// x^n mod P, as a polynomial of degree < 32 (bit `i` = coefficient of x^i).
const fn x_pow_mod(n: u32) -> u64 {
    let mut r: u32 = 1;
    let mut i = 0;
    while i < n {
        // r·x: shift, and replace an x^32 term by P's lower coefficients.
        let carry = r & 0x8000_0000 != 0;
        r <<= 1;
        if carry {
            r ^= POLY;
        }
        i += 1;
    }
    r as u64
}

/// floor(x^64 / P), the 33-bit Barrett constant.
const fn barrett_mu() -> u64 {
    let p = (1u128 << 32) | POLY as u128;
    let mut rem = 1u128 << 64;
    let mut q = 0u64;
    let mut shift = 32;
    loop {
        if rem & (1u128 << (shift + 32)) != 0 {
            rem ^= p << shift;
            q |= 1 << shift;
        }
        if shift == 0 {
            return q;
        }
        shift -= 1;
    }
}

/// The folding constants for a distance of `d` bits, as `[lo, hi]`
/// 64-bit halves of one register: `x^d mod P` multiplies a lane's low
/// half, `x^(d+64) mod P` its high half.
const fn fold_keys(d: u32) -> [u64; 2] {
    [x_pow_mod(d), x_pow_mod(d + 64)]
}

/// Lanes folded side by side in the main loop.
const LANES: usize = 8;
/// Bytes per lane (one 128-bit register).
const LANE_BYTES: usize = 16;
/// Bytes the main loop consumes per iteration.
const STRIDE: usize = LANES * LANE_BYTES;

/// Folds a lane one stride ahead, onto the lane `LANES` blocks later.
const KEYS_STRIDE: [u64; 2] = fold_keys(8 * STRIDE as u32);
/// Folds a lane one block ahead.
const KEYS_BLOCK: [u64; 2] = fold_keys(8 * LANE_BYTES as u32);
/// `KEYS_LANE[i]` folds lane `i` of the last stride onto lane `LANES - 1`
/// (a distance of `LANES - 1 - i` blocks).
const KEYS_LANE: [[u64; 2]; LANES - 1] = {
    let mut k = [[0u64; 2]; LANES - 1];
    let mut i = 0;
    while i < LANES - 1 {
        k[i] = fold_keys((8 * LANE_BYTES * (LANES - 1 - i)) as u32);
        i += 1;
    }
    k
};
/// Final reduction of R (128 bits) to R·x^32 mod P: `[x^64 mod P, x^96 mod P]`.
const KEYS_FINAL: [u64; 2] = [x_pow_mod(64), x_pow_mod(96)];
/// Barrett reduction of a 64-bit remainder: `[floor(x^64 / P), P]`
/// (P with its x^32 term).
const KEYS_BARRETT: [u64; 2] = [barrett_mu(), (1 << 32) | POLY as u64];

/// `TABLE[b]` = b·x^32 mod P: what one byte `b` leaves in a zero register
/// (for the last `len % 16` bytes).
const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut b = 0;
    while b < 256 {
        let mut r = (b as u32) << 24;
        let mut i = 0;
        while i < 8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ POLY
            } else {
                r << 1
            };
            i += 1;
        }
        t[b] = r;
        b += 1;
    }
    t
};

/// Continues a CRC register over `data` one byte at a time.
#[inline]
fn bytewise(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = (crc << 8) ^ TABLE[usize::from((crc >> 24) as u8 ^ b)];
    }
    crc
}

/// True when this CPU runs [`checksum`].
pub(super) fn cpu_has_clmul() -> bool {
    std::arch::is_x86_feature_detected!("pclmulqdq")
        && std::arch::is_x86_feature_detected!("sse4.1")
}

/// True when this CPU also has VPCLMULQDQ with AVX2 (256-bit carry-less
/// multiply, two lanes per instruction). Read from CPUID directly: the
/// detection macro's name for it is not stable in Rust 1.81.
fn cpu_has_vpclmul() -> bool {
    /// CPUID leaf 7 (sub-leaf 0), ECX bit 10: VPCLMULQDQ.
    const LEAF: u32 = 7;
    const ECX_VPCLMULQDQ: u32 = 1 << 10;
    if !(cpu_has_clmul() && std::arch::is_x86_feature_detected!("avx2")) {
        return false;
    }
    // SAFETY: CPUID exists on every CPU with the features checked above;
    // leaf 7 is read only when the highest leaf (leaf 0's EAX) reaches it.
    // (`__cpuid` is unsafe in Rust 1.81, safe in newer ones.)
    #[allow(unused_unsafe)]
    unsafe {
        __cpuid(0).eax >= LEAF && __cpuid_count(LEAF, 0).ecx & ECX_VPCLMULQDQ != 0
    }
}

/// Whether [`checksum`] runs the 256-bit main loop: unknown until the first
/// call, then detected once.
static WIDE: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const NO: u8 = 1;
const YES: u8 = 2;

#[inline]
fn wide() -> bool {
    match WIDE.load(Ordering::Relaxed) {
        UNKNOWN => {
            let yes = cpu_has_vpclmul();
            WIDE.store(if yes { YES } else { NO }, Ordering::Relaxed);
            yes
        }
        w => w == YES,
    }
}

/// The payload CRC-32 of `data` ([`PAYLOAD_CRC`]: init all ones, no final
/// xor), using carry-less multiply for every whole 16-byte block.
///
/// # Safety
///
/// The CPU must have PCLMULQDQ and SSE4.1 ([`cpu_has_clmul`]).
#[inline]
pub(super) unsafe fn checksum(data: &[u8]) -> u32 {
    // SAFETY: our contract; nothing is written when not copying.
    unsafe { run::<false>(data, core::ptr::null_mut()) }
}

/// [`checksum`] of `data`, also copying `data` into `dst[..data.len()]` in
/// the same pass (each block is stored as it is loaded for the CRC).
///
/// # Safety
///
/// The CPU must have PCLMULQDQ and SSE4.1 ([`cpu_has_clmul`]).
///
/// # Panics
///
/// When `dst` is shorter than `data`.
#[inline]
pub(super) unsafe fn checksum_copy(data: &[u8], dst: &mut [MaybeUninit<u8>]) -> u32 {
    let dst = &mut dst[..data.len()];
    // SAFETY: our contract; `dst` is writable for `data.len()` bytes, and
    // `data` (a shared borrow) cannot overlap it (an exclusive one).
    unsafe { run::<true>(data, dst.as_mut_ptr().cast()) }
}

/// [`checksum`], and with `COPY` the copy of [`checksum_copy`].
///
/// # Safety
///
/// The CPU must have PCLMULQDQ and SSE4.1; with `COPY`, `dst` must be
/// writable for `data.len()` bytes and not overlap `data`.
#[inline]
unsafe fn run<const COPY: bool>(data: &[u8], dst: *mut u8) -> u32 {
    let init = PAYLOAD_CRC.init;
    let whole = data.len() - data.len() % LANE_BYTES;
    let (blocks, tail) = data.split_at(whole);
    let crc = if blocks.is_empty() {
        init
    } else if blocks.len() >= 2 * STRIDE && wide() {
        // SAFETY: wide() checked AVX2 and VPCLMULQDQ besides our contract;
        // `dst` as ours.
        unsafe { fold_blocks_wide::<COPY>(init, blocks, dst) }
    } else {
        // SAFETY: the CPU has the target features (our contract), `dst` as
        // ours.
        unsafe { fold_blocks::<COPY>(init, blocks, dst) }
    };
    if COPY {
        // SAFETY: `dst` has room for `data`, of which `whole` bytes are done.
        unsafe { core::ptr::copy_nonoverlapping(tail.as_ptr(), dst.add(whole), tail.len()) };
    }
    bytewise(crc, tail)
}

/// A 16-byte block as it is in memory.
#[inline]
#[target_feature(enable = "pclmulqdq,sse4.1")]
unsafe fn load(block: &[u8]) -> __m128i {
    // Panics rather than reading past a short slice.
    let block = &block[..LANE_BYTES];
    // SAFETY: `block` is 16 readable bytes; loadu needs no alignment.
    unsafe { _mm_loadu_si128(block.as_ptr().cast()) }
}

/// A block byte-reversed, so its first byte is the high one.
#[inline]
#[target_feature(enable = "pclmulqdq,sse4.1")]
unsafe fn rev(v: __m128i) -> __m128i {
    _mm_shuffle_epi8(
        v,
        _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
    )
}

/// With `COPY`, stores the block `v` (as loaded) at `dst + off`.
///
/// # Safety
///
/// With `COPY`, `dst + off` must be writable for 16 bytes.
#[inline]
#[target_feature(enable = "pclmulqdq,sse4.1")]
unsafe fn put<const COPY: bool>(dst: *mut u8, off: usize, v: __m128i) {
    if COPY {
        // SAFETY: the caller's contract; storeu needs no alignment.
        unsafe { _mm_storeu_si128(dst.add(off).cast(), v) };
    }
}

/// `keys` as a register: `[0]` in the low half, `[1]` in the high half.
#[inline]
#[target_feature(enable = "pclmulqdq,sse4.1")]
unsafe fn keys(k: [u64; 2]) -> __m128i {
    _mm_set_epi64x(k[1] as i64, k[0] as i64)
}

/// `a` folded ahead by the distance `k` was made for, onto `b`.
#[inline]
#[target_feature(enable = "pclmulqdq,sse4.1")]
unsafe fn fold(a: __m128i, k: __m128i, b: __m128i) -> __m128i {
    let hi = _mm_clmulepi64_si128(a, k, 0x11);
    let lo = _mm_clmulepi64_si128(a, k, 0x00);
    _mm_xor_si128(_mm_xor_si128(hi, lo), b)
}

/// The CRC register after `blocks` (a non-empty multiple of 16 bytes),
/// starting from `init`; with `COPY` each block is also stored at the same
/// offset from `dst`.
///
/// # Safety
///
/// The CPU must have the target features; with `COPY`, `dst` must be
/// writable for `blocks.len()` bytes.
#[target_feature(enable = "pclmulqdq,sse4.1")]
unsafe fn fold_blocks<const COPY: bool>(init: u32, blocks: &[u8], dst: *mut u8) -> u32 {
    debug_assert!(!blocks.is_empty() && blocks.len() % LANE_BYTES == 0);
    // The register's initial value enters as an xor on the first 32 bits.
    let init = _mm_set_epi32(init as i32, 0, 0, 0);
    if blocks.len() < STRIDE {
        let v = load(blocks);
        put::<COPY>(dst, 0, v);
        let acc = _mm_xor_si128(rev(v), init);
        return finish_blocks::<COPY>(acc, blocks, LANE_BYTES, dst);
    }
    let mut x = [_mm_setzero_si128(); LANES];
    for (i, lane) in x.iter_mut().enumerate() {
        let v = load(&blocks[i * LANE_BYTES..]);
        put::<COPY>(dst, i * LANE_BYTES, v);
        *lane = rev(v);
    }
    x[0] = _mm_xor_si128(x[0], init);
    let mut off = STRIDE;
    let k = keys(KEYS_STRIDE);
    while blocks.len() - off >= STRIDE {
        for (i, lane) in x.iter_mut().enumerate() {
            let at = off + i * LANE_BYTES;
            let v = load(&blocks[at..]);
            put::<COPY>(dst, at, v);
            *lane = fold(*lane, k, rev(v));
        }
        off += STRIDE;
    }
    finish_lanes::<COPY>(x, blocks, off, dst)
}

/// The CRC register after `blocks` (at least two strides, a multiple of
/// 16 bytes), starting from `init`: [`fold_blocks`] with the main loop on
/// 256-bit registers, each holding two neighbouring lanes.
///
/// # Safety
///
/// As [`fold_blocks`], and the CPU must have AVX2 and VPCLMULQDQ.
#[target_feature(enable = "avx,avx2,pclmulqdq,sse4.1")]
unsafe fn fold_blocks_wide<const COPY: bool>(init: u32, blocks: &[u8], dst: *mut u8) -> u32 {
    const PAIRS: usize = LANES / 2;
    debug_assert!(blocks.len() >= 2 * STRIDE && blocks.len() % LANE_BYTES == 0);
    // Byte reversal within each 128-bit half.
    let reverse = _mm256_broadcastsi128_si256(_mm_set_epi8(
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    ));
    // Two blocks from `at`, reversed; stored as loaded when copying.
    let load2 = |at: usize| {
        // Panics rather than reading past a short slice.
        let b = &blocks[at..at + 2 * LANE_BYTES];
        // SAFETY: `b` is 32 readable bytes; loadu needs no alignment.
        let v = unsafe { _mm256_loadu_si256(b.as_ptr().cast()) };
        if COPY {
            // SAFETY: `dst` is writable for `blocks.len()` bytes (our
            // contract), so for these 32.
            unsafe { _mm256_storeu_si256(dst.add(at).cast(), v) };
        }
        _mm256_shuffle_epi8(v, reverse)
    };
    let init = _mm256_set_epi32(0, 0, 0, 0, init as i32, 0, 0, 0);
    let mut x = [_mm256_setzero_si256(); PAIRS];
    for (i, pair) in x.iter_mut().enumerate() {
        *pair = load2(2 * i * LANE_BYTES);
    }
    x[0] = _mm256_xor_si256(x[0], init);
    let mut off = STRIDE;
    let k = _mm256_broadcastsi128_si256(keys(KEYS_STRIDE));
    while blocks.len() - off >= STRIDE {
        for (i, pair) in x.iter_mut().enumerate() {
            let hi = clmul256_hi(*pair, k);
            let lo = clmul256_lo(*pair, k);
            let next = load2(off + 2 * i * LANE_BYTES);
            *pair = _mm256_xor_si256(_mm256_xor_si256(hi, lo), next);
        }
        off += STRIDE;
    }
    let mut lanes = [_mm_setzero_si128(); LANES];
    for (i, pair) in x.iter().enumerate() {
        lanes[2 * i] = _mm256_castsi256_si128(*pair);
        lanes[2 * i + 1] = _mm256_extracti128_si256(*pair, 1);
    }
    finish_lanes::<COPY>(lanes, blocks, off, dst)
}

/// VPCLMULQDQ with immediate 0x11: in each 128-bit half, `a.hi · k.hi`.
/// (Inline assembly: the intrinsic is not stable in Rust 1.81.)
#[inline]
#[target_feature(enable = "avx,avx2")]
unsafe fn clmul256_hi(a: __m256i, k: __m256i) -> __m256i {
    let r: __m256i;
    // SAFETY: the caller's CPU has VPCLMULQDQ (cpu_has_vpclmul); the
    // instruction only reads and writes registers.
    unsafe {
        core::arch::asm!(
            "vpclmulqdq {r}, {a}, {k}, 0x11",
            r = lateout(ymm_reg) r,
            a = in(ymm_reg) a,
            k = in(ymm_reg) k,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    r
}

/// VPCLMULQDQ with immediate 0x00: in each 128-bit half, `a.lo · k.lo`.
#[inline]
#[target_feature(enable = "avx,avx2")]
unsafe fn clmul256_lo(a: __m256i, k: __m256i) -> __m256i {
    let r: __m256i;
    // SAFETY: as in clmul256_hi.
    unsafe {
        core::arch::asm!(
            "vpclmulqdq {r}, {a}, {k}, 0x00",
            r = lateout(ymm_reg) r,
            a = in(ymm_reg) a,
            k = in(ymm_reg) k,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    r
}

/// The lanes of the last stride folded into one, then the single blocks
/// of `blocks` from `off` on, then the reduction to the CRC register.
///
/// # Safety
///
/// As [`fold_blocks`].
#[inline]
#[target_feature(enable = "pclmulqdq,sse4.1")]
unsafe fn finish_lanes<const COPY: bool>(
    x: [__m128i; LANES],
    blocks: &[u8],
    off: usize,
    dst: *mut u8,
) -> u32 {
    // Every lane onto the last one, each from its own distance: independent
    // products, so they overlap.
    let mut acc = x[LANES - 1];
    for (lane, k) in x.iter().zip(KEYS_LANE) {
        acc = fold(*lane, keys(k), acc);
    }
    finish_blocks::<COPY>(acc, blocks, off, dst)
}

/// `acc` folded over the whole blocks of `blocks` from `off` on, reduced
/// to the CRC register.
///
/// # Safety
///
/// As [`fold_blocks`].
#[inline]
#[target_feature(enable = "pclmulqdq,sse4.1")]
unsafe fn finish_blocks<const COPY: bool>(
    mut acc: __m128i,
    blocks: &[u8],
    mut off: usize,
    dst: *mut u8,
) -> u32 {
    let k = keys(KEYS_BLOCK);
    while off < blocks.len() {
        let v = load(&blocks[off..]);
        put::<COPY>(dst, off, v);
        acc = fold(acc, k, rev(v));
        off += LANE_BYTES;
    }
    reduce(acc)
}

/// R·x^32 mod P for the 128-bit polynomial R in `r`: the CRC register
/// after the bytes R stands for.
#[inline]
#[target_feature(enable = "pclmulqdq,sse4.1")]
unsafe fn reduce(r: __m128i) -> u32 {
    let k = keys(KEYS_FINAL);
    // R·x^32 = R_hi·x^96 + R_lo·x^32 ≡ R_hi·(x^96 mod P) + R_lo·x^32,
    // a polynomial T of degree < 96.
    let t = _mm_xor_si128(
        _mm_clmulepi64_si128(r, k, 0x11),
        _mm_slli_si128(_mm_move_epi64(r), 4),
    );
    // T = T_hi·x^64 + T_lo (T_hi 32 bits) ≡ T_hi·(x^64 mod P) + T_lo, of
    // degree < 64.
    let u = _mm_xor_si128(_mm_clmulepi64_si128(t, k, 0x01), _mm_move_epi64(t));
    // Barrett: q = floor(floor(U / x^32)·mu / x^32) = floor(U / P), and
    // U mod P = (U ⊕ q·P) mod x^32.
    let b = keys(KEYS_BARRETT);
    let q = _mm_srli_epi64(_mm_clmulepi64_si128(_mm_srli_epi64(u, 32), b, 0x00), 32);
    let qp = _mm_clmulepi64_si128(q, b, 0x10);
    _mm_cvtsi128_si32(_mm_xor_si128(u, qp)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_crc_crate() {
        let data: alloc::vec::Vec<u8> = (0..1000u32).map(|i| (i * 131 + 7) as u8).collect();
        for len in 0..data.len() {
            assert_eq!(
                bytewise(PAYLOAD_CRC.init, &data[..len]),
                super::super::crc32_table(&data[..len])
            );
        }
    }

    #[test]
    fn both_main_loops_agree() {
        if !cpu_has_vpclmul() {
            return;
        }
        let data: alloc::vec::Vec<u8> = (0..9000u32)
            .map(|i| i.wrapping_mul(2_654_435_761) as u8)
            .collect();
        for len in (2 * STRIDE..data.len()).step_by(LANE_BYTES) {
            for init in [PAYLOAD_CRC.init, 0, 0x1234_5678] {
                // SAFETY: the CPU has every feature either one needs.
                let (narrow, wide) = unsafe {
                    (
                        fold_blocks::<false>(init, &data[..len], core::ptr::null_mut()),
                        fold_blocks_wide::<false>(init, &data[..len], core::ptr::null_mut()),
                    )
                };
                assert_eq!(narrow, wide, "len {len}");
            }
        }
        assert_eq!(
            // SAFETY: as above.
            unsafe {
                fold_blocks_wide::<false>(PAYLOAD_CRC.init, &data[..4080], core::ptr::null_mut())
            },
            super::super::crc32_table(&data[..4080])
        );
    }

    #[test]
    fn constants_follow_from_the_polynomial() {
        // x^32 mod P is P's lower coefficients; below x^32 a power is itself.
        assert_eq!(x_pow_mod(32), u64::from(POLY));
        assert_eq!(x_pow_mod(31), 1 << 31);
        // mu·P = x^64 + (a remainder of degree < 32).
        let mut prod = 0u128;
        for i in 0..64 {
            if KEYS_BARRETT[1] >> i & 1 != 0 {
                prod ^= u128::from(barrett_mu()) << i;
            }
        }
        assert_eq!(prod >> 32, 1 << 32);
    }
}
