//! `sim-device`: a simulated OpenMV cam's channel backends and content.
//!
//! Each module holds one concept:
//!
//! * [`output`]: the cam's stdout text ring buffer, shared between the
//!   script runner and the stdout channel;
//! * [`script`]: running uploaded scripts ([`script::PythonRunner`] with a
//!   real interpreter, [`script::InProcessRunner`] for tests);
//! * [`events`]: the queue of system events (SOFT_REBOOT) backends raise;
//! * [`stdio`]: the stdin and stdout channels;
//! * [`image`]: a small RGB image with RGB565/JPEG/PNG conversions;
//! * [`font`]: a tiny bitmap font for the frame counter;
//! * [`source`]: frame sources (test pattern, image directory);
//! * [`stream`]: the stream channel;
//! * [`args`]: checked decoding of ioctl arguments and read ranges.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod args;
pub mod events;
pub mod font;
pub mod image;
pub mod output;
pub mod script;
pub mod source;
pub mod stdio;
pub mod stream;
