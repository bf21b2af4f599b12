//! Allocations per packet in steady state (issue 13): the real session
//! against the cam's real `DeviceEndpoint` with a byte-buffer channel,
//! in-process on virtual time, under a counting global allocator (this
//! binary only). A 1 MiB and a 16 MiB read into a caller's buffer, and
//! writes of the same sizes, must cost the same small number of
//! allocations: nothing per packet.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use omv_proto::device::{DeviceConfig, DeviceEndpoint};
use omv_proto::{ChannelId, Instant};
use omv_session::ops::{self, Operation};
use omv_session::{Error, Session, SessionConfig};
use omv_sim::user::BufferChannel;

struct Counting;

thread_local! {
    /// Allocations made by this thread (tests run on parallel threads).
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // After the thread's locals are gone (thread exit) nothing is counted.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
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
            .register_at(
                ChannelId(1),
                "bulk",
                Box::new(BufferChannel::with_pattern(size)),
            )
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
            self.rx.clear();
            while self
                .cam
                .poll_transmit_into(self.now, &mut self.rx)
                .is_some()
            {
                self.s.handle_input(self.now, &self.rx);
                self.rx.clear();
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

/// Which read operation.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Read {
    /// `ReadAt`: the output is a new `Vec`.
    Convenient,
    /// `ReadAtInto` a caller's buffer of enough capacity.
    Into,
}

/// Allocations and packets (both ways) of one read of `size` bytes.
fn read_cost(size: usize, how: Read) -> (u64, u64) {
    let mut w = World::new(size);
    let buf = match how {
        Read::Into => Vec::with_capacity(size),
        Read::Convenient => Vec::new(),
    };
    let (a, p) = (allocs(), w.packets());
    let (id, len) = (w.bulk, size as u32);
    let got = match how {
        Read::Into => w.run(ops::ReadAtInto {
            id,
            offset: 0,
            len,
            buf,
        }),
        Read::Convenient => w.run(ops::ReadAt { id, offset: 0, len }),
    }
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

fn per_packet(what: &str, size: usize, (a, p): (u64, u64)) {
    println!(
        "{what} {} MiB: {a} allocations, {p} packets, {:.4} per packet",
        size / MIB,
        a as f64 / p as f64
    );
}

#[test]
fn reads_into_a_buffer_allocate_the_same_whatever_the_size() {
    // A first run pays for what the thread sets up once.
    read_cost(MIB, Read::Into);
    let small = read_cost(MIB, Read::Into);
    let large = read_cost(16 * MIB, Read::Into);
    per_packet("read into", MIB, small);
    per_packet("read into", 16 * MIB, large);
    assert!(
        large.1 > 15 * small.1,
        "16 times the packets: {small:?} {large:?}"
    );
    assert_eq!(
        small.0, large.0,
        "allocations: 1 MiB {small:?}, 16 MiB {large:?}"
    );
    assert!(small.0 <= 16, "a small number: {small:?}");
}

#[test]
fn writes_allocate_the_same_whatever_the_size() {
    write_cost(MIB);
    let small = write_cost(MIB);
    let large = write_cost(16 * MIB);
    per_packet("write", MIB, small);
    per_packet("write", 16 * MIB, large);
    assert!(
        large.1 > 15 * small.1,
        "16 times the packets: {small:?} {large:?}"
    );
    assert_eq!(
        small.0, large.0,
        "allocations: 1 MiB {small:?}, 16 MiB {large:?}"
    );
    assert!(small.0 <= 16, "a small number: {small:?}");
}

#[test]
fn convenient_reads_allocate_nothing_per_packet() {
    // The output Vec grows by doubling: a few more allocations for 16
    // times the size, none per packet.
    let small = read_cost(MIB, Read::Convenient);
    let large = read_cost(16 * MIB, Read::Convenient);
    per_packet("read", MIB, small);
    per_packet("read", 16 * MIB, large);
    assert!(large.0 <= small.0 + 8, "1 MiB {small:?}, 16 MiB {large:?}");
}
