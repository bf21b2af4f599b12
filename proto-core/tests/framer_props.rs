//! Property tests of the framer: chunking never changes what comes out, and
//! memory stays bounded.

use omv_proto::framer::{Frame, Framer, FramerConfig, Role};
use omv_proto::header::Header;
use omv_proto::packet::encode_packet;
use omv_proto::{ChannelId, Flags, Opcode};
use proptest::prelude::*;

/// A stream of valid packets, garbage, and damaged packets, with payloads
/// up to `max` bytes (packets longer than the framer's max_payload included).
fn stream_up_to(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        // A valid packet.
        (
            any::<u8>(),
            0u8..32,
            any::<u8>(),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..max)
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
            proptest::collection::vec(any::<u8>(), 1..max),
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
            proptest::collection::vec(any::<u8>(), 1..max),
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

fn stream() -> impl Strategy<Value = Vec<u8>> {
    stream_up_to(300)
}

/// A SYNC command as the host sends it.
fn sync_command() -> Vec<u8> {
    let mut v = Vec::new();
    encode_packet(&Header::default(), &[], true, &mut v);
    v
}

fn run(role: Role, data: &[u8], cuts: &[usize], max_payload: u16) -> (Vec<Frame>, usize) {
    let mut f = Framer::new(FramerConfig::new(role, true, max_payload));
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

    /// The payload CRCs computed while pushing (copy and CRC in one pass,
    /// for whole packets in a pushed chunk) decide exactly as the CRCs
    /// computed in `next`: a stream pushed whole gives the frames and
    /// counters it gives pushed one byte at a time (no whole packet in any
    /// chunk, so nothing computed early).
    #[test]
    fn crcs_computed_while_pushing_are_invisible(data in stream_up_to(600), host in any::<bool>(), seq in any::<bool>()) {
        let role = if host { Role::Host } else { Role::Device };
        let expected = if seq { Some(0) } else { None };
        let config = FramerConfig::new(role, true, 500);
        let mut whole = Framer::new(config);
        whole.push(&data);
        let a: Vec<Frame> = std::iter::from_fn(|| whole.next(expected)).collect();
        let mut bytewise = Framer::new(config);
        let mut b = Vec::new();
        for byte in &data {
            bytewise.push(std::slice::from_ref(byte));
            b.extend(std::iter::from_fn(|| bytewise.next(expected)));
        }
        prop_assert_eq!(a, b);
        prop_assert_eq!(whole.stats(), bytewise.stats());
        prop_assert_eq!(whole.buffered(), bytewise.buffered());
    }

    /// The memory bound with packets as long as the framer accepts (and
    /// longer): torn max-size packets are what would make a framer hoard.
    #[test]
    fn buffer_stays_within_one_max_size_packet(
        (max, data) in (16u16..700).prop_flat_map(|m| (Just(m), stream_up_to(m as usize + 40))),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        host in any::<bool>(),
    ) {
        let role = if host { Role::Host } else { Role::Device };
        let (whole, _) = run(role, &data, &[], max);
        let (chunked, peak) = run(role, &data, &cuts, max);
        prop_assert_eq!(whole, chunked);
        prop_assert!(peak <= 10 + max as usize + 4, "peak {} with max_payload {}", peak, max);
    }

    /// Device role: a SYNC command inside the payload area of a torn packet
    /// is found (section 2, SYNC recovery), however the bytes are chunked.
    #[test]
    fn device_finds_sync_after_torn_packet(
        claim in 1u16..=4082,
        got in any::<prop::sample::Index>(),
        garbage in proptest::collection::vec(any::<u8>(), 0..32),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut data = Vec::new();
        encode_packet(
            &Header { opcode: Opcode::CHANNEL_WRITE, channel: ChannelId(1), ..Header::default() },
            &vec![0x11; claim as usize],
            true,
            &mut data,
        );
        // Keep the header and part of the payload: the rest never comes.
        data.truncate(10 + got.index(claim as usize));
        data.extend_from_slice(&garbage);
        data.extend_from_slice(&sync_command());
        // The torn packet's claimed length is never reached, so only SYNC
        // recovery gets the cam out of waiting for it. (A SYNC that lands
        // past the claimed end is parsed normally after the CHECKSUM NAK;
        // one straddling that end is lost, and the host's next SYNC works.)
        prop_assume!(data.len() < 10 + claim as usize + 4);
        let (frames, _) = run(Role::Device, &data, &cuts, 4082);
        let synced = frames.iter().any(|f| matches!(f, Frame::Packet(p) if p.header.opcode == Opcode::PROTO_SYNC));
        prop_assert!(synced, "no SYNC recovered from {} frames", frames.len());
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
