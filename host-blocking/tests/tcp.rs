//! End-to-end over TCP: the cam served by sim-device's TCP server on a
//! thread, the host through `Camera::tcp` and `omv --tcp`.

mod common;

use std::time::Duration;

use common::*;
use omv_blocking::sim::EmbeddedSim;
use omv_blocking::{Camera, CameraConfig};

#[test]
fn camera_over_tcp() {
    init_log();
    let log = ScriptLog::default();
    let sim =
        EmbeddedSim::start_tcp(standard_sim(log.clone()), standard_setup, "127.0.0.1:0").unwrap();
    let addr = sim.tcp_addr().unwrap().to_string();
    let mut cam = Camera::tcp(&addr, CameraConfig::new("unused"));
    cam.connect().unwrap();
    assert_eq!(cam.port_name(), addr);
    assert_eq!(
        cam.channel_read("bulk", None).unwrap().unwrap(),
        pattern(0, 1 << 20)
    );
    cam.exec("print(2)").unwrap();
    assert!(wait_until(&mut cam, 5, |_| !log.lock().unwrap().is_empty()));
    cam.streaming(true, false, None).unwrap();
    assert!(wait_until(&mut cam, 5, |c| c
        .read_frame()
        .unwrap()
        .is_some()));
    cam.streaming(false, false, None).unwrap();
    // Reconnecting opens a new connection; the server takes the next client.
    cam.disconnect();
    std::thread::sleep(Duration::from_millis(50));
    cam.connect().unwrap();
    assert_eq!(cam.channel_size("bulk").unwrap(), 1 << 20);
}
