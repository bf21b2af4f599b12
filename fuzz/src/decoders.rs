//! `decoders`: every payload decoder of proto-core on arbitrary bytes.
//!
//! Input layout: `u8 pmu_eventcnt, u16 record_size, payload...`; the
//! payload goes through every decoder. Where a decoder succeeds, the value
//! is re-encoded and the bytes (or the value) must come back: the bytes
//! the layout defines are reproduced exactly, reserved bytes are written
//! as zero, and decoding the re-encoding gives the same value.

use omv_proto::caps::Caps;
use omv_proto::channel::{ChannelEntry, ENTRY_SIZE};
use omv_proto::event::{decode_event_payload, encode_event_payload, EventId};
use omv_proto::frame::FrameHeader;
use omv_proto::header::Header;
use omv_proto::memory::{MemoryEntry, MemoryStats};
use omv_proto::poll::PollBitmap;
use omv_proto::profile::{decode_records, encode_records, record_size, ProfileRecord};
use omv_proto::request::{decode_u32, encode_u32, IoctlRequest, ReadRequest, WriteRequest};
use omv_proto::shape::Shape;
use omv_proto::stats::Stats;
use omv_proto::sysinfo::{HwCaps, SysInfo};
use omv_proto::version::Version;
use omv_proto::{DecodeError, Status};

use crate::reader::Reader;

fn short_ok<T: core::fmt::Debug>(r: &Result<T, DecodeError>, need: usize, len: usize) {
    // A fixed-layout decoder fails exactly when the payload is short.
    assert_eq!(
        r.is_ok(),
        len >= need,
        "{r:?} for {len} bytes (needs {need})"
    );
}

/// The check behind `decoders`.
pub fn check(data: &[u8]) {
    let mut r = Reader::new(data);
    let pmu = r.u8();
    let rec_size = usize::from(r.u16());
    let p = r.rest();
    let n = p.len();

    // Header (not a payload, but a decoder on untrusted bytes all the same).
    if let Ok(h) = Header::decode(p) {
        let wire = h.encode(false);
        assert_eq!(wire[2..8], p[2..8]);
        let _ = Header::crc_ok(p);
        let _ = h.wire_len();
    }

    // NAK status.
    let s = Status::decode(p);
    short_ok(&s, 2, n);
    if let Ok(s) = s {
        assert_eq!(s.encode(), p[..2]);
        let _ = format!("{s:?}");
    }

    // Caps: decode needs 6, decode_exact exactly 16.
    let c = Caps::decode(p);
    short_ok(&c, Caps::MIN_LEN, n);
    if let Ok(c) = c {
        let b = c.encode();
        assert_eq!(b[..6], p[..6]);
        assert!(b[6..].iter().all(|&x| x == 0));
        assert_eq!(Caps::decode_exact(&b), Ok(c));
        let _ = (c.max_payload_valid(), format!("{:?}", c.flags));
    }
    let ce = Caps::decode_exact(p);
    assert_eq!(ce.is_ok(), n == Caps::LEN);

    // Stats: 32 bytes, all defined.
    let st = Stats::decode(p);
    short_ok(&st, Stats::LEN, n);
    if let Ok(st) = st {
        assert_eq!(st.encode()[..], p[..Stats::LEN]);
    }

    // Version: 9 defined bytes, 7 reserved.
    let v = Version::decode(p);
    short_ok(&v, Version::LEN, n);
    if let Ok(v) = v {
        let b = v.encode();
        assert_eq!(b[..9], p[..9]);
        assert_eq!(Version::decode(&b), Ok(v));
        let _ = v.to_string();
    }

    // Sysinfo: 76 bytes, all kept (reserved words included).
    let si = SysInfo::decode(p);
    short_ok(&si, SysInfo::LEN, n);
    if let Ok(si) = si {
        assert_eq!(si.encode()[..], p[..SysInfo::LEN]);
        let caps: HwCaps = si.caps();
        let _ = (
            caps.pmu_eventcnt(),
            format!("{caps:?}"),
            si.sensors().count(),
            si.usb_vid(),
            si.usb_pid(),
        );
    }

    // Memory stats: u8 count, 3 reserved, count × 24 (one reserved byte each).
    let m = MemoryStats::decode(p);
    let need = if n == 0 {
        4
    } else {
        4 + usize::from(p[0]) * MemoryEntry::LEN
    };
    short_ok(&m, need, n);
    if let Ok(m) = m {
        let b = m.encode();
        assert_eq!(b.len(), need);
        assert_eq!(b[0], p[0]);
        for (i, e) in m.entries.iter().enumerate() {
            let at = 4 + i * MemoryEntry::LEN;
            let eb = e.encode();
            assert_eq!(eb[0], p[at]);
            assert_eq!(eb[2..], p[at + 2..at + MemoryEntry::LEN]);
            let _ = format!("{:?}", e.kind);
        }
        assert_eq!(MemoryStats::decode(&b), Ok(m));
    }

    // Channel list: a multiple of 16; names stop at NUL, invalid UTF-8 replaced.
    let cl = ChannelEntry::decode_list(p);
    assert_eq!(cl.is_ok(), n % ENTRY_SIZE == 0);
    if let Ok(list) = cl {
        assert_eq!(list.len(), n / ENTRY_SIZE);
        let b = ChannelEntry::encode_list(&list);
        assert_eq!(b.len(), n);
        let again = ChannelEntry::decode_list(&b).expect("re-encoded list");
        for (i, (e, a)) in list.iter().zip(&again).enumerate() {
            let raw = &p[i * ENTRY_SIZE..(i + 1) * ENTRY_SIZE];
            assert_eq!((a.id, a.flags), (e.id, e.flags));
            assert_eq!(b[i * ENTRY_SIZE..i * ENTRY_SIZE + 2], raw[..2]);
            assert!(e.name.starts_with(&a.name));
            let name = &raw[2..];
            let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
            if end <= 13 && core::str::from_utf8(&name[..end]).is_ok() {
                // A valid name round-trips byte for byte (NUL-padded).
                assert_eq!(a.name, e.name);
                assert_eq!(b[i * ENTRY_SIZE + 2..i * ENTRY_SIZE + 2 + end], name[..end]);
            }
            let _ = format!("{:?}", e.flags);
        }
    }

    // Poll bitmap.
    let pb = PollBitmap::decode(p);
    short_ok(&pb, 4, n);
    if let Ok(pb) = pb {
        assert_eq!(pb.encode(), p[..4]);
        assert_eq!(pb.ready().count() as u32, pb.0.count_ones());
    }

    // CHANNEL_SIZE answer.
    if let Ok(v) = decode_u32(p) {
        assert_eq!(encode_u32(v), p[..4]);
    }

    // Requests.
    let rr = ReadRequest::decode(p);
    assert_eq!(rr.is_ok(), n == ReadRequest::LEN);
    if let Ok(rr) = rr {
        assert_eq!(rr.encode()[..], *p);
        assert_eq!(rr.end_offset(), rr.offset.checked_add(rr.length));
    }
    match WriteRequest::decode(p) {
        Ok(w) => {
            let mut b = Vec::new();
            w.encode_into(&mut b);
            assert_eq!(b, p);
            assert_eq!(w.encoded_len(), n);
            let _ = w.end_offset();
        }
        Err(_) => {
            // Only short payloads or a length field that disagrees fail.
            if n >= 8 {
                let len = u32::from_le_bytes([p[4], p[5], p[6], p[7]]);
                assert_ne!(u64::from(len), (n - 8) as u64);
            }
        }
    }
    let io = IoctlRequest::decode(p);
    short_ok(&io, 4, n);
    if let Ok(io) = io {
        let mut b = Vec::new();
        io.encode_into(&mut b);
        assert_eq!(b, p);
        for i in 0..6 {
            assert_eq!(io.arg_u32(i).is_some(), io.args.len() >= (i + 1) * 4);
        }
        let _ = io.arg_u32(usize::MAX);
    }

    // Shape: 0..=4 u32.
    let sh = Shape::decode(p);
    assert_eq!(sh.is_ok(), n % 4 == 0 && n <= 16);
    if let Ok(sh) = sh {
        let mut b = [0u8; 16];
        let k = sh.encode(&mut b);
        assert_eq!(b[..k], *p);
        assert_eq!(Shape::new(sh.dims()), Some(sh));
        let _ = sh.product();
    }

    // Event payload.
    match decode_event_payload(p) {
        Ok(id) => {
            if n == 0 {
                assert_eq!(id, EventId::NOTIFY);
                assert_eq!(encode_event_payload(None).1, 0);
            } else {
                assert_eq!(id.encode(), p[..2]);
                let (b, k) = encode_event_payload(Some(id.0));
                assert_eq!(b[..k], p[..2]);
            }
            let _ = (id.system_name(), id.stdin_name(), format!("{id:?}"));
        }
        Err(_) => assert_eq!(n, 1),
    }

    // Frame header: 20 bytes, offset in [20, len]; fps when offset >= 24.
    if let Ok(fh) = FrameHeader::decode(p) {
        let off = fh.offset as usize;
        assert!((FrameHeader::LEN_V4..=n).contains(&off));
        assert_eq!(fh.fps.is_some(), off >= FrameHeader::LEN_V5);
        let mut b = [0u8; FrameHeader::LEN_V5];
        let k = fh.encode(&mut b);
        assert_eq!(b[..k], p[..k]);
        assert_eq!(fh.image_data(p).len(), n - off);
        let _ = (
            fh.expected_image_len(),
            fh.shape(),
            fh.pixfmt.name(),
            fh.pixfmt.bytes_per_pixel(),
            fh.pixfmt.to_string(),
        );
        // Re-decoding the re-encoding gives the same header (compare fps by bits: NaN).
        let mut again = b[..k].to_vec();
        again.resize(off.max(k), 0);
        let g = FrameHeader::decode(&again).expect("re-encoded frame header");
        assert_eq!(
            (g.width, g.height, g.pixfmt, g.size, g.offset),
            (fh.width, fh.height, fh.pixfmt, fh.size, fh.offset)
        );
        assert_eq!(g.fps.map(f32::to_bits), fh.fps.map(f32::to_bits));
    }

    // Profile records: arbitrary record size and event count.
    let need = record_size(pmu);
    match ProfileRecord::decode(p, pmu) {
        Ok(rec) => {
            assert!(n >= need);
            assert_eq!(rec.events.len(), usize::from(pmu));
            let mut b = Vec::new();
            rec.encode_into(&mut b);
            assert_eq!(b.len(), need);
            assert_eq!(b[..need - 4], p[..need - 4]);
        }
        Err(_) => assert!(n < need),
    }
    match decode_records(p, rec_size, pmu) {
        Ok(recs) => {
            assert!(rec_size >= need && rec_size > 0 && n % rec_size == 0);
            assert_eq!(recs.len(), n / rec_size);
            let mut b = Vec::new();
            encode_records(&recs, &mut b);
            assert_eq!(b.len(), recs.len() * need);
            for (i, chunk) in b.chunks_exact(need).enumerate() {
                assert_eq!(chunk[..need - 4], p[i * rec_size..i * rec_size + need - 4]);
            }
            assert_eq!(decode_records(&b, need, pmu).as_ref(), Ok(&recs));
        }
        Err(_) => assert!(rec_size < need || rec_size == 0 || n % rec_size != 0),
    }
}
