//! Blocking host for the OpenMV cam protocol, on `proto-core`'s sans-IO
//! [`HostEndpoint`](omv_proto::host::HostEndpoint).
//!
//! * [`Camera`]: the host API (parity with the stock `openmv` Python
//!   package 1.0.7: connection, scripts, streaming, channels,
//!   introspection, profiler; plus typed results, a lock guard, a retry
//!   helper, an event handler and a pending-events queue);
//! * [`CameraConfig`]: the stock constructor parameters and defaults;
//! * [`transport`]: the byte port ([`Transport`]) over a serial port, TCP,
//!   or any reader/writer (an in-memory link);
//! * [`events`]: event classification, handler trait and tracked state;
//! * [`image`]: frame pixels to RGB888 and PNG; [`symbols`]: function
//!   names from a firmware ELF for profile records;
//! * `sim` (feature `sim`): a simulated cam on a thread over an in-memory
//!   link, for examples and tests (the `omv` CLI, in `cli/`, uses it).
//!
//! The driver blocks on the port exactly until the endpoint's next deadline
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

pub mod camera;
pub mod config;
mod driver;
pub mod error;
pub mod events;
pub mod image;
#[cfg(feature = "sim")]
pub mod sim;
pub mod symbols;
pub mod transport;
pub mod types;

pub use camera::{Camera, ChannelLock};
pub use config::CameraConfig;
pub use error::{Error, Result};
pub use events::{Event, EventHandler, EventKind, EventState};
pub use transport::Transport;
pub use types::{ChannelKey, ChannelStatus, Frame, ProfileEntry, RawFrame, SystemInfo};

/// The sans-IO protocol engine, re-exported for its types (opcodes,
/// channel ids, codecs).
pub use omv_proto;
