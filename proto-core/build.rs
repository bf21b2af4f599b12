//! Sets `cfg(simd)` when the `simd-crc` and `std` features are on (run-time
//! CPU detection needs std) and the target has a carry-less-multiply CRC:
//! our own on x86 and x86_64, `crc-fast`'s on aarch64.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(simd)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let feature = std::env::var_os("CARGO_FEATURE_SIMD_CRC").is_some()
        && std::env::var_os("CARGO_FEATURE_STD").is_some();
    if feature && matches!(arch.as_str(), "x86" | "x86_64" | "aarch64") {
        println!("cargo::rustc-cfg=simd");
    }
}
