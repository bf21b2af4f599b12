//! Our host against a real cam script: the embedded sim runs a Python
//! script (sim-device's cam runtime) that registers a named channel with
//! `protocol.register` and takes snapshots in a loop; `Camera` reads the
//! channel by name and the frames the script made. Skipped (with a note)
//! where no `python3` is on PATH or off unix.
#![cfg(unix)]

use std::time::{Duration, Instant};

use omv_blocking::sim::EmbeddedSim;
use omv_blocking::{Camera, CameraConfig, Frame};
use omv_proto::frame::PixFormat;
use omv_sim::cam::SimConfig;
use omv_sim::script::PythonRunner;

const SCRIPT: &str = r#"
import csi
import protocol


class Status:
    def __init__(self):
        self.data = b"status 0042"

    def size(self):
        return len(self.data)

    def read(self, offset, size):
        return self.data[offset:offset + size]


protocol.register(name="status", backend=Status())
cam = csi.CSI()
cam.reset()
cam.pixformat(csi.RGB565)
cam.framesize(csi.QQVGA)
print("ready")
while True:
    img = cam.snapshot()
    img.draw_rectangle(0, 0, 20, 20, color=(255, 0, 0), fill=True)
"#;

fn wait_stdout(cam: &mut Camera, want: &str) -> String {
    let end = Instant::now() + Duration::from_secs(30);
    let mut out = String::new();
    while !out.contains(want) {
        assert!(Instant::now() < end, "no {want:?} in stdout: {out:?}");
        match cam.read_stdout().expect("read stdout") {
            Some(t) => out.push_str(&t),
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    out
}

fn next_frame(cam: &mut Camera) -> Frame {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < end, "no frame within 30 s");
        if let Some(f) = cam.read_frame().expect("read_frame") {
            return f;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn camera_reads_a_scripts_named_channel_and_its_frames() {
    if PythonRunner::new().resolve_interpreter().is_none() {
        eprintln!("python3 not on PATH: skipping");
        return;
    }
    let sim = EmbeddedSim::start(SimConfig::new(), |_| {}).expect("sim starts");
    let mut cam = Camera::with_transport(sim.take_link().expect("link"), CameraConfig::new("sim"));
    cam.connect().expect("connect");
    cam.streaming(true, false, None).expect("streaming on");
    cam.exec(SCRIPT).expect("exec");
    wait_stdout(&mut cam, "ready");

    assert_eq!(cam.channel_size("status").expect("size"), 11);
    assert_eq!(
        cam.channel_read("status", None).expect("read"),
        Some(b"status 0042".to_vec())
    );

    // JPEG frames of the script's size, with its drawing.
    let f = next_frame(&mut cam);
    assert_eq!((f.width, f.height, f.pixfmt), (160, 120, PixFormat::JPEG));
    let [r, g, b] = f.rgb.pixel(10, 10).expect("pixel");
    assert!(
        r > 200 && g < 60 && b < 60,
        "red rectangle: {:?}",
        [r, g, b]
    );

    // Raw frames: the script's RGB565, exactly.
    cam.streaming(true, true, Some((160, 120)))
        .expect("raw streaming");
    let end = Instant::now() + Duration::from_secs(30);
    let f = loop {
        assert!(Instant::now() < end, "no raw frame within 30 s");
        let f = next_frame(&mut cam);
        if f.pixfmt == PixFormat::RGB565 {
            break f;
        }
    };
    assert_eq!((f.width, f.height, f.depth), (160, 120, 2));
    assert_eq!(f.raw_size, 160 * 120 * 2);
    for (x, y) in [(0, 0), (10, 10), (19, 19)] {
        assert_eq!(f.rgb.pixel(x, y), Some([255, 0, 0]), "({x}, {y})");
    }
    // The named channel still answers while frames flow.
    assert_eq!(
        cam.channel_read("status", Some(6)).expect("read"),
        Some(b"status".to_vec())
    );
    cam.stop().expect("stop");
}
