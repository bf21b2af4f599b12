//! [`Camera`]: the blocking host API, at parity with the stock
//! `openmv.Camera` (package 1.0.7) and beyond. Every method runs one
//! `omv-session` operation through the driver loop (`driver.rs`); the
//! policy (retries, resume, resync, exactly-once exec) is the session's.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use omv_proto::channel::ChannelEntry;
use omv_proto::host::{HostStats, Reply};
use omv_proto::memory::MemoryStats;
use omv_proto::poll::PollBitmap;
use omv_proto::shape::Shape;
use omv_proto::stats::Stats;
use omv_proto::version::Version;
use omv_proto::ChannelId;
use omv_proto::Opcode;
use omv_session::{
    ops, CameraConfig, ChannelKey, ChannelStatus, DecodeFrame, Error, Event, EventHandler,
    EventQueue, EventState, Frame, ProfileEntry, Progress, RawFrame, Result, Session, SessionStats,
    SystemInfo,
};

use crate::driver::READ_BUF;
use crate::symbols::SymbolTable;
use crate::transport::{SerialTransport, TcpTransport, Transport, UdpTransport};

/// Boxed transport (the camera owns one).
pub(crate) type Port = Box<dyn Transport>;

/// Where the port comes from on [`Camera::connect`].
pub use omv_session::REOPEN_PAUSE;

enum Connector {
    /// Open `config.port` as a serial port.
    Serial,
    /// Connect to a TCP address.
    Tcp(String),
    /// Send datagrams to a UDP address.
    Udp(String),
    /// A transport given by the caller (taken by the first connect).
    Provided(Option<Port>),
}

/// A cam, reached over a serial port, TCP or any [`Transport`].
///
/// Every call blocks until done. Named operations (by channel name, and
/// everything the stock package retries) resync and go on after timeouts
/// and CHECKSUM/SEQUENCE/TIMEOUT NAKs within their deadline
/// ([`CameraConfig::deadline_base`]), resuming transfers where they
/// stopped; the by-id primitives (`channel_lock`, `channel_ioctl`,
/// [`Camera::request`], ...) resync on those errors but return them, so
/// that they can be composed inside one [`Camera::retry`].
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
    pub(crate) session: Session,
    pub(crate) epoch: std::time::Instant,
    pub(crate) rbuf: Vec<u8>,
    pub(crate) tbuf: Vec<u8>,
    pub(crate) pending: EventQueue,
    pub(crate) handler: Option<Box<dyn EventHandler>>,
    pub(crate) cancel: Option<Cancel>,
    pub(crate) progress: Option<Box<dyn FnMut(Progress) + Send>>,
    retry_depth: u32,
}

impl std::fmt::Debug for Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Camera")
            .field("port", &self.port_name)
            .field("connected", &self.is_connected())
            .field("caps", &self.session.caps())
            .finish_non_exhaustive()
    }
}

impl Camera {
    fn with_connector(config: CameraConfig, connector: Connector, port_name: String) -> Camera {
        Camera {
            session: Session::new(config.session_config()),
            config,
            connector,
            port: None,
            port_name,
            epoch: std::time::Instant::now(),
            rbuf: vec![0u8; READ_BUF],
            tbuf: Vec::with_capacity(READ_BUF),
            pending: EventQueue::new(),
            handler: None,
            cancel: None,
            progress: None,
            retry_depth: 0,
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

    /// A camera reached over UDP at `addr` (`host:port`), one packet per
    /// datagram (e.g. `omv-sim --udp`), not yet connected. `config.port`
    /// is ignored. Keep `max_payload` within a datagram the path carries
    /// (the cam announces 1400 in the firmware's network example).
    pub fn udp(addr: &str, config: CameraConfig) -> Camera {
        Camera::with_connector(
            config.for_datagrams(),
            Connector::Udp(addr.to_string()),
            addr.to_string(),
        )
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

    /// Installs a cancel flag: once it is set (e.g. by a SIGINT handler),
    /// the operation in flight fails with a cancelled error within about
    /// [`CANCEL_POLL`](crate::CANCEL_POLL), whatever the cam does.
    pub fn set_cancel_flag(&mut self, flag: Arc<AtomicBool>) {
        self.cancel = Some(Cancel::Flag(flag));
    }

    /// Installs a cancel check instead of a flag: `check` is called at
    /// least every [`CANCEL_POLL`](crate::CANCEL_POLL) while an
    /// operation runs (on the calling thread), and once it returns true the
    /// operation fails with a cancelled error. For hosts whose interrupts
    /// must be polled, e.g. a Python binding checking for Ctrl-C.
    pub fn set_cancel_check(&mut self, check: impl FnMut() -> bool + Send + 'static) {
        self.cancel = Some(Cancel::Check(Box::new(check)));
    }

    /// Removes the cancel flag or check.
    pub fn clear_cancel_flag(&mut self) {
        self.cancel = None;
    }

    /// Installs a progress callback, called as a transfer's done bytes
    /// change (reads, writes, uploads).
    pub fn set_progress_handler(&mut self, f: impl FnMut(Progress) + Send + 'static) {
        self.progress = Some(Box::new(f));
    }

    /// The session's policy counters (resyncs, resumes, fast retransmits).
    pub fn session_stats(&self) -> SessionStats {
        self.session.stats()
    }

    // ----------------------------------------------------------------
    // Connection
    // ----------------------------------------------------------------

    fn open_port(&mut self) -> Result<Port> {
        match &mut self.connector {
            Connector::Provided(slot) => match slot.take().or_else(|| self.port.take()) {
                Some(p) => Ok(p),
                None => Err(Error::Io {
                    port: self.port_name.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotConnected,
                        "the transport was closed by disconnect() and cannot be reopened",
                    ),
                }),
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
                Ok(Box::new(t))
            }
            Connector::Tcp(addr) => {
                self.port = None;
                let t = TcpTransport::connect(addr, self.config.timeout).map_err(|source| {
                    Error::Io {
                        port: addr.clone(),
                        source,
                    }
                })?;
                Ok(Box::new(t))
            }
            Connector::Udp(addr) => {
                self.port = None;
                let t = UdpTransport::connect(addr).map_err(|source| Error::Io {
                    port: addr.clone(),
                    source,
                })?;
                Ok(Box::new(t))
            }
        }
    }

    /// For the session's [`PortCommand::Reopen`](omv_session::PortCommand):
    /// closes and reopens a serial port or TCP connection. A caller's
    /// transport cannot be reopened (false). A serial port stays closed
    /// for [`REOPEN_PAUSE`] so that the other end sees the hang-up (a
    /// pseudo-terminal reports it only while no one has it open).
    pub(crate) fn reopen_port(&mut self) -> bool {
        if matches!(self.connector, Connector::Provided(_)) {
            return false;
        }
        log::info!("{}: reopening the port", self.port_name);
        self.port = None;
        if matches!(self.connector, Connector::Serial) {
            std::thread::sleep(REOPEN_PAUSE);
        }
        match self.open_port() {
            Ok(p) => {
                self.port = Some(p);
                true
            }
            Err(e) => {
                log::warn!("{e}");
                false
            }
        }
    }

    /// Opens the port and performs the handshake: resync (SYNC, GET_CAPS,
    /// SET_CAPS), then caches the channel list, version and system
    /// information, and logs the system information. On failure the port
    /// is closed again (a transport given to
    /// [`with_transport`](Self::with_transport) is kept for another try).
    /// A silent port fails after about `max_retry × timeout`.
    pub fn connect(&mut self) -> Result<()> {
        self.config.validate()?;
        let port = self.open_port()?;
        self.session.set_config(self.config.session_config());
        self.session.port_closed();
        self.session.port_opened();
        self.port = Some(port);
        let r = self.run(ops::Connect);
        if r.is_err() {
            // A caller's transport stays available for another connect.
            if let (Connector::Provided(slot), Some(p)) = (&mut self.connector, self.port.take()) {
                *slot = Some(p);
            }
            self.disconnect();
            return r;
        }
        self.print_system_info();
        Ok(())
    }

    /// Closes the port (also done on drop). Cached cam information is
    /// forgotten; counters and pending events are kept.
    pub fn disconnect(&mut self) {
        if self.port.is_some() {
            log::debug!("{}: disconnecting", self.port_name);
        }
        self.session.port_closed();
        self.port = None;
    }

    /// True while the port is open and the link is synchronised.
    pub fn is_connected(&self) -> bool {
        self.port.is_some() && self.session.is_connected()
    }

    /// Reboots the cam (SYS_RESET). It sends no answer and the link drops,
    /// so the port is closed; call [`connect`](Self::connect) once the cam
    /// is back.
    pub fn reset(&mut self) -> Result<()> {
        let r = self.run(ops::Reset);
        self.disconnect();
        r
    }

    /// Makes the cam enter its bootloader (SYS_BOOT); the port is closed.
    pub fn boot(&mut self) -> Result<()> {
        let r = self.run(ops::Boot);
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
        self.run(ops::Resync)
    }

    /// Renegotiates the capabilities (CRC, sequence, ACK, events, max
    /// payload) from the configuration, clipping max payload to the cam's.
    pub fn update_capabilities(&mut self) -> Result<()> {
        self.session.set_config(self.config.session_config());
        self.run(ops::UpdateCaps)
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
        self.update_capabilities()
    }

    /// The negotiated capabilities.
    pub fn caps(&self) -> omv_proto::caps::Caps {
        self.session.caps()
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
    /// cam.set_event_handler(|e: &omv_blocking::Event| println!("event {e}"));
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
        self.pending.take()
    }

    /// State derived from events (frame ready, script running, counters).
    pub fn event_state(&self) -> EventState {
        self.pending.state(self.session.event_state())
    }

    /// True when a frame-ready event arrived since the last frame read.
    pub fn frame_ready(&self) -> bool {
        self.session.event_state().frame_ready
    }

    /// Whether a script runs, as last reported by the cam's stdin events
    /// or the stdin bit of the last [`read_status`](Self::read_status).
    pub fn script_running(&self) -> Option<bool> {
        self.session.event_state().script_running
    }

    /// Number of resyncs so far (initial ones included).
    pub fn resync_count(&self) -> u64 {
        self.session.resync_count()
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
                Err(e) if self.config.should_retry(&e, attempt) && self.is_connected() => {
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
            let r = self.run(ops::Request::new(opcode, channel, payload));
            self.disconnect();
            return r.map(|_| None);
        }
        self.run(ops::Request::new(opcode, channel, payload))
    }

    // ----------------------------------------------------------------
    // Channel primitives (by id)
    // ----------------------------------------------------------------

    /// CHANNEL_LIST as sent by the cam, without touching the cache.
    pub fn channel_list(&mut self) -> Result<Vec<ChannelEntry>> {
        self.run(ops::ChannelList)
    }

    /// Locks channel `id`: `true` when granted, `false` when the cam
    /// answers BUSY (no data, already locked, or locked less than 10 ms
    /// ago). Prefer [`lock_channel`](Self::lock_channel), which unlocks on
    /// drop.
    pub fn channel_lock(&mut self, id: ChannelId) -> Result<bool> {
        self.run(ops::Lock { id })
    }

    /// Unlocks channel `id`: `false` when the cam answers BUSY.
    pub fn channel_unlock(&mut self, id: ChannelId) -> Result<bool> {
        self.run(ops::Unlock { id })
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
        let resyncs = self.resync_count();
        Ok(Some(ChannelLock {
            cam: self,
            id,
            resyncs,
            held: true,
        }))
    }

    /// CHANNEL_SHAPE of channel `id`.
    pub fn channel_shape(&mut self, id: ChannelId) -> Result<Shape> {
        self.run(ops::ShapeOf { id })
    }

    /// CHANNEL_SIZE of channel `id`: bytes available.
    pub fn channel_size_at(&mut self, id: ChannelId) -> Result<u32> {
        self.run(ops::Size { id })
    }

    /// Reads `len` bytes at `offset` from channel `id` (one request; the
    /// cam fragments the answer). A zero length reads nothing and sends
    /// nothing. The cam may send fewer bytes than asked (end of data).
    /// After a failure it resyncs and resumes at the first byte not
    /// received, within its deadline (unless the channel is locked).
    pub fn channel_read_at(&mut self, id: ChannelId, offset: u32, len: u32) -> Result<Vec<u8>> {
        self.run(ops::ReadAt { id, offset, len })
    }

    /// Reads everything available on channel `id` now (size, then read;
    /// empty when nothing is). A soft reboot during the read (a script
    /// ending) reads again, whole, rather than failing with
    /// [`Rebooted`](omv_session::Error::Rebooted).
    pub fn channel_read_available(&mut self, id: ChannelId) -> Result<Vec<u8>> {
        self.run(ops::ReadAvailable { id })
    }

    /// [`channel_read_at`](Self::channel_read_at) into the caller's
    /// buffer (cleared, its capacity reused); returns the bytes read. See
    /// [`channel_read_into`](Self::channel_read_into).
    pub fn channel_read_at_into(
        &mut self,
        id: ChannelId,
        offset: u32,
        len: u32,
        buf: &mut Vec<u8>,
    ) -> Result<usize> {
        *buf = self.run(ops::ReadAtInto {
            id,
            offset,
            len,
            buf: std::mem::take(buf),
        })?;
        Ok(buf.len())
    }

    /// Writes `data` at `offset` to channel `id`, split into packets of
    /// `max_payload - 8` bytes at increasing offsets; after a failure it
    /// resumes at the first byte not acknowledged (stdin: from 0).
    pub fn channel_write_at(&mut self, id: ChannelId, offset: u32, data: &[u8]) -> Result<()> {
        self.run(ops::WriteAt {
            id,
            offset,
            data: bytes::Bytes::copy_from_slice(data),
        })
    }

    /// CHANNEL_IOCTL `cmd` with raw argument bytes; returns the answer's
    /// payload (empty for a plain ACK).
    pub fn channel_ioctl(&mut self, id: ChannelId, cmd: u32, args: &[u8]) -> Result<Vec<u8>> {
        self.run(ops::Ioctl {
            id,
            request: cmd,
            args: args.to_vec(),
        })
    }

    /// CHANNEL_IOCTL with u32 arguments (the stock `fmt='I...'` form).
    pub fn channel_ioctl_u32(&mut self, id: ChannelId, cmd: u32, args: &[u32]) -> Result<Vec<u8>> {
        self.run(ops::Ioctl::u32s(id, cmd, args))
    }

    /// CHANNEL_POLL: the readiness bitmap.
    pub fn channel_poll(&mut self) -> Result<PollBitmap> {
        self.run(ops::Poll)
    }

    // ----------------------------------------------------------------
    // Channels by name
    // ----------------------------------------------------------------

    /// Refreshes the cached channel list from the cam (done automatically
    /// before a lookup once a channel (un)registration event arrived).
    pub fn update_channels(&mut self) -> Result<()> {
        self.run(ops::UpdateChannels)
    }

    /// The cached channel list (refreshed first when stale).
    pub fn channels(&mut self) -> Result<&[ChannelEntry]> {
        self.run(ops::Channels)?;
        Ok(self.session.cached_channels())
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
        self.run(ops::GetChannel::new(key.into()))
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

    /// Bytes available on the channel named `name` (0 when it does not
    /// exist, like the stock package).
    pub fn channel_size(&mut self, name: &str) -> Result<u32> {
        self.run(ops::ChannelSize { name: name.into() })
    }

    /// Reads from the channel named `name`: `size` bytes, or everything
    /// available when `None`. `None` when the channel does not exist.
    /// Resumes after failures within its deadline.
    pub fn channel_read(&mut self, name: &str, size: Option<u32>) -> Result<Option<Vec<u8>>> {
        self.run(ops::ChannelRead {
            name: name.into(),
            size,
        })
    }

    /// [`channel_read`](Self::channel_read) into the caller's buffer: `buf`
    /// is cleared and the answer reassembled in it as packets arrive (no
    /// second copy); returns the number of bytes read, `None` when the
    /// channel does not exist. Reuse `buf`: with enough capacity a read
    /// allocates nothing per packet and the same few times whatever its
    /// size (it grows `buf` when the data do not fit; after an error `buf`
    /// is left empty).
    pub fn channel_read_into(
        &mut self,
        name: &str,
        size: Option<u32>,
        buf: &mut Vec<u8>,
    ) -> Result<Option<usize>> {
        let out = self.run(ops::ChannelReadInto {
            name: name.into(),
            size,
            buf: std::mem::take(buf),
        })?;
        Ok(out.map(|v| {
            *buf = v;
            buf.len()
        }))
    }

    /// Writes `data` to the channel named `name` (split into packets).
    /// `false` when the channel does not exist. Resumes after failures.
    pub fn channel_write(&mut self, name: &str, data: &[u8]) -> Result<bool> {
        self.run(ops::ChannelWrite {
            name: name.into(),
            data: bytes::Bytes::copy_from_slice(data),
        })
    }

    /// Polls every channel: which have data ready. Also updates
    /// [`script_running`](Self::script_running) from the stdin bit.
    pub fn read_status(&mut self) -> Result<ChannelStatus> {
        self.run(ops::ReadStatus)
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
        self.run(ops::Exec {
            script: bytes::Bytes::copy_from_slice(script.as_bytes()),
        })
    }

    /// Stops the running script (the IDE's Stop button).
    pub fn stop(&mut self) -> Result<()> {
        self.run(ops::Stop)
    }

    /// Reads the script's pending output as text, or `None` when there is
    /// none. Multi-byte UTF-8 characters split across reads are kept
    /// whole; invalid bytes become U+FFFD.
    pub fn read_stdout(&mut self) -> Result<Option<String>> {
        self.run(ops::ReadStdout)
    }

    /// Reads the script's pending output as raw bytes (empty when none).
    pub fn read_stdout_bytes(&mut self) -> Result<Vec<u8>> {
        self.run(ops::ReadStdoutBytes)
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
        self.run(ops::Streaming {
            enable,
            raw,
            resolution,
        })
    }

    /// Reads the waiting frame without decoding it: lock, size, read,
    /// unlock. `None` when no frame is waiting (lock BUSY or empty).
    pub fn read_frame_raw(&mut self) -> Result<Option<RawFrame>> {
        self.run(ops::ReadFrame)
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

    /// Protocol, bootloader and firmware versions (cached by connect).
    pub fn version(&mut self) -> Result<Version> {
        self.run(ops::GetVersion)
    }

    /// Hardware capabilities and memory sizes (cached by connect).
    pub fn system_info(&mut self) -> Result<SystemInfo> {
        self.run(ops::GetSystemInfo)
    }

    /// The formatted system information block, one line per item.
    pub fn system_info_lines(&mut self) -> Result<Vec<String>> {
        let s = self.system_info()?;
        let v = self.version()?;
        let profiler = self.has_channel("profile")?;
        Ok(s.report_lines(&v, self.session.caps(), profiler))
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
        self.run(ops::GetMemoryStats)
    }

    /// The host side's transport counters.
    pub fn host_stats(&self) -> HostStats {
        self.session.host_stats()
    }

    /// The cam side's transport counters (PROTO_STATS).
    pub fn device_stats(&mut self) -> Result<Stats> {
        self.run(ops::GetDeviceStats)
    }

    // ----------------------------------------------------------------
    // Profiler
    // ----------------------------------------------------------------

    /// Selects exclusive (`true`) or inclusive timing. A no-op when the
    /// cam has no profile channel.
    pub fn profiler_mode(&mut self, exclusive: bool) -> Result<()> {
        self.run(ops::ProfilerMode { exclusive })
    }

    /// Clears the profile counters and assigns PMU events to the counters:
    /// `events[i]` to counter `i`, or [`DEFAULT_PROFILE_EVENTS`](omv_session::ops::DEFAULT_PROFILE_EVENTS) when
    /// `None`. Only the cam's `pmu_eventcnt` counters are assigned. A
    /// no-op when the cam has no profile channel.
    pub fn profiler_reset(&mut self, events: Option<&[u32]>) -> Result<()> {
        self.run(ops::ProfilerReset {
            events: events.map(<[u32]>::to_vec),
        })
    }

    /// Binds PMU counter `counter` to `event`. A no-op without a profile
    /// channel or a PMU.
    pub fn profiler_event(&mut self, counter: u32, event: u32) -> Result<()> {
        self.run(ops::ProfilerEvent { counter, event })
    }

    /// Reads the profile records collected since the last reset (lock,
    /// shape, read, unlock), naming functions from `symbols` when given.
    /// `None` when the cam has no profile channel or no data (a BUSY lock
    /// is asked again a few times first: see [`ops::ReadProfile`]).
    pub fn read_profile(
        &mut self,
        symbols: Option<&SymbolTable>,
    ) -> Result<Option<Vec<ProfileEntry>>> {
        let Some(raw) = self.run(ops::ReadProfile)? else {
            return Ok(None);
        };
        raw.entries(symbols).map(Some)
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
        self.held && self.cam.resync_count() == self.resyncs && self.cam.is_connected()
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

/// How a [`Camera`] learns that the caller wants the operation cancelled.
pub(crate) enum Cancel {
    /// Set from elsewhere (a signal handler, another thread).
    Flag(Arc<AtomicBool>),
    /// Polled.
    Check(Box<dyn FnMut() -> bool + Send>),
}

impl Cancel {
    pub(crate) fn requested(&mut self) -> bool {
        match self {
            Cancel::Flag(f) => f.load(std::sync::atomic::Ordering::Relaxed),
            Cancel::Check(c) => c(),
        }
    }
}
