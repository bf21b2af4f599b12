//! `host_endpoint`: a connected host with a request pending, fed arbitrary
//! bytes at arbitrary times instead of the cam's answer.
//!
//! Input layout: `u8 request kind, u8 config`, then steps as in
//! `device_endpoint` (`u8 dt, u8 len, len bytes`; time advances by
//! `dt² × 40 µs`). The host is first connected to a real cam over a clean
//! simulated link (config bit 0: ack on, bit 1: events on, bit 2:
//! max_payload 50); the request then goes nowhere and the junk comes back.
//!
//! Checks: no panic; at most one completion, always `Completion::Request`;
//! if the junk did not complete the request, the deadline is at most one
//! timeout after the last input and firing it completes the request with
//! `Timeout`; afterwards the next connect to the real cam succeeds and a
//! read returns exactly the cam's bytes.

use omv_proto::host::{Command, Completion, HostConfig, Reply, RequestError};
use omv_proto::{ChannelId, Duration, Opcode};

use crate::backends::pattern;
use crate::reader::Reader;
use crate::sim::{Sim, SimConfig};

fn request(kind: u8) -> Command {
    match kind % 8 {
        0 => Command::read(ChannelId(1), 0, 3000),
        1 => Command::read(ChannelId(1), 100, 10),
        2 => Command::write(ChannelId(1), 8, b"hello"),
        3 => Command::system(Opcode::PROTO_GET_CAPS),
        4 => Command::system(Opcode::CHANNEL_LIST),
        5 => Command::system(Opcode::SYS_INFO),
        6 => Command::new(Opcode::CHANNEL_SIZE, ChannelId(1)),
        _ => Command::ioctl(ChannelId(2), 3, &[]),
    }
}

/// The check behind `host_endpoint`.
pub fn check(data: &[u8]) {
    let mut r = Reader::new(data);
    let kind = r.u8();
    let cfg = r.u8();
    let host = HostConfig::default()
        .ack(cfg & 1 != 0)
        .events(cfg & 2 != 0)
        .max_payload(if cfg & 4 != 0 { 50 } else { 4096 });
    let timeout = host.timeout;
    let mut sim = Sim::new(SimConfig {
        host,
        ..SimConfig::default()
    });
    sim.connect().expect("connect over a clean link");

    let cmd = request(kind);
    sim.host
        .request(sim.now, &cmd)
        .expect("request on an idle, connected host");
    // The request goes nowhere.
    while sim.host.poll_transmit().is_some() {}

    let mut completions = Vec::new();
    let mut last_input = sim.now;
    while !r.is_empty() {
        let dt = u64::from(r.u8());
        let len = usize::from(r.u8());
        let chunk = r.bytes(len);
        sim.now = sim.now + Duration::from_micros(dt * dt * 40);
        if sim.host.poll_timeout().is_some_and(|t| t <= sim.now) {
            sim.host.handle_timeout(sim.now);
        }
        sim.host.handle_input(sim.now, chunk);
        last_input = sim.now;
        while sim.host.poll_transmit().is_some() {}
        while sim.host.poll_event().is_some() {}
        completions.extend(core::iter::from_fn(|| sim.host.poll_completion()));
    }
    if completions.is_empty() {
        let t = sim
            .host
            .poll_timeout()
            .expect("a pending request has a deadline");
        assert!(
            t <= last_input + timeout,
            "deadline {t:?} beyond {:?}",
            last_input + timeout
        );
        sim.now = sim.now.max(t);
        sim.host.handle_timeout(sim.now);
        completions.extend(core::iter::from_fn(|| sim.host.poll_completion()));
        assert_eq!(
            completions,
            [Completion::Request(Err(RequestError::Timeout(timeout)))]
        );
    }
    assert_eq!(completions.len(), 1, "{completions:?}");
    assert!(
        matches!(completions[0], Completion::Request(_)),
        "{completions:?}"
    );
    assert!(!sim.host.is_busy());
    assert_eq!(sim.host.poll_timeout(), None);

    // The next connect works, and the link carries exact data again.
    sim.drop_in_flight();
    sim.connect().expect("reconnect after junk");
    match sim.request(&Command::read(ChannelId(1), 0, 3000)) {
        Ok(Reply::Data(d)) => assert!(d[..] == pattern(3000, 0)[..], "read after reconnect"),
        other => panic!("read after reconnect: {other:?}"),
    }
}
