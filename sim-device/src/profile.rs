//! The built-in profile channel (id 4, flags READ|LOCK; profiling builds
//! only, section 9).
//!
//! It serves synthetic per-function records ([`ProfileRecord`], with the
//! board's PMU event count) for a plausible call tree of a camera script:
//! main loop, sensor snapshot, JPEG compression, USB transmit, GC... Every
//! value is a pure function of the time since the last RESET (the `now`
//! passed to [`poll`](ChannelBackend::poll) /
//! [`poll_event`](ChannelBackend::poll_event)), the MODE and the selected
//! PMU events, so call counts grow steadily and a run replays exactly.
//!
//! Data: `record_count` records of `record_size` bytes; shape =
//! `(record_count, record_size)`. Only functions called at least once are
//! listed. LOCK snapshots the records so a multi-packet read is consistent;
//! UNLOCK releases the snapshot. ioctls: [`PROFILE_MODE`] (u32: 0
//! inclusive, 1 exclusive; any other value is accepted, as by the
//! firmware, and profiles inclusively), [`PROFILE_SET_EVENT`] (u32 counter, u32 event id; a counter
//! the board does not have is ignored and still answered with success, as
//! on the firmware), [`PROFILE_RESET`], [`PROFILE_STATS`] (writes a summary
//! table to the cam's stdout when one is attached).

use omv_proto::backend::{ChannelBackend, ChannelError, ChannelEventOut, Ops};
use omv_proto::ioctl::{PROFILE_MODE, PROFILE_RESET, PROFILE_SET_EVENT, PROFILE_STATS};
use omv_proto::profile::{record_size, ProfileRecord};
use omv_proto::shape::Shape;
use omv_proto::{ChannelFlags, Instant};

use crate::args::{copy_exact, no_args, size_u32, u32_args};
use crate::output::SharedOutput;

/// Settings of the profile channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProfileConfig {
    /// PMU event counters of the board (0 without a PMU).
    pub event_count: u8,
    /// CPU clock in MHz (cycles per tick; ticks are microseconds).
    pub cpu_mhz: u32,
    /// Where the synthetic functions live in the address space.
    pub code_base: u32,
}

/// Chainable setters, one per field (the struct is `#[non_exhaustive]`:
/// build it from [`Default::default`] and these, not with a struct literal).
impl ProfileConfig {
    /// Sets [`event_count`](Self::event_count).
    #[must_use]
    pub fn event_count(mut self, event_count: u8) -> Self {
        self.event_count = event_count;
        self
    }
    /// Sets [`cpu_mhz`](Self::cpu_mhz).
    #[must_use]
    pub fn cpu_mhz(mut self, cpu_mhz: u32) -> Self {
        self.cpu_mhz = cpu_mhz;
        self
    }
    /// Sets [`code_base`](Self::code_base).
    #[must_use]
    pub fn code_base(mut self, code_base: u32) -> Self {
        self.code_base = code_base;
        self
    }
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig {
            event_count: 0,
            cpu_mhz: 480,
            code_base: 0x0800_0000,
        }
    }
}

/// One synthetic function of the call tree.
struct Func {
    name: &'static str,
    /// Index of the caller in [`FUNCS`], if any.
    parent: Option<usize>,
    /// Calls per second.
    rate_hz: u32,
    /// Mean inclusive time of a call, in ticks (µs).
    mean_ticks: u32,
    /// Share of the inclusive time spent in the function itself, in %.
    self_pct: u32,
}

const FUNCS: [Func; 12] = [
    Func {
        name: "main_loop",
        parent: None,
        rate_hz: 30,
        mean_ticks: 33_000,
        self_pct: 5,
    },
    Func {
        name: "sensor_snapshot",
        parent: Some(0),
        rate_hz: 30,
        mean_ticks: 20_000,
        self_pct: 30,
    },
    Func {
        name: "dma_wait",
        parent: Some(1),
        rate_hz: 30,
        mean_ticks: 12_000,
        self_pct: 100,
    },
    Func {
        name: "imlib_draw_string",
        parent: Some(0),
        rate_hz: 30,
        mean_ticks: 800,
        self_pct: 100,
    },
    Func {
        name: "jpeg_compress",
        parent: Some(0),
        rate_hz: 30,
        mean_ticks: 6_000,
        self_pct: 60,
    },
    Func {
        name: "jpeg_huffman",
        parent: Some(4),
        rate_hz: 1_800,
        mean_ticks: 40,
        self_pct: 100,
    },
    Func {
        name: "usb_cdc_tx",
        parent: Some(0),
        rate_hz: 120,
        mean_ticks: 150,
        self_pct: 100,
    },
    Func {
        name: "gc_collect",
        parent: Some(0),
        rate_hz: 2,
        mean_ticks: 900,
        self_pct: 100,
    },
    Func {
        name: "mp_call_function",
        parent: Some(0),
        rate_hz: 300,
        mean_ticks: 60,
        self_pct: 80,
    },
    Func {
        name: "memcpy",
        parent: Some(1),
        rate_hz: 3_000,
        mean_ticks: 3,
        self_pct: 100,
    },
    Func {
        name: "fb_alloc",
        parent: Some(1),
        rate_hz: 60,
        mean_ticks: 5,
        self_pct: 100,
    },
    Func {
        name: "protocol_task",
        parent: None,
        rate_hz: 1_000,
        mean_ticks: 12,
        self_pct: 100,
    },
];

/// The profile channel. See the module documentation.
pub struct ProfileChannel {
    cfg: ProfileConfig,
    event_ids: Vec<u32>,
    exclusive: bool,
    epoch: Instant,
    last_now: Instant,
    locked: bool,
    snapshot: Vec<u8>,
    output: Option<SharedOutput>,
}

impl std::fmt::Debug for ProfileChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileChannel")
            .field("cfg", &self.cfg)
            .field("event_ids", &self.event_ids)
            .field("exclusive", &self.exclusive)
            .field("locked", &self.locked)
            .finish()
    }
}

/// A small deterministic mix of two values (for event ratios).
fn mix(a: u32, b: u32) -> u32 {
    let mut x = u64::from(a) << 32 | u64::from(b);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x as u32
}

impl ProfileChannel {
    /// A profile channel; counters start on event ids 0, 1, 2...
    pub fn new(cfg: ProfileConfig) -> Self {
        ProfileChannel {
            event_ids: (0..u32::from(cfg.event_count)).collect(),
            cfg,
            exclusive: false,
            epoch: Instant::ZERO,
            last_now: Instant::ZERO,
            locked: false,
            snapshot: Vec::new(),
            output: None,
        }
    }

    /// Attaches the cam's stdout, where STATS prints its table.
    pub fn with_output(mut self, output: SharedOutput) -> Self {
        self.output = Some(output);
        self
    }

    /// Bytes of one record.
    pub fn record_size(&self) -> usize {
        record_size(self.cfg.event_count)
    }

    /// True in exclusive mode.
    #[cfg(test)]
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    /// The PMU event id each counter counts.
    #[cfg(test)]
    pub fn event_ids(&self) -> &[u32] {
        &self.event_ids
    }

    fn address(&self, i: usize) -> u32 {
        let off = 0x4000u32.wrapping_add((i as u32).wrapping_mul(0x2e8));
        self.cfg.code_base.wrapping_add(off)
    }

    /// The records as of `now` (functions not yet called are left out).
    pub fn records_at(&self, now: Instant) -> Vec<ProfileRecord> {
        let elapsed_us = u128::from(now.saturating_duration_since(self.epoch).as_micros() as u64);
        let mut out = Vec::new();
        for (i, f) in FUNCS.iter().enumerate() {
            let calls = elapsed_us * u128::from(f.rate_hz) / 1_000_000;
            let call_count = u32::try_from(calls).unwrap_or(u32::MAX);
            if call_count == 0 {
                continue;
            }
            let mean = if self.exclusive {
                (u64::from(f.mean_ticks) * u64::from(f.self_pct) / 100).max(1)
            } else {
                u64::from(f.mean_ticks)
            };
            // The spread of observed call times widens as calls accumulate.
            let log2 = u64::from(64 - u64::from(call_count).leading_zeros());
            let min_ticks = mean - mean / 4 * log2.min(16) / 16;
            let max_ticks = mean + mean / 2 * log2.min(16) / 16;
            // Slightly skewed towards short calls, as real timings are, but
            // never outside what min and max allow: the mean of the calls
            // (total / count) lies in [min_ticks, max_ticks].
            let calls = u64::from(call_count);
            let total_ticks = (calls * mean * 31 / 32).clamp(calls * min_ticks, calls * max_ticks);
            let total_cycles = total_ticks.saturating_mul(u64::from(self.cfg.cpu_mhz));
            let events = self
                .event_ids
                .iter()
                .map(|&id| {
                    // A per-(event, function) rate of up to 1 event / 4 cycles.
                    let per_mille = u64::from(mix(id, i as u32) % 250 + 1);
                    total_cycles / 1000 * per_mille
                })
                .collect();
            out.push(ProfileRecord {
                address: self.address(i),
                caller: f.parent.map_or(0, |p| self.address(p)),
                call_count,
                min_ticks: u32::try_from(min_ticks).unwrap_or(u32::MAX),
                max_ticks: u32::try_from(max_ticks).unwrap_or(u32::MAX),
                total_ticks,
                total_cycles,
                events,
            });
        }
        out
    }

    fn encode_at(&self, now: Instant) -> Vec<u8> {
        let recs = self.records_at(now);
        let mut out = Vec::with_capacity(recs.len() * self.record_size());
        for r in &recs {
            r.encode_into(&mut out);
        }
        out
    }

    /// The data the host would read now (the snapshot while locked).
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        if self.locked {
            std::borrow::Cow::Borrowed(&self.snapshot)
        } else {
            std::borrow::Cow::Owned(self.encode_at(self.last_now))
        }
    }

    fn stats_text(&self) -> String {
        let mut s = format!(
            "profile ({} mode, {} PMU counters)\r\n{:<20} {:>10} {:>10} {:>12}\r\n",
            if self.exclusive {
                "exclusive"
            } else {
                "inclusive"
            },
            self.cfg.event_count,
            "function",
            "calls",
            "avg ticks",
            "total ticks"
        );
        for r in self.records_at(self.last_now) {
            let name = FUNCS
                .iter()
                .enumerate()
                .find(|(i, _)| self.address(*i) == r.address)
                .map_or("?", |(_, f)| f.name);
            let avg = r.total_ticks / u64::from(r.call_count.max(1));
            s.push_str(&format!(
                "{name:<20} {:>10} {avg:>10} {:>12}\r\n",
                r.call_count, r.total_ticks
            ));
        }
        s
    }
}

impl ChannelBackend for ProfileChannel {
    fn ops(&self) -> Ops {
        Ops::READ | Ops::LOCK | Ops::SIZE | Ops::SHAPE | Ops::POLL | Ops::IOCTL
    }

    fn flags(&self) -> Option<ChannelFlags> {
        Some(ChannelFlags::READ | ChannelFlags::LOCK)
    }

    fn poll(&mut self, now: Instant) -> bool {
        self.last_now = self.last_now.max(now);
        self.locked || !self.records_at(self.last_now).is_empty()
    }

    fn lock(&mut self) -> Result<(), ChannelError> {
        if self.locked {
            return Err(ChannelError::Busy);
        }
        let data = self.encode_at(self.last_now);
        if data.is_empty() {
            return Err(ChannelError::Busy);
        }
        self.snapshot = data;
        self.locked = true;
        Ok(())
    }

    fn unlock(&mut self) -> Result<(), ChannelError> {
        if !self.locked {
            return Err(ChannelError::Busy);
        }
        self.locked = false;
        self.snapshot = Vec::new();
        Ok(())
    }

    fn size(&mut self) -> Result<u32, ChannelError> {
        Ok(size_u32(self.data().len()))
    }

    fn shape(&mut self) -> Result<Shape, ChannelError> {
        let rs = self.record_size();
        let count = self.data().len() / rs;
        Shape::new(&[size_u32(count), size_u32(rs)]).ok_or(ChannelError::Failed)
    }

    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<usize, ChannelError> {
        copy_exact(&self.data(), offset, buf)
    }

    fn ioctl(&mut self, request: u32, args: &[u8]) -> Result<(), ChannelError> {
        match request {
            PROFILE_MODE => {
                let [mode] = u32_args::<1>(args)?;
                // 0 inclusive, 1 exclusive (section 9), which defines no
                // other value. Like the firmware, the sim ACKs any value and
                // profiles exclusively only for exactly 1.
                self.exclusive = mode == 1;
                Ok(())
            }
            PROFILE_SET_EVENT => {
                let [counter, event] = u32_args::<2>(args)?;
                // The firmware answers success for every counter and only
                // programs the ones the PMU has; the stock host's
                // profiler_reset() always sets counters 0..7, whatever the
                // board.
                match usize::try_from(counter)
                    .ok()
                    .and_then(|c| self.event_ids.get_mut(c))
                {
                    Some(slot) => *slot = event,
                    None => log::debug!(
                        "profile: SET_EVENT counter {counter} (event {event:#06x}) ignored: \
                         the board has {} PMU counters",
                        self.cfg.event_count
                    ),
                }
                Ok(())
            }
            PROFILE_RESET => {
                no_args(args)?;
                self.epoch = self.last_now;
                Ok(())
            }
            PROFILE_STATS => {
                no_args(args)?;
                let text = self.stats_text();
                log::info!("{}", text.trim_end());
                if let Some(out) = &self.output {
                    out.write_str(&text);
                }
                Ok(())
            }
            _ => Err(ChannelError::Invalid),
        }
    }

    fn reset(&mut self) {
        self.locked = false;
        self.snapshot = Vec::new();
    }

    fn poll_event(&mut self, now: Instant) -> Option<ChannelEventOut> {
        self.last_now = self.last_now.max(now);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omv_proto::profile::decode_records;

    fn ms(v: u64) -> Instant {
        Instant::from_millis(v)
    }

    fn chan(events: u8) -> ProfileChannel {
        ProfileChannel::new(ProfileConfig {
            event_count: events,
            ..ProfileConfig::default()
        })
    }

    fn read_all(p: &mut ProfileChannel) -> Vec<u8> {
        let n = p.size().unwrap() as usize;
        let mut b = vec![0u8; n];
        if n > 0 {
            assert_eq!(p.read(0, &mut b), Ok(n));
        }
        b
    }

    #[test]
    fn flags_shape_and_records_decode() {
        let mut p = chan(8);
        assert_eq!(p.flags(), Some(ChannelFlags::READ | ChannelFlags::LOCK));
        assert_eq!(p.record_size(), 40 + 64);
        assert!(!p.poll(ms(0)));
        assert_eq!(p.size(), Ok(0));
        assert_eq!(p.lock(), Err(ChannelError::Busy));
        assert!(p.poll(ms(1000)));
        let shape = p.shape().unwrap();
        let data = read_all(&mut p);
        assert_eq!(shape.dims()[1] as usize, p.record_size());
        assert_eq!(shape.dims()[0] as usize * p.record_size(), data.len());
        let recs = decode_records(&data, p.record_size(), 8).unwrap();
        assert_eq!(recs.len(), FUNCS.len());
        let main = &recs[0];
        assert_eq!(main.call_count, 30);
        assert_eq!(main.caller, 0);
        assert_eq!(recs[1].caller, main.address);
        assert!(recs
            .iter()
            .all(|r| r.min_ticks <= r.max_ticks && r.events.len() == 8));
        assert!(recs.iter().all(|r| r.total_cycles == r.total_ticks * 480));
    }

    #[test]
    fn counts_grow_and_reset() {
        let mut p = chan(4);
        p.poll_event(ms(100));
        let a = p.records_at(ms(100));
        // gc_collect (2 Hz) is not called yet at 100 ms.
        assert!(a.len() < FUNCS.len());
        p.poll_event(ms(10_000));
        let b = p.records_at(ms(10_000));
        assert_eq!(b.len(), FUNCS.len());
        assert!(b[0].call_count > a[0].call_count);
        assert!(b[0].total_ticks > a[0].total_ticks);
        p.ioctl(PROFILE_RESET, &[]).unwrap();
        assert_eq!(p.size(), Ok(0));
        p.poll_event(ms(11_000));
        assert_eq!(p.records_at(ms(11_000))[0].call_count, 30);
    }

    #[test]
    fn lock_snapshots_until_unlock() {
        let mut p = chan(0);
        p.poll(ms(1000));
        p.lock().unwrap();
        assert_eq!(p.lock(), Err(ChannelError::Busy));
        let before = read_all(&mut p);
        p.poll(ms(5000));
        assert_eq!(read_all(&mut p), before);
        p.unlock().unwrap();
        assert_eq!(p.unlock(), Err(ChannelError::Busy));
        assert_ne!(read_all(&mut p), before);
        let mut b = [0u8; 8];
        let size = p.size().unwrap();
        assert_eq!(p.read(size, &mut b), Err(ChannelError::Failed));
        assert_eq!(p.read(u32::MAX, &mut b), Err(ChannelError::Failed));
    }

    #[test]
    fn ioctls() {
        let out = SharedOutput::new(2048);
        let mut p = chan(4).with_output(out.clone());
        p.poll(ms(2000));
        let incl = p.records_at(ms(2000));
        p.ioctl(PROFILE_MODE, &1u32.to_le_bytes()).unwrap();
        assert!(p.is_exclusive());
        let excl = p.records_at(ms(2000));
        assert!(excl[0].total_ticks < incl[0].total_ticks);
        p.ioctl(PROFILE_MODE, &0u32.to_le_bytes()).unwrap();
        assert!(!p.is_exclusive());
        assert_eq!(p.records_at(ms(2000)), incl);
        // Any other mode is accepted and, as on the firmware, inclusive.
        for mode in [2u32, 0x100, u32::MAX] {
            p.ioctl(PROFILE_MODE, &1u32.to_le_bytes()).unwrap();
            p.ioctl(PROFILE_MODE, &mode.to_le_bytes()).unwrap();
            assert!(!p.is_exclusive(), "mode {mode}");
            assert_eq!(p.records_at(ms(2000)), incl, "mode {mode}");
        }
        p.ioctl(PROFILE_MODE, &1u32.to_le_bytes()).unwrap();
        assert_eq!(p.ioctl(PROFILE_MODE, &[0; 3]), Err(ChannelError::Invalid));
        assert_eq!(p.ioctl(PROFILE_MODE, &[0; 8]), Err(ChannelError::Invalid));
        assert!(p.is_exclusive(), "a malformed MODE changed the mode");

        let set = |c: u32, e: u32| [c.to_le_bytes(), e.to_le_bytes()].concat();
        let ev_before = p.records_at(ms(2000))[0].events[3];
        p.ioctl(PROFILE_SET_EVENT, &set(3, 0x11)).unwrap();
        assert_eq!(p.event_ids(), &[0, 1, 2, 0x11]);
        assert_ne!(p.records_at(ms(2000))[0].events[3], ev_before);
        // Counters the board lacks: success, and nothing changes.
        let recs = p.records_at(ms(2000));
        for counter in [4, 7, 8, 255, u32::MAX] {
            assert_eq!(p.ioctl(PROFILE_SET_EVENT, &set(counter, 1)), Ok(()));
        }
        assert_eq!(p.event_ids(), &[0, 1, 2, 0x11]);
        assert_eq!(p.records_at(ms(2000)), recs);
        assert_eq!(
            p.ioctl(PROFILE_SET_EVENT, &[0; 4]),
            Err(ChannelError::Invalid)
        );
        assert_eq!(
            p.ioctl(PROFILE_SET_EVENT, &[0; 12]),
            Err(ChannelError::Invalid)
        );
        assert_eq!(p.ioctl(PROFILE_RESET, &[0]), Err(ChannelError::Invalid));
        assert_eq!(p.ioctl(PROFILE_STATS, &[0]), Err(ChannelError::Invalid));
        assert_eq!(p.ioctl(4, &[]), Err(ChannelError::Invalid));

        p.ioctl(PROFILE_STATS, &[]).unwrap();
        let text = String::from_utf8(out.take_all()).unwrap();
        assert!(text.contains("main_loop"), "{text}");
        assert!(text.contains("exclusive"), "{text}");

        let mut none = chan(0);
        none.ioctl(PROFILE_SET_EVENT, &set(0, 1)).unwrap();
        assert!(none.event_ids().is_empty());
    }

    /// What the stock host's `profiler_reset()` sends: RESET, then counters
    /// 0..7 set to its default events, whatever the board. Every board
    /// answers success and keeps exactly its own counters.
    #[test]
    fn stock_profiler_reset_on_every_counter_count() {
        let stock = [
            0x0039, 0x0023, 0x0024, 0x0001, 0x0003, 0xC102, 0x02CC, 0xC303,
        ];
        for events in [0u8, 4, 8] {
            let mut p = chan(events);
            p.poll(ms(1000));
            p.ioctl(PROFILE_RESET, &[]).unwrap();
            for (counter, &event) in stock.iter().enumerate() {
                let args = [(counter as u32).to_le_bytes(), u32::to_le_bytes(event)].concat();
                assert_eq!(
                    p.ioctl(PROFILE_SET_EVENT, &args),
                    Ok(()),
                    "{events} counters"
                );
            }
            assert_eq!(p.event_ids(), &stock[..usize::from(events)]);
            p.poll(ms(2000));
            let data = read_all(&mut p);
            let recs = decode_records(&data, p.record_size(), events).unwrap();
            assert_eq!(recs.len(), FUNCS.len());
            assert!(recs.iter().all(|r| r.events.len() == usize::from(events)));
        }
    }

    /// The mean call time (total / count) lies between min and max, in
    /// both modes, for short and long runs, on every function (a host that
    /// checks min <= mean <= max must not see nonsense).
    #[test]
    fn mean_call_time_lies_between_min_and_max() {
        for events in [0u8, 8] {
            let mut p = chan(events);
            for mode in [0u32, 1] {
                p.ioctl(PROFILE_MODE, &mode.to_le_bytes()).unwrap();
                for t in [1, 40, 600, 1000, 3_000, 60_000, 86_400_000] {
                    for r in p.records_at(ms(t)) {
                        let n = u64::from(r.call_count);
                        assert!(
                            n * u64::from(r.min_ticks) <= r.total_ticks
                                && r.total_ticks <= n * u64::from(r.max_ticks),
                            "mode {mode} at {t} ms: {r:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn far_future_does_not_overflow() {
        let p = chan(8);
        let recs = p.records_at(Instant::from_micros(u64::MAX));
        assert!(recs.iter().all(|r| r.call_count == u32::MAX));
    }
}
