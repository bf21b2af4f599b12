//! A deterministic in-process link between a host and a cam endpoint.
#![allow(dead_code)]

use omv_proto::backend::{ChannelBackend, ChannelError, Ops};
use omv_proto::device::{DeviceConfig, DeviceEndpoint};
use omv_proto::fault::{self, PacketFaults, Pipe};
use omv_proto::host::{Command, Completion, HostConfig, HostEndpoint, Reply, RequestError};
use omv_proto::rng::SimRng;
use omv_proto::{Duration, Instant};

/// A byte-buffer channel: read, write, size, lock.
pub struct BufChan {
    pub data: Vec<u8>,
    pub locked: bool,
}

impl ChannelBackend for BufChan {
    fn ops(&self) -> Ops {
        Ops::READ | Ops::WRITE | Ops::SIZE | Ops::LOCK
    }
    fn size(&mut self) -> Result<u32, ChannelError> {
        Ok(self.data.len() as u32)
    }
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<usize, ChannelError> {
        let start = offset as usize;
        let end = start.checked_add(buf.len()).ok_or(ChannelError::Failed)?;
        if end > self.data.len() {
            return Err(ChannelError::Failed);
        }
        buf.copy_from_slice(&self.data[start..end]);
        Ok(buf.len())
    }
    fn write(&mut self, offset: u32, d: &[u8]) -> Result<(), ChannelError> {
        let start = offset as usize;
        let end = start + d.len();
        if end > self.data.len() {
            return Err(ChannelError::Failed);
        }
        self.data[start..end].copy_from_slice(d);
        Ok(())
    }
    fn lock(&mut self) -> Result<(), ChannelError> {
        if self.locked {
            return Err(ChannelError::Busy);
        }
        self.locked = true;
        Ok(())
    }
    fn unlock(&mut self) -> Result<(), ChannelError> {
        self.locked = false;
        Ok(())
    }
    fn reset(&mut self) {
        self.locked = false;
    }
}

/// Faults applied to whole packets in each direction, decided by
/// omv-proto's shared [`fault`] module.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    pub host_to_cam_drop: f64,
    pub cam_to_host_drop: f64,
    /// Max extra virtual microseconds per packet (a random delay; the
    /// link stays FIFO).
    pub jitter_us: u64,
}

impl Faults {
    /// Host to cam: drops only, each packet whole.
    fn h2c(&self) -> PacketFaults {
        self.jittered(PacketFaults::drops(self.host_to_cam_drop))
    }

    /// Every packet delayed by up to `jitter_us` (none when zero).
    fn jittered(&self, f: PacketFaults) -> PacketFaults {
        if self.jitter_us == 0 {
            return f;
        }
        f.with_delay(1.0, Duration::from_micros(self.jitter_us))
    }

    /// Cam to host: drops, and every packet delivered in random chunks.
    fn c2h(&self) -> PacketFaults {
        self.jittered(PacketFaults::drops(self.cam_to_host_drop).with_chunk_max(usize::MAX))
    }
}

pub struct Link {
    pub host: HostEndpoint,
    pub cam: DeviceEndpoint,
    pub now: Instant,
    pub rng: SimRng,
    pub faults: Faults,
    pub events: Vec<omv_proto::host::CamEvent>,
    /// The two directions of the link (omv-proto's shared link model).
    h2c: Pipe,
    c2h: Pipe,
}

impl Link {
    pub fn new(host: HostConfig, cam: DeviceConfig, seed: u64, faults: Faults) -> Link {
        Link {
            host: HostEndpoint::new(host),
            cam: DeviceEndpoint::new(cam),
            now: Instant::ZERO,
            rng: SimRng::new(seed),
            faults,
            events: Vec::new(),
            h2c: Pipe::default(),
            c2h: Pipe::default(),
        }
    }

    /// Moves bytes both ways until the host completes something; advances
    /// virtual time to the next deadline when nothing moves.
    pub fn run(&mut self) -> Completion {
        for _ in 0..1_000_000 {
            if let Some(c) = self.host.poll_completion() {
                while let Some(e) = self.host.poll_event() {
                    self.events.push(e);
                }
                return c;
            }
            let mut moved = false;
            while let Some(bytes) = self.host.poll_transmit() {
                moved = true;
                let plan = fault::plan(&self.faults.h2c(), true, |_| true, &mut self.rng, &bytes);
                self.h2c.send(self.now, &bytes, &plan);
            }
            while let Some(bytes) = self.cam.poll_transmit(self.now) {
                moved = true;
                let plan = fault::plan(&self.faults.c2h(), true, |_| true, &mut self.rng, &bytes);
                self.c2h.send(self.now, &bytes, &plan);
            }
            while let Some(c) = self.h2c.pop_due(self.now) {
                moved = true;
                self.cam.handle_input(self.now, &c.bytes);
            }
            while let Some(c) = self.c2h.pop_due(self.now) {
                moved = true;
                self.host.handle_input(self.now, &c.bytes);
            }
            while let Some(e) = self.host.poll_event() {
                self.events.push(e);
            }
            if !moved {
                let next = [
                    self.host.poll_timeout(),
                    self.cam.poll_timeout(),
                    self.h2c.next_due(),
                    self.c2h.next_due(),
                ]
                .into_iter()
                .flatten()
                .min();
                match next {
                    Some(t) => {
                        self.now = self.now.max(t);
                        self.host.handle_timeout(self.now);
                        self.cam.handle_timeout(self.now);
                    }
                    None => panic!("deadlock: nothing to send and no timer"),
                }
            }
        }
        panic!("no completion after a million steps");
    }

    /// A fault-free link with default configs whose cam holds `data` in a
    /// [`BufChan`] on `channel`.
    pub fn with_buffer(seed: u64, channel: omv_proto::ChannelId, data: Vec<u8>) -> Link {
        let mut link = Link::new(
            HostConfig::default(),
            DeviceConfig::default(),
            seed,
            Faults::default(),
        );
        link.cam
            .register_at(
                channel,
                "buf",
                Box::new(BufChan {
                    data,
                    locked: false,
                }),
            )
            .expect("a free channel id");
        link
    }

    pub fn connect(&mut self) -> Result<omv_proto::caps::Caps, RequestError> {
        self.host.connect(self.now);
        match self.run() {
            Completion::Connected(r) => r,
            other => panic!("unexpected {other:?}"),
        }
    }

    pub fn request(&mut self, cmd: &Command) -> Result<Reply, RequestError> {
        self.host.request(self.now, cmd)?;
        match self.run() {
            Completion::Request(r) => r,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The wire form of a packet (CRCs on or off), as a peer would send it.
pub fn wire(
    crc: bool,
    seq: u8,
    channel: omv_proto::ChannelId,
    flags: omv_proto::Flags,
    opcode: omv_proto::Opcode,
    payload: &[u8],
) -> Vec<u8> {
    let h = omv_proto::Header {
        sequence: seq,
        channel,
        flags,
        opcode,
        length: 0,
    };
    let mut out = Vec::new();
    omv_proto::packet::encode_packet(&h, payload, crc, &mut out);
    out
}
