//! End-to-end over UDP: the cam served by omv-sim's UDP transport on a
//! thread (one packet per datagram, max payload 1400), the host through
//! `Camera::udp` (the datagram config, `CameraConfig::for_datagrams`).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use common::*;
use omv_blocking::transport::UdpTransport;
use omv_blocking::{Camera, CameraConfig};
use omv_sim::serve::{serve, MonotonicClock, ServeOptions};
use omv_sim::udp::{UdpStats, UdpTransport as CamUdp, DEFAULT_UDP_MAX_PAYLOAD};

struct UdpCam {
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<UdpStats>>,
}

impl UdpCam {
    fn start() -> UdpCam {
        let log = ScriptLog::default();
        // The board's packet buffer gives way to what fits one datagram.
        let config = standard_sim(log)
            .device(quick_device())
            .max_payload(DEFAULT_UDP_MAX_PAYLOAD);
        let mut cam = config.build().expect("sim builds");
        standard_setup(&mut cam);
        let mut udp = CamUdp::bind("127.0.0.1:0").expect("bind");
        let addr = udp.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            serve(
                &mut cam,
                &mut udp,
                &MonotonicClock::new(),
                &s,
                &ServeOptions::default(),
            )
            .expect("serve");
            udp.stats()
        });
        UdpCam {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> UdpStats {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

fn camera(addr: &str, change: impl FnOnce(&mut CameraConfig)) -> Camera {
    let mut cfg = CameraConfig::new(addr);
    change(&mut cfg);
    let mut cam = Camera::udp(addr, cfg);
    cam.connect().unwrap();
    cam
}

#[test]
fn camera_over_udp_with_acks_on_and_off() {
    init_log();
    let sim = UdpCam::start();
    for ack in [true, false] {
        let mut cam = camera(&sim.addr, |c| c.ack = ack);
        assert_eq!(cam.caps().max_payload, DEFAULT_UDP_MAX_PAYLOAD);
        // With ACKs off the cam sends a whole answer without waiting: the
        // datagram config asks for 1 MiB in requests of 64 KiB (47
        // datagrams, well within a socket's default receive buffer; 750 at
        // once overflowed it), and a datagram lost anyway costs a resumed
        // read of the rest.
        let size = 1 << 20;
        let before = cam.host_stats().sent;
        let got = cam.channel_read("bulk", Some(size as u32));
        assert!(got.unwrap().unwrap() == pattern(0, size), "ack {ack}");
        if !ack {
            // 16 requests of 64 KiB (more only after a loss), no ACKs.
            let sent = cam.host_stats().sent - before;
            assert!((16..40).contains(&sent), "{sent} packets sent");
        }
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
        assert!(cam.channel_write("locky", &data).unwrap());
        assert_eq!(
            cam.channel_read("locky", Some(5000)).unwrap().unwrap(),
            data
        );
        cam.disconnect();
    }
    let stats = sim.stop();
    assert_eq!(stats.rejected, 0);
    assert!(stats.received > 0 && stats.sent > 2 * 750, "{stats:?}");
}

#[test]
fn nothing_listening_is_a_clear_error() {
    // Bind and drop a socket to find a port nobody listens on.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut cfg = CameraConfig::new(&addr);
    cfg.timeout = std::time::Duration::from_millis(200);
    let mut cam = Camera::with_transport(UdpTransport::connect(&addr).unwrap(), cfg);
    let err = cam.connect().unwrap_err().to_string();
    assert!(err.contains("nothing listens on UDP"), "{err}");
}
