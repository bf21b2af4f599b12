//! The shared Camera checks (host-blocking/tests/common/checks.rs, one
//! list for both drivers) over a pseudo-terminal, TCP and UDP: omv-async
//! on all three, omv-blocking on TCP and UDP (its pty run is
//! host-blocking/tests/pty.rs), clean and with seeded faults (both drivers
//! on all three links), and over UDP 1 MiB reads through seeded datagram
//! loss with ACKs off and on.

#[path = "../../host-blocking/tests/common/mod.rs"]
mod common;

use common::*;
use omv_blocking::sim::EmbeddedSim;
use omv_blocking::CameraConfig;
use omv_sim::cam::SimConfig;
use omv_sim::fault::FaultConfig;
use omv_sim::udp::{UdpTransport as CamUdp, DEFAULT_UDP_MAX_PAYLOAD};

#[derive(Clone, Copy)]
enum Link {
    Pty,
    Tcp,
    Udp,
}

/// The standard cam (with `faults`) served on `link`, and the address or
/// path a host opens.
fn serve(link: Link, faults: FaultConfig, log: &ScriptLog) -> (EmbeddedSim, String) {
    init_log();
    let sim = standard_sim(log.clone()).faults(faults);
    match link {
        Link::Pty => {
            let s = EmbeddedSim::start_pty(sim, standard_setup).expect("pty sim");
            let path = s.path().expect("path").display().to_string();
            (s, path)
        }
        Link::Tcp => {
            let s = EmbeddedSim::start_tcp(sim, standard_setup, "127.0.0.1:0").expect("tcp sim");
            let addr = s.tcp_addr().expect("addr").to_string();
            (s, addr)
        }
        Link::Udp => {
            let udp = CamUdp::bind("127.0.0.1:0").expect("bind");
            let addr = udp.local_addr().expect("addr").to_string();
            let sim: SimConfig = sim.max_payload(DEFAULT_UDP_MAX_PAYLOAD);
            let s = EmbeddedSim::serve_on(sim, standard_setup, udp).expect("udp sim");
            (s, addr)
        }
    }
}

fn open_blocking(link: Link, at: &str, cfg: CameraConfig) -> omv_blocking::Camera {
    let mut cam = match link {
        Link::Pty => omv_blocking::Camera::new(cfg.port(at)),
        Link::Tcp => omv_blocking::Camera::tcp(at, cfg),
        Link::Udp => omv_blocking::Camera::udp(at, cfg),
    };
    cam.connect().expect("blocking connect");
    cam
}

async fn open_async(link: Link, at: &str, cfg: CameraConfig) -> omv_async::Camera {
    let cam = match link {
        Link::Pty => omv_async::Camera::new(cfg.port(at)),
        Link::Tcp => omv_async::Camera::tcp(at, cfg),
        Link::Udp => omv_async::Camera::udp(at, cfg),
    };
    cam.connect().await.expect("async connect");
    cam
}

fn clean() -> FaultConfig {
    FaultConfig::default()
}

/// Losses and corruption on both directions, chunked writes.
fn lossy() -> FaultConfig {
    FaultConfig::default()
        .drop_rate(0.03)
        .rx_drop_rate(0.03)
        .corrupt_rate(0.02)
        .chunk_max(700)
        .seed(11)
}

/// Only packets the cam receives are lost.
fn rx_lossy() -> FaultConfig {
    FaultConfig::default().rx_drop_rate(0.08).seed(5)
}

/// What a UDP link does to datagrams: some are lost, each way (seeded).
fn datagram_loss() -> FaultConfig {
    FaultConfig::default()
        .drop_rate(0.05)
        .rx_drop_rate(0.05)
        .seed(23)
}

/// The cam's fault injector did inject faults (the check was not clean).
fn assert_faulted(sim: &EmbeddedSim) {
    let f = sim.with_cam(|c| c.fault_stats()).expect("fault stats");
    assert!(f.total() > 0, "{f:?}");
}

/// Short per-packet timeouts so that lost packets cost little.
fn fast(c: CameraConfig) -> CameraConfig {
    c.timeout(std::time::Duration::from_millis(150))
        .max_retry(5)
}

/// One test per driver (`blocking`, `asynchronous`) running `check` on the
/// cam served on `link` with `faults`, the camera built from `cfg`.
macro_rules! both {
    ($name:ident, [$($drv:ident),+], $link:expr, $faults:expr, $cfg:expr,
     |$sim:ident, $cam:ident, $log:ident| $check:expr) => {
        mod $name {
            use super::*;
            $(
                #[test]
                #[allow(unused_variables)]
                fn $drv() {
                    let $log = ScriptLog::default();
                    let (sim, at) = serve($link, $faults, &$log);
                    let $sim = &sim;
                    block_on(async {
                        let mut cam = both!(@open $drv, $link, &at, $cfg);
                        let $cam = &mut cam;
                        $check.await;
                    });
                }
            )+
        }
    };
    (@open blocking, $link:expr, $at:expr, $cfg:expr) => { open_blocking($link, $at, $cfg) };
    (@open asynchronous, $link:expr, $at:expr, $cfg:expr) => { open_async($link, $at, $cfg).await };
}

/// The clean checks every link passes, for the drivers listed.
macro_rules! link_checks {
    ($m:ident, $link:expr, [$($drv:ident),+]) => {
        mod $m {
            use super::*;
            both!(introspection_udp_aware, [$($drv),+], $link, clean(), CameraConfig::new("x"),
                |sim, cam, log| async {
                    if matches!($link, Link::Udp) {
                        // One datagram per packet: the cam offers 1400.
                        assert_eq!(cam.caps().max_payload, DEFAULT_UDP_MAX_PAYLOAD);
                    } else {
                        checks::introspection(sim, cam).await;
                    }
                });
            both!(channel_lookup, [$($drv),+], $link, clean(), CameraConfig::new("x"),
                |sim, cam, log| checks::channel_lookup(cam));
            both!(update_channels, [$($drv),+], $link, clean(), CameraConfig::new("x").events(false),
                |sim, cam, log| checks::update_channels(sim, cam));
            both!(channel_by_name, [$($drv),+], $link, clean(), CameraConfig::new("x"),
                |sim, cam, log| checks::channel_by_name(cam));
            both!(by_id_primitives, [$($drv),+], $link, clean(), CameraConfig::new("x"),
                |sim, cam, log| checks::by_id_primitives(cam));
            both!(lock_guard, [$($drv),+], $link, clean(), CameraConfig::new("x"),
                |sim, cam, log| checks::lock_guard(cam));
            both!(resync, [$($drv),+], $link, clean(), CameraConfig::new("x"),
                |sim, cam, log| checks::resync(cam));
            both!(scripts_and_events, [$($drv),+], $link, clean(), CameraConfig::new("x"),
                |sim, cam, log| checks::scripts_and_events(cam, &log));
            both!(channel_registration, [$($drv),+], $link, clean(), CameraConfig::new("x"),
                |sim, cam, log| checks::channel_registration(sim, cam));
            both!(profiler, [$($drv),+], $link, clean(), CameraConfig::new("x"),
                |sim, cam, log| checks::profiler(cam));
            both!(poll_and_wait_events, [$($drv),+], $link, clean(), CameraConfig::new("x"),
                |sim, cam, log| checks::poll_and_wait_events(cam));
        }
    };
}

/// The checks with seeded faults, for the drivers listed.
macro_rules! fault_checks {
    ($m:ident, $link:expr, [$($drv:ident),+]) => {
        mod $m {
            use super::*;
            both!(faulty_transfers, [$($drv),+], $link, lossy(), fast(CameraConfig::new("x")),
                |sim, cam, log| async {
                    checks::faulty_transfers(cam).await;
                    assert_faulted(sim);
                });
            both!(exec_exactly_once, [$($drv),+], $link, rx_lossy(), fast(CameraConfig::new("x")),
                |sim, cam, log| async {
                    checks::exec_exactly_once(cam, &log).await;
                    assert_faulted(sim);
                });
        }
    };
}

/// 1 MiB reads through seeded datagram loss, ACKs off (the firmware's
/// network example) and on, for the drivers listed (`Camera::udp`: reads
/// with ACKs off asked for 64 KiB at a time).
macro_rules! datagram_checks {
    ($m:ident, $link:expr, [$($drv:ident),+]) => {
        mod $m {
            use super::*;
            both!(acks_off_1mib_read, [$($drv),+], $link, datagram_loss(),
                fast(CameraConfig::new("x")).ack(false),
                |sim, cam, log| async {
                    checks::lossy_datagram_read(cam, false).await;
                    assert_faulted(sim);
                });
            both!(acks_on_1mib_read, [$($drv),+], $link, datagram_loss(),
                fast(CameraConfig::new("x")),
                |sim, cam, log| async {
                    checks::lossy_datagram_read(cam, true).await;
                    assert_faulted(sim);
                });
        }
    };
}

/// Raw requests (one of 5000 bytes refused for max_payload), frames of
/// 320x240 JPEG, capabilities up to the cam's largest payload (the N6's
/// 8178 on a stream link, one datagram's 1400 over UDP), boot.
macro_rules! stream_checks {
    ($m:ident, $link:expr, [$($drv:ident),+]) => {
        mod $m {
            use super::*;
            both!(raw_requests, [$($drv),+], $link, clean(), CameraConfig::new("x"),
                |sim, cam, log| checks::raw_requests(cam));
            both!(streaming, [$($drv),+], $link, clean(), CameraConfig::new("x"),
                |sim, cam, log| checks::streaming(cam));
            both!(capabilities, [$($drv),+], $link, clean(), CameraConfig::new("x"),
                |sim, cam, log| async {
                    let largest = match $link {
                        Link::Udp => DEFAULT_UDP_MAX_PAYLOAD,
                        _ => 8178,
                    };
                    checks::capabilities_up_to(cam, largest).await
                });
            both!(boot, [$($drv),+], $link, clean(), CameraConfig::new("x"),
                |sim, cam, log| checks::boot(sim, cam));
        }
    };
}

#[cfg(unix)]
link_checks!(pty, Link::Pty, [asynchronous]);
#[cfg(unix)]
stream_checks!(pty_stream, Link::Pty, [asynchronous]);
#[cfg(unix)]
fault_checks!(pty_faults, Link::Pty, [blocking, asynchronous]);
link_checks!(tcp, Link::Tcp, [blocking, asynchronous]);
stream_checks!(tcp_stream, Link::Tcp, [blocking, asynchronous]);
fault_checks!(tcp_faults, Link::Tcp, [blocking, asynchronous]);
link_checks!(udp, Link::Udp, [blocking, asynchronous]);
fault_checks!(udp_faults, Link::Udp, [blocking, asynchronous]);
stream_checks!(udp_stream, Link::Udp, [blocking, asynchronous]);
datagram_checks!(udp_datagrams, Link::Udp, [blocking, asynchronous]);
