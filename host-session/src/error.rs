//! [`Error`]: why an operation failed, naming the step (opcode, channel,
//! offset) that failed.

use alloc::string::String;

use omv_proto::host::RequestError;
use omv_proto::{DecodeError, Duration, Opcode, Status};

/// Result of the session's operations.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Everything an operation can fail with. Nothing the cam sends makes the
/// session panic: malformed or unexpected data becomes one of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No packet of the answer came within the per-packet timeout.
    #[error("{op} on channel {channel}{}: no response from the cam within {timeout:?}", at(*offset))]
    Timeout {
        /// The request.
        op: Opcode,
        /// Its channel.
        channel: u8,
        /// The offset of a read or write.
        offset: Option<u32>,
        /// The per-packet timeout.
        timeout: Duration,
    },
    /// NAK CHECKSUM: the cam received the request corrupted.
    #[error("{op}: the cam received the request with a bad checksum (NAK CHECKSUM)")]
    Checksum {
        /// The request.
        op: Opcode,
    },
    /// NAK SEQUENCE: the sequence counters disagree.
    #[error("{op}: the cam rejected the request's sequence number (NAK SEQUENCE)")]
    Sequence {
        /// The request.
        op: Opcode,
    },
    /// Another NAK status (INVALID, FAILED, BUSY, TIMEOUT, ...).
    #[error("{op} on channel {channel}: the cam answered NAK {status}")]
    Nak {
        /// The status.
        status: Status,
        /// The request.
        op: Opcode,
        /// Its channel.
        channel: u8,
    },
    /// The answer carried another opcode than the request.
    #[error("{op}: the cam answered with opcode {got}")]
    UnexpectedResponse {
        /// The request.
        op: Opcode,
        /// The answer's opcode.
        got: Opcode,
    },
    /// With ACKs off, a packet of the answer was lost (never resent).
    #[error("{op}: a packet of the cam's answer was lost")]
    LostPacket {
        /// The request.
        op: Opcode,
    },
    /// PROTO_SYNC got no answer after every attempt (and after the port
    /// was reopened, when the driver could).
    #[error("no answer to SYNC after {attempts} attempts of {timeout:?} (is the cam connected and in protocol mode?)")]
    ResyncFailed {
        /// SYNC attempts in the last round.
        attempts: u8,
        /// The per-attempt timeout.
        timeout: Duration,
    },
    /// Not connected.
    #[error("not connected to a cam")]
    NotConnected,
    /// An operation is already in flight (one at a time).
    #[error("another operation is in flight")]
    Busy,
    /// A caller's argument is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A payload could not be decoded.
    #[error("malformed {what} from the cam: {source}")]
    Malformed {
        /// What was decoded.
        what: &'static str,
        /// The decoder's complaint.
        #[source]
        source: DecodeError,
    },
    /// The answer to a read held more bytes than asked for.
    #[error(
        "{op} on channel {channel} at offset {offset}: asked for {asked} bytes, the cam sent {got}"
    )]
    Overflow {
        /// The request.
        op: Opcode,
        /// Its channel.
        channel: u8,
        /// The read's offset.
        offset: u32,
        /// Bytes asked for.
        asked: u32,
        /// Bytes received.
        got: usize,
    },
    /// The cam soft-rebooted (a script ended) during a read: its content
    /// may have changed, so the parts cannot be joined.
    #[error("{op} on channel {channel} at offset {offset}: the cam rebooted during the read")]
    Rebooted {
        /// The request.
        op: Opcode,
        /// Its channel.
        channel: u8,
        /// Bytes transferred before the reboot.
        offset: u32,
    },
    /// The operation's deadline passed.
    #[error("{op} on channel {channel}: not done within its deadline of {deadline:?} ({done} bytes done)")]
    DeadlineExceeded {
        /// The request in flight.
        op: Opcode,
        /// Its channel.
        channel: u8,
        /// Bytes transferred.
        done: u64,
        /// The deadline.
        deadline: Duration,
    },
    /// The driver cancelled the operation.
    #[error("{op}: cancelled")]
    Cancelled {
        /// The request in flight.
        op: Opcode,
    },
    /// Another failure of the protocol endpoint, as it reported it.
    #[error("{op}: {source}")]
    Endpoint {
        /// The request.
        op: Opcode,
        /// The endpoint's error.
        #[source]
        source: RequestError,
    },
    /// The cam lacks a feature (SYS_MEMORY before 4.8, a built-in channel).
    #[error("not supported by this cam: {0}")]
    Unsupported(String),
    /// No channel of that name.
    #[error("no channel named {0:?} on the cam")]
    NoSuchChannel(String),
    /// Opening, reading or writing the port failed (a driver's error).
    #[cfg(feature = "std")]
    #[error("{port}: {source}")]
    Io {
        /// The port name (device path, address or link name).
        port: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A frame's image data could not be converted.
    #[cfg(feature = "image")]
    #[error("frame conversion: {0}")]
    Image(#[from] crate::image::ImageError),
    /// A firmware ELF could not be read for symbols.
    #[cfg(feature = "symbols")]
    #[error("firmware symbols: {0}")]
    Symbols(#[from] crate::symbols::SymbolError),
}

fn at(offset: Option<u32>) -> String {
    match offset {
        Some(o) => alloc::format!(" at offset {o}"),
        None => String::new(),
    }
}

impl Error {
    /// True for failures worth a resync and another try: a timeout, NAK
    /// CHECKSUM / SEQUENCE / TIMEOUT, a mismatched answer, a lost packet, a
    /// handshake whose caps the cam had not taken.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Timeout { .. }
                | Error::Checksum { .. }
                | Error::Sequence { .. }
                | Error::UnexpectedResponse { .. }
                | Error::LostPacket { .. }
                | Error::Nak {
                    status: Status::TIMEOUT,
                    ..
                }
                | Error::Endpoint {
                    source: RequestError::CapsNotApplied { .. },
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

    /// True when the cam answered NAK `status`.
    pub fn is_nak(&self, status: Status) -> bool {
        self.status() == Some(status)
    }

    /// Maps an endpoint error of request `op` on `channel` (at `offset`).
    pub(crate) fn from_request(
        e: RequestError,
        op: Opcode,
        channel: u8,
        offset: Option<u32>,
    ) -> Error {
        match e {
            RequestError::Nak(Status::CHECKSUM) => Error::Checksum { op },
            RequestError::Nak(Status::SEQUENCE) => Error::Sequence { op },
            RequestError::Nak(status) => Error::Nak {
                status,
                op,
                channel,
            },
            RequestError::Timeout(timeout) => Error::Timeout {
                op,
                channel,
                offset,
                timeout,
            },
            RequestError::ResyncFailed { attempts } => Error::ResyncFailed {
                attempts,
                timeout: Duration::ZERO,
            },
            RequestError::UnexpectedOpcode { got, .. } => Error::UnexpectedResponse { op, got },
            RequestError::LostPacket { .. } => Error::LostPacket { op },
            RequestError::Malformed(source) => Error::Malformed {
                what: "response",
                source,
            },
            RequestError::NotConnected => Error::NotConnected,
            RequestError::Busy => Error::Busy,
            RequestError::PayloadTooLarge { len, max } => Error::InvalidArgument(alloc::format!(
                "{op} payload of {len} bytes exceeds the negotiated max_payload of {max}"
            )),
            RequestError::InvalidCommand(why) => {
                Error::InvalidArgument(alloc::format!("{op} on channel {channel}: {why}"))
            }
            // The endpoint's bound on an answer (host::response_limit).
            RequestError::ResponseTooLong {
                limit, received, ..
            } => Error::Overflow {
                op,
                channel,
                offset: offset.unwrap_or(0),
                asked: u32::try_from(limit).unwrap_or(u32::MAX),
                got: received,
            },
            // RequestError is non-exhaustive: a future cause, reported as is.
            other => Error::Endpoint { op, source: other },
        }
    }

    pub(crate) fn malformed(what: &'static str) -> impl FnOnce(DecodeError) -> Error {
        move |source| Error::Malformed { what, source }
    }
}
