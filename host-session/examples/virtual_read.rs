//! A complete driver loop over a [`Session`]: the simulated cam
//! (`omv-sim`'s sans-IO `SimCam`) on virtual time, a lossy link, and one
//! 256 KiB read that resumes after every loss.
//!
//! `cargo run -p omv-session --example virtual_read`

use omv_proto::{ChannelId, Instant};
use omv_session::ops::{self, Operation};
use omv_session::{Error, Session, SessionConfig};
use omv_sim::cam::{SimCam, SimConfig};
use omv_sim::fault::FaultConfig;

/// Runs `op` to completion: writes transmits to the cam, feeds the cam's
/// packets back, and advances the clock to the next deadline when idle.
fn run<O: Operation>(
    s: &mut Session,
    cam: &mut SimCam,
    now: &mut Instant,
    op: O,
) -> Result<O::Output, Error> {
    let pending = s.start(*now, op)?;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        while s.poll_transmit(*now, &mut buf).is_some() {}
        let mut moved = !buf.is_empty();
        if moved {
            cam.handle_input(*now, &buf);
        }
        while s.poll_port_command().is_some() {
            // Nothing to reopen here: the cam is in memory.
            s.port_command_done(*now, true);
        }
        while let Some(e) = s.poll_event() {
            println!("event: {e}");
        }
        while let Some(b) = cam.poll_transmit(*now) {
            s.handle_input(*now, &b);
            moved = true;
        }
        if let Some(out) = s.take_output(&pending) {
            return out;
        }
        if !moved {
            let next = [s.poll_timeout(), cam.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .expect("an operation in flight has a deadline");
            *now = (*now).max(next);
            cam.handle_timeout(*now);
            s.handle_timeout(*now);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let faults = FaultConfig::default().drop_rate(0.1).seed(5);
    let mut cam = SimConfig::new()
        .channel("bulk", 256 * 1024)
        .faults(faults)
        .build()?;
    let mut s = Session::new(SessionConfig::default());
    let mut now = Instant::ZERO;
    s.port_opened();
    run(&mut s, &mut cam, &mut now, ops::Connect)?;
    println!("connected: {:?}", s.caps());
    let bulk: ChannelId = run(
        &mut s,
        &mut cam,
        &mut now,
        ops::GetChannel::new("bulk".into()),
    )?
    .ok_or("no bulk channel")?
    .id;
    let start = now;
    let data = run(
        &mut s,
        &mut cam,
        &mut now,
        ops::ReadAt {
            id: bulk,
            offset: 0,
            len: 256 * 1024,
        },
    )?;
    let exact = data.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8);
    println!(
        "read {} bytes in {:?} of virtual time, exact: {exact}; {:?}",
        data.len(),
        now.saturating_duration_since(start),
        s.stats()
    );
    Ok(())
}
