//! The `Camera` API against an embedded simulated cam: connect, list the
//! channels, read one, run a script and collect what it prints.
//!
//! ```text
//! cargo run -p omv-blocking --features sim --example sim_camera
//! ```
//!
//! Replace the embedded cam with a real one by opening
//! `Camera::open(CameraConfig::new("/dev/ttyACM0"))` instead.

use std::time::{Duration, Instant};

use omv_blocking::sim::EmbeddedSim;
use omv_blocking::{Camera, CameraConfig};
use omv_sim::cam::SimConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sim = EmbeddedSim::start(SimConfig::new().channel("bulk", 1 << 16), |_| {})?;
    let link = sim
        .take_link()
        .ok_or("the simulated cam's link was already taken")?;
    let mut cam = Camera::with_transport(link, CameraConfig::new("sim"));
    cam.connect()?;
    println!("{}", cam.version()?);
    for c in cam.channels()? {
        println!("channel {:>2} {:<8} {:?}", c.id.0, c.name, c.flags);
    }
    let data = cam
        .channel_read("bulk", Some(16))?
        .ok_or("no bulk channel")?;
    println!("bulk[0..16] = {data:?}");

    cam.exec("print('hello from the script')")?;
    let mut out = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !out.ends_with('\n') && Instant::now() < deadline {
        match cam.read_stdout()? {
            Some(text) => out.push_str(&text),
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    print!("script said: {out}");
    Ok(())
}
