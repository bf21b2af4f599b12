//! The host endpoint's bounds against a misbehaving or unusual cam:
//!
//! * bounded reassembly: an answer longer than the request can return is
//!   [`RequestError::ResponseTooLong`] as soon as the bound is passed, never
//!   more memory and never returned as data;
//! * with CRC off the firmware resends a packet without the RTX flag
//!   (PROTOCOL.md section 4): the host still recognises the copy, ACKs it
//!   again and does not deliver it twice;
//! * any `max_payload` a cam announces is accepted (the N6 and AE3 offer
//!   8178; the protocol allows up to 65535).

mod common;

use common::{Faults, Link};
use omv_proto::device::DeviceConfig;
use omv_proto::header::Header;
use omv_proto::host::{response_limit, Command, Completion, HostConfig, Reply, RequestError};
use omv_proto::packet::encode_packet;
use omv_proto::{ChannelId, Flags, Opcode, MAX_PAYLOAD};

const BUF: ChannelId = ChannelId(1);

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn packet(crc: bool, seq: u8, flags: Flags, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    common::wire(crc, seq, BUF, flags, opcode, payload)
}

fn link(host: HostConfig) -> Link {
    let mut link = Link::new(host, DeviceConfig::default(), 7, Faults::default());
    link.cam
        .register_at(
            BUF,
            "buf",
            Box::new(common::BufChan {
                data: pattern(20_000),
                locked: false,
            }),
        )
        .unwrap();
    link
}

/// Sends `cmd` by hand (the cam never sees it); returns the sequence the
/// answer carries.
fn start(link: &mut Link, cmd: &Command) -> u8 {
    link.host.request(link.now, cmd).unwrap();
    assert!(link.host.poll_transmit().is_some());
    link.host.sequence()
}

fn completions(link: &mut Link) -> Vec<Completion> {
    core::iter::from_fn(|| link.host.poll_completion()).collect()
}

/// ACK packets the host sent since the last call (everything it sends
/// while a request is in flight is an ACK).
fn acks(link: &mut Link) -> Vec<Vec<u8>> {
    core::iter::from_fn(|| link.host.poll_transmit()).collect()
}

fn reconnect_and_read(link: &mut Link) {
    while link.host.poll_transmit().is_some() {}
    link.connect().expect("reconnect");
    match link.request(&Command::read(BUF, 3, 5000)) {
        Ok(Reply::Data(d)) => assert_eq!(d[..], pattern(20_000)[3..5003]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn fragments_that_never_end_fail_once_past_the_length_asked_for() {
    let mut link = link(HostConfig::default());
    link.connect().unwrap();
    let mut seq = start(&mut link, &Command::read(BUF, 0, 100));
    let piece = [0x5au8; 48];
    // 48 + 48 = 96 bytes: still within the 100 asked for.
    for _ in 0..2 {
        let p = packet(
            true,
            seq,
            Flags::FRAGMENT | Flags::ACK_REQ,
            Opcode::CHANNEL_READ,
            &piece,
        );
        link.host.handle_input(link.now, &p);
        seq = seq.wrapping_add(1);
    }
    assert!(completions(&mut link).is_empty());
    // The third fragment passes the bound: the request fails at once.
    let p = packet(
        true,
        seq,
        Flags::FRAGMENT | Flags::ACK_REQ,
        Opcode::CHANNEL_READ,
        &piece,
    );
    link.host.handle_input(link.now, &p);
    seq = seq.wrapping_add(1);
    assert_eq!(
        completions(&mut link),
        [Completion::Request(Err(RequestError::ResponseTooLong {
            opcode: Opcode::CHANNEL_READ,
            limit: 100,
            received: 144,
        }))]
    );
    assert_eq!(link.host.poll_timeout(), None);
    // The cam goes on for 10,000 more fragments: each is still ACKed (so a
    // real cam gets to the end), none completes anything, nothing grows.
    let acked_before = link.host.stats().sent;
    for _ in 0..10_000 {
        let p = packet(
            true,
            seq,
            Flags::FRAGMENT | Flags::ACK_REQ,
            Opcode::CHANNEL_READ,
            &piece,
        );
        link.host.handle_input(link.now, &p);
        seq = seq.wrapping_add(1);
        assert!(link.host.poll_completion().is_none());
    }
    assert_eq!(link.host.stats().sent - acked_before, 10_000);
    assert!(link.host.stats().unexpected >= 10_000);
    reconnect_and_read(&mut link);
}

#[test]
fn one_oversized_packet_is_not_returned_as_data() {
    let mut link = link(HostConfig::default());
    assert_eq!(link.connect().unwrap().max_payload, 4082);
    let seq = start(&mut link, &Command::read(BUF, 0, 100));
    let big = pattern(3100);
    link.host.handle_input(
        link.now,
        &packet(true, seq, Flags::ACK_REQ, Opcode::CHANNEL_READ, &big),
    );
    assert_eq!(
        completions(&mut link),
        [Completion::Request(Err(RequestError::ResponseTooLong {
            opcode: Opcode::CHANNEL_READ,
            limit: 100,
            received: 3100,
        }))]
    );
    // Exactly the length asked for is fine.
    let seq = start(&mut link, &Command::read(BUF, 0, 100));
    link.host.handle_input(
        link.now,
        &packet(true, seq, Flags::ACK_REQ, Opcode::CHANNEL_READ, &big[..100]),
    );
    assert_eq!(
        completions(&mut link),
        [Completion::Request(Ok(Reply::Data(
            big[..100].to_vec().into()
        )))]
    );
    reconnect_and_read(&mut link);
}

#[test]
fn fixed_size_and_status_only_answers_are_bounded_too() {
    let mut link = link(HostConfig::default());
    link.connect().unwrap();
    let cases = [
        (Command::system(Opcode::SYS_INFO), 76, 77),
        (Command::system(Opcode::PROTO_STATS), 32, 33),
        (Command::new(Opcode::CHANNEL_SIZE, BUF), 4, 5),
        (Command::new(Opcode::CHANNEL_LOCK, BUF), 0, 1),
        (Command::write(BUF, 0, &[1, 2, 3]), 0, 4),
        (Command::ioctl(BUF, 1, &[]), 0, 2),
    ];
    for (cmd, limit, sent) in cases {
        let opcode = cmd.opcode;
        let seq = start(&mut link, &cmd);
        // Answered on the request's channel (0 for system opcodes).
        let h = Header {
            sequence: seq,
            channel: cmd.channel,
            flags: Flags::NONE,
            opcode,
            length: 0,
        };
        let mut p = Vec::new();
        encode_packet(&h, &vec![0u8; sent], true, &mut p);
        link.host.handle_input(link.now, &p);
        assert_eq!(
            completions(&mut link),
            [Completion::Request(Err(RequestError::ResponseTooLong {
                opcode,
                limit,
                received: sent,
            }))],
            "{opcode}"
        );
    }
    // The documented bounds.
    let mp = 4082;
    assert_eq!(response_limit(&Command::read(BUF, 9, 70_000), mp), 70_000);
    assert_eq!(
        response_limit(&Command::new(Opcode::CHANNEL_READ, BUF), mp),
        0
    );
    assert_eq!(
        response_limit(&Command::system(Opcode::CHANNEL_LIST), mp),
        512
    );
    assert_eq!(
        response_limit(&Command::system(Opcode::SYS_MEMORY), mp),
        4 + 24 * 255
    );
    assert_eq!(
        response_limit(&Command::new(Opcode::CHANNEL_SHAPE, BUF), mp),
        16
    );
    assert_eq!(response_limit(&Command::system(Opcode(0x7f)), mp), 4082);
    // The real cam's answers all fit their bounds.
    reconnect_and_read(&mut link);
    for cmd in [
        Command::system(Opcode::SYS_INFO),
        Command::system(Opcode::PROTO_STATS),
        Command::system(Opcode::PROTO_VERSION),
        Command::system(Opcode::CHANNEL_LIST),
        Command::system(Opcode::CHANNEL_POLL),
        Command::new(Opcode::CHANNEL_SIZE, BUF),
        Command::new(Opcode::CHANNEL_LOCK, BUF),
        Command::new(Opcode::CHANNEL_UNLOCK, BUF),
        Command::write(BUF, 0, &[1, 2, 3]),
    ] {
        assert!(link.request(&cmd).is_ok(), "{}", cmd.opcode);
    }
}

/// Connects with CRC off (ACKs on), then answers a read by hand.
fn crc_off_link(seq: bool) -> Link {
    let mut link = link(HostConfig::default().crc(false).seq(seq));
    let caps = link.connect().unwrap();
    assert!(!caps.flags.crc() && caps.flags.ack() && caps.flags.seq() == seq);
    link
}

#[test]
fn crc_off_resend_without_rtx_is_a_copy() {
    for seq_on in [true, false] {
        let mut link = crc_off_link(seq_on);
        let data = pattern(150);
        let s = start(&mut link, &Command::read(BUF, 0, 150));
        let frag = |seq: u8, part: &[u8], more: bool| {
            let f = if more {
                Flags::FRAGMENT | Flags::ACK_REQ
            } else {
                Flags::ACK_REQ
            };
            packet(false, seq, f, Opcode::CHANNEL_READ, part)
        };
        let a = frag(s, &data[..50], true);
        link.host.handle_input(link.now, &a);
        assert_eq!(acks(&mut link).len(), 1);
        // Our ACK was lost: the cam sends the same packet again, no RTX.
        link.host.handle_input(link.now, &a);
        let again = acks(&mut link);
        assert_eq!(again.len(), 1, "the copy is ACKed again (seq {seq_on})");
        assert_eq!(again[0][2], s, "the ACK carries the copy's sequence");
        assert_eq!(link.host.stats().duplicates, 1);
        link.host
            .handle_input(link.now, &frag(s.wrapping_add(1), &data[50..100], true));
        link.host
            .handle_input(link.now, &frag(s.wrapping_add(2), &data[100..], false));
        assert_eq!(
            completions(&mut link),
            [Completion::Request(Ok(Reply::Data(data.clone().into())))],
            "seq {seq_on}"
        );
        reconnect_and_read(&mut link);
    }
}

#[test]
fn crc_off_packet_one_behind_that_is_not_a_copy_is_dropped() {
    let mut link = crc_off_link(true);
    let data = pattern(100);
    let s = start(&mut link, &Command::read(BUF, 0, 100));
    let a = packet(
        false,
        s,
        Flags::FRAGMENT | Flags::ACK_REQ,
        Opcode::CHANNEL_READ,
        &data[..50],
    );
    link.host.handle_input(link.now, &a);
    assert_eq!(acks(&mut link).len(), 1);
    let seq_errors = link.host.stats().sequence;
    // Same sequence, other content: not a copy, a sequence error.
    let other = packet(
        false,
        s,
        Flags::FRAGMENT | Flags::ACK_REQ,
        Opcode::CHANNEL_READ,
        &[9u8; 50],
    );
    link.host.handle_input(link.now, &other);
    assert!(acks(&mut link).is_empty());
    assert_eq!(link.host.stats().sequence, seq_errors + 1);
    assert_eq!(link.host.stats().duplicates, 0);
    link.host.handle_input(
        link.now,
        &packet(
            false,
            s.wrapping_add(1),
            Flags::ACK_REQ,
            Opcode::CHANNEL_READ,
            &data[50..],
        ),
    );
    assert_eq!(
        completions(&mut link),
        [Completion::Request(Ok(Reply::Data(data.into())))]
    );
}

#[test]
fn crc_on_resend_keeps_needing_rtx() {
    // With CRC on the firmware marks resends: an identical packet without
    // RTX one behind the counter is stale and dropped silently (not ACKed).
    let mut link = link(HostConfig::default());
    link.connect().unwrap();
    let data = pattern(100);
    let s = start(&mut link, &Command::read(BUF, 0, 100));
    let a = packet(
        true,
        s,
        Flags::FRAGMENT | Flags::ACK_REQ,
        Opcode::CHANNEL_READ,
        &data[..50],
    );
    link.host.handle_input(link.now, &a);
    assert_eq!(acks(&mut link).len(), 1);
    link.host.handle_input(link.now, &a);
    assert!(acks(&mut link).is_empty());
    assert_eq!(link.host.stats().duplicates, 0);
    let mut rtx = a.clone();
    rtx[4] |= Flags::RTX.0;
    let hcrc = omv_proto::crc::crc16(&rtx[..8]);
    rtx[8..10].copy_from_slice(&hcrc.to_le_bytes());
    link.host.handle_input(link.now, &rtx);
    assert_eq!(acks(&mut link).len(), 1);
    assert_eq!(link.host.stats().duplicates, 1);
}

#[test]
fn any_announced_max_payload_is_accepted() {
    for cam_max in [498u16, 4082, 8178, MAX_PAYLOAD] {
        let mut link = Link::new(
            HostConfig::default().max_payload(MAX_PAYLOAD),
            DeviceConfig::default().max_payload(cam_max),
            3,
            Faults::default(),
        );
        link.cam
            .register_at(
                BUF,
                "buf",
                Box::new(common::BufChan {
                    data: pattern(100_000),
                    locked: false,
                }),
            )
            .unwrap();
        assert_eq!(link.connect().unwrap().max_payload, cam_max);
        let got = link.request(&Command::read(BUF, 1, 99_999)).unwrap();
        assert_eq!(got.into_bytes()[..], pattern(100_000)[1..]);
        // A write as large as the negotiated payload allows goes in one packet.
        let n = (usize::from(cam_max) - 8).min(100_000);
        let block = vec![0xa5u8; n];
        assert_eq!(
            link.request(&Command::write(BUF, 0, &block)),
            Ok(Reply::Ack)
        );
    }
    // The host asks for less than the cam offers: its own value wins.
    let mut link = Link::new(
        HostConfig::default().max_payload(6000),
        DeviceConfig::default().max_payload(8178),
        3,
        Faults::default(),
    );
    assert_eq!(link.connect().unwrap().max_payload, 6000);
}

/// DST seed 261: after a resync the host sent the last ACK of the exchange
/// before it again (the lost-ACK answer of fast retransmit). Sequence
/// numbers start over at every SYNC, so that stale ACK matched the first
/// packet of the next read, which the host had not received: the cam went
/// on with the second, and the host took it for the first (wrong bytes,
/// with sequence checking off). No ACK from before a SYNC is sent again.
#[test]
fn an_ack_from_before_a_resync_is_never_sent_again() {
    let mut link = link(HostConfig::default());
    link.connect().unwrap();
    let Ok(Reply::Data(d)) = link.request(&Command::read(BUF, 0, 10_000)) else {
        panic!("read failed");
    };
    assert_eq!(d[..], pattern(20_000)[..10_000]);
    // Within the exchange the last ACK can be sent again.
    assert!(link.host.resend_last_ack());
    while link.host.poll_transmit().is_some() {}
    // The in-session resync: SYNC, then SET_CAPS (no ACK asked for).
    assert!(link.host.resync_keep_caps(link.now));
    assert!(matches!(link.run(), Completion::Connected(Ok(_))));
    start(&mut link, &Command::read(BUF, 0, 10_000));
    assert!(!link.host.resend_last_ack());
    assert!(acks(&mut link).is_empty());
}

#[test]
fn a_late_answer_on_another_channel_is_not_taken_for_the_answer() {
    // A delayed copy of an earlier read's answer (channel 4) whose sequence
    // happens to be the one the read of channel 1 awaits (DST seed 64955).
    let mut link = link(HostConfig::default());
    link.connect().unwrap();
    let seq = start(&mut link, &Command::read(BUF, 0, 100));
    let h = Header {
        sequence: seq,
        channel: ChannelId(4),
        flags: Flags::ACK_REQ,
        opcode: Opcode::CHANNEL_READ,
        length: 0,
    };
    let mut stale = Vec::new();
    encode_packet(&h, &[9u8; 59], true, &mut stale);
    let unexpected = link.host.stats().unexpected;
    link.host.handle_input(link.now, &stale);
    assert!(completions(&mut link).is_empty());
    assert!(acks(&mut link).is_empty(), "not ACKed");
    assert_eq!(link.host.stats().unexpected, unexpected + 1);
    // The real answer, same sequence, completes the read.
    let real = pattern(100);
    link.host.handle_input(
        link.now,
        &packet(true, seq, Flags::ACK_REQ, Opcode::CHANNEL_READ, &real),
    );
    assert_eq!(
        completions(&mut link),
        [Completion::Request(Ok(Reply::Data(real.into())))]
    );
    // An answer on channel 0 (early firmware answered every request there)
    // is still taken.
    let seq = start(&mut link, &Command::read(BUF, 0, 10));
    let h = Header {
        channel: ChannelId::SYSTEM,
        ..h
    };
    let h = Header { sequence: seq, ..h };
    let mut on_zero = Vec::new();
    encode_packet(&h, &[7u8; 10], true, &mut on_zero);
    link.host.handle_input(link.now, &on_zero);
    assert_eq!(
        completions(&mut link),
        [Completion::Request(Ok(Reply::Data(vec![7u8; 10].into())))]
    );
    reconnect_and_read(&mut link);
}
