//! `sim_schedule`: see `omv_fuzz::schedule`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|scenario: omv_fuzz::schedule::Scenario| {
    omv_fuzz::schedule::check(scenario);
});
