//! Framing decode and encode throughput (table and SIMD CRC-32 side by
//! side, with CRC-only baselines) and an in-memory request/response round
//! trip. `framer_cpu` repeats the framer cases measured in the thread's CPU
//! time (GB per CPU second), which other jobs on a shared machine distort
//! less than wall time.
//!
//! `cargo bench -p omv-benches`

use std::hint::black_box;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use omv_proto::backend::{ChannelBackend, ChannelError, Ops};
use omv_proto::crc::{self, Crc32Impl};
use omv_proto::device::{DeviceConfig, DeviceEndpoint};
use omv_proto::framer::{Frame, Framer, FramerConfig, Role};
use omv_proto::header::Header;
use omv_proto::host::{Command, Completion, HostConfig, HostEndpoint};
use omv_proto::packet::encode_packet;
use omv_proto::{ChannelId, Instant, Opcode, FIRMWARE_DEFAULT_PAYLOAD as MAX_PAYLOAD};

fn max_size_stream(packets: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..MAX_PAYLOAD as usize).map(|i| (i * 31) as u8).collect();
    let mut out = Vec::new();
    for i in 0..packets {
        let h = Header {
            sequence: i as u8,
            channel: ChannelId(3),
            opcode: Opcode::CHANNEL_READ,
            ..Header::default()
        };
        encode_packet(&h, &payload, true, &mut out);
    }
    out
}

/// The CRC-32 implementations this build and CPU have, by bench name.
fn crc_impls() -> Vec<(&'static str, Crc32Impl)> {
    let mut v = vec![("table", Crc32Impl::Table)];
    if crc::crc32_simd(b"").is_some() {
        v.push(("simd", Crc32Impl::Simd));
    }
    v
}

fn framing<M: Measurement + 'static>(c: &mut Criterion<M>, group: &str) {
    let stream = max_size_stream(256);
    let packet = 10 + MAX_PAYLOAD as usize + 4;
    let payload: Vec<u8> = (0..MAX_PAYLOAD as usize).map(|i| (i * 31) as u8).collect();
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Bytes(stream.len() as u64));
    // Each case with the table CRC-32 and, where the CPU has carry-less
    // multiply, the SIMD one, side by side in one run.
    for (imp_name, imp) in crc_impls() {
        assert!(crc::set_crc32_impl(imp));
        // One framer for all iterations, as a driver keeps one: each
        // iteration ends on a packet boundary with the buffer empty, so its
        // allocation is reused instead of page-faulting a fresh megabyte
        // every time.
        for (name, chunk) in [
            ("decode_4082_whole", stream.len()),
            ("decode_4082_chunks_16k", 16 * 1024),
        ] {
            let mut f = Framer::new(FramerConfig::new(Role::Host, true, MAX_PAYLOAD));
            g.bench_function(format!("{name}/{imp_name}"), |b| {
                b.iter(|| {
                    let mut n = 0usize;
                    for piece in stream.chunks(chunk) {
                        f.push(black_box(piece));
                        while let Some(Frame::Packet(p)) = f.next(None) {
                            n += p.payload.len();
                        }
                    }
                    assert_eq!(f.buffered(), 0);
                    black_box(n)
                })
            });
        }
        // 256 packets appended to one reused buffer, as a sender that keeps
        // its transmit buffer would.
        let mut out = Vec::with_capacity(stream.len());
        g.bench_function(format!("encode_4082/{imp_name}"), |b| {
            b.iter(|| {
                out.clear();
                for i in 0..256 {
                    let h = Header {
                        sequence: i as u8,
                        channel: ChannelId(3),
                        opcode: Opcode::CHANNEL_READ,
                        ..Header::default()
                    };
                    encode_packet(&h, black_box(&payload), true, &mut out);
                }
                assert_eq!(out.len(), stream.len());
                black_box(out.len())
            })
        });
        // The floor: CRC-32 over every payload and CRC-16 over every
        // header, which any checking decoder must compute.
        g.bench_function(format!("crc_only_4082/{imp_name}"), |b| {
            b.iter(|| {
                let mut x = 0u32;
                for p in stream.chunks(packet) {
                    x ^= u32::from(crc::crc16(&p[..8]));
                    x ^= crc::crc32(&p[10..packet - 4]);
                }
                black_box(x)
            })
        });
    }
    // What [`crc::crc32`] picks by itself from now on.
    crc::set_crc32_impl(Crc32Impl::Simd);
    g.finish();
}

struct Fixed(Vec<u8>);

impl ChannelBackend for Fixed {
    fn ops(&self) -> Ops {
        Ops::READ | Ops::SIZE
    }
    fn size(&mut self) -> Result<u32, ChannelError> {
        Ok(self.0.len() as u32)
    }
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<usize, ChannelError> {
        let s = offset as usize;
        let src = self.0.get(s..s + buf.len()).ok_or(ChannelError::Failed)?;
        buf.copy_from_slice(src);
        Ok(buf.len())
    }
}

/// Moves packets both ways until the host completes, through one reused
/// buffer (the endpoints' `poll_transmit_into`, as a driver does).
fn pump(
    host: &mut HostEndpoint,
    cam: &mut DeviceEndpoint,
    now: Instant,
    buf: &mut Vec<u8>,
) -> Completion {
    loop {
        if let Some(c) = host.poll_completion() {
            return c;
        }
        buf.clear();
        while host.poll_transmit_into(buf).is_some() {
            cam.handle_input(now, buf);
            buf.clear();
        }
        while cam.poll_transmit_into(now, buf).is_some() {
            host.handle_input(now, buf);
            buf.clear();
        }
    }
}

fn round_trip(c: &mut Criterion) {
    let mut host = HostEndpoint::new(HostConfig::default());
    let mut cam = DeviceEndpoint::new(DeviceConfig::default());
    let id = cam
        .register("bulk", Box::new(Fixed(vec![7u8; 1 << 20])))
        .expect("register");
    let now = Instant::ZERO;
    let mut buf = Vec::new();
    host.connect(now);
    assert!(matches!(
        pump(&mut host, &mut cam, now, &mut buf),
        Completion::Connected(Ok(_))
    ));
    let mut g = c.benchmark_group("round_trip");
    let size = Command::new(Opcode::CHANNEL_SIZE, id);
    g.bench_function("channel_size", |b| {
        b.iter(|| {
            host.request(now, &size).expect("idle");
            black_box(pump(&mut host, &mut cam, now, &mut buf))
        })
    });
    let read = Command::read(id, 0, 1 << 20);
    g.throughput(Throughput::Bytes(1 << 20));
    g.bench_function("read_1MiB_acked", |b| {
        b.iter(|| {
            host.request(now, &read).expect("idle");
            black_box(pump(&mut host, &mut cam, now, &mut buf))
        })
    });
    g.finish();
}

fn framing_wall(c: &mut Criterion) {
    framing(c, "framer");
}

fn framing_cpu(c: &mut Criterion<ThreadCpuTime>) {
    framing(c, "framer_cpu");
}

/// The benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) instead of
/// wall time: on a shared machine, time spent descheduled while other jobs
/// run does not count. Values are nanoseconds.
struct ThreadCpuTime;

fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID is not available");
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Formats CPU nanoseconds as times and byte throughputs per CPU second.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (div, unit) = match typical {
            t if t < 1e3 => (1.0, "ns cpu"),
            t if t < 1e6 => (1e3, "us cpu"),
            t if t < 1e9 => (1e6, "ms cpu"),
            _ => (1e9, "s cpu"),
        };
        values.iter_mut().for_each(|v| *v /= div);
        unit
    }

    fn scale_throughputs(&self, typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let (per, what) = match *t {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => (n as f64, "B"),
            Throughput::Elements(n) => (n as f64, "elem"),
        };
        // values are ns per iteration: per-second rate = per * 1e9 / ns.
        let rate = per * 1e9 / typical;
        let (div, unit) = match (what, rate) {
            ("B", r) if r >= 1e9 => (1e9, "GB/cpu-s"),
            ("B", r) if r >= 1e6 => (1e6, "MB/cpu-s"),
            ("B", _) => (1.0, "B/cpu-s"),
            (_, _) => (1.0, "elem/cpu-s"),
        };
        values.iter_mut().for_each(|v| *v = per * 1e9 / *v / div);
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

criterion_group!(benches, framing_wall, round_trip);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = framing_cpu
}
criterion_main!(benches, cpu);
