//! Scenarios, running one seed, and running many.
//!
//! A run is a few phases, each a *fault phase* (operations under the
//! seed's faults) followed by a *quiet phase* (faults off: the link must
//! recover after at most one failure, and then every operation succeeds).

use std::panic::{catch_unwind, AssertUnwindSafe};

use omv_proto::caps::CapFlags;
use omv_proto::device::DeviceConfig;
use omv_proto::memory::{MemoryEntry, MemoryKind, MemoryStats};
use omv_proto::sysinfo::SysInfo;
use omv_proto::{ChannelId, Duration};
use omv_session::SessionConfig;
use omv_sim::board::Board;

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
    /// Host session configuration (initial caps, timeout, SYNC attempts;
    /// the default deadlines).
    pub host: SessionConfig,
    /// The cam.
    pub cam: CamSetup,
    /// Link timing.
    pub link: LinkSetup,
    /// Faults.
    pub faults: FaultProfile,
    /// Phases.
    pub phases: Vec<Phase>,
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
        let mut host = SessionConfig::default();
        host.crc = want.crc;
        host.seq = want.seq;
        host.ack = want.ack;
        host.events = want.events;
        host.max_payload = want.max_payload;
        host.timeout = timeout;
        host.max_retry = d.range(1, 3) as u8;
        let rtx_floor = (3 * packet_us + 2000).div_ceil(1000).max(20);
        let board = d.pick(&[
            Board::H7Plus,
            Board::H7Plus,
            Board::Rt1062,
            Board::N6,
            Board::H7,
        ]);
        let max_payload = if d.chance(0.7) {
            None
        } else {
            Some(d.range(50, 4082) as u16)
        };
        let config = DeviceConfig::default()
            .supported(if d.chance(0.8) {
                CapFlags::KNOWN
            } else {
                CapFlags(d.below(16) as u32)
            })
            .rtx_timeout(Duration::from_millis(
                d.range(rtx_floor, rtx_floor.max(500)),
            ))
            .rtx_retries(d.range(0, 3) as u8)
            .read_piece(match d.weighted(&[50, 25, 25]) {
                0 => None,
                1 => Some(512),
                _ => Some(d.range(64, 700) as u16),
            })
            .event_queue(if d.chance(0.9) {
                64
            } else {
                d.range_usize(1, 8)
            })
            .memory(d.coin().then(|| {
                MemoryStats {
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
                }
            }))
            .sysinfo(SysInfo {
                cpu_id: d.u64() as u32,
                ..SysInfo::default()
            });
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
            board,
            device: config,
            max_payload,
            free_running_frames: d.chance(0.15),
            users,
        };
        let mut period = || Duration::from_micros(d.pick(&[0u64, 0, 125, 1000]));
        let (h2c_period, c2h_period) = (period(), period());
        let link = LinkSetup {
            h2c: Timing::new(Duration::from_micros(latency_us), byte_ns, h2c_period),
            c2h: Timing::new(Duration::from_micros(latency_us), byte_ns, c2h_period),
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
    world.trace.deliveries = opts.trace_deliveries;
    world.trace.log(world.now, || {
        let c = &scenario.cam.device;
        format!(
            "scenario: host {:?}; cam {:?} max_payload {:?} frames {} supported {:?} rtx {:?}x{} read_piece {:?} event_queue {}; link {:?}; {} phases",
            scenario.host,
            scenario.cam.board,
            scenario.cam.max_payload,
            scenario.cam.free_running_frames,
            c.supported,
            c.rtx_timeout,
            c.rtx_retries,
            c.read_piece,
            c.event_queue,
            scenario.link,
            scenario.phases.len()
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
    let ss = world.session.stats();
    for (k, v) in [
        ("session_resumes", ss.resumes),
        ("session_fast_naks", ss.fast_naks),
        ("session_ack_resends", ss.ack_resends),
        ("session_fast_fails", ss.fast_fails),
        ("session_reopens", ss.reopens),
        ("session_resyncs", ss.resyncs),
    ] {
        if v > 0 {
            *world.stats.notes.entry(k).or_default() += v;
        }
    }
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
            let t = self.session.config().timeout;
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
        let max_payload = usize::from(self.session.caps().max_payload.max(omv_proto::MIN_PAYLOAD));
        let op = wl.op(&self.model, max_payload, self.setup.free_running_frames);
        self.op_label = format!("op #{} {}", self.stats.ops, op.describe());
        self.trace
            .log(self.now, || format!("=== {}", op.describe()));
        let before = self.disruptions;
        if self.unheard_soft_reboot() && self.app.quiet {
            // Like a fault the host cannot see: the link recovers after at
            // most one failure.
            self.app.recovery_left = 1;
        }
        let sent = self.host_packets;
        let failed = self.stats.failures.values().sum::<u64>();
        self.run_workload_op(&op)?;
        let exchanged = self.host_packets != sent;
        if self.app.quiet && exchanged && self.stats.failures.values().sum::<u64>() == failed {
            // A success over the link: the link has recovered.
            self.app.recovery_left = 0;
        }
        self.after_op(&op, before, exchanged)
    }

    fn schedule_faults(&mut self, wl: &mut Workload) {
        let t = self.session.config().timeout.as_micros() as u64;
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

    /// Events are on, on both sides, and the two sides agree (no cam reset
    /// the session has not caught up with).
    fn events_on(&mut self) -> bool {
        self.port_open
            && self.session.is_connected()
            && self.session.caps().flags.events()
            && self.session.caps() == self.cam.sim.endpoint().caps()
            && !self.soft_reboot_since_resync()
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
                    let c = &self.setup.device;
                    let chain = c.rtx_timeout.saturating_mul((2u32 << c.rtx_retries) - 1);
                    let wait = chain + self.session.config().timeout.saturating_mul(10);
                    let before = self.disruptions;
                    let silent = self.silent_resets();
                    let dropped = self.cam.sim.stats().dropped_events;
                    self.saw_list_event = false;
                    let end = self.now + wait;
                    let seen = self.run_until(end, |w| w.saw_list_event)?;
                    // Excused: a reset (a fault's, or the cam's own give-up,
                    // which drops its queued events), or a full event queue
                    // (the cam reports the events it dropped).
                    let excused = self.disruptions != before
                        || self.silent_resets() != silent
                        || self.cam.sim.stats().dropped_events != dropped;
                    if !seen && !excused {
                        return Err(self.violation(format!(
                            "a channel was registered with events on and no faults, but the session did not report CHANNEL_REGISTERED within {wait:?} (cam {:?}, buffered input {} bytes)",
                            self.cam.sim.endpoint(),
                            self.cam.sim.endpoint().buffered()
                        )));
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
    /// `exchanged`: the operation sent something (cached answers and
    /// empty reads do not, and cannot find out that the cam reset).
    fn after_op(
        &mut self,
        op: &Op,
        disruptions_before: u64,
        exchanged: bool,
    ) -> Result<(), Violation> {
        self.check_runs()?;
        let touched = match op {
            Op::Read { ch, .. } | Op::Write { ch, .. } => Some(ch.0),
            _ => None,
        };
        if self.disruptions != disruptions_before || self.stats.ops % 8 == 0 {
            self.check_all_buffers()?;
        } else if let Some(id) = touched {
            self.check_buffer(id)?;
        }
        if self.app.quiet && exchanged && self.port_open && self.session.is_connected() {
            let t = self.session.config().timeout;
            self.settle(t.saturating_mul(10))?;
            let (h, c) = (self.session.caps(), self.cam.sim.endpoint().caps());
            // After a script ended the cam restarted its protocol; the
            // session resyncs before its next request (at once when it
            // was told, else after the request fails).
            // A handshake completed by late answers of abandoned attempts
            // may have set caps the cam never took; the session knows its
            // caps are unconfirmed then, and the cam must have kept its
            // start-up caps, which differ from the host's in ACKs (what the
            // first data answer tells the session).
            let unconfirmed = !self.session.caps_confirmed()
                && c == self.cam.sim.endpoint().startup_caps()
                && h.flags.ack() != c.flags.ack();
            if h != c && !self.soft_reboot_since_resync() && !unconfirmed {
                return Err(self.violation(format!(
                    "after a successful exchange the host uses {h:?} and the cam {c:?}"
                )));
            }
        }
        Ok(())
    }
}
