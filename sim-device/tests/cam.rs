//! SimCam end to end, deterministically: a sans-IO host endpoint and the
//! simulated cam stepped against each other on a manual clock (SimLink).

use omv_proto::channel::ChannelEntry;
use omv_proto::host::{CamEvent, Command, HostConfig, HostEndpoint, Reply, RequestError};
use omv_proto::{ChannelFlags, ChannelId, Duration, Opcode, Status};
use omv_sim::board::Board;
use omv_sim::cam::{SimCam, SimConfig};
use omv_sim::fault::FaultConfig;
use omv_sim::link::SimLink;
use omv_sim::user::SnapshotChannel;

const STDIN_EXEC: u32 = 2;
const STREAM_CTRL: u32 = 0;
const STREAM_RAW_CTRL: u32 = 1;
const STREAM_RAW_CFG: u32 = 2;

fn link(cam: SimCam) -> SimLink<SimCam> {
    let mut l = SimLink::new(HostEndpoint::new(HostConfig::default()), cam);
    l.connect().expect("connect");
    l
}

fn ok(l: &mut SimLink<SimCam>, cmd: Command) -> Reply {
    match l.request(&cmd).expect("link") {
        Ok(r) => r,
        Err(e) => panic!("{cmd:?} failed: {e:?}"),
    }
}

fn nak(l: &mut SimLink<SimCam>, cmd: Command) -> Status {
    match l.request(&cmd).expect("link") {
        Err(RequestError::Nak(s)) => s,
        other => panic!("{cmd:?}: expected a NAK, got {other:?}"),
    }
}

fn list(l: &mut SimLink<SimCam>) -> Vec<ChannelEntry> {
    let r = ok(l, Command::system(Opcode::CHANNEL_LIST)).into_bytes();
    ChannelEntry::decode_list(&r).expect("channel list")
}

fn u32_of(r: Reply) -> u32 {
    let b = r.into_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads a whole channel in one request, reconnecting and retrying after
/// an error (as the stock host does after a resync).
fn read_all(l: &mut SimLink<SimCam>, id: ChannelId, len: u32) -> (Vec<u8>, u32) {
    for attempt in 0..10 {
        match l.request(&Command::read(id, 0, len)).expect("link") {
            Ok(r) => return (r.into_bytes().to_vec(), attempt),
            Err(_) => {
                let _ = l.connect();
            }
        }
    }
    panic!("read of {len} bytes failed 10 times");
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn has_event(l: &SimLink<SimCam>, channel: u8, event: u16) -> bool {
    l.events.contains(&CamEvent {
        channel: ChannelId(channel),
        event,
    })
}

#[test]
fn builtin_channels_are_those_of_section_9() {
    let cam = SimConfig::new()
        .in_process(|_, _| {})
        .channel("bulk", 1000)
        .build()
        .unwrap();
    let mut l = link(cam);
    let got: Vec<(u8, u8, String)> = list(&mut l)
        .into_iter()
        .map(|e| (e.id.0, e.flags.0, e.name))
        .collect();
    let f = |x: ChannelFlags| x.0;
    let want = vec![
        (0, f(ChannelFlags::PHYSICAL), "usb".to_string()),
        (
            1,
            f(ChannelFlags::WRITE | ChannelFlags::EXEC),
            "stdin".into(),
        ),
        (2, f(ChannelFlags::READ), "stdout".into()),
        (
            3,
            f(ChannelFlags::READ | ChannelFlags::LOCK | ChannelFlags::STREAM),
            "stream".into(),
        ),
        (
            4,
            f(ChannelFlags::READ | ChannelFlags::WRITE | ChannelFlags::DYNAMIC),
            "bulk".into(),
        ),
    ];
    assert_eq!(got, want);

    let cam = SimConfig::new()
        .in_process(|_, _| {})
        .profiler(true)
        .channel("bulk", 10)
        .build()
        .unwrap();
    let names: Vec<(u8, String)> = cam
        .channels()
        .into_iter()
        .map(|e| (e.id.0, e.name))
        .collect();
    assert_eq!(names[4], (4, "profile".to_string()));
    assert_eq!(names[5], (5, "bulk".to_string()));
    assert_eq!(
        cam.channels()[4].flags,
        ChannelFlags::READ | ChannelFlags::LOCK
    );
}

/// The stock host's `profiler_reset()` then `profiler_mode()` both ways,
/// on the wire, on every board: RESET, SET_EVENT on counters 0..7 (more
/// than any board has) and MODE 0/1 are all ACKed, and the records then
/// carry the board's own number of event totals.
#[test]
fn stock_profiler_sequence_is_acked_on_every_board() {
    const STOCK_EVENTS: [u32; 8] = [
        0x0039, 0x0023, 0x0024, 0x0001, 0x0003, 0xC102, 0x02CC, 0xC303,
    ];
    for board in Board::ALL {
        let cam = SimConfig::new()
            .board(board)
            .in_process(|_, _| {})
            .profiler(true)
            .build()
            .unwrap();
        let mut l = link(cam);
        ok(&mut l, Command::ioctl(ChannelId::PROFILE, 2, &[]));
        for (counter, event) in STOCK_EVENTS.iter().enumerate() {
            let args = [(counter as u32).to_le_bytes(), event.to_le_bytes()].concat();
            ok(&mut l, Command::ioctl(ChannelId::PROFILE, 1, &args));
        }
        for mode in [1u32, 0, 2] {
            ok(
                &mut l,
                Command::ioctl(ChannelId::PROFILE, 0, &mode.to_le_bytes()),
            );
        }
        l.advance(Duration::from_millis(1000));
        ok(
            &mut l,
            Command::new(Opcode::CHANNEL_LOCK, ChannelId::PROFILE),
        );
        let shape = ok(
            &mut l,
            Command::new(Opcode::CHANNEL_SHAPE, ChannelId::PROFILE),
        )
        .into_bytes();
        let count = u32::from_le_bytes(shape[0..4].try_into().unwrap());
        let size = u32::from_le_bytes(shape[4..8].try_into().unwrap());
        let n = board.profile().pmu_event_count();
        assert_eq!(size as usize, omv_proto::profile::record_size(n), "{board}");
        assert!(count > 0, "{board}: no records");
        let data = ok(&mut l, Command::read(ChannelId::PROFILE, 0, count * size)).into_bytes();
        let recs = omv_proto::profile::decode_records(&data, size as usize, n).unwrap();
        assert!(
            recs.iter().all(|r| r.events.len() == usize::from(n)),
            "{board}"
        );
        ok(
            &mut l,
            Command::new(Opcode::CHANNEL_UNLOCK, ChannelId::PROFILE),
        );
    }
}

#[test]
fn boards_report_their_profile() {
    for board in Board::ALL {
        let cam = SimConfig::new()
            .board(board)
            .in_process(|_, _| {})
            .build()
            .unwrap();
        let mut l = link(cam);
        let info = ok(&mut l, Command::system(Opcode::SYS_INFO)).into_bytes();
        assert_eq!(&info[..], &board.profile().sysinfo.encode()[..], "{board}");
        let v = ok(&mut l, Command::system(Opcode::PROTO_VERSION)).into_bytes();
        assert_eq!(&v[..9], &[1, 0, 2, v[3], v[4], v[5], 5, 0, 0]);
        let m = ok(&mut l, Command::system(Opcode::SYS_MEMORY)).into_bytes();
        assert_eq!(m[0], 2, "two memory pools");
    }
}

#[test]
fn user_channel_bytes_and_write() {
    let cam = SimConfig::new()
        .in_process(|_, _| {})
        .channel("bulk", 100_000)
        .build()
        .unwrap();
    let mut l = link(cam);
    let id = ChannelId(4);
    assert_eq!(
        u32_of(ok(&mut l, Command::new(Opcode::CHANNEL_SIZE, id))),
        100_000
    );
    let (data, _) = read_all(&mut l, id, 100_000);
    assert_eq!(data, pattern(100_000));
    ok(&mut l, Command::write(id, 10, b"hello"));
    let r = ok(&mut l, Command::read(id, 8, 9)).into_bytes();
    assert_eq!(&r[..], &[8, 9, b'h', b'e', b'l', b'l', b'o', 15, 16]);
    assert_eq!(nak(&mut l, Command::read(id, 99_999, 2)), Status::FAILED);
}

#[test]
fn register_channel_from_any_backend_sends_channel_registered() {
    let cam = SimConfig::new().in_process(|_, _| {}).build().unwrap();
    let mut l = link(cam);
    let id = l
        .cam
        .register_channel(
            "status",
            Box::new(SnapshotChannel::new(|| b"ready".to_vec())),
        )
        .unwrap();
    assert_eq!(id, ChannelId(4));
    l.settle();
    assert!(has_event(&l, 0, 0), "CHANNEL_REGISTERED: {:?}", l.events);
    let e = list(&mut l)
        .into_iter()
        .find(|e| e.name == "status")
        .unwrap();
    assert_eq!(e.flags, ChannelFlags::READ | ChannelFlags::DYNAMIC);
    assert_eq!(
        u32_of(ok(&mut l, Command::new(Opcode::CHANNEL_SIZE, id))),
        5
    );
    assert_eq!(
        &ok(&mut l, Command::read(id, 0, 5)).into_bytes()[..],
        b"ready"
    );
    // Names are checked.
    assert!(l
        .cam
        .register_channel("status", Box::new(SnapshotChannel::new(Vec::new)))
        .is_err());
    assert!(l
        .cam
        .register_channel("", Box::new(SnapshotChannel::new(Vec::new)))
        .is_err());
    assert!(
        l.cam.unregister_channel(ChannelId::STDIN).is_none(),
        "built-ins stay"
    );
    assert!(l.cam.unregister_channel(id).is_some());
    l.settle();
    assert!(has_event(&l, 0, 1), "CHANNEL_UNREGISTERED");
}

#[test]
fn script_runs_prints_and_ends_with_soft_reboot() {
    let cam = SimConfig::new()
        .in_process(|script, ctx| {
            ctx.print("ran: ");
            ctx.output().write(script);
        })
        .build()
        .unwrap();
    let mut l = link(cam);
    ok(&mut l, Command::write(ChannelId::STDIN, 0, b"print(1)"));
    ok(&mut l, Command::ioctl(ChannelId::STDIN, STDIN_EXEC, &[]));
    l.settle();
    assert!(has_event(&l, 1, 1), "script started: {:?}", l.events);
    assert!(has_event(&l, 1, 0), "script stopped: {:?}", l.events);
    assert!(has_event(&l, 0, 2), "SOFT_REBOOT: {:?}", l.events);
    let pos = |ch: u8, ev: u16| {
        l.events
            .iter()
            .position(|e| e.channel.0 == ch && e.event == ev)
            .unwrap()
    };
    assert!(pos(1, 0) < pos(0, 2), "SOFT_REBOOT follows the stop");
    assert_eq!(l.cam.stats().soft_reboots, 1);
    // The soft reset restarted the cam's protocol (sequence 0, start-up
    // caps): a host resyncs on SOFT_REBOOT, as the OpenMV IDE does.
    l.connect().expect("resync after SOFT_REBOOT");
    let n = u32_of(ok(
        &mut l,
        Command::new(Opcode::CHANNEL_SIZE, ChannelId::STDOUT),
    ));
    let text = ok(&mut l, Command::read(ChannelId::STDOUT, 0, n)).into_bytes();
    assert_eq!(&text[..], b"ran: print(1)MPY: soft reboot\r\n");
    // EXEC of an empty buffer fails.
    ok(&mut l, Command::ioctl(ChannelId::STDIN, 3, &[]));
    assert_eq!(
        nak(&mut l, Command::ioctl(ChannelId::STDIN, STDIN_EXEC, &[])),
        Status::FAILED
    );
}

#[test]
fn exec_replacing_a_script_starts_it_after_the_soft_reboot() {
    let cam = SimConfig::new()
        .in_process_threaded(|_, ctx| {
            while !ctx.stop_requested() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
        .build()
        .unwrap();
    let mut l = link(cam);
    ok(&mut l, Command::write(ChannelId::STDIN, 0, b"loop"));
    ok(&mut l, Command::ioctl(ChannelId::STDIN, STDIN_EXEC, &[]));
    l.settle();
    assert!(has_event(&l, 1, 1), "script started: {:?}", l.events);
    l.events.clear();
    // A second EXEC interrupts the first script: as on the firmware, the
    // old one stops, the cam soft-reboots, then the new one starts.
    ok(&mut l, Command::ioctl(ChannelId::STDIN, STDIN_EXEC, &[]));
    for _ in 0..5 {
        l.advance(Duration::from_millis(10));
        l.settle();
    }
    let order: Vec<(u8, u16)> = l
        .events
        .iter()
        .filter(|e| e.channel.0 <= 1 && e.event != 0xFFFF)
        .map(|e| (e.channel.0, e.event))
        .collect();
    assert_eq!(order, [(1, 0), (0, 2), (1, 1)], "{:?}", l.events);
    assert_eq!(l.cam.stats().soft_reboots, 1);
}

#[test]
fn a_script_ending_mid_answer_lets_the_answer_and_soft_reboot_out_first() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let end = Arc::new(AtomicBool::new(false));
    let e = end.clone();
    let cam = SimConfig::new()
        .in_process_threaded(move |_, ctx| {
            while !ctx.stop_requested() && !e.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
        .build()
        .unwrap();
    let mut l = link(cam);
    ok(&mut l, Command::write(ChannelId::STDIN, 0, b"loop"));
    ok(&mut l, Command::ioctl(ChannelId::STDIN, STDIN_EXEC, &[]));
    let text: String = (0..1000).map(|i| format!("{i:04} ")).collect();
    l.cam.output().write_str(&text[..1000]);
    l.settle();
    // The host asks for stdout; the cam's answer waits for its ACK.
    let now = l.now();
    l.host
        .request(now, &Command::read(ChannelId::STDOUT, 0, 1000))
        .unwrap();
    while let Some(b) = l.host.poll_transmit() {
        l.cam.handle_input(now, &b);
    }
    let first = loop {
        let p = l.cam.poll_transmit(now).expect("the answer's first packet");
        if p[4] & 0x20 == 0 {
            break p;
        }
        // An event (stdout NOTIFY, script started) queued before it.
        l.host.handle_input(now, &p);
        while let Some(b) = l.host.poll_transmit() {
            l.cam.handle_input(now, &b);
        }
    };
    assert_eq!(first[4] & 0x28, 0x08, "a data packet asking for its ACK");
    // The script ends meanwhile (its end is noticed by the cam loop).
    end.store(true, Ordering::SeqCst);
    for _ in 0..500 {
        l.advance(Duration::from_millis(1));
        if l.cam.stats().soft_reboots == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(l.cam.stats().soft_reboots, 1);
    // The firmware's send is blocking: the answer and SOFT_REBOOT still go
    // out before the protocol is re-initialised.
    let now = l.now();
    l.host.handle_input(now, &first);
    let reply = match l.run().expect("link") {
        omv_proto::host::Completion::Request(r) => r.expect("stdout read"),
        other => panic!("{other:?}"),
    };
    assert_eq!(&reply.into_bytes()[..], &text.as_bytes()[..1000]);
    l.settle();
    assert!(has_event(&l, 0, 2), "SOFT_REBOOT: {:?}", l.events);
    l.connect().expect("resync after SOFT_REBOOT");
    let n = u32_of(ok(
        &mut l,
        Command::new(Opcode::CHANNEL_SIZE, ChannelId::STDOUT),
    ));
    let banner = ok(&mut l, Command::read(ChannelId::STDOUT, 0, n)).into_bytes();
    assert!(banner.ends_with(b"MPY: soft reboot\r\n"), "{banner:?}");
}

#[test]
fn the_soft_reset_restores_the_firmware_start_up_caps() {
    let cam = SimConfig::new().in_process(|_, _| {}).build().unwrap();
    let mut l = link(cam);
    ok(&mut l, Command::write(ChannelId::STDIN, 0, b"print(1)"));
    ok(&mut l, Command::ioctl(ChannelId::STDIN, STDIN_EXEC, &[]));
    l.settle();
    assert!(has_event(&l, 0, 2), "SOFT_REBOOT: {:?}", l.events);
    // Everything on (PROTOCOL.md section 6), the board's largest payload:
    // the soft-reboot banner left unread keeps stdout NOTIFYs coming with
    // no host request in between.
    let caps = l.cam.endpoint().caps();
    assert_eq!(caps, l.cam.endpoint().config().startup());
    assert!(caps.flags.ack() && caps.flags.events(), "{caps:?}");
    l.events.clear();
    for _ in 0..12 {
        l.advance(Duration::from_millis(10));
        l.settle();
    }
    assert!(has_event(&l, ChannelId::STDOUT.0, 0xFFFF), "{:?}", l.events);
}

#[test]
fn stdout_notifies_every_50_ms_while_text_is_unread() {
    let cam = SimConfig::new().in_process(|_, _| {}).build().unwrap();
    let mut l = link(cam);
    l.cam.output().write_str("hello\r\n");
    // The host does nothing: virtual time passes, NOTIFYs arrive.
    for _ in 0..12 {
        l.advance(Duration::from_millis(10));
        l.settle();
    }
    let notifies = l
        .events
        .iter()
        .filter(|e| e.channel == ChannelId::STDOUT && e.event == CamEvent::NOTIFY)
        .count();
    assert!(
        (1..=3).contains(&notifies),
        "{notifies} NOTIFYs in 120 ms: {:?}",
        l.events
    );
    let n = u32_of(ok(
        &mut l,
        Command::new(Opcode::CHANNEL_SIZE, ChannelId::STDOUT),
    ));
    ok(&mut l, Command::read(ChannelId::STDOUT, 0, n));
    l.events.clear();
    l.advance(Duration::from_millis(200));
    l.settle();
    assert!(l.events.is_empty(), "no NOTIFY once read: {:?}", l.events);
}

#[test]
fn stream_frames_jpeg_and_raw_with_lock() {
    let cam = SimConfig::new()
        .in_process(|_, _| {})
        .free_running_frames(true)
        .fps(50.0)
        .build()
        .unwrap();
    let mut l = link(cam);
    assert_eq!(
        u32_of(ok(
            &mut l,
            Command::new(Opcode::CHANNEL_SIZE, ChannelId::STREAM)
        )),
        0
    );
    assert_eq!(
        nak(
            &mut l,
            Command::new(Opcode::CHANNEL_LOCK, ChannelId::STREAM)
        ),
        Status::BUSY
    );
    ok(
        &mut l,
        Command::ioctl(
            ChannelId::STREAM,
            STREAM_RAW_CFG,
            &[64, 0, 0, 0, 48, 0, 0, 0],
        ),
    );
    ok(
        &mut l,
        Command::ioctl(ChannelId::STREAM, STREAM_RAW_CTRL, &1u32.to_le_bytes()),
    );
    ok(
        &mut l,
        Command::ioctl(ChannelId::STREAM, STREAM_CTRL, &1u32.to_le_bytes()),
    );
    l.advance(Duration::from_millis(30));
    l.settle();
    assert!(
        has_event(&l, ChannelId::STREAM.0, CamEvent::NOTIFY),
        "frame NOTIFY: {:?}",
        l.events
    );
    ok(
        &mut l,
        Command::new(Opcode::CHANNEL_LOCK, ChannelId::STREAM),
    );
    let size = u32_of(ok(
        &mut l,
        Command::new(Opcode::CHANNEL_SIZE, ChannelId::STREAM),
    ));
    let frame = ok(&mut l, Command::read(ChannelId::STREAM, 0, size)).into_bytes();
    let word = |i: usize| u32::from_le_bytes([frame[i], frame[i + 1], frame[i + 2], frame[i + 3]]);
    assert_eq!(
        (word(0), word(4), word(8), word(12)),
        (64, 48, 0x0C03_0002, 2)
    );
    assert_eq!(frame.len() - word(16) as usize, 64 * 48 * 2);
    ok(
        &mut l,
        Command::new(Opcode::CHANNEL_UNLOCK, ChannelId::STREAM),
    );
    // Malformed ioctl arguments on a built-in channel: INVALID.
    assert_eq!(
        nak(&mut l, Command::ioctl(ChannelId::STREAM, STREAM_CTRL, &[1])),
        Status::INVALID
    );
    assert_eq!(
        nak(&mut l, Command::ioctl(ChannelId::STREAM, 99, &[])),
        Status::INVALID
    );
}

/// Enables the stream (raw or JPEG), waits for a frame and returns its
/// header's width, height and pixel format.
fn next_frame_header(l: &mut SimLink<SimCam>, raw: bool) -> (u32, u32, u32) {
    ok(
        l,
        Command::ioctl(
            ChannelId::STREAM,
            STREAM_RAW_CTRL,
            &u32::from(raw).to_le_bytes(),
        ),
    );
    ok(
        l,
        Command::ioctl(ChannelId::STREAM, STREAM_CTRL, &1u32.to_le_bytes()),
    );
    for _ in 0..50 {
        l.advance(Duration::from_millis(20));
        l.settle();
        if l.request(&Command::new(Opcode::CHANNEL_LOCK, ChannelId::STREAM))
            .expect("link")
            .is_ok()
        {
            let size = u32_of(ok(l, Command::new(Opcode::CHANNEL_SIZE, ChannelId::STREAM)));
            let frame = ok(l, Command::read(ChannelId::STREAM, 0, size)).into_bytes();
            ok(l, Command::new(Opcode::CHANNEL_UNLOCK, ChannelId::STREAM));
            let word = |i: usize| u32::from_le_bytes(frame[i..i + 4].try_into().unwrap());
            let pixfmt = word(8);
            // A frame produced before the mode switch may still be held.
            if (pixfmt == 0x0C03_0002) == raw {
                ok(
                    l,
                    Command::ioctl(ChannelId::STREAM, STREAM_CTRL, &0u32.to_le_bytes()),
                );
                return (word(0), word(4), pixfmt);
            }
        }
    }
    panic!("no {} frame", if raw { "raw" } else { "JPEG" });
}

#[test]
fn resolution_sizes_the_pattern_frames() {
    let cam = |w, h| {
        SimConfig::new()
            .in_process(|_, _| {})
            .free_running_frames(true)
            .resolution(w, h)
            .build()
            .unwrap()
    };
    let mut l = link(cam(64, 48));
    assert_eq!(next_frame_header(&mut l, false), (64, 48, 0x0606_0000));
    // Raw frames take the resolution too, until RAW_CFG.
    assert_eq!(next_frame_header(&mut l, true), (64, 48, 0x0C03_0002));
    ok(
        &mut l,
        Command::ioctl(
            ChannelId::STREAM,
            STREAM_RAW_CFG,
            &[32, 0, 0, 0, 24, 0, 0, 0],
        ),
    );
    assert_eq!(next_frame_header(&mut l, true), (32, 24, 0x0C03_0002));
    assert_eq!(next_frame_header(&mut l, false), (64, 48, 0x0606_0000));

    // 1024x768 RGB565 (1.5 MiB) does not fit the H7 Plus's 1 MiB stream
    // buffer: JPEG frames are 1024x768, raw ones keep the default size.
    let mut l = link(cam(1024, 768));
    assert_eq!(next_frame_header(&mut l, false), (1024, 768, 0x0606_0000));
    assert_eq!(next_frame_header(&mut l, true), (320, 240, 0x0C03_0002));

    // The default is 320x240.
    let mut l = link(
        SimConfig::new()
            .in_process(|_, _| {})
            .free_running_frames(true)
            .build()
            .unwrap(),
    );
    assert_eq!(next_frame_header(&mut l, false), (320, 240, 0x0606_0000));
}

#[test]
fn malformed_requests_nak_invalid_and_the_cam_keeps_serving() {
    let cam = SimConfig::new()
        .in_process(|_, _| {})
        .channel("bulk", 64)
        .build()
        .unwrap();
    let mut l = link(cam);
    let bulk = ChannelId(4);
    let raw = |op: Opcode, ch: ChannelId, payload: &[u8]| Command {
        opcode: op,
        channel: ch,
        payload: payload.to_vec().into(),
    };
    let cases = [
        raw(Opcode::CHANNEL_READ, bulk, &[0, 0, 0]),
        raw(Opcode::CHANNEL_READ, bulk, &[0, 0, 0, 0, 0, 0, 0, 0]),
        raw(
            Opcode::CHANNEL_READ,
            bulk,
            &[0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0],
        ),
        raw(Opcode::CHANNEL_WRITE, bulk, &[0, 0, 0, 0, 9, 0, 0, 0, 1]),
        raw(Opcode::CHANNEL_WRITE, bulk, &[0, 0]),
        raw(Opcode::CHANNEL_IOCTL, ChannelId::STREAM, &[0, 0]),
        raw(
            Opcode::CHANNEL_READ,
            ChannelId(9),
            &[0, 0, 0, 0, 1, 0, 0, 0],
        ),
        raw(
            Opcode::CHANNEL_READ,
            ChannelId::STDIN,
            &[0, 0, 0, 0, 1, 0, 0, 0],
        ),
        raw(Opcode::CHANNEL_SHAPE, bulk, &[]),
        raw(Opcode(0x7f), bulk, &[]),
        raw(Opcode::PROTO_SET_CAPS, ChannelId::SYSTEM, &[1, 2, 3]),
    ];
    for c in cases {
        assert_eq!(nak(&mut l, c.clone()), Status::INVALID, "{c:?}");
        let v = ok(&mut l, Command::system(Opcode::PROTO_VERSION)).into_bytes();
        assert_eq!(&v[..3], &[1, 0, 2], "still serving after {c:?}");
    }
}

#[test]
fn sys_reset_reboots_the_cam() {
    let cam = SimConfig::new()
        .in_process(|_, _| {})
        .channel("bulk", 16)
        .build()
        .unwrap();
    let mut l = link(cam);
    let api = l
        .cam
        .register_channel("status", Box::new(SnapshotChannel::new(|| vec![7; 3])))
        .unwrap();
    ok(&mut l, Command::write(ChannelId(4), 0, b"dirty"));
    l.host
        .send_oneway(&Command::system(Opcode::SYS_RESET))
        .unwrap();
    l.settle();
    assert_eq!(l.cam.stats().reboots, 1);
    // The protocol state is dropped: the cam boots with its start-up
    // configuration (everything on, the board's largest payload).
    assert_eq!(
        l.cam.endpoint().caps(),
        omv_proto::caps::Caps {
            flags: omv_proto::caps::CapFlags::KNOWN,
            max_payload: l.cam.endpoint().config().max_payload,
        },
        "protocol state dropped"
    );
    assert_eq!(l.cam.endpoint().sequence(), 0);
    l.connect().expect("reconnect after reset");
    let names: Vec<(u8, String)> = list(&mut l).into_iter().map(|e| (e.id.0, e.name)).collect();
    assert!(names.contains(&(api.0, "status".to_string())), "{names:?}");
    assert!(names.contains(&(4, "bulk".to_string())), "{names:?}");
    let r = ok(&mut l, Command::read(ChannelId(4), 0, 5)).into_bytes();
    assert_eq!(&r[..], &[0, 1, 2, 3, 4], "--channel buffers start fresh");
    // SYS_BOOT: no bootloader, rebooted as well.
    l.host
        .send_oneway(&Command::system(Opcode::SYS_BOOT))
        .unwrap();
    l.settle();
    assert_eq!(l.cam.stats().reboots, 2);
}

/// A whole scenario under every fault; returns what must replay exactly.
fn faulty_run(seed: u64) -> (omv_sim::cam::SimStats, omv_proto::Instant, u32) {
    let faults = FaultConfig::default()
        .drop_rate(0.03)
        .rx_drop_rate(0.03)
        .corrupt_rate(0.02)
        .latency(Duration::from_millis(3))
        .chunk_max(300)
        .seed(seed);
    let cam = SimConfig::new()
        .in_process(|_, _| {})
        .channel("bulk", 300_000)
        .faults(faults)
        .build()
        .unwrap();
    let mut l = SimLink::new(HostEndpoint::new(HostConfig::default()), cam);
    let mut tries = 0;
    while l.connect().is_err() {
        tries += 1;
        assert!(tries < 10);
    }
    let (data, retries) = read_all(&mut l, ChannelId(4), 300_000);
    assert!(data == pattern(300_000), "data intact under faults");
    (l.cam.stats(), l.now(), retries)
}

#[test]
fn faults_are_counted_and_replay_exactly_from_the_seed() {
    let (a, ta, ra) = faulty_run(5);
    let f = a.faults;
    assert!(
        f.tx_dropped > 0 && f.tx_corrupted > 0 && f.tx_delayed > 0 && f.tx_chunked > 0,
        "{f:?}"
    );
    assert!(f.rx_packets > 0, "{f:?}");
    assert!(a.device.retransmits > 0, "{a:?}");
    let (b, tb, rb) = faulty_run(5);
    assert_eq!((a, ta, ra), (b, tb, rb), "same seed, same run");
    let (c, _, _) = faulty_run(6);
    assert_ne!(a.faults, c.faults, "another seed, other faults");
}

#[test]
fn rx_drops_are_whole_packets() {
    let faults = FaultConfig::default().rx_drop_rate(0.2).seed(3);
    let cam = SimConfig::new()
        .in_process(|_, _| {})
        .faults(faults)
        .build()
        .unwrap();
    let mut l = SimLink::new(HostEndpoint::new(HostConfig::default()), cam);
    let (mut good, mut bad) = (0, 0);
    for _ in 0..60 {
        if !l.host.is_connected() && l.connect().is_err() {
            continue;
        }
        match l.request(&Command::system(Opcode::PROTO_VERSION)).unwrap() {
            Ok(_) => good += 1,
            Err(_) => bad += 1,
        }
    }
    let s = l.cam.stats();
    assert!(
        s.faults.rx_dropped > 0 && good > 20 && bad > 0,
        "{good} ok, {bad} failed, {s:?}"
    );
    // Dropped packets never reach the framer as garbage.
    assert_eq!(s.framer.header_crc_errors, 0, "{s:?}");
    assert_eq!(s.device.checksum_errors, 0, "{s:?}");
}

#[test]
fn garbage_input_never_panics_and_a_sync_still_recovers() {
    use omv_proto::rng::SimRng;
    const SYNC: [u8; 10] = [0xaa, 0xd5, 0, 0, 0, 0, 0, 0, 0xb0, 0xac];
    for (seed, rx_drop) in [(1u64, 0.0), (2, 0.5), (3, 1e-9)] {
        let faults = FaultConfig::default()
            .rx_drop_rate(rx_drop)
            .drop_rate(0.1)
            .chunk_max(17)
            .seed(seed);
        let mut cam = SimConfig::new()
            .in_process(|_, _| {})
            .channel("b", 4096)
            .faults(faults)
            .build()
            .unwrap();
        let mut rng = SimRng::new(seed);
        let mut now = omv_proto::Instant::ZERO;
        for _ in 0..2000 {
            let n = rng.below(64) as usize;
            let mut chunk: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            // Sprinkle sync words and plausible headers so the framers work.
            if rng.chance(0.3) && chunk.len() > 2 {
                let at = rng.below(chunk.len() as u64 - 1) as usize;
                chunk[at] = 0xaa;
                chunk[at + 1] = 0xd5;
            }
            cam.handle_input(now, &chunk);
            while cam.poll_transmit(now).is_some() {}
            now = now + Duration::from_millis(rng.below(50));
            cam.handle_timeout(now);
        }
        // A host recovers with SYNCs (some may be dropped by rx faults).
        let mut recovered = false;
        for _ in 0..50 {
            cam.handle_input(now, &SYNC);
            let mut out = Vec::new();
            while let Some(b) = cam.poll_transmit(now) {
                out.extend(b);
            }
            if out
                .windows(10)
                .any(|w| w == [0xaa, 0xd5, 0, 0, 1, 0, 0, 0, 0x08, 0x46])
            {
                recovered = true;
                break;
            }
            now = now + Duration::from_secs(2);
            cam.handle_timeout(now);
        }
        assert!(recovered, "seed {seed}: no SYNC ACK after garbage");
    }
}

/// Per-board packet buffers (PROTOCOL.md section 1): each board announces
/// its largest payload, grants it to a host asking for more, refuses
/// SET_CAPS above it and NAKs a longer packet OVERFLOW.
#[test]
fn boards_announce_and_enforce_their_packet_buffer() {
    for (board, max) in [
        (Board::H7, 498u16),
        (Board::H7Plus, 4082),
        (Board::Rt1062, 4082),
        (Board::N6, 8178),
        (Board::Ae3, 8178),
    ] {
        let cam = SimConfig::new()
            .board(board)
            .in_process(|_, _| {})
            .channel("bulk", 50_000)
            .build()
            .unwrap();
        assert_eq!(cam.board().max_payload, max);
        let host = HostEndpoint::new(HostConfig::default().max_payload(omv_proto::MAX_PAYLOAD));
        let mut l = SimLink::new(host, cam);
        assert_eq!(l.connect().unwrap().max_payload, max, "{board}");
        let caps = ok(&mut l, Command::system(Opcode::PROTO_GET_CAPS)).into_bytes();
        assert_eq!(u16::from_le_bytes([caps[4], caps[5]]), max, "{board}");
        // A read arrives in pieces of at most `max` bytes, and intact.
        let (data, _) = read_all(&mut l, ChannelId(4), 50_000);
        assert_eq!(data, pattern(50_000), "{board}");
        // SET_CAPS one byte over the buffer: NAK INVALID.
        let mut over = [0u8; 16];
        over[0] = 0x0f;
        over[4..6].copy_from_slice(&(max + 1).to_le_bytes());
        let set = |p: &[u8]| Command {
            opcode: Opcode::PROTO_SET_CAPS,
            channel: ChannelId::SYSTEM,
            payload: p.to_vec().into(),
        };
        assert_eq!(nak(&mut l, set(&over)), Status::INVALID, "{board}");
        // A write packet longer than the negotiated payload: NAK OVERFLOW.
        let len = usize::from(max) + 1;
        let mut w = Vec::new();
        let h = omv_proto::Header {
            sequence: l.host.sequence(),
            channel: ChannelId(4),
            opcode: Opcode::CHANNEL_WRITE,
            ..omv_proto::Header::default()
        };
        let payload = [
            &0u32.to_le_bytes()[..],
            &((len - 8) as u32).to_le_bytes(),
            &vec![1u8; len - 8],
        ]
        .concat();
        omv_proto::packet::encode_packet(&h, &payload, true, &mut w);
        let answer = l.raw_exchange(&w);
        assert_eq!(answer[5], Opcode::CHANNEL_WRITE.0, "{board}");
        assert_eq!(answer[4] & 0x02, 0x02, "{board}: NAK");
        assert_eq!(
            &answer[10..12],
            &Status::OVERFLOW.0.to_le_bytes(),
            "{board}"
        );
    }
}

/// With abandoned reads on, a read the host stopped listening to goes on
/// through its SYNCs until the port is reopened; off (the default), the
/// host's resync ends it.
#[test]
fn abandoned_read_ends_only_when_the_port_is_reopened() {
    for on in [false, true] {
        let cam = SimConfig::new()
            .in_process(|_, _| {})
            .channel("bulk", 200_000)
            .device(omv_proto::device::DeviceConfig::default().read_piece(Some(512)))
            .abandoned_reads(on)
            .build()
            .unwrap();
        let mut l = link(cam);
        let now = l.now();
        l.host
            .request(now, &Command::read(ChannelId(4), 0, 200_000))
            .unwrap();
        let req = l.host.poll_transmit().unwrap();
        l.cam.handle_input(now, &req);
        // The host hears the first piece only, then gives up on the read.
        assert!(l.cam.poll_transmit(now).is_some());
        l.host.disconnect();
        let connected = l.connect();
        if !on {
            connected.expect("the resync ends the read");
            continue;
        }
        assert!(connected.is_err(), "the cam is still sending the read");
        assert!(l.cam.endpoint().poll_timeout().is_some());
        l.cam.port_reopened();
        l.host.disconnect();
        l.connect().expect("a reopened port gets the cam back");
        let (data, _) = read_all(&mut l, ChannelId(4), 3000);
        assert_eq!(data, pattern(3000));
    }
}

/// PROTO_SYNC restores the start-up configuration, and GET_CAPS right
/// after it announces that configuration.
#[test]
fn sync_restores_the_start_up_configuration() {
    let cam = SimConfig::new()
        .board(Board::N6)
        .in_process(|_, _| {})
        .build()
        .unwrap();
    let host = HostEndpoint::new(
        HostConfig::default()
            .ack(false)
            .events(false)
            .max_payload(600),
    );
    let mut l = SimLink::new(host, cam);
    let c = l.connect().unwrap();
    assert_eq!((c.max_payload, c.flags.ack()), (600, false));
    assert_eq!(l.cam.endpoint().caps(), c);
    let sync = l.raw_exchange(&[0xaa, 0xd5, 0, 0, 0, 0, 0, 0, 0xb0, 0xac]);
    assert_eq!(sync, [0xaa, 0xd5, 0, 0, 1, 0, 0, 0, 0x08, 0x46]);
    let now = l.cam.endpoint().caps();
    assert_eq!(
        (now.flags, now.max_payload),
        (omv_proto::caps::CapFlags::KNOWN, 8178)
    );
    l.host.disconnect();
    assert_eq!(l.connect().unwrap(), c, "the host renegotiates its own");
}
