//! The simulated cam: a proto-core [`DeviceEndpoint`] with the real
//! sim-device channel backends — stdin (with an in-process script runner
//! that records every script it receives), stdout, and user
//! [`BufferChannel`]s — plus the cam application's duties the endpoint
//! leaves to its owner (turning backend system events into SYS_EVENTs) and
//! the two ways a cam loses its protocol state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use omv_proto::device::{DeviceConfig, DeviceEndpoint, RegisterError};
use omv_proto::{ChannelId, Instant};
use omv_sim::events::SystemEvents;
use omv_sim::output::SharedOutput;
use omv_sim::script::InProcessRunner;
use omv_sim::stdio::{StdinChannel, StdoutChannel};
use omv_sim::user::{BufferChannel, BufferHandle};

use super::dice::{fnv1a, Dice};

/// A user channel's definition: enough to recreate it after a reboot.
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

    fn backend(&self, bytes: Vec<u8>) -> BufferChannel {
        BufferChannel::from_bytes(bytes).lockable(self.lockable)
    }
}

/// The line the in-process runner prints for its `index`-th run.
pub fn runner_text(index: usize, script: &[u8]) -> Vec<u8> {
    format!(
        "run {index} len {} fnv {:016x}\n",
        script.len(),
        fnv1a(script)
    )
    .into_bytes()
}

/// Everything that defines a cam at boot.
#[derive(Clone, Debug)]
pub struct CamSetup {
    /// Endpoint configuration.
    pub config: DeviceConfig,
    /// stdout ring buffer size.
    pub stdout_capacity: usize,
    /// User channels registered at boot, in order.
    pub users: Vec<UserSpec>,
}

/// The simulated cam. See the module documentation.
pub struct DstCam {
    /// The protocol endpoint (replaced on reset and reboot).
    pub ep: DeviceEndpoint,
    config: DeviceConfig,
    stdout_capacity: usize,
    output: SharedOutput,
    system: SystemEvents,
    runs: Arc<Mutex<Vec<Vec<u8>>>>,
    users: BTreeMap<u8, (UserSpec, BufferHandle)>,
    /// Incremented whenever the endpoint is replaced.
    pub incarnation: u32,
}

impl std::fmt::Debug for DstCam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DstCam")
            .field("ep", &self.ep)
            .field("incarnation", &self.incarnation)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DstCam {
    /// Boots a cam: stdin (1), stdout (2), then the user channels
    /// registered at run time (ids from 3).
    pub fn new(setup: &CamSetup) -> DstCam {
        let output = SharedOutput::new(setup.stdout_capacity);
        let system = SystemEvents::new();
        let runs = Arc::new(Mutex::new(Vec::new()));
        let mut cam = DstCam {
            ep: DeviceEndpoint::new(setup.config.clone()),
            config: setup.config.clone(),
            stdout_capacity: setup.stdout_capacity,
            output,
            system,
            runs,
            users: BTreeMap::new(),
            incarnation: 0,
        };
        cam.register_builtins();
        for spec in &setup.users {
            cam.register_user(spec.clone())
                .expect("boot channels fit in the id space");
        }
        cam
    }

    fn stdin(&self) -> StdinChannel {
        let runs = self.runs.clone();
        let runner = InProcessRunner::new(move |script, ctx| {
            let mut r = lock(&runs);
            let text = runner_text(r.len(), script);
            r.push(script.to_vec());
            drop(r);
            ctx.output().write(&text);
        });
        StdinChannel::new(Box::new(runner), self.output.clone(), self.system.clone())
    }

    fn register_builtins(&mut self) {
        let stdin = Box::new(self.stdin());
        let stdout = Box::new(StdoutChannel::new(self.output.clone()));
        self.ep
            .register_at(ChannelId::STDIN, "stdin", stdin)
            .expect("stdin id free");
        self.ep
            .register_at(ChannelId::STDOUT, "stdout", stdout)
            .expect("stdout id free");
    }

    /// Registers a user channel at run time (first free id, DYNAMIC flag,
    /// CHANNEL_REGISTERED event when events are on).
    pub fn register_user(&mut self, spec: UserSpec) -> Result<ChannelId, RegisterError> {
        let backend = spec.backend(spec.initial_bytes());
        let handle = backend.handle();
        let id = self.ep.register(&spec.name, Box::new(backend))?;
        self.users.insert(id.0, (spec, handle));
        Ok(id)
    }

    /// Unregisters a user channel (CHANNEL_UNREGISTERED event).
    pub fn unregister_user(&mut self, id: ChannelId) -> bool {
        self.users.remove(&id.0);
        self.ep.unregister(id).is_some()
    }

    /// The user channels: id, definition.
    pub fn users(&self) -> impl Iterator<Item = (ChannelId, &UserSpec)> {
        self.users.iter().map(|(&id, (s, _))| (ChannelId(id), s))
    }

    /// A user channel's current bytes.
    pub fn user_contents(&self, id: ChannelId) -> Option<Vec<u8>> {
        self.users.get(&id.0).map(|(_, h)| h.contents())
    }

    /// Every script the runner has received, in order (all incarnations).
    pub fn runs(&self) -> Vec<Vec<u8>> {
        lock(&self.runs).clone()
    }

    /// The `i`-th script the runner received.
    pub fn run(&self, i: usize) -> Vec<u8> {
        lock(&self.runs)[i].clone()
    }

    /// Number of scripts run so far.
    pub fn run_count(&self) -> usize {
        lock(&self.runs).len()
    }

    /// The unread stdout text, without consuming it.
    pub fn peek_stdout(&self) -> Vec<u8> {
        let all = self.output.take_all();
        self.output.write(&all);
        all
    }

    /// Text printed by the cam application (goes to stdout).
    pub fn print(&self, text: &[u8]) {
        self.output.write(text);
    }

    /// The stdout buffer's capacity.
    pub fn stdout_capacity(&self) -> usize {
        self.output.capacity()
    }

    /// Feeds bytes from the host.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.ep.handle_input(now, data);
        self.forward_system_events();
    }

    /// Lets time pass on the cam.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        self.forward_system_events();
    }

    /// Next packet to send.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.ep.poll_transmit(now)
    }

    /// Next timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ep.poll_timeout()
    }

    /// The cam loop's job: system events raised by backends (SOFT_REBOOT
    /// after a script) become SYS_EVENT packets.
    fn forward_system_events(&mut self) {
        while let Some(id) = self.system.pop() {
            self.ep.send_event(ChannelId::SYSTEM, Some(id.0), false);
        }
    }

    /// A silent protocol reset: a fresh endpoint (sequence 0, default caps,
    /// empty buffers, fresh counters) over the same channel objects, which
    /// keep their contents but lose their locks.
    pub fn protocol_reset(&mut self) {
        let mut old = std::mem::replace(&mut self.ep, DeviceEndpoint::new(self.config.clone()));
        for entry in old.channels().into_iter().skip(1) {
            if let Some(mut b) = old.unregister(entry.id) {
                b.reset();
                self.ep
                    .register_at(entry.id, &entry.name, b)
                    .expect("same ids and names as before");
            }
        }
        self.incarnation += 1;
    }

    /// A reboot: a fresh endpoint, empty stdin and stdout, and the user
    /// channels re-registered at their ids by the boot code, either with
    /// their contents (`keep_user`, persistent storage) or reinitialised.
    pub fn reboot(&mut self, keep_user: bool) {
        self.ep = DeviceEndpoint::new(self.config.clone());
        self.output = SharedOutput::new(self.stdout_capacity);
        self.system = SystemEvents::new();
        self.register_builtins();
        let users = std::mem::take(&mut self.users);
        for (id, (spec, handle)) in users {
            let bytes = if keep_user {
                handle.contents()
            } else {
                spec.initial_bytes()
            };
            let backend = spec.backend(bytes);
            let handle = backend.handle();
            self.ep
                .register_at(ChannelId(id), &spec.name, Box::new(backend))
                .expect("same ids and names as before");
            self.users.insert(id, (spec, handle));
        }
        self.incarnation += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> CamSetup {
        CamSetup {
            config: DeviceConfig::default(),
            stdout_capacity: 512,
            users: vec![UserSpec {
                name: "buf".into(),
                size: 100,
                lockable: true,
                salt: 9,
            }],
        }
    }

    #[test]
    fn boot_layout_and_resets_keep_ids() {
        let mut cam = DstCam::new(&setup());
        let names: Vec<_> = cam.ep.channels().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["usb", "stdin", "stdout", "buf"]);
        let before = cam.ep.channels();
        cam.print(b"hello");
        cam.protocol_reset();
        assert_eq!(cam.ep.channels(), before);
        assert_eq!(cam.peek_stdout(), b"hello");
        assert_eq!(cam.peek_stdout(), b"hello");
        cam.reboot(false);
        assert_eq!(cam.ep.channels(), before);
        assert_eq!(cam.peek_stdout(), b"");
        let id = ChannelId(3);
        assert_eq!(
            cam.user_contents(id),
            Some(setup().users[0].initial_bytes())
        );
    }
}
