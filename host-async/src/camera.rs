//! [`Camera`]: the host API of omv-blocking's `Camera`, as async methods
//! on a cheap-to-clone handle. Every method sends one job to the actor
//! (`driver.rs`), which runs the session's operation; the policy is the
//! session's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use omv_proto::caps::Caps;
use omv_proto::channel::ChannelEntry;
use omv_proto::host::{HostStats, Reply as ProtoReply};
use omv_proto::memory::MemoryStats;
use omv_proto::poll::PollBitmap;
use omv_proto::shape::Shape;
use omv_proto::stats::Stats;
use omv_proto::version::Version;
use omv_proto::{ChannelId, Opcode};
use omv_session::symbols::SymbolTable;
use omv_session::{
    ops, CameraConfig, ChannelKey, ChannelStatus, DecodeFrame, Error, Event, EventHandler,
    EventState, Frame, Operation, ProfileEntry, Progress, RawFrame, Result, SessionStats,
    SystemInfo,
};
use tokio::sync::{mpsc, oneshot};

use crate::driver::{lock, Actor, BoxFut, Connector, Job, Reply, Shared};
use crate::events::EventStream;
use crate::port::AsyncStream;

/// Requests queued for the actor before callers wait to send.
const QUEUE: usize = 64;

/// A cam, reached over a serial port, TCP, UDP or any
/// `AsyncRead + AsyncWrite` stream, driven by a task of its own.
///
/// Clone it freely: clones share the task, and requests from any clone are
/// served one at a time, in the order they were sent. Dropping a request's
/// future cancels it and leaves the session consistent (the next request
/// resyncs if it must). The task ends when the last clone is dropped.
/// Use it within a tokio runtime (with the time and I/O drivers). Made
/// outside one, it starts its driver task at its first call, and a call
/// made outside any tokio runtime fails with
/// [`Error::InvalidArgument`] instead of panicking.
///
/// ```no_run
/// use omv_async::{Camera, CameraConfig};
/// # async fn f() -> omv_async::Result<()> {
/// let cam = Camera::open(CameraConfig::new("/dev/ttyACM0")).await?;
/// println!("{}", cam.version().await?);
/// cam.exec("print('hi')").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Camera {
    jobs: mpsc::Sender<Job>,
    shared: Arc<Mutex<Shared>>,
    port_name: Arc<str>,
    events: tokio::sync::broadcast::Sender<Event>,
    /// The driver task, until it is spawned (made outside a runtime).
    unstarted: Arc<Mutex<Option<Unstarted>>>,
}

/// The driver task not yet spawned, and its job queue.
type Unstarted = (Actor, mpsc::Receiver<Job>);

impl std::fmt::Debug for Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Camera")
            .field("port", &self.port_name)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl Camera {
    fn spawn(config: CameraConfig, connector: Connector, port_name: String) -> Camera {
        let actor = Actor::new(config, connector, port_name.clone());
        let (jobs, rx) = mpsc::channel(QUEUE);
        let shared = actor.shared.clone();
        let events = actor.events.clone();
        let unstarted = match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(actor.serve(rx));
                None
            }
            Err(_) => Some((actor, rx)),
        };
        Camera {
            jobs,
            shared,
            port_name: port_name.into(),
            events,
            unstarted: Arc::new(Mutex::new(unstarted)),
        }
    }

    /// Spawns the driver task if the camera was made outside a runtime.
    fn start(&self) -> Result<()> {
        let mut pending = self.unstarted.lock().unwrap_or_else(|p| p.into_inner());
        if pending.is_none() {
            return Ok(());
        }
        let rt = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::InvalidArgument("omv_async::Camera must be used within a tokio runtime".into())
        })?;
        if let Some((actor, rx)) = pending.take() {
            rt.spawn(actor.serve(rx));
        }
        Ok(())
    }

    /// A camera on the serial port `config.port` (not yet connected).
    pub fn new(config: CameraConfig) -> Camera {
        let name = config.port.clone();
        Camera::spawn(config, Connector::Serial, name)
    }

    /// A camera reached over TCP at `addr` (`host:port`), not yet connected.
    pub fn tcp(addr: &str, config: CameraConfig) -> Camera {
        Camera::spawn(config, Connector::Tcp(addr.into()), addr.into())
    }

    /// A camera reached over UDP at `addr`, one packet per datagram, not
    /// yet connected (keep `max_payload` within a datagram).
    pub fn udp(addr: &str, config: CameraConfig) -> Camera {
        Camera::spawn(
            config.for_datagrams(),
            Connector::Udp(addr.into()),
            addr.into(),
        )
    }

    /// A camera on an open stream (an in-memory duplex, a custom port...)
    /// named `name`, not yet connected. It cannot be reopened after
    /// [`disconnect`](Self::disconnect). A TCP stream should have
    /// `set_nodelay(true)`, as [`tcp`](Self::tcp) sets: with Nagle's
    /// algorithm a request written right after an ACK waits for the cam's
    /// delayed TCP ACK (40 ms on Linux), and the handshake's short
    /// attempts give up first.
    pub fn with_stream(
        stream: impl AsyncStream + 'static,
        name: &str,
        config: CameraConfig,
    ) -> Camera {
        let c = Connector::Provided(Some(Box::new(stream)));
        Camera::spawn(config, c, name.into())
    }

    /// [`new`](Self::new) then [`connect`](Self::connect).
    pub async fn open(config: CameraConfig) -> Result<Camera> {
        let cam = Camera::new(config);
        cam.connect().await?;
        Ok(cam)
    }

    /// Sends `f` to the actor and waits for its result.
    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a mut Actor, &'a mut Reply<T>) -> BoxFut<'a, Result<T>>
            + Send
            + 'static,
    {
        self.start()?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |a: &mut Actor| {
            Box::pin(async move {
                let mut tx = tx;
                if tx.is_closed() {
                    return; // dropped before it started
                }
                let r = f(a, &mut tx).await;
                a.publish();
                let _ = tx.send(r);
            })
        });
        self.jobs.send(job).await.map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    /// Runs a session operation.
    async fn run<O>(&self, op: O) -> Result<O::Output>
    where
        O: Operation + Send + 'static,
        O::Output: Send + 'static,
    {
        self.call(move |a, r| Box::pin(async move { a.run(op, r).await }))
            .await
    }

    /// Runs `f` on the actor's state, without waiting on the port.
    async fn with_actor<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Actor) -> T + Send + 'static,
    ) -> Result<T> {
        self.call(move |a, _| Box::pin(async move { Ok(f(a)) }))
            .await
    }

    fn gone(&self) -> Error {
        Error::Io {
            port: self.port_name.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the driver task has stopped",
            ),
        }
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        lock(&self.shared)
    }

    /// The configuration.
    pub fn config(&self) -> CameraConfig {
        self.shared().config.clone()
    }

    /// The port's name (device path, address or stream name).
    pub fn port_name(&self) -> &str {
        &self.port_name
    }

    /// Installs a progress callback, called as a transfer's done bytes
    /// change (on the driver task: keep it short).
    pub async fn set_progress_handler(&self, f: impl FnMut(Progress) + Send + 'static) {
        let _ = self
            .with_actor(move |a| a.progress = Some(Box::new(f)))
            .await;
    }

    /// The session's policy counters (resyncs, resumes, fast retransmits).
    pub fn session_stats(&self) -> SessionStats {
        self.shared().session
    }

    // ----------------------------------------------------------------
    // Connection
    // ----------------------------------------------------------------

    /// Opens the port and performs the handshake (resync, channel list,
    /// version, system information), then logs the system information.
    /// On failure the port is closed again (a stream given to
    /// [`with_stream`](Self::with_stream) is kept for another try).
    pub async fn connect(&self) -> Result<()> {
        self.call(|a, r| {
            Box::pin(async move {
                a.config.validate()?;
                let port = a.open_port().await?;
                a.session.set_config(a.config.session_config());
                a.session.port_closed();
                a.session.port_opened();
                a.port = Some(port);
                let out = a.run(ops::Connect, r).await;
                if out.is_err() {
                    if let (Connector::Provided(slot), Some(crate::port::Port::Stream(s))) =
                        (&mut a.connector, a.port.take())
                    {
                        *slot = Some(s);
                    }
                    a.disconnect();
                }
                out
            })
        })
        .await?;
        self.print_system_info().await;
        Ok(())
    }

    /// Closes the port (also done when the last handle is dropped).
    pub async fn disconnect(&self) {
        let _ = self.with_actor(Actor::disconnect).await;
    }

    /// True while the port is open and the link is synchronised.
    pub fn is_connected(&self) -> bool {
        self.shared().connected
    }

    /// Reboots the cam (SYS_RESET); the port is closed.
    pub async fn reset(&self) -> Result<()> {
        self.run_then_close(ops::Reset).await
    }

    /// Makes the cam enter its bootloader (SYS_BOOT); the port is closed.
    pub async fn boot(&self) -> Result<()> {
        self.run_then_close(ops::Boot).await
    }

    async fn run_then_close<O>(&self, op: O) -> Result<O::Output>
    where
        O: Operation + Send + 'static,
        O::Output: Send + 'static,
    {
        self.call(move |a, r| {
            Box::pin(async move {
                let out = a.run(op, r).await;
                a.disconnect();
                out
            })
        })
        .await
    }

    /// Re-runs the protocol handshake from scratch.
    pub async fn resync(&self) -> Result<()> {
        self.run(ops::Resync).await
    }

    /// Renegotiates the capabilities from the configuration.
    pub async fn update_capabilities(&self) -> Result<()> {
        self.set_capabilities(|_| {}).await
    }

    /// Changes the capability settings and renegotiates them.
    pub async fn set_capabilities(
        &self,
        change: impl FnOnce(&mut CameraConfig) + Send + 'static,
    ) -> Result<()> {
        self.call(move |a, r| {
            Box::pin(async move {
                let mut cfg = a.config.clone();
                change(&mut cfg);
                cfg.validate()?;
                a.session.set_config(cfg.session_config());
                a.config = cfg;
                a.run(ops::UpdateCaps, r).await
            })
        })
        .await
    }

    /// The negotiated capabilities.
    pub fn caps(&self) -> Caps {
        self.shared().caps
    }

    /// Consumes events the cam already sent, without waiting. Returns how
    /// many arrived.
    pub async fn poll_events(&self) -> Result<u64> {
        self.wait_events(Duration::ZERO).await
    }

    /// Waits up to `timeout` for at least one event (returning as soon as
    /// one arrives). Returns how many arrived.
    pub async fn wait_events(&self, timeout: Duration) -> Result<u64> {
        self.call(move |a, _| Box::pin(a.idle_receive(timeout)))
            .await
    }

    /// The events as a [`Stream`](tokio_stream::Stream), from now on.
    /// While a stream exists the driver reads the port between requests
    /// too, so events arrive without a request in flight.
    pub fn events(&self) -> EventStream {
        let rx = self.events.subscribe();
        // Wake an idle actor so that it starts reading the port.
        let _ = self
            .jobs
            .try_send(Box::new(|_: &mut Actor| Box::pin(async {})));
        EventStream::new(rx)
    }

    /// Installs the event handler, called on the driver task.
    pub async fn set_event_handler(&self, handler: impl EventHandler + 'static) {
        let _ = self
            .with_actor(move |a| a.handler = Some(Box::new(handler)))
            .await;
    }

    /// Removes the event handler.
    pub async fn clear_event_handler(&self) {
        let _ = self.with_actor(|a| a.handler = None).await;
    }

    /// The events received and not yet taken, oldest first.
    pub fn pending_events(&self) -> Vec<Event> {
        self.shared().pending.iter().cloned().collect()
    }

    /// Takes every pending event, oldest first.
    pub fn take_events(&self) -> Vec<Event> {
        self.shared().pending.take()
    }

    /// State derived from events (frame ready, script running, counters).
    pub fn event_state(&self) -> EventState {
        let s = self.shared();
        s.pending.state(s.events)
    }

    /// True when a frame-ready event arrived since the last frame read.
    pub fn frame_ready(&self) -> bool {
        self.shared().events.frame_ready
    }

    /// Whether a script runs, as last reported by the cam.
    pub fn script_running(&self) -> Option<bool> {
        self.shared().events.script_running
    }

    /// Number of resyncs so far (initial ones included).
    pub fn resync_count(&self) -> u64 {
        self.shared().resyncs
    }

    // ----------------------------------------------------------------
    // Retry and the request primitives
    // ----------------------------------------------------------------

    /// Runs `op` with a clone of this handle, again after a retryable
    /// failure, up to `config.retries` times (see omv-blocking's `retry`).
    pub async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut(Camera) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut attempt = 0u8;
        loop {
            match op(self.clone()).await {
                Err(e) if self.config().should_retry(&e, attempt) && self.is_connected() => {
                    attempt += 1;
                    log::warn!("{}: {e}; retrying ({attempt})", self.port_name);
                }
                r => return r,
            }
        }
    }

    /// Sends a raw request and waits for its answer (`None` for
    /// SYS_RESET/SYS_BOOT, after which the port is closed). No retry.
    pub async fn request(
        &self,
        opcode: Opcode,
        channel: ChannelId,
        payload: &[u8],
    ) -> Result<Option<ProtoReply>> {
        let op = ops::Request::new(opcode, channel, payload);
        if opcode == Opcode::SYS_RESET || opcode == Opcode::SYS_BOOT {
            return self.run_then_close(op).await.map(|_| None);
        }
        self.run(op).await
    }

    /// CHANNEL_LIST as sent by the cam, without touching the cache.
    pub async fn channel_list(&self) -> Result<Vec<ChannelEntry>> {
        self.run(ops::ChannelList).await
    }

    /// Locks channel `id`: `false` when the cam answers BUSY.
    pub async fn channel_lock(&self, id: ChannelId) -> Result<bool> {
        self.run(ops::Lock { id }).await
    }

    /// Unlocks channel `id`: `false` when the cam answers BUSY.
    pub async fn channel_unlock(&self, id: ChannelId) -> Result<bool> {
        self.run(ops::Unlock { id }).await
    }

    /// Locks channel `id` and returns a guard that unlocks it when
    /// dropped (the unlock is queued, errors ignored), or `None` on BUSY.
    pub async fn lock_channel(&self, id: ChannelId) -> Result<Option<ChannelLock>> {
        if !self.channel_lock(id).await? {
            return Ok(None);
        }
        Ok(Some(ChannelLock {
            cam: self.clone(),
            id,
            resyncs: self.resync_count(),
            held: true,
        }))
    }

    /// CHANNEL_SHAPE of channel `id`.
    pub async fn channel_shape(&self, id: ChannelId) -> Result<Shape> {
        self.run(ops::ShapeOf { id }).await
    }

    /// CHANNEL_SIZE of channel `id`.
    pub async fn channel_size_at(&self, id: ChannelId) -> Result<u32> {
        self.run(ops::Size { id }).await
    }

    /// Reads `len` bytes at `offset` from channel `id`, resuming after
    /// failures within its deadline.
    pub async fn channel_read_at(&self, id: ChannelId, offset: u32, len: u32) -> Result<Vec<u8>> {
        self.run(ops::ReadAt { id, offset, len }).await
    }

    /// Reads what channel `id` has now (size, then read; empty when
    /// nothing is); a soft reboot during the read reads again, whole.
    pub async fn channel_read_available(&self, id: ChannelId) -> Result<Vec<u8>> {
        self.run(ops::ReadAvailable { id }).await
    }

    /// [`channel_read_at`](Self::channel_read_at) into the caller's buffer
    /// (cleared, its allocation moved to the driver and back, so reused);
    /// returns the bytes read.
    pub async fn channel_read_at_into(
        &self,
        id: ChannelId,
        offset: u32,
        len: u32,
        buf: &mut Vec<u8>,
    ) -> Result<usize> {
        let taken = std::mem::take(buf);
        *buf = self
            .run(ops::ReadAtInto {
                id,
                offset,
                len,
                buf: taken,
            })
            .await?;
        Ok(buf.len())
    }

    /// Writes `data` at `offset` to channel `id`, resuming after failures.
    pub async fn channel_write_at(&self, id: ChannelId, offset: u32, data: &[u8]) -> Result<()> {
        let data = bytes::Bytes::copy_from_slice(data);
        self.run(ops::WriteAt { id, offset, data }).await
    }

    /// CHANNEL_IOCTL `cmd` with raw argument bytes.
    pub async fn channel_ioctl(&self, id: ChannelId, cmd: u32, args: &[u8]) -> Result<Vec<u8>> {
        let args = args.to_vec();
        self.run(ops::Ioctl {
            id,
            request: cmd,
            args,
        })
        .await
    }

    /// CHANNEL_IOCTL with u32 arguments.
    pub async fn channel_ioctl_u32(
        &self,
        id: ChannelId,
        cmd: u32,
        args: &[u32],
    ) -> Result<Vec<u8>> {
        self.run(ops::Ioctl::u32s(id, cmd, args)).await
    }

    /// CHANNEL_POLL: the readiness bitmap.
    pub async fn channel_poll(&self) -> Result<PollBitmap> {
        self.run(ops::Poll).await
    }

    // ----------------------------------------------------------------
    // Channels by name
    // ----------------------------------------------------------------

    /// Refreshes the cached channel list from the cam.
    pub async fn update_channels(&self) -> Result<()> {
        self.run(ops::UpdateChannels).await
    }

    /// The cached channel list (refreshed first when stale).
    pub async fn channels(&self) -> Result<Vec<ChannelEntry>> {
        self.call(|a, r| {
            Box::pin(async move {
                a.run(ops::Channels, r).await?;
                Ok(a.session.cached_channels().to_vec())
            })
        })
        .await
    }

    /// Looks a channel up by name or id (`None` when it does not exist).
    pub async fn get_channel(
        &self,
        key: impl Into<ChannelKey<'_>>,
    ) -> Result<Option<ChannelEntry>> {
        let op = ops::GetChannel::new(key.into());
        self.run(op).await
    }

    /// The id of the channel named `name`.
    pub async fn get_channel_id(&self, name: &str) -> Result<Option<ChannelId>> {
        Ok(self.get_channel(name).await?.map(|e| e.id))
    }

    /// The name of channel `id`.
    pub async fn get_channel_name(&self, id: ChannelId) -> Result<Option<String>> {
        Ok(self.get_channel(id).await?.map(|e| e.name))
    }

    /// True when a channel named `name` exists.
    pub async fn has_channel(&self, name: &str) -> Result<bool> {
        Ok(self.get_channel(name).await?.is_some())
    }

    /// Bytes available on the channel named `name` (0 when it does not exist).
    pub async fn channel_size(&self, name: &str) -> Result<u32> {
        self.run(ops::ChannelSize { name: name.into() }).await
    }

    /// Reads `size` bytes (or everything available) from the channel named
    /// `name`; `None` when it does not exist.
    pub async fn channel_read(&self, name: &str, size: Option<u32>) -> Result<Option<Vec<u8>>> {
        let name = name.into();
        self.run(ops::ChannelRead { name, size }).await
    }

    /// [`channel_read`](Self::channel_read) into the caller's buffer
    /// (cleared, reassembled in place, its allocation reused); the bytes
    /// read, `None` when the channel does not exist (`buf` is then empty,
    /// as after an error).
    pub async fn channel_read_into(
        &self,
        name: &str,
        size: Option<u32>,
        buf: &mut Vec<u8>,
    ) -> Result<Option<usize>> {
        let (name, taken) = (name.into(), std::mem::take(buf));
        let out = self
            .run(ops::ChannelReadInto {
                name,
                size,
                buf: taken,
            })
            .await?;
        Ok(out.map(|v| {
            *buf = v;
            buf.len()
        }))
    }

    /// Writes `data` to the channel named `name`; `false` when it does
    /// not exist.
    pub async fn channel_write(&self, name: &str, data: &[u8]) -> Result<bool> {
        let (name, data) = (name.into(), bytes::Bytes::copy_from_slice(data));
        self.run(ops::ChannelWrite { name, data }).await
    }

    /// Polls every channel: which have data ready.
    pub async fn read_status(&self) -> Result<ChannelStatus> {
        self.run(ops::ReadStatus).await
    }

    // ----------------------------------------------------------------
    // Scripts and streaming
    // ----------------------------------------------------------------

    /// Uploads `script` and runs it, exactly once.
    pub async fn exec(&self, script: &str) -> Result<()> {
        let script = bytes::Bytes::copy_from_slice(script.as_bytes());
        self.run(ops::Exec { script }).await
    }

    /// Stops the running script.
    pub async fn stop(&self) -> Result<()> {
        self.run(ops::Stop).await
    }

    /// The script's pending output as text, `None` when there is none.
    pub async fn read_stdout(&self) -> Result<Option<String>> {
        self.run(ops::ReadStdout).await
    }

    /// The script's pending output as raw bytes.
    pub async fn read_stdout_bytes(&self) -> Result<Vec<u8>> {
        self.run(ops::ReadStdoutBytes).await
    }

    /// Turns the frame stream on or off (`raw` at `resolution`, else JPEG).
    pub async fn streaming(
        &self,
        enable: bool,
        raw: bool,
        resolution: Option<(u32, u32)>,
    ) -> Result<()> {
        self.run(ops::Streaming {
            enable,
            raw,
            resolution,
        })
        .await
    }

    /// Reads the waiting frame without decoding it (`None` when none waits).
    pub async fn read_frame_raw(&self) -> Result<Option<RawFrame>> {
        self.run(ops::ReadFrame).await
    }

    /// Reads the waiting frame and converts it to RGB888 (decoded on a
    /// blocking thread, not on the driver task).
    pub async fn read_frame(&self) -> Result<Option<Frame>> {
        let Some(raw) = self.read_frame_raw().await? else {
            return Ok(None);
        };
        match tokio::task::spawn_blocking(move || raw.decode()).await {
            Ok(r) => Ok(Some(r?)),
            Err(e) => Err(Error::InvalidArgument(format!(
                "frame decoding failed: {e}"
            ))),
        }
    }

    // ----------------------------------------------------------------
    // Introspection and profiler
    // ----------------------------------------------------------------

    /// Protocol, bootloader and firmware versions (cached by connect).
    pub async fn version(&self) -> Result<Version> {
        self.run(ops::GetVersion).await
    }

    /// Hardware capabilities and memory sizes (cached by connect).
    pub async fn system_info(&self) -> Result<SystemInfo> {
        self.run(ops::GetSystemInfo).await
    }

    /// The formatted system information block, one line per item.
    pub async fn system_info_lines(&self) -> Result<Vec<String>> {
        let s = self.system_info().await?;
        let v = self.version().await?;
        let profiler = self.has_channel("profile").await?;
        Ok(s.report_lines(&v, self.caps(), profiler))
    }

    /// Logs the system information block at INFO level.
    pub async fn print_system_info(&self) {
        match self.system_info_lines().await {
            Ok(lines) => lines.iter().for_each(|l| log::info!("{l}")),
            Err(e) => log::warn!("system information unavailable: {e}"),
        }
    }

    /// Memory pool statistics (SYS_MEMORY).
    pub async fn memory_stats(&self) -> Result<MemoryStats> {
        self.run(ops::GetMemoryStats).await
    }

    /// The host side's transport counters.
    pub fn host_stats(&self) -> HostStats {
        self.shared().host
    }

    /// The cam side's transport counters (PROTO_STATS).
    pub async fn device_stats(&self) -> Result<Stats> {
        self.run(ops::GetDeviceStats).await
    }

    /// Selects exclusive (`true`) or inclusive timing.
    pub async fn profiler_mode(&self, exclusive: bool) -> Result<()> {
        self.run(ops::ProfilerMode { exclusive }).await
    }

    /// Clears the profile counters and assigns PMU events.
    pub async fn profiler_reset(&self, events: Option<&[u32]>) -> Result<()> {
        let events = events.map(<[u32]>::to_vec);
        self.run(ops::ProfilerReset { events }).await
    }

    /// Binds PMU counter `counter` to `event`.
    pub async fn profiler_event(&self, counter: u32, event: u32) -> Result<()> {
        self.run(ops::ProfilerEvent { counter, event }).await
    }

    /// Reads the profile records, naming functions from `symbols`.
    pub async fn read_profile(
        &self,
        symbols: Option<&SymbolTable>,
    ) -> Result<Option<Vec<ProfileEntry>>> {
        let Some(raw) = self.run(ops::ReadProfile).await? else {
            return Ok(None);
        };
        raw.entries(symbols).map(Some)
    }
}

/// A locked channel: unlocks it when dropped. Dereferences to the
/// [`Camera`].
pub struct ChannelLock {
    cam: Camera,
    id: ChannelId,
    resyncs: u64,
    held: bool,
}

impl ChannelLock {
    /// The locked channel.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// True until unlocked, or until a resync released the lock on the cam.
    pub fn is_held(&self) -> bool {
        self.held && self.cam.resync_count() == self.resyncs && self.cam.is_connected()
    }

    /// Unlocks now, reporting errors. `Ok(false)` when the cam answered BUSY.
    pub async fn unlock(&mut self) -> Result<bool> {
        let held = self.is_held();
        self.held = false;
        if !held {
            return Ok(true);
        }
        self.cam.channel_unlock(self.id).await
    }
}

impl std::ops::Deref for ChannelLock {
    type Target = Camera;
    fn deref(&self) -> &Camera {
        &self.cam
    }
}

impl std::ops::DerefMut for ChannelLock {
    fn deref_mut(&mut self) -> &mut Camera {
        &mut self.cam
    }
}

impl Drop for ChannelLock {
    fn drop(&mut self) {
        if !self.is_held() {
            return;
        }
        let id = self.id;
        // Queued behind the requests already sent; nobody waits for it.
        let job: Job = Box::new(move |a: &mut Actor| {
            Box::pin(async move {
                // `_rx` lives until the unlock is done: nobody cancels it.
                let (mut tx, _rx) = oneshot::channel::<()>();
                if let Err(e) = a.run(ops::Unlock { id }, &mut tx).await {
                    log::debug!("unlock of channel {id} on drop failed: {e}");
                }
            })
        });
        let _ = self.cam.jobs.try_send(job);
    }
}
