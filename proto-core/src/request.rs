//! Request payloads of CHANNEL_READ, CHANNEL_WRITE and CHANNEL_IOCTL, and the
//! u32 answer of CHANNEL_SIZE (section 3).
//!
//! Decoders check every length before reading (section 10: the stock
//! firmware does not), so a malformed request maps to an error the cam
//! answers with NAK INVALID.

use alloc::vec::Vec;

use crate::error::{le32, need, DecodeError};

/// CHANNEL_READ request: `length` bytes from `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ReadRequest {
    /// Start offset.
    pub offset: u32,
    /// Bytes requested.
    pub length: u32,
}

impl ReadRequest {
    /// Size of the payload on the wire.
    pub const LEN: usize = 8;

    /// Encodes the 8-byte payload.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..4].copy_from_slice(&self.offset.to_le_bytes());
        b[4..8].copy_from_slice(&self.length.to_le_bytes());
        b
    }

    /// Decodes the payload, which must be exactly 8 bytes:
    /// [`DecodeError::Short`] when shorter, [`DecodeError::BadLength`] when longer.
    pub fn decode(payload: &[u8]) -> Result<ReadRequest, DecodeError> {
        need("read request", payload, Self::LEN)?;
        if payload.len() != Self::LEN {
            return Err(DecodeError::BadLength {
                what: "read request",
                got: payload.len(),
            });
        }
        Ok(ReadRequest {
            offset: le32(payload, 0),
            length: le32(payload, 4),
        })
    }

    /// `offset + length`, or `None` when it overflows u32.
    pub const fn end_offset(&self) -> Option<u32> {
        self.offset.checked_add(self.length)
    }
}

/// CHANNEL_WRITE request: `data` to write at `offset`. On the wire: u32
/// offset, u32 length (= `data.len()`), data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct WriteRequest<'a> {
    /// Start offset.
    pub offset: u32,
    /// Bytes to write.
    pub data: &'a [u8],
}

impl<'a> WriteRequest<'a> {
    /// Size of the fixed part (offset and length).
    pub const HEADER_LEN: usize = 8;

    /// Most data bytes one request carries at a given `max_payload`.
    pub const fn max_data(max_payload: u16) -> usize {
        (max_payload as usize).saturating_sub(Self::HEADER_LEN)
    }

    /// Size of the encoded payload.
    pub const fn encoded_len(&self) -> usize {
        Self::HEADER_LEN + self.data.len()
    }

    /// Appends the payload to `out`. The length field is `data.len()`
    /// (payloads are at most 4082 bytes, so it always fits a u32 in practice;
    /// a longer slice is recorded as `u32::MAX`).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let len = u32::try_from(self.data.len()).unwrap_or(u32::MAX);
        out.reserve(self.encoded_len());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(self.data);
    }

    /// Decodes the payload. Errors: [`DecodeError::Short`] below 8 bytes;
    /// [`DecodeError::InvalidValue`] `"write length exceeds payload"` when the
    /// length field claims more bytes than follow, and `"write length below
    /// payload"` when fewer (trailing bytes).
    pub fn decode(payload: &'a [u8]) -> Result<WriteRequest<'a>, DecodeError> {
        need("write request", payload, Self::HEADER_LEN)?;
        let length = le32(payload, 4);
        let data = &payload[Self::HEADER_LEN..];
        let present = data.len() as u64;
        if u64::from(length) > present {
            return Err(DecodeError::InvalidValue {
                what: "write length exceeds payload",
                value: length.into(),
            });
        }
        if u64::from(length) < present {
            return Err(DecodeError::InvalidValue {
                what: "write length below payload",
                value: length.into(),
            });
        }
        Ok(WriteRequest {
            offset: le32(payload, 0),
            data,
        })
    }

    /// `offset + data.len()`, or `None` when it overflows u32.
    pub fn end_offset(&self) -> Option<u32> {
        self.offset
            .checked_add(u32::try_from(self.data.len()).ok()?)
    }
}

/// CHANNEL_IOCTL request: a u32 request code and its raw arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct IoctlRequest<'a> {
    /// Request code (per channel).
    pub request: u32,
    /// Argument bytes (usually u32 values).
    pub args: &'a [u8],
}

impl<'a> IoctlRequest<'a> {
    /// Size of the fixed part (the request code).
    pub const HEADER_LEN: usize = 4;

    /// Size of the encoded payload.
    pub const fn encoded_len(&self) -> usize {
        Self::HEADER_LEN + self.args.len()
    }

    /// Appends the payload to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.extend_from_slice(&self.request.to_le_bytes());
        out.extend_from_slice(self.args);
    }

    /// Decodes the payload; needs at least the 4-byte request code.
    pub fn decode(payload: &'a [u8]) -> Result<IoctlRequest<'a>, DecodeError> {
        need("ioctl request", payload, Self::HEADER_LEN)?;
        Ok(IoctlRequest {
            request: le32(payload, 0),
            args: &payload[Self::HEADER_LEN..],
        })
    }

    /// The `index`-th u32 argument, or `None` when the args are too short.
    pub fn arg_u32(&self, index: usize) -> Option<u32> {
        let at = index.checked_mul(4)?;
        let b = self.args.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Encodes a single-u32 payload (the CHANNEL_SIZE answer).
pub const fn encode_u32(value: u32) -> [u8; 4] {
    value.to_le_bytes()
}

/// Decodes a single-u32 payload (the CHANNEL_SIZE answer); needs at least 4
/// bytes, extra bytes are ignored.
pub fn decode_u32(payload: &[u8]) -> Result<u32, DecodeError> {
    need("u32", payload, 4)?;
    Ok(le32(payload, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_layout() {
        let r = ReadRequest {
            offset: 0,
            length: 4096,
        };
        assert_eq!(r.encode(), [0, 0, 0, 0, 0, 0x10, 0, 0]);
        assert_eq!(ReadRequest::decode(&r.encode()), Ok(r));
        assert_eq!(
            ReadRequest::decode(&[0; 7]),
            Err(DecodeError::Short {
                what: "read request",
                need: 8,
                got: 7
            })
        );
        assert_eq!(
            ReadRequest::decode(&[0; 9]),
            Err(DecodeError::BadLength {
                what: "read request",
                got: 9
            })
        );
        assert_eq!(r.end_offset(), Some(4096));
        assert_eq!(
            ReadRequest {
                offset: u32::MAX,
                length: 1
            }
            .end_offset(),
            None
        );
        assert_eq!(
            ReadRequest {
                offset: u32::MAX,
                length: 0
            }
            .end_offset(),
            Some(u32::MAX)
        );
    }

    #[test]
    fn write_layout() {
        let w = WriteRequest {
            offset: 0,
            data: b"print('hi')\n",
        };
        let mut out = Vec::new();
        w.encode_into(&mut out);
        let want = [
            0, 0, 0, 0, 0x0c, 0, 0, 0, 0x70, 0x72, 0x69, 0x6e, 0x74, 0x28, 0x27, 0x68, 0x69, 0x27,
            0x29, 0x0a,
        ];
        assert_eq!(out, want);
        assert_eq!(w.encoded_len(), 20);
        assert_eq!(WriteRequest::decode(&out), Ok(w));
        assert_eq!(w.end_offset(), Some(12));
        assert_eq!(
            WriteRequest {
                offset: u32::MAX - 1,
                data: b"ab"
            }
            .end_offset(),
            None
        );
        assert_eq!(WriteRequest::max_data(50), 42);
        assert_eq!(WriteRequest::max_data(3), 0);
    }

    #[test]
    fn write_malformed() {
        assert!(matches!(
            WriteRequest::decode(&[0; 7]),
            Err(DecodeError::Short { .. })
        ));
        // Claims 4 bytes, carries 3.
        assert_eq!(
            WriteRequest::decode(&[0, 0, 0, 0, 4, 0, 0, 0, 1, 2, 3]),
            Err(DecodeError::InvalidValue {
                what: "write length exceeds payload",
                value: 4
            })
        );
        // Claims u32::MAX, carries nothing.
        assert_eq!(
            WriteRequest::decode(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::InvalidValue {
                what: "write length exceeds payload",
                value: 0xffff_ffff
            })
        );
        // Claims 1 byte, carries 2.
        assert_eq!(
            WriteRequest::decode(&[0, 0, 0, 0, 1, 0, 0, 0, 1, 2]),
            Err(DecodeError::InvalidValue {
                what: "write length below payload",
                value: 1
            })
        );
        assert_eq!(
            WriteRequest::decode(&[5, 0, 0, 0, 0, 0, 0, 0]),
            Ok(WriteRequest {
                offset: 5,
                data: &[]
            })
        );
    }

    #[test]
    fn ioctl_layout() {
        let args = [0x40, 1, 0, 0, 0xf0, 0, 0, 0];
        let i = IoctlRequest {
            request: 2,
            args: &args,
        };
        let mut out = Vec::new();
        i.encode_into(&mut out);
        assert_eq!(out, [2, 0, 0, 0, 0x40, 1, 0, 0, 0xf0, 0, 0, 0]);
        assert_eq!(IoctlRequest::decode(&out), Ok(i));
        assert_eq!(i.arg_u32(0), Some(320));
        assert_eq!(i.arg_u32(1), Some(240));
        assert_eq!(i.arg_u32(2), None);
        assert_eq!(i.arg_u32(usize::MAX), None);
        assert_eq!(
            IoctlRequest::decode(&[2, 0, 0, 0]),
            Ok(IoctlRequest {
                request: 2,
                args: &[]
            })
        );
        assert!(IoctlRequest::decode(&[2, 0, 0]).is_err());
    }

    #[test]
    fn size_answer() {
        assert_eq!(encode_u32(1234), [0xd2, 0x04, 0, 0]);
        assert_eq!(decode_u32(&[0xd2, 0x04, 0, 0]), Ok(1234));
        assert!(decode_u32(&[0xd2, 0x04, 0]).is_err());
    }
}
