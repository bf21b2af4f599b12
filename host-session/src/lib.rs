//! The host session of the OpenMV cam protocol, sans-IO: the whole host
//! policy above `omv-proto`'s [`HostEndpoint`](omv_proto::host::HostEndpoint)
//! as a state machine fed with bytes, time and port completions.
//!
//! * connect and resync: SYNC, GET_CAPS, SET_CAPS, then the channel list,
//!   version and system information cached; a resync (a connect's too)
//!   waits a few round trips per attempt rather than the full timeout; a
//!   connect starts over while its deadline allows, unless the cam sent
//!   nothing at all for `max_retry × timeout`; when
//!   resyncs fail the driver is asked to reopen the port
//!   ([`PortCommand::Reopen`]) before one more round;
//! * a resync at once when the cam reports SOFT_REBOOT (it re-initialised
//!   its protocol), and the channel cache refreshed after (un)registrations;
//! * retries by time: every operation has a deadline
//!   ([`SessionConfig::deadline_for`]: 10 s plus 20 s per MiB by default)
//!   beside the per-packet timeout; reads resume at the first byte not
//!   received, writes at the first byte not acknowledged (stdin from 0),
//!   `exec` is exactly-once, a read across a soft reboot fails with
//!   [`Error::Rebooted`];
//! * fast retransmit: when the awaited packet is overdue by the threshold
//!   [`Session::fast_threshold`] (`max(fast_min, 4 × round trip)`, plus
//!   the awaited packet's time through the link: a long request's, one
//!   answer packet of the negotiated `max_payload`, at the measured time
//!   per byte, a 921600-baud serial link's until measured; the
//!   round trip being the least of the last 8 measured from a request to
//!   its answer's first packet, never from an answer that was asked for
//!   again; for long requests doubled after each one given up early,
//!   until answers show it was raised too far), the session sends the
//!   last ACK again (the cam may be waiting
//!   for it: the lost-ACK case) and a NAK for the awaited packet (the
//!   firmware then resends at once). The firmware resends a packet at
//!   most 3 times before it resets, so the session asks at most twice per
//!   packet, and gives up on a resumable transfer at 3 thresholds (on any
//!   status answer of an operation that retries, which the cam never
//!   resends, at 1: a write's, a stop's, a locked read's lock...) to
//!   resync and resume, instead of waiting out the 1 s timeout. The
//!   by-id primitives that report rather than retry ([`ops::Lock`], ...)
//!   wait the timeout, so that a slow answer is not an error. Such a resync
//!   keeps the negotiated caps (SYNC then SET_CAPS) and waits 2 thresholds
//!   per attempt.
//!
//! # The driver loop
//!
//! ```text
//! let op = session.start(now, ops::ReadAt { .. })?;
//! loop {
//!     while let Some(n) = session.poll_transmit(now, &mut buf) { write(&buf); buf.clear(); }
//!     while let Some(cmd) = session.poll_port_command() { reopen; session.port_command_done(now, ok); }
//!     while let Some(e) = session.poll_event() { dispatch(e); }
//!     if let Some(out) = session.take_output(&op) { return out; }
//!     read the port until session.poll_timeout(): handle_input(now, bytes) or handle_timeout(now)
//! }
//! ```
//!
//! `omv-blocking`'s `driver` module is such a loop over a blocking port;
//! `omv-async`'s `driver` module is one in a tokio task (one `select!` on
//! the port, the deadline and the caller going away).
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

#[cfg(feature = "std")]
mod camera_config;
mod config;
mod error;
mod events;
#[cfg(feature = "image")]
mod frame;
#[cfg(feature = "image")]
pub mod image;
pub mod ops;
mod session;
#[cfg(feature = "symbols")]
pub mod symbols;
mod task;
mod types;

#[cfg(feature = "std")]
pub use camera_config::{CameraConfig, DEFAULT_BAUDRATE};
pub use config::{SessionConfig, DATAGRAM_UNACKED_READ};
pub use error::{Error, Result};
pub use events::{Event, EventHandler, EventKind, EventQueue, EventState};
#[cfg(feature = "image")]
pub use frame::{DecodeFrame, Frame};
pub use ops::Operation;
pub use session::{Pending, PortCommand, Progress, Session, SessionStats, REOPEN_PAUSE};
pub use types::{ChannelKey, ChannelStatus, ProfileData, ProfileEntry, RawFrame, SystemInfo};

/// The sans-IO protocol engine, re-exported for its types.
pub use omv_proto;
