//! Real time: `serve` runs a SimCam on a thread behind an in-memory duplex
//! link, and a blocking host loop drives the other end, as a blocking host
//! driver does over a serial port.

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use omv_proto::host::{
    CamEvent, Command, Completion, HostConfig, HostEndpoint, Reply, RequestError,
};
use omv_proto::{ChannelId, Opcode};
use omv_sim::cam::SimConfig;
use omv_sim::fault::FaultConfig;
use omv_sim::link::{duplex, LinkEnd};
use omv_sim::serve::{serve, MonotonicClock, ServeEnd, ServeOptions};

struct BlockingHost {
    ep: HostEndpoint,
    port: LinkEnd,
    clock: MonotonicClock,
    events: Vec<CamEvent>,
}

impl BlockingHost {
    fn run(&mut self) -> Completion {
        let end = StdInstant::now() + StdDuration::from_secs(60);
        let mut buf = [0u8; 8192];
        loop {
            assert!(StdInstant::now() < end, "no completion within 60 s");
            while let Some(b) = self.ep.poll_transmit() {
                self.port.write_all(&b).unwrap();
            }
            if let Some(c) = self.ep.poll_completion() {
                while let Some(e) = self.ep.poll_event() {
                    self.events.push(e);
                }
                return c;
            }
            let now = self.clock.now();
            let wait = self
                .ep
                .poll_timeout()
                .map_or(StdDuration::from_millis(50), |t| {
                    StdDuration::from_micros(t.as_micros().saturating_sub(now.as_micros()))
                        .clamp(StdDuration::from_millis(1), StdDuration::from_millis(50))
                });
            self.port.set_read_timeout(Some(wait));
            match self.port.read(&mut buf) {
                Ok(0) => panic!("link closed"),
                Ok(n) => self.ep.handle_input(self.clock.now(), &buf[..n]),
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    self.ep.handle_timeout(self.clock.now())
                }
                Err(e) => panic!("{e}"),
            }
            while let Some(e) = self.ep.poll_event() {
                self.events.push(e);
            }
        }
    }

    fn connect(&mut self) -> Result<(), RequestError> {
        self.ep.connect(self.clock.now());
        match self.run() {
            Completion::Connected(r) => r.map(|_| ()),
            c => panic!("{c:?}"),
        }
    }

    fn request(&mut self, cmd: &Command) -> Result<Reply, RequestError> {
        self.ep.request(self.clock.now(), cmd)?;
        match self.run() {
            Completion::Request(r) => r,
            c => panic!("{c:?}"),
        }
    }

    /// A request retried after a resync, as the stock host does.
    fn request_retry(&mut self, cmd: &Command) -> Reply {
        for _ in 0..5 {
            match self.request(cmd) {
                Ok(r) => return r,
                Err(_) => {
                    let _ = self.connect();
                }
            }
        }
        panic!("{cmd:?} failed 5 times");
    }
}

fn start(config: SimConfig) -> (BlockingHost, Arc<AtomicBool>, thread::JoinHandle<ServeEnd>) {
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
    let host = BlockingHost {
        ep: HostEndpoint::new(HostConfig::default()),
        port: host_end,
        clock: MonotonicClock::new(),
        events: Vec::new(),
    };
    (host, stop, t)
}

#[test]
fn serve_thread_with_a_blocking_host() {
    let config = SimConfig::new()
        .channel("bulk", 1 << 20)
        .in_process_threaded(|_, ctx| {
            ctx.print("looping\n");
            while !ctx.stop_requested() {
                thread::sleep(StdDuration::from_millis(2));
            }
        });
    let (mut h, stop, t) = start(config);
    h.connect().unwrap();
    let data = h
        .request(&Command::read(ChannelId(4), 0, 1 << 20))
        .unwrap()
        .into_bytes();
    assert!(data.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));

    // A running script: stdin polls true until STOP; its output is readable.
    h.request(&Command::write(ChannelId::STDIN, 0, b"loop"))
        .unwrap();
    h.request(&Command::ioctl(ChannelId::STDIN, 2, &[]))
        .unwrap();
    let poll = |h: &mut BlockingHost| {
        let b = h
            .request(&Command::system(Opcode::CHANNEL_POLL))
            .unwrap()
            .into_bytes();
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    };
    assert_ne!(poll(&mut h) & (1 << ChannelId::STDIN.0), 0);
    let end = StdInstant::now() + StdDuration::from_secs(10);
    while poll(&mut h) & (1 << ChannelId::STDOUT.0) == 0 {
        assert!(StdInstant::now() < end, "no output");
        thread::sleep(StdDuration::from_millis(5));
    }
    h.request(&Command::ioctl(ChannelId::STDIN, 1, &[]))
        .unwrap();
    // The script's end soft-resets the cam's protocol (sequence 0, start-up
    // caps): the host resyncs on SOFT_REBOOT, as the OpenMV IDE does.
    h.connect().unwrap();
    assert_eq!(poll(&mut h) & (1 << ChannelId::STDIN.0), 0);
    // The stdout NOTIFY timer runs in the serve loop while text is unread.
    thread::sleep(StdDuration::from_millis(120));
    poll(&mut h);
    assert!(
        h.events
            .iter()
            .any(|e| e.channel == ChannelId::STDOUT && e.event == CamEvent::NOTIFY),
        "{:?}",
        h.events
    );
    assert!(
        h.events.iter().any(|e| e.channel.0 == 0 && e.event == 2),
        "SOFT_REBOOT: {:?}",
        h.events
    );

    stop.store(true, Ordering::SeqCst);
    assert_eq!(t.join().unwrap(), ServeEnd::Shutdown);
}

#[test]
fn serve_thread_under_faults_in_real_time() {
    // About 50 packets answer the read: at 8% drops the chance that none
    // is dropped (and the retransmit assertion has nothing to see) is
    // under 2%, whatever the seed's stream.
    let faults = FaultConfig::default()
        .drop_rate(0.08)
        .corrupt_rate(0.01)
        .latency(
            omv_sim::fault::FaultConfig::default().latency + omv_proto::Duration::from_millis(1),
        )
        .chunk_max(700)
        .seed(9);
    let config = SimConfig::new()
        .channel("bulk", 200_000)
        .in_process(|_, _| {})
        .faults(faults);
    let (mut h, stop, t) = start(config);
    while h.connect().is_err() {}
    let data = h
        .request_retry(&Command::read(ChannelId(4), 0, 200_000))
        .into_bytes();
    assert!(data.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    let stats = h
        .request_retry(&Command::system(Opcode::PROTO_STATS))
        .into_bytes();
    let retransmits = u32::from_le_bytes([stats[16], stats[17], stats[18], stats[19]]);
    assert!(retransmits > 0, "drops cause retransmits");
    stop.store(true, Ordering::SeqCst);
    assert_eq!(t.join().unwrap(), ServeEnd::Shutdown);
}
