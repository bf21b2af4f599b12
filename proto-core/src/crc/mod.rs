//! The two CRCs of the protocol.
//!
//! Both are MSB-first (not reflected), with no final xor. The header CRC-16
//! of 8 bytes uses slice-by-8 tables built here at compile time (other
//! lengths the `crc` crate's slice-by-16 tables). The payload CRC-32 uses
//! carry-less multiply when the `simd-crc` feature is on (it is part of
//! `std`) and the CPU has the instructions, detected once at run time: our
//! own PCLMULQDQ code on x86 and x86_64 (with a 256-bit VPCLMULQDQ main
//! loop where the CPU has it and AVX2), the `crc-fast` crate's PMULL code
//! on aarch64. Everywhere else, including every `no_std` build, it uses the
//! `crc` crate's slice-by-16 tables.
//! [`crc32_table`] and [`crc32_simd`] name one implementation each, and
//! [`set_crc32_impl`] chooses what [`crc32`] (and so the framer) uses, for
//! benchmarks and comparisons.
//!
//! ```
//! assert_eq!(omv_proto::crc::crc16(b"123456789"), 0xE541);
//! assert_eq!(omv_proto::crc::crc32(b"123456789"), 0x41B4_03D3);
//! ```

use alloc::vec::Vec;

use crc::{Algorithm, Crc, Table};

/// Header CRC-16: poly 0xF94F, init 0xFFFF.
pub const HEADER_CRC: Algorithm<u16> = Algorithm {
    width: 16,
    poly: 0xF94F,
    init: 0xFFFF,
    refin: false,
    refout: false,
    xorout: 0x0000,
    check: 0xE541,
    residue: 0x0000,
};

/// Payload CRC-32: poly 0xFA567D89, init 0xFFFFFFFF.
pub const PAYLOAD_CRC: Algorithm<u32> = Algorithm {
    width: 32,
    poly: 0xFA56_7D89,
    init: 0xFFFF_FFFF,
    refin: false,
    refout: false,
    xorout: 0x0000_0000,
    check: 0x41B4_03D3,
    residue: 0x0000_0000,
};

static CRC16: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&HEADER_CRC);
static CRC32: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&PAYLOAD_CRC);

/// CRC-16 of a header's first 8 bytes (or of any data).
#[inline]
pub fn crc16(data: &[u8]) -> u16 {
    match <&[u8; 8]>::try_from(data) {
        Ok(header) => crc16_8(header),
        Err(_) => CRC16.checksum(data),
    }
}

/// `CRC16_8[k][b]` = b·x^(16 + 8k) mod P16: what byte `b` followed by `k`
/// more bytes leaves in a zero CRC-16 register (slice-by-8 tables, built
/// at compile time from [`HEADER_CRC`]'s polynomial).
static CRC16_8: [[u16; 256]; 8] = {
    let poly = HEADER_CRC.poly;
    let mut t = [[0u16; 256]; 8];
    let mut b = 0;
    while b < 256 {
        let mut r = (b as u16) << 8;
        let mut i = 0;
        while i < 8 {
            r = if r & 0x8000 != 0 {
                (r << 1) ^ poly
            } else {
                r << 1
            };
            i += 1;
        }
        t[0][b] = r;
        b += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut b = 0;
        while b < 256 {
            let prev = t[k - 1][b];
            t[k][b] = (prev << 8) ^ t[0][(prev >> 8) as usize];
            b += 1;
        }
        k += 1;
    }
    t
};

/// CRC-16 of exactly 8 bytes (a header): eight independent table lookups
/// instead of a chain of eight; the initial value enters as an xor on the
/// first two bytes.
#[inline]
fn crc16_8(d: &[u8; 8]) -> u16 {
    let [i0, i1] = HEADER_CRC.init.to_be_bytes();
    let t = &CRC16_8;
    t[7][usize::from(d[0] ^ i0)]
        ^ t[6][usize::from(d[1] ^ i1)]
        ^ t[5][usize::from(d[2])]
        ^ t[4][usize::from(d[3])]
        ^ t[3][usize::from(d[4])]
        ^ t[2][usize::from(d[5])]
        ^ t[1][usize::from(d[6])]
        ^ t[0][usize::from(d[7])]
}

/// Shortest payload [`crc32`] hands to the carry-less-multiply CRC; below
/// it the tables are as fast or faster (x86_64, measured in thread CPU time
/// on the development machine's EPYC: 16 bytes 7.8 ns table vs 7.6 ns
/// SIMD, 24 bytes 15 vs 17, 32 bytes 13 vs 8.8, 64 bytes 23 vs 11, 4082
/// bytes 1289 vs 178). On aarch64 it stays at 192, chosen for `crc-fast`'s
/// cost of about 45 ns per call (measured on x86_64; not measured on an
/// aarch64 machine).
pub const SIMD_MIN_LEN: usize = if cfg!(target_arch = "aarch64") {
    192
} else {
    32
};

/// CRC-32 of a payload, with the implementation [`crc32_impl`] names
/// (the tables for payloads shorter than [`SIMD_MIN_LEN`] either way).
#[inline]
#[allow(unsafe_code)]
pub fn crc32(data: &[u8]) -> u32 {
    #[cfg(simd)]
    if data.len() >= SIMD_MIN_LEN && simd::active() {
        // SAFETY: active() implies detected().
        return unsafe { simd::checksum(data) };
    }
    crc32_table(data)
}

/// Appends `data` to `out` and returns its CRC-32 (as [`crc32`] computes
/// it). Where the x86 carry-less-multiply CRC runs ([`copy_is_fused`]), the
/// copy is made in the same pass as the CRC (each block stored as it is
/// loaded), instead of a copy and a second pass over the copy.
pub fn crc32_extend(out: &mut Vec<u8>, data: &[u8]) -> u32 {
    extend(out, data)
}

/// [`crc32_extend`] onto a `BytesMut` (the framer's receive buffer).
pub fn crc32_extend_bytes(out: &mut bytes::BytesMut, data: &[u8]) -> u32 {
    extend(out, data)
}

/// True when [`crc32_extend`] copies in the same pass as the CRC for
/// payloads of [`SIMD_MIN_LEN`] bytes or more.
#[inline]
pub fn copy_is_fused() -> bool {
    #[cfg(all(simd, any(target_arch = "x86", target_arch = "x86_64")))]
    if simd::active() {
        return true;
    }
    false
}

/// A growable byte buffer [`extend`] appends to.
#[allow(unsafe_code)]
#[cfg_attr(
    not(all(simd, any(target_arch = "x86", target_arch = "x86_64"))),
    allow(dead_code)
)]
trait Grow {
    fn reserve(&mut self, n: usize);
    fn spare(&mut self) -> &mut [core::mem::MaybeUninit<u8>];
    fn len(&self) -> usize;
    /// # Safety
    ///
    /// As `Vec::set_len`.
    unsafe fn set_len(&mut self, len: usize);
    fn extend_from_slice(&mut self, data: &[u8]);
}

#[allow(unsafe_code)]
impl Grow for Vec<u8> {
    fn reserve(&mut self, n: usize) {
        Vec::reserve(self, n)
    }
    fn spare(&mut self) -> &mut [core::mem::MaybeUninit<u8>] {
        self.spare_capacity_mut()
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
    unsafe fn set_len(&mut self, len: usize) {
        // SAFETY: the caller's contract is Vec::set_len's.
        unsafe { Vec::set_len(self, len) }
    }
    fn extend_from_slice(&mut self, data: &[u8]) {
        Vec::extend_from_slice(self, data)
    }
}

#[allow(unsafe_code)]
impl Grow for bytes::BytesMut {
    fn reserve(&mut self, n: usize) {
        bytes::BytesMut::reserve(self, n)
    }
    fn spare(&mut self) -> &mut [core::mem::MaybeUninit<u8>] {
        self.spare_capacity_mut()
    }
    fn len(&self) -> usize {
        bytes::BytesMut::len(self)
    }
    unsafe fn set_len(&mut self, len: usize) {
        // SAFETY: the caller's contract is BytesMut::set_len's.
        unsafe { bytes::BytesMut::set_len(self, len) }
    }
    fn extend_from_slice(&mut self, data: &[u8]) {
        bytes::BytesMut::extend_from_slice(self, data)
    }
}

#[inline]
#[allow(unsafe_code)]
fn extend<B: Grow>(out: &mut B, data: &[u8]) -> u32 {
    #[cfg(all(simd, any(target_arch = "x86", target_arch = "x86_64")))]
    if data.len() >= SIMD_MIN_LEN && simd::active() {
        out.reserve(data.len());
        let len = out.len();
        // SAFETY: active() implies detected(): the CPU has PCLMULQDQ and
        // SSE4.1.
        let c = unsafe { x86::checksum_copy(data, out.spare()) };
        // SAFETY: checksum_copy wrote the first data.len() bytes of the
        // spare capacity (reserved above).
        unsafe { out.set_len(len + data.len()) };
        return c;
    }
    out.extend_from_slice(data);
    crc32(data)
}

/// CRC-32 of a payload with the slice-by-16 tables, whatever the CPU.
pub fn crc32_table(data: &[u8]) -> u32 {
    CRC32.checksum(data)
}

/// CRC-32 of a payload with carry-less multiply, or `None` where this build
/// or this CPU has none.
#[allow(unsafe_code)]
pub fn crc32_simd(data: &[u8]) -> Option<u32> {
    #[cfg(simd)]
    if simd::detected() {
        // SAFETY: just checked.
        return Some(unsafe { simd::checksum(data) });
    }
    let _ = data;
    None
}

/// An implementation of the payload CRC-32.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crc32Impl {
    /// The `crc` crate's slice-by-16 tables.
    Table,
    /// Carry-less multiply (`crc-fast`).
    Simd,
}

/// The implementation [`crc32`] uses now: [`Crc32Impl::Simd`] when this
/// build and CPU have it, unless [`set_crc32_impl`] chose the table.
pub fn crc32_impl() -> Crc32Impl {
    #[cfg(simd)]
    if simd::active() {
        return Crc32Impl::Simd;
    }
    Crc32Impl::Table
}

/// Chooses what [`crc32`] uses from now on, process-wide (for benchmarks
/// and comparisons; both give the same values). Returns false, changing
/// nothing, when `imp` is not available in this build or on this CPU.
pub fn set_crc32_impl(imp: Crc32Impl) -> bool {
    match imp {
        Crc32Impl::Table => {
            #[cfg(simd)]
            simd::set_active(false);
            true
        }
        Crc32Impl::Simd => {
            #[cfg(simd)]
            if simd::detected() {
                simd::set_active(true);
                return true;
            }
            false
        }
    }
}

#[cfg(all(simd, any(target_arch = "x86", target_arch = "x86_64")))]
mod x86;

/// The carry-less-multiply CRC-32 and the run-time choice of it; `cfg(simd)`
/// is set by `build.rs` on x86, x86_64 (our own PCLMULQDQ code, [`x86`])
/// and aarch64 (`crc-fast`'s PMULL code).
#[cfg(simd)]
#[allow(unsafe_code)]
mod simd {
    use std::sync::atomic::{AtomicU8, Ordering};

    const UNKNOWN: u8 = 0;
    const OFF: u8 = 1;
    const ON: u8 = 2;
    const ABSENT: u8 = 3;

    /// UNKNOWN until the first call detects the CPU; then ON or ABSENT, or
    /// OFF when the table was chosen.
    static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    fn cpu_has_clmul() -> bool {
        super::x86::cpu_has_clmul()
    }

    #[cfg(target_arch = "aarch64")]
    fn cpu_has_clmul() -> bool {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("neon")
    }

    #[cold]
    fn detect() -> u8 {
        let s = if cpu_has_clmul() { ON } else { ABSENT };
        // Another thread may have chosen meanwhile: keep its choice.
        match STATE.compare_exchange(UNKNOWN, s, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => s,
            Err(now) => now,
        }
    }

    #[inline]
    fn state() -> u8 {
        match STATE.load(Ordering::Relaxed) {
            UNKNOWN => detect(),
            s => s,
        }
    }

    pub(super) fn detected() -> bool {
        state() != ABSENT
    }

    #[inline]
    pub(super) fn active() -> bool {
        state() == ON
    }

    pub(super) fn set_active(on: bool) {
        if detected() {
            STATE.store(if on { ON } else { OFF }, Ordering::Relaxed);
        }
    }

    /// The CRC-32 by carry-less multiply.
    ///
    /// # Safety
    ///
    /// [`detected`] must have returned true.
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    #[inline]
    pub(super) unsafe fn checksum(data: &[u8]) -> u32 {
        // SAFETY: detected() checked PCLMULQDQ and SSE4.1 (our contract).
        unsafe { super::x86::checksum(data) }
    }

    /// The CRC-32 by carry-less multiply.
    ///
    /// # Safety
    ///
    /// [`detected`] must have returned true.
    #[cfg(target_arch = "aarch64")]
    pub(super) unsafe fn checksum(data: &[u8]) -> u32 {
        use crc_fast::{checksum_with_params, CrcParams};
        use std::sync::OnceLock;

        use super::PAYLOAD_CRC;

        static PARAMS: OnceLock<CrcParams> = OnceLock::new();
        let params = *PARAMS.get_or_init(|| {
            CrcParams::new(
                "OMV-PAYLOAD-CRC32",
                32,
                u64::from(PAYLOAD_CRC.poly),
                u64::from(PAYLOAD_CRC.init),
                false,
                u64::from(PAYLOAD_CRC.xorout),
                u64::from(PAYLOAD_CRC.check),
            )
        });
        checksum_with_params(params, data) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The 8-byte tables give the crc crate's header CRC.
        #[test]
        fn crc16_of_8_bytes_matches_the_crc_crate(d in proptest::prelude::any::<[u8; 8]>()) {
            proptest::prop_assert_eq!(crc16(&d), CRC16.checksum(&d));
        }
    }

    #[test]
    fn check_values() {
        assert_eq!(crc16(b"123456789"), HEADER_CRC.check);
        assert_eq!(crc32(b"123456789"), PAYLOAD_CRC.check);
        assert_eq!(crc16(b""), 0xFFFF);
        assert_eq!(crc32(b""), 0xFFFF_FFFF);
        assert_eq!(crc32_table(b"123456789"), PAYLOAD_CRC.check);
        assert_eq!(crc16(b"12345678"), CRC16.checksum(b"12345678"));
        if let Some(c) = crc32_simd(b"123456789") {
            assert_eq!(c, PAYLOAD_CRC.check);
        }
    }
}
