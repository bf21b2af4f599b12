//! `sim-device`: a simulated OpenMV cam's channel backends and content.
//!
//! Each module holds one concept:
//!
//! * [`output`]: the cam's stdout text ring buffer, shared between the
//!   script runner and the stdout channel;
//! * [`runtime`]: the cam runtime's Python modules and the script bridge
//!   (script channels, snapshots);
//! * [`script`]: running uploaded scripts ([`script::PythonRunner`] with a
//!   real interpreter, [`script::InProcessRunner`] for tests);
//! * [`events`]: the queue of system events (SOFT_REBOOT) backends raise;
//! * [`stdio`]: the stdin and stdout channels;
//! * [`image`]: a small RGB image with RGB565/JPEG/PNG conversions;
//! * [`font`]: a tiny bitmap font for the frame counter;
//! * [`source`]: frame sources (test pattern, image directory);
//! * [`stream`]: the stream channel;
//! * [`profile`]: the profile channel (synthetic per-function records);
//! * [`user`]: ready-made user channel backends (buffer, snapshot);
//! * [`board`]: board profiles (sysinfo, versions, buffer sizes);
//! * [`args`]: checked decoding of ioctl arguments and read ranges;
//! * [`fault`]: seeded fault injection (drops, corruption, latency, chunking);
//! * [`serve`]: the real-time serving loop over a byte transport;
//! * [`link`]: in-memory links (threaded duplex pipes, deterministic `SimLink`);
//! * [`pty`]: the pseudo-terminal transport (Unix);
//! * [`tcp`]: the TCP listener transport;
//! * [`udp`]: the UDP transport (one packet per datagram);
//! * [`cam`]: the simulated cam ([`cam::SimCam`]) tying it all together.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod args;
pub mod board;
pub mod cam;
pub mod events;
pub mod fault;
pub mod font;
pub mod image;
pub mod link;
pub mod output;
pub mod profile;
#[cfg(unix)]
pub mod pty;
pub mod runtime;
pub mod script;
pub mod serve;
pub mod source;
pub mod stdio;
pub mod stream;
pub mod tcp;
pub mod udp;
pub mod user;
