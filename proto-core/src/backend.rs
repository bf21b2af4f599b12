//! The channel backend: what a cam channel implements (section 9).
//!
//! The [`device`](crate::device) endpoint dispatches channel requests to a
//! table of `Box<dyn ChannelBackend>`. Every method has a default meaning
//! "not implemented", which makes the matching request NAK INVALID (or, for
//! `poll`, report "not ready"). [`ChannelBackend::ops`] says which methods
//! are implemented, so a dynamically registered channel's flags can be
//! derived the way the firmware derives them from a Python object.

use crate::shape::Shape;
use crate::{Instant, Status};

/// The methods a backend implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Ops(pub u16);

crate::bits::bit_set!(Ops);

impl Ops {
    /// `read` (and possibly `readp`).
    pub const READ: Ops = Ops(1 << 0);
    /// `write`.
    pub const WRITE: Ops = Ops(1 << 1);
    /// `lock` and `unlock`.
    pub const LOCK: Ops = Ops(1 << 2);
    /// `size`.
    pub const SIZE: Ops = Ops(1 << 3);
    /// `shape`.
    pub const SHAPE: Ops = Ops(1 << 4);
    /// `poll`.
    pub const POLL: Ops = Ops(1 << 5);
    /// `ioctl`.
    pub const IOCTL: Ops = Ops(1 << 6);
    /// `readp` (zero-copy read).
    pub const READP: Ops = Ops(1 << 7);
    /// `flush`.
    pub const FLUSH: Ops = Ops(1 << 8);
}

/// Why a backend refused a request; maps to a NAK status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The backend does not implement this method (NAK INVALID).
    #[error("not supported by this channel")]
    Unsupported,
    /// Bad arguments, e.g. an unknown ioctl or wrong argument size (NAK INVALID).
    #[error("invalid request")]
    Invalid,
    /// Out of range or backend failure (NAK FAILED).
    #[error("request failed")]
    Failed,
    /// Not possible now, e.g. lock with no data (NAK BUSY).
    #[error("busy")]
    Busy,
    /// The backend did not answer in time, e.g. a script's backend that
    /// hangs (NAK TIMEOUT).
    #[error("the backend did not answer in time")]
    Timeout,
    /// The answer is not ready yet (the backend asked someone else, e.g. a
    /// script in another process). The endpoint keeps the request and calls
    /// the same method again, with the same arguments, each time it is
    /// driven (input, timeout, transmit poll) until the backend gives
    /// another answer; the backend's [`ChannelBackend::next_deadline`] must
    /// ask to be driven meanwhile. A new request from the host abandons the
    /// kept one. Never sent on the wire.
    #[error("answer pending")]
    Pending,
}

impl ChannelError {
    /// The NAK status a cam answers with.
    pub const fn status(self) -> Status {
        match self {
            ChannelError::Unsupported | ChannelError::Invalid => Status::INVALID,
            ChannelError::Failed => Status::FAILED,
            ChannelError::Busy => Status::BUSY,
            ChannelError::Timeout => Status::TIMEOUT,
            // Never sent: the endpoint waits for the real answer.
            ChannelError::Pending => Status::BUSY,
        }
    }
}

/// An event a channel wants the cam to send (see [`ChannelBackend::poll_event`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelEventOut {
    /// Event id, or `None` for a NOTIFY (no payload).
    pub event: Option<u16>,
    /// Ask the host to acknowledge the event.
    pub ack_req: bool,
}

/// A cam channel's backend. See the module documentation.
pub trait ChannelBackend: Send {
    /// Which methods this backend implements.
    fn ops(&self) -> Ops;

    /// Fixed flags for built-in channels; `None` derives them from [`ops`](Self::ops).
    fn flags(&self) -> Option<crate::ChannelFlags> {
        None
    }

    /// True when the channel has data ready (CHANNEL_POLL).
    fn poll(&mut self, _now: Instant) -> bool {
        false
    }

    /// Locks the channel's data for an atomic multi-packet read.
    fn lock(&mut self) -> Result<(), ChannelError> {
        Err(ChannelError::Unsupported)
    }

    /// Releases a lock.
    fn unlock(&mut self) -> Result<(), ChannelError> {
        Err(ChannelError::Unsupported)
    }

    /// Bytes available.
    fn size(&mut self) -> Result<u32, ChannelError> {
        Err(ChannelError::Unsupported)
    }

    /// Up to four u32 whose meaning is per channel.
    fn shape(&mut self) -> Result<Shape, ChannelError> {
        Err(ChannelError::Unsupported)
    }

    /// Copies up to `buf.len()` bytes starting at `offset` into `buf` and
    /// returns how many were copied. Returning fewer than asked ends the
    /// response early; returning 0 for a non-empty request is an error.
    fn read(&mut self, _offset: u32, _buf: &mut [u8]) -> Result<usize, ChannelError> {
        Err(ChannelError::Unsupported)
    }

    /// Zero-copy read: a view of up to `len` bytes at `offset`.
    fn readp(&mut self, _offset: u32, _len: u32) -> Result<&[u8], ChannelError> {
        Err(ChannelError::Unsupported)
    }

    /// Writes `data` at `offset`.
    fn write(&mut self, _offset: u32, _data: &[u8]) -> Result<(), ChannelError> {
        Err(ChannelError::Unsupported)
    }

    /// A channel-specific request with its raw argument bytes.
    fn ioctl(&mut self, _request: u32, _args: &[u8]) -> Result<(), ChannelError> {
        Err(ChannelError::Unsupported)
    }

    /// Flushes buffered writes.
    fn flush(&mut self) -> Result<(), ChannelError> {
        Err(ChannelError::Unsupported)
    }

    /// Largest read piece (packet payload) for this channel, below the
    /// endpoint's own limit: the firmware answers reads of callback
    /// channels (Python backends) in pieces of at most 512 bytes. `None`:
    /// the endpoint's limit.
    fn read_piece(&self) -> Option<u16> {
        None
    }

    /// Called by the protocol reset (SYNC, retransmit give-up): release locks.
    fn reset(&mut self) {}

    /// An event the channel wants sent now (stdout NOTIFY, frame ready...).
    /// Called on every input and timeout; return `None` when there is none.
    fn poll_event(&mut self, _now: Instant) -> Option<ChannelEventOut> {
        None
    }

    /// When the channel next wants [`poll_event`](Self::poll_event) called
    /// even if nothing arrives (e.g. the stdout 50 ms NOTIFY timer).
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
}

/// Flags derived from a backend's ops, as the firmware derives them for a
/// registered channel: READ if it reads, WRITE if it writes, LOCK if it
/// locks, plus DYNAMIC.
pub fn derived_flags(ops: Ops) -> crate::ChannelFlags {
    use crate::ChannelFlags as F;
    let mut f = F::DYNAMIC;
    if ops.contains(Ops::READ) || ops.contains(Ops::READP) {
        f = f | F::READ;
    }
    if ops.contains(Ops::WRITE) {
        f = f | F::WRITE;
    }
    if ops.contains(Ops::LOCK) {
        f = f | F::LOCK;
    }
    f
}
