//! One tokio program, two cams: frames stream from cam A while cam B runs
//! a script that registers a channel, which the program reads.
//!
//! ```text
//! cargo run -p omv-async --example two_cams
//! ```
//!
//! Both cams are omv-sim's simulated cam, embedded, on loopback TCP (cam B
//! runs its script in the simulator's Python runtime: `python3` must be on
//! the PATH). For real cams use `Camera::new(CameraConfig::new("/dev/ttyACM0"))`
//! or `Camera::tcp(addr, ..)` / `Camera::udp(addr, ..)` instead.

use std::time::{Duration, Instant};

use omv_async::{Camera, CameraConfig, EventKind};
use omv_blocking::sim::EmbeddedSim;
use omv_sim::cam::SimConfig;
use tokio_stream::StreamExt;

/// Cam B's script: a `ticks` channel whose content the script changes.
const SCRIPT: &str = r#"
import protocol, time

class Ticks:
    def __init__(self):
        self.n = 0
    def text(self):
        return ("tick %d" % self.n).encode()
    def size(self):
        return len(self.text())
    def read(self, offset, size):
        return self.text()[offset:offset + size]
    def poll(self):
        return True

ticks = Ticks()
protocol.register(name="ticks", backend=ticks)
print("ticks registered")
while True:
    ticks.n += 1
    time.sleep(0.02)
"#;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Cam A: streaming on, `n` frames read as their frame-ready events come.
async fn stream_frames(cam: Camera, n: usize) -> Result<usize, Error> {
    let mut events = cam.events();
    cam.streaming(true, false, None).await?;
    let mut got = 0;
    while got < n {
        match cam.read_frame().await? {
            Some(f) => {
                got += 1;
                println!("cam A: frame {got}: {}x{} {}", f.width, f.height, f.pixfmt);
            }
            // Wait for the next frame-ready event (no polling loop).
            None => while events.next().await.map(|e| e.kind) != Some(EventKind::FrameReady) {},
        }
    }
    cam.streaming(false, false, None).await?;
    Ok(got)
}

/// Cam B: runs the script, waits for its channel, reads it a few times.
async fn run_script(cam: Camera, reads: usize) -> Result<Vec<String>, Error> {
    cam.exec(SCRIPT).await?;
    let end = Instant::now() + Duration::from_secs(10);
    let id = loop {
        if let Some(id) = cam.get_channel_id("ticks").await? {
            break id;
        }
        if Instant::now() > end {
            return Err("the script did not register its channel within 10 s".into());
        }
        cam.wait_events(Duration::from_millis(100)).await?;
    };
    let mut seen = Vec::new();
    while seen.len() < reads {
        let size = cam.channel_size_at(id).await?;
        let text = String::from_utf8_lossy(&cam.channel_read_at(id, 0, size).await?).into_owned();
        println!("cam B: channel ticks says {text:?}");
        seen.push(text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(out) = cam.read_stdout().await? {
        print!("cam B: script printed: {out}");
    }
    cam.stop().await?;
    Ok(seen)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let sim_a = EmbeddedSim::start_tcp(
        SimConfig::new().free_running_frames(true),
        |_| {},
        "127.0.0.1:0",
    )?;
    let sim_b = EmbeddedSim::start_tcp(SimConfig::new(), |_| {}, "127.0.0.1:0")?;
    let a = Camera::tcp(
        sim_a.tcp_addr().ok_or("no address")?,
        CameraConfig::new("a"),
    );
    let b = Camera::tcp(
        sim_b.tcp_addr().ok_or("no address")?,
        CameraConfig::new("b"),
    );
    let (ra, rb) = tokio::join!(a.connect(), b.connect());
    ra?;
    rb?;
    println!(
        "cam A: {}; cam B: {}",
        a.version().await?,
        b.version().await?
    );
    let t = Instant::now();
    let (frames, ticks) = tokio::join!(stream_frames(a, 10), run_script(b, 5));
    let (frames, ticks) = (frames?, ticks?);
    println!(
        "{frames} frames from cam A and {} reads of cam B's channel, side by side, in {:?}",
        ticks.len(),
        t.elapsed()
    );
    Ok(())
}
