//! Modeled goodput of 1 MiB reads and writes over real links' timing, on
//! the simulation's virtual clock (deterministic; no wall clock, no I/O).
//!
//! The host is the shipped `omv-session` `Session`; the cam is the shipped
//! `omv-sim` `SimCam` (its `DeviceEndpoint` and a byte-buffer channel);
//! between them the DST's link model (`omv_proto::fault::Pipe`, through
//! `omv_tests::dst::wire::Wire`: a FIFO pipe per direction with a latency,
//! a per-byte serialisation time and, for USB, reads only at frame
//! boundaries). The cam answers in zero time.
//!
//! `cargo run --release -p omv-tests --bin linktable`

use omv_proto::{Duration, Instant};
use omv_session::ops::{self, Operation};
use omv_session::{Error, Session, SessionConfig};
use omv_sim::cam::{SimCam, SimConfig};
use omv_tests::dst::faults::Dir;
use omv_tests::dst::wire::{Timing, Wire};

const MIB: usize = 1 << 20;

/// A link: its timing both ways and its nominal capacity.
struct Link {
    name: &'static str,
    timing: Timing,
    /// Nominal capacity, bit/s (what the fraction is of).
    capacity_bps: f64,
}

fn links() -> Vec<Link> {
    let t = |latency_us: u64, byte_ns: u64, period_us: u64| {
        Timing::new(
            Duration::from_micros(latency_us),
            byte_ns,
            Duration::from_micros(period_us),
        )
    };
    vec![
        Link {
            name: "USB FS 12 Mbit/s, 1 ms frames",
            timing: t(0, 667, 1000),
            capacity_bps: 12e6,
        },
        Link {
            name: "USB HS 480 Mbit/s, 125 us microframes",
            // 16.7 ns per byte, rounded up: the model runs at 470 Mbit/s.
            timing: t(0, 17, 125),
            capacity_bps: 480e6,
        },
        Link {
            name: "UART 921600 baud (8N1)",
            timing: t(0, 10_851, 0),
            capacity_bps: 921_600.0 * 8.0 / 10.0,
        },
        Link {
            name: "UDP, 1 ms round trip, 1 Gbit/s",
            timing: t(500, 8, 0),
            capacity_bps: 1e9,
        },
    ]
}

/// How the host side is driven.
#[derive(Clone, Copy, PartialEq)]
enum Driver {
    /// Ours: the session is fed as soon as bytes arrive.
    Ours,
    /// As the stock SDK drives its port: when nothing is there, sleep 1 ms
    /// before looking again.
    Sleep1ms,
}

/// The session, the cam, and the link between them.
struct World {
    s: Session,
    cam: SimCam,
    h2c: Wire,
    c2h: Wire,
    now: Instant,
    driver: Driver,
    /// When the host next looks at its port.
    host_wake: Instant,
}

impl World {
    fn new(link: &Link, ack: bool, max_payload: u16, driver: Driver) -> World {
        let cam = SimConfig::new()
            .channel("bulk", MIB)
            .max_payload(4082)
            .build()
            .expect("a simulated cam");
        let mut config = SessionConfig::default();
        config.ack = ack;
        config.max_payload = max_payload;
        let mut s = Session::new(config);
        s.port_opened();
        let mut w = World {
            s,
            cam,
            h2c: Wire::new(Dir::HostToCam, link.timing),
            c2h: Wire::new(Dir::CamToHost, link.timing),
            now: Instant::ZERO,
            driver,
            host_wake: Instant::ZERO,
        };
        w.run(ops::Connect).expect("connect");
        w
    }

    fn run<O: Operation>(&mut self, op: O) -> Result<O::Output, Error> {
        let pending = self.s.start(self.now, op)?;
        let mut tx = Vec::new();
        loop {
            let now = self.now;
            // Host to wire.
            while self.s.poll_transmit(now, &mut tx).is_some() {
                self.h2c
                    .enqueue(now, std::mem::take(&mut tx), Duration::ZERO, &[], true);
            }
            // Wire to cam, cam to wire.
            while let Some(c) = self.h2c.pop_due(now) {
                self.cam.handle_input(now, &c.bytes);
            }
            if self.cam.poll_timeout().is_some_and(|t| t <= now) {
                self.cam.handle_timeout(now);
            }
            while let Some(p) = self.cam.poll_transmit(now) {
                self.c2h.enqueue(now, p, Duration::ZERO, &[], true);
            }
            // Wire to host, when the host looks.
            let mut got = false;
            if now >= self.host_wake {
                while let Some(c) = self.c2h.pop_due(now) {
                    self.s.handle_input(now, &c.bytes);
                    got = true;
                }
                if self.driver == Driver::Sleep1ms && !got {
                    self.host_wake = now + Duration::from_millis(1);
                }
            }
            if self.s.poll_timeout().is_some_and(|t| t <= now) {
                self.s.handle_timeout(now);
            }
            while self.s.poll_port_command().is_some() {
                self.s.port_command_done(now, true);
            }
            while self.s.poll_event().is_some() {}
            if let Some(out) = self.s.take_output(&pending) {
                return out;
            }
            if got {
                continue;
            }
            // The next thing that happens.
            let host_in = self.c2h.next_due().map(|t| match self.driver {
                Driver::Ours => t,
                Driver::Sleep1ms => t.max(self.host_wake),
            });
            let next = [
                self.h2c.next_due(),
                host_in,
                self.s.poll_timeout(),
                self.cam.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .filter(|&t| t > now)
            .min();
            match next {
                Some(t) => self.now = t,
                // Something is due now (a pending transmit): go round again.
                None => continue,
            }
        }
    }
}

/// Goodput of a 1 MiB read and of a 1 MiB write, bytes per second, or
/// why the operation failed.
type Outcome = Result<f64, Error>;

fn measure(link: &Link, ack: bool, max_payload: u16, driver: Driver) -> (Outcome, Outcome) {
    let mut w = World::new(link, ack, max_payload, driver);
    let bulk = w
        .run(ops::GetChannel::new("bulk".into()))
        .expect("lookup")
        .expect("the bulk channel")
        .id;
    let rate = |d: Duration| MIB as f64 / (d.as_micros() as f64 / 1e6);
    let t0 = w.now;
    let read = w
        .run(ops::ReadAt {
            id: bulk,
            offset: 0,
            len: MIB as u32,
        })
        .map(|data| {
            assert_eq!(data.len(), MIB, "a whole read");
            rate(w.now.saturating_duration_since(t0))
        });
    let t1 = w.now;
    let write = w
        .run(ops::WriteAt {
            id: bulk,
            offset: 0,
            data: vec![0x5a; MIB].into(),
        })
        .map(|()| rate(w.now.saturating_duration_since(t1)));
    (read, write)
}

fn main() {
    println!("Model output (virtual time, not a measurement): goodput of a 1 MiB read");
    println!("and a 1 MiB write, shipped omv-session host and omv-sim cam (which answers");
    println!("in zero time) over the DST link model.");
    println!();
    println!("| link | host driver | ACKs | max_payload | read Mbit/s | read % of link | write Mbit/s | write % of link |");
    println!("|---|---|---|---|---|---|---|---|");
    for link in links() {
        for driver in [Driver::Ours, Driver::Sleep1ms] {
            for ack in [true, false] {
                for max_payload in [512u16, 4082] {
                    let (r, w) = measure(&link, ack, max_payload, driver);
                    let cells = |o: &Outcome| match o {
                        Ok(b) => format!(
                            "{:.2} | {:.1}",
                            b * 8.0 / 1e6,
                            100.0 * b * 8.0 / link.capacity_bps
                        ),
                        Err(e) => format!("failed: {e} | -"),
                    };
                    println!(
                        "| {} | {} | {} | {} | {} | {} |",
                        link.name,
                        match driver {
                            Driver::Ours => "ours",
                            Driver::Sleep1ms => "1 ms sleep (stock SDK)",
                        },
                        if ack { "on" } else { "off" },
                        max_payload,
                        cells(&r),
                        cells(&w),
                    );
                }
            }
        }
    }
}
