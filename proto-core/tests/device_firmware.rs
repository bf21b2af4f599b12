//! Firmware behaviours the cam endpoint reproduces (PROTOCOL.md sections 3,
//! 4 and 6), each checked against the real host endpoint where the host
//! has to answer them.

mod common;

use common::{BufChan, Faults, Link};
use omv_proto::device::DeviceConfig;
use omv_proto::framer::{Frame, Framer, FramerConfig, Role};
use omv_proto::host::{Command, Completion, HostConfig, Reply, RequestError};
use omv_proto::{ChannelId, Duration, Flags, Opcode, Packet, Status};

const A: ChannelId = ChannelId(1);
const B: ChannelId = ChannelId(2);

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 11 % 251) as u8).collect()
}

fn buf(len: usize) -> Box<BufChan> {
    Box::new(BufChan {
        data: pattern(len),
        locked: false,
    })
}

fn link(host: HostConfig, cam: DeviceConfig) -> Link {
    let mut link = Link::new(host, cam, 5, Faults::default());
    link.cam.register_at(A, "a", buf(4096)).unwrap();
    link.cam.register_at(B, "b", buf(4096)).unwrap();
    link
}

fn parse(wire: &[u8], crc: bool) -> Packet {
    let mut f = Framer::new(FramerConfig::new(Role::Host, crc, omv_proto::MAX_PAYLOAD));
    f.push(wire);
    match f.next(None) {
        Some(Frame::Packet(p)) => p,
        other => panic!("not a packet: {other:?}"),
    }
}

#[test]
fn one_lock_timestamp_for_all_channels() {
    let mut link = link(HostConfig::default(), DeviceConfig::default());
    link.connect().unwrap();
    let lock = |c| Command::new(Opcode::CHANNEL_LOCK, c);
    assert_eq!(link.request(&lock(A)), Ok(Reply::Ack));
    // Another channel, within lock_interval (10 ms) of A's lock: BUSY.
    assert_eq!(link.request(&lock(B)), Err(RequestError::Nak(Status::BUSY)));
    link.now = link.now + Duration::from_millis(10);
    assert_eq!(link.request(&lock(B)), Ok(Reply::Ack));
    // A SYNC releases the locks but keeps the timestamp.
    link.connect().unwrap();
    assert_eq!(link.request(&lock(A)), Err(RequestError::Nak(Status::BUSY)));
    link.now = link.now + Duration::from_millis(10);
    assert_eq!(link.request(&lock(A)), Ok(Reply::Ack));
    // A failed lock does not move the timestamp.
    link.now = link.now + Duration::from_millis(10);
    assert_eq!(
        link.request(&lock(A)),
        Err(RequestError::Nak(Status::BUSY)),
        "already locked"
    );
    assert_eq!(link.request(&lock(B)), Ok(Reply::Ack));
}

#[test]
fn crc_off_resends_are_the_same_packet_without_rtx() {
    for crc in [false, true] {
        let mut link = link(HostConfig::default().crc(crc), DeviceConfig::default());
        let caps = link.connect().unwrap();
        assert_eq!((caps.flags.crc(), caps.flags.ack()), (crc, true));
        link.host
            .request(link.now, &Command::read(A, 0, 100))
            .unwrap();
        let req = link.host.poll_transmit().unwrap();
        link.cam.handle_input(link.now, &req);
        let first = link.cam.poll_transmit(link.now).unwrap();
        // The host's ACK is lost; the cam resends after 500 ms.
        let due = link.now + Duration::from_millis(500);
        assert_eq!(link.cam.poll_timeout(), Some(due));
        link.cam.handle_timeout(due);
        let again = link.cam.poll_transmit(due).unwrap();
        let (p, q) = (parse(&first, crc), parse(&again, crc));
        if crc {
            assert_eq!(q.header.flags, p.header.flags | Flags::RTX);
            assert_eq!(
                omv_proto::crc::crc16(&again[..8]).to_le_bytes(),
                again[8..10]
            );
        } else {
            assert_eq!(again, first, "byte for byte the same packet");
            assert!(!q.header.flags.contains(Flags::RTX));
        }
        // The host takes the first, ACKs (the ACK is lost), and then gets
        // the copy: one answer, the copy ACKed again and discarded.
        link.now = due;
        link.host.handle_input(link.now, &first);
        let completion = link.host.poll_completion();
        let _lost_ack = link.host.poll_transmit().unwrap();
        link.host.handle_input(link.now, &again);
        let ack = link.host.poll_transmit().expect("the copy is ACKed");
        assert_eq!(ack[2], p.header.sequence);
        assert_eq!(link.host.stats().duplicates, 1, "crc {crc}");
        assert_eq!(
            completion,
            Some(Completion::Request(Ok(Reply::Data(
                pattern(4096)[..100].to_vec().into()
            ))))
        );
        assert!(link.host.poll_completion().is_none());
        // The cam takes that ACK and stops resending; the link works on.
        link.cam.handle_input(link.now, &ack);
        assert_eq!(link.cam.poll_timeout(), None);
        assert_eq!(
            link.request(&Command::read(B, 1, 10)).unwrap(),
            Reply::Data(pattern(4096)[1..11].to_vec().into())
        );
    }
}

fn sync_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    omv_proto::packet::encode_packet(&omv_proto::Header::default(), &[], true, &mut out);
    out
}

#[test]
fn sync_restores_the_startup_configuration() {
    use omv_proto::caps::{CapFlags, Caps};
    let mut link = link(
        HostConfig::default()
            .ack(false)
            .events(false)
            .max_payload(256),
        DeviceConfig::default(),
    );
    // A fresh cam runs its start-up configuration: everything on.
    let startup = Caps {
        flags: CapFlags::KNOWN,
        max_payload: 4082,
    };
    assert_eq!(link.cam.caps(), startup);
    let negotiated = link.connect().unwrap();
    assert_eq!(negotiated.max_payload, 256);
    assert_eq!(link.cam.caps(), negotiated);
    // A SYNC: back to the start-up configuration (not the minimal caps).
    link.cam.handle_input(link.now, &sync_bytes());
    assert_eq!(link.cam.caps(), startup);
    while link.cam.poll_transmit(link.now).is_some() {}
    // So during a handshake the cam's answers already ask for ACKs.
    link.host.connect(link.now);
    let sync = link.host.poll_transmit().unwrap();
    link.cam.handle_input(link.now, &sync);
    let ack = link.cam.poll_transmit(link.now).unwrap();
    link.host.handle_input(link.now, &ack);
    let get_caps = link.host.poll_transmit().unwrap();
    link.cam.handle_input(link.now, &get_caps);
    let caps_answer = parse(&link.cam.poll_transmit(link.now).unwrap(), true);
    assert!(caps_answer.header.flags.contains(Flags::ACK_REQ));
    assert_eq!(Caps::decode(&caps_answer.payload).unwrap(), startup);
    // The real host copes: it ACKs and finishes the handshake.
    while link.host.poll_transmit().is_some() {}
    while link.host.poll_completion().is_some() {}
    assert_eq!(link.connect().unwrap(), negotiated);
    assert_eq!(
        link.request(&Command::read(A, 0, 600)).unwrap(),
        Reply::Data(pattern(4096)[..600].to_vec().into())
    );
}

#[test]
fn startup_configuration_can_be_replaced_and_restored() {
    use omv_proto::caps::{CapFlags, Caps};
    use omv_proto::device::{DeviceEvent, ResetCause, StartupCapsError};
    let mut link = link(HostConfig::default(), DeviceConfig::default());
    assert_eq!(link.connect().unwrap().max_payload, 4082);
    // protocol.init(ack=False, max_payload=1024), as a script would.
    let mine = Caps {
        flags: CapFlags::CRC | CapFlags::SEQ | CapFlags::EVENTS,
        max_payload: 1024,
    };
    assert_eq!(
        link.cam.set_startup_caps(Caps {
            max_payload: 4083,
            ..mine
        }),
        Err(StartupCapsError::MaxPayload {
            got: 4083,
            min: 50,
            max: 4082
        })
    );
    assert_eq!(
        link.cam.set_startup_caps(Caps {
            max_payload: 49,
            ..mine
        }),
        Err(StartupCapsError::MaxPayload {
            got: 49,
            min: 50,
            max: 4082
        })
    );
    link.cam.set_startup_caps(mine).unwrap();
    // Not in force until restored.
    assert_eq!(link.cam.caps().max_payload, 4082);
    assert_eq!(
        link.request(&Command::new(Opcode::CHANNEL_LOCK, A)),
        Ok(Reply::Ack)
    );
    while link.cam.poll_event().is_some() {}
    link.cam.restore_startup_config();
    assert_eq!(link.cam.caps(), mine);
    assert_eq!(link.cam.sequence(), 0);
    assert_eq!(
        link.cam.poll_event(),
        Some(DeviceEvent::ProtocolReset(ResetCause::Restart))
    );
    // The host notices on its next request (a NAK SEQUENCE or silence)
    // and resyncs: the cam announces the script's payload, and the flags
    // it supports (so the host may turn ACKs back on).
    let caps = link.connect().unwrap();
    assert_eq!(
        caps,
        Caps {
            flags: CapFlags::KNOWN,
            max_payload: 1024
        }
    );
    // The lock was released by the restart.
    link.now = link.now + Duration::from_millis(10);
    assert_eq!(
        link.request(&Command::new(Opcode::CHANNEL_LOCK, A)),
        Ok(Reply::Ack)
    );
    // A renegotiation asking for more is clipped to what the cam announces.
    let mut host = link.host.config().clone();
    host.max_payload = 4082;
    link.host.set_config(host);
    link.host.renegotiate(link.now).unwrap();
    match link.run() {
        Completion::Connected(Ok(c)) => assert_eq!(c.max_payload, 1024, "clipped to the announced"),
        other => panic!("{other:?}"),
    }
}

/// A cam with the firmware's send loop, 512-byte read pieces (callback
/// channels) and a 20,000-byte channel A.
fn firmware_link() -> Link {
    link(
        HostConfig::default(),
        DeviceConfig::default()
            .firmware_send_loop(true)
            .read_piece(Some(512)),
    )
    .with_a(20_000)
}

trait WithA {
    fn with_a(self, len: usize) -> Link;
}

impl WithA for Link {
    fn with_a(mut self, len: usize) -> Link {
        self.cam.unregister(A);
        self.cam.register_at(A, "a", buf(len)).unwrap();
        while self.cam.poll_transmit(self.now).is_some() {}
        self
    }
}

/// Drives the cam alone (nobody listens) until `t`; returns what it sent.
fn cam_alone_until(link: &mut Link, t: omv_proto::Instant) -> Vec<Packet> {
    let mut out = Vec::new();
    loop {
        while let Some(w) = link.cam.poll_transmit(link.now) {
            out.push(parse(&w, link.cam.caps().flags.crc()));
        }
        match link.cam.poll_timeout() {
            Some(d) if d <= t => {
                link.now = link.now.max(d);
                link.cam.handle_timeout(link.now);
            }
            _ => break,
        }
    }
    link.now = link.now.max(t);
    out
}

#[test]
fn abandoned_long_read_survives_sync_and_give_up_until_the_port_closes() {
    let mut link = firmware_link();
    link.connect().unwrap();
    let data = pattern(20_000);
    link.host
        .request(link.now, &Command::read(A, 0, 20_000))
        .unwrap();
    let req = link.host.poll_transmit().unwrap();
    link.cam.handle_input(link.now, &req);
    // The host stops listening after the first piece. The cam resends it
    // at 0.5, 1.5 and 3.5 s, gives up at 7.5 s (a protocol reset)...
    let t0 = link.now;
    let sent = cam_alone_until(&mut link, t0 + Duration::from_millis(7499));
    assert_eq!(sent.len(), 4, "the piece and three resends");
    assert!(sent.iter().all(|p| p.payload[..] == data[..512]));
    let sent = cam_alone_until(&mut link, t0 + Duration::from_millis(7500));
    // ...and goes on with the next piece (sequence 0 after the reset, its
    // start-up configuration asking for an ACK).
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].payload[..], data[512..1024]);
    assert_eq!(sent[0].header.sequence, 0);
    assert_eq!(sent[0].header.opcode, Opcode::CHANNEL_READ);
    assert!(sent[0]
        .header
        .flags
        .contains(Flags::FRAGMENT | Flags::ACK_REQ));
    // A SYNC cancels only the current piece: the cam ACKs it, then sends
    // the next piece.
    link.cam.handle_input(link.now, &sync_bytes());
    let sent = {
        let t = link.now;
        cam_alone_until(&mut link, t)
    };
    assert_eq!(sent.len(), 2);
    assert_eq!(
        (sent[0].header.opcode, sent[0].header.flags),
        (Opcode::PROTO_SYNC, Flags::ACK)
    );
    assert_eq!(sent[1].payload[..], data[1024..1536]);
    // Other requests wait in the cam's input buffer meanwhile.
    let get_caps = {
        let mut w = Vec::new();
        let h = omv_proto::Header {
            opcode: Opcode::PROTO_GET_CAPS,
            ..omv_proto::Header::default()
        };
        omv_proto::packet::encode_packet(&h, &[], true, &mut w);
        w
    };
    link.cam.handle_input(link.now, &get_caps);
    assert!({
        let t = link.now;
        cam_alone_until(&mut link, t)
    }
    .is_empty());
    // Today's host cannot get out: while it resyncs it parses at most 52
    // bytes, so it cannot even ACK the 512-byte pieces; its SYNCs only
    // cancel pieces.
    while link.host.poll_transmit().is_some() {}
    while link.host.poll_completion().is_some() {}
    assert!(link.connect().is_err());
    assert!(link.cam.poll_timeout().is_some(), "still sending the read");
    // Closing the port ends it; the next host connects and reads.
    link.cam.set_transport_active(false);
    assert!(!link.cam.transport_active());
    assert_eq!(link.cam.poll_timeout(), None);
    assert!(link.cam.poll_transmit(link.now).is_none());
    while link.host.poll_transmit().is_some() {}
    link.connect().unwrap();
    assert!(link.cam.transport_active());
    assert_eq!(
        link.request(&Command::read(A, 100, 5000)).unwrap(),
        Reply::Data(data[100..5100].to_vec().into())
    );
}

#[test]
fn without_the_firmware_send_loop_a_sync_ends_the_read() {
    let mut link = link(
        HostConfig::default(),
        DeviceConfig::default().read_piece(Some(512)),
    )
    .with_a(20_000);
    link.connect().unwrap();
    link.host
        .request(link.now, &Command::read(A, 0, 20_000))
        .unwrap();
    let req = link.host.poll_transmit().unwrap();
    link.cam.handle_input(link.now, &req);
    assert_eq!(
        {
            let t = link.now;
            cam_alone_until(&mut link, t)
        }
        .len(),
        1
    );
    link.cam.handle_input(link.now, &sync_bytes());
    let sent = {
        let t = link.now + Duration::from_secs(30);
        cam_alone_until(&mut link, t)
    };
    assert_eq!(sent.len(), 1, "only the SYNC's ACK");
    while link.host.poll_transmit().is_some() {}
    while link.host.poll_completion().is_some() {}
    link.connect().unwrap();
}

#[test]
fn firmware_send_loop_defers_requests_until_the_ack_comes() {
    let mut link = firmware_link();
    link.connect().unwrap();
    link.host
        .request(link.now, &Command::read(A, 0, 100))
        .unwrap();
    let req = link.host.poll_transmit().unwrap();
    link.cam.handle_input(link.now, &req);
    let answer = link.cam.poll_transmit(link.now).unwrap();
    link.host.handle_input(link.now, &answer);
    assert!(matches!(
        link.host.poll_completion(),
        Some(Completion::Request(Ok(_)))
    ));
    let _lost_ack = link.host.poll_transmit().unwrap();
    // The host moves on; the cam still waits for the ACK and keeps the
    // request in its buffer.
    link.host
        .request(link.now, &Command::new(Opcode::CHANNEL_SIZE, A))
        .unwrap();
    let size = link.host.poll_transmit().unwrap();
    link.cam.handle_input(link.now, &size);
    assert!(link.cam.poll_transmit(link.now).is_none());
    // At 500 ms it resends; the host ACKs the copy; then the cam answers.
    link.now = link.now + Duration::from_millis(500);
    link.cam.handle_timeout(link.now);
    let rtx = link.cam.poll_transmit(link.now).unwrap();
    link.host.handle_input(link.now, &rtx);
    let ack = link.host.poll_transmit().unwrap();
    link.cam.handle_input(link.now, &ack);
    let answer = link.cam.poll_transmit(link.now).unwrap();
    link.host.handle_input(link.now, &answer);
    assert_eq!(
        link.host.poll_completion(),
        Some(Completion::Request(Ok(Reply::Data(
            20_000u32.to_le_bytes().to_vec().into()
        ))))
    );
    let ack = link.host.poll_transmit().unwrap();
    link.cam.handle_input(link.now, &ack);
    assert_eq!(link.cam.poll_timeout(), None);
    // A flood of requests while the cam is busy is bounded by its buffer.
    link.host
        .request(link.now, &Command::read(A, 0, 100))
        .unwrap();
    let req = link.host.poll_transmit().unwrap();
    link.cam.handle_input(link.now, &req);
    let _unacked = link.cam.poll_transmit(link.now).unwrap();
    // 1000 requests that pass the sequence check (10 bytes each): the
    // buffer holds 4096 bytes' worth, the rest is dropped.
    let one = {
        let mut w = Vec::new();
        let h = omv_proto::Header {
            sequence: link.cam.sequence(),
            channel: A,
            opcode: Opcode::CHANNEL_SIZE,
            ..omv_proto::Header::default()
        };
        omv_proto::packet::encode_packet(&h, &[], true, &mut w);
        w
    };
    let flood: Vec<u8> = (0..1000).flat_map(|_| one.clone()).collect();
    link.cam.handle_input(link.now, &flood);
    assert_eq!(link.cam.deferred_dropped(), 1000 - 4096 / 10);
    assert!(link.cam.buffered() < 4096 + 14);
}
