//! The timed paths of section 4, driven by hand on a virtual clock: the
//! cam's retransmit schedule (500 ms, doubling, three resends, then a
//! protocol reset), a NAK forcing an early resend, SYNC while the cam waits
//! for an ACK, and the host re-ACKing and discarding RTX duplicates.

mod common;

use common::Link;
use omv_proto::caps::CapFlags;
use omv_proto::device::{DeviceEvent, ResetCause};
use omv_proto::framer::{Frame, Framer, FramerConfig, Role};
use omv_proto::host::{Command, Completion, Reply};
use omv_proto::{ChannelId, Duration, Flags, Packet};

const BUF: ChannelId = ChannelId(1);

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 251) as u8).collect()
}

/// A connected link (CRC, sequence numbers and ACKs on) with a 4 KiB buffer.
fn link() -> Link {
    let mut link = Link::with_buffer(7, BUF, pattern(4096));
    let caps = link.connect().unwrap();
    assert!(caps.flags.ack(), "{caps:?}");
    link
}

/// Parses one wire packet as the host would.
fn parse(wire: &[u8]) -> Packet {
    let mut f = Framer::new(FramerConfig::new(Role::Host, true, omv_proto::MAX_PAYLOAD));
    f.push(wire);
    match f.next(None) {
        Some(Frame::Packet(p)) => {
            assert_eq!(f.buffered(), 0, "one packet per transmit");
            p
        }
        other => panic!("not a valid packet: {other:?}"),
    }
}

/// Sends a 100-byte read from the host to the cam and returns the cam's
/// answer (one packet with ACK_REQ), leaving it undelivered.
fn unacked_answer(link: &mut Link) -> Vec<u8> {
    link.host
        .request(link.now, &Command::read(BUF, 0, 100))
        .unwrap();
    let req = link.host.poll_transmit().unwrap();
    assert!(link.host.poll_transmit().is_none());
    link.cam.handle_input(link.now, &req);
    let answer = link.cam.poll_transmit(link.now).unwrap();
    assert!(link.cam.poll_transmit(link.now).is_none());
    let p = parse(&answer);
    assert!(p.header.flags.contains(Flags::ACK_REQ), "{:?}", p.header);
    assert!(!p.header.flags.contains(Flags::RTX));
    answer
}

fn cam_resets(link: &mut Link) -> Vec<ResetCause> {
    core::iter::from_fn(|| link.cam.poll_event())
        .filter_map(|e| match e {
            DeviceEvent::ProtocolReset(c) => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn cam_retransmits_at_500_1000_2000_4000_ms_then_resets() {
    let mut link = link();
    let _ = cam_resets(&mut link);
    let first = unacked_answer(&mut link);
    let sent = link.now;
    let before = link.cam.stats();
    let mut at = sent;
    for (n, gap) in [500u64, 1000, 2000].into_iter().enumerate() {
        let due = at + Duration::from_millis(gap);
        assert_eq!(link.cam.poll_timeout(), Some(due), "resend {n}");
        // One microsecond early: nothing.
        link.cam
            .handle_timeout(at + Duration::from_micros(gap * 1000 - 1));
        assert!(link.cam.poll_transmit(due).is_none());
        link.cam.handle_timeout(due);
        let rtx = link.cam.poll_transmit(due).expect("a resend");
        assert!(link.cam.poll_transmit(due).is_none());
        // The same packet with RTX set, and a header CRC that matches it.
        let (p, orig) = (parse(&rtx), parse(&first));
        assert_eq!(p.header.flags, orig.header.flags | Flags::RTX);
        assert_eq!(
            (p.header.sequence, p.header.opcode, &p.payload),
            (orig.header.sequence, orig.header.opcode, &orig.payload)
        );
        at = due;
    }
    // The third resend waits 4 s; then the cam gives up.
    let due = at + Duration::from_millis(4000);
    assert_eq!(link.cam.poll_timeout(), Some(due));
    link.cam.handle_timeout(due);
    assert!(link.cam.poll_transmit(due).is_none(), "no fourth resend");
    assert_eq!(cam_resets(&mut link), [ResetCause::RetransmitGaveUp]);
    assert_eq!(link.cam.poll_timeout(), None);
    let after = link.cam.stats();
    assert_eq!(after.retransmits - before.retransmits, 3);
    assert_eq!(after.transport_errors - before.transport_errors, 1);
    // The reset restores the start-up configuration (everything on, the
    // largest payload), not the protocol's minimal caps.
    assert_eq!(link.cam.caps().flags, CapFlags::KNOWN);
    assert_eq!(link.cam.caps().max_payload, 4082);
    // The host meanwhile timed out; a new connect works.
    link.now = due;
    link.host.handle_timeout(due);
    while link.host.poll_completion().is_some() {}
    while link.host.poll_transmit().is_some() {}
    link.connect().unwrap();
    match link.request(&Command::read(BUF, 10, 50)) {
        Ok(Reply::Data(d)) => assert_eq!(d[..], pattern(4096)[10..60]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_ack_stops_the_timer_and_a_nak_resends_at_once() {
    let mut link = link();
    let answer = unacked_answer(&mut link);
    // The host NAKs it (say its payload CRC failed): the cam resends now.
    let p = parse(&answer);
    let nak = omv_proto::packet::Packet {
        header: omv_proto::Header {
            flags: Flags::NAK,
            length: 0,
            ..p.header
        },
        payload: Default::default(),
    };
    let mut wire = Vec::new();
    omv_proto::packet::encode_packet(&nak.header, &[], true, &mut wire);
    link.now = link.now + Duration::from_millis(3);
    link.cam.handle_input(link.now, &wire);
    assert_eq!(link.cam.poll_timeout(), Some(link.now));
    link.cam.handle_timeout(link.now);
    let rtx = link.cam.poll_transmit(link.now).expect("resend after NAK");
    assert!(parse(&rtx).header.flags.contains(Flags::RTX));
    // The host takes the resend, completes and ACKs it; the cam's timer stops.
    link.host.handle_input(link.now, &rtx);
    match link.host.poll_completion() {
        Some(Completion::Request(Ok(Reply::Data(d)))) => assert_eq!(d[..], pattern(100)[..]),
        other => panic!("{other:?}"),
    }
    let ack = link.host.poll_transmit().expect("host ACKs");
    let a = parse(&ack);
    assert_eq!(
        (a.header.flags, a.header.sequence),
        (Flags::ACK, p.header.sequence)
    );
    link.cam.handle_input(link.now, &ack);
    assert_eq!(link.cam.poll_timeout(), None);
}

#[test]
fn sync_while_waiting_for_an_ack_is_answered_and_drops_the_resend() {
    let mut link = link();
    let _ = unacked_answer(&mut link);
    assert!(link.cam.poll_timeout().is_some());
    // The host gives up on the answer and resyncs.
    link.now = link.now + Duration::from_millis(200);
    while link.host.poll_transmit().is_some() {}
    link.connect().unwrap();
    // The abandoned answer is never resent.
    let far = link.now + Duration::from_secs(10);
    link.cam.handle_timeout(far);
    assert!(link.cam.poll_transmit(far).is_none());
    assert_eq!(link.cam.stats().retransmits, 0);
    match link.request(&Command::read(BUF, 0, 8)) {
        Ok(Reply::Data(d)) => assert_eq!(d[..], pattern(8)[..]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn host_reacks_an_rtx_duplicate_and_discards_it() {
    let mut link = link();
    let answer = unacked_answer(&mut link);
    link.host.handle_input(link.now, &answer);
    assert!(matches!(
        link.host.poll_completion(),
        Some(Completion::Request(Ok(Reply::Data(_))))
    ));
    // Its ACK is lost on the way: the cam resends after 500 ms.
    let lost_ack = link.host.poll_transmit().expect("ACK");
    assert_eq!(parse(&lost_ack).header.flags, Flags::ACK);
    let due = link.cam.poll_timeout().unwrap();
    link.now = due;
    link.cam.handle_timeout(due);
    let rtx = link.cam.poll_transmit(due).unwrap();
    let received = link.host.stats().received;
    link.host.handle_input(link.now, &rtx);
    // Re-ACKed, not delivered again.
    assert!(link.host.poll_completion().is_none());
    let ack = link.host.poll_transmit().expect("re-ACK");
    assert_eq!(parse(&ack).header.flags, Flags::ACK);
    assert!(link.host.poll_transmit().is_none());
    link.cam.handle_input(link.now, &ack);
    assert_eq!(link.cam.poll_timeout(), None);
    assert!(link.host.stats().received >= received);
    // And the link goes on in step.
    match link.request(&Command::read(BUF, 100, 300)) {
        Ok(Reply::Data(d)) => assert_eq!(d[..], pattern(4096)[100..400]),
        other => panic!("{other:?}"),
    }
}
