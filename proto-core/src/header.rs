//! The 10-byte packet header (section 1).

use crate::crc::crc16;
use crate::error::{le16, need, DecodeError};
use crate::{ChannelId, Flags, Opcode};

/// Size of a header on the wire.
pub const HEADER_SIZE: usize = 10;
/// Size of the payload CRC trailer.
pub const TRAILER_SIZE: usize = 4;
/// The two sync bytes as they appear on the wire.
pub const SYNC_BYTES: [u8; 2] = [0xAA, 0xD5];

/// A decoded header, without the sync word and CRC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Header {
    /// Sequence number.
    pub sequence: u8,
    /// Channel id (0 = system).
    pub channel: ChannelId,
    /// Flags.
    pub flags: Flags,
    /// Opcode.
    pub opcode: Opcode,
    /// Payload length.
    pub length: u16,
}

impl Header {
    /// Encodes the header; with `crc` off the hcrc field is 0, as the stock host writes it.
    pub fn encode(&self, crc: bool) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..2].copy_from_slice(&SYNC_BYTES);
        b[2] = self.sequence;
        b[3] = self.channel.0;
        b[4] = self.flags.0;
        b[5] = self.opcode.0;
        b[6..8].copy_from_slice(&self.length.to_le_bytes());
        let c = if crc { crc16(&b[..8]) } else { 0 };
        b[8..10].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// Parses the fields of a header (sync word and CRC are not checked;
    /// see [`Header::crc_ok`]).
    pub fn decode(buf: &[u8]) -> Result<Header, DecodeError> {
        need("header", buf, HEADER_SIZE)?;
        Ok(Header {
            sequence: buf[2],
            channel: ChannelId(buf[3]),
            flags: Flags(buf[4]),
            opcode: Opcode(buf[5]),
            length: le16(buf, 6),
        })
    }

    /// True when `buf` (at least 10 bytes) starts with the sync word and its hcrc matches.
    pub fn crc_ok(buf: &[u8]) -> bool {
        buf.len() >= HEADER_SIZE && buf[..2] == SYNC_BYTES && crc16(&buf[..8]) == le16(buf, 8)
    }

    /// Total packet size on the wire for this header.
    pub const fn wire_len(&self) -> usize {
        if self.length == 0 {
            HEADER_SIZE
        } else {
            HEADER_SIZE + self.length as usize + TRAILER_SIZE
        }
    }
}
