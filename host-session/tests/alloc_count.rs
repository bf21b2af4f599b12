//! Allocations per packet in steady state (issue 13): the real session
//! against the cam's real `DeviceEndpoint` with a byte-buffer channel,
//! in-process on virtual time, under a counting global allocator (this
//! binary only). A 1 MiB and a 16 MiB read into a caller's buffer, and
//! writes of the same sizes, must cost the same small number of
//! allocations: nothing per packet.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use omv_proto::device::{DeviceConfig, DeviceEndpoint};
use omv_proto::{ChannelId, Instant};
use omv_session::ops::{self, Operation};
use omv_session::{Error, Session, SessionConfig};
use omv_sim::user::BufferChannel;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

const MIB: usize = 1 << 20;

/// The session and the cam's endpoint back to back, on virtual time.
struct World {
    s: Session,
    cam: DeviceEndpoint,
    now: Instant,
    tx: Vec<u8>,
    rx: Vec<u8>,
    bulk: ChannelId,
}

impl World {
    fn new(size: usize) -> World {
        let mut cam = DeviceEndpoint::new(DeviceConfig::default());
        let bulk = cam
            .register_at(ChannelId(1), "bulk", Box::new(BufferChannel::with_pattern(size)))
            .unwrap();
        let mut s = Session::new(SessionConfig::default());
        s.port_opened();
        let mut w = World {
            s,
            cam,
            now: Instant::ZERO,
            tx: Vec::with_capacity(8192),
            rx: Vec::with_capacity(8192),
            bulk,
        };
        w.run(ops::Connect).unwrap();
        w
    }

    fn run<O: Operation>(&mut self, op: O) -> Result<O::Output, Error> {
        let pending = self.s.start(self.now, op)?;
        loop {
            let mut moved = false;
            self.tx.clear();
            while self.s.poll_transmit(self.now, &mut self.tx).is_some() {}
            if !self.tx.is_empty() {
                self.cam.handle_input(self.now, &self.tx);
                moved = true;
            }
            while let Some(p) = self.cam.poll_transmit(self.now) {
                self.rx.clear();
                self.rx.extend_from_slice(&p);
                self.s.handle_input(self.now, &self.rx);
                moved = true;
            }
            while self.s.poll_event().is_some() {}
            if let Some(out) = self.s.take_output(&pending) {
                return out;
            }
            if !moved {
                let next = [self.s.poll_timeout(), self.cam.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min()
                    .expect("an operation in flight has a deadline");
                self.now = self.now.max(next);
                self.cam.handle_timeout(self.now);
                self.s.handle_timeout(self.now);
            }
        }
    }

    fn packets(&self) -> u64 {
        let h = self.s.host_stats();
        h.sent + h.received
    }
}

/// Allocations and packets (both ways) of one read of `size` bytes.
fn read_cost(size: usize) -> (u64, u64) {
    let mut w = World::new(size);
    let (a, p) = (allocs(), w.packets());
    let got = w
        .run(ops::ReadAt {
            id: w.bulk,
            offset: 0,
            len: size as u32,
        })
        .unwrap();
    let cost = (allocs() - a, w.packets() - p);
    assert_eq!(got.len(), size);
    assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    cost
}

/// Allocations and packets of one write of `size` bytes.
fn write_cost(size: usize) -> (u64, u64) {
    let mut w = World::new(size);
    let data = Bytes::from((0..size).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
    let (a, p) = (allocs(), w.packets());
    w.run(ops::WriteAt {
        id: w.bulk,
        offset: 0,
        data,
    })
    .unwrap();
    (allocs() - a, w.packets() - p)
}

#[test]
fn report() {
    for size in [MIB, 16 * MIB] {
        let (a, p) = read_cost(size);
        println!("read {size}: {a} allocations, {p} packets, {:.3}/packet", a as f64 / p as f64);
        let (a, p) = write_cost(size);
        println!("write {size}: {a} allocations, {p} packets, {:.3}/packet", a as f64 / p as f64);
    }
}
