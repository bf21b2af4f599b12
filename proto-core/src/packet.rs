//! Whole packets: header, payload and trailer.

use alloc::vec::Vec;
use bytes::Bytes;

use crate::crc::crc32_extend;
use crate::header::{Header, HEADER_SIZE, TRAILER_SIZE};
use crate::{ChannelId, Flags, Opcode};

/// A received or to-be-sent packet.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Packet {
    /// The header; `header.length` equals `payload.len()`.
    pub header: Header,
    /// The payload (possibly empty).
    pub payload: Bytes,
}

impl Packet {
    /// Builds a packet; the header length is taken from `payload`.
    ///
    /// Never panics: for a payload longer than `u16::MAX` (which no
    /// endpoint builds: payloads stay within max_payload) the length field
    /// saturates.
    pub fn new(
        sequence: u8,
        channel: ChannelId,
        flags: Flags,
        opcode: Opcode,
        payload: Bytes,
    ) -> Packet {
        let length = u16::try_from(payload.len()).unwrap_or(u16::MAX);
        Packet {
            header: Header {
                sequence,
                channel,
                flags,
                opcode,
                length,
            },
            payload,
        }
    }

    /// Appends the wire form of this packet to `out`.
    pub fn encode_into(&self, crc: bool, out: &mut Vec<u8>) {
        encode_packet(&self.header, &self.payload, crc, out);
    }

    /// The wire form of this packet.
    pub fn to_wire(&self, crc: bool) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.header.wire_len());
        self.encode_into(crc, &mut v);
        v
    }
}

/// Appends a packet with `header` (whose length field is replaced by
/// `payload.len()`) and `payload` to `out`. With `crc` off both CRC fields
/// are written as 0, as the stock host does. The payload must fit the
/// 16-bit length field (at most 65535 bytes); the endpoints never pass more
/// than the negotiated max_payload.
///
/// ```
/// use omv_proto::{header::Header, packet::encode_packet, Opcode};
/// let mut out = Vec::new();
/// encode_packet(&Header { opcode: Opcode::PROTO_SYNC, ..Header::default() }, &[], true, &mut out);
/// assert_eq!(out, [0xaa, 0xd5, 0, 0, 0, 0, 0, 0, 0xb0, 0xac]);
/// ```
pub fn encode_packet(header: &Header, payload: &[u8], crc: bool, out: &mut Vec<u8>) {
    let mut h = *header;
    h.length = payload.len() as u16;
    out.reserve(HEADER_SIZE + payload.len() + TRAILER_SIZE);
    out.extend_from_slice(&h.encode(crc));
    if !payload.is_empty() {
        let c = if crc {
            // Copy and CRC in one pass where the CPU allows.
            crc32_extend(out, payload)
        } else {
            out.extend_from_slice(payload);
            0
        };
        out.extend_from_slice(&c.to_le_bytes());
    }
}
