//! The bad-input table: one test per malformed-input class.
//!
//! Cam side: raw packets built with `encode_packet` go through a
//! `DeviceEndpoint` (`handle_input` / `poll_transmit`); its answers are
//! parsed with a host-role `Framer`. Each test asserts the exact NAK status
//! PROTOCOL.md prescribes (sections 2, 3, 5 and 10) and that the cam keeps
//! serving: a valid request afterwards gets a correct answer.
//!
//! Host side: a `HostEndpoint` fed garbage, silence, wrong opcodes,
//! truncated payloads and a cam that vanishes mid-read. Each case ends in a
//! typed error (never a panic), and the next connect works.

mod common;

use common::{BufChan, Link};
use omv_proto::backend::{ChannelBackend, ChannelError, Ops};
use omv_proto::caps::{CapFlags, Caps};
use omv_proto::device::{DeviceConfig, DeviceEndpoint, DeviceEvent};
use omv_proto::framer::{Frame, Framer, FramerConfig, Role};
use omv_proto::header::Header;
use omv_proto::host::{Command, Completion, HostEndpoint, Reply, RequestError};
use omv_proto::rng::SimRng;
use omv_proto::{ChannelId, DecodeError, Duration, Flags, Instant, Opcode, Packet, Status};

const BUF: ChannelId = ChannelId(1);
const CTL: ChannelId = ChannelId(2);

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// A channel with one ioctl (request 5, one u32 argument) and nothing else.
struct IoctlChan;

impl ChannelBackend for IoctlChan {
    fn ops(&self) -> Ops {
        Ops::IOCTL
    }
    fn ioctl(&mut self, request: u32, args: &[u8]) -> Result<(), ChannelError> {
        match (request, args.len()) {
            (5, 4) => Ok(()),
            _ => Err(ChannelError::Invalid),
        }
    }
}

fn wire(seq: u8, channel: ChannelId, flags: Flags, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    common::wire(true, seq, channel, flags, opcode, payload)
}

fn sync_wire() -> Vec<u8> {
    wire(0, ChannelId::SYSTEM, Flags::NONE, Opcode::PROTO_SYNC, &[])
}

fn read_payload(offset: u32, length: u32) -> Vec<u8> {
    [offset.to_le_bytes(), length.to_le_bytes()].concat()
}

fn write_payload(offset: u32, length: u32, data: &[u8]) -> Vec<u8> {
    [&offset.to_le_bytes()[..], &length.to_le_bytes(), data].concat()
}

/// A cam (channel 1: a 64-byte buffer; channel 2: an ioctl-only channel)
/// and the host side of the wire, done by hand.
struct Cam {
    ep: DeviceEndpoint,
    now: Instant,
    rx: Framer,
    /// The host's sequence counter.
    seq: u8,
}

impl Cam {
    /// A cam after SYNC (default caps: CRC and sequence on, max_payload 50:
    /// its start-up configuration is the protocol's minimal one, so that
    /// the hand-driven host needs no ACKs).
    fn new() -> Cam {
        let mut ep = DeviceEndpoint::new(DeviceConfig::default().startup_caps(Some(Caps::DEFAULT)));
        ep.register_at(
            BUF,
            "buf",
            Box::new(BufChan {
                data: pattern(64),
                locked: false,
            }),
        )
        .unwrap();
        ep.register_at(CTL, "ctl", Box::new(IoctlChan)).unwrap();
        let rx = Framer::new(FramerConfig::new(Role::Host, true, omv_proto::MAX_PAYLOAD));
        let mut cam = Cam {
            ep,
            now: Instant::ZERO,
            rx,
            seq: 0,
        };
        cam.sync();
        cam
    }

    /// Feeds raw bytes; returns every packet the cam sends in answer.
    fn raw(&mut self, bytes: &[u8]) -> Vec<Packet> {
        self.now = self.now + Duration::from_millis(1);
        self.ep.handle_input(self.now, bytes);
        let mut out = Vec::new();
        while let Some(w) = self.ep.poll_transmit(self.now) {
            self.rx.push(&w);
            while let Some(frame) = self.rx.next(None) {
                match frame {
                    Frame::Packet(p) => out.push(p),
                    other => panic!("cam sent a damaged packet: {other:?}"),
                }
            }
            assert_eq!(self.rx.buffered(), 0, "cam sent a partial packet");
        }
        for p in &out {
            if !p.header.flags.contains(Flags::EVENT) {
                self.seq = self.seq.wrapping_add(1);
            }
        }
        out
    }

    /// Sends a request with the current sequence number.
    fn send(&mut self, channel: ChannelId, opcode: Opcode, payload: &[u8]) -> Vec<Packet> {
        let w = wire(self.seq, channel, Flags::NONE, opcode, payload);
        self.raw(&w)
    }

    /// SYNC must be answered with exactly its ACK (sequence 0, counter reset).
    fn sync(&mut self) {
        let out = self.raw(&sync_wire());
        assert_eq!(out.len(), 1, "{out:?}");
        let h = out[0].header;
        assert_eq!(
            (h.opcode, h.flags, h.sequence, h.channel),
            (Opcode::PROTO_SYNC, Flags::ACK, 0, ChannelId::SYSTEM)
        );
        assert!(out[0].payload.is_empty());
        // The ACK of SYNC does not advance the counters.
        self.seq = 0;
        assert_eq!(self.ep.sequence(), 0);
    }

    /// Sends a request that must be answered by exactly one NAK `status`.
    fn expect_nak(&mut self, channel: ChannelId, opcode: Opcode, payload: &[u8], status: Status) {
        let seq = self.seq;
        let out = self.send(channel, opcode, payload);
        assert_nak(&out, seq, opcode, status);
    }

    /// The cam still serves: SIZE and a READ of channel 1 give exact answers.
    fn assert_serving(&mut self) {
        let seq = self.seq;
        let out = self.send(BUF, Opcode::CHANNEL_SIZE, &[]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(
            (
                out[0].header.opcode,
                out[0].header.flags,
                out[0].header.sequence
            ),
            (Opcode::CHANNEL_SIZE, Flags::NONE, seq)
        );
        assert_eq!(out[0].payload[..], 64u32.to_le_bytes());
        let data = self.read(0, 64);
        assert_eq!(data, pattern(64));
    }

    /// A valid read; returns the reassembled data.
    fn read(&mut self, offset: u32, length: u32) -> Vec<u8> {
        let out = self.send(BUF, Opcode::CHANNEL_READ, &read_payload(offset, length));
        assert!(!out.is_empty());
        let mut data = Vec::new();
        for (i, p) in out.iter().enumerate() {
            assert_eq!(p.header.opcode, Opcode::CHANNEL_READ);
            assert!(!p.header.flags.intersects(Flags::NAK | Flags::ACK), "{p:?}");
            assert_eq!(p.header.flags.contains(Flags::FRAGMENT), i + 1 < out.len());
            data.extend_from_slice(&p.payload);
        }
        data
    }
}

fn assert_nak(out: &[Packet], seq: u8, opcode: Opcode, status: Status) {
    assert_eq!(out.len(), 1, "expected one NAK {status}, got {out:?}");
    let h = out[0].header;
    assert_eq!(h.flags, Flags::NAK, "{out:?}");
    assert_eq!(h.opcode, opcode, "the NAK carries the request's opcode");
    assert_eq!(h.sequence, seq, "the NAK carries the cam's counter");
    assert_eq!(Status::decode(&out[0].payload), Ok(status), "{out:?}");
    assert_eq!(out[0].payload.len(), 2);
}

// ---------------------------------------------------------------- cam side

#[test]
fn short_read_payload() {
    let mut cam = Cam::new();
    for len in [0, 1, 4, 7] {
        cam.expect_nak(
            BUF,
            Opcode::CHANNEL_READ,
            &read_payload(0, 16)[..len],
            Status::INVALID,
        );
    }
    cam.assert_serving();
}

#[test]
fn short_write_payload() {
    let mut cam = Cam::new();
    for len in [0, 1, 4, 7] {
        cam.expect_nak(
            BUF,
            Opcode::CHANNEL_WRITE,
            &write_payload(0, 0, &[])[..len],
            Status::INVALID,
        );
    }
    cam.assert_serving();
}

#[test]
fn short_ioctl_payload() {
    let mut cam = Cam::new();
    for len in 0..4 {
        cam.expect_nak(
            CTL,
            Opcode::CHANNEL_IOCTL,
            &5u32.to_le_bytes()[..len],
            Status::INVALID,
        );
    }
    // The channel itself works.
    let seq = cam.seq;
    let out = cam.send(CTL, Opcode::CHANNEL_IOCTL, &[5, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (
            out[0].header.flags,
            out[0].header.opcode,
            out[0].header.sequence
        ),
        (Flags::ACK, Opcode::CHANNEL_IOCTL, seq)
    );
    cam.assert_serving();
}

#[test]
fn write_length_disagrees_with_payload() {
    let mut cam = Cam::new();
    // Length field past the data that follows (the firmware would read past the packet).
    cam.expect_nak(
        BUF,
        Opcode::CHANNEL_WRITE,
        &write_payload(0, 10, &[0xEE; 4]),
        Status::INVALID,
    );
    cam.expect_nak(
        BUF,
        Opcode::CHANNEL_WRITE,
        &write_payload(0, u32::MAX, &[0xEE; 4]),
        Status::INVALID,
    );
    // Length field short of the data (trailing bytes).
    cam.expect_nak(
        BUF,
        Opcode::CHANNEL_WRITE,
        &write_payload(0, 2, &[0xEE; 4]),
        Status::INVALID,
    );
    // Nothing landed.
    cam.assert_serving();
}

#[test]
fn zero_length_read() {
    let mut cam = Cam::new();
    cam.expect_nak(
        BUF,
        Opcode::CHANNEL_READ,
        &read_payload(0, 0),
        Status::INVALID,
    );
    cam.expect_nak(
        BUF,
        Opcode::CHANNEL_READ,
        &read_payload(64, 0),
        Status::INVALID,
    );
    cam.assert_serving();
}

#[test]
fn offset_plus_length_overflows_u32() {
    let mut cam = Cam::new();
    cam.expect_nak(
        BUF,
        Opcode::CHANNEL_READ,
        &read_payload(0xFFFF_FFF0, 0x20),
        Status::INVALID,
    );
    cam.expect_nak(
        BUF,
        Opcode::CHANNEL_READ,
        &read_payload(u32::MAX, u32::MAX),
        Status::INVALID,
    );
    cam.expect_nak(
        BUF,
        Opcode::CHANNEL_WRITE,
        &write_payload(u32::MAX - 1, 4, &[0xEE; 4]),
        Status::INVALID,
    );
    // In range of u32 but past the buffer: the backend says FAILED.
    cam.expect_nak(
        BUF,
        Opcode::CHANNEL_READ,
        &read_payload(60, 8),
        Status::FAILED,
    );
    cam.expect_nak(
        BUF,
        Opcode::CHANNEL_WRITE,
        &write_payload(62, 4, &[0xEE; 4]),
        Status::FAILED,
    );
    cam.assert_serving();
}

#[test]
fn unknown_channel() {
    let mut cam = Cam::new();
    for ch in [
        ChannelId(9),
        ChannelId(31),
        ChannelId(200),
        ChannelId::SYSTEM,
    ] {
        cam.expect_nak(
            ch,
            Opcode::CHANNEL_READ,
            &read_payload(0, 4),
            Status::INVALID,
        );
        cam.expect_nak(
            ch,
            Opcode::CHANNEL_WRITE,
            &write_payload(0, 1, &[1]),
            Status::INVALID,
        );
        cam.expect_nak(ch, Opcode::CHANNEL_SIZE, &[], Status::INVALID);
        cam.expect_nak(ch, Opcode::CHANNEL_LOCK, &[], Status::INVALID);
        cam.expect_nak(
            ch,
            Opcode::CHANNEL_IOCTL,
            &5u32.to_le_bytes(),
            Status::INVALID,
        );
    }
    // A channel without the method: also INVALID.
    cam.expect_nak(
        CTL,
        Opcode::CHANNEL_READ,
        &read_payload(0, 4),
        Status::INVALID,
    );
    cam.expect_nak(CTL, Opcode::CHANNEL_SHAPE, &[], Status::INVALID);
    cam.expect_nak(
        BUF,
        Opcode::CHANNEL_IOCTL,
        &5u32.to_le_bytes(),
        Status::INVALID,
    );
    cam.assert_serving();
}

#[test]
fn system_opcode_on_data_channel() {
    let mut cam = Cam::new();
    for op in [
        Opcode::PROTO_GET_CAPS,
        Opcode::PROTO_STATS,
        Opcode::PROTO_VERSION,
        Opcode::SYS_INFO,
        Opcode::SYS_MEMORY,
    ] {
        cam.expect_nak(BUF, op, &[], Status::INVALID);
    }
    cam.expect_nak(
        BUF,
        Opcode::PROTO_SET_CAPS,
        &Caps::DEFAULT.encode(),
        Status::INVALID,
    );
    // Not even SYNC resets the cam from a data channel, and SYS_RESET/BOOT
    // are refused there (no reboot requested).
    cam.expect_nak(BUF, Opcode::PROTO_SYNC, &[], Status::INVALID);
    cam.expect_nak(BUF, Opcode::SYS_RESET, &[], Status::INVALID);
    cam.expect_nak(BUF, Opcode::SYS_BOOT, &[], Status::INVALID);
    let events: Vec<_> = core::iter::from_fn(|| cam.ep.poll_event()).collect();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, DeviceEvent::ResetRequested | DeviceEvent::BootRequested)),
        "{events:?}"
    );
    assert_eq!(
        cam.ep.sequence(),
        cam.seq,
        "SYNC on a data channel reset the counter"
    );
    cam.assert_serving();
}

#[test]
fn unknown_opcode() {
    let mut cam = Cam::new();
    for op in [0x05, 0x0F, 0x15, 0x1F, 0x2A, 0x77, 0xFF] {
        cam.expect_nak(ChannelId::SYSTEM, Opcode(op), &[], Status::INVALID);
        if op >= 0x20 {
            cam.expect_nak(BUF, Opcode(op), &[1, 2, 3], Status::INVALID);
        }
    }
    cam.assert_serving();
}

#[test]
fn event_opcodes_from_the_host_are_invalid() {
    // Events travel cam -> host only; a host sending one gets NAK INVALID
    // rather than silence (and a timeout).
    let mut cam = Cam::new();
    cam.expect_nak(
        ChannelId::SYSTEM,
        Opcode::SYS_EVENT,
        &[0, 0],
        Status::INVALID,
    );
    cam.expect_nak(BUF, Opcode::CHANNEL_EVENT, &[], Status::INVALID);
    cam.assert_serving();
}

#[test]
fn set_caps_wrong_size() {
    let mut cam = Cam::new();
    let good = Caps {
        flags: CapFlags::KNOWN,
        max_payload: 1024,
    }
    .encode();
    for len in [0, 6, 15] {
        cam.expect_nak(
            ChannelId::SYSTEM,
            Opcode::PROTO_SET_CAPS,
            &good[..len],
            Status::INVALID,
        );
    }
    let long = [&good[..], &[0]].concat();
    cam.expect_nak(
        ChannelId::SYSTEM,
        Opcode::PROTO_SET_CAPS,
        &long,
        Status::INVALID,
    );
    assert_eq!(
        cam.ep.caps(),
        Caps::DEFAULT,
        "a refused SET_CAPS changed the caps"
    );
    cam.assert_serving();
}

#[test]
fn set_caps_max_payload_out_of_range() {
    let mut cam = Cam::new();
    for max in [0, 49, 4083, 0xFFFF] {
        let caps = Caps {
            flags: CapFlags::CRC | CapFlags::SEQ,
            max_payload: max,
        }
        .encode();
        cam.expect_nak(
            ChannelId::SYSTEM,
            Opcode::PROTO_SET_CAPS,
            &caps,
            Status::INVALID,
        );
        assert_eq!(cam.ep.caps(), Caps::DEFAULT);
    }
    // The bounds themselves are accepted (52: the Python package's minimum).
    for max in [50, 52, 4082] {
        let caps = Caps {
            flags: CapFlags::CRC | CapFlags::SEQ,
            max_payload: max,
        };
        let seq = cam.seq;
        let out = cam.send(ChannelId::SYSTEM, Opcode::PROTO_SET_CAPS, &caps.encode());
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].header.flags, out[0].header.sequence),
            (Flags::ACK, seq)
        );
        assert_eq!(cam.ep.caps(), caps);
    }
    cam.assert_serving();
}

#[test]
fn length_over_max_payload_is_overflow() {
    let mut cam = Cam::new();
    // Default caps: max_payload 50.
    let seq = cam.seq;
    let out = cam.raw(&wire(
        seq,
        BUF,
        Flags::NONE,
        Opcode::CHANNEL_WRITE,
        &write_payload(0, 43, &[0xEE; 43]),
    ));
    assert_nak(&out, seq, Opcode::CHANNEL_WRITE, Status::OVERFLOW);
    cam.assert_serving();
    // Negotiated 4082: a header claiming 4083 (or 0xFFFF) bytes is refused
    // as soon as the header is in, without waiting for the payload.
    let caps = Caps {
        flags: CapFlags::CRC | CapFlags::SEQ,
        max_payload: 4082,
    };
    cam.send(ChannelId::SYSTEM, Opcode::PROTO_SET_CAPS, &caps.encode());
    for len in [4083u16, 0xFFFF] {
        let seq = cam.seq;
        let h = Header {
            sequence: seq,
            channel: BUF,
            flags: Flags::NONE,
            opcode: Opcode::CHANNEL_WRITE,
            length: len,
        };
        let out = cam.raw(&h.encode(true));
        assert_nak(&out, seq, Opcode::CHANNEL_WRITE, Status::OVERFLOW);
        // The payload that follows is garbage to the cam: no answer.
        assert!(cam.raw(&vec![0u8; usize::from(len) + 4]).is_empty());
    }
    assert_eq!(cam.ep.stats().sequence_errors, 0);
    cam.assert_serving();
}

#[test]
fn bad_header_crc_is_ignored() {
    let mut cam = Cam::new();
    let seq = cam.seq;
    for payload in [&[][..], &read_payload(0, 4)[..]] {
        let mut w = wire(seq, BUF, Flags::NONE, Opcode::CHANNEL_READ, payload);
        w[8] ^= 0x01;
        assert!(
            cam.raw(&w).is_empty(),
            "the cam answered a packet with a bad header CRC"
        );
        // Also a flipped field under a stale CRC.
        let mut w = wire(seq, BUF, Flags::NONE, Opcode::CHANNEL_READ, payload);
        w[3] ^= 0x02;
        assert!(cam.raw(&w).is_empty());
    }
    assert_eq!(cam.ep.stats().received, 1, "only the SYNC was accepted");
    assert!(cam.ep.framer_stats().header_crc_errors >= 4);
    cam.assert_serving();
}

#[test]
fn bad_payload_crc_is_checksum() {
    let mut cam = Cam::new();
    let seq = cam.seq;
    let mut w = wire(
        seq,
        BUF,
        Flags::NONE,
        Opcode::CHANNEL_WRITE,
        &write_payload(0, 4, &[0xEE; 4]),
    );
    let n = w.len();
    w[n - 1] ^= 0x80;
    let out = cam.raw(&w);
    assert_nak(&out, seq, Opcode::CHANNEL_WRITE, Status::CHECKSUM);
    assert_eq!(cam.ep.stats().checksum_errors, 1);
    // A flipped payload byte under a good CRC field: the same.
    let seq = cam.seq;
    let mut w = wire(
        seq,
        BUF,
        Flags::NONE,
        Opcode::CHANNEL_WRITE,
        &write_payload(0, 4, &[0xEE; 4]),
    );
    w[12] ^= 0x01;
    assert_nak(&cam.raw(&w), seq, Opcode::CHANNEL_WRITE, Status::CHECKSUM);
    // The write did not land.
    cam.assert_serving();
}

#[test]
fn wrong_sequence_is_sequence() {
    let mut cam = Cam::new();
    cam.assert_serving();
    let seq = cam.seq;
    for wrong in [seq.wrapping_add(1), seq.wrapping_sub(1), seq ^ 0x80] {
        let expected = cam.seq;
        let out = cam.raw(&wire(wrong, BUF, Flags::NONE, Opcode::CHANNEL_SIZE, &[]));
        assert_nak(&out, expected, Opcode::CHANNEL_SIZE, Status::SEQUENCE);
    }
    assert_eq!(cam.ep.stats().sequence_errors, 3);
    // Both counters moved with each NAK, so the next request is in step.
    assert_eq!(cam.ep.sequence(), cam.seq);
    cam.assert_serving();
}

#[test]
fn torn_packet_then_sync_recovers() {
    let mut cam = Cam::new();
    cam.assert_serving();
    let mut torn = wire(
        cam.seq,
        BUF,
        Flags::NONE,
        Opcode::CHANNEL_WRITE,
        &write_payload(0, 30, &[0xEE; 30]),
    );
    torn.truncate(20);
    assert!(cam.raw(&torn).is_empty());
    // The cam waits for 32 more bytes; a SYNC inside them wins.
    cam.sync();
    assert_eq!(cam.ep.framer_stats().sync_recoveries, 1);
    assert_eq!(cam.ep.buffered(), 0);
    cam.assert_serving();
    // Also with the SYNC in the same chunk as the torn bytes.
    let both = [&torn[..], &sync_wire()].concat();
    let out = cam.raw(&both);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].header.opcode, out[0].header.flags),
        (Opcode::PROTO_SYNC, Flags::ACK)
    );
    cam.seq = 0;
    cam.assert_serving();
}

#[test]
fn garbage_then_sync_recovers() {
    let mut cam = Cam::new();
    let mut rng = SimRng::new(20);
    let garbage: Vec<u8> = (0..20 * 1024).map(|_| rng.next_u64() as u8).collect();
    for chunk in garbage.chunks(777) {
        // NAKs of whatever the garbage happens to hold are fine; nothing else.
        for p in cam.raw(chunk) {
            assert!(p.header.flags.contains(Flags::NAK), "{p:?}");
        }
        assert!(
            cam.ep.buffered() <= 10 + 50 + 4,
            "cam buffers {} bytes",
            cam.ep.buffered()
        );
    }
    cam.sync();
    cam.assert_serving();
    // Garbage full of sync words and valid-looking headers with bad CRCs.
    let mut g = Vec::new();
    for i in 0..2000u32 {
        g.extend_from_slice(&[0xAA, 0xD5, i as u8, 1, 0, 0x26]);
    }
    cam.raw(&g);
    cam.sync();
    cam.assert_serving();
}

// --------------------------------------------------------------- host side

/// A link (real host, real cam) whose host is then driven by hand.
fn link() -> Link {
    Link::with_buffer(1, BUF, pattern(20_000))
}

/// The next connect over the real link works and carries exact data.
fn assert_reconnects(link: &mut Link) {
    // Whatever the host had in flight goes nowhere.
    while link.host.poll_transmit().is_some() {}
    while link.host.poll_completion().is_some() {}
    link.connect().expect("reconnect");
    match link.request(&Command::read(BUF, 5, 1000)) {
        Ok(Reply::Data(d)) => assert_eq!(d[..], pattern(20_000)[5..1005]),
        other => panic!("{other:?}"),
    }
}

/// Sends `cmd` on a connected host; returns the sequence the answer must carry.
fn start(link: &mut Link, cmd: &Command) -> u8 {
    link.host.request(link.now, cmd).unwrap();
    assert!(link.host.poll_transmit().is_some());
    link.host.sequence()
}

fn completion(host: &mut HostEndpoint) -> Vec<Completion> {
    core::iter::from_fn(|| host.poll_completion()).collect()
}

fn cam_packet(
    seq: u8,
    channel: ChannelId,
    flags: Flags,
    opcode: Opcode,
    payload: &[u8],
) -> Vec<u8> {
    wire(seq, channel, flags, opcode, payload)
}

#[test]
fn host_garbage_input() {
    let mut link = link();
    link.connect().unwrap();
    let mut rng = SimRng::new(3);
    let garbage: Vec<u8> = (0..20 * 1024).map(|_| rng.next_u64() as u8).collect();
    // While idle: nothing happens.
    link.host.handle_input(link.now, &garbage);
    assert!(completion(&mut link.host).is_empty());
    // While a request waits: still nothing, until the timeout.
    start(&mut link, &Command::read(BUF, 0, 100));
    for chunk in garbage.chunks(1000) {
        link.host.handle_input(link.now, chunk);
    }
    assert!(completion(&mut link.host).is_empty());
    let deadline = link.host.poll_timeout().unwrap();
    assert_eq!(deadline, link.now + Duration::from_secs(1));
    link.host.handle_timeout(deadline);
    assert_eq!(
        completion(&mut link.host),
        [Completion::Request(Err(RequestError::Timeout(
            Duration::from_secs(1)
        )))]
    );
    assert!(link.host.stats().dropped_bytes > 0);
    assert_reconnects(&mut link);
}

#[test]
fn host_silent_port() {
    let mut link = link();
    // Connect to nothing: three SYNCs, one timeout each, then a typed failure.
    link.host.connect(link.now);
    let t0 = link.now;
    let mut syncs = 0;
    let mut done = Vec::new();
    for _ in 0..10 {
        while link.host.poll_transmit().is_some() {
            syncs += 1;
        }
        done = completion(&mut link.host);
        if !done.is_empty() {
            break;
        }
        let t = link
            .host
            .poll_timeout()
            .expect("a connecting host has a deadline");
        link.now = t;
        link.host.handle_timeout(t);
    }
    assert_eq!(
        done,
        [Completion::Connected(Err(RequestError::ResyncFailed {
            attempts: 3
        }))]
    );
    assert_eq!(syncs, 3);
    assert_eq!(
        link.now - t0,
        Duration::from_secs(3),
        "fails within max_retry × timeout"
    );
    assert!(!link.host.is_connected());
    assert_eq!(
        link.host.request(link.now, &Command::read(BUF, 0, 1)),
        Err(RequestError::NotConnected)
    );
    // A connected host whose cam goes silent: Timeout after exactly one timeout.
    link.connect().unwrap();
    start(&mut link, &Command::system(Opcode::SYS_INFO));
    let t = link.host.poll_timeout().unwrap();
    assert_eq!(t, link.now + Duration::from_secs(1));
    link.host
        .handle_timeout(Instant::from_micros(t.as_micros() - 1));
    assert!(completion(&mut link.host).is_empty());
    link.host.handle_timeout(t);
    assert_eq!(
        completion(&mut link.host),
        [Completion::Request(Err(RequestError::Timeout(
            Duration::from_secs(1)
        )))]
    );
    assert_reconnects(&mut link);
}

#[test]
fn host_wrong_opcode() {
    let mut link = link();
    link.connect().unwrap();
    let seq = start(&mut link, &Command::new(Opcode::CHANNEL_SIZE, BUF));
    let p = cam_packet(
        seq,
        BUF,
        Flags::NONE,
        Opcode::CHANNEL_LIST,
        &4u32.to_le_bytes(),
    );
    link.host.handle_input(link.now, &p);
    assert_eq!(
        completion(&mut link.host),
        [Completion::Request(Err(RequestError::UnexpectedOpcode {
            expected: Opcode::CHANNEL_SIZE,
            got: Opcode::CHANNEL_LIST
        }))]
    );
    // A NAK or ACK of another opcode: the same.
    let seq = start(&mut link, &Command::read(BUF, 0, 4));
    link.host.handle_input(
        link.now,
        &cam_packet(seq, BUF, Flags::NAK, Opcode::CHANNEL_WRITE, &[1, 0]),
    );
    assert!(matches!(
        &completion(&mut link.host)[..],
        [Completion::Request(Err(
            RequestError::UnexpectedOpcode { .. }
        ))]
    ));
    assert_reconnects(&mut link);
}

#[test]
fn host_truncated_payloads() {
    let mut link = link();
    // A GET_CAPS answer of 3 bytes while connecting: Malformed.
    link.host.connect(link.now);
    assert!(link.host.poll_transmit().is_some());
    link.host.handle_input(
        link.now,
        &cam_packet(0, ChannelId::SYSTEM, Flags::ACK, Opcode::PROTO_SYNC, &[]),
    );
    assert!(link.host.poll_transmit().is_some(), "GET_CAPS sent");
    link.host.handle_input(
        link.now,
        &cam_packet(
            0,
            ChannelId::SYSTEM,
            Flags::NONE,
            Opcode::PROTO_GET_CAPS,
            &[1, 2, 3],
        ),
    );
    assert_eq!(
        completion(&mut link.host),
        [Completion::Connected(Err(RequestError::Malformed(
            DecodeError::Short {
                what: "caps",
                need: 6,
                got: 3
            }
        )))]
    );
    assert!(!link.host.is_connected());
    assert_eq!(link.host.poll_timeout(), None);
    // A NAK with a 1-byte status: Malformed.
    link.connect().unwrap();
    let seq = start(&mut link, &Command::read(BUF, 0, 4));
    link.host.handle_input(
        link.now,
        &cam_packet(seq, BUF, Flags::NAK, Opcode::CHANNEL_READ, &[2]),
    );
    assert!(matches!(
        &completion(&mut link.host)[..],
        [Completion::Request(Err(RequestError::Malformed(
            DecodeError::Short {
                need: 2,
                got: 1,
                ..
            }
        )))]
    ));
    // A NAK with no status at all.
    let seq = start(&mut link, &Command::read(BUF, 0, 4));
    link.host.handle_input(
        link.now,
        &cam_packet(seq, BUF, Flags::NAK, Opcode::CHANNEL_READ, &[]),
    );
    assert!(matches!(
        &completion(&mut link.host)[..],
        [Completion::Request(Err(RequestError::Malformed(_)))]
    ));
    // A 1-byte event payload is ignored, not a crash.
    link.host.handle_input(
        link.now,
        &cam_packet(seq, BUF, Flags::EVENT, Opcode::CHANNEL_EVENT, &[1]),
    );
    assert_eq!(link.host.poll_event(), None);
    assert_reconnects(&mut link);
}

#[test]
fn host_cam_vanishes_mid_read() {
    let mut link = link();
    let caps = link.connect().unwrap();
    assert_eq!(caps.max_payload, 4082);
    link.host
        .request(link.now, &Command::read(BUF, 0, 20_000))
        .unwrap();
    let req = link.host.poll_transmit().unwrap();
    link.cam.handle_input(link.now, &req);
    // Two fragments arrive (each ACKed), then the cam vanishes.
    let mut got = 0;
    while got < 2 {
        let Some(w) = link.cam.poll_transmit(link.now) else {
            panic!("cam stopped early")
        };
        link.now = link.now + Duration::from_millis(5);
        link.host.handle_input(link.now, &w);
        while let Some(ack) = link.host.poll_transmit() {
            link.cam.handle_input(link.now, &ack);
        }
        got += 1;
    }
    assert!(completion(&mut link.host).is_empty());
    // The deadline runs from the last fragment.
    let t = link.host.poll_timeout().unwrap();
    assert_eq!(t, link.now + Duration::from_secs(1));
    link.now = t;
    link.host.handle_timeout(t);
    assert_eq!(
        completion(&mut link.host),
        [Completion::Request(Err(RequestError::Timeout(
            Duration::from_secs(1)
        )))]
    );
    // The cam comes back with the rest of that read still queued: the
    // reconnect's SYNC discards it.
    assert_reconnects(&mut link);
}

#[test]
fn host_chatty_cam_that_never_answers() {
    // The request is lost, but the cam keeps sending events (stdout NOTIFY
    // every 50 ms while it holds unread text). Events may extend the wait,
    // but not forever: the request must still time out.
    let mut link = link();
    link.connect().unwrap();
    let seq = start(&mut link, &Command::read(BUF, 0, 100));
    let t0 = link.now;
    let notify = cam_packet(
        seq,
        ChannelId::STDOUT,
        Flags::EVENT,
        Opcode::CHANNEL_EVENT,
        &[],
    );
    let mut done = Vec::new();
    let mut events = 0;
    for _ in 0..1200 {
        link.now = link.now + Duration::from_millis(50);
        if link.host.poll_timeout().is_some_and(|t| t <= link.now) {
            link.host.handle_timeout(link.now);
        }
        done.extend(completion(&mut link.host));
        if !done.is_empty() {
            break;
        }
        link.host.handle_input(link.now, &notify);
        while link.host.poll_event().is_some() {
            events += 1;
        }
    }
    assert!(events > 0);
    assert_eq!(
        done,
        [Completion::Request(Err(RequestError::Timeout(
            Duration::from_secs(1)
        )))],
        "the request never timed out while events kept coming"
    );
    assert!(
        link.now - t0 <= Duration::from_secs(2),
        "timed out only after {:?}",
        link.now - t0
    );
    assert_reconnects(&mut link);
}
