//! The cam runtime end to end: scripts written like real cam scripts
//! (`tests/scripts/`) run in a Python child process of a SimCam served on a
//! thread, and a host endpoint drives their channels, events and frames.
//! Skipped (with a note) where no `python3` is on PATH or off unix.
#![cfg(unix)]

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use omv_proto::caps::Caps;
use omv_proto::channel::ChannelEntry;
use omv_proto::host::{
    CamEvent, Command, Completion, HostConfig, HostEndpoint, Reply, RequestError,
};
use omv_proto::memory::MemoryStats;
use omv_proto::{ChannelFlags, ChannelId, Opcode, Status};
use omv_sim::cam::SimConfig;
use omv_sim::link::{duplex, LinkEnd};
use omv_sim::script::PythonRunner;
use omv_sim::serve::{serve, MonotonicClock, ServeEnd, ServeOptions};

struct Host {
    ep: HostEndpoint,
    port: LinkEnd,
    clock: MonotonicClock,
    events: Vec<CamEvent>,
    stdout: String,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<ServeEnd>>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Host {
    fn run(&mut self) -> Completion {
        let end = StdInstant::now() + StdDuration::from_secs(60);
        let mut buf = [0u8; 8192];
        loop {
            assert!(StdInstant::now() < end, "no completion within 60 s");
            while let Some(b) = self.ep.poll_transmit() {
                self.port.write_all(&b).unwrap();
            }
            if let Some(c) = self.ep.poll_completion() {
                self.drain_events();
                return c;
            }
            self.port
                .set_read_timeout(Some(StdDuration::from_millis(2)));
            match self.port.read(&mut buf) {
                Ok(0) => panic!("link closed"),
                Ok(n) => self.ep.handle_input(self.clock.now(), &buf[..n]),
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    self.ep.handle_timeout(self.clock.now())
                }
                Err(e) => panic!("{e}"),
            }
            self.drain_events();
        }
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.ep.poll_event() {
            self.events.push(e);
        }
    }

    fn connect(&mut self) {
        self.ep.connect(self.clock.now());
        match self.run() {
            Completion::Connected(r) => {
                r.expect("connect");
            }
            c => panic!("{c:?}"),
        }
    }

    fn request(&mut self, cmd: &Command) -> Result<Reply, RequestError> {
        self.ep.request(self.clock.now(), cmd).expect("request");
        match self.run() {
            Completion::Request(r) => r,
            c => panic!("{c:?}"),
        }
    }

    fn ok(&mut self, cmd: Command) -> Vec<u8> {
        match self.request(&cmd) {
            Ok(r) => r.into_bytes().to_vec(),
            Err(e) => panic!("{cmd:?}: {e:?}"),
        }
    }

    fn nak(&mut self, cmd: Command) -> Status {
        match self.request(&cmd) {
            Err(RequestError::Nak(s)) => s,
            other => panic!("{cmd:?}: expected a NAK, got {other:?}"),
        }
    }

    fn size(&mut self, id: ChannelId) -> u32 {
        let b = self.ok(Command::new(Opcode::CHANNEL_SIZE, id));
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    fn list(&mut self) -> Vec<ChannelEntry> {
        let r = self.ok(Command::system(Opcode::CHANNEL_LIST));
        ChannelEntry::decode_list(&r).expect("channel list")
    }

    fn id(&mut self, name: &str) -> ChannelId {
        self.list()
            .into_iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no channel {name}"))
            .id
    }

    fn exec(&mut self, script: &str) {
        self.ok(Command::write(ChannelId::STDIN, 0, script.as_bytes()));
        self.ok(Command::ioctl(ChannelId::STDIN, 2, &[]));
    }

    /// Waits for the SOFT_REBOOT that follows a script's end and resyncs
    /// (the cam restarted its protocol), as the IDE does.
    fn resync_after_soft_reboot(&mut self) {
        let end = StdInstant::now() + StdDuration::from_secs(30);
        while !self.events.iter().any(|e| e.channel.0 == 0 && e.event == 2) {
            assert!(StdInstant::now() < end, "no SOFT_REBOOT: {:?}", self.events);
            let _ = self.request(&Command::system(Opcode::CHANNEL_POLL));
            thread::sleep(StdDuration::from_millis(20));
        }
        loop {
            self.ep.connect(self.clock.now());
            if matches!(self.run(), Completion::Connected(Ok(_))) {
                return;
            }
            assert!(StdInstant::now() < end, "no resync after SOFT_REBOOT");
        }
    }

    /// Reads stdout until it holds `want`, resyncing before every try (for
    /// scripts that restart the protocol: protocol.init, a script's end).
    fn wait_stdout_resyncing(&mut self, want: &str, secs: u64) -> String {
        let end = StdInstant::now() + StdDuration::from_secs(secs);
        loop {
            // Any request, the resync too, may meet the restart: resync and
            // ask again.
            self.ep.connect(self.clock.now());
            let connected = matches!(self.run(), Completion::Connected(Ok(_)));
            if !connected {
                assert!(StdInstant::now() < end, "no resync: {}", self.stdout);
                continue;
            }
            if let Ok(r) = self.request(&Command::new(Opcode::CHANNEL_SIZE, ChannelId::STDOUT)) {
                let b = r.into_bytes();
                let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                if n > 0 {
                    if let Ok(t) = self.request(&Command::read(ChannelId::STDOUT, 0, n)) {
                        self.stdout
                            .push_str(&String::from_utf8_lossy(&t.into_bytes()));
                    }
                }
            }
            if self.stdout.contains(want) {
                return self.stdout.clone();
            }
            assert!(StdInstant::now() < end, "no {want:?} in {}", self.stdout);
            thread::sleep(StdDuration::from_millis(50));
        }
    }

    /// Reads stdout until it holds `want` (panics with the text after `secs`).
    fn wait_stdout(&mut self, want: &str, secs: u64) -> String {
        let end = StdInstant::now() + StdDuration::from_secs(secs);
        while !self.stdout.contains(want) {
            assert!(
                StdInstant::now() < end,
                "no {want:?} in stdout: {:?}",
                self.stdout
            );
            let n = self.size(ChannelId::STDOUT);
            if n > 0 {
                let t = self.ok(Command::read(ChannelId::STDOUT, 0, n));
                self.stdout.push_str(&String::from_utf8_lossy(&t));
            } else {
                thread::sleep(StdDuration::from_millis(10));
            }
        }
        self.stdout.clone()
    }
}

fn python() -> bool {
    let ok = PythonRunner::new().resolve_interpreter().is_some();
    if !ok {
        eprintln!("python3 not on PATH: skipping");
    }
    ok
}

fn start(config: SimConfig) -> Host {
    let (host_end, mut cam_end) = duplex();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let mut cam = config.build().unwrap();
    let t = thread::spawn(move || {
        serve(
            &mut cam,
            &mut cam_end,
            &MonotonicClock::new(),
            &s,
            &ServeOptions::default(),
        )
        .unwrap()
    });
    let mut h = Host {
        ep: HostEndpoint::new(HostConfig::default()),
        port: host_end,
        clock: MonotonicClock::new(),
        events: Vec::new(),
        stdout: String::new(),
        stop,
        thread: Some(t),
    };
    h.connect();
    h
}

fn script(name: &str) -> String {
    let path = format!("{}/tests/scripts/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn channels_of_every_kind() {
    if !python() {
        return;
    }
    let mut h = start(SimConfig::new());
    h.exec(&script("channels.py"));
    h.wait_stdout("channels ready", 30);
    let list = h.list();
    let flags = |name: &str| list.iter().find(|c| c.name == name).map(|c| c.flags);
    let dynamic = ChannelFlags::DYNAMIC;
    assert_eq!(flags("status"), Some(ChannelFlags::READ | dynamic));
    assert_eq!(
        flags("store"),
        Some(ChannelFlags::READ | ChannelFlags::WRITE | dynamic)
    );
    assert_eq!(
        flags("latched"),
        Some(ChannelFlags::READ | ChannelFlags::LOCK | dynamic)
    );
    // The name is cut to 13 characters; ids are the first free ones.
    assert_eq!(flags("shaped_and_ve"), Some(ChannelFlags::READ | dynamic));
    let ids: Vec<u8> = list.iter().map(|c| c.id.0).collect();
    assert_eq!(ids, [0, 1, 2, 3, 4, 5, 6, 7]);

    let status = h.id("status");
    let n = h.size(status);
    assert_eq!(h.ok(Command::read(status, 0, n)), b"status 0001");
    assert_eq!(h.size(status), 11);

    // 1000 bytes come in 512-byte pieces; a write is read back.
    let store = h.id("store");
    let data = h.ok(Command::read(store, 0, 1000));
    assert!(data.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    h.ok(Command::write(store, 10, b"hello"));
    assert_eq!(h.ok(Command::read(store, 8, 9)), b"\x08\x09hello\x0f\x10");

    let latched = h.id("latched");
    h.ok(Command::new(Opcode::CHANNEL_LOCK, latched));
    thread::sleep(StdDuration::from_millis(20));
    // Locked already: the backend's False is BUSY.
    assert_eq!(
        h.nak(Command::new(Opcode::CHANNEL_LOCK, latched)),
        Status::BUSY
    );
    assert_eq!(h.ok(Command::read(latched, 0, 4)), b"LOCK");
    h.ok(Command::new(Opcode::CHANNEL_UNLOCK, latched));
    assert_eq!(
        h.nak(Command::new(Opcode::CHANNEL_UNLOCK, latched)),
        Status::BUSY
    );

    let shaped = h.id("shaped_and_ve");
    let shape = h.ok(Command::new(Opcode::CHANNEL_SHAPE, shaped));
    assert_eq!(shape, [3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0]);
    // poll() answers True: the channel's bit shows up (from the second poll on).
    let mut bit = false;
    for _ in 0..20 {
        let b = h.ok(Command::system(Opcode::CHANNEL_POLL));
        if u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & (1 << shaped.0) != 0 {
            bit = true;
            break;
        }
        thread::sleep(StdDuration::from_millis(5));
    }
    assert!(bit, "poll bit of a backend whose poll() is True");
    // No write method: INVALID.
    assert_eq!(h.nak(Command::write(status, 0, b"x")), Status::INVALID);
}

#[test]
fn misbehaving_backends_get_the_firmwares_answers() {
    if !python() {
        return;
    }
    let timeout = omv_proto::Duration::from_millis(300);
    let mut h = start(SimConfig::new().script_call_timeout(timeout));
    h.exec(&script("misbehaving.py"));
    h.wait_stdout("misbehaving ready", 30);
    let bad = h.id("bad");
    assert_eq!(h.size(bad), 0, "a raising size() is 0");
    assert_eq!(h.nak(Command::read(bad, 0, 4)), Status::FAILED);
    assert_eq!(h.nak(Command::write(bad, 0, b"ab")), Status::FAILED);
    // A list is not a tuple: an empty shape.
    assert!(h.ok(Command::new(Opcode::CHANNEL_SHAPE, bad)).is_empty());
    h.ok(Command::ioctl(bad, 1, &[]));
    assert_eq!(h.nak(Command::ioctl(bad, 2, &[9])), Status::FAILED);
    assert_eq!(h.nak(Command::ioctl(bad, 3, &[])), Status::FAILED);

    let quirky = h.id("quirky");
    assert_eq!(h.nak(Command::read(quirky, 0, 3)), Status::FAILED);
    h.ok(Command::write(quirky, 0, b"acked anyway"));
    assert_eq!(
        h.nak(Command::new(Opcode::CHANNEL_LOCK, quirky)),
        Status::BUSY
    );

    // A backend that does not answer costs a NAK TIMEOUT, and the cam keeps
    // serving the other channels meanwhile and afterwards.
    let slow = h.id("slow");
    let t = StdInstant::now();
    assert_eq!(
        h.nak(Command::new(Opcode::CHANNEL_SIZE, slow)),
        Status::TIMEOUT
    );
    assert!(t.elapsed() < StdDuration::from_secs(2), "{:?}", t.elapsed());
    let b = h.ok(Command::system(Opcode::CHANNEL_POLL));
    assert_eq!(b.len(), 4);
    // The stuck backend holds the script's bridge thread: calls to the
    // script's other channels time out too until it returns (3 s).
    thread::sleep(StdDuration::from_secs(3));
    assert_eq!(h.size(quirky), 3);
}

#[test]
fn events_with_and_without_ack() {
    if !python() {
        return;
    }
    let mut h = start(SimConfig::new());
    h.exec(&script("events.py"));
    h.wait_stdout("events sent", 30);
    let button = h.id("button");
    let evs: Vec<u16> = h
        .events
        .iter()
        .filter(|e| e.channel == button)
        .map(|e| e.event)
        .collect();
    assert_eq!(evs, [7, 8, CamEvent::NOTIFY], "{:?}", h.events);
    assert!(
        h.events
            .iter()
            .any(|e| e.channel == ChannelId::SYSTEM && e.event == 0),
        "CHANNEL_REGISTERED: {:?}",
        h.events
    );
}

fn has(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn cbor_channel_read_and_written_back() {
    if !python() {
        return;
    }
    let mut h = start(SimConfig::new());
    h.exec(&script("cbor_fields.py"));
    h.wait_stdout("fields ready", 30);
    let fields = h.id("fields");
    let n = h.size(fields);
    let doc = h.ok(Command::read(fields, 0, n));
    assert_eq!(doc[0], 0x83, "an array of three maps: {doc:02x?}");
    // Maps of integer keys: 0 name, -30 widget type (0x38 0x1d), 2 value.
    for name in [&b"eticks"[..], b"dgain", b"cled"] {
        assert!(has(&doc, name), "{doc:02x?}");
    }
    assert!(has(&doc, b"\x38\x1dfslider\x02\x05"), "{doc:02x?}");
    // The slider's range was set with a (min, max, value) tuple: max 20.
    assert!(has(&doc, b"\x38\x1f\x14"), "{doc:02x?}");
    // [{0: "gain", 2: 9}]
    let write = [0x81, 0xA2, 0x00, 0x64, b'g', b'a', b'i', b'n', 0x02, 0x09];
    h.ok(Command::write(fields, 0, &write));
    h.wait_stdout("wrote gain 9", 10);
    let n = h.size(fields);
    let doc = h.ok(Command::read(fields, 0, n));
    // The slider's value is now 9.
    assert!(has(&doc, b"\x38\x1dfslider\x02\x09"), "{doc:02x?}");
}

#[test]
fn a_script_that_ends_drops_its_channels() {
    if !python() {
        return;
    }
    let mut h = start(SimConfig::new());
    h.exec(&script("short_lived.py"));
    let end = StdInstant::now() + StdDuration::from_secs(30);
    while !h.events.iter().any(|e| e.channel.0 == 0 && e.event == 2) {
        assert!(StdInstant::now() < end, "no SOFT_REBOOT: {:?}", h.events);
        let _ = h.request(&Command::system(Opcode::CHANNEL_POLL));
        thread::sleep(StdDuration::from_millis(20));
    }
    // The cam restarted its protocol: resync as the IDE does.
    h.connect();
    let names: Vec<String> = h.list().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["usb", "stdin", "stdout", "stream"]);
    let out = h.wait_stdout("MPY: soft reboot", 10);
    assert!(out.contains("registered once"), "{out}");
}

#[test]
fn snapshot_loop_streams_frames_of_the_scripts_size() {
    if !python() {
        return;
    }
    let flash = std::env::temp_dir().join(format!("omv-sim-flash-test-{}", std::process::id()));
    let mut h = start(SimConfig::new().flash_dir(&flash));
    // Nothing streams without a script taking snapshots.
    h.ok(Command::ioctl(ChannelId::STREAM, 0, &1u32.to_le_bytes()));
    thread::sleep(StdDuration::from_millis(200));
    assert_eq!(h.size(ChannelId::STREAM), 0);
    h.exec(&script("snapshots.py"));
    h.wait_stdout("snapshot ok", 30);
    assert!(
        flash.join("first.jpg").is_file(),
        "img.save into the flash dir"
    );
    let mut frame = None;
    for _ in 0..200 {
        if h.request(&Command::new(Opcode::CHANNEL_LOCK, ChannelId::STREAM))
            .is_ok()
        {
            let n = h.size(ChannelId::STREAM);
            frame = Some(h.ok(Command::read(ChannelId::STREAM, 0, n)));
            h.ok(Command::new(Opcode::CHANNEL_UNLOCK, ChannelId::STREAM));
            break;
        }
        thread::sleep(StdDuration::from_millis(15));
    }
    let frame = frame.expect("a frame from the script's snapshots");
    let word = |i: usize| u32::from_le_bytes(frame[i..i + 4].try_into().unwrap());
    assert_eq!((word(0), word(4), word(8)), (160, 120, 0x0606_0000));
    assert_eq!(&frame[word(16) as usize..][..2], [0xff, 0xd8]);
    assert!(
        h.events
            .iter()
            .any(|e| e.channel == ChannelId::STREAM && e.event == CamEvent::NOTIFY),
        "a stream NOTIFY per frame"
    );
    let _ = std::fs::remove_dir_all(&flash);
}

#[test]
fn init_limits_and_not_simulated_calls() {
    if !python() {
        return;
    }
    let mut h = start(SimConfig::new());
    h.exec(&script("not_simulated.py"));
    let out = h.wait_stdout("checked", 30);
    assert!(out.contains("board H7PLUS 5.0.0 12"), "{out}");
    for what in [
        "csi.CSI.auto_exposure is not simulated",
        "machine.I2C is not simulated",
        "BAYER/YUV422 is not simulated",
        "omv.disable_fb is not simulated",
        "the firmware module 'tof' is not simulated",
    ] {
        assert!(out.contains(what), "{what}: {out}");
    }
    assert!(!out.contains("no error"), "{out}");

    h.exec(&script("init_limits.py"));
    // protocol.init restarts the protocol under the script's settings:
    // resync once it has run.
    let out = h.wait_stdout_resyncing("active", 30);
    assert!(out.contains("refused {'max_payload': 10}"), "{out}");
    assert!(out.contains("refused {'max_payload': 1048576}"), "{out}");
    assert!(out.contains("refused {'lock_interval_ms': 5}"), "{out}");
    assert!(out.contains("init ok"), "{out}");
    assert!(out.contains("active True"), "{out}");
    // The settings took effect while the script runs: the cam announces
    // 256-byte payloads (the board's largest is 4082) and the host's
    // connect negotiated them. (ACKs: GET_CAPS announces what SET_CAPS
    // honours, and a host asking for ACKs gets them back after its SYNC.)
    let caps = Caps::decode(&h.ok(Command::system(Opcode::PROTO_GET_CAPS))).expect("caps");
    assert_eq!(caps.max_payload, 256, "{caps:?}");
    assert_eq!(h.ep.caps().max_payload, 256);
    // Answers longer than that come in pieces the host puts together.
    let n = h.size(ChannelId::STDOUT);
    assert!(n == 0 || h.ok(Command::read(ChannelId::STDOUT, 0, n)).len() == n as usize);
}

#[test]
fn a_script_that_dies_mid_call_gets_failed() {
    if !python() {
        return;
    }
    let mut h = start(SimConfig::new());
    h.exec(&script("dies_mid_call.py"));
    h.wait_stdout("fragile ready", 30);
    let fragile = h.id("fragile");
    let t = StdInstant::now();
    assert_eq!(
        h.nak(Command::new(Opcode::CHANNEL_SIZE, fragile)),
        Status::FAILED
    );
    assert!(t.elapsed() < StdDuration::from_secs(1), "{:?}", t.elapsed());
}

/// Takes stream frames until `want` accepts one (header words, pixels).
fn frame_where(h: &mut Host, want: impl Fn(&[u32], &[u8]) -> bool) -> (Vec<u32>, Vec<u8>) {
    let end = StdInstant::now() + StdDuration::from_secs(30);
    loop {
        assert!(StdInstant::now() < end, "no such frame within 30 s");
        if h.request(&Command::new(Opcode::CHANNEL_LOCK, ChannelId::STREAM))
            .is_ok()
        {
            let n = h.size(ChannelId::STREAM);
            let frame = h.ok(Command::read(ChannelId::STREAM, 0, n));
            h.ok(Command::new(Opcode::CHANNEL_UNLOCK, ChannelId::STREAM));
            let words: Vec<u32> = frame
                .chunks_exact(4)
                .take(5)
                .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
                .collect();
            assert_eq!(words.len(), 5, "a frame header: {frame:?}");
            let pixels = frame[words[4] as usize..].to_vec();
            if want(&words, &pixels) {
                return (words, pixels);
            }
        }
        thread::sleep(StdDuration::from_millis(10));
    }
}

/// True when every pixel of the (x, y, w, h) rectangle of an 80-wide
/// grayscale frame is `v`.
fn rect_is(pixels: &[u8], (x, y, w, h): (usize, usize, usize, usize), v: u8) -> bool {
    (y..y + h).all(|yy| (x..x + w).all(|xx| pixels.get(yy * 80 + xx) == Some(&v)))
}

/// The stream carries the script's frame buffer: its pixel format
/// (GRAYSCALE) and what it drew, by img.flush() and by the next snapshot.
#[test]
fn the_stream_carries_the_scripts_image_and_drawings() {
    if !python() {
        return;
    }
    let mut h = start(SimConfig::new());
    h.ok(Command::ioctl(ChannelId::STREAM, 0, &1u32.to_le_bytes()));
    h.ok(Command::ioctl(ChannelId::STREAM, 1, &1u32.to_le_bytes()));
    let mut cfg = 80u32.to_le_bytes().to_vec();
    cfg.extend_from_slice(&60u32.to_le_bytes());
    h.ok(Command::ioctl(ChannelId::STREAM, 2, &cfg));
    let gray = |w: &[u32], p: &[u8]| {
        assert_eq!(
            (w[0], w[1], w[2], w[3]),
            (80, 60, 0x0802_0001, 1),
            "an 80x60 GRAYSCALE frame, 1 byte a pixel"
        );
        assert_eq!(p.len(), 80 * 60);
    };

    h.exec(&script("gray_flush.py"));
    h.wait_stdout("flushing", 30);
    let (w, p) = frame_where(&mut h, |_, p| rect_is(p, (10, 8, 20, 12), 77));
    gray(&w, &p);

    // The flushing script is interrupted: the cam soft-resets; resync.
    h.events.clear();
    h.exec(&script("gray_loop.py"));
    h.resync_after_soft_reboot();
    h.wait_stdout("looping", 30);
    let (w, p) = frame_where(&mut h, |_, p| rect_is(p, (40, 30, 16, 10), 201));
    gray(&w, &p);
    // Every frame of the loop carries the drawing (the flushed script is
    // gone; its last frame may still have been waiting).
    for _ in 0..3 {
        let (w, p) = frame_where(&mut h, |_, _| true);
        gray(&w, &p);
        assert!(rect_is(&p, (40, 30, 16, 10), 201), "{p:?}");
    }
}

/// sensor (4.x) on csi, micropython.const/schedule, gc, machine.Pin,
/// uprotocol; then machine.reset() ends a script.
#[test]
fn smaller_modules_and_machine_reset() {
    if !python() {
        return;
    }
    let mut h = start(SimConfig::new());
    h.exec(&script("modules.py"));
    let out = h.wait_stdout_resyncing("uprotocol 3", 30);
    // A 64x48 window of QQVGA, in GRAYSCALE: 1 byte a pixel.
    assert!(out.contains("sensor 64 48 True 3072"), "{out}");
    assert!(
        out.contains("sensor: sensor.set_auto_gain is not simulated"),
        "{out}"
    );
    assert!(out.contains("schedule True [42]"), "{out}");
    // mem_free + mem_alloc is the GC heap SYS_MEMORY reports.
    let mem = MemoryStats::decode(&h.ok(Command::system(Opcode::SYS_MEMORY))).expect("memory");
    let heap = mem.entries.first().expect("a GC heap").total;
    assert!(
        out.contains(&format!("gc True True {heap}")),
        "{heap}: {out}"
    );
    // An input reads its pull-up; an output reads what was set.
    assert!(out.contains("pin 1 1 0"), "{out}");
    assert!(
        out.contains("pin: machine.Pin.irq is not simulated"),
        "{out}"
    );
    // uprotocol.register is protocol.register: a real channel.
    let uproto = h.id("uproto");
    assert_eq!(h.size(uproto), 5);
    assert_eq!(h.ok(Command::read(uproto, 0, 5)), b"hello");

    h.stdout.clear();
    h.exec(&script("reset.py"));
    let out = h.wait_stdout_resyncing("resetting", 30);
    assert!(!out.contains("not reached"), "{out}");
    // The script ended: the cam soft-resets and drops its channels.
    let end = StdInstant::now() + StdDuration::from_secs(30);
    loop {
        let out = h.wait_stdout_resyncing("MPY: soft reboot", 30);
        let after = out.split_once("resetting").map_or("", |(_, a)| a);
        if after.contains("MPY: soft reboot") {
            assert!(!after.contains("not reached"), "{out}");
            break;
        }
        assert!(
            StdInstant::now() < end,
            "no soft reboot after the reset: {out}"
        );
        thread::sleep(StdDuration::from_millis(50));
    }
    let names: Vec<String> = h.list().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["usb", "stdin", "stdout", "stream"]);
}
