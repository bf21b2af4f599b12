//! The `Camera` checks, one list for both drivers (through [`Cam`]): run
//! against the standard cam in memory (`tests/camera.rs`) and over a
//! pseudo-terminal (`tests/pty.rs`) with omv-blocking, and over pty, TCP
//! and UDP with both drivers (`host-async/tests/checks.rs`). Each takes a
//! connected camera (and the sim, where it asks the cam side).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use omv_blocking::sim::EmbeddedSim;
use omv_blocking::symbols::SymbolTable;
use omv_blocking::ProfileEntry;
use omv_blocking::{DecodeFrame, Error};
use omv_blocking::{Event, EventKind};
use omv_proto::frame::PixFormat;
use omv_proto::host::Reply;
use omv_proto::{ChannelFlags, ChannelId, Opcode, Status};
use omv_sim::user::BufferChannel;

use super::cam::{Cam, Guard};
use super::{capture_log_async, elf_with_functions, eventually, pattern, ScriptLog};

/// Versions, system information (and its log block), memory, statistics.
pub async fn introspection(sim: &EmbeddedSim, cam: &mut impl Cam) {
    assert!(cam.is_connected());
    // The standard cam is an N6 (8192-byte packet buffer, 8178 offered):
    // the host's own 4096 is the smaller.
    assert_eq!(cam.caps().max_payload, 4096);
    let v = cam.version().await.unwrap();
    assert_eq!(v.protocol, [1, 0, 2]);
    assert_eq!(v.firmware, [5, 0, 0]);
    let want = sim.with_cam(|c| c.board().sysinfo).unwrap();
    let s = cam.system_info().await.unwrap();
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
    let lines = cam.system_info_lines().await.unwrap();
    assert!(lines.iter().any(|l| l == "Firmware version: 5.0.0"));
    assert!(lines.iter().any(|l| l == "Profiler: Available"));
    assert!(lines.iter().any(|l| l.starts_with("  PMU: Yes (")));
    assert_eq!(lines.first().unwrap(), "=== OpenMV System Information ===");
    assert!(lines
        .iter()
        .any(|l| l == &format!("CPU ID: 0x{:08X}", want.cpu_id)));
    // print_system_info logs exactly those lines, from the cache.
    let sent = cam.host_stats().sent;
    let ((), logged) = capture_log_async(cam.log_target(), cam.print_system_info()).await;
    assert_eq!(logged, lines);
    assert_eq!(cam.host_stats().sent, sent, "nothing was sent");
    let m = cam.memory_stats().await.unwrap();
    assert_eq!(m.entries.len(), 2);
    let h = cam.host_stats();
    assert!(h.sent >= 7 && h.received >= 7, "{h:?}");
    assert_eq!(h.checksum + h.sequence + h.timeouts, 0);
    let d = cam.device_stats().await.unwrap();
    assert!(d.received >= 7, "{d:?}");
    assert_eq!(d.checksum_errors, 0);
    assert_eq!(cam.resync_count(), 1);
}

/// Lookups by name and by id (unknown ones are `None`), the raw list, a refresh.
pub async fn channel_lookup(cam: &mut impl Cam) {
    let stdin = cam.get_channel("stdin").await.unwrap().unwrap();
    assert_eq!(stdin.id, ChannelId(1));
    assert!(stdin.flags.contains(ChannelFlags::EXEC));
    let stream = cam.get_channel(ChannelId(3)).await.unwrap().unwrap();
    assert_eq!(stream.name, "stream");
    assert_eq!(cam.get_channel("stream").await.unwrap(), Some(stream));
    assert_eq!(
        cam.get_channel_name(ChannelId(2)).await.unwrap().as_deref(),
        Some("stdout")
    );
    assert_eq!(
        cam.get_channel_id("bulk").await.unwrap(),
        Some(ChannelId(5))
    );
    // Unknown id and name: None, never an error or a panic.
    assert_eq!(cam.get_channel(ChannelId(30)).await.unwrap(), None);
    assert_eq!(cam.get_channel(ChannelId(200)).await.unwrap(), None);
    assert_eq!(cam.get_channel_name(ChannelId(31)).await.unwrap(), None);
    assert_eq!(cam.get_channel("nope").await.unwrap(), None);
    assert!(cam.has_channel("locky").await.unwrap());
    assert!(!cam.has_channel("nope").await.unwrap());
    let raw = cam.channel_list().await.unwrap();
    assert_eq!(raw, cam.channels().await.unwrap());
    let ids: Vec<u8> = raw.iter().map(|c| c.id.0).collect();
    assert_eq!(ids, [0, 1, 2, 3, 4, 5, 6]);
    cam.update_channels().await.unwrap();
    let names: Vec<String> = cam
        .channels()
        .await
        .unwrap()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(
        names,
        ["usb", "stdin", "stdout", "stream", "profile", "bulk", "locky"]
    );
}

/// `update_channels` on a camera with events off: no registration event
/// marks the cache stale, so only the explicit refresh finds a new channel.
pub async fn update_channels(sim: &EmbeddedSim, cam: &mut impl Cam) {
    assert!(!cam.caps().flags.events());
    let id = sim
        .with_cam(|c| c.register_channel("quiet", Box::new(BufferChannel::from_bytes(vec![4; 7]))))
        .unwrap()
        .unwrap();
    assert!(sim
        .with_cam(move |c| c.channel_id("quiet") == Some(id))
        .unwrap());
    assert_eq!(
        cam.get_channel("quiet").await.unwrap(),
        None,
        "the cache is not refreshed"
    );
    assert_eq!(cam.channels().await.unwrap().len(), 7);
    cam.update_channels().await.unwrap();
    let e = cam
        .get_channel("quiet")
        .await
        .unwrap()
        .expect("listed after update_channels");
    assert_eq!(e.id, id);
    assert_eq!(cam.channels().await.unwrap().len(), 8);
    assert_eq!(
        cam.channel_read("quiet", None).await.unwrap().unwrap(),
        vec![4; 7]
    );
    assert_eq!(cam.event_state().total, 0);
}

/// Size, read and write by name; unknown names; a refused read.
pub async fn channel_by_name(cam: &mut impl Cam) {
    assert_eq!(cam.channel_size("bulk").await.unwrap(), 1 << 20);
    assert_eq!(cam.channel_size("locky").await.unwrap(), 64 << 10);
    assert_eq!(cam.channel_size("nope").await.unwrap(), 0);
    let all = cam.channel_read("bulk", None).await.unwrap().unwrap();
    assert_eq!(all, pattern(0, 1 << 20));
    assert_eq!(
        cam.channel_read("bulk", Some(1000)).await.unwrap().unwrap(),
        pattern(0, 1000)
    );
    assert_eq!(
        cam.channel_read("bulk", Some(0)).await.unwrap().unwrap(),
        Vec::<u8>::new()
    );
    assert_eq!(cam.channel_read("nope", None).await.unwrap(), None);
    // Into the caller's buffer: filled in place, its memory reused.
    let mut buf = Vec::with_capacity(1 << 20);
    let at = buf.as_ptr();
    assert_eq!(
        cam.channel_read_into("bulk", None, &mut buf).await.unwrap(),
        Some(1 << 20)
    );
    assert_eq!(buf, pattern(0, 1 << 20));
    assert_eq!(
        cam.channel_read_into("bulk", Some(300), &mut buf)
            .await
            .unwrap(),
        Some(300)
    );
    assert_eq!(buf, pattern(0, 300));
    assert_eq!(buf.as_ptr(), at, "the same buffer");
    let bulk = cam.get_channel_id("bulk").await.unwrap().unwrap();
    assert_eq!(
        cam.channel_read_at_into(bulk, 5000, 9000, &mut buf)
            .await
            .unwrap(),
        9000
    );
    assert_eq!(buf, pattern(5000, 9000));
    assert_eq!(buf.as_ptr(), at, "the same buffer");
    assert_eq!(
        cam.channel_read_into("nope", None, &mut buf).await.unwrap(),
        None
    );
    // A multi-packet write (split at max_payload - 8), read back.
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 256) as u8).collect();
    assert!(cam.channel_write("bulk", &data).await.unwrap());
    assert_eq!(
        cam.channel_read("bulk", Some(20_000))
            .await
            .unwrap()
            .unwrap(),
        data
    );
    // Only the written bytes changed.
    let id = cam.get_channel_id("bulk").await.unwrap().unwrap();
    assert_eq!(
        cam.channel_read_at(id, 20_000, 100).await.unwrap(),
        pattern(20_000, 100)
    );
    assert!(!cam.channel_write("nope", b"x").await.unwrap());
    // Past the end: the cam refuses, typed.
    let e = cam
        .channel_read_at(id, (1 << 20) - 10, 100)
        .await
        .unwrap_err();
    assert!(e.is_nak(Status::FAILED), "{e}");
    assert!(cam.is_connected());
}

/// The by-id primitives at offsets, shapes, ioctls and the poll bitmap.
pub async fn by_id_primitives(cam: &mut impl Cam) {
    let id = cam.get_channel_id("bulk").await.unwrap().unwrap();
    assert_eq!(cam.channel_size_at(id).await.unwrap(), 1 << 20);
    assert_eq!(
        cam.channel_read_at(id, 12_345, 9000).await.unwrap(),
        pattern(12_345, 9000)
    );
    cam.channel_write_at(id, 100_000, &[0xAA; 10_000])
        .await
        .unwrap();
    let back = cam.channel_read_at(id, 99_999, 10_002).await.unwrap();
    assert_eq!(back[0], pattern(99_999, 1)[0]);
    assert!(back[1..10_001].iter().all(|&b| b == 0xAA));
    assert_eq!(back[10_001], pattern(110_000, 1)[0]);
    assert_eq!(
        cam.channel_read_at(id, 5, 0).await.unwrap(),
        Vec::<u8>::new()
    );
    assert!(matches!(
        cam.channel_read_at(id, u32::MAX, 2).await,
        Err(Error::InvalidArgument(_))
    ));
    // Shape of a channel without one, ioctl a channel does not know.
    let e = cam.channel_shape(id).await.unwrap_err();
    assert!(e.is_nak(Status::INVALID), "{e}");
    let e = cam.channel_ioctl(id, 99, &[]).await.unwrap_err();
    assert!(e.is_nak(Status::INVALID), "{e}");
    assert_eq!(
        e.to_string(),
        "CHANNEL_IOCTL on channel 5: the cam answered NAK INVALID"
    );
    // The profile channel's shape: (records, record size), and the record
    // size follows the board's PMU counters.
    let profile = cam.get_channel_id("profile").await.unwrap().unwrap();
    let shape = cam.channel_shape(profile).await.unwrap();
    let pmu = cam.system_info().await.unwrap().pmu_eventcnt;
    let dims = shape.dims();
    assert_eq!(dims.len(), 2);
    assert_eq!(
        dims[1] as usize,
        omv_proto::profile::record_size(pmu),
        "{dims:?}"
    );
    let poll = cam.channel_poll().await.unwrap();
    assert!(poll.is_ready(profile));
    assert!(cam
        .channel_ioctl_u32(profile, 0, &[0])
        .await
        .unwrap()
        .is_empty());
}

/// Raw requests by opcode: answers, NAKs, a refused oversize payload.
pub async fn raw_requests(cam: &mut impl Cam) {
    let r = cam
        .request(Opcode::PROTO_VERSION, ChannelId::SYSTEM, &[])
        .await
        .unwrap();
    let Some(Reply::Data(d)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(&d[..3], &[1, 0, 2]);
    assert_eq!(&d[6..9], &[5, 0, 0], "firmware version");
    // A raw CHANNEL_READ: exact bytes at the offset.
    let mut args = Vec::new();
    args.extend_from_slice(&1000u32.to_le_bytes());
    args.extend_from_slice(&16u32.to_le_bytes());
    let r = cam
        .request(Opcode::CHANNEL_READ, ChannelId(5), &args)
        .await
        .unwrap();
    assert_eq!(r, Some(Reply::Data(pattern(1000, 16).into())));
    // A lock is answered with a bare ACK.
    let r = cam
        .request(Opcode::CHANNEL_LOCK, ChannelId(6), &[])
        .await
        .unwrap();
    assert_eq!(r, Some(Reply::Ack));
    cam.request(Opcode::CHANNEL_UNLOCK, ChannelId(6), &[])
        .await
        .unwrap();
    let e = cam
        .request(Opcode(0x77), ChannelId::SYSTEM, &[])
        .await
        .unwrap_err();
    assert!(e.is_nak(Status::INVALID));
    // A system opcode on a data channel is refused by the cam.
    let e = cam
        .request(Opcode::SYS_INFO, ChannelId(2), &[])
        .await
        .unwrap_err();
    assert!(e.is_nak(Status::INVALID));
    // A malformed read (short payload) is refused, the link survives.
    let e = cam
        .request(Opcode::CHANNEL_READ, ChannelId(5), &[1, 2, 3])
        .await
        .unwrap_err();
    assert!(e.is_nak(Status::INVALID));
    // Too long for max_payload: refused before sending.
    let big = vec![0u8; 5000];
    assert!(matches!(
        cam.request(Opcode::CHANNEL_WRITE, ChannelId(5), &big).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(cam.is_connected());
    assert_eq!(
        cam.channel_read("bulk", Some(3)).await.unwrap().unwrap(),
        pattern(0, 3)
    );
}

/// The lock guard: BUSY while held, unlocked on drop, released by a resync.
pub async fn lock_guard(cam: &mut impl Cam) {
    let id = cam.get_channel_id("locky").await.unwrap().unwrap();
    {
        let mut g = cam.lock_channel(id).await.unwrap().expect("lock granted");
        assert!(g.is_held());
        assert_eq!(g.id(), id);
        // Held: another lock is refused (BUSY is `false`, not an error).
        assert!(!g.cam().channel_lock(id).await.unwrap());
        assert_eq!(
            g.cam().channel_read_at(id, 0, 16).await.unwrap(),
            pattern(0, 16)
        );
    }
    tokio::time::sleep(Duration::from_millis(15)).await; // lock_interval
    assert!(
        cam.channel_lock(id).await.unwrap(),
        "the guard unlocked on drop"
    );
    assert!(cam.channel_unlock(id).await.unwrap());
    tokio::time::sleep(Duration::from_millis(15)).await;
    // Explicit unlock, then drop does nothing more.
    let mut g = cam.lock_channel(id).await.unwrap().unwrap();
    assert!(g.unlock().await.unwrap());
    assert!(!g.is_held());
    drop(g);
    tokio::time::sleep(Duration::from_millis(15)).await;
    // A resync releases every lock: the guard knows.
    let mut g = cam.lock_channel(id).await.unwrap().unwrap();
    g.cam().resync().await.unwrap();
    assert!(!g.is_held());
    drop(g);
    tokio::time::sleep(Duration::from_millis(15)).await;
    assert!(cam.channel_lock(id).await.unwrap());
    // A channel without lock support.
    let bulk = cam.get_channel_id("bulk").await.unwrap().unwrap();
    assert!(cam.lock_channel(bulk).await.is_err());
}

/// `resync` called directly: a new handshake, and the cam released the
/// lock it held (without the resync, a second lock is BUSY).
pub async fn resync(cam: &mut impl Cam) {
    let id = cam.get_channel_id("locky").await.unwrap().unwrap();
    let before = cam.resync_count();
    assert!(cam.channel_lock(id).await.unwrap());
    tokio::time::sleep(Duration::from_millis(15)).await;
    assert!(!cam.channel_lock(id).await.unwrap(), "still held");
    cam.resync().await.unwrap();
    assert_eq!(cam.resync_count(), before + 1);
    assert!(cam.is_connected());
    tokio::time::sleep(Duration::from_millis(15)).await;
    assert!(
        cam.channel_lock(id).await.unwrap(),
        "the cam released the lock"
    );
    assert!(cam.channel_unlock(id).await.unwrap());
    assert_eq!(
        cam.channel_read("bulk", Some(10)).await.unwrap().unwrap(),
        pattern(0, 10)
    );
}

/// exec / stop / read_stdout, the event handler, the pending queue and the
/// script started/stopped tracking.
pub async fn scripts_and_events(cam: &mut impl Cam, log: &ScriptLog) {
    let seen: Arc<Mutex<Vec<EventKind>>> = Arc::default();
    let s2 = seen.clone();
    cam.set_event_handler(move |e: &Event| s2.lock().unwrap().push(e.kind))
        .await;
    assert_eq!(cam.script_running(), None, "no stdin event yet");
    let script = "print('hello')\n# forever\n";
    cam.exec(script).await.unwrap();
    assert!(wait_until!(cam, 5, |c| c.script_running() == Some(true)));
    let mut out = String::new();
    assert!(wait_until!(cam, 5, |c| {
        if let Some(t) = c.read_stdout().await.unwrap() {
            out.push_str(&t);
        }
        out.contains(&format!("ran {} bytes", script.len()))
    }));
    assert_eq!(out, format!("ran {} bytes\n", script.len()));
    let id = cam.get_channel_id("stdin").await.unwrap().unwrap();
    assert!(
        cam.read_status().await.unwrap().ready_id(id),
        "stdin polls true while running"
    );
    let st = cam.event_state();
    assert_eq!((st.scripts_started, st.scripts_stopped), (1, 0));
    cam.stop().await.unwrap();
    assert!(wait_until!(cam, 5, |c| c.script_running() == Some(false)));
    assert!(!cam.read_status().await.unwrap().ready("stdin"));
    assert_eq!(
        log.lock().unwrap().as_slice(),
        [b"print('hello')\n# forever\n".to_vec()]
    );
    let kinds = seen.lock().unwrap().clone();
    assert!(kinds.contains(&EventKind::ScriptStarted));
    assert!(kinds.contains(&EventKind::ScriptStopped));
    let started = kinds.iter().position(|k| *k == EventKind::ScriptStarted);
    let stopped = kinds.iter().position(|k| *k == EventKind::ScriptStopped);
    assert!(started < stopped, "{kinds:?}");
    let pending: Vec<EventKind> = cam.pending_events().iter().map(|e| e.kind).collect();
    assert_eq!(pending, kinds, "the queue holds what the handler saw");
    let taken: Vec<EventKind> = cam.take_events().iter().map(|e| e.kind).collect();
    assert_eq!(taken, kinds);
    assert!(cam.pending_events().is_empty());
    let st = cam.event_state();
    assert_eq!((st.scripts_started, st.scripts_stopped), (1, 1));
    assert_eq!(st.total as usize, kinds.len());
    // Large script: several packets, exactly once.
    let big = "x = 1\n".repeat(3000);
    cam.exec(&big).await.unwrap();
    assert!(wait_until!(cam, 5, |_| log.lock().unwrap().len() == 2));
    assert_eq!(log.lock().unwrap()[1], big.as_bytes());
    assert!(matches!(cam.exec("").await, Err(Error::InvalidArgument(_))));
    // The script ended: its output, then the soft reset's banner, which the
    // cam prints only once its protocol is idle again (so it may come after
    // the script-stopped event). Read up to the banner, then nothing is left.
    let ran = format!("ran {} bytes\n", big.len());
    let mut out = String::new();
    assert!(
        wait_until!(cam, 5, |c| {
            while let Some(t) = c.read_stdout().await.unwrap() {
                out.push_str(&t);
            }
            out.find(&ran)
                .is_some_and(|i| out[i..].contains("MPY: soft reboot\r\n"))
        }),
        "{out:?}"
    );
    assert_eq!(
        cam.read_stdout().await.unwrap(),
        None,
        "nothing after the banner"
    );
    // Without a handler, events still reach the queue.
    cam.clear_event_handler().await;
    let n = seen.lock().unwrap().len();
    cam.exec("print(2)").await.unwrap();
    assert!(wait_until!(cam, 5, |c| c
        .pending_events()
        .iter()
        .any(|e| e.kind == EventKind::ScriptStarted)));
    assert_eq!(seen.lock().unwrap().len(), n, "the handler was removed");
}

/// Frames (JPEG, raw RGB565) and the frame-ready tracking.
pub async fn streaming(cam: &mut impl Cam) {
    assert!(matches!(
        cam.streaming(true, true, None).await,
        Err(Error::InvalidArgument(_))
    ));
    // Not streaming: no frame, like the stock None.
    assert!(cam.read_frame().await.unwrap().is_none());
    assert!(!cam.frame_ready());
    cam.streaming(true, false, None).await.unwrap();
    assert!(wait_until!(cam, 5, |c| c.frame_ready()));
    let mut frame;
    assert!(wait_until!(cam, 5, |c| {
        frame = c.read_frame().await.unwrap();
        frame.is_some()
    }));
    let f = frame.unwrap();
    assert_eq!(f.pixfmt, PixFormat::JPEG);
    assert_eq!((f.width, f.height), (320, 240));
    assert_eq!(f.rgb.pixels.len(), 320 * 240 * 3);
    assert_eq!(f.depth as usize, f.raw_size);
    assert!(f.fps.is_some());
    // Raw RGB565 at a chosen size.
    cam.streaming(true, true, Some((64, 48))).await.unwrap();
    let mut raw;
    assert!(wait_until!(cam, 5, |c| {
        raw = c
            .read_frame_raw()
            .await
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
    // Frame-ready tracking: set by the stream's event, cleared by the
    // read. With streaming off no new frame comes: the last one produced
    // is read once, then there is none.
    assert!(wait_until!(cam, 5, |c| c.frame_ready()));
    cam.streaming(false, false, None).await.unwrap();
    cam.wait_events(Duration::from_millis(50)).await.unwrap();
    assert!(cam.frame_ready(), "a frame waits unread");
    let f = cam.read_frame().await.unwrap().expect("the waiting frame");
    // Turning streaming off sends RAW_CTRL 0 first: the last frame may be JPEG.
    assert!(
        matches!(
            (f.pixfmt, f.width, f.height),
            (PixFormat::RGB565, 64, 48) | (PixFormat::JPEG, 320, 240)
        ),
        "{} {}x{}",
        f.pixfmt,
        f.width,
        f.height
    );
    assert!(!cam.frame_ready(), "reading the frame clears the flag");
    cam.wait_events(Duration::from_millis(100)).await.unwrap();
    assert!(!cam.frame_ready(), "no new frame while streaming is off");
    assert!(cam.read_frame().await.unwrap().is_none());
    assert!(cam.event_state().total > 0);
}

/// A channel registered (and unregistered) at run time: its event
/// refreshes the channel cache before the next lookup.
pub async fn channel_registration(sim: &EmbeddedSim, cam: &mut impl Cam) {
    assert_eq!(cam.get_channel("late").await.unwrap(), None);
    let changes = cam.event_state().channel_changes;
    let id = sim
        .with_cam(|c| c.register_channel("late", Box::new(BufferChannel::from_bytes(vec![9; 33]))))
        .unwrap()
        .unwrap();
    // The registration event makes the next lookup refresh the cache.
    assert!(wait_until!(cam, 5, |c| c.event_state().channel_changes > changes));
    let e = cam
        .get_channel("late")
        .await
        .unwrap()
        .expect("found after refresh");
    assert_eq!(e.id, id);
    assert!(e.flags.contains(ChannelFlags::DYNAMIC));
    assert_eq!(
        cam.get_channel(id)
            .await
            .unwrap()
            .map(|e| e.name)
            .as_deref(),
        Some("late")
    );
    assert_eq!(
        cam.channel_read("late", None).await.unwrap().unwrap(),
        vec![9; 33]
    );
    assert!(cam
        .take_events()
        .iter()
        .any(|e| e.kind == EventKind::ChannelRegistered));
    // And an unregistration.
    sim.with_cam(move |c| c.unregister_channel(id).is_some())
        .unwrap();
    assert!(wait_until!(cam, 5, |c| c.event_state().channel_changes > changes + 1));
    assert_eq!(cam.get_channel("late").await.unwrap(), None);
    assert_eq!(cam.get_channel(id).await.unwrap(), None);
}

/// Reads the profile, waiting for the first records.
async fn profile(cam: &mut impl Cam, symbols: Option<&SymbolTable>) -> Vec<ProfileEntry> {
    let mut recs;
    assert!(wait_until!(cam, 3, |c| {
        recs = c.read_profile(symbols).await.unwrap();
        recs.is_some()
    }));
    recs.unwrap()
}

/// Reads the profile until it lists a function together with its caller.
async fn profile_with_callers(cam: &mut impl Cam) -> Vec<ProfileEntry> {
    let mut recs;
    let has_caller = |recs: &[ProfileEntry]| {
        recs.iter()
            .any(|r| recs.iter().any(|q| q.record.caller == r.record.address))
    };
    assert!(wait_until!(cam, 3, |c| {
        recs = c.read_profile(None).await.unwrap().unwrap_or_default();
        has_caller(&recs)
    }));
    recs
}

/// Average ticks per call, by function address.
fn averages(recs: &[ProfileEntry]) -> std::collections::HashMap<u32, u64> {
    recs.iter()
        .map(|r| {
            let calls = u64::from(r.record.call_count.max(1));
            (r.record.address, r.record.total_ticks / calls)
        })
        .collect()
}

/// The profiler: event selection and mode as the cam applies them,
/// records, names from a firmware ELF.
pub async fn profiler(cam: &mut impl Cam) {
    let pmu = cam.system_info().await.unwrap().pmu_eventcnt as usize;
    assert!(pmu >= 2, "the standard board has PMU counters");
    // Default events: distinct ids, so counters 0 and 1 differ somewhere.
    cam.profiler_reset(None).await.unwrap();
    let recs = profile(cam, None).await;
    assert!(!recs.is_empty());
    assert!(recs
        .iter()
        .all(|r| r.record.events.len() == pmu && r.function.is_none()));
    assert!(recs.iter().any(|r| r.record.call_count > 0));
    assert!(
        recs.iter()
            .any(|r| r.record.events[0] != r.record.events[1]),
        "{recs:?}"
    );
    // profiler_event: both counters on one event count the same.
    cam.profiler_event(0, 0x11).await.unwrap();
    cam.profiler_event(1, 0x11).await.unwrap();
    let recs = profile(cam, None).await;
    assert!(
        recs.iter()
            .all(|r| r.record.events[0] == r.record.events[1]),
        "{recs:?}"
    );
    // profiler_mode: exclusive timing leaves the callees' time out of their
    // callers, so no function takes longer per call than inclusively (but
    // for the few % or 1 tick the averages drift as calls accumulate), and a caller
    // (the main loop) far less.
    cam.profiler_mode(true).await.unwrap();
    let excl = averages(&profile_with_callers(cam).await);
    cam.profiler_mode(false).await.unwrap();
    let incl = averages(&profile_with_callers(cam).await);
    let mut much_shorter = 0;
    for (addr, e) in &excl {
        let i = incl[addr];
        assert!(
            e * 100 <= i * 105 + 100,
            "{addr:#x}: exclusive {e} > inclusive {i}"
        );
        much_shorter += usize::from(e * 2 <= i);
    }
    assert!(much_shorter > 0, "exclusive {excl:?} inclusive {incl:?}");

    // Names from a firmware ELF whose functions sit at the records' addresses.
    let recs = profile(cam, None).await;
    let elf = elf_with_functions(recs.iter().map(|r| r.record.address));
    let table = SymbolTable::from_elf_bytes(&elf).unwrap();
    let known: Vec<u32> = recs.iter().map(|r| r.record.address).collect();
    let named = profile(cam, Some(&table)).await;
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
    cam.profiler_reset(Some(&[0x39, 0x23])).await.unwrap();
}

/// set_capabilities / update_capabilities, honoured on the wire.
pub async fn capabilities(cam: &mut impl Cam) {
    capabilities_up_to(cam, 8178).await;
}

/// [`capabilities`] on a cam whose largest payload is `largest` (the N6's
/// 8178 on a stream link, what one datagram carries over UDP).
pub async fn capabilities_up_to(cam: &mut impl Cam, largest: u16) {
    cam.set_capabilities(|c| {
        c.max_payload = 256;
        c.ack = false;
    })
    .await
    .unwrap();
    assert_eq!(cam.caps().max_payload, 256);
    assert!(!cam.caps().flags.ack());
    let sent = cam.host_stats().sent;
    assert_eq!(
        cam.channel_read("bulk", Some(70_000))
            .await
            .unwrap()
            .unwrap(),
        pattern(0, 70_000)
    );
    cam.channel_write("bulk", &[5; 1000]).await.unwrap();
    assert_eq!(
        cam.channel_read("bulk", Some(1000)).await.unwrap().unwrap(),
        vec![5; 1000]
    );
    // No ACKs: the host sent only requests (a few per read), no ACK per fragment.
    assert!(cam.host_stats().sent - sent < 20, "{:?}", cam.host_stats());
    cam.update_capabilities().await.unwrap();
    assert_eq!(cam.caps().max_payload, 256);
    assert!(cam.set_capabilities(|c| c.max_payload = 10).await.is_err());
    // A resync renegotiates the configured caps.
    cam.resync().await.unwrap();
    assert_eq!(cam.caps().max_payload, 256);
    assert!(!cam.caps().flags.ack());
    // And back to the defaults.
    cam.set_capabilities(|c| {
        c.max_payload = 8178;
        c.ack = true;
    })
    .await
    .unwrap();
    assert_eq!(cam.caps().max_payload, largest, "the cam's largest");
    cam.set_capabilities(|c| c.max_payload = 9000)
        .await
        .unwrap();
    assert_eq!(
        cam.caps().max_payload,
        largest,
        "clipped to the cam's largest"
    );
    assert!(cam.caps().flags.ack());
    assert_eq!(
        cam.channel_read("bulk", Some(5000)).await.unwrap().unwrap()[1000..],
        pattern(1000, 4000)[..]
    );
}

/// poll_events never waits; wait_events waits for the first event.
pub async fn poll_and_wait_events(cam: &mut impl Cam) {
    assert_eq!(cam.poll_events().await.unwrap(), 0);
    let t = Instant::now();
    assert_eq!(
        cam.wait_events(Duration::from_millis(100)).await.unwrap(),
        0
    );
    assert!(t.elapsed() >= Duration::from_millis(95));
    cam.streaming(true, false, None).await.unwrap();
    let total = cam.event_state().total;
    let t = Instant::now();
    let n = cam.wait_events(Duration::from_secs(2)).await.unwrap();
    assert!(n > 0);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "returns at the first event"
    );
    assert_eq!(cam.event_state().total, total + n);
    // Events already sent are taken in by poll_events without waiting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let total = cam.event_state().total;
    let n = cam.poll_events().await.unwrap();
    assert!(n > 0, "frames were announced meanwhile");
    assert_eq!(cam.event_state().total, total + n);
    assert!(t.elapsed() < Duration::from_millis(100));
    assert!(cam.frame_ready());
    cam.streaming(false, false, None).await.unwrap();
}

/// `boot` (SYS_BOOT, no answer) closes the port and the cam reboots (the
/// simulator has no bootloader). The link must outlive the port.
pub async fn boot(sim: &EmbeddedSim, cam: &mut impl Cam) {
    assert_eq!(sim.with_cam(|c| c.stats().reboots), Some(0));
    cam.boot().await.unwrap();
    assert!(!cam.is_connected());
    assert!(matches!(cam.version().await, Err(Error::NotConnected)));
    assert!(
        eventually(3, || sim.with_cam(|c| c.stats().reboots) == Some(1)),
        "the cam did not reboot"
    );
}

/// With seeded faults on the link: writes at offsets and reads back, and
/// a whole 256 KiB read, byte for byte (the session resumes transfers by
/// itself within their deadlines: no retry helper).
pub async fn faulty_transfers(cam: &mut impl Cam) {
    let id = cam.get_channel_id("bulk").await.unwrap().unwrap();
    for round in 0..4u8 {
        let data: Vec<u8> = (0..30_000u32).map(|i| (i as u8) ^ round).collect();
        let at = u32::from(round) * 50_000;
        cam.channel_write_at(id, at, &data).await.unwrap();
        let back = cam.channel_read_at(id, at, 30_000).await.unwrap();
        assert_eq!(back, data, "round {round}");
    }
    let whole = cam.channel_read_at(id, 200_000, 256 << 10).await.unwrap();
    assert_eq!(whole, pattern(200_000, 256 << 10));
}

/// With the cam losing packets it receives: every upload runs exactly
/// once, in order, whole (a lost request is never seen by the cam, so the
/// session's restart from STDIN_RESET cannot run a script twice).
pub async fn exec_exactly_once(cam: &mut impl Cam, log: &ScriptLog) {
    let scripts: Vec<String> = (0..6)
        .map(|i| format!("# script {i}\n{}", format!("v{i} = {i}\n").repeat(800)))
        .collect();
    for (i, s) in scripts.iter().enumerate() {
        cam.exec(s).await.unwrap();
        assert!(wait_until!(cam, 5, |_| log.lock().unwrap().len() > i));
    }
    let runs = log.lock().unwrap().clone();
    let want: Vec<Vec<u8>> = scripts.iter().map(|s| s.as_bytes().to_vec()).collect();
    assert_eq!(runs, want);
}

/// Over a datagram link losing datagrams each way (seeded): a 1 MiB read
/// is exact, with ACKs on (a lost packet is asked for again, as on a
/// serial link) and off (the firmware example's setting: a lost datagram
/// costs a resync and a read of the rest, not a failed operation).
pub async fn lossy_datagram_read(cam: &mut impl Cam, ack: bool) {
    assert_eq!(cam.caps().flags.ack(), ack);
    let id = cam.get_channel_id("bulk").await.unwrap().unwrap();
    let resyncs = cam.resync_count();
    let got = cam.channel_read_at(id, 0, 1 << 20).await.unwrap();
    assert!(
        got == pattern(0, 1 << 20),
        "{} bytes, not the pattern",
        got.len()
    );
    if !ack {
        assert!(cam.resync_count() > resyncs, "no loss cost a resumed read");
    }
    // The link is still good: an odd offset and length, exact.
    let got = cam.channel_read_at(id, 12_345, 99_999).await.unwrap();
    assert!(got == pattern(12_345, 99_999));
    assert!(cam.is_connected());
}
