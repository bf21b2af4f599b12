//! `sim-device`: a simulated OpenMV cam's channel backends and content.
//!
//! Public modules, one concept each:
//!
//! * [`cam`]: the simulated cam ([`cam::SimCam`], [`cam::SimConfig`]) tying
//!   it all together: the built-in channels (stdin and stdout, whose
//!   [`StdinChannel`] / [`StdoutChannel`] share a [`SharedOutput`] text
//!   ring with the script runner; stream; profile) and user channels;
//! * [`runtime`]: the cam runtime's Python modules and the script bridge
//!   (script channels, snapshots);
//! * [`script`]: running uploaded scripts ([`script::PythonRunner`] with a
//!   real interpreter, [`script::InProcessRunner`] for tests);
//! * [`source`]: frame sources (test pattern, image directory);
//! * [`user`]: ready-made user channel backends (buffer, snapshot) and
//!   [`user::copy_from`] for writing others;
//! * [`board`]: board profiles (sysinfo, versions, buffer sizes);
//! * [`fault`]: seeded fault injection (drops, corruption, latency, chunking);
//! * [`serve`]: the real-time serving loop over a byte transport;
//! * [`link`]: in-memory links (threaded duplex pipes, deterministic `SimLink`);
//! * `pty` (Unix): the pseudo-terminal transport; [`tcp`]: the TCP listener
//!   transport; [`udp`]: the UDP transport (one packet per datagram).
//!
//! The channel backends' internals (ioctl argument decoding, the stream
//! and profile channels, the event queue, the image codecs and the frame
//! counter's font) are private; protocol facts (channel ids, ioctl
//! numbers) come from `omv_proto`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(unnameable_types)]

mod args;
pub mod board;
pub mod cam;
mod events;
pub mod fault;
mod font;
mod image;
pub mod link;
mod output;
mod profile;
#[cfg(unix)]
pub mod pty;
pub mod runtime;
pub mod script;
pub mod serve;
pub mod source;
mod stdio;
mod stream;
pub mod tcp;
pub mod udp;
pub mod user;

// Types of the private modules that public signatures use: the built-in
// channels' parts (for assembling a cam by hand), the board profiles'
// stream and profile settings, and the image a frame source renders.
pub use events::SystemEvents;
pub use image::{ImageError, RgbImage};
pub use output::SharedOutput;
pub use profile::ProfileConfig;
pub use stdio::{StdinChannel, StdoutChannel};
pub use stream::StreamConfig;
