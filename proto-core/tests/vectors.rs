//! Conformance with the stock Python host's encoder: every packet in
//! `../shared/vectors/packets.json` is reproduced byte for byte from its
//! fields, and decoded back to the same fields, with CRC on and off.

use std::path::PathBuf;

use omv_proto::crc::{crc16, crc32};
use omv_proto::framer::{Frame, Framer, FramerConfig, Role};
use omv_proto::header::Header;
use omv_proto::packet::encode_packet;
use omv_proto::{ChannelId, Flags, Opcode};
use serde_json::Value;

fn vectors() -> Value {
    // The workspace root is the parent of this crate; `shared/` sits beside the workspace.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/packets.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (CI places shared/ beside the clone)",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("packets.json is valid JSON")
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn num(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("field {k}"))
}

#[test]
fn crc_vectors() {
    let v = vectors();
    let list = v["crc"].as_array().unwrap();
    assert!(!list.is_empty());
    for c in list {
        let input = hex(c["input_hex"].as_str().unwrap());
        assert_eq!(
            u64::from(crc16(&input)),
            num(c, "crc16"),
            "crc16 of {:?}",
            c["input_hex"]
        );
        assert_eq!(
            u64::from(crc32(&input)),
            num(c, "crc32"),
            "crc32 of {:?}",
            c["input_hex"]
        );
    }
}

#[test]
fn packets_encode_and_decode_exactly() {
    let v = vectors();
    let list = v["packets"].as_array().unwrap();
    assert!(list.len() >= 20);
    for p in list {
        let name = p["name"].as_str().unwrap();
        let crc = p["crc_enabled"].as_bool().unwrap();
        let payload = hex(p["payload_hex"].as_str().unwrap());
        let wire = hex(p["wire_hex"].as_str().unwrap());
        let header = Header {
            sequence: num(p, "sequence") as u8,
            channel: ChannelId(num(p, "channel") as u8),
            flags: Flags(num(p, "flags") as u8),
            opcode: Opcode(num(p, "opcode") as u8),
            length: payload.len() as u16,
        };
        let mut out = Vec::new();
        encode_packet(&header, &payload, crc, &mut out);
        assert_eq!(out, wire, "{name}: encoding differs");

        // Decode with both roles; sequence checks off (the vectors are independent packets).
        for role in [Role::Host, Role::Device] {
            let mut f = Framer::new(FramerConfig::new(role, crc, 4082));
            f.push(&wire);
            let Some(Frame::Packet(got)) = f.next(None) else {
                panic!("{name}: {role:?} did not decode")
            };
            assert_eq!(got.header, header, "{name}: header");
            assert_eq!(&got.payload[..], &payload[..], "{name}: payload");
            assert!(f.next(None).is_none());
        }
        // A CRC-off receiver ignores both CRC fields: zeroed CRCs still decode.
        let mut zeroed = wire.clone();
        zeroed[8] = 0;
        zeroed[9] = 0;
        if !payload.is_empty() {
            let n = zeroed.len();
            zeroed[n - 4..].fill(0);
        }
        let mut f = Framer::new(FramerConfig::new(Role::Host, false, 4082));
        f.push(&zeroed);
        let Some(Frame::Packet(got)) = f.next(None) else {
            panic!("{name}: crc-off decode")
        };
        assert_eq!(got.header, header);
        // And a CRC-on receiver rejects a zeroed CRC on a CRC-on vector.
        if crc {
            let mut f = Framer::new(FramerConfig::new(Role::Host, true, 4082));
            f.push(&zeroed);
            assert!(f.next(None).is_none(), "{name}: zeroed CRC accepted");
        }
    }
}
