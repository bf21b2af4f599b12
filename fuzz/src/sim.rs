//! A compact deterministic simulation of a host+cam link (discrete events
//! on a virtual clock), in the spirit of `proto-core/tests/common`, with a
//! per-packet fault schedule for each direction.
//!
//! Every buffer an endpoint transmits is one packet; each consumes the next
//! [`Fault`] of its direction's schedule (then [`Fault::Deliver`] once the
//! schedule is exhausted). Packets of one direction arrive in order (a
//! delayed packet holds back the ones behind it, like a slow wire); the
//! two directions are independent. A scripted [`Fault`] becomes a plan of
//! omv-proto's shared fault module ([`Fault::plan`]), applied by it.

use arbitrary::Arbitrary;
use omv_proto::caps::Caps;
use omv_proto::device::{DeviceConfig, DeviceEndpoint};
use omv_proto::fault::{self, FaultKind};
use omv_proto::host::{Command, Completion, HostConfig, HostEndpoint, Reply, RequestError};
use omv_proto::{Duration, Instant};

use crate::backends::Shared;

/// What happens to one packet on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum Fault {
    /// Delivered whole, after the base latency.
    Deliver,
    /// Lost.
    Drop,
    /// One bit flipped (byte `at` modulo the packet length).
    Flip {
        /// Byte index (modulo the length).
        at: u16,
        /// Bit index (modulo 8).
        bit: u8,
    },
    /// Delivered `ms % max_delay` milliseconds late (holding back what follows).
    Delay {
        /// Extra delay.
        ms: u16,
    },
    /// Delivered in pieces of `size` bytes (0 read as 1), all at once.
    Chunk {
        /// Piece size.
        size: u8,
    },
}

impl Fault {
    /// This scripted fault as a plan of omv-proto's shared fault module,
    /// for a packet of `len` bytes; delays are taken modulo `max_delay_ms`.
    pub fn plan(self, len: usize, max_delay_ms: u64) -> fault::Plan {
        let mut p = fault::Plan::deliver();
        match self {
            Fault::Deliver => {}
            Fault::Drop => return fault::Plan::dropped(),
            Fault::Flip { at, bit } => {
                if len > 0 {
                    p.copies[0].flip = Some((usize::from(at) % len) * 8 + usize::from(bit % 8));
                    p.fate.set(FaultKind::BitFlip);
                }
            }
            Fault::Delay { ms } => {
                let ms = u64::from(ms) % max_delay_ms.max(1);
                if ms > 0 {
                    p.copies[0].extra = Duration::from_millis(ms);
                    p.copies[0].delayed = true;
                    p.fate.set(FaultKind::Delay);
                }
            }
            Fault::Chunk { size } => {
                let size = usize::from(size).max(1);
                p.copies[0].cuts = (size..len).step_by(size).collect();
                if !p.copies[0].cuts.is_empty() {
                    p.fate.set(FaultKind::Split);
                }
            }
        }
        p
    }
}

/// Settings of a [`Sim`].
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Host settings.
    pub host: HostConfig,
    /// Cam settings.
    pub cam: DeviceConfig,
    /// Channel 3 emits NOTIFY events on its own.
    pub chatty: bool,
    /// One-way latency of every packet.
    pub latency: Duration,
    /// Longest [`Fault::Delay`]. Keep it under the host's timeout: a packet
    /// held back longer than that arrives after the host gave up, and the
    /// protocol has no way to tell a stale answer (or a stale SYNC ACK)
    /// from a fresh one with the same opcode and sequence number.
    pub max_delay: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            host: HostConfig::default(),
            cam: DeviceConfig::default(),
            chatty: false,
            latency: Duration::from_micros(100),
            max_delay: Duration::from_millis(500),
        }
    }
}

/// Most events one operation may take before it is called a livelock.
pub const STEP_CAP: u64 = 300_000;

/// The simulated link. See the module documentation.
pub struct Sim {
    /// The host.
    pub host: HostEndpoint,
    /// The cam (channels as in [`crate::device::cam`]).
    pub cam: DeviceEndpoint,
    /// Virtual time.
    pub now: Instant,
    /// Channel 1's bytes.
    pub buf: Shared,
    /// Channel 2's bytes.
    pub app: Shared,
    /// True once any drop, flip or delay was applied.
    pub faulted: bool,
    /// Events processed so far.
    pub steps: u64,
    /// Cam events the host reported.
    pub events: u64,
    /// When true, every delivered byte is appended to `tap[direction]`.
    pub record: bool,
    /// Delivered bytes per direction (see `record`).
    pub tap: [Vec<u8>; 2],
    queues: [fault::Pipe; 2],
    faults: [Vec<Fault>; 2],
    next_fault: [usize; 2],
    max_delay_ms: u64,
}

/// OMV_FUZZ_TRACE=1 prints every delivery and fault (replaying a crash).
pub fn trace() -> bool {
    std::env::var_os("OMV_FUZZ_TRACE").is_some()
}

/// Index of the host-to-cam direction.
pub const TO_CAM: usize = 0;
/// Index of the cam-to-host direction.
pub const TO_HOST: usize = 1;

impl Sim {
    /// A link with no faults.
    pub fn new(cfg: SimConfig) -> Sim {
        let (cam, buf, app) = crate::device::cam(cfg.cam, cfg.chatty);
        Sim {
            host: HostEndpoint::new(cfg.host),
            cam,
            now: Instant::ZERO,
            buf,
            app,
            faulted: false,
            steps: 0,
            events: 0,
            record: false,
            tap: [Vec::new(), Vec::new()],
            queues: [
                fault::Pipe::new(fault::PipeTiming::latency(cfg.latency)),
                fault::Pipe::new(fault::PipeTiming::latency(cfg.latency)),
            ],
            faults: [Vec::new(), Vec::new()],
            next_fault: [0, 0],
            max_delay_ms: u64::try_from(cfg.max_delay.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        }
    }

    /// Sets the fault schedules (applied from the next packet on).
    pub fn set_faults(&mut self, to_cam: Vec<Fault>, to_host: Vec<Fault>) {
        self.faults = [to_cam, to_host];
        self.next_fault = [0, 0];
    }

    /// Makes the link perfect from now on (packets in flight stay in flight).
    pub fn clear_faults(&mut self) {
        self.set_faults(Vec::new(), Vec::new());
    }

    /// Forgets every packet in flight.
    pub fn drop_in_flight(&mut self) {
        self.queues[TO_CAM].clear();
        self.queues[TO_HOST].clear();
    }

    fn enqueue(&mut self, dir: usize, bytes: Vec<u8>) {
        let fault = self.faults[dir]
            .get(self.next_fault[dir])
            .copied()
            .unwrap_or(Fault::Deliver);
        self.next_fault[dir] = self.next_fault[dir].saturating_add(1);
        if trace() && fault != Fault::Deliver {
            eprintln!(
                "    {:?} fault {fault:?} on {}",
                self.now,
                if dir == TO_CAM {
                    "host -> cam"
                } else {
                    "cam -> host"
                }
            );
        }
        let plan = fault.plan(bytes.len(), self.max_delay_ms);
        if [FaultKind::Drop, FaultKind::BitFlip, FaultKind::Delay]
            .iter()
            .any(|&k| plan.fate.has(k))
        {
            self.faulted = true;
        }
        self.queues[dir].send(self.now, &bytes, &plan);
    }

    fn collect(&mut self) {
        while let Some(b) = self.host.poll_transmit() {
            self.enqueue(TO_CAM, b);
        }
        while let Some(b) = self.cam.poll_transmit(self.now) {
            self.enqueue(TO_HOST, b);
        }
    }

    /// Processes the earliest pending event (a delivery or a timer).
    /// Returns false when nothing at all is pending.
    pub fn step(&mut self) -> bool {
        self.collect();
        let times = [
            self.queues[TO_CAM].next_due(),
            self.queues[TO_HOST].next_due(),
            self.host.poll_timeout(),
            self.cam.poll_timeout(),
        ];
        let Some((which, t)) = times
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (i, t)))
            .min_by_key(|&(i, t)| (t, i))
        else {
            return false;
        };
        self.steps += 1;
        self.now = self.now.max(t);
        match which {
            0 | 1 => {
                let Some(p) = self.queues[which].pop_due(self.now) else {
                    unreachable!("the pipe's first chunk is due");
                };
                if self.record {
                    self.tap[which].extend_from_slice(&p.bytes);
                }
                if trace() {
                    let h = omv_proto::header::Header::decode(&p.bytes).ok();
                    let dir = if which == TO_CAM {
                        "host -> cam"
                    } else {
                        "cam -> host"
                    };
                    eprintln!("    {:?} {dir} {:?}", self.now, h);
                }
                if which == TO_CAM {
                    self.cam.handle_input(self.now, &p.bytes);
                } else {
                    self.host.handle_input(self.now, &p.bytes);
                }
            }
            2 => self.host.handle_timeout(self.now),
            _ => self.cam.handle_timeout(self.now),
        }
        while self.host.poll_event().is_some() {
            self.events += 1;
        }
        while self.cam.poll_event().is_some() {}
        self.collect();
        true
    }

    /// Runs until the host completes something.
    pub fn run(&mut self) -> Completion {
        let start = self.steps;
        loop {
            if let Some(c) = self.host.poll_completion() {
                return c;
            }
            assert!(
                self.steps - start < STEP_CAP,
                "livelock: no completion after {STEP_CAP} events"
            );
            assert!(
                self.step(),
                "deadlock: the host waits with no timer and nothing in flight"
            );
        }
    }

    /// Runs until every packet the host sent so far has reached the cam
    /// (a request the host gave up on may still be on the wire).
    pub fn drain_to_cam(&mut self) {
        let start = self.steps;
        self.collect();
        while !self.queues[TO_CAM].is_empty() {
            assert!(self.step(), "packets in flight but nothing to do");
            assert!(
                self.steps - start < STEP_CAP,
                "the host-to-cam queue never drains"
            );
        }
    }

    /// Runs until nothing is in flight and no timer is set.
    pub fn quiesce(&mut self) {
        let start = self.steps;
        while self.step() {
            assert!(self.steps - start < STEP_CAP, "the link never goes quiet");
        }
        while self.host.poll_completion().is_some() {}
    }

    /// Runs every event due before `now + d`, then moves the clock there.
    pub fn wait(&mut self, d: Duration) {
        let end = self.now + d;
        let start = self.steps;
        loop {
            self.collect();
            let next = [
                self.queues[TO_CAM].next_due(),
                self.queues[TO_HOST].next_due(),
                self.host.poll_timeout(),
                self.cam.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= end => {
                    self.step();
                }
                _ => break,
            }
            assert!(self.steps - start < STEP_CAP, "livelock while waiting");
        }
        self.now = self.now.max(end);
    }

    /// Connects (SYNC, GET_CAPS, SET_CAPS).
    pub fn connect(&mut self) -> Result<Caps, RequestError> {
        self.host.connect(self.now);
        match self.run() {
            Completion::Connected(r) => r,
            other => panic!("connect ended with {other:?}"),
        }
    }

    /// Sends one request and waits for its outcome.
    pub fn request(&mut self, cmd: &Command) -> Result<Reply, RequestError> {
        self.host.request(self.now, cmd)?;
        match self.run() {
            Completion::Request(r) => r,
            other => panic!("request ended with {other:?}"),
        }
    }
}
