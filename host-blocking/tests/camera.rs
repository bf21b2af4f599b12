//! End-to-end: every `Camera` method against sim-device's SimCam, served on
//! a thread over an in-memory link.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use host_blocking::events::{Event, EventKind};
use host_blocking::symbols::SymbolTable;
use host_blocking::{Camera, CameraConfig, Error};
use proto_core::frame::PixFormat;
use proto_core::host::Reply;
use proto_core::{ChannelFlags, ChannelId, Opcode, Status};
use sim_device::board::Board;
use sim_device::cam::SimConfig;
use sim_device::user::BufferChannel;

#[test]
fn connect_and_introspection() {
    let (sim, mut cam, _) = standard();
    assert!(cam.is_connected());
    assert_eq!(cam.caps().max_payload, 4082);
    let v = cam.version().unwrap();
    assert_eq!(v.protocol, [1, 0, 2]);
    assert_eq!(v.firmware, [5, 0, 0]);
    let want = sim.with_cam(|c| c.board().sysinfo).unwrap();
    let s = cam.system_info().unwrap();
    assert_eq!(s.raw, want);
    assert_eq!(s.cpu_id, want.cpu_id);
    assert_eq!(s.device_id, want.device_id);
    assert_eq!(s.chip_id, want.chip_id);
    assert_eq!((s.usb_vid, s.usb_pid), (want.usb_vid(), want.usb_pid()));
    assert_eq!(s.pmu_eventcnt, want.caps().pmu_eventcnt());
    assert!(s.pmu_present && s.npu_present);
    assert_eq!(s.flash_size_kb, want.flash_kb);
    assert_eq!(s.ram_size_kb, want.ram_kb);
    assert_eq!(s.framebuffer_size_kb, want.framebuffer_kb);
    assert_eq!(s.stream_buffer_size_kb, want.stream_buffer_kb);
    let lines = cam.system_info_lines().unwrap();
    assert!(lines.iter().any(|l| l == "Firmware version: 5.0.0"));
    assert!(lines.iter().any(|l| l == "Profiler: Available"));
    assert!(lines.iter().any(|l| l.starts_with("  PMU: Yes (")));
    cam.print_system_info();
    let m = cam.memory_stats().unwrap();
    assert_eq!(m.entries.len(), 2);
    let h = cam.host_stats();
    assert!(h.sent >= 7 && h.received >= 7, "{h:?}");
    assert_eq!(h.checksum + h.sequence + h.timeouts, 0);
    let d = cam.device_stats().unwrap();
    assert!(d.received >= 7, "{d:?}");
    assert_eq!(d.checksum_errors, 0);
    assert_eq!(cam.resync_count(), 1);
}

#[test]
fn channel_lookup_by_name_and_id() {
    let (_sim, mut cam, _) = standard();
    let stdin = cam.get_channel("stdin").unwrap().unwrap();
    assert_eq!(stdin.id, ChannelId(1));
    assert!(stdin.flags.contains(ChannelFlags::EXEC));
    assert_eq!(
        cam.get_channel(ChannelId(3)).unwrap().unwrap().name,
        "stream"
    );
    assert_eq!(
        cam.get_channel_name(ChannelId(2)).unwrap().as_deref(),
        Some("stdout")
    );
    assert_eq!(cam.get_channel_id("bulk").unwrap(), Some(ChannelId(5)));
    // Unknown id and name: None, never an error or a panic.
    assert_eq!(cam.get_channel(ChannelId(30)).unwrap(), None);
    assert_eq!(cam.get_channel(ChannelId(200)).unwrap(), None);
    assert_eq!(cam.get_channel_name(ChannelId(31)).unwrap(), None);
    assert_eq!(cam.get_channel("nope").unwrap(), None);
    assert!(cam.has_channel("locky").unwrap());
    assert!(!cam.has_channel("nope").unwrap());
    let raw = cam.channel_list().unwrap();
    assert_eq!(raw, cam.channels().unwrap());
    cam.update_channels().unwrap();
    let names: Vec<String> = cam
        .channels()
        .unwrap()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(
        names,
        ["usb", "stdin", "stdout", "stream", "profile", "bulk", "locky"]
    );
}

#[test]
fn channel_read_write_by_name() {
    let (_sim, mut cam, _) = standard();
    assert_eq!(cam.channel_size("bulk").unwrap(), 1 << 20);
    assert_eq!(cam.channel_size("nope").unwrap(), 0);
    let all = cam.channel_read("bulk", None).unwrap().unwrap();
    assert_eq!(all, pattern(0, 1 << 20));
    assert_eq!(
        cam.channel_read("bulk", Some(1000)).unwrap().unwrap(),
        pattern(0, 1000)
    );
    assert_eq!(
        cam.channel_read("bulk", Some(0)).unwrap().unwrap(),
        Vec::<u8>::new()
    );
    assert_eq!(cam.channel_read("nope", None).unwrap(), None);
    // A multi-packet write (split at max_payload - 8), read back.
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 256) as u8).collect();
    assert!(cam.channel_write("bulk", &data).unwrap());
    assert_eq!(
        cam.channel_read("bulk", Some(20_000)).unwrap().unwrap(),
        data
    );
    assert!(!cam.channel_write("nope", b"x").unwrap());
    // Past the end: the cam refuses, typed.
    let id = cam.get_channel_id("bulk").unwrap().unwrap();
    let e = cam.channel_read_at(id, (1 << 20) - 10, 100).unwrap_err();
    assert!(e.is_nak(Status::FAILED), "{e}");
    assert!(cam.is_connected());
}

#[test]
fn by_id_primitives_with_offsets() {
    let (_sim, mut cam, _) = standard();
    let id = cam.get_channel_id("bulk").unwrap().unwrap();
    assert_eq!(cam.channel_size_at(id).unwrap(), 1 << 20);
    assert_eq!(
        cam.channel_read_at(id, 12_345, 9000).unwrap(),
        pattern(12_345, 9000)
    );
    cam.channel_write_at(id, 100_000, &[0xAA; 10_000]).unwrap();
    let back = cam.channel_read_at(id, 99_999, 10_002).unwrap();
    assert_eq!(back[0], pattern(99_999, 1)[0]);
    assert!(back[1..10_001].iter().all(|&b| b == 0xAA));
    assert_eq!(back[10_001], pattern(110_000, 1)[0]);
    assert_eq!(cam.channel_read_at(id, 5, 0).unwrap(), Vec::<u8>::new());
    assert!(matches!(
        cam.channel_read_at(id, u32::MAX, 2),
        Err(Error::InvalidArgument(_))
    ));
    // Shape of a channel without one, ioctl a channel does not know.
    let e = cam.channel_shape(id).unwrap_err();
    assert!(e.is_nak(Status::INVALID), "{e}");
    let e = cam.channel_ioctl(id, 99, &[]).unwrap_err();
    assert!(e.is_nak(Status::INVALID), "{e}");
    assert_eq!(
        e.to_string(),
        "CHANNEL_IOCTL on channel 5: the cam answered NAK INVALID"
    );
    let profile = cam.get_channel_id("profile").unwrap().unwrap();
    let shape = cam.channel_shape(profile).unwrap();
    assert_eq!(shape.dims().len(), 2);
    let poll = cam.channel_poll().unwrap();
    assert!(poll.is_ready(profile));
    assert!(cam.channel_ioctl_u32(profile, 0, &[0]).unwrap().is_empty());
}

#[test]
fn raw_requests() {
    let (_sim, mut cam, _) = standard();
    let r = cam
        .request(Opcode::PROTO_VERSION, ChannelId::SYSTEM, &[])
        .unwrap();
    let Some(Reply::Data(d)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(&d[..3], &[1, 0, 2]);
    let e = cam
        .request(Opcode(0x77), ChannelId::SYSTEM, &[])
        .unwrap_err();
    assert!(e.is_nak(Status::INVALID));
    // A system opcode on a data channel is refused by the cam.
    let e = cam
        .request(Opcode::SYS_INFO, ChannelId(2), &[])
        .unwrap_err();
    assert!(e.is_nak(Status::INVALID));
    // A malformed read (short payload) is refused, the link survives.
    let e = cam
        .request(Opcode::CHANNEL_READ, ChannelId(5), &[1, 2, 3])
        .unwrap_err();
    assert!(e.is_nak(Status::INVALID));
    // Too long for max_payload: refused before sending.
    let big = vec![0u8; 5000];
    assert!(matches!(
        cam.request(Opcode::CHANNEL_WRITE, ChannelId(5), &big),
        Err(Error::InvalidArgument(_))
    ));
    assert!(cam.is_connected());
    assert_eq!(
        cam.channel_read("bulk", Some(3)).unwrap().unwrap(),
        pattern(0, 3)
    );
}

#[test]
fn retry_helper() {
    let (_sim, mut cam, _) = standard();
    // A custom command with the built-in retry.
    let r = cam
        .retry(|c| c.request(Opcode::PROTO_STATS, ChannelId::SYSTEM, &[]))
        .unwrap();
    assert!(matches!(r, Some(Reply::Data(ref d)) if d.len() == 32));
    // Retryable failures are retried `retries` times (default 1)...
    let mut calls = 0;
    let r: Result<(), Error> = cam.retry(|_| {
        calls += 1;
        Err(Error::Timeout {
            op: Opcode::SYS_INFO,
            timeout: Duration::from_secs(1),
        })
    });
    assert!(r.is_err());
    assert_eq!(calls, 2);
    // ... others are not ...
    let mut calls = 0;
    let _ = cam.retry(|_| -> Result<(), Error> {
        calls += 1;
        Err(Error::InvalidArgument("x".into()))
    });
    assert_eq!(calls, 1);
    // ... and a nested retry does not multiply attempts.
    let mut calls = 0;
    let _ = cam.retry(|c| {
        c.retry(|_| -> Result<(), Error> {
            calls += 1;
            Err(Error::Checksum {
                op: Opcode::SYS_INFO,
            })
        })
    });
    assert_eq!(calls, 2);
    // Success after one failure.
    let mut calls = 0;
    let v = cam
        .retry(|c| {
            calls += 1;
            if calls == 1 {
                return Err(Error::Sequence {
                    op: Opcode::SYS_INFO,
                });
            }
            c.channel_size("bulk")
        })
        .unwrap();
    assert_eq!(v, 1 << 20);
}

#[test]
fn lock_guard_unlocks_on_drop() {
    let (_sim, mut cam, _) = standard();
    let id = cam.get_channel_id("locky").unwrap().unwrap();
    {
        let mut g = cam.lock_channel(id).unwrap().expect("lock granted");
        assert!(g.is_held());
        assert_eq!(g.id(), id);
        // Held: another lock is refused (BUSY is `false`, not an error).
        assert!(!g.channel_lock(id).unwrap());
        assert_eq!(g.channel_read_at(id, 0, 16).unwrap(), pattern(0, 16));
    }
    std::thread::sleep(Duration::from_millis(15)); // lock_interval
    assert!(cam.channel_lock(id).unwrap(), "the guard unlocked on drop");
    assert!(cam.channel_unlock(id).unwrap());
    std::thread::sleep(Duration::from_millis(15));
    // Explicit unlock, then drop does nothing more.
    let mut g = cam.lock_channel(id).unwrap().unwrap();
    assert!(g.unlock().unwrap());
    assert!(!g.is_held());
    drop(g);
    std::thread::sleep(Duration::from_millis(15));
    // A resync releases every lock: the guard knows.
    let mut g = cam.lock_channel(id).unwrap().unwrap();
    g.resync().unwrap();
    assert!(!g.is_held());
    drop(g);
    std::thread::sleep(Duration::from_millis(15));
    assert!(cam.channel_lock(id).unwrap());
    // A channel without lock support.
    let bulk = cam.get_channel_id("bulk").unwrap().unwrap();
    assert!(cam.lock_channel(bulk).is_err());
}

#[test]
fn scripts_exec_stop_stdout_and_events() {
    let (_sim, mut cam, log) = standard();
    let seen: Arc<Mutex<Vec<EventKind>>> = Arc::default();
    let s2 = seen.clone();
    cam.set_event_handler(move |e: &Event| s2.lock().unwrap().push(e.kind));
    let script = "print('hello')\n# forever\n";
    cam.exec(script).unwrap();
    assert!(wait_until(&mut cam, 5, |c| c.script_running() == Some(true)));
    let mut out = String::new();
    assert!(wait_until(&mut cam, 5, |c| {
        if let Some(t) = c.read_stdout().unwrap() {
            out.push_str(&t);
        }
        out.contains(&format!("ran {} bytes", script.len()))
    }));
    let id = cam.get_channel_id("stdin").unwrap().unwrap();
    assert!(
        cam.read_status().unwrap().ready_id(id),
        "stdin polls true while running"
    );
    cam.stop().unwrap();
    assert!(wait_until(&mut cam, 5, |c| c.script_running() == Some(false)));
    assert!(!cam.read_status().unwrap().ready("stdin"));
    assert_eq!(
        log.lock().unwrap().as_slice(),
        [b"print('hello')\n# forever\n".to_vec()]
    );
    let kinds = seen.lock().unwrap().clone();
    assert!(kinds.contains(&EventKind::ScriptStarted));
    assert!(kinds.contains(&EventKind::ScriptStopped));
    let pending: Vec<EventKind> = cam.take_events().iter().map(|e| e.kind).collect();
    assert_eq!(pending, kinds, "the queue holds what the handler saw");
    assert!(cam.pending_events().next().is_none());
    let st = cam.event_state();
    assert_eq!((st.scripts_started, st.scripts_stopped), (1, 1));
    // Large script: several packets, exactly once.
    let big = "x = 1\n".repeat(3000);
    cam.exec(&big).unwrap();
    assert!(wait_until(&mut cam, 5, |_| log.lock().unwrap().len() == 2));
    assert_eq!(log.lock().unwrap()[1], big.as_bytes());
    assert!(matches!(cam.exec(""), Err(Error::InvalidArgument(_))));
    // No output waiting: None.
    while cam.read_stdout().unwrap().is_some() {}
    assert_eq!(cam.read_stdout().unwrap(), None);
    cam.clear_event_handler();
}

#[test]
fn utf8_output_split_across_reads() {
    // "€" is cut in two by a pause in the output: the text API must still
    // deliver it whole.
    let (_sim, mut cam) = connect(
        SimConfig::new().in_process_threaded(
            |_s: &[u8], ctx: &sim_device::script::ScriptContext| {
                let euro = "\u{20ac}".as_bytes();
                let out = ctx.output().clone();
                out.write(&[b"h\xc3\xa9" as &[u8], &euro[..1]].concat());
                std::thread::sleep(Duration::from_millis(300));
                out.write(&[&euro[1..], b"!"].concat());
            },
        ),
        |_| {},
        CameraConfig::new("sim"),
    );
    cam.exec("x").unwrap();
    let mut text = String::new();
    let mut reads = 0;
    assert!(wait_until(&mut cam, 5, |c| {
        if let Some(t) = c.read_stdout().unwrap() {
            reads += 1;
            text.push_str(&t);
        }
        text.ends_with('!')
    }));
    assert_eq!(text, "h\u{e9}\u{20ac}!");
    assert!(reads >= 2, "the output came in {reads} reads");
}

#[test]
fn streaming_and_frames() {
    let (_sim, mut cam, _) = standard();
    assert!(matches!(
        cam.streaming(true, true, None),
        Err(Error::InvalidArgument(_))
    ));
    // Not streaming: no frame, like the stock None.
    assert!(cam.read_frame().unwrap().is_none());
    cam.streaming(true, false, None).unwrap();
    assert!(wait_until(&mut cam, 5, |c| c.frame_ready()));
    let mut frame = None;
    assert!(wait_until(&mut cam, 5, |c| {
        frame = c.read_frame().unwrap();
        frame.is_some()
    }));
    let f = frame.unwrap();
    assert_eq!(f.pixfmt, PixFormat::JPEG);
    assert_eq!((f.width, f.height), (320, 240));
    assert_eq!(f.rgb.pixels.len(), 320 * 240 * 3);
    assert_eq!(f.depth as usize, f.raw_size);
    assert!(f.fps.is_some());
    assert!(!cam.frame_ready() || cam.event_state().total > 0);
    // Raw RGB565 at a chosen size.
    cam.streaming(true, true, Some((64, 48))).unwrap();
    let mut raw = None;
    assert!(wait_until(&mut cam, 5, |c| {
        raw = c
            .read_frame_raw()
            .unwrap()
            .filter(|r| r.header.pixfmt != PixFormat::JPEG);
        raw.is_some()
    }));
    let r = raw.unwrap();
    assert_eq!((r.header.width, r.header.height), (64, 48));
    assert_eq!(r.header.pixfmt, PixFormat::RGB565);
    assert_eq!(r.data.len(), 64 * 48 * 2);
    let f = r.decode().unwrap();
    assert_eq!(f.rgb.pixels.len(), 64 * 48 * 3);
    cam.streaming(false, false, None).unwrap();
    let stream = cam.get_channel_id("stream").unwrap().unwrap();
    let _ = cam.channel_ioctl_u32(stream, host_blocking::camera::STREAM_SOURCE, &[0]);
}

#[test]
fn channel_registered_event_refreshes_cache() {
    let (sim, mut cam, _) = standard();
    assert_eq!(cam.get_channel("late").unwrap(), None);
    let id = sim
        .with_cam(|c| c.register_channel("late", Box::new(BufferChannel::from_bytes(vec![9; 33]))))
        .unwrap()
        .unwrap();
    // The registration event makes the next lookup refresh the cache.
    assert!(wait_until(&mut cam, 5, |c| c.event_state().channel_changes > 0));
    let e = cam
        .get_channel("late")
        .unwrap()
        .expect("found after refresh");
    assert_eq!(e.id, id);
    assert!(e.flags.contains(ChannelFlags::DYNAMIC));
    assert_eq!(
        cam.channel_read("late", None).unwrap().unwrap(),
        vec![9; 33]
    );
    assert!(cam
        .take_events()
        .iter()
        .any(|e| e.kind == EventKind::ChannelRegistered));
    // And an unregistration.
    sim.with_cam(move |c| c.unregister_channel(id).is_some())
        .unwrap();
    assert!(wait_until(&mut cam, 5, |c| c.event_state().channel_changes > 1));
    assert_eq!(cam.get_channel("late").unwrap(), None);
    assert_eq!(cam.get_channel(id).unwrap(), None);
}

#[test]
fn profiler() {
    let (_sim, mut cam, _) = standard();
    cam.profiler_reset(None).unwrap();
    cam.profiler_mode(true).unwrap();
    cam.profiler_event(0, 0x11).unwrap();
    let mut recs = None;
    assert!(wait_until(&mut cam, 3, |c| {
        recs = c.read_profile(None).unwrap();
        recs.is_some()
    }));
    let recs = recs.unwrap();
    assert!(!recs.is_empty());
    let pmu = cam.system_info().unwrap().pmu_eventcnt as usize;
    assert!(recs
        .iter()
        .all(|r| r.record.events.len() == pmu && r.function.is_none()));
    assert!(recs.iter().any(|r| r.record.call_count > 0));
    // Names from a firmware ELF whose functions sit at the records' addresses.
    let elf = elf_with_functions(recs.iter().map(|r| r.record.address));
    let table = SymbolTable::from_elf_bytes(&elf).unwrap();
    let known: Vec<u32> = recs.iter().map(|r| r.record.address).collect();
    let mut named = None;
    assert!(wait_until(&mut cam, 3, |c| {
        named = c.read_profile(Some(&table)).unwrap();
        named.is_some()
    }));
    let named = named.unwrap();
    let mut matched = 0;
    for r in &named {
        if known.contains(&r.record.address) {
            let want = format!("f_{:x}", r.record.address);
            assert_eq!(r.function.as_deref(), Some(want.as_str()));
            matched += 1;
        }
        if known.contains(&r.record.caller) {
            assert_eq!(r.caller.clone(), Some(format!("f_{:x}", r.record.caller)));
        }
    }
    assert!(matched > 0);
    cam.profiler_reset(Some(&[0x39, 0x23])).unwrap();
    cam.profiler_mode(false).unwrap();
}

fn elf_with_functions(addrs: impl Iterator<Item = u32>) -> Vec<u8> {
    use object::write::{Object, Symbol, SymbolSection};
    use object::{
        Architecture, BinaryFormat, Endianness, SectionKind, SymbolFlags, SymbolKind, SymbolScope,
    };
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let text = obj.add_section(Vec::new(), b".text".to_vec(), SectionKind::Text);
    obj.append_section_data(text, &[0u8; 16], 16);
    for a in addrs {
        obj.add_symbol(Symbol {
            name: format!("f_{a:x}").into_bytes(),
            value: u64::from(a),
            size: 4,
            kind: SymbolKind::Text,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Section(text),
            flags: SymbolFlags::None,
        });
    }
    obj.write().unwrap()
}

#[test]
fn no_profile_channel_is_a_no_op() {
    let (_sim, mut cam) = connect(SimConfig::new(), |_| {}, CameraConfig::new("sim"));
    cam.profiler_reset(None).unwrap();
    cam.profiler_mode(true).unwrap();
    cam.profiler_event(1, 2).unwrap();
    assert_eq!(cam.read_profile(None).unwrap(), None);
}

#[test]
fn capabilities_renegotiated() {
    let (_sim, mut cam, _) = standard();
    cam.set_capabilities(|c| {
        c.max_payload = 256;
        c.ack = false;
    })
    .unwrap();
    assert_eq!(cam.caps().max_payload, 256);
    assert!(!cam.caps().flags.ack());
    assert_eq!(
        cam.channel_read("bulk", Some(70_000)).unwrap().unwrap(),
        pattern(0, 70_000)
    );
    cam.channel_write("bulk", &[5; 1000]).unwrap();
    assert_eq!(
        cam.channel_read("bulk", Some(1000)).unwrap().unwrap(),
        vec![5; 1000]
    );
    cam.update_capabilities().unwrap();
    assert_eq!(cam.caps().max_payload, 256);
    assert!(cam.set_capabilities(|c| c.max_payload = 10).is_err());
    // A resync renegotiates the configured caps.
    cam.resync().unwrap();
    assert_eq!(cam.caps().max_payload, 256);
}

#[test]
fn poll_and_wait_events() {
    let (_sim, mut cam, _) = standard();
    assert_eq!(cam.poll_events().unwrap(), 0);
    let t = Instant::now();
    assert_eq!(cam.wait_events(Duration::from_millis(100)).unwrap(), 0);
    assert!(t.elapsed() >= Duration::from_millis(95));
    cam.streaming(true, false, None).unwrap();
    let t = Instant::now();
    assert!(cam.wait_events(Duration::from_secs(2)).unwrap() > 0);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "returns at the first event"
    );
    cam.streaming(false, false, None).unwrap();
}

#[test]
fn events_off_still_works() {
    let log = ScriptLog::default();
    let (_sim, mut cam) = connect(
        standard_sim(log.clone()),
        standard_setup,
        CameraConfig::new("sim").events(false),
    );
    cam.streaming(true, false, None).unwrap();
    let mut got = false;
    for _ in 0..100 {
        if cam.read_frame().unwrap().is_some() {
            got = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(got);
    assert_eq!(cam.event_state().total, 0);
}

#[test]
fn reset_and_boot_close_the_port() {
    let (_sim, mut cam, _) = standard();
    cam.reset().unwrap();
    assert!(!cam.is_connected());
    assert!(matches!(cam.version(), Err(Error::NotConnected)));
    assert!(matches!(cam.channel_size("bulk"), Err(Error::NotConnected)));
    // The in-memory transport cannot be reopened.
    let e = cam.connect().unwrap_err();
    assert!(e.to_string().contains("cannot be reopened"), "{e}");

    let (sim, mut cam, _) = standard();
    assert_eq!(
        cam.request(Opcode::SYS_BOOT, ChannelId::SYSTEM, &[])
            .unwrap(),
        None
    );
    assert!(!cam.is_connected());
    let _ = sim;
}

#[test]
fn boot_method() {
    let (sim, mut cam, _) = standard();
    cam.boot().unwrap();
    assert!(!cam.is_connected());
    // The cam rebooted (the simulator has no bootloader).
    let end = Instant::now() + Duration::from_secs(2);
    while sim.with_cam(|c| c.stats().reboots).unwrap_or(1) == 0 && Instant::now() < end {}
}

#[test]
fn disconnect_and_drop_close_the_link() {
    let (sim, mut cam, _) = standard();
    cam.disconnect();
    assert!(!cam.is_connected());
    assert!(matches!(cam.device_stats(), Err(Error::NotConnected)));
    assert!(matches!(cam.poll_events(), Err(Error::NotConnected)));
    // The cam's serving loop sees the link closed and ends.
    let end = Instant::now() + Duration::from_secs(3);
    while sim.with_cam(|_| ()).is_some() {
        assert!(
            Instant::now() < end,
            "the sim still serves after disconnect"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(cam);

    let (sim, cam, _) = standard();
    drop(cam);
    let end = Instant::now() + Duration::from_secs(3);
    while sim.with_cam(|_| ()).is_some() {
        assert!(Instant::now() < end, "the sim still serves after drop");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn small_payload_and_no_crc_or_seq() {
    let log = ScriptLog::default();
    let (_sim, mut cam) = connect(
        standard_sim(log),
        standard_setup,
        CameraConfig::new("sim")
            .crc(false)
            .seq(false)
            .max_payload(50),
    );
    assert_eq!(cam.caps().max_payload, 50);
    assert!(!cam.caps().flags.crc());
    assert_eq!(
        cam.channel_read("bulk", Some(5000)).unwrap().unwrap(),
        pattern(0, 5000)
    );
    assert_eq!(cam.channels().unwrap().len(), 7);
    cam.exec("print(1)").unwrap();
}

#[test]
fn board_without_pmu() {
    let (_sim, mut cam) = connect(
        SimConfig::new().board(Board::H7Plus).profiler(true),
        |_| {},
        CameraConfig::new("sim"),
    );
    assert!(!cam.system_info().unwrap().pmu_present);
    cam.profiler_reset(None).unwrap();
    cam.profiler_event(0, 1).unwrap(); // no-op without a PMU
    let mut recs = None;
    assert!(wait_until(&mut cam, 3, |c| {
        recs = c.read_profile(None).unwrap();
        recs.is_some()
    }));
    let recs = recs.unwrap();
    assert!(recs.iter().all(|r| r.record.events.is_empty()));
}

#[test]
fn camera_is_debug_and_config_is_kept() {
    let (_sim, cam, _) = standard();
    let d = format!("{cam:?}");
    assert!(d.contains("connected: true"), "{d}");
    assert_eq!(cam.config().retries, 1);
    assert_eq!(cam.port_name(), "embedded-sim");
    let _: &Camera = &cam;
}
