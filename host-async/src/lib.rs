//! Async (tokio) host for the OpenMV cam protocol: an actor task over
//! `omv-session`'s sans-IO [`Session`](omv_session::Session), which holds
//! the whole host policy, behind a cheap-to-clone [`Camera`] handle.
//!
//! * [`Camera`]: omv-blocking's `Camera` API as async methods (same names,
//!   same types, the same [`Error`]), over a serial port (tokio-serial), TCP,
//!   UDP (one packet per datagram) or any `AsyncRead + AsyncWrite`;
//! * requests from every clone are served one at a time, in order; a
//!   request whose future is dropped is cancelled through the session
//!   (the next request resyncs if it must);
//! * [`EventStream`]: the cam's events as a `Stream`.
//!
//! The driver never spins and holds no thread per request: it waits in
//! one `select!` for bytes, the session's next deadline or the caller
//! going away.
//!
//! ```no_run
//! use omv_async::{Camera, CameraConfig};
//! use tokio_stream::StreamExt;
//! # async fn f() -> omv_async::Result<()> {
//! let cam = Camera::tcp("127.0.0.1:5555", CameraConfig::default());
//! cam.connect().await?;
//! let mut events = cam.events();
//! cam.streaming(true, false, None).await?;
//! while let Some(e) = events.next().await {
//!     if let Some(frame) = cam.read_frame().await? {
//!         println!("{e}: {}x{}", frame.width, frame.height);
//!     }
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(unnameable_types)]

mod camera;
mod driver;
mod events;
mod port;

pub use camera::{Camera, ChannelLock};
pub use events::EventStream;
pub use port::AsyncStream;

pub use omv_session::{
    image, symbols, CameraConfig, ChannelKey, ChannelStatus, DecodeFrame, Error, Event,
    EventHandler, EventKind, EventState, Frame, ProfileEntry, Progress, RawFrame, Result,
    SessionStats, SystemInfo,
};

/// The sans-IO protocol engine, re-exported for its types.
pub use omv_proto;
/// The host session, re-exported.
pub use omv_session;
