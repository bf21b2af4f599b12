//! Regression tests for bugs the deterministic simulation found, each
//! reduced to a plain host/cam exchange.

use proto_core::caps::CapFlags;
use proto_core::device::{DeviceConfig, DeviceEndpoint};
use proto_core::host::{Command, Completion, HostConfig, HostEndpoint, Reply};
use proto_core::Instant;

/// Moves packets both ways (jumping to the next timer when idle) until the
/// host completes something.
fn run(host: &mut HostEndpoint, cam: &mut DeviceEndpoint, now: &mut Instant) -> Completion {
    for _ in 0..100_000 {
        if let Some(c) = host.poll_completion() {
            return c;
        }
        let mut moved = false;
        while let Some(b) = host.poll_transmit() {
            cam.handle_input(*now, &b);
            moved = true;
        }
        while let Some(b) = cam.poll_transmit(*now) {
            host.handle_input(*now, &b);
            moved = true;
        }
        if !moved {
            let next = [host.poll_timeout(), cam.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .expect("something pending");
            *now = (*now).max(next);
            host.handle_timeout(*now);
            cam.handle_timeout(*now);
        }
    }
    panic!("no completion");
}

/// DST seeds 1, 8, 11: a cam announcing fewer capabilities than the host
/// wants masks SET_CAPS with what it supports, but the host applied its
/// whole wish list, so the two sides disagreed (e.g. the host checking
/// CRCs the cam no longer sent) and the link was dead after connect.
#[test]
fn host_applies_only_caps_the_cam_announced() {
    let mut cam = DeviceEndpoint::new(DeviceConfig {
        supported: CapFlags(CapFlags::SEQ.0 | CapFlags::ACK.0),
        ..DeviceConfig::default()
    });
    let mut host = HostEndpoint::new(HostConfig::default());
    let mut now = Instant::ZERO;
    host.connect(now);
    let Completion::Connected(Ok(caps)) = run(&mut host, &mut cam, &mut now) else {
        panic!("connect failed");
    };
    assert_eq!(caps.flags, CapFlags(CapFlags::SEQ.0 | CapFlags::ACK.0));
    assert_eq!(host.caps(), cam.caps());
    // And the link works.
    host.request(now, &Command::system(proto_core::Opcode::PROTO_VERSION))
        .unwrap();
    assert!(matches!(
        run(&mut host, &mut cam, &mut now),
        Completion::Request(Ok(Reply::Data(_)))
    ));
}
