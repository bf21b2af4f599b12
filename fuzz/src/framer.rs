//! `framer_host` / `framer_device`: arbitrary bytes in arbitrary chunks.
//!
//! Input layout (every byte string is valid; missing fields read as 0):
//!
//! ```text
//! u8   bit0 crc on, bit1 sequence check on
//! u16  max_payload, mapped into [MIN_PAYLOAD, MAX_PAYLOAD]
//! u8   first expected sequence number (then +1 per frame produced)
//! u8   n, then n × u16 chunk sizes used in turn (0 is read as 1;
//!      n = 0 means one byte at a time)
//! ...  the byte stream
//! ```
//!
//! Checks:
//! * never panics;
//! * after each push the buffer holds at most what it held plus the chunk,
//!   and after draining less than one max-size packet (14 + max_payload);
//! * every packet has `payload.len() == header.length <= max_payload` and
//!   re-encodes to a packet the same framer parses back identically;
//! * chunking invariance: the whole stream pushed at once and the chunked
//!   stream give the same frames and the same counters. For the device role
//!   this holds only when SYNC recovery did not fire in either run (a torn
//!   packet seen half-way may legitimately give way to a SYNC it contains).

use omv_proto::framer::{Frame, Framer, FramerConfig, FramerStats, Role};
use omv_proto::header::{HEADER_SIZE, TRAILER_SIZE};
// The largest payload of a default cam (4082), what these harnesses were written for.
use omv_proto::{FIRMWARE_DEFAULT_PAYLOAD as MAX_PAYLOAD, MIN_PAYLOAD};

use crate::reader::Reader;

struct Run {
    frames: Vec<Frame>,
    stats: FramerStats,
    left: usize,
}

fn drain(f: &mut Framer, seq: Option<u8>, frames: &mut Vec<Frame>) {
    loop {
        let expected = seq.map(|s| s.wrapping_add(frames.len() as u8));
        match f.next(expected) {
            Some(fr) => frames.push(fr),
            None => break,
        }
    }
}

fn check_frame(fr: &Frame, cfg: FramerConfig) {
    match fr {
        Frame::Packet(p) => {
            assert_eq!(p.payload.len(), usize::from(p.header.length));
            assert!(p.header.length <= cfg.max_payload);
            // Re-encode and re-parse: the same packet comes back.
            let wire = p.to_wire(cfg.crc);
            let mut g = Framer::new(cfg);
            g.push(&wire);
            match g.next(None) {
                Some(Frame::Packet(q)) => assert_eq!(&q, p),
                other => panic!("re-encoded packet did not parse back: {other:?}"),
            }
            assert_eq!(g.buffered(), 0);
        }
        Frame::Rejected { header, .. } => {
            assert_eq!(cfg.role, Role::Device, "the host role reported a rejection");
            let _ = header;
        }
    }
}

/// The check behind `framer_host` and `framer_device`.
pub fn check(role: Role, data: &[u8]) {
    let mut r = Reader::new(data);
    let mode = r.u8();
    let span = u32::from(MAX_PAYLOAD - MIN_PAYLOAD) + 1;
    let max_payload = MIN_PAYLOAD + (u32::from(r.u16()) % span) as u16;
    let seq0 = r.u8();
    let n = usize::from(r.u8());
    let sizes: Vec<usize> = (0..n).map(|_| usize::from(r.u16()).max(1)).collect();
    let stream = r.rest();
    let cfg = FramerConfig::new(role, mode & 1 != 0, max_payload);
    let seq = (mode & 2 != 0).then_some(seq0);
    let bound = HEADER_SIZE + usize::from(max_payload) + TRAILER_SIZE;

    // Whole.
    let mut f = Framer::new(cfg);
    let mut whole = Run {
        frames: Vec::new(),
        stats: FramerStats::default(),
        left: 0,
    };
    f.push(stream);
    drain(&mut f, seq, &mut whole.frames);
    assert!(f.buffered() < bound, "buffered {} >= {bound}", f.buffered());
    whole.stats = f.stats();
    whole.left = f.buffered();

    // Chunked.
    let mut f = Framer::new(cfg);
    let mut chunked = Run {
        frames: Vec::new(),
        stats: FramerStats::default(),
        left: 0,
    };
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let size = if sizes.is_empty() {
            1
        } else {
            sizes[i % sizes.len()]
        };
        i += 1;
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        let before = f.buffered();
        f.push(chunk);
        assert!(
            f.buffered() <= before + chunk.len(),
            "push grew the buffer by more than the chunk"
        );
        drain(&mut f, seq, &mut chunked.frames);
        assert!(
            f.buffered() < bound,
            "buffered {} >= {bound} after draining",
            f.buffered()
        );
    }
    chunked.stats = f.stats();
    chunked.left = f.buffered();

    for fr in whole.frames.iter().chain(&chunked.frames) {
        check_frame(fr, cfg);
    }
    let recovered = whole.stats.sync_recoveries + chunked.stats.sync_recoveries > 0;
    if role == Role::Host {
        assert_eq!(
            whole.stats.sync_recoveries + chunked.stats.sync_recoveries,
            0
        );
    }
    if !recovered {
        assert_eq!(whole.frames, chunked.frames, "chunking changed the frames");
        assert_eq!(whole.stats, chunked.stats, "chunking changed the counters");
        assert_eq!(
            whole.left, chunked.left,
            "chunking changed what stays buffered"
        );
    }
}
