//! The cam: the shipped [`SimCam`] (stdin with the in-process script
//! runner, stdout, stream, user [`BufferChannel`]s registered through its
//! API), with its own fault injection off: the DST's link injects faults.

use std::sync::{Arc, Mutex, MutexGuard};

use omv_proto::channel::ChannelEntry;
use omv_proto::device::DeviceConfig;
use omv_proto::{ChannelId, Instant};
use omv_sim::board::Board;
use omv_sim::cam::{SimCam, SimConfig};
use omv_sim::user::{BufferChannel, BufferHandle};

use super::dice::{fnv1a, Dice};

/// A user buffer channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSpec {
    /// Channel name.
    pub name: String,
    /// Buffer size.
    pub size: usize,
    /// Supports lock/unlock.
    pub lockable: bool,
    /// Seed of the initial contents.
    pub salt: u64,
}

impl UserSpec {
    /// The contents the channel starts with.
    pub fn initial_bytes(&self) -> Vec<u8> {
        Dice::from_seed(self.salt).bytes(self.size)
    }
}

/// What the runner prints for its `index`-th script (so that stdout
/// carries a checkable trace of every run).
pub fn runner_text(index: usize, script: &[u8]) -> Vec<u8> {
    format!(
        "run {index} len {} fnv {:016x}\n",
        script.len(),
        fnv1a(script)
    )
    .into_bytes()
}

/// What the cam prints when a script ends (its soft reset).
pub const SOFT_REBOOT_TEXT: &[u8] = b"MPY: soft reboot\r\n";

/// Everything that defines a cam at boot.
#[derive(Clone, Debug)]
pub struct CamSetup {
    /// The board (its packet buffer: 498, 4082 or 8178 bytes).
    pub board: Board,
    /// Endpoint configuration (supported caps, retransmission, read
    /// pieces, event queue, memory); the board sets version, sysinfo and
    /// the largest payload.
    pub device: DeviceConfig,
    /// A smaller packet buffer than the board's.
    pub max_payload: Option<u16>,
    /// Frames stream without a script.
    pub free_running_frames: bool,
    /// User channels registered at boot, in order.
    pub users: Vec<UserSpec>,
}

/// The simulated cam. See the module documentation.
pub struct DstCam {
    /// The shipped simulated cam.
    pub sim: SimCam,
    runs: Arc<Mutex<Vec<Vec<u8>>>>,
    users: Vec<(ChannelId, UserSpec, BufferHandle)>,
    /// Incremented whenever the protocol state is replaced (reset, reboot).
    pub incarnation: u32,
}

impl std::fmt::Debug for DstCam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DstCam")
            .field("sim", &self.sim)
            .field("incarnation", &self.incarnation)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DstCam {
    /// Boots a cam and registers the user channels.
    pub fn new(setup: &CamSetup) -> DstCam {
        let runs: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let log = runs.clone();
        let mut config = SimConfig::new()
            .board(setup.board)
            .device(setup.device.clone())
            .free_running_frames(setup.free_running_frames)
            .in_process(move |script, ctx| {
                let mut r = lock(&log);
                let text = runner_text(r.len(), script);
                r.push(script.to_vec());
                drop(r);
                ctx.output().write(&text);
            });
        if let Some(n) = setup.max_payload {
            config = config.max_payload(n);
        }
        // The configurations drawn are valid; a failure here is a bug of
        // the scenario generator, reported as a panic (a violation).
        let sim = config.build().expect("the DST's cam configuration builds");
        let mut cam = DstCam {
            sim,
            runs,
            users: Vec::new(),
            incarnation: 0,
        };
        for spec in &setup.users {
            cam.register_user(spec.clone())
                .expect("boot channels fit in the id space");
        }
        cam
    }

    /// Registers a user channel at run time (CHANNEL_REGISTERED goes out).
    pub fn register_user(&mut self, spec: UserSpec) -> Result<ChannelId, String> {
        let ch = BufferChannel::from_bytes(spec.initial_bytes()).lockable(spec.lockable);
        let handle = ch.handle();
        let id = self
            .sim
            .register_channel(&spec.name, Box::new(ch))
            .map_err(|e| e.to_string())?;
        self.users.push((id, spec, handle));
        Ok(id)
    }

    /// Unregisters a user channel; false when it is not one.
    pub fn unregister_user(&mut self, id: ChannelId) -> bool {
        let Some(i) = self.users.iter().position(|u| u.0 == id) else {
            return false;
        };
        self.users.remove(i);
        self.sim.unregister_channel(id).is_some()
    }

    /// User channels: id and definition.
    pub fn users(&self) -> impl Iterator<Item = (ChannelId, &UserSpec)> {
        self.users.iter().map(|(id, s, _)| (*id, s))
    }

    /// A user channel's bytes now.
    pub fn user_contents(&self, id: ChannelId) -> Option<Vec<u8>> {
        self.users
            .iter()
            .find(|u| u.0 == id)
            .map(|u| u.2.contents())
    }

    /// Scripts the runner received so far, in order.
    pub fn run_count(&self) -> usize {
        lock(&self.runs).len()
    }

    /// The `i`-th script the runner received.
    pub fn run(&self, i: usize) -> Option<Vec<u8>> {
        lock(&self.runs).get(i).cloned()
    }

    /// The cam application prints (to stdout).
    pub fn print(&self, text: &[u8]) {
        self.sim.output().write(text);
    }

    /// stdout's ring size.
    pub fn stdout_capacity(&self) -> usize {
        self.sim.output().capacity()
    }

    /// The channel list as CHANNEL_LIST reports it.
    pub fn channels(&self) -> Vec<ChannelEntry> {
        self.sim.channels()
    }

    /// A silent protocol reset.
    pub fn protocol_reset(&mut self) {
        self.sim.protocol_reset();
        self.incarnation += 1;
    }

    /// Reboots: fresh stdin/stdout and protocol state; user channels are
    /// carried over (with their contents unless `keep_user` is false, when
    /// they start again from their initial bytes). The port drops.
    pub fn reboot(&mut self, keep_user: bool) {
        self.sim.reboot();
        self.sim.port_closed();
        if !keep_user {
            for (_, spec, handle) in &self.users {
                handle.write_at(0, &spec.initial_bytes());
            }
        }
        self.incarnation += 1;
    }

    /// Bytes from the host.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.sim.handle_input(now, data);
    }

    /// Timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.sim.handle_timeout(now);
    }

    /// Next timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sim.poll_timeout()
    }

    /// Next packet to the host.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.sim.poll_transmit(now)
    }
}
