//! The one error type of the driver, mirroring the stock `openmv` exception
//! hierarchy (`OMVException` with `TimeoutException`, `ChecksumException`,
//! `SequenceException`) with one variant per distinct cause.

use std::io;
use std::time::Duration;

use omv_proto::host::RequestError;
use omv_proto::{DecodeError, Opcode, Status};

use crate::image::ImageError;
use crate::symbols::SymbolError;

/// Result of every fallible driver call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a [`Camera`](crate::Camera) call can fail with.
///
/// Nothing the cam sends makes the driver panic or exit: malformed or
/// unexpected data becomes one of these variants.
///
/// The stock package raises `TimeoutException`, `ChecksumException` and
/// `SequenceException` for the conditions that make it resync and retry;
/// here they are [`Error::Timeout`], [`Error::Checksum`] and
/// [`Error::Sequence`], and [`Error::is_retryable`] says which errors the
/// retry helper retries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No packet of the response arrived within the timeout (stock
    /// `TimeoutException`; a NAK TIMEOUT is [`Error::Nak`] and retryable too).
    #[error("{op}: no response from the cam within {timeout:?}")]
    Timeout {
        /// The request that timed out.
        op: Opcode,
        /// The per-packet timeout in force.
        timeout: Duration,
    },
    /// The cam answered NAK CHECKSUM: it received the request corrupted
    /// (stock `ChecksumException`).
    #[error("{op}: the cam received the request with a bad checksum (NAK CHECKSUM)")]
    Checksum {
        /// The request.
        op: Opcode,
    },
    /// The cam answered NAK SEQUENCE: the sequence counters disagree
    /// (stock `SequenceException`).
    #[error("{op}: the cam rejected the request's sequence number (NAK SEQUENCE)")]
    Sequence {
        /// The request.
        op: Opcode,
    },
    /// The cam refused the request with another status (INVALID, FAILED,
    /// BUSY, TIMEOUT, ...).
    #[error("{op} on channel {channel}: the cam answered NAK {status}")]
    Nak {
        /// The NAK status.
        status: Status,
        /// The request.
        op: Opcode,
        /// The request's channel.
        channel: u8,
    },
    /// The response did not belong to the request (a desynchronised link).
    #[error("{op}: the cam answered with opcode {got}")]
    UnexpectedResponse {
        /// The request.
        op: Opcode,
        /// The opcode of the response.
        got: Opcode,
    },
    /// The answer carried more bytes than the request can return (a read
    /// answered with more than the length asked for, fragments that never
    /// end): a desynchronised link or a misbehaving cam. Nothing of it is
    /// returned.
    #[error("{op}: the cam's answer carried {received} bytes or more, at most {limit} expected")]
    ResponseTooLong {
        /// The request.
        op: Opcode,
        /// The most data bytes the request can return.
        limit: usize,
        /// Data bytes received when the bound was passed.
        received: usize,
    },
    /// Another failure of the protocol endpoint, as it reported it.
    #[error("{op}: {source}")]
    Request {
        /// The request.
        op: Opcode,
        /// The endpoint's error.
        #[source]
        source: RequestError,
    },
    /// A packet of the answer was lost and, with ACKs off, will not be
    /// resent: the answer is incomplete.
    #[error("{op}: a packet of the cam's answer was lost")]
    LostPacket {
        /// The request.
        op: Opcode,
    },
    /// PROTO_SYNC got no answer after every attempt: the cam is silent or
    /// not speaking this protocol.
    #[error("{port}: no answer to SYNC after {attempts} attempts of {timeout:?} (is the cam connected and in protocol mode?)")]
    ResyncFailed {
        /// The port name.
        port: String,
        /// SYNC attempts made.
        attempts: u8,
        /// Per-attempt timeout.
        timeout: Duration,
    },
    /// The camera is not connected (call [`Camera::connect`](crate::Camera::connect)).
    #[error("not connected to a cam")]
    NotConnected,
    /// Opening, reading or writing the port failed.
    #[error("{port}: {source}")]
    Io {
        /// The port name (device path, address or link name).
        port: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A caller-supplied argument is out of range (too long, missing
    /// resolution, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A response payload could not be decoded.
    #[error("malformed {what} from the cam: {source}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's complaint.
        #[source]
        source: DecodeError,
    },
    /// The cam does not provide a feature (e.g. SYS_MEMORY before firmware
    /// 4.8, or a built-in channel missing from its channel list).
    #[error("not supported by this cam: {0}")]
    Unsupported(String),
    /// No channel with that name exists on the cam.
    #[error("no channel named {0:?} on the cam")]
    NoSuchChannel(String),
    /// A frame's image data could not be converted.
    #[error("frame conversion: {0}")]
    Image(#[from] ImageError),
    /// A firmware ELF could not be read for symbols.
    #[error("firmware symbols: {0}")]
    Symbols(#[from] SymbolError),
    /// Any other failure of the session (a read across a soft reboot, an
    /// operation past its deadline, a cancelled operation, an answer
    /// longer than asked for, ...).
    #[error(transparent)]
    Session(omv_session::Error),
}

impl Error {
    /// True for the failures the stock host resyncs and retries on: a
    /// timeout, NAK CHECKSUM / SEQUENCE / TIMEOUT, and a response that does
    /// not match its request (another opcode, or more bytes than asked for).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Timeout { .. }
                | Error::Checksum { .. }
                | Error::Sequence { .. }
                | Error::UnexpectedResponse { .. }
                | Error::ResponseTooLong { .. }
                | Error::LostPacket { .. }
                | Error::Nak {
                    status: Status::TIMEOUT,
                    ..
                }
        )
    }

    /// The NAK status, for errors that carry one.
    pub fn status(&self) -> Option<Status> {
        match self {
            Error::Nak { status, .. } => Some(*status),
            Error::Checksum { .. } => Some(Status::CHECKSUM),
            Error::Sequence { .. } => Some(Status::SEQUENCE),
            _ => None,
        }
    }

    /// True when the cam answered NAK with `status`.
    pub fn is_nak(&self, status: Status) -> bool {
        self.status() == Some(status)
    }

    /// Maps a session error (`port` names the port in messages).
    pub(crate) fn from_session(e: omv_session::Error, port: &str) -> Error {
        use omv_session::Error as S;
        match e {
            S::Timeout { op, timeout, .. } => Error::Timeout { op, timeout },
            S::Checksum { op } => Error::Checksum { op },
            S::Sequence { op } => Error::Sequence { op },
            S::Nak {
                status,
                op,
                channel,
            } => Error::Nak {
                status,
                op,
                channel,
            },
            S::UnexpectedResponse { op, got } => Error::UnexpectedResponse { op, got },
            S::LostPacket { op } => Error::LostPacket { op },
            S::ResyncFailed { attempts, timeout } => Error::ResyncFailed {
                port: port.to_string(),
                attempts,
                timeout,
            },
            S::NotConnected => Error::NotConnected,
            S::InvalidArgument(s) => Error::InvalidArgument(s),
            S::Busy => Error::InvalidArgument("another request is already in flight".into()),
            S::Malformed { what, source } => Error::Malformed { what, source },
            S::Unsupported(s) => Error::Unsupported(s),
            S::NoSuchChannel(s) => Error::NoSuchChannel(s),
            S::Overflow { op, asked, got, .. } => Error::ResponseTooLong {
                op,
                limit: asked as usize,
                received: got,
            },
            S::Endpoint { op, source } => Error::Request { op, source },
            other => Error::Session(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omv_session::Error as S;

    #[test]
    fn mapping_and_messages() {
        let e = Error::from_session(
            S::Checksum {
                op: Opcode::CHANNEL_READ,
            },
            "p",
        );
        assert!(e.is_retryable());
        assert_eq!(
            e.to_string(),
            "CHANNEL_READ: the cam received the request with a bad checksum (NAK CHECKSUM)"
        );
        let e = Error::from_session(
            S::Nak {
                status: Status::BUSY,
                op: Opcode::CHANNEL_LOCK,
                channel: 3,
            },
            "p",
        );
        assert!(!e.is_retryable());
        assert!(e.is_nak(Status::BUSY));
        assert_eq!(
            e.to_string(),
            "CHANNEL_LOCK on channel 3: the cam answered NAK BUSY"
        );
        let e = Error::from_session(
            S::Timeout {
                op: Opcode::SYS_INFO,
                channel: 0,
                offset: None,
                timeout: Duration::from_secs(1),
            },
            "p",
        );
        assert!(e.is_retryable());
        assert_eq!(
            e.to_string(),
            "SYS_INFO: no response from the cam within 1s"
        );
        let e = Error::from_session(
            S::ResyncFailed {
                attempts: 3,
                timeout: Duration::from_secs(1),
            },
            "/dev/x",
        );
        assert!(e.to_string().starts_with("/dev/x: "), "{e}");
        let e = Error::from_session(
            S::Rebooted {
                op: Opcode::CHANNEL_READ,
                channel: 5,
                offset: 10,
            },
            "p",
        );
        assert!(matches!(e, Error::Session(S::Rebooted { .. })), "{e}");
        assert!(!e.is_retryable());
    }
}
