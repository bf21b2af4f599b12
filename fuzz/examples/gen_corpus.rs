//! Writes the seed corpus: `cargo run --example gen_corpus` (from `fuzz/`).
//!
//! Seeds are built from the stock host's wire vectors
//! (`../../shared/vectors/packets.json`, when present) and from traffic
//! recorded on the simulated link, in each target's input layout; `dst`
//! seeds are random inputs chosen by what the simulator did with them.

use std::path::Path;

use omv_fuzz::sim::{Sim, SimConfig, TO_CAM, TO_HOST};
use omv_fuzz::wire;
use omv_proto::host::{Command, HostConfig};
use omv_proto::rng::SimRng;
use omv_proto::{ChannelId, Flags, Opcode};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

/// `device_endpoint` / `host_endpoint` steps: `dt, len, bytes` pieces.
fn steps(stream: &[u8], piece: usize, dt: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for c in stream.chunks(piece.clamp(1, 255)) {
        out.push(dt);
        out.push(c.len() as u8);
        out.extend_from_slice(c);
    }
    out
}

/// Framer header: mode, max_payload (maps to 4082), seq0, chunk sizes.
fn framer_input(mode: u8, seq0: u8, chunks: &[u16], stream: &[u8]) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(&4032u16.to_le_bytes());
    v.push(seq0);
    v.push(chunks.len() as u8);
    for c in chunks {
        v.extend_from_slice(&c.to_le_bytes());
    }
    v.extend_from_slice(stream);
    v
}

fn main() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/packets.json");
    let (mut host_req, mut cam_out, mut no_crc) = (Vec::new(), Vec::new(), Vec::new());
    let mut payloads = Vec::new();
    if let Ok(text) = std::fs::read_to_string(&path) {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for p in v["packets"].as_array().unwrap() {
            let wire = hex(p["wire_hex"].as_str().unwrap());
            payloads.push(hex(p["payload_hex"].as_str().unwrap()));
            if !p["crc_enabled"].as_bool().unwrap() {
                no_crc.extend_from_slice(&wire);
            } else if p["name"].as_str().unwrap().starts_with("cam_") {
                cam_out.extend_from_slice(&wire);
            } else {
                host_req.extend_from_slice(&wire);
            }
        }
    } else {
        eprintln!(
            "{} not found: seeds from the simulated link only",
            path.display()
        );
    }

    // Traffic of a whole session on the simulated link.
    let mut sim = Sim::new(SimConfig::default());
    sim.record = true;
    sim.connect().unwrap();
    for cmd in [
        Command::system(Opcode::CHANNEL_LIST),
        Command::system(Opcode::PROTO_VERSION),
        Command::read(ChannelId(1), 0, 3000),
        Command::write(ChannelId(2), 0, b"print('hello')"),
        Command::read(ChannelId(3), 100, 200),
        Command::new(Opcode::CHANNEL_SHAPE, ChannelId(3)),
        Command::ioctl(ChannelId(2), 3, &[]),
    ] {
        sim.request(&cmd).unwrap();
    }
    let session = sim.tap.clone();

    let mut torn = wire::packet(0, 1, Flags::NONE, Opcode::CHANNEL_WRITE, &[0x11; 40]);
    torn.truncate(25);
    torn.extend_from_slice(&wire::sync());
    let mut rng = SimRng::new(5);
    let garbage: Vec<u8> = (0..600).map(|_| rng.next_u64() as u8).collect();
    let mut garbage_sync = garbage.clone();
    garbage_sync.extend_from_slice(&wire::sync());

    for target in ["framer_host", "framer_device"] {
        write(
            target,
            "host_requests",
            &framer_input(1, 0, &[7, 3, 100], &host_req),
        );
        write(target, "cam_packets", &framer_input(1, 0, &[], &cam_out));
        write(target, "crc_disabled", &framer_input(0, 0, &[5], &no_crc));
        write(
            target,
            "session_to_cam_seq",
            &framer_input(3, 0, &[64, 1], &session[TO_CAM]),
        );
        write(
            target,
            "session_to_host",
            &framer_input(1, 0, &[512], &session[TO_HOST]),
        );
        write(target, "torn_then_sync", &framer_input(1, 0, &[1], &torn));
        write(
            target,
            "garbage_then_sync",
            &framer_input(1, 0, &[33], &garbage_sync),
        );
    }

    // decoders: pmu_eventcnt, record size, payload.
    let dec = |pmu: u8, rs: u16, p: &[u8]| {
        let mut v = vec![pmu];
        v.extend_from_slice(&rs.to_le_bytes());
        v.extend_from_slice(p);
        v
    };
    for (i, p) in payloads.iter().filter(|p| !p.is_empty()).enumerate() {
        write("decoders", &format!("vector_{i}"), &dec(0, 40, p));
    }
    let mem = omv_proto::memory::MemoryStats {
        entries: vec![
            omv_proto::memory::MemoryEntry {
                total: 1000,
                used: 10,
                free: 990,
                ..Default::default()
            };
            2
        ],
    };
    write("decoders", "memory", &dec(0, 40, &mem.encode()));
    let list = omv_proto::channel::ChannelEntry::encode_list(&sim.cam.channels());
    write("decoders", "channel_list", &dec(0, 40, &list));
    write(
        "decoders",
        "sysinfo",
        &dec(0, 40, &sim.cam.config().sysinfo.encode()),
    );
    let mut fh = Vec::new();
    omv_proto::frame::FrameHeader::new(
        320,
        240,
        omv_proto::frame::PixFormat::RGB565,
        2,
        Some(30.0),
    )
    .encode_into(&mut fh);
    fh.extend_from_slice(&[1, 2, 3, 4]);
    write("decoders", "frame_header", &dec(0, 40, &fh));
    let rec = omv_proto::profile::ProfileRecord {
        address: 0x0800_0000,
        call_count: 3,
        events: vec![7, 8],
        ..Default::default()
    };
    let mut recs = Vec::new();
    omv_proto::profile::encode_records(&[rec.clone(), rec], &mut recs);
    write("decoders", "profile_2_events", &dec(2, 56, &recs));

    // device_endpoint: config byte, then steps of host bytes.
    write(
        "device_endpoint",
        "session_pad",
        &[vec![0x01], steps(&session[TO_CAM], 64, 3)].concat(),
    );
    write(
        "device_endpoint",
        "session_recover",
        &[vec![0x1e], steps(&session[TO_CAM], 9, 0)].concat(),
    );
    write(
        "device_endpoint",
        "vectors",
        &[vec![0x00], steps(&host_req, 200, 40)].concat(),
    );
    write(
        "device_endpoint",
        "torn",
        &[vec![0x00], steps(&torn[..25], 25, 1)].concat(),
    );
    write(
        "device_endpoint",
        "garbage",
        &[vec![0x04], steps(&garbage, 100, 200)].concat(),
    );

    // host_endpoint: kind, config, then steps of cam bytes answering it.
    for (kind, cmd) in [
        (0u8, Command::read(ChannelId(1), 0, 3000)),
        (4, Command::system(Opcode::CHANNEL_LIST)),
        (6, Command::new(Opcode::CHANNEL_SIZE, ChannelId(1))),
    ] {
        for cfg in [0u8, 3, 4] {
            let host = HostConfig::default()
                .ack(cfg & 1 != 0)
                .events(cfg & 2 != 0)
                .max_payload(if cfg & 4 != 0 { 50 } else { 4096 });
            let mut sim = Sim::new(SimConfig {
                host,
                ..SimConfig::default()
            });
            sim.connect().unwrap();
            sim.record = true;
            sim.request(&cmd).unwrap();
            let answer = steps(&sim.tap[TO_HOST], 97, 10);
            write(
                "host_endpoint",
                &format!("answer_{kind}_{cfg}"),
                &[vec![kind, cfg], answer].concat(),
            );
        }
    }
    write(
        "host_endpoint",
        "cam_vectors",
        &[vec![1, 3], steps(&cam_out, 50, 20)].concat(),
    );
    write(
        "host_endpoint",
        "garbage",
        &[vec![2, 0], steps(&garbage, 120, 255)].concat(),
    );

    // sim_schedule: bytes that `arbitrary` turns into rich scenarios. Its
    // collections continue while a "keep going" byte is odd, so random
    // bytes that are mostly odd, kept when they give several faults each
    // way and many operations.
    let mut rng = SimRng::new(100);
    let mut kept = 0;
    for attempt in 0..200_000 {
        if kept == 6 {
            break;
        }
        let len = 300 + rng.below(1500) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| (rng.next_u64() as u8) | u8::from(rng.chance(0.85)))
            .collect();
        let u = arbitrary::Unstructured::new(&bytes);
        let Ok(s) = <omv_fuzz::schedule::Scenario as arbitrary::Arbitrary>::arbitrary_take_rest(u)
        else {
            continue;
        };
        let faults = |v: &[omv_fuzz::sim::Fault]| {
            v.iter()
                .filter(|f| !matches!(f, omv_fuzz::sim::Fault::Deliver))
                .count()
        };
        let want_faults = kept % 2 == 1;
        let ok_faults = if want_faults {
            (2..12).contains(&faults(&s.to_cam)) && (2..12).contains(&faults(&s.to_host))
        } else {
            s.to_cam.len() + s.to_host.len() <= 1
        };
        if s.ops.len() >= 8 && ok_faults {
            omv_fuzz::schedule::check(s);
            write("sim_schedule", &format!("scenario_{kept}"), &bytes);
            kept += 1;
            eprintln!("sim_schedule seed {kept} after {attempt} attempts");
        }
    }
    dst_corpus();
    println!("corpus written");
}

/// `dst`: inputs for the deterministic simulator, whose dice decode them
/// draw by draw (`omv_tests::dst::dice`). Random bytes, each kept when it
/// is the first to reach one goal below with most of its bytes decoded
/// (so that mutating them steers the run), and always passing.
fn dst_corpus() {
    use omv_tests::dst::faults::FaultKind;
    use omv_tests::dst::RunStats;
    type Goal = (&'static str, fn(&RunStats) -> bool);
    let goals: [Goal; 8] = [
        ("no_faults", |s| s.faults.total() == 0 && s.ops >= 30),
        ("drops_and_flips", |s| {
            s.faults.kind_total(FaultKind::Drop) >= 3
                && s.faults.kind_total(FaultKind::BitFlip) >= 3
        }),
        ("duplicates_truncation_garbage", |s| {
            [
                FaultKind::Duplicate,
                FaultKind::Truncate,
                FaultKind::Garbage,
            ]
            .iter()
            .all(|&k| s.faults.kind_total(k) > 0)
        }),
        ("delays_and_stalls", |s| {
            s.faults.kind_total(FaultKind::Delay) >= 2 && s.faults.kind_total(FaultKind::Stall) > 0
        }),
        ("protocol_reset", |s| {
            s.faults.kind_total(FaultKind::ProtocolReset) > 0
        }),
        ("reboot", |s| s.faults.kind_total(FaultKind::Reboot) > 0),
        ("uploads_and_events", |s| s.uploads_ok >= 2 && s.events >= 2),
        ("resyncs", |s| {
            s.resyncs >= 5 && s.by_op.contains_key("renegotiate")
        }),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join("dst");
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let mut done = [false; 8];
    let mut rng = SimRng::new(200);
    for attempt in 0..20_000 {
        if done.iter().all(|&d| d) {
            break;
        }
        let len = 256 + rng.below(3840) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let o = omv_fuzz::dst::run(&bytes, 0);
        assert!(o.violation.is_none(), "a dst seed fails:\n{}", o.report());
        if o.input_used * 10 < len * 9 {
            continue;
        }
        for (i, (name, reached)) in goals.iter().enumerate() {
            if !done[i] && reached(&o.stats) {
                done[i] = true;
                // Only the decoded bytes: the rest would be dead weight.
                write("dst", name, &bytes[..o.input_used]);
                eprintln!(
                    "dst seed {name} after {attempt} attempts: {} bytes, {} ops, {} faults",
                    o.input_used,
                    o.stats.ops,
                    o.stats.faults.total()
                );
                break;
            }
        }
    }
    for (i, (name, _)) in goals.iter().enumerate() {
        if !done[i] {
            eprintln!("dst: no input reached {name}");
        }
    }
}
