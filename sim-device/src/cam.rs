//! [`SimCam`]: the simulated cam. A [`DeviceEndpoint`] configured from a
//! board profile, with the built-in channels of PROTOCOL.md section 9, user
//! channels, fault injection and the cam's life cycle (SOFT_REBOOT after a
//! script, SYS_RESET and SYS_BOOT reboots). Sans-IO like the endpoint:
//! drive it with [`SimCam::handle_input`], [`SimCam::poll_transmit`],
//! [`SimCam::handle_timeout`] and [`SimCam::poll_timeout`], or hand it to
//! [`serve`](crate::serve::serve).
//!
//! ```
//! use omv_sim::cam::SimConfig;
//! use omv_proto::Instant;
//! let mut cam = SimConfig::new().channel("bulk", 1024).build().unwrap();
//! let names: Vec<String> = cam.channels().into_iter().map(|c| c.name).collect();
//! assert_eq!(names, ["usb", "stdin", "stdout", "stream", "bulk"]);
//! cam.handle_input(Instant::ZERO, &[0xaa, 0xd5, 0, 0, 0, 0, 0, 0, 0xb0, 0xac]); // SYNC
//! assert_eq!(cam.poll_transmit(Instant::ZERO).unwrap(), [0xaa, 0xd5, 0, 0, 1, 0, 0, 0, 0x08, 0x46]);
//! ```

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use omv_proto::backend::ChannelBackend;
use omv_proto::caps::{CapFlags, Caps};
use omv_proto::channel::{ChannelEntry, MAX_NAME_LEN};
use omv_proto::device::{DeviceConfig, DeviceEndpoint, DeviceEvent, RegisterError};
use omv_proto::frame::PixFormat;
use omv_proto::framer::FramerStats;
use omv_proto::memory::{MemoryEntry, MemoryKind, MemoryStats};
use omv_proto::stats::Stats;
use omv_proto::{ChannelId, Instant};

use crate::board::{Board, BoardProfile};
use crate::events::SystemEvents;
use crate::fault::{FaultConfig, FaultError, FaultInjector, FaultStats};
use crate::output::SharedOutput;
use crate::profile::ProfileChannel;
use crate::runtime::{Bridge, FrameBuffer, PendingRequest, RuntimeFacts, ScriptRequest};
use crate::script::{InProcessRunner, PythonRunner, ScriptContext, ScriptRunner};
use crate::serve::SansIoCam;
use crate::source::{DirSource, FrameSource, PatternSource};
use crate::stdio::{StdinChannel, StdoutChannel};
use crate::stream::StreamChannel;
use crate::user::BufferChannel;

/// Largest user byte-buffer channel (64 MiB).
pub const MAX_CHANNEL_SIZE: usize = 64 << 20;

/// Largest width or height of [`SimConfig::resolution`] (the largest raw
/// size RAW_CFG accepts too).
pub const MAX_RESOLUTION: u32 = crate::stream::MAX_RAW_DIM;

/// Parses a resolution `WxH` ("640x480"; `X` also separates, spaces around
/// the numbers are ignored) and checks it as [`SimConfig::resolution`]
/// does: each side 1..=[`MAX_RESOLUTION`].
pub fn parse_resolution(s: &str) -> Result<(u32, u32), SimError> {
    let syntax = || SimError::ResolutionSyntax(s.to_string());
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(syntax)?;
    let side = |v: &str| {
        let v = v.trim();
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        // Too many digits for a u32 is out of range, not a syntax error.
        Ok(v.parse::<u32>().unwrap_or(u32::MAX))
    };
    let (w, h) = (side(w)?, side(h)?);
    check_resolution(w, h)?;
    Ok((w, h))
}

fn check_resolution(width: u32, height: u32) -> Result<(), SimError> {
    if (1..=MAX_RESOLUTION).contains(&width) && (1..=MAX_RESOLUTION).contains(&height) {
        Ok(())
    } else {
        Err(SimError::Resolution { width, height })
    }
}

/// Makes a fresh script runner (at start and after every reboot).
pub type RunnerFactory = Arc<dyn Fn() -> Box<dyn ScriptRunner> + Send + Sync>;

/// How uploaded scripts run.
#[derive(Clone)]
#[non_exhaustive]
pub enum ScriptEngine {
    /// A Python interpreter in a child process: the given path or name, or
    /// `python3` on `PATH` when `None`.
    Python(Option<PathBuf>),
    /// Any runner, e.g. an [`InProcessRunner`] for tests.
    Custom(RunnerFactory),
}

impl fmt::Debug for ScriptEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScriptEngine::Python(p) => f.debug_tuple("Python").field(p).finish(),
            ScriptEngine::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl ScriptEngine {
    fn make(&self) -> Box<dyn ScriptRunner> {
        match self {
            ScriptEngine::Python(Some(p)) => Box::new(PythonRunner::with_interpreter(p.clone())),
            ScriptEngine::Python(None) => Box::new(PythonRunner::new()),
            ScriptEngine::Custom(f) => f(),
        }
    }
}

/// A user byte-buffer channel to create at boot: `NAME:SIZE` on the
/// command line, byte `i` holding `i % 251`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelSpec {
    /// Channel name (1 to 13 bytes, no NUL, no `:`).
    pub name: String,
    /// Buffer size in bytes (1 to [`MAX_CHANNEL_SIZE`]).
    pub size: usize,
}

/// A `NAME:SIZE` channel spec that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelSpecError {
    /// No `:` separating name and size.
    #[error("channel spec {0:?} is not NAME:SIZE")]
    Format(String),
    /// The name is empty, too long or contains NUL.
    #[error("channel name {0:?} must be 1 to 13 bytes")]
    Name(String),
    /// The size is not a number with an optional K or M suffix.
    #[error("channel size {0:?} is not a number of bytes (optional K or M suffix)")]
    Size(String),
    /// The size is 0 or over the maximum.
    #[error("channel size {0} is out of range (1 byte to 64M)")]
    Range(u64),
}

impl ChannelSpec {
    /// A spec; checks the name and size.
    pub fn new(name: &str, size: usize) -> Result<ChannelSpec, ChannelSpecError> {
        if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains('\0') {
            return Err(ChannelSpecError::Name(name.to_string()));
        }
        if size == 0 || size > MAX_CHANNEL_SIZE {
            return Err(ChannelSpecError::Range(size as u64));
        }
        Ok(ChannelSpec {
            name: name.to_string(),
            size,
        })
    }
}

/// Parses a byte count: digits with an optional `K` (KiB) or `M` (MiB)
/// suffix, case-insensitive, optionally followed by `B`/`iB`.
pub fn parse_size(s: &str) -> Result<u64, ChannelSpecError> {
    let bad = || ChannelSpecError::Size(s.to_string());
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, mult) = match body.as_bytes().last() {
        Some(b'k') => (&body[..body.len() - 1], 1u64 << 10),
        Some(b'm') => (&body[..body.len() - 1], 1u64 << 20),
        _ => (body, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(mult).ok_or(ChannelSpecError::Range(u64::MAX))
}

impl FromStr for ChannelSpec {
    type Err = ChannelSpecError;

    fn from_str(s: &str) -> Result<ChannelSpec, ChannelSpecError> {
        let (name, size) = s
            .rsplit_once(':')
            .ok_or_else(|| ChannelSpecError::Format(s.to_string()))?;
        if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains('\0') {
            return Err(ChannelSpecError::Name(name.to_string()));
        }
        let n = parse_size(size)?;
        let n = usize::try_from(n).map_err(|_| ChannelSpecError::Range(n))?;
        ChannelSpec::new(name, n)
    }
}

/// Everything a [`SimCam`] is built from. A builder: chain the setters and
/// finish with [`build`](Self::build).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SimConfig {
    /// Board profile (sysinfo, version, stdout size, stream buffer).
    pub board: Board,
    /// Register the profile channel (id 4).
    pub profiler: bool,
    /// User byte-buffer channels, registered after the built-ins.
    pub channels: Vec<ChannelSpec>,
    /// Stream frames per second (`None`: the stream default, 30).
    pub fps: Option<f32>,
    /// Size of the test pattern's frames (`None`: 320x240). See
    /// [`resolution`](Self::resolution).
    pub resolution: Option<(u32, u32)>,
    /// Stream images from this directory instead of the test pattern.
    pub frames_dir: Option<PathBuf>,
    /// How scripts run.
    pub engine: ScriptEngine,
    /// Faults to inject (including the seed).
    pub faults: FaultConfig,
    /// Protocol settings (sysinfo, version and `max_payload` are taken
    /// from the board; a smaller start-up payload is
    /// [`DeviceConfig::startup_caps`]).
    pub device: DeviceConfig,
    /// The largest payload announced and accepted, instead of the board's
    /// packet buffer ([`BoardProfile::max_payload`]); e.g. 1400 over UDP.
    pub max_payload: Option<u16>,
    /// The stream produces frames by itself at `fps` (the test pattern or
    /// `frames_dir`), with no script taking snapshots. Off by default: as
    /// on a cam, frames come from a script's `csi.snapshot()`.
    pub free_running_frames: bool,
    /// How long a script channel's backend may take to answer a host
    /// request before the host gets NAK TIMEOUT (default 1 s).
    pub script_call_timeout: omv_proto::Duration,
    /// The simulated flash that `img.save` writes into (default: a
    /// temporary directory).
    pub flash_dir: Option<PathBuf>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            board: Board::H7Plus,
            profiler: false,
            channels: Vec::new(),
            fps: None,
            resolution: None,
            frames_dir: None,
            engine: ScriptEngine::Python(None),
            faults: FaultConfig::default(),
            device: DeviceConfig::default(),
            max_payload: None,
            free_running_frames: false,
            script_call_timeout: crate::runtime::DEFAULT_CALL_TIMEOUT,
            flash_dir: None,
        }
    }
}

/// Why a [`SimCam`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// Invalid fault settings.
    #[error(transparent)]
    Fault(#[from] FaultError),
    /// A channel could not be registered (duplicate name, no free id...).
    #[error("channel {name:?}: {source}")]
    Channel {
        /// The channel's name.
        name: String,
        /// Why.
        #[source]
        source: RegisterError,
    },
    /// The frames directory cannot be used.
    #[error("frames directory {path}: {source}")]
    Frames {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An invalid user channel spec.
    #[error(transparent)]
    ChannelSpec(#[from] ChannelSpecError),
    /// A bad fps value.
    #[error("fps must be a number between 0.1 and 1000, got {0}")]
    Fps(f32),
    /// A resolution with a side of 0 or above [`MAX_RESOLUTION`].
    #[error("resolution must be 1x1 to {max}x{max} pixels, got {width}x{height}", max = MAX_RESOLUTION)]
    Resolution {
        /// The width asked for.
        width: u32,
        /// The height asked for.
        height: u32,
    },
    /// A resolution that is not `WxH` (see [`parse_resolution`]).
    #[error("{0:?} is not a resolution WxH (e.g. 640x480)")]
    ResolutionSyntax(String),
    /// A resolution and a frames directory: the resolution only sizes the
    /// test pattern, the directory's images keep their own sizes.
    #[error(
        "a resolution cannot be combined with a frames directory (its images keep their own sizes)"
    )]
    ResolutionWithFrames,
}

impl SimConfig {
    /// The defaults: H7 Plus, no profiler, no user channels, Python scripts,
    /// no faults.
    pub fn new() -> SimConfig {
        SimConfig::default()
    }

    /// Sets the board.
    pub fn board(mut self, board: Board) -> Self {
        self.board = board;
        self
    }

    /// Enables or disables the profile channel.
    pub fn profiler(mut self, on: bool) -> Self {
        self.profiler = on;
        self
    }

    /// Adds a user byte-buffer channel of `size` bytes (byte i = i % 251).
    /// An invalid name or size makes [`build`](Self::build) fail.
    pub fn channel(mut self, name: &str, size: usize) -> Self {
        self.channels.push(ChannelSpec {
            name: name.to_string(),
            size,
        });
        self
    }

    /// Adds a parsed channel spec.
    pub fn channel_spec(mut self, spec: ChannelSpec) -> Self {
        self.channels.push(spec);
        self
    }

    /// Sets the stream's frame rate.
    pub fn fps(mut self, fps: f32) -> Self {
        self.fps = Some(fps);
        self
    }

    /// Sets the size of the test pattern's frames (default 320x240): the
    /// JPEG frames and the raw (RGB565) frames until the host sends
    /// RAW_CFG. Each side must be 1..=[`MAX_RESOLUTION`], or
    /// [`build`](Self::build) fails with [`SimError::Resolution`]; it cannot
    /// be combined with [`frames_dir`](Self::frames_dir). A JPEG frame too
    /// large for the board's stream buffer is sent at a lower quality, then
    /// halved until it fits; a raw frame that does not fit keeps the
    /// default 320x240 raw size.
    pub fn resolution(mut self, width: u32, height: u32) -> Self {
        self.resolution = Some((width, height));
        self
    }

    /// Streams the images of a directory (PNG/JPEG) instead of the pattern.
    pub fn frames_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.frames_dir = Some(dir.into());
        self
    }

    /// Runs scripts with this Python interpreter.
    pub fn python(mut self, path: impl Into<PathBuf>) -> Self {
        self.engine = ScriptEngine::Python(Some(path.into()));
        self
    }

    /// Runs scripts with a Rust closure, synchronously (the script has
    /// ended when EXEC is acknowledged).
    pub fn in_process(mut self, f: impl Fn(&[u8], &ScriptContext) + Send + Sync + 'static) -> Self {
        let f = Arc::new(f);
        self.engine = ScriptEngine::Custom(Arc::new(move || {
            let f = f.clone();
            Box::new(InProcessRunner::new(move |s: &[u8], c: &ScriptContext| {
                f(s, c)
            }))
        }));
        self
    }

    /// Runs scripts with a Rust closure on a thread (it should return when
    /// [`ScriptContext::stop_requested`]).
    pub fn in_process_threaded(
        mut self,
        f: impl Fn(&[u8], &ScriptContext) + Send + Sync + 'static,
    ) -> Self {
        let f = Arc::new(f);
        self.engine = ScriptEngine::Custom(Arc::new(move || {
            let f = f.clone();
            Box::new(InProcessRunner::threaded(
                move |s: &[u8], c: &ScriptContext| f(s, c),
            ))
        }));
        self
    }

    /// Uses any script runner.
    pub fn engine(mut self, engine: ScriptEngine) -> Self {
        self.engine = engine;
        self
    }

    /// Sets the faults to inject.
    pub fn faults(mut self, faults: FaultConfig) -> Self {
        self.faults = faults;
        self
    }

    /// Sets the seed of every random decision (fault injection).
    pub fn seed(mut self, seed: u64) -> Self {
        self.faults.seed = seed;
        self
    }

    /// Sets the protocol settings (sysinfo, version and `max_payload` still
    /// come from the board).
    pub fn device(mut self, device: DeviceConfig) -> Self {
        self.device = device;
        self
    }

    /// Announces and accepts payloads up to `n` bytes instead of the
    /// board's packet buffer (see [`max_payload`](Self::max_payload)).
    pub fn max_payload(mut self, n: u16) -> Self {
        self.max_payload = Some(n);
        self
    }

    /// The firmware's abandoned long read (PROTOCOL.md sections 6 and 7):
    /// a read the host gave up on goes on piece by piece, through SYNCs
    /// and retransmit give-ups, with other requests waiting, until the port
    /// closes ([`SimCam::port_closed`]). Sets
    /// [`DeviceConfig::firmware_send_loop`]; off by default, because a host
    /// must close and reopen the port to get out of it. (Call it after
    /// [`device`](Self::device), which replaces the whole configuration.)
    pub fn abandoned_reads(mut self, on: bool) -> Self {
        self.device.firmware_send_loop = on;
        self
    }

    /// Streams frames with no script (see [`SimConfig::free_running_frames`]).
    pub fn free_running_frames(mut self, on: bool) -> Self {
        self.free_running_frames = on;
        self
    }

    /// Sets how long a script backend may take to answer.
    pub fn script_call_timeout(mut self, timeout: omv_proto::Duration) -> Self {
        self.script_call_timeout = timeout;
        self
    }

    /// Sets the simulated flash directory (`img.save`).
    pub fn flash_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.flash_dir = Some(dir.into());
        self
    }

    /// Builds the cam.
    pub fn build(self) -> Result<SimCam, SimError> {
        SimCam::new(self)
    }
}

/// Counters of a [`SimCam`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimStats {
    /// What PROTO_STATS reports.
    pub device: Stats,
    /// The endpoint's framer drop counters.
    pub framer: FramerStats,
    /// Every injected fault.
    pub faults: FaultStats,
    /// Events dropped (events off, queue full).
    pub dropped_events: u64,
    /// SOFT_REBOOT events raised (scripts that ended).
    pub soft_reboots: u64,
    /// Reboots (SYS_RESET, SYS_BOOT).
    pub reboots: u64,
}

/// A channel registered through the Rust API, carried over reboots.
struct ApiChannel {
    id: ChannelId,
    name: String,
}

/// The simulated cam. See the module documentation.
pub struct SimCam {
    config: SimConfig,
    profile: BoardProfile,
    dev: DeviceEndpoint,
    faults: FaultInjector,
    system: SystemEvents,
    output: SharedOutput,
    api_channels: Vec<ApiChannel>,
    /// Counters of endpoints replaced by reboots.
    soft_reboots: u64,
    reboots: u64,
    rx_scratch: Vec<u8>,
    /// The script runtime's bridge (None where it cannot run).
    bridge: Option<Bridge>,
    frames: Arc<FrameBuffer>,
    env: Vec<(String, String)>,
    /// Channels the running script registered.
    script_channels: Vec<ChannelId>,
    /// `send_event(wait_ack=True)` calls waiting for the host's ACK.
    ack_waiters: std::collections::VecDeque<PendingRequest>,
    seen_acks: u64,
    /// A script ended: the protocol is re-initialised once what was queued
    /// before (SOFT_REBOOT last) has gone out, or by this time at the latest.
    soft_reset_due: Option<Instant>,
    last_now: Instant,
}

impl fmt::Debug for SimCam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimCam")
            .field("board", &self.config.board)
            .field("dev", &self.dev)
            .field("faults", &self.faults.stats())
            .field("reboots", &self.reboots)
            .finish_non_exhaustive()
    }
}

/// Plausible SYS_MEMORY pools for a board: a GC heap and a UMA pool.
fn memory_of(p: &BoardProfile) -> MemoryStats {
    let ram = p.sysinfo.ram_kb.saturating_mul(1024);
    let heap = (ram / 4).clamp(64 << 10, 4 << 20);
    let uma = p.sysinfo.framebuffer_kb.saturating_mul(1024);
    MemoryStats {
        entries: vec![
            MemoryEntry {
                kind: MemoryKind::GC_HEAP,
                flags: 0,
                total: heap,
                used: heap / 8,
                free: heap - heap / 8,
                persist: 0,
                peak: heap / 6,
            },
            MemoryEntry {
                kind: MemoryKind::UMA_POOL,
                flags: 0,
                total: uma,
                used: 0,
                free: uma,
                persist: 0,
                peak: uma / 4,
            },
        ],
    }
}

impl SimCam {
    /// Builds a cam (see [`SimConfig::build`]).
    pub fn new(config: SimConfig) -> Result<SimCam, SimError> {
        let faults = FaultInjector::new(config.faults.clone())?;
        if let Some(fps) = config.fps {
            if !(0.1..=1000.0).contains(&fps) {
                return Err(SimError::Fps(fps));
            }
        }
        if let Some((w, h)) = config.resolution {
            check_resolution(w, h)?;
            if config.frames_dir.is_some() {
                return Err(SimError::ResolutionWithFrames);
            }
        }
        let profile = config.board.profile();
        let system = SystemEvents::new();
        let output = profile.stdout_buffer();
        let frames = FrameBuffer::new();
        let bridge = start_bridge(&config, &profile, &frames)?;
        let env = bridge.as_ref().map(Bridge::env).unwrap_or_default();
        let dev = boot(&config, &profile, &system, &output, &frames, &env)?;
        log::info!(
            "cam: {} (protocol {:?}, firmware {:?}), channels: {}",
            profile.board.display_name(),
            profile.version.protocol,
            profile.version.firmware,
            dev.channels()
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(SimCam {
            config,
            profile,
            dev,
            faults,
            system,
            output,
            api_channels: Vec::new(),
            soft_reboots: 0,
            reboots: 0,
            rx_scratch: Vec::new(),
            bridge,
            frames,
            env,
            script_channels: Vec::new(),
            ack_waiters: std::collections::VecDeque::new(),
            seen_acks: 0,
            soft_reset_due: None,
            last_now: Instant::ZERO,
        })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The board profile.
    pub fn board(&self) -> &BoardProfile {
        &self.profile
    }

    /// The protocol endpoint (read-only).
    pub fn endpoint(&self) -> &DeviceEndpoint {
        &self.dev
    }

    /// The cam's stdout buffer: write text into it as a script would.
    pub fn output(&self) -> &SharedOutput {
        &self.output
    }

    /// The channel list as CHANNEL_LIST reports it.
    pub fn channels(&self) -> Vec<ChannelEntry> {
        self.dev.channels()
    }

    /// The backend of a channel, to drive it from the application.
    pub fn channel_mut(&mut self, id: ChannelId) -> Option<&mut (dyn ChannelBackend + 'static)> {
        self.dev.channel_mut(id)
    }

    /// The id of the channel called `name`.
    pub fn channel_id(&self, name: &str) -> Option<ChannelId> {
        self.dev.channel_id(name)
    }

    /// Registers a user channel from any backend: first free id, flags
    /// derived from the backend's ops plus DYNAMIC, and a
    /// CHANNEL_REGISTERED event to the host. The channel survives reboots.
    pub fn register_channel(
        &mut self,
        name: &str,
        backend: Box<dyn ChannelBackend>,
    ) -> Result<ChannelId, RegisterError> {
        let id = self.dev.register(name, backend)?;
        log::info!("cam: registered channel {name:?} as {}", id.0);
        self.api_channels.push(ApiChannel {
            id,
            name: name.to_string(),
        });
        Ok(id)
    }

    /// Unregisters a channel (CHANNEL_UNREGISTERED is sent); returns its backend.
    pub fn unregister_channel(&mut self, id: ChannelId) -> Option<Box<dyn ChannelBackend>> {
        if self.builtin_ids().contains(&id) {
            return None;
        }
        self.api_channels.retain(|c| c.id != id);
        self.dev.unregister(id)
    }

    fn builtin_ids(&self) -> Vec<ChannelId> {
        let mut v = vec![ChannelId::STDIN, ChannelId::STDOUT, ChannelId::STREAM];
        if self.config.profiler {
            v.push(ChannelId::PROFILE);
        }
        v
    }

    /// Sends a system event (channel 0) or a channel event; `None` is a NOTIFY.
    pub fn send_event(&mut self, channel: ChannelId, event: Option<u16>) {
        self.dev.send_event(channel, event, false);
    }

    /// Device, framer and fault counters.
    pub fn stats(&self) -> SimStats {
        SimStats {
            device: self.dev.stats(),
            framer: self.dev.framer_stats(),
            faults: self.faults.stats(),
            dropped_events: self.dev.dropped_events(),
            soft_reboots: self.soft_reboots,
            reboots: self.reboots,
        }
    }

    /// Fault counters.
    pub fn fault_stats(&self) -> FaultStats {
        self.faults.stats()
    }

    /// The host closed the port (its serial port's descriptor, the TCP
    /// connection): the cam's transport is inactive until bytes arrive
    /// again. What was being sent is dropped (with
    /// [`SimConfig::abandoned_reads`], the only way to end an abandoned
    /// read), and so are queued events and buffered input.
    pub fn port_closed(&mut self) {
        log::debug!("cam: port closed");
        self.dev.set_transport_active(false);
        self.faults.clear();
    }

    /// The port was closed and opened again (for links with no moment of
    /// their own for the close, such as the in-memory ones): as
    /// [`port_closed`](Self::port_closed), then the transport is active
    /// again, so events flow before the new host sends anything.
    pub fn port_reopened(&mut self) {
        self.port_closed();
        self.dev.set_transport_active(true);
    }

    /// Bytes received from the host.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        let mut buf = std::mem::take(&mut self.rx_scratch);
        buf.clear();
        self.faults.filter_rx(data, &mut buf);
        if !buf.is_empty() {
            self.dev.handle_input(now, &buf);
        }
        self.rx_scratch = buf;
        self.after(now);
    }

    /// Time has passed: retransmissions, stdout and stream timers, script ends.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.dev.handle_timeout(now);
        self.after(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next, or when a
    /// held (delayed) packet is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let script = self
            .bridge
            .as_ref()
            .filter(|b| b.has_requests())
            .map(|_| self.last_now);
        [
            self.dev.poll_timeout(),
            self.faults.next_release(),
            script,
            self.soft_reset_due,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Next bytes to send to the host (a packet, or a chunk of one with
    /// chunking on), after fault injection.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        loop {
            if let Some(c) = self.faults.pop_tx(now) {
                return Some(c);
            }
            if !self.faults.wants_tx() {
                return None;
            }
            let Some(p) = self.dev.poll_transmit(now) else {
                if self.finish_soft_reset(now) {
                    continue;
                }
                return None;
            };
            self.faults.push_tx(now, p);
        }
    }

    /// Raises system events and acts on the endpoint's application events.
    fn after(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        self.serve_script();
        for ev in self.system.drain() {
            self.dev.send_event(ChannelId::SYSTEM, Some(ev.0), false);
            if ev == omv_proto::event::EventId::SOFT_REBOOT {
                self.soft_reboots += 1;
                log::info!("cam: script ended: soft reboot");
                self.soft_reboot(now);
            }
        }
        self.finish_soft_reset(now);
        while let Some(ev) = self.dev.poll_event() {
            match ev {
                DeviceEvent::ResetRequested => {
                    log::info!("cam: SYS_RESET: rebooting");
                    self.reboot();
                    return;
                }
                DeviceEvent::BootRequested => {
                    log::info!("cam: SYS_BOOT: the simulator has no bootloader; rebooting instead");
                    self.reboot();
                    return;
                }
                DeviceEvent::ProtocolReset(cause) => {
                    log::debug!("cam: protocol reset ({cause:?})");
                    self.fail_ack_waiters();
                }
                DeviceEvent::CapsChanged(caps) => log::debug!("cam: caps now {caps:?}"),
                // An event of a newer omv-proto the cam does not act on.
                other => log::debug!("cam: device event {other:?}"),
            }
        }
    }

    /// Serves what the running script asked for (channels, events, init).
    fn serve_script(&mut self) {
        let Some(bridge) = &self.bridge else { return };
        let active = self.dev.stats().received > 0;
        bridge.set_status(active, self.dev.caps().flags.events());
        // Events the host acknowledged release their waiters, oldest first.
        let acks = self.dev.event_acks();
        while self.seen_acks < acks {
            self.seen_acks += 1;
            if let Some(w) = self.ack_waiters.pop_front() {
                bridge.reply(&w, &[0]);
            }
        }
        for req in bridge.take_requests() {
            match &req.request {
                ScriptRequest::Register { name, methods } => {
                    // The first free id, as the endpoint will pick it.
                    let taken: Vec<u8> = self.dev.channels().iter().map(|c| c.id.0).collect();
                    let free = (1..ChannelId::COUNT as u8)
                        .find(|i| !taken.contains(i))
                        .unwrap_or(0);
                    let backend =
                        bridge.channel(&req, *methods, free, self.config.script_call_timeout);
                    match self.dev.register(name, Box::new(backend)) {
                        Ok(id) => {
                            log::info!("cam: the script registered channel {name:?} as {}", id.0);
                            self.script_channels.push(id);
                            bridge.reply(&req, &i32::from(id.0).to_le_bytes());
                        }
                        Err(e) => {
                            log::warn!("cam: the script's channel {name:?}: {e}");
                            bridge.reply(&req, &(-1i32).to_le_bytes());
                        }
                    }
                }
                ScriptRequest::Event {
                    channel,
                    event,
                    wait_ack,
                } => {
                    let id = ChannelId(*channel);
                    if !self.script_channels.contains(&id) || !self.dev.caps().flags.events() {
                        bridge.reply(&req, &[1]);
                        continue;
                    }
                    let ev = (*event != 0xFFFF).then_some(*event);
                    let ack_req = *wait_ack && self.dev.caps().flags.ack();
                    self.dev.send_event(id, ev, ack_req);
                    if ack_req {
                        self.ack_waiters.push_back(req);
                    } else {
                        bridge.reply(&req, &[0]);
                    }
                }
                ScriptRequest::Init(c) => {
                    let max = self.dev.config().max_payload;
                    let ok = (u32::from(omv_proto::MIN_PAYLOAD)..=u32::from(max))
                        .contains(&c.max_payload)
                        && c.lock_interval_ms >= 10;
                    if !ok {
                        bridge.reply(&req, &[1]);
                        continue;
                    }
                    let mut dc = self.dev.config().clone();
                    dc.rtx_retries = c.rtx_retries.min(255) as u8;
                    dc.rtx_timeout = omv_proto::Duration::from_millis(u64::from(c.rtx_timeout_ms));
                    dc.lock_interval =
                        omv_proto::Duration::from_millis(u64::from(c.lock_interval_ms));
                    let mut flags = 0;
                    for (on, f) in [
                        (c.crc, CapFlags::CRC),
                        (c.seq, CapFlags::SEQ),
                        (c.ack, CapFlags::ACK),
                        (c.events, CapFlags::EVENTS),
                    ] {
                        if on {
                            flags |= f.0;
                        }
                    }
                    // Clears the channel table: the script's channels go.
                    for id in std::mem::take(&mut self.script_channels) {
                        self.dev.unregister(id);
                    }
                    for w in self.ack_waiters.drain(..) {
                        bridge.reply(&w, &[3]);
                    }
                    self.seen_acks = self.dev.event_acks();
                    let caps = Caps {
                        flags: CapFlags(flags),
                        max_payload: c.max_payload as u16,
                    };
                    self.dev.reinit(dc, caps);
                    log::info!("cam: protocol.init: {caps:?}");
                    bridge.reply(&req, &[0]);
                }
            }
        }
    }

    fn fail_ack_waiters(&mut self) {
        self.seen_acks = self.dev.event_acks();
        if let Some(bridge) = &self.bridge {
            for w in self.ack_waiters.drain(..) {
                bridge.reply(&w, &[3]);
            }
        }
    }

    /// After a script: its channels are dropped (no events, as the
    /// firmware's deinit); the protocol re-initialisation waits for what is
    /// queued, SOFT_REBOOT last, to go out ([`finish_soft_reset`](Self::finish_soft_reset)).
    fn soft_reboot(&mut self, now: Instant) {
        for id in std::mem::take(&mut self.script_channels) {
            self.dev.unregister(id);
        }
        self.fail_ack_waiters();
        // The firmware's send is blocking: at worst the last queued packet
        // goes through its whole resend schedule first.
        let c = self.dev.config();
        let schedule = (0..=c.rtx_retries).fold(omv_proto::Duration::ZERO, |t, i| {
            t.saturating_add(c.rtx_timeout.saturating_mul(1u32 << i.min(16)))
        });
        self.soft_reset_due = Some(now + schedule + omv_proto::Duration::from_millis(100));
    }

    /// The soft reset proper, once the endpoint is idle (or its bound
    /// passed): the protocol starts over with the start-up configuration
    /// (everything on unless `SimConfig::device` says otherwise), a
    /// replacing script's "started" event follows, and the banner is
    /// printed. Returns whether it happened.
    fn finish_soft_reset(&mut self, now: Instant) -> bool {
        let Some(due) = self.soft_reset_due else {
            return false;
        };
        if !self.dev.is_idle() && now < due {
            return false;
        }
        self.soft_reset_due = None;
        let dc = device_config(&self.config, &self.profile);
        let startup = dc.startup();
        self.dev.reinit(dc, startup);
        self.seen_acks = self.dev.event_acks();
        self.output.write_str("MPY: soft reboot\r\n");
        true
    }

    /// A silent protocol reset (what a firmware watchdog or protocol
    /// re-initialisation does without telling the host): sequence, caps and
    /// locks go back to the start-up configuration and queued packets are
    /// dropped; channels, their contents and the running script are kept.
    /// For fault injection in simulations.
    pub fn protocol_reset(&mut self) {
        let dc = self.dev.config().clone();
        let startup = self.dev.startup_caps();
        self.dev.reinit(dc, startup);
        self.fail_ack_waiters();
        log::info!("cam: silent protocol reset");
    }

    /// Behaves like a rebooted cam: the running script stops, every protocol
    /// state (sequence, caps, locks, queued packets) is dropped, the
    /// built-in and `--channel` channels start fresh, and channels
    /// registered through [`register_channel`](Self::register_channel) are
    /// carried over at the same ids.
    pub fn reboot(&mut self) {
        let system = SystemEvents::new();
        let output = self.profile.stdout_buffer();
        let dev = match boot(
            &self.config,
            &self.profile,
            &system,
            &output,
            &self.frames,
            &self.env,
        ) {
            Ok(d) => d,
            Err(e) => {
                // Cannot happen: the same configuration booted before.
                log::error!("cam: reboot failed ({e}); keeping the current state");
                return;
            }
        };
        let mut old = std::mem::replace(&mut self.dev, dev);
        for c in &self.api_channels {
            if let Some(backend) = old.unregister(c.id) {
                if let Err(e) = self.dev.register_at(c.id, &c.name, backend) {
                    log::warn!("cam: channel {:?} lost in reboot: {e}", c.name);
                }
            }
        }
        drop(old); // stops the running script
        self.script_channels.clear();
        self.fail_ack_waiters();
        self.system = system;
        self.output = output;
        self.faults.clear();
        self.reboots += 1;
        log::info!("cam: rebooted ({} so far)", self.reboots);
    }
}

/// The endpoint's start-up configuration.
fn device_config(config: &SimConfig, profile: &BoardProfile) -> DeviceConfig {
    let mut dc = config.device.clone();
    dc.sysinfo = profile.sysinfo;
    dc.version = profile.version;
    // The board's packet buffer (or the override): announced, and the most
    // SET_CAPS accepts.
    dc.max_payload = config.max_payload.unwrap_or(profile.max_payload);
    if dc.memory.is_none() {
        dc.memory = Some(memory_of(profile));
    }
    dc
}

fn make_source(config: &SimConfig) -> Result<Box<dyn FrameSource>, SimError> {
    Ok(match &config.frames_dir {
        Some(dir) => Box::new(DirSource::new(dir).map_err(|source| SimError::Frames {
            path: dir.clone(),
            source,
        })?),
        None => match config.resolution {
            Some((w, h)) => Box::new(PatternSource::new(w, h)),
            None => Box::new(PatternSource::default()),
        },
    })
}

/// The script runtime's bridge, for Python scripts on unix; `None` for
/// other runners (or where the runtime cannot be set up, with a warning).
fn start_bridge(
    config: &SimConfig,
    profile: &BoardProfile,
    frames: &Arc<FrameBuffer>,
) -> Result<Option<Bridge>, SimError> {
    if !matches!(config.engine, ScriptEngine::Python(_)) || !cfg!(unix) {
        return Ok(None);
    }
    let source = make_source(config)?;
    let info = &profile.sysinfo;
    let uid = info
        .device_id
        .iter()
        .map(|w| format!("{w:08X}"))
        .collect::<String>();
    let fw = profile.version.firmware;
    let heap = memory_of(profile).entries[0].total;
    let fmt = |f: PixFormat| format!("{:#x}", f.0);
    let mut vars = vec![
        (
            "BOARD_TYPE".into(),
            profile.board.name().to_ascii_uppercase(),
        ),
        ("ARCH".into(), profile.board.display_name().to_string()),
        ("UNIQUE_ID".into(), uid),
        ("FIRMWARE".into(), format!("{}.{}.{}", fw[0], fw[1], fw[2])),
        ("CPU_MHZ".into(), profile.cpu_mhz.to_string()),
        ("HEAP".into(), heap.to_string()),
        ("MAX_PAYLOAD".into(), config.device.max_payload.to_string()),
        (
            "SENSOR_ID".into(),
            format!("{:#x}", profile.sensors().first().copied().unwrap_or(0)),
        ),
        (
            "PIXFORMATS".into(),
            format!(
                "RGB565={},GRAYSCALE={},JPEG={},BAYER={},YUV422={},BINARY={}",
                fmt(PixFormat::RGB565),
                fmt(PixFormat::GRAYSCALE),
                fmt(PixFormat::JPEG),
                fmt(PixFormat::BAYER_BGGR),
                fmt(PixFormat::YUV422),
                fmt(PixFormat::BINARY)
            ),
        ),
    ];
    #[cfg(unix)]
    {
        let bridge = match Bridge::new(source, frames.clone(), RuntimeFacts::default()) {
            Ok(b) => b,
            Err(e) => {
                log::warn!("cam: scripts run without the cam runtime: {e}");
                return Ok(None);
            }
        };
        let flash = match &config.flash_dir {
            Some(d) => d.clone(),
            None => bridge.dir().join("flash"),
        };
        if let Err(e) = std::fs::create_dir_all(&flash) {
            log::warn!("cam: flash directory {}: {e}", flash.display());
        }
        vars.push(("FLASH".into(), flash.display().to_string()));
        Ok(Some(bridge.with_facts(RuntimeFacts { vars })))
    }
    #[cfg(not(unix))]
    {
        let _ = (source, frames, vars);
        Ok(None)
    }
}

/// A freshly booted endpoint: built-in channels and `--channel` buffers.
fn boot(
    config: &SimConfig,
    profile: &BoardProfile,
    system: &SystemEvents,
    output: &SharedOutput,
    frames: &Arc<FrameBuffer>,
    env: &[(String, String)],
) -> Result<DeviceEndpoint, SimError> {
    let dc = device_config(config, profile);
    let mut dev = DeviceEndpoint::new(dc);
    // No host has opened the port yet: events go nowhere, as on a cam
    // whose transport is inactive. The host's first bytes change that.
    dev.set_transport_active(false);
    let reg = |dev: &mut DeviceEndpoint, id, name: &str, b: Box<dyn ChannelBackend>| {
        dev.register_at(id, name, b)
            .map(|_| ())
            .map_err(|source| SimError::Channel {
                name: name.to_string(),
                source,
            })
    };
    let mut runner = config.engine.make();
    runner.set_env(env.to_vec());
    let stdin = StdinChannel::new(runner, output.clone(), system.clone());
    reg(&mut dev, ChannelId::STDIN, "stdin", Box::new(stdin))?;
    reg(
        &mut dev,
        ChannelId::STDOUT,
        "stdout",
        Box::new(StdoutChannel::new(output.clone())),
    )?;
    let source = make_source(config)?;
    let mut sc = profile.stream_config();
    if let Some(fps) = config.fps {
        sc.fps = fps;
    }
    if let Some((w, h)) = config.resolution {
        if u64::from(w) * u64::from(h) * 2 <= sc.max_frame_bytes as u64 {
            (sc.raw_width, sc.raw_height) = (w, h);
        } else {
            log::info!(
                "cam: a {w}x{h} RGB565 frame does not fit the {} byte stream buffer: raw frames stay {}x{} until RAW_CFG",
                sc.max_frame_bytes,
                sc.raw_width,
                sc.raw_height
            );
        }
    }
    let mut stream = StreamChannel::new(source, sc);
    if !config.free_running_frames {
        stream = stream.with_frame_buffer(frames.clone());
    }
    reg(&mut dev, ChannelId::STREAM, "stream", Box::new(stream))?;
    if config.profiler {
        let p = ProfileChannel::new(profile.profile_config()).with_output(output.clone());
        reg(&mut dev, ChannelId::PROFILE, "profile", Box::new(p))?;
    }
    for spec in &config.channels {
        let checked = ChannelSpec::new(&spec.name, spec.size)?;
        let b = BufferChannel::with_pattern(checked.size);
        dev.register(&checked.name, Box::new(b))
            .map_err(|source| SimError::Channel {
                name: spec.name.clone(),
                source,
            })?;
    }
    Ok(dev)
}

impl SansIoCam for SimCam {
    fn handle_input(&mut self, now: Instant, data: &[u8]) {
        SimCam::handle_input(self, now, data)
    }
    fn transport_closed(&mut self) {
        SimCam::port_closed(self)
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        SimCam::poll_transmit(self, now)
    }
    fn handle_timeout(&mut self, now: Instant) {
        SimCam::handle_timeout(self, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        SimCam::poll_timeout(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_specs_parse() {
        let s = |t: &str| t.parse::<ChannelSpec>();
        assert_eq!(
            s("bulk:1M"),
            Ok(ChannelSpec {
                name: "bulk".into(),
                size: 1 << 20
            })
        );
        assert_eq!(s("a:4k").unwrap().size, 4096);
        assert_eq!(s("a:4KiB").unwrap().size, 4096);
        assert_eq!(s("a:100").unwrap().size, 100);
        assert_eq!(s("a:64M").unwrap().size, MAX_CHANNEL_SIZE);
        assert_eq!(s("thirteen_char:1").unwrap().name, "thirteen_char");
        assert!(matches!(
            s("fourteen_chars:1"),
            Err(ChannelSpecError::Name(_))
        ));
        assert!(matches!(s(":1"), Err(ChannelSpecError::Name(_))));
        assert!(matches!(s("bulk"), Err(ChannelSpecError::Format(_))));
        assert!(matches!(s("a:0"), Err(ChannelSpecError::Range(0))));
        assert!(matches!(s("a:65M"), Err(ChannelSpecError::Range(_))));
        assert!(matches!(
            s("a:99999999999999999999M"),
            Err(ChannelSpecError::Size(_))
        ));
        assert!(matches!(
            s("a:18446744073709551615M"),
            Err(ChannelSpecError::Range(_))
        ));
        for bad in ["a:", "a:M", "a:1.5M", "a:-1", "a:1G", "a:0x10"] {
            assert!(matches!(s(bad), Err(ChannelSpecError::Size(_))), "{bad}");
        }
    }

    #[test]
    fn resolutions_parse_and_are_checked() {
        assert_eq!(parse_resolution("640x480").unwrap(), (640, 480));
        assert_eq!(parse_resolution(" 1X1 ").unwrap(), (1, 1));
        assert_eq!(parse_resolution("4096x4096").unwrap(), (4096, 4096));
        for bad in [
            "", "640", "x", "640x", "x480", "640*480", "-1x5", "6.5x4", "0x10x2", "axb",
        ] {
            assert!(
                matches!(parse_resolution(bad), Err(SimError::ResolutionSyntax(_))),
                "{bad:?}"
            );
        }
        for bad in ["0x480", "640x0", "4097x1", "99999999999x1"] {
            assert!(
                matches!(parse_resolution(bad), Err(SimError::Resolution { .. })),
                "{bad:?}"
            );
        }
        let e = parse_resolution("0x480").unwrap_err().to_string();
        assert_eq!(e, "resolution must be 1x1 to 4096x4096 pixels, got 0x480");
    }

    #[test]
    fn build_rejects_bad_settings() {
        let cfg = || SimConfig::new().in_process(|_, _| {});
        assert!(matches!(
            cfg().channel("", 1).build(),
            Err(SimError::ChannelSpec(_))
        ));
        assert!(matches!(
            cfg().channel("x", 0).build(),
            Err(SimError::ChannelSpec(_))
        ));
        assert!(matches!(
            cfg().channel("stdin", 1).build(),
            Err(SimError::Channel { .. })
        ));
        assert!(matches!(
            cfg().channel("b", 1).channel("b", 1).build(),
            Err(SimError::Channel { .. })
        ));
        assert!(matches!(cfg().fps(0.0).build(), Err(SimError::Fps(_))));
        for (w, h) in [
            (0, 240),
            (320, 0),
            (0, 0),
            (4097, 16),
            (16, 4097),
            (u32::MAX, u32::MAX),
        ] {
            assert!(
                matches!(
                    cfg().resolution(w, h).build(),
                    Err(SimError::Resolution { width, height }) if (width, height) == (w, h)
                ),
                "{w}x{h}"
            );
        }
        for (w, h) in [(1, 1), (640, 480), (4096, 4096)] {
            assert!(cfg().resolution(w, h).build().is_ok(), "{w}x{h}");
        }
        assert!(matches!(
            cfg().resolution(64, 48).frames_dir("/tmp").build(),
            Err(SimError::ResolutionWithFrames)
        ));
        let bad = FaultConfig {
            drop_rate: 2.0,
            ..FaultConfig::default()
        };
        assert!(matches!(cfg().faults(bad).build(), Err(SimError::Fault(_))));
        let missing = cfg().frames_dir("/nonexistent/frames").build();
        assert!(matches!(missing, Err(SimError::Frames { .. })));
        // 28 user channels fill ids 4..=31; one more has no id.
        let mut many = cfg();
        for i in 0..29 {
            many = many.channel(&format!("c{i}"), 1);
        }
        assert!(matches!(
            many.build(),
            Err(SimError::Channel {
                source: RegisterError::NoFreeId,
                ..
            })
        ));
    }
}
