//! The host's handshake against late answers. Every handshake round uses
//! the same sequence numbers and gets the same answers, so after an
//! abandoned attempt a late SYNC, GET_CAPS or SET_CAPS answer can complete
//! the next round although the cam never took its SET_CAPS (DST seed
//! 26179: the host ran with ACKs off, the cam with ACKs on). The host then
//! holds the caps unconfirmed, when a data packet can tell (ACKs set off,
//! the cam starting with them on), until the first data packet confirms
//! them or fails its request. No exchange is added: the handshake stays
//! the stock one.

mod common;

use omv_proto::caps::{CapFlags, Caps};
use omv_proto::header::{Header, HEADER_SIZE};
use omv_proto::host::{Command, Completion, HostConfig, HostEndpoint, Reply, RequestError};
use omv_proto::{ChannelId, Duration, Flags, Instant, Opcode};

/// What the cam offers: everything, 4082-byte payloads.
const CAM: Caps = Caps {
    flags: CapFlags(CapFlags::CRC.0 | CapFlags::SEQ.0 | CapFlags::ACK.0 | CapFlags::EVENTS.0),
    max_payload: 4082,
};

/// A packet from the cam, with CRC (the cam's start-up caps).
fn cam_packet(seq: u8, flags: Flags, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    common::wire(true, seq, ChannelId::SYSTEM, flags, opcode, payload)
}

/// The opcodes of the requests the host sent since the last call (ACKs
/// left out).
fn sent(host: &mut HostEndpoint) -> Vec<Opcode> {
    core::iter::from_fn(|| host.poll_transmit())
        .filter_map(|p| {
            let h = Header::decode(&p[..HEADER_SIZE]).ok()?;
            (!h.flags.contains(Flags::ACK)).then_some(h.opcode)
        })
        .collect()
}

fn completion(host: &mut HostEndpoint) -> Option<Completion> {
    host.poll_completion()
}

/// Runs SYNC and GET_CAPS with the cam's (possibly late) answers; the host
/// has sent SET_CAPS when this returns.
fn up_to_set_caps(host: &mut HostEndpoint, now: Instant) {
    host.connect(now);
    assert_eq!(sent(host), [Opcode::PROTO_SYNC]);
    host.handle_input(now, &cam_packet(0, Flags::ACK, Opcode::PROTO_SYNC, &[]));
    assert_eq!(sent(host), [Opcode::PROTO_GET_CAPS]);
    let answer = cam_packet(0, Flags::ACK_REQ, Opcode::PROTO_GET_CAPS, &CAM.encode());
    host.handle_input(now, &answer);
    assert_eq!(sent(host), [Opcode::PROTO_SET_CAPS]);
}

fn acks_off() -> HostConfig {
    HostConfig::default().ack(false)
}

/// Sends a CHANNEL_LIST and answers it with `flags` (a data packet, or a
/// NAK); returns the request's outcome.
fn list(host: &mut HostEndpoint, now: Instant, flags: Flags) -> Result<Reply, RequestError> {
    host.request(now, &Command::system(Opcode::CHANNEL_LIST))
        .unwrap();
    assert_eq!(sent(host), [Opcode::CHANNEL_LIST]);
    let seq = host.sequence();
    let payload: &[u8] = if flags.contains(Flags::NAK) {
        &[3, 0]
    } else {
        &[]
    };
    host.handle_input(now, &cam_packet(seq, flags, Opcode::CHANNEL_LIST, payload));
    match completion(host) {
        Some(Completion::Request(r)) => r,
        other => panic!("{other:?}"),
    }
}

/// A handshake round whose SET_CAPS's ACK is late: the attempt times out.
fn abandoned_round(host: &mut HostEndpoint, now: &mut Instant) {
    up_to_set_caps(host, *now);
    *now = *now + Duration::from_secs(2);
    host.handle_timeout(*now);
    assert!(matches!(
        completion(host),
        Some(Completion::Connected(Err(RequestError::Timeout(_))))
    ));
}

/// A round answered in full (on a link with late answers: by them).
fn round_answered(host: &mut HostEndpoint, now: Instant) {
    up_to_set_caps(host, now);
    host.handle_input(now, &cam_packet(1, Flags::ACK, Opcode::PROTO_SET_CAPS, &[]));
    assert!(sent(host).is_empty(), "no exchange added");
    assert!(matches!(
        completion(host),
        Some(Completion::Connected(Ok(_)))
    ));
}

#[test]
fn a_clean_handshake_is_the_stock_one_and_confirmed() {
    let mut host = HostEndpoint::new(acks_off());
    let now = Instant::ZERO;
    round_answered(&mut host, now);
    assert!(host.caps_confirmed());
    assert!(!host.caps().flags.ack());
}

#[test]
fn a_late_set_caps_ack_is_caught_by_the_next_data_packet() {
    let mut host = HostEndpoint::new(acks_off());
    let mut now = Instant::ZERO;
    abandoned_round(&mut host, &mut now);
    // The cam, reset by this round's SYNC, NAKed its damaged SET_CAPS and
    // kept ACKs on; the host cannot tell yet.
    round_answered(&mut host, now);
    assert!(!host.caps().flags.ack());
    assert!(!host.caps_confirmed());
    // A NAK shows nothing.
    assert_eq!(
        list(&mut host, now, Flags::NAK),
        Err(RequestError::Nak(omv_proto::Status(3)))
    );
    assert!(!host.caps_confirmed());
    // A data packet asking for an ACK does.
    assert_eq!(
        list(&mut host, now, Flags::ACK_REQ),
        Err(RequestError::CapsNotApplied { asks_ack: true })
    );
    // The next round goes through; its first data packet confirms it, and
    // the round after that is confirmed at once.
    round_answered(&mut host, now);
    assert!(!host.caps_confirmed());
    assert_eq!(
        list(&mut host, now, Flags::NONE),
        Ok(Reply::Data(Default::default()))
    );
    assert!(host.caps_confirmed());
    round_answered(&mut host, now);
    assert!(host.caps_confirmed());
}

#[test]
fn caps_a_data_packet_cannot_tell_apart_are_confirmed_at_once() {
    // ACKs on, as the cam starts: a late SET_CAPS ACK leaves both sides
    // with ACKs on.
    let mut host = HostEndpoint::new(HostConfig::default());
    let mut now = Instant::ZERO;
    abandoned_round(&mut host, &mut now);
    round_answered(&mut host, now);
    assert!(host.caps_confirmed());
}

#[test]
fn a_renegotiation_is_not_taken_for_a_data_answer_and_keeps_its_own_fallback() {
    let mut host = HostEndpoint::new(acks_off());
    let mut now = Instant::ZERO;
    abandoned_round(&mut host, &mut now);
    round_answered(&mut host, now);
    assert!(!host.caps_confirmed());
    // GET_CAPS's answer is data asking for an ACK (the cam's announcement
    // under its start-up caps, perhaps a late one): not a verdict on the
    // caps, and the round goes on.
    host.renegotiate(now).unwrap();
    assert_eq!(sent(&mut host), [Opcode::PROTO_GET_CAPS]);
    let seq = host.sequence();
    let answer = cam_packet(seq, Flags::ACK_REQ, Opcode::PROTO_GET_CAPS, &CAM.encode());
    host.handle_input(now, &answer);
    assert_eq!(sent(&mut host), [Opcode::PROTO_SET_CAPS]);
    let seq = host.sequence();
    host.handle_input(
        now,
        &cam_packet(seq, Flags::ACK, Opcode::PROTO_SET_CAPS, &[]),
    );
    assert!(matches!(
        completion(&mut host),
        Some(Completion::Connected(Ok(_)))
    ));
    // Without a SYNC the cam keeps the caps in force (ACKs off, as asked):
    // a SET_CAPS it missed would change nothing a data packet shows.
    assert!(host.caps_confirmed());
}
