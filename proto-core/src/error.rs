//! Errors of the payload codecs.

/// A payload (or header) could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the layout needs.
    #[error("{what}: need {need} bytes, got {got}")]
    Short {
        /// What was being decoded.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        got: usize,
    },
    /// A length that must be a multiple of a record size, or an exact size, is not.
    #[error("{what}: bad length {got}")]
    BadLength {
        /// What was being decoded.
        what: &'static str,
        /// Bytes present.
        got: usize,
    },
    /// A field holds a value the layout forbids.
    #[error("{what}: invalid value {value:#x}")]
    InvalidValue {
        /// Which field.
        what: &'static str,
        /// The offending value.
        value: u64,
    },
}

/// Checks `buf` has at least `need` bytes.
pub(crate) fn need(what: &'static str, buf: &[u8], need: usize) -> Result<(), DecodeError> {
    if buf.len() < need {
        Err(DecodeError::Short {
            what,
            need,
            got: buf.len(),
        })
    } else {
        Ok(())
    }
}

/// Little-endian u16 at `at`; the caller has checked the length.
pub(crate) fn le16(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}

/// Little-endian u32 at `at`; the caller has checked the length.
pub(crate) fn le32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// Little-endian u64 at `at`; the caller has checked the length.
pub(crate) fn le64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}
