//! `sim_schedule`: a request sequence and a fault schedule, both built by
//! `arbitrary`, run over the simulated link ([`crate::sim`]).
//!
//! Checks, for every operation:
//! * a successful read returns exactly the cam's bytes at that range, and
//!   never succeeds out of range;
//! * a successful write has landed exactly (the cam's buffer equals the
//!   model with the write applied, nothing else changed); a failed write
//!   either landed whole or not at all;
//! * appends and multi-packet uploads are exactly-once: never duplicated,
//!   an upload restarted from offset 0 after a failure leaves a prefix of
//!   the data, and a completed one exactly the data;
//! * operations that do not write leave the cam's bytes unchanged;
//! * answers decode (sizes, version, channel list, shape, poll, caps);
//! * while no fault has been applied yet, every valid operation succeeds
//!   and every invalid one fails with the exact NAK status;
//! * no livelock (each operation completes within a step budget);
//! * at the end, with the faults cleared and the link drained, a connect
//!   succeeds and full reads equal the model.

use arbitrary::Arbitrary;
use omv_proto::caps::{CapFlags, Caps};
use omv_proto::channel::ChannelEntry;
use omv_proto::device::DeviceConfig;
use omv_proto::host::{Command, HostConfig, Reply, RequestError};
use omv_proto::poll::PollBitmap;
use omv_proto::request::{decode_u32, WriteRequest};
use omv_proto::shape::Shape;
use omv_proto::stats::Stats;
use omv_proto::sysinfo::SysInfo;
use omv_proto::version::Version;
// The largest payload of a default cam (4082), what these harnesses were written for.
use omv_proto::{
    ChannelId, Duration, Opcode, Status, FIRMWARE_DEFAULT_PAYLOAD as MAX_PAYLOAD, MIN_PAYLOAD,
};

use crate::backends::{pattern, snapshot};
use crate::device::{BUF_LEN, VIEW_LEN};
use crate::sim::{Fault, Sim, SimConfig};

/// One step of a scenario.
#[derive(Clone, Debug, Arbitrary)]
pub enum Op {
    /// Resync explicitly.
    Connect,
    /// CHANNEL_READ on the buffer channel (1).
    Read {
        /// Offset (modulo BUF_LEN + 100).
        offset: u16,
        /// Length - 1 (modulo 4000).
        len: u16,
    },
    /// CHANNEL_READ on the zero-copy channel (3).
    ReadView {
        /// Offset (modulo VIEW_LEN + 100).
        offset: u16,
        /// Length - 1 (modulo 6000).
        len: u16,
    },
    /// One CHANNEL_WRITE on the buffer channel.
    Write {
        /// Offset (modulo BUF_LEN + 100).
        offset: u16,
        /// Data (cut to max_payload - 8).
        data: Vec<u8>,
    },
    /// One CHANNEL_WRITE appending to channel 2.
    Append {
        /// Data (cut to max_payload - 8).
        data: Vec<u8>,
    },
    /// A multi-packet upload to channel 2, restarted from 0 on failure.
    Upload {
        /// Data (at most 4000 bytes).
        data: Vec<u8>,
        /// Piece size - 1 (capped to max_payload - 8).
        piece: u8,
    },
    /// CHANNEL_SIZE of channel 1 + n % 3.
    Size {
        /// Channel selector.
        channel: u8,
    },
    /// Another request with a known answer.
    System {
        /// Which.
        which: u8,
    },
    /// The cam queues an event.
    Event {
        /// Channel (modulo 4).
        channel: u8,
        /// Event id.
        id: u16,
        /// Ask for an ACK.
        ack_req: bool,
    },
    /// Let time pass (ms modulo 5000).
    Wait {
        /// Milliseconds.
        ms: u16,
    },
}

/// A whole fuzz input.
#[derive(Clone, Debug, Arbitrary)]
pub struct Scenario {
    /// Host asks for ACKs.
    pub ack: bool,
    /// Host asks for events.
    pub events: bool,
    /// Host's max_payload (mapped into [50, 4096]).
    pub max_payload: u16,
    /// Host timeout in ms (mapped into [50, 2000]).
    pub timeout_ms: u16,
    /// Cam read piece size, if any (mapped into [1, 4082]).
    pub read_piece: Option<u16>,
    /// Cam resends before giving up (modulo 4).
    pub rtx_retries: u8,
    /// Channel 3 emits events on its own.
    pub chatty: bool,
    /// Resync before every operation. Without it, the harness resyncs
    /// only after a failure that calls for one (timeout, CHECKSUM,
    /// SEQUENCE or TIMEOUT NAK, unexpected or malformed answer), as the
    /// protocol requires (section 4): a host that skips it may take a stale
    /// retransmission of the abandoned exchange for the next answer.
    pub resync: bool,
    /// Faults host -> cam, one per packet.
    pub to_cam: Vec<Fault>,
    /// Faults cam -> host, one per packet.
    pub to_host: Vec<Fault>,
    /// The operations.
    pub ops: Vec<Op>,
}

/// Set OMV_FUZZ_TRACE=1 to print each operation (replaying a crash).
fn trace() -> bool {
    std::env::var_os("OMV_FUZZ_TRACE").is_some()
}

struct Model {
    buf: Vec<u8>,
    app: Vec<u8>,
    view: Vec<u8>,
}

fn transport_error(e: &RequestError) -> bool {
    !matches!(
        e,
        RequestError::Nak(Status::FAILED | Status::INVALID | Status::BUSY)
    )
}

/// The check behind `sim_schedule`.
pub fn check(s: Scenario) {
    let host = HostConfig::default()
        .ack(s.ack)
        .events(s.events)
        .max_payload(MIN_PAYLOAD + s.max_payload % (4096 - MIN_PAYLOAD + 1))
        .timeout(Duration::from_millis(50 + u64::from(s.timeout_ms % 1951)));
    let cam = DeviceConfig::default()
        .read_piece(s.read_piece.map(|p| 1 + p % MAX_PAYLOAD))
        .rtx_retries(s.rtx_retries % 4);
    // Delays stay under half the host timeout (see `SimConfig::max_delay`).
    let max_delay = host.timeout / 2;
    let mut sim = Sim::new(SimConfig {
        max_delay,
        host,
        cam,
        chatty: s.chatty,
        ..SimConfig::default()
    });
    sim.set_faults(s.to_cam.clone(), s.to_host.clone());
    let mut m = Model {
        buf: pattern(BUF_LEN, 0),
        app: Vec::new(),
        view: pattern(VIEW_LEN, 0x5a),
    };
    let mut need_sync = true;

    for op in s.ops.iter().take(40) {
        if !matches!(op, Op::Event { .. } | Op::Wait { .. } | Op::Connect)
            && (need_sync || !sim.host.is_connected())
        {
            let ok = (0..3).any(|_| sim.connect().is_ok());
            assert!(ok || sim.faulted, "no connect over a clean link");
            if !ok {
                continue;
            }
            need_sync = false;
        }
        let failed = run_op(&mut sim, &mut m, op);
        if trace() {
            eprintln!(
                "t={:?} op={op:?} failed={failed} faulted={} app={:?}",
                sim.now,
                sim.faulted,
                snapshot(&sim.app)
            );
        }
        if failed || s.resync {
            need_sync = true;
        }
        assert_eq!(
            snapshot(&sim.buf),
            m.buf,
            "channel 1 changed behind the model after {op:?}"
        );
        assert_eq!(
            snapshot(&sim.app),
            m.app,
            "channel 2 changed behind the model after {op:?}"
        );
    }

    // A perfect link from here on: drain, reconnect, read everything back.
    sim.clear_faults();
    sim.quiesce();
    assert_eq!(snapshot(&sim.buf), m.buf);
    assert_eq!(snapshot(&sim.app), m.app);
    sim.connect().expect("connect over a drained, perfect link");
    let full = [
        (ChannelId(1), m.buf.clone()),
        (ChannelId(2), m.app.clone()),
        (ChannelId(3), m.view.clone()),
    ];
    for (ch, want) in full {
        if want.is_empty() {
            continue;
        }
        match sim.request(&Command::read(ch, 0, want.len() as u32)) {
            Ok(Reply::Data(d)) => assert!(d[..] == want[..], "final read of {ch:?} differs"),
            other => panic!("final read of {ch:?}: {other:?}"),
        }
    }
}

/// Checks one read's outcome against `want` (`None`: out of range).
fn check_read(r: &Result<Reply, RequestError>, want: Option<&[u8]>, clean: bool, what: &str) {
    match (r, want) {
        (Ok(Reply::Data(d)), Some(w)) => assert!(d[..] == *w, "{what}: wrong bytes"),
        (Ok(other), _) => panic!("{what}: {other:?}"),
        (Err(e), Some(_)) => assert!(!clean, "{what} failed on a clean link: {e:?}"),
        (Err(e), None) => {
            if clean {
                assert_eq!(e, &RequestError::Nak(Status::FAILED), "{what} out of range");
            }
        }
    }
}

/// Runs one op; returns true when it failed in a way that calls for a resync.
///
/// "Clean" below means no fault was applied since the start, up to the end
/// of this op: then every outcome is exact.
fn run_op(sim: &mut Sim, m: &mut Model, op: &Op) -> bool {
    let max_data = WriteRequest::max_data(sim.host.caps().max_payload);
    let res: Result<Reply, RequestError> = match op {
        Op::Connect => {
            let r = sim.connect();
            if !sim.faulted {
                let caps = r.clone().expect("connect on a clean link");
                assert_eq!(caps, sim.cam.caps());
            }
            return r.is_err();
        }
        Op::Wait { ms } => {
            sim.wait(Duration::from_millis(u64::from(ms % 5000)));
            return false;
        }
        Op::Event {
            channel,
            id,
            ack_req,
        } => {
            sim.cam
                .send_event(ChannelId(channel % 4), Some(*id), *ack_req);
            return false;
        }
        Op::Read { offset, len } => {
            let (off, len) = (
                usize::from(offset % (BUF_LEN as u16 + 100)),
                1 + usize::from(len % 4000),
            );
            let r = sim.request(&Command::read(ChannelId(1), off as u32, len as u32));
            check_read(&r, m.buf.get(off..off + len), !sim.faulted, "read");
            r
        }
        Op::ReadView { offset, len } => {
            let (off, len) = (
                usize::from(offset % (VIEW_LEN as u16 + 100)),
                1 + usize::from(len % 6000),
            );
            let r = sim.request(&Command::read(ChannelId(3), off as u32, len as u32));
            check_read(&r, m.view.get(off..off + len), !sim.faulted, "readp");
            r
        }
        Op::Write { offset, data } => {
            let off = usize::from(offset % (BUF_LEN as u16 + 100));
            let data = &data[..data.len().min(max_data)];
            let r = sim.request(&Command::write(ChannelId(1), off as u32, data));
            let fits = off + data.len() <= BUF_LEN;
            if r.is_err() {
                // A request given up on may still land: look once it has arrived.
                sim.drain_to_cam();
            }
            let actual = snapshot(&sim.buf);
            match &r {
                Ok(Reply::Ack) => {
                    assert!(fits, "write past the end acknowledged");
                    m.buf[off..off + data.len()].copy_from_slice(data);
                    assert!(actual == m.buf, "acknowledged write did not land exactly");
                }
                Ok(other) => panic!("write answered {other:?}"),
                Err(e) => {
                    if !sim.faulted {
                        assert!(!fits, "write failed on a clean link: {e:?}");
                        assert_eq!(e, &RequestError::Nak(Status::FAILED));
                    }
                    // Landed whole or not at all, and nowhere else.
                    let mut landed = m.buf.clone();
                    if fits {
                        landed[off..off + data.len()].copy_from_slice(data);
                    }
                    assert!(
                        actual == m.buf || actual == landed,
                        "failed write left partial or stray bytes"
                    );
                    m.buf = actual;
                }
            }
            r
        }
        Op::Append { data } => {
            let data = &data[..data.len().min(max_data)];
            let r = sim.request(&Command::write(ChannelId(2), m.app.len() as u32, data));
            let mut landed = if m.app.is_empty() {
                Vec::new()
            } else {
                m.app.clone()
            };
            landed.extend_from_slice(data);
            let fits = landed.len() <= 8192;
            if r.is_err() {
                sim.drain_to_cam();
            }
            let actual = snapshot(&sim.app);
            match &r {
                Ok(Reply::Ack) => {
                    assert!(fits);
                    assert!(
                        actual == landed,
                        "acknowledged append did not land exactly once"
                    );
                }
                Ok(other) => panic!("append answered {other:?}"),
                Err(e) => {
                    assert!(sim.faulted || !fits, "append failed on a clean link: {e:?}");
                    assert!(
                        actual == m.app || (fits && actual == landed),
                        "failed append left {} bytes",
                        actual.len()
                    );
                }
            }
            m.app = actual;
            r
        }
        Op::Upload { data, piece } => {
            return upload(sim, m, &data[..data.len().min(4000)], *piece, max_data)
        }
        Op::Size { channel } => {
            let ch = 1 + channel % 3;
            let want = [BUF_LEN, m.app.len(), VIEW_LEN][usize::from(ch - 1)];
            let r = sim.request(&Command::new(Opcode::CHANNEL_SIZE, ChannelId(ch)));
            match &r {
                Ok(Reply::Data(d)) => assert_eq!(decode_u32(d).ok(), Some(want as u32)),
                Ok(other) => panic!("size answered {other:?}"),
                Err(e) => assert!(sim.faulted, "size failed on a clean link: {e:?}"),
            }
            r
        }
        Op::System { which } => system(sim, *which),
    };
    res.as_ref().err().is_some_and(transport_error)
}

fn system(sim: &mut Sim, which: u8) -> Result<Reply, RequestError> {
    let (cmd, may_fail) = match which % 10 {
        0 => (Command::system(Opcode::PROTO_STATS), false),
        1 => (Command::system(Opcode::PROTO_VERSION), false),
        2 => (Command::system(Opcode::SYS_INFO), false),
        3 => (Command::system(Opcode::CHANNEL_LIST), false),
        4 => (Command::system(Opcode::CHANNEL_POLL), false),
        5 => (Command::new(Opcode::CHANNEL_LOCK, ChannelId(1)), true),
        6 => (Command::new(Opcode::CHANNEL_UNLOCK, ChannelId(1)), true),
        7 => (Command::new(Opcode::CHANNEL_SHAPE, ChannelId(3)), false),
        8 => (Command::ioctl(ChannelId(3), 0, &7u32.to_le_bytes()), false),
        _ => (Command::system(Opcode::PROTO_GET_CAPS), false),
    };
    let r = sim.request(&cmd);
    let data = match &r {
        Ok(Reply::Data(d)) => d.clone(),
        Ok(Reply::Ack) => {
            assert!(
                matches!(which % 10, 5 | 6 | 8),
                "{:?} answered ACK",
                cmd.opcode
            );
            return r;
        }
        Ok(other) => panic!("{:?}: a reply of an unknown kind: {other:?}", cmd.opcode),
        Err(RequestError::Nak(Status::BUSY)) if may_fail => return r,
        Err(e) => {
            assert!(
                sim.faulted,
                "{:?} failed on a clean link: {e:?}",
                cmd.opcode
            );
            return r;
        }
    };
    match which % 10 {
        0 => {
            Stats::decode(&data).expect("stats");
        }
        1 => assert_eq!(Version::decode(&data).ok(), Some(sim.cam.config().version)),
        2 => assert_eq!(SysInfo::decode(&data).ok(), Some(sim.cam.config().sysinfo)),
        3 => {
            let list = ChannelEntry::decode_list(&data).expect("channel list");
            let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
            assert_eq!(names, ["usb", "buf", "stdin", "view"]);
        }
        4 => assert!(PollBitmap::decode(&data)
            .expect("poll")
            .is_ready(ChannelId(3))),
        7 => assert_eq!(Shape::decode(&data).ok(), Shape::new(&[VIEW_LEN as u32, 1])),
        9 => {
            let caps = Caps::decode_exact(&data).expect("caps");
            assert_eq!(
                caps,
                Caps {
                    flags: CapFlags::KNOWN,
                    max_payload: MAX_PAYLOAD
                }
            );
        }
        _ => panic!("{:?} answered data", cmd.opcode),
    }
    r
}

/// Uploads `data` to channel 2 in pieces; on failure restarts from offset 0
/// (at most twice), as an exactly-once upload must.
fn upload(sim: &mut Sim, m: &mut Model, data: &[u8], piece: u8, max_data: usize) -> bool {
    let piece = (usize::from(piece) + 1).min(max_data).max(1);
    if data.is_empty() {
        return false;
    }
    for _attempt in 0..3 {
        let mut ok = true;
        for (i, chunk) in data.chunks(piece).enumerate() {
            let r = sim.request(&Command::write(ChannelId(2), (i * piece) as u32, chunk));
            if r.is_err() {
                sim.drain_to_cam();
            }
            let actual = snapshot(&sim.app);
            if trace() {
                eprintln!(
                    "  upload piece {i} at {:?}: {r:?} -> app={actual:?}",
                    sim.now
                );
            }
            match r {
                Ok(Reply::Ack) => assert!(
                    actual[..] == data[..i * piece + chunk.len()],
                    "upload piece {i} did not land exactly"
                ),
                Ok(other) => panic!("upload answered {other:?}"),
                Err(e) => {
                    assert!(sim.faulted, "upload failed on a clean link: {e:?}");
                    // Whole pieces only, never repeated: a prefix of the data
                    // (or, before the first piece landed, the old contents).
                    let prefix = actual.len() <= data.len() && actual[..] == data[..actual.len()];
                    assert!(
                        prefix || (i == 0 && actual == m.app),
                        "upload left {} stray bytes",
                        actual.len()
                    );
                    m.app = actual;
                    ok = false;
                    break;
                }
            }
            m.app = actual;
        }
        if ok {
            assert_eq!(m.app, data);
            return false;
        }
        // Resync before the restart, as the stock host does.
        if !(0..3).any(|_| sim.connect().is_ok()) {
            return true;
        }
    }
    true
}
