//! Blocking host for the OpenMV cam protocol: a thin driver loop over
//! `omv-session`'s sans-IO [`Session`](omv_session::Session), which holds
//! the whole host policy.
//!
//! * [`Camera`]: the host API (parity with the stock `openmv` Python
//!   package 1.0.7: connection, scripts, streaming, channels,
//!   introspection, profiler; plus typed results, a lock guard, a retry
//!   helper, an event handler and a pending-events queue);
//! * [`CameraConfig`]: the stock constructor parameters and defaults;
//! * [`transport`]: the byte port ([`Transport`]) over a serial port, TCP,
//!   or any reader/writer (an in-memory link);
//! * [`Event`], [`EventKind`], [`EventHandler`], [`EventState`]: event
//!   classification, the handler a program installs and the state tracked
//!   from events (they arrive during any request, or in
//!   [`Camera::poll_events`] / [`Camera::wait_events`] when idle);
//! * [`image`]: frame pixels to RGB888 and PNG; [`symbols`]: function
//!   names from a firmware ELF for profile records;
//! * `sim` (feature `sim`): a simulated cam on a thread over an in-memory
//!   link, for examples and tests (the `omv` CLI, in `cli/`, uses it).
//!
//! The driver blocks on the port exactly until the session's next deadline
//! (no busy waiting, no fixed sleeps) and turns everything the cam sends
//! into values or [`Error`]s: nothing from the wire makes it panic or exit.
//!
//! ```no_run
//! use omv_blocking::{Camera, CameraConfig};
//! # fn main() -> omv_blocking::Result<()> {
//! let mut cam = Camera::open(CameraConfig::new("/dev/ttyACM0"))?;
//! println!("{}", cam.version()?);
//! cam.exec("print('hi')")?;
//! cam.streaming(true, false, None)?;
//! if let Some(f) = cam.read_frame()? {
//!     omv_blocking::image::save_png(&f.rgb, "frame.png")?;
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(unnameable_types)]

mod camera;
mod driver;
#[cfg(feature = "sim")]
pub mod sim;
pub mod transport;

/// Frame pixels to RGB888 and PNG (from `omv-session`).
pub use omv_session::image;
/// Function names from a firmware ELF (from `omv-session`).
pub use omv_session::symbols;

pub use camera::{Camera, ChannelLock, REOPEN_PAUSE};
pub use driver::CANCEL_POLL;
pub use transport::Transport;

// The session's types are what every driver returns: its one error type
// (mirroring the stock `openmv` exceptions, plus the driver's own `Io`,
// `Image`, `Symbols`), its events and its typed results.
pub use omv_session::{
    CameraConfig, ChannelKey, ChannelStatus, DecodeFrame, Error, Event, EventHandler, EventKind,
    EventState, Frame, ProfileData, ProfileEntry, RawFrame, Result, SystemInfo,
};

/// The host session (policy, typed operations, errors), re-exported.
pub use omv_session;

/// The sans-IO protocol engine, re-exported for its types (opcodes,
/// channel ids, codecs).
pub use omv_proto;
