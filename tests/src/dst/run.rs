//! Scenarios, running one seed, and running many.
//!
//! A run is a few phases, each a *fault phase* (operations under the
//! seed's faults) followed by a *quiet phase* (faults off: the link must
//! recover after at most one failure, and then every operation succeeds).

use std::panic::{catch_unwind, AssertUnwindSafe};

use omv_proto::caps::CapFlags;
use omv_proto::device::DeviceConfig;
use omv_proto::host::HostConfig;
use omv_proto::memory::{MemoryEntry, MemoryKind, MemoryStats};
use omv_proto::sysinfo::SysInfo;
use omv_proto::{ChannelId, Duration};

use super::cam::{CamSetup, UserSpec};
use super::dice::Dice;
use super::faults::FaultProfile;
use super::model::BufModel;
use super::report::{RunStats, Totals};
use super::wire::Timing;
use super::workload::{Between, Op, Wanted, Workload};
use super::world::{CamAction, LinkSetup, Violation, World};

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Log lines to keep for a failure report (0: none; costs time).
    pub trace_lines: usize,
    /// Also log every chunk the link delivers.
    pub trace_deliveries: bool,
}

/// One phase of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phase {
    /// Operations under faults.
    pub fault_ops: usize,
    /// Operations without faults.
    pub quiet_ops: usize,
}

/// Everything drawn from the seed before the run starts.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Host configuration (initial caps, timeout, SYNC attempts).
    pub host: HostConfig,
    /// The cam.
    pub cam: CamSetup,
    /// Link timing.
    pub link: LinkSetup,
    /// Faults.
    pub faults: FaultProfile,
    /// Phases.
    pub phases: Vec<Phase>,
    /// Attempts per operation in fault phases.
    pub attempts: u32,
}

impl Scenario {
    /// Draws a scenario.
    pub fn generate(d: &mut Dice) -> Scenario {
        let byte_ns = d.pick(&[0u64, 100, 1000, 10_850]);
        let latency_us = d.range(0, 2000);
        // Longest packet on the wire, plus latency.
        let packet_us = 4200 * byte_ns / 1000 + latency_us;
        let timeout_ms = d
            .pick(&[50u64, 100, 200, 500, 1000])
            .max((4 * packet_us + 5000).div_ceil(1000));
        let timeout = Duration::from_millis(timeout_ms);
        let want = Wanted::random(d);
        let host = HostConfig {
            crc: want.crc,
            seq: want.seq,
            ack: want.ack,
            events: want.events,
            max_payload: want.max_payload,
            timeout,
            max_retry: d.range(1, 3) as u8,
        };
        let rtx_floor = (3 * packet_us + 2000).div_ceil(1000).max(20);
        let config = DeviceConfig {
            max_payload: if d.chance(0.7) {
                omv_proto::FIRMWARE_DEFAULT_PAYLOAD
            } else {
                d.range(50, 4082) as u16
            },
            supported: if d.chance(0.8) {
                CapFlags::KNOWN
            } else {
                CapFlags(d.below(16) as u32)
            },
            rtx_timeout: Duration::from_millis(d.range(rtx_floor, rtx_floor.max(500))),
            rtx_retries: d.range(0, 3) as u8,
            read_piece: match d.weighted(&[50, 25, 25]) {
                0 => None,
                1 => Some(512),
                _ => Some(d.range(64, 700) as u16),
            },
            event_queue: if d.chance(0.9) {
                64
            } else {
                d.range_usize(1, 8)
            },
            memory: d.coin().then(|| MemoryStats {
                entries: (0..d.range(0, 3))
                    .map(|i| MemoryEntry {
                        kind: MemoryKind(i as u8 % 2),
                        flags: d.below(4) as u16,
                        total: 1 << 20,
                        used: d.below(1 << 20) as u32,
                        free: d.below(1 << 20) as u32,
                        persist: 0,
                        peak: d.below(1 << 20) as u32,
                    })
                    .collect(),
            }),
            sysinfo: SysInfo {
                cpu_id: d.u64() as u32,
                ..SysInfo::default()
            },
            ..DeviceConfig::default()
        };
        let users = (0..d.range(1, 4))
            .map(|i| UserSpec {
                name: format!("buf{i}"),
                size: match d.weighted(&[5, 25, 40, 25, 5]) {
                    0 => 0,
                    1 => d.range_usize(1, 64),
                    2 => d.range_usize(65, 4096),
                    3 => d.range_usize(4097, 20_000),
                    _ => d.range_usize(20_001, 65_536),
                },
                lockable: d.coin(),
                salt: d.u64(),
            })
            .collect();
        let cam = CamSetup {
            config,
            stdout_capacity: d.pick(&[512, 1024, 2048]),
            users,
        };
        let mut period = || Duration::from_micros(d.pick(&[0u64, 0, 125, 1000]));
        let (h2c_period, c2h_period) = (period(), period());
        let link = LinkSetup {
            h2c: Timing {
                latency: Duration::from_micros(latency_us),
                byte_ns,
                read_period: h2c_period,
            },
            c2h: Timing {
                latency: Duration::from_micros(latency_us),
                byte_ns,
                read_period: c2h_period,
            },
            split: d.pick(&[0.0, 0.1, 0.5, 0.9]),
        };
        let faults = FaultProfile::random(d, timeout);
        let phases = (0..d.range(2, 4))
            .map(|_| Phase {
                fault_ops: d.range_usize(6, 25),
                quiet_ops: d.range_usize(3, 6),
            })
            .collect();
        Scenario {
            host,
            cam,
            link,
            faults,
            phases,
            attempts: d.range(1, 3) as u32,
        }
    }
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct SeedOutcome {
    /// The seed (`None` for a run from fuzz bytes).
    pub seed: Option<u64>,
    /// Counters.
    pub stats: RunStats,
    /// Hash of the whole trace: equal for two runs of one seed.
    pub trace_hash: u64,
    /// The invariant that broke, if any.
    pub violation: Option<Violation>,
    /// The last log lines (when enabled).
    pub log: Vec<String>,
    /// Fuzz input bytes the run decoded before its constant-seed fallback
    /// took over (0 for a seeded run).
    pub input_used: usize,
}

impl SeedOutcome {
    /// A one-line command that replays this seed with a log.
    pub fn replay_command(&self) -> String {
        match self.seed {
            Some(s) => format!(
                "cargo run --release -p omv-tests --bin dst -- --seed {s} --trace   (or: DST_SEED={s} cargo test -p omv-tests --test dst)"
            ),
            None => "replay the fuzz input with the fuzz target".into(),
        }
    }

    /// A multi-line failure report (empty when the run passed).
    pub fn report(&self) -> String {
        let Some(v) = &self.violation else {
            return String::new();
        };
        let mut s = format!(
            "DST seed {} FAILED: {v}\nreplay: {}\n",
            self.seed
                .map_or_else(|| "(bytes)".into(), |s| s.to_string()),
            self.replay_command()
        );
        for l in &self.log {
            s.push_str("  ");
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

/// Runs one seed.
pub fn run_seed(seed: u64, opts: &Options) -> SeedOutcome {
    run_dice(Dice::from_seed(seed), Some(seed), opts)
}

/// Runs the simulation driven by arbitrary bytes (the `dst` fuzz target):
/// the bytes are decoded draw by draw, in the order the run makes its
/// decisions (scenario, then operations, activity and per-packet faults),
/// then a constant-seed generator takes over (see [`Dice::from_bytes`]).
/// A run takes as many operations as a seeded one (at most 4 phases of 31).
pub fn run_bytes(data: &[u8], opts: &Options) -> SeedOutcome {
    run_dice(Dice::from_bytes(data), None, opts)
}

fn run_dice(mut d: Dice, seed: Option<u64>, opts: &Options) -> SeedOutcome {
    let scenario = Scenario::generate(&mut d);
    let fault_dice = d.fork(1);
    let workload_dice = d.fork(2);
    let mut world = World::new(
        scenario.host.clone(),
        scenario.cam.clone(),
        scenario.link,
        scenario.faults,
        fault_dice,
        opts.trace_lines,
    );
    world.app.attempts = scenario.attempts;
    world.trace.deliveries = opts.trace_deliveries;
    world.trace.log(world.now, || {
        let c = &scenario.cam.config;
        format!(
            "scenario: host {:?}; cam max_payload {} supported {:?} rtx {:?}x{} read_piece {:?} event_queue {}; link {:?}; {} phases, {} attempts",
            scenario.host,
            c.max_payload,
            c.supported,
            c.rtx_timeout,
            c.rtx_retries,
            c.read_piece,
            c.event_queue,
            scenario.link,
            scenario.phases.len(),
            scenario.attempts
        )
    });
    let mut wl = Workload::new(workload_dice);
    let r = catch_unwind(AssertUnwindSafe(|| world.drive(&mut wl, &scenario)));
    let violation = match r {
        Ok(Ok(())) => None,
        Ok(Err(v)) => Some(v),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Some(world.violation(format!("panic: {msg}")))
        }
    };
    world.stats.faults = world.inj.counts;
    world.stats.virtual_time = Duration::from_micros(world.now.as_micros());
    SeedOutcome {
        seed,
        stats: world.stats.clone(),
        trace_hash: world.trace.hash(),
        violation,
        log: world.trace.lines(),
        input_used: wl.dice().consumed(),
    }
}

/// Runs seeds `start..start + count`, calling `progress` after each.
pub fn run_many(
    start: u64,
    count: u64,
    opts: &Options,
    mut progress: impl FnMut(&SeedOutcome),
) -> Totals {
    let t0 = std::time::Instant::now();
    let mut totals = Totals::default();
    for seed in start..start.saturating_add(count) {
        let o = run_seed(seed, opts);
        totals.seeds += 1;
        totals.add(&o.stats);
        if let Some(v) = &o.violation {
            totals.failed_seeds.push((seed, v.to_string()));
        }
        progress(&o);
    }
    totals.wall = t0.elapsed();
    totals
}

impl World {
    /// Runs the scenario's phases.
    fn drive(&mut self, wl: &mut Workload, sc: &Scenario) -> Result<(), Violation> {
        for phase in &sc.phases {
            self.set_faults(true);
            self.app.quiet = false;
            for _ in 0..phase.fault_ops {
                self.step(wl)?;
            }
            self.set_faults(false);
            // "Faults stop": let what is still in flight arrive.
            let t = self.host.config().timeout;
            self.settle(t.saturating_mul(10))?;
            self.app.quiet = true;
            self.app.recovery_left = 1;
            for _ in 0..phase.quiet_ops {
                self.step(wl)?;
            }
            self.check_all_buffers()?;
        }
        Ok(())
    }

    fn step(&mut self, wl: &mut Workload) -> Result<(), Violation> {
        for b in wl.between(&self.model) {
            self.between(b)?;
        }
        self.schedule_faults(wl);
        let max_payload = usize::from(self.host.caps().max_payload);
        let op = wl.op(&self.model, max_payload);
        self.op_label = format!("op #{} {}", self.stats.ops, op.describe());
        self.trace
            .log(self.now, || format!("=== {}", op.describe()));
        let before = self.disruptions;
        self.run_op(&op)?;
        self.after_op(&op, before)
    }

    fn schedule_faults(&mut self, wl: &mut Workload) {
        let t = self.host.config().timeout.as_micros() as u64;
        let p = self.inj.profile;
        if self.inj.roll(p.stall) {
            let at = self.inj.dice().below(2 * t);
            let max = p.stall_max.as_micros() as u64;
            let d = self.inj.dice().range(1, max.max(1));
            self.schedule(
                Duration::from_micros(at),
                CamAction::Stall(Duration::from_micros(d)),
            );
        }
        if self.inj.roll(p.protocol_reset) {
            let at = self.inj.dice().below(2 * t);
            self.schedule(Duration::from_micros(at), CamAction::ProtocolReset);
        }
        if self.inj.roll(p.reboot) {
            let at = self.inj.dice().below(2 * t);
            let keep_user = self.inj.dice().coin();
            self.schedule(Duration::from_micros(at), CamAction::Reboot { keep_user });
        }
        if wl.dice().chance(0.1) {
            let at = wl.dice().below(t);
            let evs = wl.events();
            self.schedule(Duration::from_micros(at), CamAction::Events(evs));
        }
    }

    fn events_on(&self) -> bool {
        self.host.is_connected()
            && !self.app.needs_resync
            && self.host.caps().flags.events()
            && self.cam.ep.caps().flags.events()
    }

    fn between(&mut self, b: Between) -> Result<(), Violation> {
        match b {
            Between::Think(d) => self.idle(d)?,
            Between::Print(text) => {
                self.stats.cam_action("print");
                self.trace.mix(&[0xB0, text.len() as u64]);
                self.cam.print(&text);
                self.model.stdout.produce(&text);
            }
            Between::Register(spec) => {
                let Ok(id) = self.cam.register_user(spec.clone()) else {
                    return Ok(());
                };
                self.stats.cam_action("register");
                self.trace.mix(&[0xB1, u64::from(id.0)]);
                self.trace.log(self.now, || {
                    format!("cam registers {} as {id:?}", spec.name)
                });
                self.model.users.insert(id.0, BufModel::new(spec));
                if self.app.quiet && self.events_on() {
                    // The event may queue behind a packet the cam is still
                    // retransmitting: wait for its whole retransmission chain.
                    let c = &self.setup.config;
                    let chain = c.rtx_timeout.saturating_mul((2u32 << c.rtx_retries) - 1);
                    let wait = chain + self.host.config().timeout.saturating_mul(10);
                    let before = self.disruptions;
                    let dropped = self.cam.ep.dropped_events();
                    self.saw_list_event = false;
                    let end = self.now + wait;
                    let seen = self.run_until(end, |w| w.saw_list_event)?;
                    // Excused: a reset, or a full event queue (the cam
                    // reports the events it dropped).
                    let excused =
                        self.disruptions != before || self.cam.ep.dropped_events() != dropped;
                    if !seen && !excused {
                        return Err(self.violation(format!(
                            "a channel was registered with events on and no faults, but the host did not see CHANNEL_REGISTERED within {wait:?}"
                        )));
                    }
                    if self.host.take_channels_changed() {
                        self.app.list_stale = true;
                    }
                }
            }
            Between::Unregister(id) => {
                if self.cam.unregister_user(id) {
                    self.stats.cam_action("unregister");
                    self.trace.mix(&[0xB2, u64::from(id.0)]);
                    self.model.users.remove(&id.0);
                }
            }
            Between::Events(evs) => self.schedule(Duration::ZERO, CamAction::Events(evs)),
        }
        Ok(())
    }

    fn check_buffer(&self, id: u8) -> Result<(), Violation> {
        let (Some(b), Some(actual)) = (
            self.model.users.get(&id),
            self.cam.user_contents(ChannelId(id)),
        ) else {
            return Ok(());
        };
        b.check_actual(&actual)
            .map_err(|e| self.violation(format!("cam channel {id} diverged from the model: {e}")))
    }

    fn check_all_buffers(&self) -> Result<(), Violation> {
        for &id in self.model.users.keys() {
            self.check_buffer(id)?;
        }
        Ok(())
    }

    /// Invariants after every operation.
    fn after_op(&mut self, op: &Op, disruptions_before: u64) -> Result<(), Violation> {
        self.check_runs_now()?;
        self.check_counters()?;
        let touched = match op {
            Op::Read { ch, .. } | Op::Write { ch, .. } => Some(ch.0),
            _ => None,
        };
        if self.disruptions != disruptions_before || self.stats.ops % 8 == 0 {
            self.check_all_buffers()?;
        } else if let Some(id) = touched {
            self.check_buffer(id)?;
        }
        if self.model.stdout.anchored {
            let actual = self.cam.peek_stdout();
            if !actual.iter().eq(self.model.stdout.unread.iter()) {
                return Err(self.violation(format!(
                    "stdout holds {} bytes, the model expects {}",
                    actual.len(),
                    self.model.stdout.unread.len()
                )));
            }
        }
        if self.app.quiet && self.host.is_connected() && !self.app.needs_resync {
            let t = self.host.config().timeout;
            self.settle(t.saturating_mul(10))?;
            let (h, c) = (self.host.caps(), self.cam.ep.caps());
            if h != c {
                return Err(self.violation(format!(
                    "after a successful exchange the host uses {h:?} and the cam {c:?}"
                )));
            }
            if h.flags.seq() && self.host.sequence() != self.cam.ep.sequence() {
                return Err(self.violation(format!(
                    "after a successful exchange host sequence {} != cam sequence {}",
                    self.host.sequence(),
                    self.cam.ep.sequence()
                )));
            }
        }
        Ok(())
    }

    fn check_runs_now(&mut self) -> Result<(), Violation> {
        // Runs happen inside the cam's input handling and are checked
        // there; this only asserts none slipped through.
        if self.model.runs_seen != self.cam.run_count() {
            return Err(self.violation("a script run was not checked"));
        }
        Ok(())
    }
}
