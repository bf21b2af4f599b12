//! The cam runtime in real time: a SimCam served on a thread over an
//! in-memory link, its script in a Python child process, a host endpoint on
//! this thread.
//!
//! * `script_channel/size_read_64`: CHANNEL_SIZE + CHANNEL_READ of a
//!   64-byte script channel, each answered by the script's backend through
//!   the bridge;
//! * `snapshot_stream/qvga_jpeg_frame`: the time per frame of a QVGA RGB565
//!   snapshot loop streamed as JPEG (lock, size, read, unlock of each new
//!   frame); frames per second = 1 / that time.
//!
//! `cargo bench -p omv-benches --bench runtime` (needs `python3` on PATH;
//! skipped otherwise).

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use omv_proto::channel::ChannelEntry;
use omv_proto::host::{Command, Completion, HostConfig, HostEndpoint, Reply, RequestError};
use omv_proto::{ChannelId, Opcode};
use omv_sim::cam::SimConfig;
use omv_sim::link::{duplex, LinkEnd};
use omv_sim::script::PythonRunner;
use omv_sim::serve::{serve, MonotonicClock, ServeOptions};

struct Host {
    ep: HostEndpoint,
    port: LinkEnd,
    clock: MonotonicClock,
    stop: Arc<AtomicBool>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Host {
    fn start() -> Host {
        let (host_end, mut cam_end) = duplex();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let mut cam = SimConfig::new().build().expect("sim");
        thread::spawn(move || {
            let _ = serve(
                &mut cam,
                &mut cam_end,
                &MonotonicClock::new(),
                &s,
                &ServeOptions::default(),
            );
        });
        let mut h = Host {
            ep: HostEndpoint::new(HostConfig::default()),
            port: host_end,
            clock: MonotonicClock::new(),
            stop,
        };
        h.ep.connect(h.clock.now());
        match h.run() {
            Completion::Connected(r) => {
                r.expect("connect");
            }
            c => panic!("{c:?}"),
        }
        h
    }

    fn run(&mut self) -> Completion {
        let mut buf = [0u8; 16384];
        loop {
            while let Some(b) = self.ep.poll_transmit() {
                self.port.write_all(&b).expect("link");
            }
            if let Some(c) = self.ep.poll_completion() {
                while self.ep.poll_event().is_some() {}
                return c;
            }
            self.port.set_read_timeout(Some(Duration::from_millis(1)));
            match self.port.read(&mut buf) {
                Ok(0) => panic!("link closed"),
                Ok(n) => self.ep.handle_input(self.clock.now(), &buf[..n]),
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    self.ep.handle_timeout(self.clock.now())
                }
                Err(e) => panic!("{e}"),
            }
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
        self.request(&cmd)
            .unwrap_or_else(|e| panic!("{cmd:?}: {e:?}"))
            .into_bytes()
            .to_vec()
    }

    fn size(&mut self, id: ChannelId) -> u32 {
        let b = self.ok(Command::new(Opcode::CHANNEL_SIZE, id));
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    fn exec(&mut self, script: &str) {
        self.ok(Command::write(ChannelId::STDIN, 0, script.as_bytes()));
        self.ok(Command::ioctl(ChannelId::STDIN, 2, &[]));
    }

    fn wait_channel(&mut self, name: &str) -> ChannelId {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.ok(Command::system(Opcode::CHANNEL_LIST));
            let list = ChannelEntry::decode_list(&r).expect("list");
            if let Some(c) = list.iter().find(|c| c.name == name) {
                return c.id;
            }
            assert!(Instant::now() < end, "no channel {name}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

const CHANNEL_SCRIPT: &str = "\
import protocol, time
class Sixty4:
    def __init__(self):
        self.data = bytes(range(64))
    def size(self):
        return len(self.data)
    def read(self, offset, size):
        return self.data[offset:offset + size]
protocol.register(name='sixty4', backend=Sixty4())
while True:
    time.sleep_ms(100)
";

const SNAPSHOT_SCRIPT: &str = "\
import csi
cam = csi.CSI()
cam.reset()
cam.pixformat(csi.RGB565)
cam.framesize(csi.QVGA)
while True:
    cam.snapshot()
";

fn runtime(c: &mut Criterion) {
    if PythonRunner::new().resolve_interpreter().is_none() {
        eprintln!("python3 not on PATH: skipping the runtime benches");
        return;
    }
    let mut h = Host::start();
    h.exec(CHANNEL_SCRIPT);
    let id = h.wait_channel("sixty4");
    let mut g = c.benchmark_group("script_channel");
    g.bench_function("size_read_64", |b| {
        b.iter(|| {
            let n = h.size(id);
            let data = h.ok(Command::read(id, 0, n));
            assert_eq!(data.len(), 64);
        })
    });
    g.finish();

    h.exec(SNAPSHOT_SCRIPT);
    // The script's end soft-reset the protocol: resync.
    thread::sleep(Duration::from_millis(200));
    h.ep.connect(h.clock.now());
    let _ = h.run();
    h.ok(Command::ioctl(ChannelId::STREAM, 0, &1u32.to_le_bytes()));
    let mut g = c.benchmark_group("snapshot_stream");
    g.sample_size(20);
    g.bench_function("qvga_jpeg_frame", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            let mut got = 0;
            while got < iters {
                if h.request(&Command::new(Opcode::CHANNEL_LOCK, ChannelId::STREAM))
                    .is_ok()
                {
                    let n = h.size(ChannelId::STREAM);
                    let f = h.ok(Command::read(ChannelId::STREAM, 0, n));
                    assert_eq!(&f[0..4], 320u32.to_le_bytes());
                    h.ok(Command::new(Opcode::CHANNEL_UNLOCK, ChannelId::STREAM));
                    got += 1;
                } else {
                    thread::sleep(Duration::from_micros(200));
                }
            }
            t.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, runtime);
criterion_main!(benches);
