//! Replays one input through a fuzz target's check, without libFuzzer:
//!
//! `cargo run --release --example replay -- TARGET FILE`
//!
//! (`OMV_FUZZ_TRACE=1` prints `sim_schedule`'s operation trace; `dst`
//! prints the DST's log.) Exits non-zero, with the check's panic, when the
//! input fails its check.

use std::process::ExitCode;

const TARGETS: &str =
    "framer_host framer_device decoders device_endpoint host_endpoint sim_schedule dst";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, file] = args.as_slice() else {
        eprintln!("usage: replay TARGET FILE   (TARGET: {TARGETS})");
        return ExitCode::from(2);
    };
    let data = match std::fs::read(file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("replay: cannot read {file}: {e}");
            return ExitCode::from(2);
        }
    };
    match target.as_str() {
        "framer_host" => omv_fuzz::framer::check(omv_proto::framer::Role::Host, &data),
        "framer_device" => omv_fuzz::framer::check(omv_proto::framer::Role::Device, &data),
        "decoders" => omv_fuzz::decoders::check(&data),
        "device_endpoint" => omv_fuzz::device::check(&data),
        "host_endpoint" => omv_fuzz::host::check(&data),
        "sim_schedule" => {
            let u = arbitrary::Unstructured::new(&data);
            let s =
                match <omv_fuzz::schedule::Scenario as arbitrary::Arbitrary>::arbitrary_take_rest(u)
                {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("replay: {file} is not a sim_schedule scenario: {e}");
                        return ExitCode::from(2);
                    }
                };
            omv_fuzz::schedule::check(s);
        }
        "dst" => omv_fuzz::dst::check(&data),
        other => {
            eprintln!("replay: unknown target {other} (one of: {TARGETS})");
            return ExitCode::from(2);
        }
    }
    println!("replay: {target} {file}: check passed");
    ExitCode::SUCCESS
}
