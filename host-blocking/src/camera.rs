//! [`Camera`]: the blocking host API, at parity with the stock
//! `openmv.Camera` (package 1.0.7) and beyond.

use std::collections::VecDeque;
use std::time::Duration;

use omv_proto::channel::ChannelEntry;
use omv_proto::frame::FrameHeader;
use omv_proto::host::{Command, Completion, HostStats, Reply};
use omv_proto::memory::MemoryStats;
use omv_proto::poll::PollBitmap;
use omv_proto::profile::{decode_records, record_size};
use omv_proto::shape::Shape;
use omv_proto::stats::Stats;
use omv_proto::sysinfo::SysInfo;
use omv_proto::version::Version;
use omv_proto::{ChannelId, DecodeError, Opcode, Status};

use crate::config::CameraConfig;
use crate::driver::{endpoint, Port, READ_BUF};
use crate::error::{Error, Result};
use crate::events::{Event, EventHandler, EventState};
use crate::symbols::SymbolTable;
use crate::transport::{SerialTransport, TcpTransport, Transport};
use crate::types::{ChannelKey, ChannelStatus, Frame, ProfileEntry, RawFrame, SystemInfo};

/// stdin ioctl: stop the running script.
pub const STDIN_STOP: u32 = 1;
/// stdin ioctl: run the uploaded script.
pub const STDIN_EXEC: u32 = 2;
/// stdin ioctl: clear the script buffer.
pub const STDIN_RESET: u32 = 3;
/// stream ioctl: streaming on/off (u32).
pub const STREAM_CTRL: u32 = 0;
/// stream ioctl: raw (uncompressed) frames on/off (u32).
pub const STREAM_RAW_CTRL: u32 = 1;
/// stream ioctl: raw frame resolution (u32 width, u32 height).
pub const STREAM_RAW_CFG: u32 = 2;
/// stream ioctl: select the image sensor (u32 chip id).
pub const STREAM_SOURCE: u32 = 3;
/// profile ioctl: 0 inclusive, 1 exclusive timing (u32).
pub const PROFILE_MODE: u32 = 0;
/// profile ioctl: bind a PMU counter to an event (u32 counter, u32 event).
pub const PROFILE_SET_EVENT: u32 = 1;
/// profile ioctl: clear the counters.
pub const PROFILE_RESET: u32 = 2;

/// The PMU events the stock `profiler_reset(None)` assigns to counters
/// 0..8: CPU cycles, and L1I, L1D and L2D cache behaviour.
pub const DEFAULT_PROFILE_EVENTS: [u32; 8] = [
    0x0039, 0x0023, 0x0024, 0x0001, 0x0003, 0xC102, 0x02CC, 0xC303,
];

/// Largest profile table accepted (shape product), against a lying shape.
const MAX_PROFILE_BYTES: u64 = 64 * 1024 * 1024;

/// Where the port comes from on [`Camera::connect`].
enum Connector {
    /// Open `config.port` as a serial port.
    Serial,
    /// Connect to a TCP address.
    Tcp(String),
    /// A transport given by the caller (taken by the first connect).
    Provided(Option<Port>),
}

/// A cam, reached over a serial port, TCP or any [`Transport`].
///
/// Every call blocks until done. Methods named like the stock package's
/// resync and retry on timeouts and CHECKSUM/SEQUENCE/TIMEOUT NAKs (see
/// [`Camera::retry`]); the by-id primitives (`channel_*_at`, `channel_lock`,
/// `channel_ioctl`, [`Camera::request`], ...) resync on those errors but
/// return them, so that they can be composed inside one `retry`.
///
/// ```no_run
/// use omv_blocking::{Camera, CameraConfig};
/// # fn main() -> omv_blocking::Result<()> {
/// let mut cam = Camera::open(CameraConfig::new("/dev/ttyACM0"))?;
/// cam.exec("print('hello')")?;
/// if let Some(frame) = cam.read_frame()? {
///     println!("{}x{} {}", frame.width, frame.height, frame.pixfmt);
/// }
/// println!("{:?}", cam.channel_read("stdout", None)?);
/// # Ok(()) }
/// ```
pub struct Camera {
    pub(crate) config: CameraConfig,
    connector: Connector,
    pub(crate) port: Option<Port>,
    pub(crate) port_name: String,
    pub(crate) host: omv_proto::host::HostEndpoint,
    pub(crate) epoch: std::time::Instant,
    pub(crate) rbuf: Vec<u8>,
    pub(crate) channels: Vec<ChannelEntry>,
    pub(crate) channels_stale: bool,
    version: Option<Version>,
    sysinfo: Option<SystemInfo>,
    pub(crate) pending: VecDeque<Event>,
    pub(crate) handler: Option<Box<dyn EventHandler>>,
    pub(crate) state: EventState,
    resyncs: u64,
    retry_depth: u32,
    stdout_carry: Vec<u8>,
    /// Opcode of the last request written to the port (ACKs excluded):
    /// which handshake step a failed connect was waiting on.
    pub(crate) last_request: Option<Opcode>,
}

impl std::fmt::Debug for Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Camera")
            .field("port", &self.port_name)
            .field("connected", &self.is_connected())
            .field("caps", &self.host.caps())
            .finish_non_exhaustive()
    }
}

impl Camera {
    fn with_connector(config: CameraConfig, connector: Connector, port_name: String) -> Camera {
        Camera {
            host: endpoint(&config),
            config,
            connector,
            port: None,
            port_name,
            epoch: std::time::Instant::now(),
            rbuf: vec![0u8; READ_BUF],
            channels: Vec::new(),
            channels_stale: false,
            version: None,
            sysinfo: None,
            pending: VecDeque::new(),
            handler: None,
            state: EventState::default(),
            resyncs: 0,
            retry_depth: 0,
            stdout_carry: Vec::new(),
            last_request: None,
        }
    }

    /// A camera on the serial port `config.port` (not yet connected).
    pub fn new(config: CameraConfig) -> Camera {
        let name = config.port.clone();
        Camera::with_connector(config, Connector::Serial, name)
    }

    /// A camera reached over TCP at `addr` (`host:port`), not yet connected.
    /// `config.port` is ignored.
    pub fn tcp(addr: &str, config: CameraConfig) -> Camera {
        Camera::with_connector(config, Connector::Tcp(addr.to_string()), addr.to_string())
    }

    /// A camera on an already open transport (an in-memory link, a custom
    /// port...), not yet connected. The transport is closed by
    /// [`disconnect`](Self::disconnect) and cannot be reopened.
    pub fn with_transport(transport: impl Transport + 'static, config: CameraConfig) -> Camera {
        let name = transport.name().to_string();
        Camera::with_connector(config, Connector::Provided(Some(Box::new(transport))), name)
    }

    /// [`new`](Self::new) then [`connect`](Self::connect).
    pub fn open(config: CameraConfig) -> Result<Camera> {
        let mut cam = Camera::new(config);
        cam.connect()?;
        Ok(cam)
    }

    /// The configuration.
    pub fn config(&self) -> &CameraConfig {
        &self.config
    }

    /// The port's name (device path, address or transport name).
    pub fn port_name(&self) -> &str {
        &self.port_name
    }

    // ----------------------------------------------------------------
    // Connection
    // ----------------------------------------------------------------

    /// Opens the port and performs the handshake: resync (SYNC, GET_CAPS,
    /// SET_CAPS), then caches the channel list, version and system
    /// information, and logs the system information. On failure the port
    /// is closed again (a transport given to
    /// [`with_transport`](Self::with_transport) is kept for another try).
    /// A silent port fails after about `max_retry × timeout`.
    pub fn connect(&mut self) -> Result<()> {
        self.config.validate()?;
        let port = match &mut self.connector {
            Connector::Provided(slot) => match slot.take().or_else(|| self.port.take()) {
                Some(p) => p,
                None => {
                    return Err(Error::Io {
                        port: self.port_name.clone(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::NotConnected,
                            "the transport was closed by disconnect() and cannot be reopened",
                        ),
                    })
                }
            },
            Connector::Serial => {
                self.port = None;
                let t = SerialTransport::open(
                    &self.config.port,
                    self.config.baudrate,
                    self.config.timeout,
                )
                .map_err(|source| Error::Io {
                    port: self.config.port.clone(),
                    source,
                })?;
                Box::new(t)
            }
            Connector::Tcp(addr) => {
                self.port = None;
                let t = TcpTransport::connect(addr, self.config.timeout).map_err(|source| {
                    Error::Io {
                        port: addr.clone(),
                        source,
                    }
                })?;
                Box::new(t)
            }
        };
        self.host = endpoint(&self.config);
        self.port = Some(port);
        self.channels.clear();
        self.version = None;
        self.sysinfo = None;
        self.stdout_carry.clear();
        let r = self.handshake();
        if r.is_err() {
            // A caller's transport stays available for another connect.
            if let (Connector::Provided(slot), Some(p)) = (&mut self.connector, self.port.take()) {
                *slot = Some(p);
            }
            self.disconnect();
        }
        r
    }

    fn handshake(&mut self) -> Result<()> {
        self.resync()?;
        self.update_channels()?;
        let v = self.retry(|c| c.read_version())?;
        self.version = Some(v);
        let s = self.retry(|c| c.read_system_info())?;
        self.sysinfo = Some(s);
        self.print_system_info();
        Ok(())
    }

    /// Closes the port (also done on drop). Cached cam information is
    /// forgotten; counters and pending events are kept.
    pub fn disconnect(&mut self) {
        if self.port.is_some() {
            log::debug!("{}: disconnecting", self.port_name);
        }
        self.host.disconnect();
        self.port = None;
        self.channels.clear();
        self.channels_stale = false;
        self.version = None;
        self.sysinfo = None;
        self.stdout_carry.clear();
    }

    /// True while the port is open and the link is synchronised.
    pub fn is_connected(&self) -> bool {
        self.port.is_some() && self.host.is_connected()
    }

    /// Reboots the cam (SYS_RESET). It sends no answer and the link drops,
    /// so the port is closed; call [`connect`](Self::connect) once the cam
    /// is back.
    pub fn reset(&mut self) -> Result<()> {
        self.oneway(Opcode::SYS_RESET)
    }

    /// Makes the cam enter its bootloader (SYS_BOOT); the port is closed.
    pub fn boot(&mut self) -> Result<()> {
        self.oneway(Opcode::SYS_BOOT)
    }

    fn oneway(&mut self, op: Opcode) -> Result<()> {
        self.check_connected()?;
        let cmd = Command::system(op);
        self.host
            .send_oneway(&cmd)
            .map_err(|e| Error::from_request(e, op, 0, &self.port_name))?;
        let r = self.flush_transmits();
        self.disconnect();
        r
    }

    /// Re-runs the protocol handshake from scratch (SYNC with `max_retry`
    /// attempts, then GET_CAPS/SET_CAPS). The cam releases every channel
    /// lock. Done automatically after a retryable failure.
    pub fn resync(&mut self) -> Result<()> {
        if self.port.is_none() {
            return Err(Error::NotConnected);
        }
        log::info!("{}: resynchronizing", self.port_name);
        self.resyncs += 1;
        // SYNC has `max_retry` attempts inside the endpoint; a lost
        // GET_CAPS/SET_CAPS answer restarts the whole handshake, also up
        // to `max_retry` times.
        let attempts = self.config.max_retry.max(1);
        let mut attempt = 1;
        loop {
            let now = self.now();
            self.host.connect(now);
            match self.finish_connect() {
                Err(e) if e.is_retryable() && attempt < attempts && self.port.is_some() => {
                    log::warn!("{}: handshake failed ({e}), starting over", self.port_name);
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    fn finish_connect(&mut self) -> Result<()> {
        match self.run_op()? {
            Completion::Connected(Ok(caps)) => {
                log::debug!("{}: link up, caps {caps:?}", self.port_name);
                Ok(())
            }
            Completion::Connected(Err(omv_proto::host::RequestError::ResyncFailed {
                attempts,
            })) => Err(Error::ResyncFailed {
                port: self.port_name.clone(),
                attempts,
                timeout: self.config.timeout,
            }),
            Completion::Connected(Err(e)) => {
                // Past SYNC, the handshake fails on GET_CAPS or SET_CAPS:
                // name the one that was sent last.
                let op = match self.last_request {
                    Some(op) if op == Opcode::PROTO_SET_CAPS => op,
                    _ => Opcode::PROTO_GET_CAPS,
                };
                Err(Error::from_request(e, op, 0, &self.port_name))
            }
            Completion::Request(_) => Err(Error::NotConnected),
        }
    }

    /// Renegotiates the capabilities (CRC, sequence, ACK, events, max
    /// payload) from the configuration, clipping max payload to the cam's.
    pub fn update_capabilities(&mut self) -> Result<()> {
        self.check_connected()?;
        let now = self.now();
        self.host
            .renegotiate(now)
            .map_err(|e| Error::from_request(e, Opcode::PROTO_GET_CAPS, 0, &self.port_name))?;
        match self.finish_connect() {
            Err(e) if e.is_retryable() && self.port.is_some() => {
                self.resync()?;
                Err(e)
            }
            r => r,
        }
    }

    /// Changes the capability settings and renegotiates them.
    ///
    /// ```no_run
    /// # fn f(cam: &mut omv_blocking::Camera) -> omv_blocking::Result<()> {
    /// cam.set_capabilities(|c| { c.ack = false; c.max_payload = 512; })?;
    /// # Ok(()) }
    /// ```
    pub fn set_capabilities(&mut self, change: impl FnOnce(&mut CameraConfig)) -> Result<()> {
        let mut cfg = self.config.clone();
        change(&mut cfg);
        cfg.validate()?;
        self.config = cfg;
        self.host.set_config(self.config.host_config());
        self.update_capabilities()
    }

    /// The negotiated capabilities.
    pub fn caps(&self) -> omv_proto::caps::Caps {
        self.host.caps()
    }

    /// Consumes events the cam already sent, without sending anything and
    /// without waiting. Returns how many arrived.
    pub fn poll_events(&mut self) -> Result<u64> {
        self.check_port()?;
        self.idle_receive(Duration::ZERO)
    }

    /// Waits up to `timeout` for at least one event (returning as soon as
    /// one arrives). Returns how many arrived. Blocks in the port read, so
    /// it costs nothing while waiting.
    pub fn wait_events(&mut self, timeout: Duration) -> Result<u64> {
        self.check_port()?;
        self.idle_receive(timeout)
    }

    /// Installs the event handler (replacing any previous one).
    ///
    /// ```no_run
    /// # fn f(cam: &mut omv_blocking::Camera) {
    /// cam.set_event_handler(|e: &omv_blocking::events::Event| println!("event {e}"));
    /// # }
    /// ```
    pub fn set_event_handler(&mut self, handler: impl EventHandler + 'static) {
        self.handler = Some(Box::new(handler));
    }

    /// Removes the event handler.
    pub fn clear_event_handler(&mut self) {
        self.handler = None;
    }

    /// The events received and not yet taken, oldest first.
    pub fn pending_events(&self) -> impl Iterator<Item = &Event> {
        self.pending.iter()
    }

    /// Takes every pending event, oldest first.
    pub fn take_events(&mut self) -> Vec<Event> {
        self.pending.drain(..).collect()
    }

    /// State derived from events (frame ready, script running, counters).
    pub fn event_state(&self) -> EventState {
        self.state
    }

    /// True when a frame-ready event arrived since the last frame read.
    pub fn frame_ready(&self) -> bool {
        self.state.frame_ready
    }

    /// Whether a script runs, as last reported by the cam's stdin events.
    pub fn script_running(&self) -> Option<bool> {
        self.state.script_running
    }

    /// Number of resyncs so far (initial ones included).
    pub fn resync_count(&self) -> u64 {
        self.resyncs
    }

    // ----------------------------------------------------------------
    // Retry and the request primitives
    // ----------------------------------------------------------------

    /// Runs `op`, retrying it after a retryable failure (timeout, NAK
    /// CHECKSUM/SEQUENCE/TIMEOUT, mismatched response) up to
    /// `config.retries` times. The failed request already resynced the
    /// link (which releases every channel lock on the cam), so `op` must
    /// redo its whole operation, locks included. Calls nested inside `op`
    /// do not retry on their own: the outermost `retry` does.
    ///
    /// ```no_run
    /// use omv_blocking::Camera;
    /// use omv_proto::{ChannelId, Opcode};
    /// # fn f(cam: &mut Camera) -> omv_blocking::Result<()> {
    /// // A custom command with the built-in resync-and-retry behaviour.
    /// let reply = cam.retry(|c| c.request(Opcode(0x30), ChannelId(5), b"\x01"))?;
    /// # Ok(()) }
    /// ```
    pub fn retry<T>(&mut self, mut op: impl FnMut(&mut Camera) -> Result<T>) -> Result<T> {
        if self.retry_depth > 0 {
            return op(self);
        }
        self.retry_depth += 1;
        let mut attempt = 0u8;
        let r = loop {
            match op(self) {
                Err(e)
                    if e.is_retryable() && attempt < self.config.retries && self.is_connected() =>
                {
                    attempt += 1;
                    log::warn!(
                        "{}: {e}; retrying ({attempt}/{})",
                        self.port_name,
                        self.config.retries
                    );
                }
                r => break r,
            }
        };
        self.retry_depth -= 1;
        r
    }

    fn check_port(&self) -> Result<()> {
        if self.port.is_none() {
            return Err(Error::NotConnected);
        }
        Ok(())
    }

    fn check_connected(&self) -> Result<()> {
        if !self.is_connected() {
            return Err(Error::NotConnected);
        }
        Ok(())
    }

    /// One request/response exchange. A retryable failure resyncs the
    /// link before the error is returned.
    fn transact(&mut self, cmd: &Command) -> Result<Reply> {
        self.check_connected()?;
        let now = self.now();
        self.host
            .request(now, cmd)
            .map_err(|e| Error::from_request(e, cmd.opcode, cmd.channel.0, &self.port_name))?;
        match self.run_op()? {
            Completion::Request(Ok(r)) => Ok(r),
            Completion::Request(Err(e)) => {
                let err = Error::from_request(e, cmd.opcode, cmd.channel.0, &self.port_name);
                if err.is_retryable() {
                    log::warn!("{}: {err}", self.port_name);
                    self.resync()?;
                }
                Err(err)
            }
            Completion::Connected(_) => Err(Error::NotConnected),
        }
    }

    fn transact_data(&mut self, cmd: &Command) -> Result<Vec<u8>> {
        Ok(Vec::from(self.transact(cmd)?.into_bytes()))
    }

    /// Sends a raw request and waits for its answer: `Some(Reply::Ack)`,
    /// `Some(Reply::Data(..))`, or `None` for SYS_RESET/SYS_BOOT, which
    /// have no answer (the port is then closed). No retry (wrap it in
    /// [`retry`](Self::retry) when the request is idempotent).
    pub fn request(
        &mut self,
        opcode: Opcode,
        channel: ChannelId,
        payload: &[u8],
    ) -> Result<Option<Reply>> {
        if opcode == Opcode::SYS_RESET || opcode == Opcode::SYS_BOOT {
            self.oneway(opcode)?;
            return Ok(None);
        }
        let cmd = Command {
            opcode,
            channel,
            payload: bytes::Bytes::copy_from_slice(payload),
        };
        self.transact(&cmd).map(Some)
    }

    // ----------------------------------------------------------------
    // Channel primitives (by id, no retry)
    // ----------------------------------------------------------------

    /// CHANNEL_LIST as sent by the cam, without touching the cache.
    pub fn channel_list(&mut self) -> Result<Vec<ChannelEntry>> {
        let d = self.transact_data(&Command::system(Opcode::CHANNEL_LIST))?;
        ChannelEntry::decode_list(&d).map_err(|source| Error::Malformed {
            what: "channel list",
            source,
        })
    }

    /// Locks channel `id`: `true` when granted, `false` when the cam
    /// answers BUSY (no data, already locked, or locked less than 10 ms
    /// ago). Prefer [`lock_channel`](Self::lock_channel), which unlocks on
    /// drop.
    pub fn channel_lock(&mut self, id: ChannelId) -> Result<bool> {
        self.busy_is_false(Command::new(Opcode::CHANNEL_LOCK, id))
    }

    /// Unlocks channel `id`: `false` when the cam answers BUSY.
    pub fn channel_unlock(&mut self, id: ChannelId) -> Result<bool> {
        self.busy_is_false(Command::new(Opcode::CHANNEL_UNLOCK, id))
    }

    fn busy_is_false(&mut self, cmd: Command) -> Result<bool> {
        match self.transact(&cmd) {
            Ok(_) => Ok(true),
            Err(e) if e.is_nak(Status::BUSY) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Locks channel `id` and returns a guard that unlocks it when dropped
    /// (ignoring errors: a failed link has released the lock anyway), or
    /// `None` when the cam answers BUSY. The guard dereferences to the
    /// camera.
    ///
    /// ```no_run
    /// # fn f(cam: &mut omv_blocking::Camera) -> omv_blocking::Result<()> {
    /// use omv_proto::ChannelId;
    /// if let Some(mut locked) = cam.lock_channel(ChannelId(3))? {
    ///     let size = locked.channel_size_at(ChannelId(3))?;
    ///     let data = locked.channel_read_at(ChannelId(3), 0, size)?;
    ///     locked.unlock()?; // or just drop it
    /// #   let _ = data;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn lock_channel(&mut self, id: ChannelId) -> Result<Option<ChannelLock<'_>>> {
        if !self.channel_lock(id)? {
            return Ok(None);
        }
        let resyncs = self.resyncs;
        Ok(Some(ChannelLock {
            cam: self,
            id,
            resyncs,
            held: true,
        }))
    }

    /// CHANNEL_SHAPE of channel `id`.
    pub fn channel_shape(&mut self, id: ChannelId) -> Result<Shape> {
        let d = self.transact_data(&Command::new(Opcode::CHANNEL_SHAPE, id))?;
        Shape::decode(&d).map_err(|source| Error::Malformed {
            what: "channel shape",
            source,
        })
    }

    /// CHANNEL_SIZE of channel `id`: bytes available.
    pub fn channel_size_at(&mut self, id: ChannelId) -> Result<u32> {
        let d = self.transact_data(&Command::new(Opcode::CHANNEL_SIZE, id))?;
        omv_proto::request::decode_u32(&d).map_err(|source| Error::Malformed {
            what: "channel size",
            source,
        })
    }

    /// Reads `len` bytes at `offset` from channel `id` (one request; the
    /// cam fragments the answer). A zero length reads nothing and sends
    /// nothing. The cam may send fewer bytes than asked (end of data).
    pub fn channel_read_at(&mut self, id: ChannelId, offset: u32, len: u32) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        if offset.checked_add(len).is_none() {
            return Err(Error::InvalidArgument(format!(
                "read of {len} bytes at offset {offset} passes 4 GiB"
            )));
        }
        self.transact_data(&Command::read(id, offset, len))
    }

    /// Writes `data` at `offset` to channel `id`, split into packets of
    /// `max_payload - 8` bytes at increasing offsets.
    pub fn channel_write_at(&mut self, id: ChannelId, offset: u32, data: &[u8]) -> Result<()> {
        let end = u32::try_from(data.len())
            .ok()
            .and_then(|n| offset.checked_add(n));
        if end.is_none() {
            return Err(Error::InvalidArgument(format!(
                "write of {} bytes at offset {offset} passes 4 GiB",
                data.len()
            )));
        }
        let chunk = usize::from(self.host.caps().max_payload)
            .saturating_sub(8)
            .max(1);
        let mut at = offset;
        for piece in data.chunks(chunk) {
            self.transact(&Command::write(id, at, piece))?;
            // Cannot overflow: checked above.
            at = at.wrapping_add(piece.len() as u32);
        }
        Ok(())
    }

    /// CHANNEL_IOCTL `cmd` with raw argument bytes; returns the answer's
    /// payload (empty for a plain ACK).
    pub fn channel_ioctl(&mut self, id: ChannelId, cmd: u32, args: &[u8]) -> Result<Vec<u8>> {
        self.transact_data(&Command::ioctl(id, cmd, args))
    }

    /// CHANNEL_IOCTL with u32 arguments (the stock `fmt='I...'` form).
    pub fn channel_ioctl_u32(&mut self, id: ChannelId, cmd: u32, args: &[u32]) -> Result<Vec<u8>> {
        let a: Vec<u8> = args.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.channel_ioctl(id, cmd, &a)
    }

    /// CHANNEL_POLL: the readiness bitmap.
    pub fn channel_poll(&mut self) -> Result<PollBitmap> {
        let d = self.transact_data(&Command::system(Opcode::CHANNEL_POLL))?;
        PollBitmap::decode(&d).map_err(|source| Error::Malformed {
            what: "poll bitmap",
            source,
        })
    }

    // ----------------------------------------------------------------
    // Channels by name
    // ----------------------------------------------------------------

    /// Refreshes the cached channel list from the cam (done automatically
    /// before a lookup once a channel (un)registration event arrived).
    pub fn update_channels(&mut self) -> Result<()> {
        self.channels_stale = false;
        let list = self.retry(|c| c.channel_list());
        let list = match list {
            Ok(l) => l,
            Err(e) => {
                self.channels_stale = true;
                return Err(e);
            }
        };
        log::info!("Registered channels ({}):", list.len());
        for c in &list {
            log::info!(
                "  ID: {}, Flags: 0x{:02X}, Name: {}",
                c.id,
                c.flags.0,
                c.name
            );
        }
        self.channels = list;
        Ok(())
    }

    /// The cached channel list (refreshed first when stale).
    pub fn channels(&mut self) -> Result<&[ChannelEntry]> {
        self.refresh_if_stale()?;
        Ok(&self.channels)
    }

    fn refresh_if_stale(&mut self) -> Result<()> {
        self.check_connected()?;
        // Take in events already sent (a registration must be seen before
        // the lookup it affects); a zero-timeout read, no waiting.
        if self.port.is_some() && !self.host.is_busy() {
            self.idle_receive(Duration::ZERO)?;
        }
        self.dispatch_events();
        if self.channels_stale {
            self.update_channels()?;
        }
        Ok(())
    }

    /// Looks a channel up by name or by id, refreshing the cache first if a
    /// registration event is pending. `None` when it does not exist
    /// (including an unknown id).
    ///
    /// ```no_run
    /// # fn f(cam: &mut omv_blocking::Camera) -> omv_blocking::Result<()> {
    /// use omv_proto::ChannelId;
    /// let stdout = cam.get_channel("stdout")?.map(|e| e.id);
    /// let name = cam.get_channel(ChannelId(3))?.map(|e| e.name);
    /// assert!(cam.get_channel(ChannelId(30))?.is_none());
    /// # Ok(()) }
    /// ```
    pub fn get_channel<'a>(
        &mut self,
        key: impl Into<ChannelKey<'a>>,
    ) -> Result<Option<ChannelEntry>> {
        self.refresh_if_stale()?;
        let key = key.into();
        Ok(self
            .channels
            .iter()
            .find(|c| match key {
                ChannelKey::Name(n) => c.name == n,
                ChannelKey::Id(id) => c.id == id,
            })
            .cloned())
    }

    /// The id of the channel named `name`.
    pub fn get_channel_id(&mut self, name: &str) -> Result<Option<ChannelId>> {
        Ok(self.get_channel(name)?.map(|e| e.id))
    }

    /// The name of channel `id` (`None` for an unknown id).
    pub fn get_channel_name(&mut self, id: ChannelId) -> Result<Option<String>> {
        Ok(self.get_channel(id)?.map(|e| e.name))
    }

    /// True when a channel named `name` exists.
    pub fn has_channel(&mut self, name: &str) -> Result<bool> {
        Ok(self.get_channel(name)?.is_some())
    }

    fn builtin(&mut self, name: &str) -> Result<ChannelId> {
        self.get_channel_id(name)?
            .ok_or_else(|| Error::Unsupported(format!("the cam has no {name:?} channel")))
    }

    /// Bytes available on the channel named `name` (0 when it does not
    /// exist, like the stock package).
    pub fn channel_size(&mut self, name: &str) -> Result<u32> {
        match self.get_channel_id(name)? {
            None => Ok(0),
            Some(id) => self.retry(|c| c.channel_size_at(id)),
        }
    }

    /// Reads from the channel named `name`: `size` bytes, or everything
    /// available when `None`. `None` when the channel does not exist.
    pub fn channel_read(&mut self, name: &str, size: Option<u32>) -> Result<Option<Vec<u8>>> {
        let Some(id) = self.get_channel_id(name)? else {
            return Ok(None);
        };
        self.retry(|c| {
            let n = match size {
                Some(n) => n,
                None => c.channel_size_at(id)?,
            };
            c.channel_read_at(id, 0, n)
        })
        .map(Some)
    }

    /// Writes `data` to the channel named `name` (split into packets).
    /// `false` when the channel does not exist.
    pub fn channel_write(&mut self, name: &str, data: &[u8]) -> Result<bool> {
        let Some(id) = self.get_channel_id(name)? else {
            return Ok(false);
        };
        self.retry(|c| c.channel_write_at(id, 0, data))?;
        Ok(true)
    }

    /// Polls every channel: which have data ready.
    pub fn read_status(&mut self) -> Result<ChannelStatus> {
        let bitmap = self.retry(|c| c.channel_poll())?;
        self.refresh_if_stale()?;
        let channels = self
            .channels
            .iter()
            .map(|e| (e.clone(), bitmap.is_ready(e.id)))
            .collect();
        Ok(ChannelStatus { bitmap, channels })
    }

    // ----------------------------------------------------------------
    // Scripts
    // ----------------------------------------------------------------

    /// Uploads `script` and runs it, exactly once: every attempt clears
    /// the cam's script buffer (STDIN_RESET), writes from offset 0 and
    /// sends EXEC, so a retried upload never appends twice. When EXEC's
    /// answer is lost but the cam reported the script started, the script
    /// is not run again.
    pub fn exec(&mut self, script: &str) -> Result<()> {
        if script.is_empty() {
            return Err(Error::InvalidArgument("the script is empty".into()));
        }
        let stdin = self.builtin("stdin")?;
        let data = script.as_bytes();
        self.retry(|c| {
            c.channel_ioctl(stdin, STDIN_RESET, &[])?;
            c.channel_write_at(stdin, 0, data)?;
            let started = c.state.scripts_started;
            match c.channel_ioctl(stdin, STDIN_EXEC, &[]) {
                Err(e) if e.is_retryable() && c.state.scripts_started > started => {
                    log::info!("EXEC's answer was lost but the script started: not re-running");
                    Ok(())
                }
                r => r.map(drop),
            }
        })
    }

    /// Stops the running script (the IDE's Stop button).
    pub fn stop(&mut self) -> Result<()> {
        let stdin = self.builtin("stdin")?;
        self.retry(|c| c.channel_ioctl(stdin, STDIN_STOP, &[]).map(drop))
    }

    /// Reads the script's pending output as text, or `None` when there is
    /// none. Multi-byte UTF-8 characters split across reads are kept
    /// whole; invalid bytes become U+FFFD.
    pub fn read_stdout(&mut self) -> Result<Option<String>> {
        let bytes = self.read_stdout_bytes()?;
        if bytes.is_empty() {
            return Ok(None);
        }
        let mut all = std::mem::take(&mut self.stdout_carry);
        all.extend_from_slice(&bytes);
        let (text, carry) = decode_utf8_prefix(&all);
        self.stdout_carry = carry.to_vec();
        Ok(if text.is_empty() { None } else { Some(text) })
    }

    /// Reads the script's pending output as raw bytes (empty when none).
    pub fn read_stdout_bytes(&mut self) -> Result<Vec<u8>> {
        let stdout = self.builtin("stdout")?;
        self.retry(|c| {
            let n = c.channel_size_at(stdout)?;
            c.channel_read_at(stdout, 0, n)
        })
    }

    // ----------------------------------------------------------------
    // Streaming
    // ----------------------------------------------------------------

    /// Turns the frame stream on or off. `raw` sends uncompressed frames
    /// scaled to `resolution` (required with `raw`); otherwise frames are
    /// JPEG-compressed by the cam.
    pub fn streaming(
        &mut self,
        enable: bool,
        raw: bool,
        resolution: Option<(u32, u32)>,
    ) -> Result<()> {
        if raw && resolution.is_none() {
            return Err(Error::InvalidArgument(
                "raw streaming needs a resolution (width, height)".into(),
            ));
        }
        let stream = self.builtin("stream")?;
        self.retry(|c| {
            if let (true, Some((w, h))) = (raw, resolution) {
                c.channel_ioctl_u32(stream, STREAM_RAW_CFG, &[w, h])?;
            }
            c.channel_ioctl_u32(stream, STREAM_RAW_CTRL, &[u32::from(raw)])?;
            c.channel_ioctl_u32(stream, STREAM_CTRL, &[u32::from(enable)])?;
            Ok(())
        })
    }

    /// Reads the waiting frame without decoding it: lock, size, read,
    /// unlock. `None` when no frame is waiting (lock BUSY or empty).
    pub fn read_frame_raw(&mut self) -> Result<Option<RawFrame>> {
        let stream = self.builtin("stream")?;
        self.retry(|c| {
            let Some(mut g) = c.lock_channel(stream)? else {
                return Ok(None);
            };
            g.state.frame_ready = false;
            let size = g.channel_size_at(stream)?;
            if (size as usize) <= FrameHeader::LEN_V4 {
                return Ok(None);
            }
            let data = g.channel_read_at(stream, 0, size)?;
            if let Err(e) = g.unlock() {
                // The frame is complete; a failed unlock resynced the link,
                // which released the lock.
                log::debug!("stream unlock failed after a complete read: {e}");
            }
            let header = FrameHeader::decode(&data).map_err(|source| Error::Malformed {
                what: "frame header",
                source,
            })?;
            let image = header.image_data(&data).to_vec();
            Ok(Some(RawFrame {
                header,
                data: image,
            }))
        })
    }

    /// Reads the waiting frame and converts it to RGB888 (JPEG, PNG,
    /// RGB565, grayscale, Bayer, YUV422, ...). `None` when no frame is
    /// waiting, like the stock package.
    pub fn read_frame(&mut self) -> Result<Option<Frame>> {
        match self.read_frame_raw()? {
            None => Ok(None),
            Some(raw) => Ok(Some(raw.decode()?)),
        }
    }

    // ----------------------------------------------------------------
    // Introspection
    // ----------------------------------------------------------------

    fn read_version(&mut self) -> Result<Version> {
        let d = self.transact_data(&Command::system(Opcode::PROTO_VERSION))?;
        Version::decode(&d).map_err(|source| Error::Malformed {
            what: "PROTO_VERSION payload",
            source,
        })
    }

    fn read_system_info(&mut self) -> Result<SystemInfo> {
        let d = self.transact_data(&Command::system(Opcode::SYS_INFO))?;
        SysInfo::decode(&d)
            .map(SystemInfo::from)
            .map_err(|source| Error::Malformed {
                what: "SYS_INFO payload",
                source,
            })
    }

    /// Protocol, bootloader and firmware versions (cached by connect).
    pub fn version(&mut self) -> Result<Version> {
        if let Some(v) = self.version {
            return Ok(v);
        }
        let v = self.retry(|c| c.read_version())?;
        self.version = Some(v);
        Ok(v)
    }

    /// Hardware capabilities and memory sizes (cached by connect).
    pub fn system_info(&mut self) -> Result<SystemInfo> {
        if let Some(s) = self.sysinfo {
            return Ok(s);
        }
        let s = self.retry(|c| c.read_system_info())?;
        self.sysinfo = Some(s);
        Ok(s)
    }

    /// The formatted system information block, one line per item.
    pub fn system_info_lines(&mut self) -> Result<Vec<String>> {
        let s = self.system_info()?;
        let v = self.version()?;
        let profiler = self.has_channel("profile")?;
        let caps = self.host.caps();
        let yn = |b: bool| if b { "Yes" } else { "No" };
        let mut l = vec![
            "=== OpenMV System Information ===".to_string(),
            format!("CPU ID: 0x{:08X}", s.cpu_id),
            format!("Device ID: {}", s.device_id_hex()),
        ];
        for (i, c) in s.chip_id.iter().enumerate() {
            if *c != 0 {
                l.push(format!("CSI{i}: 0x{c:08X}"));
            }
        }
        l.push(format!("USB ID: {:04X}:{:04X}", s.usb_vid, s.usb_pid));
        for (name, kb) in [
            ("Flash", s.flash_size_kb),
            ("RAM", s.ram_size_kb),
            ("Framebuffer", s.framebuffer_size_kb),
            ("Stream Buffer", s.stream_buffer_size_kb),
        ] {
            if kb > 0 {
                l.push(format!("{name}: {kb} KB"));
            }
        }
        l.push("Hardware capabilities:".into());
        for (name, b) in [
            ("GPU", s.gpu_present),
            ("NPU", s.npu_present),
            ("ISP", s.isp_present),
            ("Video Encoder", s.venc_present),
            ("JPEG Encoder", s.jpeg_present),
            ("DRAM", s.dram_present),
            ("CRC Hardware", s.crc_present),
        ] {
            l.push(format!("  {name}: {}", yn(b)));
        }
        l.push(format!(
            "  PMU: {} ({} counters)",
            yn(s.pmu_present),
            s.pmu_eventcnt
        ));
        for (name, b) in [
            ("Multi-core", s.multicore_present),
            ("WiFi", s.wifi_present),
            ("Bluetooth", s.bt_present),
            ("SD Card", s.sd_present),
            ("Ethernet", s.eth_present),
            ("USB High-Speed", s.usb_highspeed),
        ] {
            l.push(format!("  {name}: {}", yn(b)));
        }
        l.push(format!(
            "Profiler: {}",
            if profiler {
                "Available"
            } else {
                "Not available"
            }
        ));
        l.push(format!("Protocol version: {}", v.protocol_triple()));
        l.push(format!("Bootloader version: {}", v.bootloader_triple()));
        l.push(format!("Firmware version: {}", v.firmware_triple()));
        l.push(format!(
            "Protocol capabilities: CRC={}, SEQ={}, ACK={}, EVENTS={}, PAYLOAD={}",
            caps.flags.crc(),
            caps.flags.seq(),
            caps.flags.ack(),
            caps.flags.events(),
            caps.max_payload
        ));
        l.push("=================================".into());
        Ok(l)
    }

    /// Logs the system information block at INFO level (through `log`).
    /// Does nothing (but log a warning) when it cannot be read.
    pub fn print_system_info(&mut self) {
        match self.system_info_lines() {
            Ok(lines) => {
                for l in lines {
                    log::info!("{l}");
                }
            }
            Err(e) => log::warn!("system information unavailable: {e}"),
        }
    }

    /// Memory pool statistics (SYS_MEMORY, firmware 4.8 and later;
    /// [`Error::Unsupported`] on older firmware).
    pub fn memory_stats(&mut self) -> Result<MemoryStats> {
        let r = self.retry(|c| c.transact_data(&Command::system(Opcode::SYS_MEMORY)));
        match r {
            Ok(d) => MemoryStats::decode(&d).map_err(|source| Error::Malformed {
                what: "SYS_MEMORY payload",
                source,
            }),
            Err(e) if e.is_nak(Status::INVALID) => Err(Error::Unsupported(
                "SYS_MEMORY (memory statistics need firmware 4.8 or later)".into(),
            )),
            Err(e) => Err(e),
        }
    }

    /// The host side's transport counters.
    pub fn host_stats(&self) -> HostStats {
        self.host.stats()
    }

    /// The cam side's transport counters (PROTO_STATS).
    pub fn device_stats(&mut self) -> Result<Stats> {
        let d = self.retry(|c| c.transact_data(&Command::system(Opcode::PROTO_STATS)))?;
        Stats::decode(&d).map_err(|source| Error::Malformed {
            what: "PROTO_STATS payload",
            source,
        })
    }

    // ----------------------------------------------------------------
    // Profiler
    // ----------------------------------------------------------------

    /// Selects exclusive (`true`) or inclusive timing. A no-op when the
    /// cam has no profile channel.
    pub fn profiler_mode(&mut self, exclusive: bool) -> Result<()> {
        let Some(id) = self.get_channel_id("profile")? else {
            return Ok(());
        };
        self.retry(|c| {
            c.channel_ioctl_u32(id, PROFILE_MODE, &[u32::from(exclusive)])
                .map(drop)
        })
    }

    /// Clears the profile counters and assigns PMU events to the counters:
    /// `events[i]` to counter `i`, or [`DEFAULT_PROFILE_EVENTS`] when
    /// `None`. Only the cam's `pmu_eventcnt` counters are assigned. A
    /// no-op when the cam has no profile channel.
    pub fn profiler_reset(&mut self, events: Option<&[u32]>) -> Result<()> {
        let Some(id) = self.get_channel_id("profile")? else {
            return Ok(());
        };
        self.retry(|c| c.channel_ioctl(id, PROFILE_RESET, &[]).map(drop))?;
        let events = events.unwrap_or(&DEFAULT_PROFILE_EVENTS);
        let n = usize::from(self.system_info()?.pmu_eventcnt).min(events.len());
        for (counter, &event) in events[..n].iter().enumerate() {
            self.profiler_event(counter as u32, event)?;
        }
        Ok(())
    }

    /// Binds PMU counter `counter` to `event`. A no-op without a profile
    /// channel or a PMU.
    pub fn profiler_event(&mut self, counter: u32, event: u32) -> Result<()> {
        let Some(id) = self.get_channel_id("profile")? else {
            return Ok(());
        };
        if !self.system_info()?.pmu_present {
            return Ok(());
        }
        self.retry(|c| {
            c.channel_ioctl_u32(id, PROFILE_SET_EVENT, &[counter, event])
                .map(drop)
        })
    }

    /// Reads the profile records collected since the last reset (lock,
    /// shape, read, unlock), naming functions from `symbols` when given.
    /// `None` when the cam has no profile channel or no data.
    pub fn read_profile(
        &mut self,
        symbols: Option<&SymbolTable>,
    ) -> Result<Option<Vec<ProfileEntry>>> {
        let Some(id) = self.get_channel_id("profile")? else {
            return Ok(None);
        };
        let pmu = self.system_info()?.pmu_eventcnt;
        let raw = self.retry(|c| {
            let Some(mut g) = c.lock_channel(id)? else {
                return Ok(None);
            };
            let shape = g.channel_shape(id)?;
            let [count, size] = match shape.dims() {
                [a, b, ..] => [*a, *b],
                _ => return Ok(None),
            };
            let total = u64::from(count) * u64::from(size);
            if total == 0 {
                return Ok(None);
            }
            if total > MAX_PROFILE_BYTES {
                return Err(Error::Malformed {
                    what: "profile shape",
                    source: DecodeError::InvalidValue {
                        what: "profile table size",
                        value: total,
                    },
                });
            }
            let data = g.channel_read_at(id, 0, total as u32)?;
            if let Err(e) = g.unlock() {
                log::debug!("profile unlock failed after a complete read: {e}");
            }
            Ok(Some((data, size as usize)))
        })?;
        let Some((data, rsize)) = raw else {
            return Ok(None);
        };
        // The record layout fixes the event count; prefer the cam's
        // pmu_eventcnt when it fits, else derive it from the record size.
        let events = if record_size(pmu) <= rsize {
            pmu
        } else {
            u8::try_from(rsize.saturating_sub(record_size(0)) / 8).unwrap_or(u8::MAX)
        };
        let whole = data.len() - data.len() % rsize.max(1);
        let records =
            decode_records(&data[..whole], rsize, events).map_err(|source| Error::Malformed {
                what: "profile records",
                source,
            })?;
        Ok(Some(
            records
                .into_iter()
                .map(|record| ProfileEntry {
                    function: symbols
                        .and_then(|s| s.lookup(u64::from(record.address)))
                        .map(str::to_string),
                    caller: symbols
                        .and_then(|s| s.lookup(u64::from(record.caller)))
                        .map(str::to_string),
                    record,
                })
                .collect(),
        ))
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.disconnect();
    }
}

/// A locked channel: unlocks it when dropped. Dereferences to the
/// [`Camera`], so any call can be made while the lock is held.
pub struct ChannelLock<'a> {
    cam: &'a mut Camera,
    id: ChannelId,
    resyncs: u64,
    held: bool,
}

impl ChannelLock<'_> {
    /// The locked channel.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// True until unlocked, or until a resync released the lock on the cam.
    pub fn is_held(&self) -> bool {
        self.held && self.cam.resyncs == self.resyncs && self.cam.is_connected()
    }

    /// Unlocks now, reporting errors (dropping the guard ignores them).
    /// `Ok(false)` when the cam answered BUSY.
    pub fn unlock(&mut self) -> Result<bool> {
        if !self.is_held() {
            self.held = false;
            return Ok(true);
        }
        self.held = false;
        self.cam.channel_unlock(self.id)
    }
}

impl std::ops::Deref for ChannelLock<'_> {
    type Target = Camera;
    fn deref(&self) -> &Camera {
        self.cam
    }
}

impl std::ops::DerefMut for ChannelLock<'_> {
    fn deref_mut(&mut self) -> &mut Camera {
        self.cam
    }
}

impl Drop for ChannelLock<'_> {
    fn drop(&mut self) {
        if self.is_held() {
            self.held = false;
            if let Err(e) = self.cam.channel_unlock(self.id) {
                log::debug!("unlock of channel {} on drop failed: {e}", self.id);
            }
        }
    }
}

/// Splits `bytes` into the text it holds and an incomplete UTF-8 sequence
/// at its end (at most 3 bytes), replacing invalid bytes with U+FFFD.
fn decode_utf8_prefix(bytes: &[u8]) -> (String, &[u8]) {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return (out, &[]);
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // `good` is valid UTF-8 by construction.
                out.push_str(&String::from_utf8_lossy(good));
                match e.error_len() {
                    None => return (out, bad),
                    Some(n) => {
                        out.push('\u{FFFD}');
                        rest = &bad[n..];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_carry() {
        let s = "hé€".as_bytes();
        let (t, c) = decode_utf8_prefix(&s[..s.len() - 1]);
        assert_eq!(t, "hé");
        assert_eq!(c, &s[3..5]);
        let (t, c) = decode_utf8_prefix(b"a\xffb");
        assert_eq!(t, "a\u{FFFD}b");
        assert!(c.is_empty());
    }
}
