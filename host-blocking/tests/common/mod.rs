//! Shared helpers: a simulated cam on a thread and a connected camera.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use host_blocking::sim::EmbeddedSim;
use host_blocking::{Camera, CameraConfig};
use proto_core::device::DeviceConfig;
use sim_device::board::Board;
use sim_device::cam::{SimCam, SimConfig};
use sim_device::script::ScriptContext;
use sim_device::user::BufferChannel;

pub fn init_log() {
    let env = env_logger::Env::default().default_filter_or("warn");
    let _ = env_logger::Builder::from_env(env).is_test(true).try_init();
}

/// Byte `i` of the sim's pattern channels.
pub fn pattern(offset: usize, n: usize) -> Vec<u8> {
    (offset..offset + n).map(|i| (i % 251) as u8).collect()
}

/// Scripts the cam received, in order.
pub type ScriptLog = Arc<Mutex<Vec<Vec<u8>>>>;

/// A cam whose scripts are Rust closures: every script is recorded; it
/// prints `ran N bytes`, and a script containing `forever` runs until
/// stopped.
pub fn recording_sim(log: ScriptLog) -> SimConfig {
    SimConfig::new().in_process_threaded(move |script: &[u8], ctx: &ScriptContext| {
        log.lock().unwrap().push(script.to_vec());
        ctx.print(&format!("ran {} bytes\n", script.len()));
        if script.windows(7).any(|w| w == b"forever") {
            while !ctx.stop_requested() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    })
}

/// Protocol settings with short retransmission timers, so fault tests run fast.
pub fn quick_device() -> DeviceConfig {
    DeviceConfig {
        rtx_timeout: proto_core::Duration::from_millis(40),
        ..DeviceConfig::default()
    }
}

/// The standard test cam: N6 board (PMU), profiler, a 1 MiB `bulk`
/// channel, a lockable 64 KiB `locky` channel, recorded scripts.
pub fn standard_sim(log: ScriptLog) -> SimConfig {
    recording_sim(log)
        .board(Board::N6)
        .profiler(true)
        .channel("bulk", 1 << 20)
        .device(quick_device())
}

pub fn standard_setup(cam: &mut SimCam) {
    cam.register_channel(
        "locky",
        Box::new(BufferChannel::with_pattern(64 << 10).lockable(true)),
    )
    .expect("register locky");
}

/// A sim served on a thread plus a connected camera.
pub fn connect(
    sim: SimConfig,
    setup: impl FnOnce(&mut SimCam) + Send + 'static,
    cfg: CameraConfig,
) -> (EmbeddedSim, Camera) {
    init_log();
    let sim = EmbeddedSim::start(sim, setup).expect("sim starts");
    let mut cam = Camera::with_transport(sim.take_link().expect("link"), cfg);
    cam.connect().expect("connect");
    (sim, cam)
}

pub fn standard() -> (EmbeddedSim, Camera, ScriptLog) {
    let log = ScriptLog::default();
    let (sim, cam) = connect(
        standard_sim(log.clone()),
        standard_setup,
        CameraConfig::new("sim"),
    );
    (sim, cam, log)
}

/// Waits (blocking on the port) until `cond` holds, up to `secs`.
pub fn wait_until(cam: &mut Camera, secs: u64, mut cond: impl FnMut(&mut Camera) -> bool) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if cond(cam) {
            return true;
        }
        cam.wait_events(Duration::from_millis(20))
            .expect("wait_events");
    }
    cond(cam)
}
