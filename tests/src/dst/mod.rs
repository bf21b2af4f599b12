//! Deterministic simulation testing (DST) of the whole protocol stack.
//!
//! A seeded, single-threaded simulator joins a proto-core
//! [`HostEndpoint`](omv_proto::host::HostEndpoint) and a
//! [`DeviceEndpoint`](omv_proto::device::DeviceEndpoint) carrying the real
//! sim-device channel backends (stdin with an in-process script runner,
//! stdout, user buffer channels) through a simulated serial link on a
//! virtual clock. Every fault — drops, bit flips, duplicates, chunking,
//! delays, garbage, cam stalls, silent protocol resets, reboots — and every
//! operation of the random workload comes from the seed, so a failing seed
//! replays bit for bit.
//!
//! Modules, bottom up:
//!
//! * [`dice`]: the only source of randomness (seed or fuzz bytes);
//! * [`faults`]: fault kinds, rates, and which ones the negotiated caps can detect;
//! * [`wire`]: the FIFO byte pipes and the packet fault injector;
//! * [`cam`]: the cam (endpoint + backends + reset/reboot);
//! * [`model`]: what the cam should contain;
//! * [`world`]: the virtual clock, the event loop and the time budgets;
//! * [`driver`]: the host application (resync policy, upload) and answer checks;
//! * [`workload`]: random operations and cam activity;
//! * [`run`]: scenarios, phases, per-seed runs and totals;
//! * [`report`], [`trace`]: counters and the replay hash.
//!
//! ```
//! use omv_tests::dst::{run_seed, Options};
//! let a = run_seed(7, &Options::default());
//! assert!(a.violation.is_none(), "{}", a.report());
//! assert_eq!(a.trace_hash, run_seed(7, &Options::default()).trace_hash);
//! ```

pub mod cam;
pub mod dice;
pub mod driver;
pub mod faults;
pub mod model;
pub mod report;
pub mod run;
pub mod trace;
pub mod wire;
pub mod workload;
pub mod world;

pub use report::{RunStats, Totals};
pub use run::{run_bytes, run_many, run_seed, Options, Scenario, SeedOutcome};
pub use world::Violation;
