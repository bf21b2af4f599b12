//! Deterministic simulation testing (DST) of the whole protocol stack.
//!
//! A seeded, single-threaded simulator runs the shipped host session
//! ([`omv_session::Session`], the policy every driver uses) against the
//! shipped simulated cam ([`omv_sim::cam::SimCam`], with the in-process
//! script runner) through a simulated serial link on a virtual clock. The
//! packet faults come from omv-proto's one injector
//! ([`omv_proto::fault`]); cam stalls, silent protocol resets and reboots
//! are scheduled inside operations. Every fault and every operation of the
//! random workload comes from the seed, so a failing seed replays bit for
//! bit.
//!
//! Modules, bottom up:
//!
//! * [`dice`]: the only source of randomness (seed or fuzz bytes);
//! * [`faults`]: fault kinds, rates, and which ones the negotiated caps can detect;
//! * [`wire`]: the FIFO byte pipes and the packet fault injector;
//! * [`cam`]: the shipped `SimCam` with user buffer channels and a script log;
//! * [`model`]: what the cam should contain;
//! * [`world`]: the virtual clock, the driver loop over the session (as
//!   `omv-blocking`'s, on virtual time) and the time budgets;
//! * [`driver`]: the application (connect when the port is closed, pick
//!   new caps) and the checks of every outcome;
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
