//! Status codes carried by NAK packets. Unknown values are preserved.

use core::fmt;

use crate::error::{le16, need, DecodeError};

/// A NAK status.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Status(pub u16);

impl Status {
    /// Success.
    pub const SUCCESS: Status = Status(0);
    /// The backend failed (out of range, I/O error...).
    pub const FAILED: Status = Status(1);
    /// Malformed or unsupported request.
    pub const INVALID: Status = Status(2);
    /// Timed out.
    pub const TIMEOUT: Status = Status(3);
    /// Busy (lock not possible now).
    pub const BUSY: Status = Status(4);
    /// Payload CRC mismatch.
    pub const CHECKSUM: Status = Status(5);
    /// Sequence number mismatch.
    pub const SEQUENCE: Status = Status(6);
    /// Length larger than the negotiated max_payload.
    pub const OVERFLOW: Status = Status(7);
    /// Fragment error.
    pub const FRAGMENT: Status = Status(8);
    /// Unknown error.
    pub const UNKNOWN: Status = Status(9);

    /// Protocol name of a known status.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "SUCCESS",
            1 => "FAILED",
            2 => "INVALID",
            3 => "TIMEOUT",
            4 => "BUSY",
            5 => "CHECKSUM",
            6 => "SEQUENCE",
            7 => "OVERFLOW",
            8 => "FRAGMENT",
            9 => "UNKNOWN",
            _ => return None,
        })
    }

    /// The 2-byte NAK payload.
    pub const fn encode(self) -> [u8; 2] {
        self.0.to_le_bytes()
    }

    /// Decodes a NAK payload (extra bytes are ignored).
    pub fn decode(payload: &[u8]) -> Result<Status, DecodeError> {
        need("NAK status", payload, 2)?;
        Ok(Status(le16(payload, 0)))
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Status({})", self.0),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
