//! Host and cam endpoints driven against each other in one process.

mod common;

use common::{BufChan, Faults, Link};
use omv_proto::caps::CapFlags;
use omv_proto::channel::ChannelEntry;
use omv_proto::device::DeviceConfig;
use omv_proto::host::{Command, HostConfig, Reply, RequestError};
use omv_proto::{ChannelId, Opcode, Status};

fn link_with_buffer(size: usize, host: HostConfig, faults: Faults, seed: u64) -> (Link, ChannelId) {
    let mut link = Link::new(host, DeviceConfig::default(), seed, faults);
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let id = link
        .cam
        .register(
            "buf",
            Box::new(BufChan {
                data,
                locked: false,
            }),
        )
        .unwrap();
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
    assert!(d
        .iter()
        .enumerate()
        .all(|(i, &b)| b == ((i + 10) % 251) as u8));
    let write = vec![7u8; 4000];
    assert_eq!(
        link.request(&Command::write(id, 0, &write)).unwrap(),
        Reply::Ack
    );
    let Reply::Data(d) = link.request(&Command::read(id, 0, 4000)).unwrap() else {
        panic!()
    };
    assert!(d.iter().all(|&b| b == 7));
}

#[test]
fn channel_list_is_fragmented_under_default_caps() {
    let host = HostConfig::default().max_payload(50);
    let (mut link, _) = link_with_buffer(16, host, Faults::default(), 3);
    link.connect().unwrap();
    let Reply::Data(d) = link
        .request(&Command::system(Opcode::CHANNEL_LIST))
        .unwrap()
    else {
        panic!()
    };
    let list = ChannelEntry::decode_list(&d).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1].name, "buf");
}

#[test]
fn naks_are_typed() {
    let (mut link, id) = link_with_buffer(16, HostConfig::default(), Faults::default(), 4);
    link.connect().unwrap();
    assert_eq!(
        link.request(&Command::read(id, 0, 0)),
        Err(RequestError::Nak(Status::INVALID))
    );
    assert_eq!(
        link.request(&Command::read(id, 10, 100)),
        Err(RequestError::Nak(Status::FAILED))
    );
    assert_eq!(
        link.request(&Command::read(ChannelId(9), 0, 1)),
        Err(RequestError::Nak(Status::INVALID))
    );
    assert_eq!(
        link.request(&Command::new(Opcode(0x77), id)),
        Err(RequestError::Nak(Status::INVALID))
    );
    assert_eq!(
        link.request(&Command::new(Opcode::SYS_INFO, id)),
        Err(RequestError::Nak(Status::INVALID))
    );
    // And the cam keeps serving.
    assert!(matches!(
        link.request(&Command::read(id, 0, 16)),
        Ok(Reply::Data(_))
    ));
}

#[test]
fn registration_event_reaches_host() {
    let (mut link, _) = link_with_buffer(16, HostConfig::default(), Faults::default(), 5);
    link.connect().unwrap();
    link.cam
        .register(
            "late",
            Box::new(BufChan {
                data: vec![1; 8],
                locked: false,
            }),
        )
        .unwrap();
    link.request(&Command::system(Opcode::CHANNEL_POLL))
        .unwrap();
    assert!(link
        .events
        .iter()
        .any(|e| e.channel == ChannelId::SYSTEM && e.event == 0));
    assert!(link.host.take_channels_changed());
}

#[test]
fn reads_survive_drops_with_acks() {
    let faults = Faults {
        host_to_cam_drop: 0.05,
        cam_to_host_drop: 0.05,
        jitter_us: 2000,
    };
    let (mut link, id) = link_with_buffer(200_000, HostConfig::default(), faults, 6);
    let mut ok = 0;
    for round in 0..20 {
        if link.connect().is_err() {
            continue;
        }
        match link.request(&Command::read(id, round * 1000, 60_000)) {
            Ok(Reply::Data(d)) => {
                assert_eq!(d.len(), 60_000);
                assert!(d
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == ((i + round as usize * 1000) % 251) as u8));
                ok += 1;
            }
            Ok(other) => panic!("{other:?}"),
            Err(_) => {}
        }
    }
    assert!(ok >= 5, "only {ok} reads succeeded");
}

mod random_sequences {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Read { offset: u32, len: u32 },
        Write { offset: u32, data: Vec<u8> },
        Size,
        Poll,
    }

    const SIZE: u32 = 40_000;

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..SIZE, 1u32..20_000).prop_map(|(o, l)| Op::Read {
                offset: o,
                len: l.min(SIZE - o).max(1)
            }),
            (0..SIZE - 1, proptest::collection::vec(any::<u8>(), 1..6000)).prop_map(|(o, d)| {
                let n = d.len().min((SIZE - o) as usize);
                Op::Write {
                    offset: o,
                    data: d[..n].to_vec(),
                }
            }),
            Just(Op::Size),
            Just(Op::Poll),
        ]
    }

    /// Splits a write as a host driver does (max_payload - 8 per packet).
    /// Each piece is idempotent (a write at an offset), so a failed piece is
    /// retried alone after a resync.
    fn write_all(link: &mut Link, id: ChannelId, offset: u32, data: &[u8]) -> Result<(), String> {
        let mut done = 0;
        let mut failures = 0;
        while done < data.len() {
            if !link.host.is_connected() && link.connect().is_err() {
                failures += 1;
            } else {
                let chunk = usize::from(link.host.caps().max_payload) - 8;
                let piece = &data[done..(done + chunk).min(data.len())];
                match link.request(&Command::write(id, offset + done as u32, piece)) {
                    Ok(Reply::Ack) => done += piece.len(),
                    Ok(other) => return Err(format!("write answered {other:?}")),
                    Err(
                        RequestError::Timeout(_)
                        | RequestError::Nak(_)
                        | RequestError::UnexpectedOpcode { .. },
                    ) => {
                        link.host.disconnect();
                        failures += 1;
                    }
                    Err(e) => return Err(format!("unexpected error {e:?}")),
                }
            }
            if failures > 200 {
                return Err(format!(
                    "write at {offset} of {} bytes stuck at {done}",
                    data.len()
                ));
            }
        }
        Ok(())
    }

    proptest! {
        // PROPTEST_CASES overrides the default 48 cases.
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
            ..ProptestConfig::default()
        })]

        #[test]
        fn random_requests_under_faults(
            ops in proptest::collection::vec(op(), 1..25),
            seed in any::<u64>(),
            h2c in 0.0f64..0.08,
            c2h in 0.0f64..0.08,
            jitter in 0u64..3000,
            max_payload in 50u16..=4096,
            ack in any::<bool>(),
        ) {
            // Without ACKs a lost response packet cannot be recovered (by
            // design of the protocol), so cam-to-host drops need ACKs on.
            let c2h = if ack { c2h } else { 0.0 };
            let faults = Faults { host_to_cam_drop: h2c, cam_to_host_drop: c2h, jitter_us: jitter };
            let host = HostConfig::default().max_payload(max_payload).ack(ack);
            let (mut link, id) = link_with_buffer(SIZE as usize, host, faults, seed);
            let mut model: Vec<u8> = (0..SIZE as usize).map(|i| (i % 251) as u8).collect();
            for op in ops {
                // Each operation is retried (after a resync) until it succeeds;
                // every success must be exact.
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    prop_assert!(attempts < 200, "operation never succeeded");
                    if !link.host.is_connected() && link.connect().is_err() {
                        continue;
                    }
                    let r = match &op {
                        Op::Read { offset, len } => link.request(&Command::read(id, *offset, *len)).map(|r| {
                            let Reply::Data(d) = r else { panic!("read answered {r:?}") };
                            assert_eq!(&d[..], &model[*offset as usize..(*offset + *len) as usize], "read {offset}+{len}");
                        }),
                        Op::Write { offset, data } => {
                            let r = write_all(&mut link, id, *offset, data);
                            prop_assert!(r.is_ok(), "{:?}", r);
                            model[*offset as usize..*offset as usize + data.len()].copy_from_slice(data);
                            Ok(())
                        }
                        Op::Size => link.request(&Command::new(Opcode::CHANNEL_SIZE, id)).map(|r| {
                            assert_eq!(r, Reply::Data(SIZE.to_le_bytes().to_vec().into()));
                        }),
                        Op::Poll => link.request(&Command::system(Opcode::CHANNEL_POLL)).map(|_| ()),
                    };
                    match r {
                        Ok(()) => break,
                        Err(RequestError::Timeout(_)) | Err(RequestError::Nak(_)) | Err(RequestError::UnexpectedOpcode { .. }) => {
                            link.host.disconnect();
                        }
                        Err(e) => prop_assert!(false, "unexpected error {e:?}"),
                    }
                }
            }
        }
    }
}

#[test]
fn a_late_sync_ack_is_ignored() {
    let (mut link, id) = link_with_buffer(16, HostConfig::default(), Faults::default(), 7);
    link.connect().unwrap();
    link.host
        .request(link.now, &Command::new(Opcode::CHANNEL_SIZE, id))
        .unwrap();
    // An ACK of an earlier, abandoned SYNC attempt arrives first.
    let mut stale = Vec::new();
    let h = omv_proto::header::Header {
        flags: omv_proto::Flags::ACK,
        ..Default::default()
    };
    omv_proto::packet::encode_packet(&h, &[], true, &mut stale);
    link.host.handle_input(link.now, &stale);
    match link.run() {
        omv_proto::host::Completion::Request(r) => {
            assert_eq!(r, Ok(Reply::Data(16u32.to_le_bytes().to_vec().into())))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(link.host.stats().unexpected, 1);
}
