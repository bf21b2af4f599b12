//! Property tests of the framer: chunking never changes what comes out, and
//! memory stays bounded.

use proptest::prelude::*;
use proto_core::framer::{Frame, Framer, FramerConfig, Role};
use proto_core::header::Header;
use proto_core::packet::encode_packet;
use proto_core::{ChannelId, Flags, Opcode};

/// A stream of valid packets, garbage, and damaged packets.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        // A valid packet.
        (
            any::<u8>(),
            0u8..32,
            any::<u8>(),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(seq, ch, flags, op, payload)| {
                let h = Header {
                    sequence: seq,
                    channel: ChannelId(ch),
                    flags: Flags(flags),
                    opcode: Opcode(op),
                    length: 0,
                };
                let mut v = Vec::new();
                encode_packet(&h, &payload, true, &mut v);
                v
            }),
        // Garbage, sometimes full of sync bytes.
        proptest::collection::vec(prop_oneof![any::<u8>(), Just(0xAA), Just(0xD5)], 0..64),
        // A damaged packet: one byte flipped.
        (
            proptest::collection::vec(any::<u8>(), 1..100),
            any::<prop::sample::Index>(),
            1u8..=255
        )
            .prop_map(|(payload, at, x)| {
                let mut v = Vec::new();
                encode_packet(
                    &Header {
                        opcode: Opcode::CHANNEL_READ,
                        ..Header::default()
                    },
                    &payload,
                    true,
                    &mut v,
                );
                let i = at.index(v.len());
                v[i] ^= x;
                v
            }),
        // A torn packet.
        (
            proptest::collection::vec(any::<u8>(), 1..100),
            any::<prop::sample::Index>()
        )
            .prop_map(|(payload, at)| {
                let mut v = Vec::new();
                encode_packet(
                    &Header {
                        opcode: Opcode::CHANNEL_WRITE,
                        ..Header::default()
                    },
                    &payload,
                    true,
                    &mut v,
                );
                v.truncate(at.index(v.len()));
                v
            }),
    ];
    proptest::collection::vec(piece, 0..20).prop_map(|v| v.concat())
}

fn run(role: Role, data: &[u8], cuts: &[usize], max_payload: u16) -> (Vec<Frame>, usize) {
    let mut f = Framer::new(FramerConfig {
        role,
        crc: true,
        max_payload,
    });
    let mut out = Vec::new();
    let mut peak = 0;
    let mut start = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c % (data.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(data.len());
    for &end in &cuts {
        if end < start {
            continue;
        }
        f.push(&data[start..end]);
        peak = peak.max(f.buffered().saturating_sub(end - start));
        while let Some(fr) = f.next(None) {
            out.push(fr);
        }
        start = end;
    }
    (out, peak)
}

proptest! {
    #[test]
    fn chunking_is_invisible(data in stream(), cuts in proptest::collection::vec(any::<usize>(), 0..40), host in any::<bool>()) {
        let role = if host { Role::Host } else { Role::Device };
        let (whole, _) = run(role, &data, &[], 4082);
        let (chunked, peak) = run(role, &data, &cuts, 4082);
        prop_assert_eq!(whole, chunked);
        // Beyond the chunk just pushed, at most one max-size packet stays buffered.
        prop_assert!(peak <= 10 + 4082 + 4);
    }

    #[test]
    fn small_max_payload_rejects_long_packets(data in stream()) {
        let (frames, _) = run(Role::Host, &data, &[], 50);
        for f in frames {
            if let Frame::Packet(p) = f {
                prop_assert!(p.payload.len() <= 50);
            }
        }
    }
}
