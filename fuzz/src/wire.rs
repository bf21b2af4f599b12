//! Packet-level helpers: encoding requests and checking what a cam emits.

use omv_proto::crc::{crc16, crc32};
use omv_proto::framer::{Frame, Framer, FramerConfig, Role};
use omv_proto::header::{Header, HEADER_SIZE, SYNC_BYTES, TRAILER_SIZE};
use omv_proto::packet::encode_packet;
// The largest payload of a default cam (4082), what these harnesses were written for.
use omv_proto::{ChannelId, Flags, Opcode, Packet, FIRMWARE_DEFAULT_PAYLOAD as MAX_PAYLOAD};

/// The wire form of a packet with CRCs on.
pub fn packet(seq: u8, channel: u8, flags: Flags, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let h = Header {
        sequence: seq,
        channel: ChannelId(channel),
        flags,
        opcode,
        length: 0,
    };
    let mut out = Vec::new();
    encode_packet(&h, payload, true, &mut out);
    out
}

/// PROTO_SYNC as the host sends it.
pub fn sync() -> Vec<u8> {
    packet(0, 0, Flags::NONE, Opcode::PROTO_SYNC, &[])
}

/// The cam's ACK of a PROTO_SYNC with sequence 0.
pub const SYNC_ACK: [u8; 10] = [0xaa, 0xd5, 0, 0, 1, 0, 0, 0, 0x08, 0x46];

/// Checks that `wire` is exactly one well-formed packet and returns it.
///
/// * sync word, length field matching the buffer, payload at most
///   `max_payload` bytes (and never over MAX_PAYLOAD);
/// * when `crc` is true, both CRCs match.
pub fn check_packet(wire: &[u8], crc: bool, max_payload: u16) -> Packet {
    assert!(wire.len() >= HEADER_SIZE, "short packet {wire:02x?}");
    assert_eq!(wire[..2], SYNC_BYTES, "no sync word: {wire:02x?}");
    let h = Header::decode(wire).expect("header");
    assert_eq!(
        wire.len(),
        h.wire_len(),
        "length field disagrees with the buffer: {h:?}"
    );
    assert!(
        h.length <= max_payload.min(MAX_PAYLOAD),
        "payload {} over max_payload {max_payload}: {h:?}",
        h.length
    );
    let len = usize::from(h.length);
    if crc {
        assert_eq!(
            crc16(&wire[..8]),
            u16::from_le_bytes([wire[8], wire[9]]),
            "bad hcrc: {h:?}"
        );
        if len > 0 {
            let at = HEADER_SIZE + len;
            let got = u32::from_le_bytes([wire[at], wire[at + 1], wire[at + 2], wire[at + 3]]);
            assert_eq!(crc32(&wire[HEADER_SIZE..at]), got, "bad pcrc: {h:?}");
        }
    }
    let _ = TRAILER_SIZE;
    Packet {
        header: h,
        payload: bytes::Bytes::copy_from_slice(&wire[HEADER_SIZE..HEADER_SIZE + len]),
    }
}

/// Parses a byte stream the way a host would (CRC on, no sequence check).
pub fn parse_host(stream: &[u8]) -> Vec<Packet> {
    let mut f = Framer::new(FramerConfig::new(Role::Host, true, MAX_PAYLOAD));
    f.push(stream);
    core::iter::from_fn(|| f.next(None))
        .filter_map(|fr| match fr {
            Frame::Packet(p) => Some(p),
            Frame::Rejected { .. } => None,
        })
        .collect()
}
