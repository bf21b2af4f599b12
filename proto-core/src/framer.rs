//! The framer: a byte stream in arbitrary chunks in, packets out (section 2).
//!
//! Both roles use the stock three-state loop (SYNC, HEADER, PAYLOAD) and
//! differ where the protocol says they differ:
//!
//! * a header that fails its CRC, is longer than `max_payload` or fails the
//!   sequence check is dropped one byte at a time; the device role reports
//!   the CRC-valid ones ([`Frame::Rejected`]) so the cam can NAK them;
//! * a bad payload CRC makes the host drop one byte and rescan, while the
//!   cam consumes the packet and reports it (NAK CHECKSUM);
//! * the cam keeps scanning a torn packet's buffered bytes for a complete
//!   SYNC command and jumps to it (SYNC recovery).
//!
//! Memory is bounded: bytes are dropped as soon as they cannot start a
//! packet, so the buffer never holds more than one max-size packet plus the
//! last pushed chunk.
//!
//! Where the CPU has the x86 carry-less-multiply CRC, `push` copies each
//! whole packet it finds at a packet boundary with its payload CRC computed
//! in the same pass, and `next` uses that CRC instead of reading the
//! payload again; what comes out is the same (a property test compares
//! with byte-at-a-time pushes).
//!
//! ```
//! use omv_proto::framer::{Framer, FramerConfig, Frame, Role};
//! let mut f = Framer::new(FramerConfig::new(Role::Host, true, 4082 ));
//! f.push(&[0x00, 0xaa, 0xd5, 0, 0, 0]); // garbage, then a torn SYNC packet
//! assert!(f.next(None).is_none());
//! f.push(&[0, 0, 0, 0xb0, 0xac]);
//! let Some(Frame::Packet(p)) = f.next(None) else { panic!() };
//! assert_eq!(p.header.opcode, omv_proto::Opcode::PROTO_SYNC);
//! ```

use bytes::{Buf, BytesMut};

use alloc::collections::VecDeque;

use crate::crc::{self, crc32};
use crate::error::{le16, le32};
use crate::header::{Header, HEADER_SIZE, SYNC_BYTES, TRAILER_SIZE};
use crate::{Flags, Opcode, Packet};

/// Which side of the link the framer parses for.
///
/// Not `#[non_exhaustive]`: a link has exactly these two ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The PC side: parses what the cam sends.
    Host,
    /// The cam side: parses what the host sends.
    Device,
}

/// Framer settings; change them with [`Framer::set_config`] when caps change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FramerConfig {
    /// Role-specific rules.
    pub role: Role,
    /// Check header and payload CRCs.
    pub crc: bool,
    /// Longest payload accepted.
    pub max_payload: u16,
}

impl FramerConfig {
    /// A configuration for `role`, checking CRCs or not, accepting payloads
    /// up to `max_payload` bytes. (The struct is `#[non_exhaustive]`: build
    /// it with this, not with a struct literal.)
    pub const fn new(role: Role, crc: bool, max_payload: u16) -> FramerConfig {
        FramerConfig {
            role,
            crc,
            max_payload,
        }
    }
}

/// Why a packet was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reject {
    /// Length larger than `max_payload` (the cam NAKs OVERFLOW).
    Overflow,
    /// Sequence check failed (the cam NAKs SEQUENCE).
    Sequence,
    /// Payload CRC mismatch (the cam NAKs CHECKSUM).
    PayloadCrc,
}

/// What [`Framer::next`] produces.
///
/// Not `#[non_exhaustive]`: a header with a good CRC either passes or is
/// rejected (with a [`Reject`] reason, which may grow), and callers match
/// on both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete, valid packet.
    Packet(Packet),
    /// A packet with a valid header CRC that was rejected. Only the device
    /// role reports these; the host drops them silently (and counts them).
    Rejected {
        /// The rejected header.
        header: Header,
        /// Why.
        reason: Reject,
    },
}

/// Counters of what the framer dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FramerStats {
    /// Packets accepted.
    pub packets: u64,
    /// Headers with a bad CRC.
    pub header_crc_errors: u64,
    /// Payloads with a bad CRC.
    pub payload_crc_errors: u64,
    /// Headers with a length over `max_payload`.
    pub overflows: u64,
    /// Headers failing the sequence check.
    pub sequence_errors: u64,
    /// Torn packets abandoned for a SYNC command (device role).
    pub sync_recoveries: u64,
    /// Bytes dropped while searching for a packet start.
    pub dropped_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Sync,
    Header,
    /// A header passed its checks; waiting for its payload and trailer.
    Payload {
        header: Header,
    },
}

/// The streaming packet parser. See the module documentation.
#[derive(Debug)]
pub struct Framer {
    config: FramerConfig,
    buf: BytesMut,
    state: State,
    /// Device role: where the SYNC-recovery scan of a torn packet resumes.
    recovery_from: usize,
    stats: FramerStats,
    /// Stream position of `buf[0]`: how many bytes have left the buffer's
    /// front since the framer was made.
    front: u64,
    /// Payload CRCs computed while [`push`](Self::push) copied the payloads
    /// in (copy and CRC in one pass), as (stream position of the packet's
    /// first byte, its length field, the payload CRC), oldest first: the
    /// packet at that position has exactly these bytes whatever
    /// [`next`](Self::next) later decides about it.
    precomputed: VecDeque<(u64, u16, u32)>,
}

impl Framer {
    /// A framer with an empty buffer.
    pub fn new(config: FramerConfig) -> Framer {
        Framer {
            config,
            buf: BytesMut::with_capacity(
                2 * (HEADER_SIZE + usize::from(config.max_payload) + TRAILER_SIZE),
            ),
            state: State::Sync,
            recovery_from: 1,
            stats: FramerStats::default(),
            front: 0,
            precomputed: VecDeque::new(),
        }
    }

    /// Current settings.
    pub fn config(&self) -> FramerConfig {
        self.config
    }

    /// New settings, effective for the next header parsed.
    pub fn set_config(&mut self, config: FramerConfig) {
        self.config = config;
    }

    /// Drop every buffered byte (protocol reset).
    pub fn clear(&mut self) {
        self.front += self.buf.len() as u64;
        self.buf.clear();
        self.precomputed.clear();
        self.state = State::Sync;
        self.recovery_from = 1;
    }

    /// Bytes currently buffered.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Drop counters.
    pub fn stats(&self) -> FramerStats {
        self.stats
    }

    /// Appends received bytes. Call [`next`](Self::next) until it returns `None`.
    pub fn push(&mut self, data: &[u8]) {
        if self.state == State::Sync {
            // Nothing buffered can start a packet except possibly a trailing 0xAA:
            // skip garbage without copying it.
            let keep_from = if self.buf.is_empty() {
                scan_start(data)
            } else {
                0
            };
            self.stats.dropped_bytes += keep_from as u64;
            self.append(&data[keep_from..]);
        } else {
            self.append(data);
        }
    }

    /// The next packet or rejection, or `None` when more bytes are needed.
    ///
    /// `expected_seq` is the receiver's sequence counter when sequence
    /// checking is on, `None` when it is off.
    pub fn next(&mut self, expected_seq: Option<u8>) -> Option<Frame> {
        loop {
            match self.state {
                State::Sync => {
                    let start = scan_start(&self.buf);
                    self.drop_front(start);
                    if self.buf.len() < 2 {
                        return None;
                    }
                    self.state = State::Header;
                }
                State::Header => {
                    if self.buf.len() < HEADER_SIZE {
                        return None;
                    }
                    let raw = &self.buf[..HEADER_SIZE];
                    let crc_ok = !self.config.crc || crate::crc::crc16(&raw[..8]) == le16(raw, 8);
                    // Length was checked above, so decode cannot fail.
                    let header = match Header::decode(raw) {
                        Ok(h) => h,
                        Err(_) => return None,
                    };
                    let reject = if !crc_ok {
                        self.stats.header_crc_errors += 1;
                        Some(None)
                    } else if header.length > self.config.max_payload {
                        self.stats.overflows += 1;
                        Some(Some(Reject::Overflow))
                    } else if !self.sequence_ok(&header, expected_seq) {
                        self.stats.sequence_errors += 1;
                        Some(Some(Reject::Sequence))
                    } else {
                        None
                    };
                    match reject {
                        None => {
                            self.state = State::Payload { header };
                            self.recovery_from = 1;
                        }
                        Some(reason) => {
                            self.state = State::Sync;
                            self.drop_front(1);
                            if let (Role::Device, Some(reason)) = (self.config.role, reason) {
                                return Some(Frame::Rejected { header, reason });
                            }
                        }
                    }
                }
                State::Payload { header } => {
                    let total = header.wire_len();
                    if self.buf.len() < total {
                        if self.config.role == Role::Device && self.recover_sync() {
                            continue;
                        }
                        return None;
                    }
                    self.state = State::Sync;
                    let len = usize::from(header.length);
                    if len > 0 && self.config.crc {
                        let computed = match self.take_precomputed(header.length) {
                            Some(c) => c,
                            None => crc32(&self.buf[HEADER_SIZE..HEADER_SIZE + len]),
                        };
                        if computed != le32(&self.buf, HEADER_SIZE + len) {
                            self.stats.payload_crc_errors += 1;
                            match self.config.role {
                                Role::Host => {
                                    self.drop_front(1);
                                    continue;
                                }
                                Role::Device => {
                                    self.consume(total);
                                    return Some(Frame::Rejected {
                                        header,
                                        reason: Reject::PayloadCrc,
                                    });
                                }
                            }
                        }
                    }
                    // The header passed the sequence check when it arrived,
                    // but the receiver's counter may have moved since (a cam
                    // sends its answer while the next packet is still coming
                    // in, e.g. a duplicate of the request): a packet is
                    // accepted against the counter at the moment it completes.
                    if !self.sequence_ok(&header, expected_seq) {
                        self.stats.sequence_errors += 1;
                        self.consume(total);
                        if self.config.role == Role::Device {
                            return Some(Frame::Rejected {
                                header,
                                reason: Reject::Sequence,
                            });
                        }
                        continue;
                    }
                    // The payload shares the buffer's allocation: one
                    // reference count taken (split_to), none for the header
                    // and trailer around it.
                    let payload = if len > 0 {
                        self.consume(HEADER_SIZE);
                        let payload = self.buf.split_to(len).freeze();
                        self.front += len as u64;
                        self.consume(total - HEADER_SIZE - len);
                        payload
                    } else {
                        self.consume(total);
                        bytes::Bytes::new()
                    };
                    self.stats.packets += 1;
                    return Some(Frame::Packet(Packet { header, payload }));
                }
            }
        }
    }

    fn drop_front(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        self.stats.dropped_bytes += n as u64;
        self.consume(n);
    }

    /// Takes `n` buffered bytes off the front.
    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.front += n as u64;
    }

    /// The CRC [`push`](Self::push) computed for the payload of the packet
    /// at the buffer's front, if it did; forgets every older one.
    fn take_precomputed(&mut self, length: u16) -> Option<u32> {
        while let Some(&(pos, len, crc)) = self.precomputed.front() {
            if pos > self.front {
                return None;
            }
            self.precomputed.pop_front();
            if pos == self.front && len == length {
                return Some(crc);
            }
        }
        None
    }

    /// Appends `data` to the buffer. With CRCs on and a one-pass copy and
    /// CRC available ([`crc::copy_is_fused`]), every complete packet in
    /// `data` that starts where the previous one ends (the first one where
    /// the buffer's packet ends) is copied in with its payload CRC computed
    /// on the way, for [`next`](Self::next) to use.
    fn append(&mut self, data: &[u8]) {
        if !self.config.crc || !crc::copy_is_fused() {
            self.buf.extend_from_slice(data);
            return;
        }
        // One allocation at most, as extend_from_slice would make.
        self.buf.reserve(data.len());
        if self.buf.is_empty() {
            // Every CRC left is for bytes already gone.
            self.precomputed.clear();
        }
        // Where in `data` the next packet boundary is, if known.
        let mut at = match self.state {
            State::Sync | State::Header if self.buf.is_empty() => 0,
            State::Payload { header } => {
                let need = header.wire_len().saturating_sub(self.buf.len());
                if need > data.len() {
                    self.buf.extend_from_slice(data);
                    return;
                }
                need
            }
            _ => {
                self.buf.extend_from_slice(data);
                return;
            }
        };
        self.buf.extend_from_slice(&data[..at]);
        while let Some(len) = self.whole_packet_at(&data[at..]) {
            let pos = self.front + self.buf.len() as u64;
            let payload = at + HEADER_SIZE..at + HEADER_SIZE + usize::from(len);
            self.buf.extend_from_slice(&data[at..payload.start]);
            let c = crc::crc32_extend_bytes(&mut self.buf, &data[payload.clone()]);
            self.buf
                .extend_from_slice(&data[payload.end..payload.end + TRAILER_SIZE]);
            self.precomputed.push_back((pos, len, c));
            at = payload.end + TRAILER_SIZE;
        }
        self.buf.extend_from_slice(&data[at..]);
    }

    /// The length field of a complete packet with a valid header CRC, a
    /// length within `max_payload` and a payload long enough for the
    /// one-pass copy to pay, starting at `data[0]`.
    fn whole_packet_at(&self, data: &[u8]) -> Option<u16> {
        if !Header::crc_ok(data) {
            return None;
        }
        let len = le16(data, 6);
        let whole = HEADER_SIZE + usize::from(len) + TRAILER_SIZE;
        (usize::from(len) >= crc::SIMD_MIN_LEN
            && len <= self.config.max_payload
            && data.len() >= whole)
            .then_some(len)
    }

    fn sequence_ok(&self, h: &Header, expected: Option<u8>) -> bool {
        let Some(expected) = expected else {
            return true;
        };
        if h.sequence == expected || h.opcode == Opcode::PROTO_SYNC {
            return true;
        }
        match self.config.role {
            // With CRC off the firmware resends a packet unchanged, without
            // RTX (PROTOCOL.md section 4): one that asks for an ACK and is
            // numbered just before the counter may be such a copy, which the
            // host endpoint must see to ACK it again.
            Role::Host => {
                h.flags.intersects(Flags::EVENT | Flags::RTX)
                    || (!self.config.crc
                        && h.flags.contains(Flags::ACK_REQ)
                        && h.sequence == expected.wrapping_sub(1))
            }
            Role::Device => h.flags.intersects(Flags::ACK | Flags::NAK) || h.opcode.is_event(),
        }
    }

    /// Device role: look for a complete SYNC command inside a torn packet's
    /// buffered bytes; on success drop everything before it.
    fn recover_sync(&mut self) -> bool {
        let buf = &self.buf[..];
        let mut i = self.recovery_from.max(1);
        while i + HEADER_SIZE <= buf.len() {
            if buf[i..i + 2] == SYNC_BYTES
                && is_sync_command(&buf[i..i + HEADER_SIZE], self.config.crc)
            {
                self.stats.sync_recoveries += 1;
                self.drop_front(i);
                self.state = State::Header;
                self.recovery_from = 1;
                return true;
            }
            i += 1;
        }
        self.recovery_from = i;
        false
    }
}

/// True for a complete 10-byte PROTO_SYNC command on channel 0 with no payload.
fn is_sync_command(h: &[u8], crc: bool) -> bool {
    let fields_ok = h[3] == 0 && h[5] == Opcode::PROTO_SYNC.0 && h[6] == 0 && h[7] == 0;
    if !fields_ok {
        return false;
    }
    if crc {
        crate::crc::crc16(&h[..8]) == le16(h, 8)
    } else {
        // Without a CRC, also insist on a plain request (no flags).
        h[4] == 0
    }
}

/// Index of the first byte that may start a sync word: the first `AA D5`,
/// or a final lone `AA`, or the end.
fn scan_start(buf: &[u8]) -> usize {
    let mut i = 0;
    while let Some(p) = buf[i..].iter().position(|&b| b == SYNC_BYTES[0]) {
        let at = i + p;
        match buf.get(at + 1) {
            Some(&b) if b == SYNC_BYTES[1] => return at,
            None => return at,
            Some(_) => i = at + 1,
        }
    }
    buf.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::encode_packet;
    use crate::ChannelId;
    use alloc::vec::Vec;

    fn pkt(seq: u8, op: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let h = Header {
            sequence: seq,
            channel: ChannelId(1),
            flags: Flags::NONE,
            opcode: op,
            length: 0,
        };
        encode_packet(&h, payload, true, &mut v);
        v
    }

    fn framer(role: Role) -> Framer {
        Framer::new(FramerConfig::new(role, true, 4082))
    }

    fn drain(f: &mut Framer, seq: Option<u8>) -> Vec<Frame> {
        core::iter::from_fn(|| f.next(seq)).collect()
    }

    #[test]
    fn host_rescans_after_bad_payload_crc() {
        // A packet whose payload holds a complete inner packet; corrupt the outer CRC.
        let inner = pkt(1, Opcode::CHANNEL_SIZE, b"");
        let mut outer = pkt(0, Opcode::CHANNEL_READ, &inner);
        let n = outer.len();
        outer[n - 1] ^= 1;
        let mut f = framer(Role::Host);
        f.push(&outer);
        let frames = drain(&mut f, None);
        assert_eq!(frames.len(), 1);
        let Frame::Packet(p) = &frames[0] else {
            panic!()
        };
        assert_eq!(p.header.opcode, Opcode::CHANNEL_SIZE);
        assert_eq!(f.stats().payload_crc_errors, 1);
    }

    #[test]
    fn device_consumes_bad_payload_and_reports() {
        let inner = pkt(1, Opcode::CHANNEL_SIZE, b"");
        let mut outer = pkt(0, Opcode::CHANNEL_READ, &inner);
        let n = outer.len();
        outer[n - 1] ^= 1;
        let mut f = framer(Role::Device);
        f.push(&outer);
        let frames = drain(&mut f, None);
        assert_eq!(frames.len(), 1);
        assert!(matches!(
            frames[0],
            Frame::Rejected {
                reason: Reject::PayloadCrc,
                ..
            }
        ));
    }

    #[test]
    fn device_reports_overflow_and_sequence() {
        let mut f = Framer::new(FramerConfig::new(Role::Device, true, 50));
        f.push(&pkt(0, Opcode::CHANNEL_WRITE, &[0u8; 60]));
        let frames = drain(&mut f, Some(0));
        assert!(matches!(
            frames[0],
            Frame::Rejected {
                reason: Reject::Overflow,
                ..
            }
        ));
        let mut f = framer(Role::Device);
        f.push(&pkt(7, Opcode::CHANNEL_SIZE, b""));
        let frames = drain(&mut f, Some(3));
        assert!(matches!(
            frames[0],
            Frame::Rejected {
                reason: Reject::Sequence,
                ..
            }
        ));
        // The host stays silent.
        let mut f = framer(Role::Host);
        f.push(&pkt(7, Opcode::CHANNEL_SIZE, b""));
        assert!(drain(&mut f, Some(3)).is_empty());
        assert_eq!(f.stats().sequence_errors, 1);
    }

    #[test]
    fn device_recovers_sync_from_torn_packet() {
        let mut torn = pkt(0, Opcode::CHANNEL_WRITE, &[1u8; 100]);
        torn.truncate(40);
        let mut sync = Vec::new();
        encode_packet(&Header::default(), &[], true, &mut sync);
        let mut f = framer(Role::Device);
        f.push(&torn);
        f.push(&sync);
        let frames = drain(&mut f, None);
        assert_eq!(frames.len(), 1);
        let Frame::Packet(p) = &frames[0] else {
            panic!()
        };
        assert_eq!(p.header.opcode, Opcode::PROTO_SYNC);
        assert_eq!(f.stats().sync_recoveries, 1);
        // The host does not recover: it waits for the torn payload to complete.
        let mut f = framer(Role::Host);
        f.push(&torn);
        f.push(&sync);
        assert!(drain(&mut f, None).is_empty());
    }

    #[test]
    fn garbage_is_not_buffered() {
        let mut f = framer(Role::Host);
        let garbage: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 170) as u8).collect();
        f.push(&garbage);
        assert!(f.next(None).is_none());
        assert!(f.buffered() < 2);
    }
}
