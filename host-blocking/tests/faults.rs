//! End-to-end under faults: packet drops on both sides, corruption,
//! chunking, a silent port. Reads must return exact bytes, uploads must
//! happen exactly once, and nothing may hang, panic or spin.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;
use omv_blocking::{Camera, CameraConfig, Error};
use omv_sim::fault::FaultConfig;

fn faulty(seed: u64, drop: f64, rx_drop: f64, corrupt: f64) -> FaultConfig {
    FaultConfig::default()
        .drop_rate(drop)
        .rx_drop_rate(rx_drop)
        .corrupt_rate(corrupt)
        .chunk_max(700)
        .seed(seed)
}

fn fast(cfg: CameraConfig) -> CameraConfig {
    cfg.timeout(Duration::from_millis(150))
        .retries(6)
        .max_retry(5)
}

// The policy checks that were here with loose `||` bounds on wall-clock
// threads (host drop_rate, faults on both sides, exactly-once exec) are
// exact-outcome tests on virtual time now: host-session/tests/virtual_time.rs
// and the DST (tests/src/dst).

#[test]
fn frames_survive_faults() {
    let log = ScriptLog::default();
    let (_sim, mut cam) = connect(
        standard_sim(log).faults(faulty(21, 0.03, 0.03, 0.01)),
        standard_setup,
        fast(CameraConfig::new("sim").drop_rate(0.02)),
    );
    cam.streaming(true, false, None).unwrap();
    let mut frames = 0;
    assert!(wait_until(&mut cam, 10, |c| {
        if let Ok(Some(f)) = c.read_frame() {
            assert_eq!(f.rgb.pixels.len(), (f.width * f.height * 3) as usize);
            frames += 1;
        }
        frames >= 5
    }));
}

/// CPU time (user + system) of the calling thread, from /proc.
#[cfg(target_os = "linux")]
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = after.split(' ').map(|x| x.parse().unwrap_or(0)).collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the state.
    let ticks = f[11] + f[12];
    Duration::from_millis(ticks * 10) // USER_HZ = 100
}

#[test]
fn silent_port_fails_within_the_timeout_budget_without_spinning() {
    init_log();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hold = std::thread::spawn(move || {
        // Accept and never answer.
        let c = listener.accept();
        std::thread::sleep(Duration::from_secs(3));
        drop(c);
    });
    let mut cam = Camera::tcp(
        &addr,
        CameraConfig::new("unused")
            .timeout(Duration::from_millis(300))
            .max_retry(3),
    );
    #[cfg(target_os = "linux")]
    let cpu0 = cpu_time();
    let t = Instant::now();
    let e = cam.connect().unwrap_err();
    let took = t.elapsed();
    assert!(matches!(e, Error::ResyncFailed { attempts: 3, .. }), "{e}");
    assert!(
        took >= Duration::from_millis(880) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    assert!(!cam.is_connected());
    #[cfg(target_os = "linux")]
    {
        let cpu = cpu_time() - cpu0;
        assert!(
            cpu < Duration::from_millis(200),
            "waiting burnt {cpu:?} of CPU"
        );
    }
    let _ = hold.join();
}

#[test]
fn unreachable_ports_fail_fast_with_their_name() {
    let t = Instant::now();
    let e = Camera::open(CameraConfig::new("/dev/does-not-exist")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(e.to_string().starts_with("/dev/does-not-exist: "), "{e}");
    // Nothing listens on port 1.
    let mut cam = Camera::tcp("127.0.0.1:1", CameraConfig::new("x"));
    let e = cam.connect().unwrap_err();
    assert!(e.to_string().starts_with("127.0.0.1:1: "), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2));
    let e = Camera::tcp("no-such-host.invalid:1", CameraConfig::new("x"))
        .connect()
        .unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    let e = Camera::open(CameraConfig::new("/dev/null").drop_rate(2.0)).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
}

#[test]
fn cam_going_away_mid_session_is_an_error_not_a_hang() {
    let log = ScriptLog::default();
    let (sim, mut cam) = connect(
        standard_sim(log),
        standard_setup,
        CameraConfig::new("sim").timeout(Duration::from_millis(100)),
    );
    // The cam goes away (its thread stops, the link closes).
    drop(sim);
    let t = Instant::now();
    let e = cam.channel_size("bulk").unwrap_err();
    assert!(
        matches!(
            e,
            Error::Io { .. } | Error::ResyncFailed { .. } | Error::Timeout { .. }
        ),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(!cam.is_connected());
}

#[test]
fn a_failed_connect_keeps_a_given_transport_for_another_try() {
    init_log();
    // A link whose cam starts answering only after the first connect failed.
    let (host_end, mut cam_end) = omv_sim::link::duplex();
    let mut cam = Camera::with_transport(
        omv_blocking::sim::LinkTransport::new("late", host_end),
        CameraConfig::new("late")
            .timeout(Duration::from_millis(50))
            .max_retry(1),
    );
    let e = cam.connect().unwrap_err();
    assert!(matches!(e, Error::ResyncFailed { .. }), "{e}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let server = std::thread::spawn(move || {
        let mut sim = omv_sim::cam::SimConfig::new().build().unwrap();
        let clock = omv_sim::serve::MonotonicClock::new();
        let opts = omv_sim::serve::ServeOptions::default();
        let _ = omv_sim::serve::serve(&mut sim, &mut cam_end, &clock, &flag, &opts);
    });
    cam.connect().unwrap();
    assert!(cam.is_connected());
    cam.disconnect();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    server.join().unwrap();
}

/// Wraps a transport and slips random junk bytes between what it reads.
struct Junk<T> {
    inner: T,
    rng: omv_proto::rng::SimRng,
    pending: Vec<u8>,
    injected: usize,
}

impl<T: omv_blocking::Transport> omv_blocking::Transport for Junk<T> {
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(buf)
    }
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> std::io::Result<usize> {
        if self.pending.is_empty() {
            let n = self.inner.read(buf, timeout)?;
            if n == 0 {
                return Ok(0);
            }
            let mut out = Vec::with_capacity(n + 64);
            for &b in &buf[..n] {
                if self.rng.chance(0.000_03) {
                    let k = 1 + self.rng.below(40) as usize;
                    for _ in 0..k {
                        // Bias towards the sync bytes to exercise rescanning.
                        let j = match self.rng.below(4) {
                            0 => 0xAA,
                            1 => 0xD5,
                            _ => self.rng.next_u64() as u8,
                        };
                        out.push(j);
                    }
                    self.injected += k;
                }
                out.push(b);
            }
            self.pending = out;
        }
        let n = self.pending.len().min(buf.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
    fn name(&self) -> &str {
        "junk"
    }
}

#[test]
fn junk_on_the_line_never_corrupts_data_or_panics() {
    init_log();
    let sim =
        omv_blocking::sim::EmbeddedSim::start(standard_sim(ScriptLog::default()), standard_setup)
            .unwrap();
    let junk = Junk {
        inner: sim.take_link().unwrap(),
        rng: omv_proto::rng::SimRng::new(77),
        pending: Vec::new(),
        injected: 0,
    };
    let mut cam = Camera::with_transport(junk, fast(CameraConfig::new("junk")));
    cam.connect().unwrap();
    let id = cam.get_channel_id("bulk").unwrap().unwrap();
    for round in 0..5usize {
        let off = round * 3001;
        let d = cam
            .retry(|c| c.channel_read_at(id, off as u32, 200_000))
            .unwrap();
        assert_eq!(d, pattern(off, 200_000), "round {round}");
    }
    let h = cam.host_stats();
    assert!(h.dropped_bytes > 0, "{h:?}");
}

#[test]
fn a_port_that_only_sends_noise_fails_cleanly() {
    init_log();
    struct Noise(omv_proto::rng::SimRng);
    impl omv_blocking::Transport for Noise {
        fn write_all(&mut self, _: &[u8]) -> std::io::Result<()> {
            Ok(())
        }
        fn read(&mut self, buf: &mut [u8], timeout: Duration) -> std::io::Result<usize> {
            // Noise trickles in: a few bytes per millisecond.
            std::thread::sleep(timeout.min(Duration::from_millis(1)));
            let n = buf.len().min(1 + self.0.below(64) as usize);
            for b in &mut buf[..n] {
                *b = match self.0.below(3) {
                    0 => 0xAA,
                    1 => 0xD5,
                    _ => self.0.next_u64() as u8,
                };
            }
            Ok(n)
        }
        fn name(&self) -> &str {
            "noise"
        }
    }
    let mut cam = Camera::with_transport(
        Noise(omv_proto::rng::SimRng::new(5)),
        CameraConfig::new("noise").timeout(Duration::from_millis(100)),
    );
    let t = Instant::now();
    let e = cam.connect().unwrap_err();
    assert!(matches!(e, Error::ResyncFailed { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2));
}

/// Wraps a transport and never delivers requests with opcode `swallow`.
struct Swallow<T> {
    inner: T,
    swallow: omv_proto::Opcode,
    swallowed: usize,
}

impl<T: omv_blocking::Transport> omv_blocking::Transport for Swallow<T> {
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let h = omv_proto::Header::decode(buf).expect("one packet per write");
        if h.opcode == self.swallow && h.flags == omv_proto::Flags::NONE {
            self.swallowed += 1;
            return Ok(());
        }
        self.inner.write_all(buf)
    }
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> std::io::Result<usize> {
        self.inner.read(buf, timeout)
    }
    fn name(&self) -> &str {
        "swallow"
    }
}

#[test]
fn a_lost_handshake_step_is_reported_with_its_own_opcode() {
    use omv_proto::Opcode;
    init_log();
    for op in [Opcode::PROTO_GET_CAPS, Opcode::PROTO_SET_CAPS] {
        let sim =
            omv_blocking::sim::EmbeddedSim::start(omv_sim::cam::SimConfig::new(), |_| {}).unwrap();
        let t = Swallow {
            inner: sim.take_link().unwrap(),
            swallow: op,
            swallowed: 0,
        };
        let mut cam = Camera::with_transport(
            t,
            // A connect retries by time: the deadline ends it.
            CameraConfig::new("swallow")
                .timeout(Duration::from_millis(60))
                .max_retry(1)
                .deadline(Duration::from_secs(1), Duration::from_secs(20)),
        );
        let e = cam.connect().unwrap_err();
        assert!(
            matches!(e, Error::Timeout { op: got, .. } if got == op),
            "{op}: {e}"
        );
        assert!(
            e.to_string().starts_with(&format!("{op} on channel 0: ")),
            "{e}"
        );
    }
}
