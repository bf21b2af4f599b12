//! End-to-end: every `Camera` method against sim-device's SimCam, served on
//! a thread over an in-memory link. The checks shared with the
//! pseudo-terminal tests (`tests/pty.rs`) are in `common/checks.rs`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use omv_blocking::{Camera, CameraConfig, Error};
use omv_proto::host::Reply;
use omv_proto::{ChannelId, Opcode};
use omv_sim::board::Board;
use omv_sim::cam::SimConfig;

#[test]
fn connect_and_introspection() {
    let (sim, mut cam, _) = standard();
    block_on(checks::introspection(&sim, &mut cam));
}

#[test]
fn channel_lookup_by_name_and_id() {
    block_on(checks::channel_lookup(&mut standard().1));
}

#[test]
fn update_channels_refreshes_a_stale_cache() {
    let (sim, mut cam) = connect(
        standard_sim(ScriptLog::default()),
        standard_setup,
        CameraConfig::new("sim").events(false),
    );
    block_on(checks::update_channels(&sim, &mut cam));
}

#[test]
fn channel_read_write_by_name() {
    block_on(checks::channel_by_name(&mut standard().1));
}

#[test]
fn by_id_primitives_with_offsets() {
    block_on(checks::by_id_primitives(&mut standard().1));
}

#[test]
fn raw_requests() {
    block_on(checks::raw_requests(&mut standard().1));
}

#[test]
fn retry_helper() {
    let (_sim, mut cam, _) = standard();
    // A custom command with the built-in retry.
    let r = cam
        .retry(|c| c.request(Opcode::PROTO_STATS, ChannelId::SYSTEM, &[]))
        .unwrap();
    assert!(matches!(r, Some(Reply::Data(ref d)) if d.len() == 32));
    // Retryable failures are retried `retries` times (default 1)...
    let mut calls = 0;
    let r: Result<(), Error> = cam.retry(|_| {
        calls += 1;
        Err(Error::Timeout {
            op: Opcode::SYS_INFO,
            channel: 0,
            offset: None,
            timeout: Duration::from_secs(1),
        })
    });
    assert!(r.is_err());
    assert_eq!(calls, 2);
    // ... others are not ...
    let mut calls = 0;
    let _ = cam.retry(|_| -> Result<(), Error> {
        calls += 1;
        Err(Error::InvalidArgument("x".into()))
    });
    assert_eq!(calls, 1);
    // ... and a nested retry does not multiply attempts.
    let mut calls = 0;
    let _ = cam.retry(|c| {
        c.retry(|_| -> Result<(), Error> {
            calls += 1;
            Err(Error::Checksum {
                op: Opcode::SYS_INFO,
            })
        })
    });
    assert_eq!(calls, 2);
    // Success after one failure.
    let mut calls = 0;
    let v = cam
        .retry(|c| {
            calls += 1;
            if calls == 1 {
                return Err(Error::Sequence {
                    op: Opcode::SYS_INFO,
                });
            }
            c.channel_size("bulk")
        })
        .unwrap();
    assert_eq!(v, 1 << 20);
}

#[test]
fn lock_guard_unlocks_on_drop() {
    block_on(checks::lock_guard(&mut standard().1));
}

#[test]
fn resync_releases_locks() {
    block_on(checks::resync(&mut standard().1));
}

#[test]
fn scripts_exec_stop_stdout_and_events() {
    let (_sim, mut cam, log) = standard();
    block_on(checks::scripts_and_events(&mut cam, &log));
}

#[test]
fn utf8_output_split_across_reads() {
    // "€" is cut in two by a pause in the output: the text API must still
    // deliver it whole.
    let (_sim, mut cam) = connect(
        SimConfig::new().in_process_threaded(|_s: &[u8], ctx: &omv_sim::script::ScriptContext| {
            let euro = "\u{20ac}".as_bytes();
            let out = ctx.output().clone();
            out.write(&[b"h\xc3\xa9" as &[u8], &euro[..1]].concat());
            std::thread::sleep(Duration::from_millis(300));
            out.write(&[&euro[1..], b"!"].concat());
            // Keep running: a script's end soft-resets the cam's protocol,
            // and this host does not resync on SOFT_REBOOT yet.
            while !ctx.stop_requested() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }),
        |_| {},
        CameraConfig::new("sim"),
    );
    cam.exec("x").unwrap();
    let mut text = String::new();
    let mut reads = 0;
    assert!(wait_until(&mut cam, 5, |c| {
        if let Some(t) = c.read_stdout().unwrap() {
            reads += 1;
            text.push_str(&t);
        }
        text.ends_with('!')
    }));
    assert_eq!(text, "h\u{e9}\u{20ac}!");
    assert!(reads >= 2, "the output came in {reads} reads");
}

#[test]
fn streaming_and_frames() {
    let (_sim, mut cam, _) = standard();
    block_on(checks::streaming(&mut cam));
    let stream = cam.get_channel_id("stream").unwrap().unwrap();
    let _ = cam.channel_ioctl_u32(stream, omv_proto::ioctl::STREAM_SOURCE, &[0]);
}

#[test]
fn channel_registered_event_refreshes_cache() {
    let (sim, mut cam, _) = standard();
    block_on(checks::channel_registration(&sim, &mut cam));
}

#[test]
fn profiler() {
    block_on(checks::profiler(&mut standard().1));
}

#[test]
fn no_profile_channel_is_a_no_op() {
    let (_sim, mut cam) = connect(SimConfig::new(), |_| {}, CameraConfig::new("sim"));
    cam.profiler_reset(None).unwrap();
    cam.profiler_mode(true).unwrap();
    cam.profiler_event(1, 2).unwrap();
    assert_eq!(cam.read_profile(None).unwrap(), None);
}

#[test]
fn capabilities_renegotiated() {
    block_on(checks::capabilities(&mut standard().1));
}

#[test]
fn poll_and_wait_events() {
    block_on(checks::poll_and_wait_events(&mut standard().1));
}

#[test]
fn events_off_still_works() {
    let log = ScriptLog::default();
    let (_sim, mut cam) = connect(
        standard_sim(log.clone()),
        standard_setup,
        CameraConfig::new("sim").events(false),
    );
    cam.streaming(true, false, None).unwrap();
    let mut got = false;
    for _ in 0..100 {
        if cam.read_frame().unwrap().is_some() {
            got = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(got);
    assert_eq!(cam.event_state().total, 0);
}

#[test]
fn reset_and_boot_close_the_port() {
    let (_sim, mut cam, _) = standard();
    cam.reset().unwrap();
    assert!(!cam.is_connected());
    assert!(matches!(cam.version(), Err(Error::NotConnected)));
    assert!(matches!(cam.channel_size("bulk"), Err(Error::NotConnected)));
    // The in-memory transport cannot be reopened.
    let e = cam.connect().unwrap_err();
    assert!(e.to_string().contains("cannot be reopened"), "{e}");

    // SYS_BOOT as a raw request: no answer, the port closes, the cam reboots.
    let (sim, mut cam, _link) = standard_kept();
    assert_eq!(
        cam.request(Opcode::SYS_BOOT, ChannelId::SYSTEM, &[])
            .unwrap(),
        None
    );
    assert!(!cam.is_connected());
    assert!(
        eventually(3, || sim.with_cam(|c| c.stats().reboots) == Some(1)),
        "the cam did not reboot"
    );
}

#[test]
fn boot_method() {
    // The kept link outlives the port, so the sim can still be asked.
    let (sim, mut cam, _link) = standard_kept();
    block_on(checks::boot(&sim, &mut cam));
}

#[test]
fn disconnect_and_drop_close_the_link() {
    let (sim, mut cam, _) = standard();
    cam.disconnect();
    assert!(!cam.is_connected());
    assert!(matches!(cam.device_stats(), Err(Error::NotConnected)));
    assert!(matches!(cam.poll_events(), Err(Error::NotConnected)));
    // The cam's serving loop sees the link closed and ends.
    let end = Instant::now() + Duration::from_secs(3);
    while sim.with_cam(|_| ()).is_some() {
        assert!(
            Instant::now() < end,
            "the sim still serves after disconnect"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(cam);

    let (sim, cam, _) = standard();
    drop(cam);
    let end = Instant::now() + Duration::from_secs(3);
    while sim.with_cam(|_| ()).is_some() {
        assert!(Instant::now() < end, "the sim still serves after drop");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn small_payload_and_no_crc_or_seq() {
    let log = ScriptLog::default();
    let (_sim, mut cam) = connect(
        standard_sim(log),
        standard_setup,
        CameraConfig::new("sim")
            .crc(false)
            .seq(false)
            .max_payload(50),
    );
    assert_eq!(cam.caps().max_payload, 50);
    assert!(!cam.caps().flags.crc());
    assert_eq!(
        cam.channel_read("bulk", Some(5000)).unwrap().unwrap(),
        pattern(0, 5000)
    );
    assert_eq!(cam.channels().unwrap().len(), 7);
    cam.exec("print(1)").unwrap();
}

#[test]
fn board_without_pmu() {
    let (_sim, mut cam) = connect(
        SimConfig::new().board(Board::H7Plus).profiler(true),
        |_| {},
        CameraConfig::new("sim"),
    );
    assert!(!cam.system_info().unwrap().pmu_present);
    cam.profiler_reset(None).unwrap();
    cam.profiler_event(0, 1).unwrap(); // no-op without a PMU
    let mut recs = None;
    assert!(wait_until(&mut cam, 3, |c| {
        recs = c.read_profile(None).unwrap();
        recs.is_some()
    }));
    let recs = recs.unwrap();
    assert!(recs.iter().all(|r| r.record.events.is_empty()));
}

#[test]
fn camera_is_debug_and_config_is_kept() {
    let (_sim, cam, _) = standard();
    let d = format!("{cam:?}");
    assert!(d.contains("connected: true"), "{d}");
    assert_eq!(cam.config().retries, 1);
    assert_eq!(cam.port_name(), "embedded-sim");
    let _: &Camera = &cam;
}

#[test]
fn a_cancel_check_is_polled_and_ends_a_slow_read() {
    use omv_sim::fault::FaultConfig;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    let slow = FaultConfig::default().latency(omv_proto::Duration::from_millis(50));
    let (_sim, mut cam) = connect(
        standard_sim(ScriptLog::default()).faults(slow),
        standard_setup,
        CameraConfig::new("sim"),
    );
    let id = cam.get_channel_id("bulk").unwrap().unwrap();
    // A 1 MiB read takes over 25 s at 50 ms a packet; the check says
    // "cancel" from its fourth call on.
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    cam.set_cancel_check(move || c.fetch_add(1, Ordering::SeqCst) >= 3);
    let t0 = Instant::now();
    let r = cam.channel_read_at(id, 0, 1 << 20);
    assert!(matches!(r, Err(Error::Cancelled { .. })), "{r:?}");
    assert!(calls.load(Ordering::SeqCst) >= 4);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    cam.clear_cancel_flag();
    assert_eq!(cam.channel_read_at(id, 0, 16).unwrap(), pattern(0, 16));
}
