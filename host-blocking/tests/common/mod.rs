//! Shared helpers: a simulated cam on a thread and a connected camera (in
//! memory or over a pseudo-terminal), checks run over both
//! ([`checks`]), the frame-serving cam ([`frames`]), a log capture and a
//! firmware ELF builder.
#![allow(dead_code)]

/// Waits (on the port) until `cond` holds for the camera, up to `secs`
/// seconds; `cond` may await. For the async checks of [`checks`].
macro_rules! wait_until {
    ($cam:expr, $secs:expr, |$c:pat_param| $cond:expr) => {{
        let end = std::time::Instant::now() + std::time::Duration::from_secs($secs);
        loop {
            let done = {
                let $c = &mut *$cam;
                $cond
            };
            if done {
                break true;
            }
            if std::time::Instant::now() >= end {
                break false;
            }
            $cam.wait_events(std::time::Duration::from_millis(20))
                .await
                .expect("wait_events");
        }
    }};
}

pub mod cam;
#[allow(unused_imports)]
pub use cam::block_on;
pub mod checks;
pub mod frames;

use std::cell::RefCell;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use omv_blocking::sim::{EmbeddedSim, LinkTransport};
use omv_blocking::{Camera, CameraConfig, Transport};
use omv_proto::device::DeviceConfig;
use omv_sim::board::Board;
use omv_sim::cam::{SimCam, SimConfig};
use omv_sim::script::ScriptContext;
use omv_sim::user::BufferChannel;

thread_local! {
    /// Messages logged on this thread while capturing, by targets with
    /// the prefix.
    static CAPTURED: RefCell<Option<(&'static str, Vec<String>)>> = const { RefCell::new(None) };
}

/// env_logger (RUST_LOG, default warn) plus the per-thread capture of
/// [`capture_log`].
struct TestLogger {
    inner: env_logger::Logger,
}

impl log::Log for TestLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info || self.inner.enabled(m)
    }
    fn log(&self, r: &log::Record<'_>) {
        if r.level() <= log::Level::Info {
            CAPTURED.with(|c| {
                if let Some((prefix, v)) = c.borrow_mut().as_mut() {
                    if r.target().starts_with(*prefix) {
                        v.push(r.args().to_string());
                    }
                }
            });
        }
        if self.inner.matches(r) {
            self.inner.log(r);
        }
    }
    fn flush(&self) {
        self.inner.flush();
    }
}

pub fn init_log() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let env = env_logger::Env::default().default_filter_or("warn");
        let inner = env_logger::Builder::from_env(env).is_test(true).build();
        let max = inner.filter().max(log::LevelFilter::Info);
        if log::set_logger(Box::leak(Box::new(TestLogger { inner }))).is_ok() {
            log::set_max_level(max);
        }
    });
}

/// Runs `f` and returns what host-blocking logged at INFO level or above
/// on this thread meanwhile.
pub fn capture_log<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
    init_log();
    CAPTURED.with(|c| *c.borrow_mut() = Some(("omv_blocking", Vec::new())));
    let r = f();
    let lines = CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (r, lines.1)
}

/// Awaits `f` and returns what the targets starting with `target` logged
/// at INFO level or above on this thread meanwhile (a current-thread
/// runtime runs the async driver's task here too).
pub async fn capture_log_async<F: std::future::Future>(
    target: &'static str,
    f: F,
) -> (F::Output, Vec<String>) {
    init_log();
    CAPTURED.with(|c| *c.borrow_mut() = Some((target, Vec::new())));
    let r = f.await;
    let lines = CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (r, lines.1)
}

/// Byte `i` of the sim's pattern channels.
pub fn pattern(offset: usize, n: usize) -> Vec<u8> {
    (offset..offset + n).map(|i| (i % 251) as u8).collect()
}

/// Scripts the cam received, in order.
pub type ScriptLog = Arc<Mutex<Vec<Vec<u8>>>>;

/// A cam whose scripts are Rust closures: every script is recorded; it
/// prints `ran N bytes`, and a script containing `forever` runs until
/// stopped. Its stream runs free (frames with no script taking snapshots).
pub fn recording_sim(log: ScriptLog) -> SimConfig {
    SimConfig::new()
        .free_running_frames(true)
        .in_process_threaded(move |script: &[u8], ctx: &ScriptContext| {
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
    DeviceConfig::default().rtx_timeout(omv_proto::Duration::from_millis(40))
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

/// The standard cam served on a pseudo-terminal, and a camera connected to
/// it through the serial port code.
#[cfg(unix)]
pub fn standard_pty() -> (EmbeddedSim, Camera, ScriptLog) {
    standard_pty_with(|c| c)
}

/// [`standard_pty`] with a changed camera configuration.
#[cfg(unix)]
pub fn standard_pty_with(
    cfg: impl FnOnce(CameraConfig) -> CameraConfig,
) -> (EmbeddedSim, Camera, ScriptLog) {
    init_log();
    let log = ScriptLog::default();
    let sim = EmbeddedSim::start_pty(standard_sim(log.clone()), standard_setup).expect("pty sim");
    let path = sim.path().expect("path").display().to_string();
    let cam = Camera::open(cfg(CameraConfig::new(&path))).expect("connect over the pty");
    (sim, cam, log)
}

/// An in-memory link the test keeps a handle to: the camera closing its
/// port does not close the link, so the sim keeps serving (and can be
/// asked what happened) after a `boot`, `reset` or `disconnect`.
#[derive(Clone)]
pub struct KeptLink(Arc<Mutex<LinkTransport>>);

impl Transport for KeptLink {
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.lock().unwrap().write_all(buf)
    }
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> std::io::Result<usize> {
        self.0.lock().unwrap().read(buf, timeout)
    }
    fn name(&self) -> &str {
        "kept-link"
    }
}

/// [`standard`] over a [`KeptLink`]; the link lives as long as the
/// returned handle.
pub fn standard_kept() -> (EmbeddedSim, Camera, KeptLink) {
    init_log();
    let sim = EmbeddedSim::start(standard_sim(ScriptLog::default()), standard_setup).expect("sim");
    let link = KeptLink(Arc::new(Mutex::new(sim.take_link().expect("link"))));
    let mut cam = Camera::with_transport(link.clone(), CameraConfig::new("sim"));
    cam.connect().expect("connect");
    (sim, cam, link)
}

/// Polls `cond` (every 10 ms, up to `secs`) without touching a camera.
pub fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// A firmware ELF with a 4-byte function `f_<address in hex>` at each address.
pub fn elf_with_functions(addrs: impl Iterator<Item = u32>) -> Vec<u8> {
    use object::write::{Object, Symbol, SymbolSection};
    use object::{
        Architecture, BinaryFormat, Endianness, SectionKind, SymbolFlags, SymbolKind, SymbolScope,
    };
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let text = obj.add_section(Vec::new(), b".text".to_vec(), SectionKind::Text);
    obj.append_section_data(text, &[0u8; 16], 16);
    for a in addrs {
        obj.add_symbol(Symbol {
            name: format!("f_{a:x}").into_bytes(),
            value: u64::from(a),
            size: 4,
            kind: SymbolKind::Text,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Section(text),
            flags: SymbolFlags::None,
        });
    }
    obj.write().unwrap()
}
