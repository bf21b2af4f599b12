//! `proto-core`: the sans-IO engine of the OpenMV cam protocol (version 1.0.x).
//!
//! The crate consumes bytes and timestamps and produces packets, events and
//! request outcomes. It never touches a port, a clock or a thread: drivers
//! (see the `host-blocking` and `sim-device` crates) do the I/O and pass the
//! current time in as an [`Instant`].
//!
//! Layers, one module each, named as the protocol document names them:
//!
//! * wire types: [`Opcode`], [`Flags`], [`status`], [`channel`], [`event`];
//! * [`crc`] (header CRC-16 and payload CRC-32), [`header`], [`packet`];
//! * [`framer`]: bytes in arbitrary chunks in, packets out, per role;
//! * payload codecs: [`caps`], [`stats`], [`version`], [`sysinfo`],
//!   [`memory`], [`poll`], [`request`], [`shape`], [`frame`], [`profile`];
//! * [`fault`]: seeded packet fault decisions for simulations and tests;
//! * endpoints: [`host`] (the PC side) and [`device`] (the cam side), with
//!   [`backend`] the trait a cam channel implements.
#![cfg_attr(not(feature = "std"), no_std)]
// Unsafe code only in the crc module (std::arch intrinsics, and the copy
// made in one pass with the CRC).
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![warn(unnameable_types)]

extern crate alloc;

pub mod backend;
mod bits;
pub mod caps;
pub mod channel;
pub mod crc;
pub mod device;
mod error;
pub mod event;
pub mod fault;
mod flags;
pub mod frame;
pub mod framer;
pub mod header;
pub mod host;
pub mod ioctl;
pub mod memory;
mod opcode;
pub mod packet;
pub mod poll;
pub mod profile;
pub mod request;
pub mod rng;
pub mod shape;
pub mod stats;
pub mod status;
pub mod sysinfo;
mod time;
mod txqueue;
pub mod version;

pub use channel::{ChannelFlags, ChannelId};
pub use error::DecodeError;
pub use flags::Flags;
pub use header::Header;
pub use opcode::Opcode;
pub use packet::Packet;
pub use status::Status;
pub use time::{Duration, Instant};

/// Smallest `max_payload` a peer may negotiate (the firmware's value; the
/// Python package uses 52, which is also accepted).
pub const MIN_PAYLOAD: u16 = 50;
/// Largest `max_payload` the protocol allows: the header's length field is
/// a u16. A host accepts any value a cam announces up to this (PROTOCOL.md
/// section 1); a cam offers its packet buffer minus [`PACKET_OVERHEAD`]
/// (see [`payload_for_buffer`]).
pub const MAX_PAYLOAD: u16 = u16::MAX;
/// Bytes a packet with a payload adds to it: the 10-byte header and the
/// 4-byte payload CRC.
pub const PACKET_OVERHEAD: u16 = 14;
/// The firmware's default largest payload: a 4096-byte packet buffer, as
/// on most boards (512 bytes on the M4/M7/H7, 8192 on the N6 and AE3).
pub const FIRMWARE_DEFAULT_PAYLOAD: u16 = payload_for_buffer(4096);

/// The largest payload a cam with a packet buffer of `buffer` bytes offers
/// (`buffer - 14`; 0 for a buffer too small for a header and a CRC).
pub const fn payload_for_buffer(buffer: u16) -> u16 {
    buffer.saturating_sub(PACKET_OVERHEAD)
}
/// Default `max_payload` of the stock Python host before negotiation.
pub const HOST_DEFAULT_PAYLOAD: u16 = 52;

/// The firmware's shortest time between two successful CHANNEL_LOCKs (of
/// any channel: it keeps one timestamp); a lock sooner is NAK BUSY.
pub const LOCK_INTERVAL: Duration = Duration::from_millis(10);
