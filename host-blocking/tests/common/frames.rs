//! A cam (proto-core's device endpoint served by sim-device's loop) whose
//! stream channel serves the frames a test sets, in memory or over a
//! pseudo-terminal, and the `read_frame` checks run over both.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omv_blocking::image::{encode_png, Rgb888Image};
use omv_blocking::sim::LinkTransport;
use omv_blocking::{Camera, CameraConfig, Error};
use omv_proto::backend::{ChannelBackend, ChannelError, Ops};
use omv_proto::device::{DeviceConfig, DeviceEndpoint};
use omv_proto::frame::{FrameHeader, PixFormat};
use omv_proto::ChannelId;
use omv_sim::serve::{serve, MonotonicClock, ServeOptions, Transport as CamTransport};

type Shared = Arc<Mutex<Vec<u8>>>;

/// A stream channel holding whatever the test put in `frame`.
struct FrameChannel(Shared);

impl ChannelBackend for FrameChannel {
    fn ops(&self) -> Ops {
        Ops::LOCK | Ops::SIZE | Ops::READ
    }
    fn lock(&mut self) -> Result<(), ChannelError> {
        if self.0.lock().unwrap().is_empty() {
            Err(ChannelError::Busy)
        } else {
            Ok(())
        }
    }
    fn unlock(&mut self) -> Result<(), ChannelError> {
        Ok(())
    }
    fn size(&mut self) -> Result<u32, ChannelError> {
        Ok(self.0.lock().unwrap().len() as u32)
    }
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<usize, ChannelError> {
        omv_sim::user::copy_from(&self.0.lock().unwrap(), offset, buf)
    }
}

/// The frame cam on a thread and a camera connected to it.
pub struct FrameRig {
    pub cam: Camera,
    frame: Shared,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FrameRig {
    fn drop(&mut self) {
        self.cam.disconnect();
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_frames(
    transport: impl CamTransport + Send + 'static,
) -> (Shared, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    super::init_log();
    let frame = Shared::default();
    let mut dev =
        DeviceEndpoint::new(DeviceConfig::default().lock_interval(omv_proto::Duration::ZERO));
    dev.register_at(
        ChannelId(3),
        "stream",
        Box::new(FrameChannel(frame.clone())),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let mut transport = transport;
    let thread = std::thread::spawn(move || {
        let _ = serve(
            &mut dev,
            &mut transport,
            &MonotonicClock::new(),
            &flag,
            &ServeOptions::default(),
        );
    });
    (frame, stop, thread)
}

fn rig_config(port: &str) -> CameraConfig {
    CameraConfig::new(port).timeout(Duration::from_millis(500))
}

/// The frame cam over an in-memory link.
pub fn frame_rig() -> FrameRig {
    let (host_end, cam_end) = omv_sim::link::duplex();
    let (frame, stop, thread) = serve_frames(cam_end);
    let mut cam =
        Camera::with_transport(LinkTransport::new("frames", host_end), rig_config("frames"));
    cam.connect().unwrap();
    FrameRig {
        cam,
        frame,
        stop,
        thread: Some(thread),
    }
}

/// The frame cam on a pseudo-terminal, opened as a serial port.
#[cfg(unix)]
pub fn frame_rig_pty() -> FrameRig {
    let pty = omv_sim::pty::Pty::open().expect("pty");
    let path = pty.path().display().to_string();
    let (frame, stop, thread) = serve_frames(pty);
    let cam = Camera::open(rig_config(&path)).expect("connect over the pty");
    FrameRig {
        cam,
        frame,
        stop,
        thread: Some(thread),
    }
}

impl FrameRig {
    /// The frame the cam serves next: a header then `data`.
    pub fn set(&self, w: u32, h: u32, fmt: PixFormat, size: u32, fps: Option<f32>, data: &[u8]) {
        let mut b = Vec::new();
        FrameHeader::new(w, h, fmt, size, fps).encode_into(&mut b);
        b.extend_from_slice(data);
        self.set_bytes(b);
    }

    /// The stream channel's exact contents.
    pub fn set_bytes(&self, b: Vec<u8>) {
        *self.frame.lock().unwrap() = b;
    }
}

/// `read_frame` decodes every pixel format to the exact pixels.
pub fn check_every_pixel_format(r: &mut FrameRig) {
    assert!(r.cam.read_frame().unwrap().is_none(), "no frame: None");

    r.set(
        2,
        2,
        PixFormat::GRAYSCALE,
        1,
        Some(12.5),
        &[0, 85, 170, 255],
    );
    let f = r.cam.read_frame().unwrap().unwrap();
    assert_eq!(
        (f.width, f.height, f.pixfmt, f.depth, f.raw_size),
        (2, 2, PixFormat::GRAYSCALE, 1, 4)
    );
    assert_eq!(f.fps, Some(12.5));
    assert_eq!(
        f.rgb.pixels,
        [0, 0, 0, 85, 85, 85, 170, 170, 170, 255, 255, 255]
    );

    // RGB565, little-endian: red, green, blue, white.
    let px: Vec<u8> = [0xF800u16, 0x07E0, 0x001F, 0xFFFF]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    r.set(4, 1, PixFormat::RGB565, 2, Some(30.0), &px);
    let f = r.cam.read_frame().unwrap().unwrap();
    assert_eq!(f.rgb.pixel(0, 0), Some([255, 0, 0]));
    assert_eq!(f.rgb.pixel(1, 0), Some([0, 255, 0]));
    assert_eq!(f.rgb.pixel(2, 0), Some([0, 0, 255]));
    assert_eq!(f.rgb.pixel(3, 0), Some([255, 255, 255]));

    // Bayer BGGR, uniform: gray.
    r.set(4, 4, PixFormat::BAYER_BGGR, 1, None, &[100; 16]);
    let f = r.cam.read_frame().unwrap().unwrap();
    assert_eq!(f.pixfmt, PixFormat::BAYER_BGGR);
    assert_eq!((f.width, f.height, f.raw_size), (4, 4, 16));
    assert!(f.rgb.pixels.iter().all(|&v| v == 100), "{:?}", f.rgb.pixels);
    assert_eq!(f.fps, None, "firmware 4.x header: no fps");

    // YUV422 (YUYV), neutral chroma: gray.
    r.set(2, 1, PixFormat::YUV422, 2, None, &[128, 128, 128, 128]);
    let f = r.cam.read_frame().unwrap().unwrap();
    assert_eq!((f.pixfmt, f.raw_size), (PixFormat::YUV422, 4));
    assert_eq!(f.rgb.pixels.len(), 6);
    for v in f.rgb.pixels {
        assert!((127..=129).contains(&v), "{v}");
    }

    // PNG: decoded to the same pixels.
    let img = Rgb888Image {
        width: 3,
        height: 2,
        pixels: (0..18).map(|i| i * 13).collect(),
    };
    let png = encode_png(&img).unwrap();
    r.set(3, 2, PixFormat::PNG, png.len() as u32, Some(5.0), &png);
    let f = r.cam.read_frame().unwrap().unwrap();
    assert_eq!(f.pixfmt, PixFormat::PNG);
    assert_eq!(f.rgb, img);
    assert_eq!(f.raw_size, png.len());

    // JPEG: a solid colour comes back close to it.
    let solid: Vec<u8> = [200u8, 40, 60].repeat(16 * 16);
    let mut jpg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpg, 95)
        .encode(&solid, 16, 16, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    r.set(16, 16, PixFormat::JPEG, jpg.len() as u32, Some(30.0), &jpg);
    let f = r.cam.read_frame().unwrap().unwrap();
    assert_eq!((f.width, f.height), (16, 16));
    let p = f.rgb.pixel(8, 8).unwrap();
    assert!(
        p[0].abs_diff(200) < 8 && p[1].abs_diff(40) < 8 && p[2].abs_diff(60) < 8,
        "{p:?}"
    );

    // ARGB8 (bytes B, G, R, A) and BINARY (1 bit per pixel, rows in u32 words).
    r.set(1, 1, PixFormat::ARGB8, 4, None, &[3, 2, 1, 255]);
    let f = r.cam.read_frame().unwrap().unwrap();
    assert_eq!((f.pixfmt, f.rgb.pixels), (PixFormat::ARGB8, vec![1, 2, 3]));
    r.set(2, 1, PixFormat::BINARY, 0, None, &[0b01, 0, 0, 0]);
    let f = r.cam.read_frame().unwrap().unwrap();
    assert_eq!(
        (f.pixfmt, f.rgb.pixels),
        (PixFormat::BINARY, vec![255, 255, 255, 0, 0, 0])
    );

    // A large raw frame: many fragments.
    let big: Vec<u8> = (0..640 * 480).map(|i| (i % 256) as u8).collect();
    r.set(640, 480, PixFormat::GRAYSCALE, 1, None, &big);
    let f = r.cam.read_frame().unwrap().unwrap();
    assert_eq!(f.rgb.pixel(300, 200), Some([(200 * 640 + 300) as u8; 3]));
    let raw = r.cam.read_frame_raw().unwrap().unwrap();
    assert_eq!(raw.data, big);
}

/// Malformed frames are typed errors and leave the link usable.
pub fn check_malformed_frames(r: &mut FrameRig) {
    // Image data shorter than the dimensions say.
    r.set(10, 10, PixFormat::GRAYSCALE, 1, None, &[1, 2, 3]);
    assert!(matches!(r.cam.read_frame(), Err(Error::Image(_))));
    // Garbage JPEG.
    r.set(10, 10, PixFormat::JPEG, 20, None, &[0xFF; 20]);
    assert!(matches!(r.cam.read_frame(), Err(Error::Image(_))));
    // Unknown pixel format.
    r.set(1, 1, PixFormat(0x1234_5678), 1, None, &[1]);
    assert!(matches!(r.cam.read_frame(), Err(Error::Image(_))));
    // A header whose data offset points past the end.
    let mut b = Vec::new();
    let mut h = FrameHeader::new(1, 1, PixFormat::GRAYSCALE, 1, None);
    h.offset = 4000;
    h.encode_into(&mut b);
    b.push(7);
    r.set_bytes(b);
    let e = r.cam.read_frame().unwrap_err();
    assert!(
        matches!(
            e,
            Error::Malformed {
                what: "frame header",
                ..
            }
        ),
        "{e}"
    );
    // Just a header (no image): nothing to show.
    r.set_bytes(vec![0; 20]);
    assert!(r.cam.read_frame().unwrap().is_none());
    // The link is still fine.
    assert!(r.cam.is_connected());
    r.set(1, 1, PixFormat::GRAYSCALE, 1, None, &[9]);
    assert_eq!(r.cam.read_frame().unwrap().unwrap().rgb.pixels, [9, 9, 9]);
}
