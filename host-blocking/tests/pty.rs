//! End-to-end over a pseudo-terminal: the host opens the pty's slave as a
//! serial port (through the `serialport` crate), exactly as it opens a USB
//! cam, while sim-device serves a SimCam on the master. The checks shared
//! with the in-memory tests are in `common/checks.rs` and
//! `common/frames.rs`; each test here has its own pty.
#![cfg(unix)]

mod common;

use std::time::Duration;

use common::frames::{check_every_pixel_format, check_malformed_frames, frame_rig_pty};
use common::*;
use omv_blocking::sim::EmbeddedSim;
use omv_blocking::{Camera, CameraConfig};
use omv_proto::frame::PixFormat;
use omv_proto::Status;

fn pty_sim() -> (EmbeddedSim, String, ScriptLog) {
    init_log();
    let log = ScriptLog::default();
    let sim = EmbeddedSim::start_pty(
        standard_sim(log.clone()).channel("big", 4 << 20),
        standard_setup,
    )
    .expect("pty sim");
    let path = sim.path().expect("path").display().to_string();
    (sim, path, log)
}

#[test]
fn every_method_family_over_a_pty() {
    let (sim, path, log) = pty_sim();
    let mut cam = Camera::open(CameraConfig::new(&path)).expect("connect over the pty");
    assert!(cam.is_connected());
    assert_eq!(cam.port_name(), path);
    assert_eq!(cam.version().unwrap().firmware, [5, 0, 0]);
    assert_eq!(
        cam.system_info().unwrap().raw,
        sim.with_cam(|c| c.board().sysinfo).unwrap()
    );
    assert_eq!(cam.memory_stats().unwrap().entries.len(), 2);

    // 4 MiB read, exact.
    let big = cam.channel_read("big", None).unwrap().unwrap();
    assert_eq!(big.len(), 4 << 20);
    assert!(big == pattern(0, 4 << 20));
    // Writes at offsets, read back by id.
    let id = cam.get_channel_id("bulk").unwrap().unwrap();
    cam.channel_write_at(id, 777, &[0x5A; 9000]).unwrap();
    assert_eq!(
        cam.channel_read_at(id, 777, 9000).unwrap(),
        vec![0x5A; 9000]
    );

    // Scripts.
    cam.exec("print('pty')").unwrap();
    let mut out = String::new();
    assert!(wait_until(&mut cam, 5, |c| {
        out.push_str(&c.read_stdout().unwrap().unwrap_or_default());
        out.contains("ran 12 bytes")
    }));
    assert_eq!(log.lock().unwrap().as_slice(), [b"print('pty')".to_vec()]);
    cam.stop().unwrap();

    // Frames.
    cam.streaming(true, false, None).unwrap();
    let mut got = None;
    assert!(wait_until(&mut cam, 5, |c| {
        got = c.read_frame().unwrap();
        got.is_some()
    }));
    assert_eq!(got.unwrap().pixfmt, PixFormat::JPEG);
    cam.streaming(false, false, None).unwrap();

    // Lock guard, BUSY as false. read_frame locked the stream, and the cam
    // keeps one lock timestamp for all channels (PROTOCOL.md section 3):
    // wait out lock_interval first.
    let locky = cam.get_channel_id("locky").unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(15));
    {
        let mut g = cam.lock_channel(locky).unwrap().unwrap();
        assert!(!g.channel_lock(locky).unwrap());
    }
    std::thread::sleep(Duration::from_millis(15));
    assert!(cam.channel_lock(locky).unwrap());
    assert!(cam.channel_unlock(locky).unwrap());

    // Profiler.
    cam.profiler_reset(None).unwrap();
    assert!(wait_until(&mut cam, 3, |c| c
        .read_profile(None)
        .unwrap()
        .is_some()));

    // Status, stats, a NAK.
    assert!(!cam.read_status().unwrap().channels.is_empty());
    assert!(cam.device_stats().unwrap().received > 10);
    let e = cam.channel_ioctl(id, 1234, &[]).unwrap_err();
    assert!(e.is_nak(Status::INVALID));

    // Reset: the port closes; the pty can be opened again.
    cam.reset().unwrap();
    assert!(!cam.is_connected());
    let end = std::time::Instant::now() + Duration::from_secs(3);
    while sim.with_cam(|c| c.stats().reboots).unwrap_or(0) == 0 {
        assert!(std::time::Instant::now() < end, "the cam did not reboot");
        std::thread::sleep(Duration::from_millis(10));
    }
    cam.connect().unwrap();
    assert!(cam.is_connected());
    assert_eq!(
        cam.channel_read("bulk", Some(10)).unwrap().unwrap(),
        pattern(0, 10)
    );
}

#[test]
fn reads_exact_with_drops_over_a_pty() {
    let (_sim, path, _) = pty_sim();
    let mut cam = Camera::open(
        CameraConfig::new(&path)
            .drop_rate(0.03)
            .seed(42)
            .timeout(Duration::from_millis(200))
            .retries(5),
    )
    .expect("connect");
    let id = cam.get_channel_id("big").unwrap().unwrap();
    let d = cam.retry(|c| c.channel_read_at(id, 1000, 300_000)).unwrap();
    assert_eq!(d, pattern(1000, 300_000));
    assert!(cam.session_stats().simulated_drops > 0);
}

#[test]
fn two_hosts_in_turn_on_one_pty() {
    let (_sim, path, _) = pty_sim();
    for _ in 0..3 {
        let mut cam = Camera::open(CameraConfig::new(&path)).expect("connect");
        assert_eq!(
            cam.channel_read("bulk", Some(100)).unwrap().unwrap(),
            pattern(0, 100)
        );
        cam.disconnect();
    }
}

#[test]
fn introspection_and_print_system_info_over_a_pty() {
    let (sim, mut cam, _) = standard_pty();
    block_on(checks::introspection(&sim, &mut cam));
}

#[test]
fn channel_lookup_by_name_and_id_over_a_pty() {
    block_on(checks::channel_lookup(&mut standard_pty().1));
}

#[test]
fn update_channels_over_a_pty() {
    let (sim, mut cam, _) = standard_pty_with(|c| c.events(false));
    block_on(checks::update_channels(&sim, &mut cam));
}

#[test]
fn channel_size_read_write_by_name_over_a_pty() {
    block_on(checks::channel_by_name(&mut standard_pty().1));
}

#[test]
fn by_id_primitives_and_shape_over_a_pty() {
    block_on(checks::by_id_primitives(&mut standard_pty().1));
}

#[test]
fn raw_requests_over_a_pty() {
    block_on(checks::raw_requests(&mut standard_pty().1));
}

#[test]
fn lock_guard_over_a_pty() {
    block_on(checks::lock_guard(&mut standard_pty().1));
}

#[test]
fn resync_over_a_pty() {
    block_on(checks::resync(&mut standard_pty().1));
}

#[test]
fn scripts_event_handler_and_pending_events_over_a_pty() {
    let (_sim, mut cam, log) = standard_pty();
    block_on(checks::scripts_and_events(&mut cam, &log));
}

#[test]
fn streaming_and_frame_ready_over_a_pty() {
    block_on(checks::streaming(&mut standard_pty().1));
}

#[test]
fn channel_registered_event_refreshes_cache_over_a_pty() {
    let (sim, mut cam, _) = standard_pty();
    block_on(checks::channel_registration(&sim, &mut cam));
}

#[test]
fn profiler_over_a_pty() {
    block_on(checks::profiler(&mut standard_pty().1));
}

#[test]
fn capabilities_over_a_pty() {
    block_on(checks::capabilities(&mut standard_pty().1));
}

#[test]
fn poll_and_wait_events_over_a_pty() {
    block_on(checks::poll_and_wait_events(&mut standard_pty().1));
}

#[test]
fn boot_over_a_pty() {
    let (sim, mut cam, _) = standard_pty();
    block_on(checks::boot(&sim, &mut cam));
    // The pty outlives the port: connect again to the rebooted cam.
    cam.connect().unwrap();
    assert_eq!(cam.resync_count(), 2);
    assert_eq!(
        cam.channel_read("bulk", Some(10)).unwrap().unwrap(),
        pattern(0, 10)
    );
}

#[test]
fn every_pixel_format_over_a_pty() {
    check_every_pixel_format(&mut frame_rig_pty());
}

#[test]
fn malformed_frames_over_a_pty() {
    check_malformed_frames(&mut frame_rig_pty());
}

/// Descriptors of this process open on `path`.
#[cfg(target_os = "linux")]
fn open_fds(path: &str) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|p| p.as_os_str() == path)
        .count()
}

#[cfg(target_os = "linux")]
#[test]
fn disconnect_and_drop_close_the_serial_port() {
    let (sim, mut cam, _) = standard_pty();
    let path = sim.path().unwrap().display().to_string();
    // The camera holds the only descriptor of the slave (the sim holds the
    // master, so that it sees the host close the port).
    assert_eq!(open_fds(&path), 1);
    cam.disconnect();
    assert_eq!(open_fds(&path), 0, "disconnect closed the port");
    assert!(matches!(
        cam.poll_events(),
        Err(omv_blocking::Error::NotConnected)
    ));
    cam.connect().unwrap();
    assert_eq!(open_fds(&path), 1);
    drop(cam);
    assert_eq!(open_fds(&path), 0, "drop closed the port");
    // The cam serves the next host.
    let mut again = Camera::open(CameraConfig::new(&path)).unwrap();
    assert_eq!(again.channel_size("bulk").unwrap(), 1 << 20);
}

#[test]
fn a_port_reopen_unsticks_a_cam_still_sending_an_abandoned_read() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    init_log();
    // The firmware's send loop: a read the host gave up on goes on, piece
    // by piece, through SYNCs, until the port closes.
    let device = quick_device().read_piece(Some(512));
    let sim = EmbeddedSim::start_pty(
        standard_sim(ScriptLog::default())
            .device(device)
            .abandoned_reads(true),
        standard_setup,
    )
    .expect("pty sim");
    let path = sim.path().expect("path").display().to_string();
    let mut cam = Camera::open(CameraConfig::new(&path).timeout(Duration::from_millis(300)))
        .expect("connect");
    let id = cam.get_channel_id("bulk").unwrap().unwrap();
    // Abandon a 1 MiB read after its first 64 KiB.
    let cancel = Arc::new(AtomicBool::new(false));
    let c = cancel.clone();
    cam.set_cancel_flag(cancel);
    cam.set_progress_handler(move |p| {
        if p.done >= 64 << 10 {
            c.store(true, Ordering::SeqCst);
        }
    });
    let t0 = std::time::Instant::now();
    let r = cam.channel_read_at(id, 0, 1 << 20);
    assert!(
        matches!(r, Err(omv_blocking::Error::Cancelled { .. })),
        "{r:?}"
    );
    cam.clear_cancel_flag();
    let before = cam.session_stats();
    // The next operation: SYNC is ignored while the cam sends the rest;
    // the session asks for a reopen, which ends the old read.
    let d = cam.channel_read_at(id, 1000, 5000).unwrap_or_else(|e| {
        let dbg = sim
            .with_cam(|c| {
                let e = c.endpoint();
                format!(
                    "{:?} active {} deferred_dropped {} caps {:?}",
                    e.stats(),
                    e.transport_active(),
                    e.deferred_dropped(),
                    e.caps()
                )
            })
            .unwrap();
        panic!("{e}: {dbg} host {:?}", cam.host_stats())
    });
    let took = t0.elapsed();
    assert_eq!(d, pattern(1000, 5000));
    let after = cam.session_stats();
    assert_eq!(after.reopens - before.reopens, 1, "{after:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    eprintln!("abandoned read unstuck by a reopen after {took:?}: {after:?}");
    // The link is sound afterwards.
    assert_eq!(cam.channel_size("bulk").unwrap(), 1 << 20);
}
