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
    let mut f = Framer::new(FramerConfig {
        role: Role::Host,
        crc,
        max_payload: omv_proto::MAX_PAYLOAD,
    });
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
        let mut link = link(
            HostConfig {
                crc,
                ..HostConfig::default()
            },
            DeviceConfig::default(),
        );
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
