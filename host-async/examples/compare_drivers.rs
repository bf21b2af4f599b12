//! The blocking and the async driver side by side against the same
//! simulated cams: 4 MiB read throughput and 64-byte read latency over a
//! pseudo-terminal and TCP, and the goodput of 1 MiB reads over UDP with
//! 0 %, 2 % and 20 % datagram loss (each direction), ACKs on and off.
//! Every read is checked byte for byte; whole reads are timed 5 times
//! (median), 64-byte reads 300 times (median and 99th percentile).
//!
//! ```text
//! scripts/compare_drivers.sh    # cargo run --release -p omv-async --example compare_drivers
//! ```

use std::time::{Duration, Instant};

use omv_blocking::sim::EmbeddedSim;
use omv_blocking::CameraConfig;
use omv_proto::ChannelId;
use omv_sim::cam::SimConfig;
use omv_sim::fault::FaultConfig;
use omv_sim::udp::{UdpTransport as CamUdp, DEFAULT_UDP_MAX_PAYLOAD};

type Error = Box<dyn std::error::Error + Send + Sync>;

const BIG: u32 = 4 << 20;
const MIB: u32 = 1 << 20;
const LATENCY_READS: usize = 300;
/// Whole reads per measurement; the median is reported.
const READS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// What one driver measures.
struct Row {
    /// Seconds for one whole read of the channel (median of [`READS`]).
    read_s: f64,
    /// Median and 99th percentile of a 64-byte read, µs.
    lat: Option<(f64, f64)>,
}

fn median_p99(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(v[v.len() / 2]), us(v[v.len() * 99 / 100]))
}

/// Either driver, the same measurement.
enum Link<'a> {
    Pty(&'a str),
    Tcp(&'a str),
    Udp(&'a str),
}

fn blocking(link: &Link, cfg: CameraConfig, size: u32, latency: bool) -> Result<Row, Error> {
    let mut cam = match link {
        Link::Pty(p) => omv_blocking::Camera::new(cfg.port(*p)),
        Link::Tcp(a) => omv_blocking::Camera::tcp(a, cfg),
        Link::Udp(a) => omv_blocking::Camera::udp(a, cfg),
    };
    cam.connect()?;
    let id = cam.get_channel_id("big")?.ok_or("no big channel")?;
    let mut times = Vec::with_capacity(READS);
    for _ in 0..READS {
        let t = Instant::now();
        let d = cam.channel_read_at(id, 0, size)?;
        times.push(t.elapsed().as_secs_f64());
        check(&d, size)?;
    }
    let read_s = median(times);
    let lat = if latency {
        let mut v = Vec::with_capacity(LATENCY_READS);
        let sent = cam.host_stats().sent;
        for _ in 0..LATENCY_READS {
            let t = Instant::now();
            let d = cam.channel_read_at(id, 0, 64)?;
            v.push(t.elapsed());
            check(&d, 64)?;
        }
        on_the_wire(sent, cam.host_stats().sent)?;
        Some(median_p99(v))
    } else {
        None
    };
    cam.disconnect();
    Ok(Row { read_s, lat })
}

async fn asynchronous(
    link: &Link<'_>,
    cfg: CameraConfig,
    size: u32,
    latency: bool,
) -> Result<Row, Error> {
    let cam = match link {
        Link::Pty(p) => omv_async::Camera::new(cfg.port(*p)),
        Link::Tcp(a) => omv_async::Camera::tcp(a, cfg),
        Link::Udp(a) => omv_async::Camera::udp(a, cfg),
    };
    cam.connect().await?;
    let id: ChannelId = cam.get_channel_id("big").await?.ok_or("no big channel")?;
    let mut times = Vec::with_capacity(READS);
    for _ in 0..READS {
        let t = Instant::now();
        let d = cam.channel_read_at(id, 0, size).await?;
        times.push(t.elapsed().as_secs_f64());
        check(&d, size)?;
    }
    let read_s = median(times);
    let lat = if latency {
        let mut v = Vec::with_capacity(LATENCY_READS);
        let sent = cam.host_stats().sent;
        for _ in 0..LATENCY_READS {
            let t = Instant::now();
            let d = cam.channel_read_at(id, 0, 64).await?;
            v.push(t.elapsed());
            check(&d, 64)?;
        }
        on_the_wire(sent, cam.host_stats().sent)?;
        Some(median_p99(v))
    } else {
        None
    };
    cam.disconnect().await;
    Ok(Row { read_s, lat })
}

/// Every timed read was a request on the wire (nothing answered from a cache).
fn on_the_wire(before: u64, after: u64) -> Result<(), Error> {
    if after - before < LATENCY_READS as u64 {
        return Err(format!("{} packets sent for {LATENCY_READS} reads", after - before).into());
    }
    Ok(())
}

fn check(d: &[u8], size: u32) -> Result<(), Error> {
    if d != pattern(size as usize).as_slice() {
        return Err(format!(
            "a {size}-byte read returned wrong bytes ({} bytes)",
            d.len()
        )
        .into());
    }
    Ok(())
}

fn cam(size: u32) -> SimConfig {
    SimConfig::new().channel("big", size as usize)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    println!("| link | driver | 4 MiB read | MB/s | 64 B read median | p99 |");
    println!("|---|---|---|---|---|---|");
    let pty = EmbeddedSim::start_pty(cam(BIG), |_| {})?;
    let tcp = EmbeddedSim::start_tcp(cam(BIG), |_| {}, "127.0.0.1:0")?;
    let pty_path = pty.path().ok_or("no pty")?.display().to_string();
    let tcp_addr = tcp.tcp_addr().ok_or("no address")?.to_string();
    for (name, link) in [("pty", Link::Pty(&pty_path)), ("TCP", Link::Tcp(&tcp_addr))] {
        // The blocking driver blocks this thread; the async one runs on it.
        let b = blocking(&link, CameraConfig::new("x"), BIG, true)?;
        let a = asynchronous(&link, CameraConfig::new("x"), BIG, true).await?;
        for (driver, r) in [("blocking", b), ("async", a)] {
            let (med, p99) = r.lat.unwrap_or_default();
            println!(
                "| {name} | {driver} | {:.3} s | {:.1} | {med:.0} µs | {p99:.0} µs |",
                r.read_s,
                f64::from(BIG) / r.read_s / 1e6
            );
        }
    }
    drop((pty, tcp));

    println!();
    println!("| UDP loss (each way) | ACKs | blocking 1 MiB | async 1 MiB |");
    println!("|---|---|---|---|");
    for loss in [0.0, 0.02, 0.2] {
        let faults = FaultConfig::default()
            .drop_rate(loss)
            .rx_drop_rate(loss)
            .seed(7);
        let udp = CamUdp::bind("127.0.0.1:0")?;
        let addr = udp.local_addr()?.to_string();
        let sim = cam(MIB).faults(faults).max_payload(DEFAULT_UDP_MAX_PAYLOAD);
        let sim = EmbeddedSim::serve_on(sim, |_| {}, udp)?;
        for ack in [true, false] {
            let cfg = || CameraConfig::new("x").ack(ack);
            let cell = |r: Result<Row, Error>| match r {
                Ok(r) => format!(
                    "{:.3} s, {:.1} MB/s",
                    r.read_s,
                    f64::from(MIB) / r.read_s / 1e6
                ),
                Err(e) => format!("failed: {e}"),
            };
            let b = cell(blocking(&Link::Udp(&addr), cfg(), MIB, false));
            let a = cell(asynchronous(&Link::Udp(&addr), cfg(), MIB, false).await);
            let on = if ack { "on" } else { "off" };
            println!("| {:.0} % | {on} | {b} | {a} |", loss * 100.0);
        }
        drop(sim);
    }
    Ok(())
}
