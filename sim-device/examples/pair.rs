//! A host endpoint and a simulated cam wired together in virtual time: no
//! threads, no ports, no clock. Both sides are sans-IO, so the loop below
//! moves bytes between them and advances time to the next deadline.
//!
//! ```text
//! cargo run -p omv-sim --example pair
//! ```

use omv_proto::host::{Command, Completion, HostConfig, HostEndpoint};
use omv_proto::Instant;
use omv_sim::cam::SimConfig;

/// Runs both endpoints until the host completes its operation.
fn run(
    host: &mut HostEndpoint,
    cam: &mut omv_sim::cam::SimCam,
    now: &mut Instant,
) -> Result<Completion, &'static str> {
    loop {
        let mut moved = false;
        while let Some(bytes) = host.poll_transmit() {
            cam.handle_input(*now, &bytes);
            moved = true;
        }
        while let Some(bytes) = cam.poll_transmit(*now) {
            host.handle_input(*now, &bytes);
            moved = true;
        }
        if let Some(done) = host.poll_completion() {
            return Ok(done);
        }
        if !moved {
            // Nothing in flight: jump to the earliest deadline of either side.
            let next = [host.poll_timeout(), cam.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .ok_or("neither side has anything to do")?;
            *now = next.max(*now);
            host.handle_timeout(*now);
            cam.handle_timeout(*now);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cam = SimConfig::new().channel("bulk", 10_000).build()?;
    let bulk = cam.channel_id("bulk").ok_or("no bulk channel")?;
    let mut host = HostEndpoint::new(HostConfig::default());
    let mut now = Instant::ZERO;

    host.connect(now);
    match run(&mut host, &mut cam, &mut now)? {
        Completion::Connected(Ok(caps)) => println!("connected: {caps:?}"),
        other => return Err(format!("connect failed: {other:?}").into()),
    }

    host.request(now, &Command::read(bulk, 0, 4000))?;
    match run(&mut host, &mut cam, &mut now)? {
        Completion::Request(Ok(reply)) => {
            let data = reply.into_bytes();
            println!("read {} bytes of bulk, first {:?}", data.len(), &data[..8]);
        }
        other => return Err(format!("read failed: {other:?}").into()),
    }
    println!(
        "virtual time used: {now:?}; host counters: {:?}",
        host.stats()
    );
    Ok(())
}
