//! `dst`: see `omv_fuzz::dst`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    omv_fuzz::dst::check(data);
});
