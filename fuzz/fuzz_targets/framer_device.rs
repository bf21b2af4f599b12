//! `framer_device`: see the documentation of the check it calls.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    omv_fuzz::framer::check(omv_proto::framer::Role::Device, data);
});
