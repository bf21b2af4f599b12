//! Host and cam endpoints driven against each other in one process.

mod common;

use common::{BufChan, Faults, Link};
use proto_core::caps::CapFlags;
use proto_core::channel::ChannelEntry;
use proto_core::device::DeviceConfig;
use proto_core::host::{Command, HostConfig, Reply, RequestError};
use proto_core::{ChannelId, Opcode, Status};

fn link_with_buffer(size: usize, host: HostConfig, faults: Faults, seed: u64) -> (Link, ChannelId) {
    let mut link = Link::new(host, DeviceConfig::default(), seed, faults);
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let id = link.cam.register("buf", Box::new(BufChan { data, locked: false })).unwrap();
    (link, id)
}

#[test]
fn connect_negotiates_caps() {
    let (mut link, _) = link_with_buffer(16, HostConfig::default(), Faults::default(), 1);
    let caps = link.connect().unwrap();
    assert_eq!(caps.max_payload, 4082);
    assert_eq!(caps.flags, CapFlags::KNOWN);
    assert_eq!(link.cam.caps(), caps);
}

#[test]
fn multi_fragment_read_and_multi_packet_write() {
    let (mut link, id) = link_with_buffer(100_000, HostConfig::default(), Faults::default(), 2);
    link.connect().unwrap();
    let r = link.request(&Command::read(id, 10, 50_000)).unwrap();
    let Reply::Data(d) = r else { panic!() };
    assert_eq!(d.len(), 50_000);
    assert!(d.iter().enumerate().all(|(i, &b)| b == ((i + 10) % 251) as u8));
    let write = vec![7u8; 4000];
    assert_eq!(link.request(&Command::write(id, 0, &write)).unwrap(), Reply::Ack);
    let Reply::Data(d) = link.request(&Command::read(id, 0, 4000)).unwrap() else { panic!() };
    assert!(d.iter().all(|&b| b == 7));
}

#[test]
fn channel_list_is_fragmented_under_default_caps() {
    let mut host = HostConfig::default();
    host.max_payload = 50;
    let (mut link, _) = link_with_buffer(16, host, Faults::default(), 3);
    link.connect().unwrap();
    let Reply::Data(d) = link.request(&Command::system(Opcode::CHANNEL_LIST)).unwrap() else { panic!() };
    let list = ChannelEntry::decode_list(&d).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1].name, "buf");
}

#[test]
fn naks_are_typed() {
    let (mut link, id) = link_with_buffer(16, HostConfig::default(), Faults::default(), 4);
    link.connect().unwrap();
    assert_eq!(link.request(&Command::read(id, 0, 0)), Err(RequestError::Nak(Status::INVALID)));
    assert_eq!(link.request(&Command::read(id, 10, 100)), Err(RequestError::Nak(Status::FAILED)));
    assert_eq!(link.request(&Command::read(ChannelId(9), 0, 1)), Err(RequestError::Nak(Status::INVALID)));
    assert_eq!(link.request(&Command::new(Opcode(0x77), id)), Err(RequestError::Nak(Status::INVALID)));
    assert_eq!(link.request(&Command::new(Opcode::SYS_INFO, id)), Err(RequestError::Nak(Status::INVALID)));
    // And the cam keeps serving.
    assert!(matches!(link.request(&Command::read(id, 0, 16)), Ok(Reply::Data(_))));
}

#[test]
fn registration_event_reaches_host() {
    let (mut link, _) = link_with_buffer(16, HostConfig::default(), Faults::default(), 5);
    link.connect().unwrap();
    link.cam.register("late", Box::new(BufChan { data: vec![1; 8], locked: false })).unwrap();
    link.request(&Command::system(Opcode::CHANNEL_POLL)).unwrap();
    assert!(link.events.iter().any(|e| e.channel == ChannelId::SYSTEM && e.event == 0));
    assert!(link.host.take_channels_changed());
}

#[test]
fn reads_survive_drops_with_acks() {
    let faults = Faults { host_to_cam_drop: 0.05, cam_to_host_drop: 0.05, jitter_us: 2000 };
    let (mut link, id) = link_with_buffer(200_000, HostConfig::default(), faults, 6);
    let mut ok = 0;
    for round in 0..20 {
        if link.connect().is_err() {
            continue;
        }
        match link.request(&Command::read(id, round * 1000, 60_000)) {
            Ok(Reply::Data(d)) => {
                assert_eq!(d.len(), 60_000);
                assert!(d.iter().enumerate().all(|(i, &b)| b == ((i + round as usize * 1000) % 251) as u8));
                ok += 1;
            }
            Ok(other) => panic!("{other:?}"),
            Err(_) => {}
        }
    }
    assert!(ok >= 5, "only {ok} reads succeeded");
}
