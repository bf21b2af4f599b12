//! Round-trip and robustness properties of the payload codecs.

use proptest::prelude::*;

use omv_proto::caps::{CapFlags, Caps};
use omv_proto::channel::{truncate_name, ChannelEntry, ChannelFlags, ENTRY_SIZE};
use omv_proto::event::{decode_event_payload, encode_event_payload, EventId};
use omv_proto::frame::{FrameHeader, PixFormat};
use omv_proto::header::{Header, HEADER_SIZE};
use omv_proto::memory::{MemoryEntry, MemoryKind, MemoryStats};
use omv_proto::poll::PollBitmap;
use omv_proto::profile::{decode_records, record_size, ProfileRecord};
use omv_proto::request::{decode_u32, encode_u32, IoctlRequest, ReadRequest, WriteRequest};
use omv_proto::shape::Shape;
use omv_proto::stats::Stats;
use omv_proto::status::Status;
use omv_proto::sysinfo::{HwCaps, SysInfo};
use omv_proto::version::Version;
use omv_proto::ChannelId;
use omv_proto::{Flags, Opcode};

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Payloads of the stock host's encoder (vectors/packets.json) decode and
/// re-encode to the same bytes.
#[test]
fn stock_vectors() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/packets.json"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (../shared must sit beside the checkout)"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut seen = 0;
    for p in v["packets"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let payload = hex(p["payload_hex"].as_str().unwrap());
        let opcode = p["opcode"].as_u64().unwrap();
        let flags = p["flags"].as_u64().unwrap();
        // Host requests carry no flags; status packets (ACK/NAK) have no codec here.
        let from_cam = name.starts_with("cam_");
        if flags & 0x03 != 0 {
            continue;
        }
        let mut out = Vec::new();
        match (from_cam, opcode) {
            (false, 0x02) => out.extend_from_slice(&Caps::decode_exact(&payload).unwrap().encode()),
            (false, 0x26) => {
                out.extend_from_slice(&ReadRequest::decode(&payload).unwrap().encode())
            }
            (false, 0x27) => WriteRequest::decode(&payload)
                .unwrap()
                .encode_into(&mut out),
            (false, 0x28) => IoctlRequest::decode(&payload)
                .unwrap()
                .encode_into(&mut out),
            (true, 0x25) => out.extend_from_slice(&encode_u32(decode_u32(&payload).unwrap())),
            (true, 0x13 | 0x29) => {
                let id = decode_event_payload(&payload).unwrap();
                let arg = if payload.is_empty() { None } else { Some(id.0) };
                let (b, n) = encode_event_payload(arg);
                out.extend_from_slice(&b[..n]);
            }
            _ => continue,
        }
        assert_eq!(out, payload, "{name}");
        seen += 1;
    }
    assert!(seen >= 8, "only {seen} vectors checked");
}

fn arb_stats() -> impl Strategy<Value = Stats> {
    any::<[u32; 8]>().prop_map(|f| Stats {
        sent: f[0],
        received: f[1],
        checksum_errors: f[2],
        sequence_errors: f[3],
        retransmits: f[4],
        transport_errors: f[5],
        sent_events: f[6],
        reserved: f[7],
    })
}

fn arb_sysinfo() -> impl Strategy<Value = SysInfo> {
    any::<[u32; 19]>().prop_map(|w| SysInfo {
        cpu_id: w[0],
        device_id: [w[1], w[2], w[3]],
        usb_id: w[4],
        chip_id: [w[5], w[6], w[7]],
        id_reserved: [w[8], w[9]],
        hw_caps: [w[10], w[11]],
        flash_kb: w[12],
        ram_kb: w[13],
        framebuffer_kb: w[14],
        stream_buffer_kb: w[15],
        mem_reserved: [w[16], w[17], w[18]],
    })
}

fn arb_memory_entry() -> impl Strategy<Value = MemoryEntry> {
    (any::<u8>(), any::<u16>(), any::<[u32; 5]>()).prop_map(|(k, flags, v)| MemoryEntry {
        kind: MemoryKind(k),
        flags,
        total: v[0],
        used: v[1],
        free: v[2],
        persist: v[3],
        peak: v[4],
    })
}

fn arb_profile(n: u8) -> impl Strategy<Value = ProfileRecord> {
    (
        any::<[u32; 5]>(),
        any::<[u64; 2]>(),
        prop::collection::vec(any::<u64>(), n as usize),
    )
        .prop_map(|(a, b, events)| ProfileRecord {
            address: a[0],
            caller: a[1],
            call_count: a[2],
            min_ticks: a[3],
            max_ticks: a[4],
            total_ticks: b[0],
            total_cycles: b[1],
            events,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn caps_round_trip(flags in any::<u32>(), max_payload in any::<u16>()) {
        let c = Caps { flags: CapFlags(flags), max_payload };
        let b = c.encode();
        prop_assert_eq!(b.len(), 16);
        prop_assert!(b[6..].iter().all(|&x| x == 0));
        prop_assert_eq!(Caps::decode(&b), Ok(c));
        prop_assert_eq!(Caps::decode_exact(&b), Ok(c));
    }

    #[test]
    fn stats_round_trip(s in arb_stats()) {
        prop_assert_eq!(Stats::decode(&s.encode()), Ok(s));
    }

    #[test]
    fn version_round_trip(p in any::<[u8; 3]>(), bl in any::<[u8; 3]>(), fw in any::<[u8; 3]>()) {
        let v = Version { protocol: p, bootloader: bl, firmware: fw };
        let b = v.encode();
        prop_assert!(b[9..].iter().all(|&x| x == 0));
        prop_assert_eq!(Version::decode(&b), Ok(v));
    }

    #[test]
    fn sysinfo_round_trip(s in arb_sysinfo()) {
        prop_assert_eq!(SysInfo::decode(&s.encode()), Ok(s));
        prop_assert_eq!(u32::from(s.usb_vid()) << 16 | u32::from(s.usb_pid()), s.usb_id);
    }

    #[test]
    fn hwcaps_eventcnt(bits in any::<u32>(), n in any::<u8>()) {
        let c = HwCaps(bits).with_pmu_eventcnt(n);
        prop_assert_eq!(c.pmu_eventcnt(), n);
        prop_assert_eq!(c.0 & !HwCaps::PMU_EVENTCNT_MASK, bits & !HwCaps::PMU_EVENTCNT_MASK);
    }

    #[test]
    fn memory_round_trip(entries in prop::collection::vec(arb_memory_entry(), 0..20)) {
        let m = MemoryStats { entries };
        let b = m.encode();
        prop_assert_eq!(b.len(), 4 + 24 * m.entries.len());
        prop_assert_eq!(MemoryStats::decode(&b), Ok(m));
    }

    #[test]
    fn poll_round_trip(bits in any::<u32>(), id in any::<u8>()) {
        let p = PollBitmap(bits);
        prop_assert_eq!(PollBitmap::decode(&p.encode()), Ok(p));
        let mut q = PollBitmap::default();
        q.set(ChannelId(id));
        prop_assert_eq!(q.is_ready(ChannelId(id)), id < 32);
    }

    #[test]
    fn read_round_trip(offset in any::<u32>(), length in any::<u32>()) {
        let r = ReadRequest { offset, length };
        prop_assert_eq!(ReadRequest::decode(&r.encode()), Ok(r));
        prop_assert_eq!(r.end_offset().map(u64::from), Some(u64::from(offset) + u64::from(length)).filter(|&e| e <= u64::from(u32::MAX)));
    }

    #[test]
    fn write_round_trip(offset in any::<u32>(), data in bytes(200)) {
        let w = WriteRequest { offset, data: &data };
        let mut out = Vec::new();
        w.encode_into(&mut out);
        prop_assert_eq!(out.len(), w.encoded_len());
        prop_assert_eq!(WriteRequest::decode(&out), Ok(w));
    }

    #[test]
    fn ioctl_round_trip(request in any::<u32>(), args in bytes(64)) {
        let i = IoctlRequest { request, args: &args };
        let mut out = Vec::new();
        i.encode_into(&mut out);
        prop_assert_eq!(IoctlRequest::decode(&out), Ok(i));
    }

    #[test]
    fn u32_round_trip(v in any::<u32>()) {
        prop_assert_eq!(decode_u32(&encode_u32(v)), Ok(v));
    }

    #[test]
    fn event_round_trip(id in any::<Option<u16>>()) {
        let (b, n) = encode_event_payload(id);
        prop_assert_eq!(decode_event_payload(&b[..n]), Ok(id.map_or(EventId::NOTIFY, EventId)));
    }

    #[test]
    fn frame_round_trip(
        width in any::<u32>(),
        height in any::<u32>(),
        pixfmt in prop_oneof![
            Just(PixFormat::GRAYSCALE), Just(PixFormat::RGB565), Just(PixFormat::JPEG),
            Just(PixFormat::PNG), Just(PixFormat::BAYER_BGGR), Just(PixFormat::YUV422),
            Just(PixFormat::ARGB8), Just(PixFormat::BINARY), any::<u32>().prop_map(PixFormat),
        ],
        size in any::<u32>(),
        fps_bits in any::<Option<u32>>(),
        pad in 0usize..8,
        image in bytes(64),
    ) {
        let fps = fps_bits.map(f32::from_bits);
        let mut h = FrameHeader::new(width, height, pixfmt, size, fps);
        h.offset += pad as u32;
        let mut frame = Vec::new();
        h.encode_into(&mut frame);
        frame.resize(h.offset as usize, 0);
        frame.extend_from_slice(&image);
        let d = FrameHeader::decode(&frame).unwrap();
        // Compare through the encoding: NaN fps values are not equal to themselves.
        prop_assert_eq!((d.width, d.height, d.pixfmt, d.size, d.offset), (width, height, pixfmt, size, h.offset));
        // A 20-byte header padded to offset >= 24 reads the (zero) padding as fps.
        let want_fps = fps_bits.or(if h.offset >= 24 { Some(0) } else { None });
        prop_assert_eq!(d.fps.map(f32::to_bits), want_fps);
        prop_assert_eq!(d.image_data(&frame), &image[..]);
    }

    #[test]
    fn profile_round_trip(
        (n, records) in any::<u8>().prop_flat_map(|n| (Just(n), prop::collection::vec(arb_profile(n), 0..4))),
        extra in 0usize..3,
    ) {
        let mut data = Vec::new();
        let size = record_size(n) + extra * 8;
        for r in &records {
            r.encode_into(&mut data);
            data.resize(data.len() + extra * 8, 0xCC);
        }
        prop_assert_eq!(data.len(), records.len() * size);
        prop_assert_eq!(decode_records(&data, size, n), Ok(records));
    }

    #[test]
    fn header_round_trip(sequence in any::<u8>(), channel in any::<u8>(), flags in any::<u8>(),
                         opcode in any::<u8>(), length in any::<u16>(), crc in any::<bool>()) {
        let h = Header { sequence, channel: ChannelId(channel), flags: Flags(flags), opcode: Opcode(opcode), length };
        let b = h.encode(crc);
        prop_assert_eq!(b.len(), HEADER_SIZE);
        prop_assert_eq!(Header::decode(&b), Ok(h));
        // With CRC off the hcrc field is 0, which checks only if the CRC happens to be 0.
        prop_assert_eq!(Header::crc_ok(&b), crc || omv_proto::crc::crc16(&b[..8]) == 0);
        prop_assert_eq!(h.wire_len(), if length == 0 { 10 } else { 14 + length as usize });
        prop_assert!(Header::decode(&b[..HEADER_SIZE - 1]).is_err());
    }

    #[test]
    fn status_round_trip(code in any::<u16>()) {
        let s = Status(code);
        prop_assert_eq!(Status::decode(&s.encode()), Ok(s));
        prop_assert!(Status::decode(&s.encode()[..1]).is_err());
        // Named exactly for the ten codes of the protocol; unknown codes are kept, not rejected.
        prop_assert_eq!(s.name().is_some(), code <= 9);
    }

    #[test]
    fn shape_round_trip(dims in prop::collection::vec(any::<u32>(), 0..=4)) {
        let s = Shape::new(&dims).unwrap();
        let mut b = [0u8; 16];
        let n = s.encode(&mut b);
        prop_assert_eq!(n, dims.len() * 4);
        let d = Shape::decode(&b[..n]).unwrap();
        prop_assert_eq!(d.dims(), &dims[..]);
        prop_assert_eq!(d, s);
    }

    #[test]
    fn shape_rejects_bad_lengths(len in 0usize..40, extra in prop::collection::vec(any::<u32>(), 5..8)) {
        let buf = vec![0u8; len];
        prop_assert_eq!(Shape::decode(&buf).is_ok(), len % 4 == 0 && len <= 16);
        prop_assert!(Shape::new(&extra).is_none());
    }

    #[test]
    fn channel_list_round_trip(entries in prop::collection::vec(
        (any::<u8>(), any::<u8>(), "[a-z_]{0,13}|[\\PC]{0,20}"), 0..33)) {
        let entries: Vec<ChannelEntry> = entries
            .into_iter()
            .map(|(id, flags, name)| ChannelEntry { id: ChannelId(id), flags: ChannelFlags(flags), name })
            .collect();
        let b = ChannelEntry::encode_list(&entries);
        prop_assert_eq!(b.len(), entries.len() * ENTRY_SIZE);
        let back = ChannelEntry::decode_list(&b).unwrap();
        prop_assert_eq!(back.len(), entries.len());
        for (e, d) in entries.iter().zip(&back) {
            prop_assert_eq!((e.id, e.flags), (d.id, d.flags));
            // Names survive up to the 13-byte field (cut at a char boundary, and
            // at an embedded NUL, which the wire cannot carry).
            let want = truncate_name(&e.name);
            let want = want.split('\0').next().unwrap_or("");
            prop_assert_eq!(d.name.as_str(), want);
        }
        if !b.is_empty() {
            prop_assert!(ChannelEntry::decode_list(&b[..b.len() - 1]).is_err());
        }
    }

    #[test]
    fn decoders_never_panic(buf in bytes(300), n in any::<u8>(), size in 0usize..3000) {
        let _ = Caps::decode(&buf);
        let _ = Caps::decode_exact(&buf);
        let _ = Stats::decode(&buf);
        let _ = Version::decode(&buf);
        let _ = SysInfo::decode(&buf);
        let _ = MemoryStats::decode(&buf);
        let _ = MemoryEntry::decode(&buf);
        let _ = PollBitmap::decode(&buf);
        let _ = ReadRequest::decode(&buf);
        let _ = WriteRequest::decode(&buf);
        if let Ok(i) = IoctlRequest::decode(&buf) {
            for k in 0..80 {
                let _ = i.arg_u32(k);
            }
        }
        let _ = decode_u32(&buf);
        let _ = decode_event_payload(&buf);
        let _ = Header::decode(&buf);
        let _ = Header::crc_ok(&buf);
        let _ = Status::decode(&buf);
        if let Ok(s) = Shape::decode(&buf) {
            prop_assert!(s.dims().len() <= Shape::MAX_DIMS);
            let _ = s.product();
        }
        if let Ok(list) = ChannelEntry::decode_list(&buf) {
            prop_assert_eq!(list.len() * ENTRY_SIZE, buf.len());
        }
        let _ = ChannelEntry::decode(&buf);
        if let Ok(h) = FrameHeader::decode(&buf) {
            prop_assert!(h.offset as usize <= buf.len() && h.offset >= 20);
            let _ = h.image_data(&buf);
            let _ = h.image_data(&[]);
            let _ = h.expected_image_len();
            let _ = h.shape();
        }
        let _ = ProfileRecord::decode(&buf, n);
        let _ = decode_records(&buf, size, n);
    }

    #[test]
    fn write_decode_checks_length(buf in bytes(64), claim in any::<u32>()) {
        let mut p = vec![0u8; 4];
        p.extend_from_slice(&claim.to_le_bytes());
        p.extend_from_slice(&buf);
        let r = WriteRequest::decode(&p);
        prop_assert_eq!(r.is_ok(), claim as usize == buf.len());
        if let Ok(w) = r {
            prop_assert_eq!(w.data, &buf[..]);
        }
    }

    #[test]
    fn memory_decode_checks_count(buf in bytes(400)) {
        match MemoryStats::decode(&buf) {
            Ok(m) => prop_assert!(buf.len() >= 4 + 24 * m.entries.len() && m.entries.len() == buf[0] as usize),
            Err(_) => prop_assert!(buf.len() < 4 || buf.len() < 4 + 24 * buf[0] as usize),
        }
    }
}
