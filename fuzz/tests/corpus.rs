//! Replays the committed corpus (and crash reproducers under `regressions/`)
//! through every target's check under plain `cargo test`: no libFuzzer,
//! no nightly toolchain needed.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v = Vec::new();
    for dir in [
        root.join("corpus").join(target),
        root.join("regressions").join(target),
    ] {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            v.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    v.sort();
    v
}

fn replay(target: &str, f: impl Fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no corpus for {target}");
    for p in files {
        let data = std::fs::read(&p).unwrap();
        eprintln!("{target}: {}", p.display());
        f(&data);
    }
}

#[test]
fn framer_host() {
    replay("framer_host", |d| {
        omv_fuzz::framer::check(omv_proto::framer::Role::Host, d)
    });
}

#[test]
fn framer_device() {
    replay("framer_device", |d| {
        omv_fuzz::framer::check(omv_proto::framer::Role::Device, d)
    });
}

#[test]
fn decoders() {
    replay("decoders", omv_fuzz::decoders::check);
}

#[test]
fn device_endpoint() {
    replay("device_endpoint", omv_fuzz::device::check);
}

#[test]
fn host_endpoint() {
    replay("host_endpoint", omv_fuzz::host::check);
}

#[test]
fn sim_schedule() {
    replay("sim_schedule", |d| {
        // A committed input that no longer decodes (e.g. after a change to
        // `Scenario`) replays nothing: fail rather than skip it.
        let u = arbitrary::Unstructured::new(d);
        let s = <omv_fuzz::schedule::Scenario as arbitrary::Arbitrary>::arbitrary_take_rest(u)
            .unwrap_or_else(|e| panic!("not a sim_schedule scenario: {e}"));
        omv_fuzz::schedule::check(s);
    });
}

#[test]
fn dst() {
    replay("dst", omv_fuzz::dst::check);
}

/// The DST's byte decoder: an empty input is a complete run too.
#[test]
fn dst_empty_input() {
    omv_fuzz::dst::check(&[]);
}
