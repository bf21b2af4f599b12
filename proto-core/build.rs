//! Sets `cfg(simd)` when the `simd-crc` feature is on and the target is one
//! where `crc-fast` has a carry-less-multiply CRC (x86, x86_64, aarch64).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(simd)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let feature = std::env::var_os("CARGO_FEATURE_SIMD_CRC").is_some();
    if feature && matches!(arch.as_str(), "x86" | "x86_64" | "aarch64") {
        println!("cargo::rustc-cfg=simd");
    }
}
