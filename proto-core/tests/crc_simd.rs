//! The carry-less-multiply CRC-32 gives the table's values on every length
//! and alignment (where this CPU has one; elsewhere it must say so), and on
//! arbitrary data (proptest).

use omv_proto::crc::{
    crc32, crc32_extend, crc32_impl, crc32_simd, crc32_table, set_crc32_impl, Crc32Impl,
    SIMD_MIN_LEN,
};
use omv_proto::rng::SimRng;

fn simd_expected() -> bool {
    #[cfg(all(feature = "simd-crc", target_arch = "x86_64"))]
    return std::arch::is_x86_feature_detected!("pclmulqdq")
        && std::arch::is_x86_feature_detected!("sse4.1");
    #[allow(unreachable_code)]
    false
}

#[test]
fn simd_matches_table_on_random_lengths_and_alignments() {
    let mut rng = SimRng::new(0x5eed_c0de);
    let mut buf = vec![0u8; 3 * 8192];
    for b in buf.iter_mut() {
        *b = rng.next_u64() as u8;
    }
    if crc32_simd(b"").is_none() {
        assert!(!simd_expected(), "this CPU has carry-less multiply");
        return;
    }
    // Every length up to 300 at every alignment mod 64, then random spans.
    for len in 0..300 {
        for start in 0..64 {
            let d = &buf[start..start + len];
            assert_eq!(crc32_simd(d), Some(crc32_table(d)), "len {len} at {start}");
        }
    }
    for _ in 0..5000 {
        let len = rng.below(8200) as usize;
        let start = rng.below((buf.len() - len) as u64 + 1) as usize;
        let d = &buf[start..start + len];
        assert_eq!(crc32_simd(d), Some(crc32_table(d)), "len {len} at {start}");
    }
    // All zeros and all ones, where a folding error would show first.
    for fill in [0u8, 0xff] {
        let d = vec![fill; 4082];
        assert_eq!(crc32_simd(&d), Some(crc32_table(&d)));
    }
}

#[test]
fn the_choice_of_implementation_switches_crc32() {
    let d = b"123456789";
    assert!(set_crc32_impl(Crc32Impl::Table));
    assert_eq!(crc32_impl(), Crc32Impl::Table);
    assert_eq!(crc32(d), 0x41B4_03D3);
    let simd = set_crc32_impl(Crc32Impl::Simd);
    assert_eq!(simd, crc32_simd(d).is_some());
    assert_eq!(simd, crc32_impl() == Crc32Impl::Simd);
    assert_eq!(crc32(d), 0x41B4_03D3);
    // Above and below the length where crc32 starts using the SIMD path.
    let long: Vec<u8> = (0..4082u32).map(|i| (i * 7) as u8).collect();
    for len in [SIMD_MIN_LEN - 1, SIMD_MIN_LEN, 4082] {
        assert_eq!(crc32(&long[..len]), crc32_table(&long[..len]), "len {len}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// Arbitrary bytes of any length up to 20000, at any offset into them.
    #[test]
    fn simd_matches_table_on_arbitrary_data(
        data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20000),
        skip in 0usize..64,
    ) {
        let d = &data[skip.min(data.len())..];
        if let Some(c) = crc32_simd(d) {
            proptest::prop_assert_eq!(c, crc32_table(d));
        }
        proptest::prop_assert_eq!(crc32(d), crc32_table(d));
        // The copy made with the CRC, after bytes already there.
        let mut out = data[..skip.min(data.len())].to_vec();
        proptest::prop_assert_eq!(crc32_extend(&mut out, d), crc32_table(d));
        proptest::prop_assert_eq!(&out[..], &data[..]);
    }
}
