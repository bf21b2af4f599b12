//! The driver: an actor task that owns the [`Session`] and the port, and
//! runs the jobs callers send over a channel one at a time, in order.
//!
//! An operation is a loop like omv-blocking's: write what the session
//! transmits, carry out its port commands, dispatch its events, then wait
//! (in one `select!`) for bytes, the session's next deadline or the caller
//! going away. A dropped request future closes its reply channel; the
//! driver then calls [`Session::cancel`], which ends the operation at once
//! and makes the next one resync if it must. While idle the actor reads the
//! port only when someone listens to the event stream. All the policy is
//! in the session.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use omv_proto::Instant;
use omv_session::{
    CameraConfig, Error, Event, EventHandler, EventQueue, Operation, PortCommand, Progress, Result,
    Session, REOPEN_PAUSE,
};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::port::{self, AsyncStream, Port};

/// Size of the read buffer: a few full packets (or one datagram) per read.
const READ_BUF: usize = 64 * 1024;

/// A boxed future borrowing the actor.
pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A request: runs on the actor, replies through its own channel.
pub(crate) type Job = Box<dyn for<'a> FnOnce(&'a mut Actor) -> BoxFut<'a, ()> + Send>;

/// The reply channel of a request; closed when the caller drops it.
pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// Where the port comes from on connect.
pub(crate) enum Connector {
    /// A serial port at `config.port`.
    Serial,
    /// A TCP address.
    Tcp(String),
    /// A UDP address.
    Udp(String),
    /// A caller's stream (taken by the first connect).
    Provided(Option<Box<dyn AsyncStream>>),
}

/// What the handle reads without a round trip to the actor.
pub(crate) struct Shared {
    pub(crate) config: CameraConfig,
    pub(crate) connected: bool,
    pub(crate) caps: omv_proto::caps::Caps,
    pub(crate) events: omv_session::EventState,
    pub(crate) host: omv_proto::host::HostStats,
    pub(crate) session: omv_session::SessionStats,
    pub(crate) resyncs: u64,
    pub(crate) pending: EventQueue,
}

/// The task's state.
pub(crate) struct Actor {
    pub(crate) config: CameraConfig,
    pub(crate) connector: Connector,
    pub(crate) port: Option<Port>,
    pub(crate) port_name: String,
    pub(crate) session: Session,
    epoch: tokio::time::Instant,
    rbuf: Vec<u8>,
    tbuf: Vec<u8>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) handler: Option<Box<dyn EventHandler>>,
    pub(crate) progress: Option<Box<dyn FnMut(Progress) + Send>>,
    pub(crate) shared: Arc<Mutex<Shared>>,
}

/// Locks the shared state (a poisoned lock still holds valid counters).
pub(crate) fn lock(s: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits until `t` (on the session's clock), or forever without one.
async fn sleep_until(epoch: tokio::time::Instant, t: Option<Instant>) {
    match t {
        Some(t) => {
            tokio::time::sleep_until(epoch + t.saturating_duration_since(Instant::ZERO)).await
        }
        None => std::future::pending().await,
    }
}

/// Reads the port, or waits forever without one.
async fn recv(port: &mut Option<Port>, buf: &mut [u8]) -> io::Result<usize> {
    match port {
        Some(p) => p.recv(buf).await,
        None => std::future::pending().await,
    }
}

impl Actor {
    pub(crate) fn new(config: CameraConfig, connector: Connector, port_name: String) -> Actor {
        let session = Session::new(config.session_config());
        let shared = Shared {
            config: config.clone(),
            connected: false,
            caps: session.caps(),
            events: session.event_state(),
            host: session.host_stats(),
            session: session.stats(),
            resyncs: session.resync_count(),
            pending: EventQueue::new(),
        };
        Actor {
            session,
            config,
            connector,
            port: None,
            port_name,
            epoch: tokio::time::Instant::now(),
            rbuf: vec![0; READ_BUF],
            tbuf: Vec::with_capacity(READ_BUF),
            events: broadcast::channel(1024).0,
            handler: None,
            progress: None,
            shared: Arc::new(Mutex::new(shared)),
        }
    }

    /// Serves jobs until every handle is gone.
    pub(crate) async fn serve(mut self, mut jobs: mpsc::Receiver<Job>) {
        loop {
            self.publish();
            let listening = self.events.receiver_count() > 0;
            let deadline = self.session.poll_timeout().filter(|_| listening);
            tokio::select! {
                biased;
                r = recv(&mut self.port, &mut self.rbuf), if listening => match r {
                    Ok(n) => self.input(n),
                    Err(e) => log::warn!("{}", self.io_error(e)),
                },
                job = jobs.recv() => match job {
                    Some(job) => job(&mut self).await,
                    None => break,
                },
                () = sleep_until(self.epoch, deadline) => self.session.handle_timeout(self.now()),
            }
            if let Err(e) = self.flush().await {
                log::warn!("{e}");
            }
            self.dispatch_events();
        }
        self.disconnect();
    }

    fn now(&self) -> Instant {
        let us = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        Instant::from_micros(us)
    }

    /// Copies what the handle's getters return.
    pub(crate) fn publish(&self) {
        let mut s = lock(&self.shared);
        s.config = self.config.clone();
        s.connected = self.port.is_some() && self.session.is_connected();
        s.caps = self.session.caps();
        s.events = self.session.event_state();
        s.host = self.session.host_stats();
        s.session = self.session.stats();
        s.resyncs = self.session.resync_count();
    }

    fn input(&mut self, n: usize) {
        let now = self.now();
        self.session.handle_input(now, &self.rbuf[..n]);
    }

    /// Closes the port after an I/O error and wraps the error.
    fn io_error(&mut self, source: io::Error) -> Error {
        log::debug!("{}: I/O error, closing the port: {source}", self.port_name);
        self.port = None;
        self.session.port_closed();
        Error::Io {
            port: self.port_name.clone(),
            source,
        }
    }

    /// Writes every pending transmit, one packet per write.
    async fn flush(&mut self) -> Result<()> {
        let now = self.now();
        self.tbuf.clear();
        while self.session.poll_transmit(now, &mut self.tbuf).is_some() {
            let Some(port) = self.port.as_mut() else {
                return Err(Error::NotConnected);
            };
            if let Err(e) = port.send(&self.tbuf).await {
                return Err(self.io_error(e));
            }
            self.tbuf.clear();
        }
        Ok(())
    }

    /// Hands the session's events to the handler, the queue and the stream.
    fn dispatch_events(&mut self) {
        while let Some(e) = self.session.poll_event() {
            if let Some(h) = self.handler.as_mut() {
                h.on_event(&e);
            }
            let _ = self.events.send(e.clone());
            lock(&self.shared).pending.push(e, self.config.event_queue);
        }
    }

    /// Opens the port the connector names.
    pub(crate) async fn open_port(&mut self) -> Result<Port> {
        let name = self.port_name.clone();
        let io = |source| Error::Io {
            port: name.clone(),
            source,
        };
        match &mut self.connector {
            Connector::Provided(slot) => slot.take().map(Port::Stream).ok_or_else(|| {
                io(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the stream was closed by disconnect() and cannot be reopened",
                ))
            }),
            Connector::Serial => port::serial(&self.config.port, self.config.baudrate).map_err(io),
            Connector::Tcp(a) => {
                let a = a.clone();
                match tokio::time::timeout(self.config.timeout, port::tcp(&a)).await {
                    Ok(r) => r.map_err(io),
                    Err(_) => Err(io(io::ErrorKind::TimedOut.into())),
                }
            }
            Connector::Udp(a) => {
                let a = a.clone();
                port::udp(&a).await.map_err(io)
            }
        }
    }

    /// Carries out the session's port commands (close and reopen; a
    /// serial port stays closed [`REOPEN_PAUSE`]); true when there were
    /// any (what the session sends next must go out before waiting).
    async fn port_commands(&mut self) -> bool {
        let mut any = false;
        while let Some(cmd) = self.session.poll_port_command() {
            any = true;
            let ok = match cmd {
                PortCommand::Reopen if !matches!(self.connector, Connector::Provided(_)) => {
                    log::info!("{}: reopening the port", self.port_name);
                    self.port = None;
                    if matches!(self.connector, Connector::Serial) {
                        tokio::time::sleep(REOPEN_PAUSE).await;
                    }
                    match self.open_port().await {
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
                _ => false,
            };
            let now = self.now();
            self.session.port_command_done(now, ok);
        }
        any
    }

    /// Runs `op` to completion, or cancels it once `reply`'s receiver is
    /// dropped.
    pub(crate) async fn run<O: Operation, T>(
        &mut self,
        op: O,
        reply: &mut oneshot::Sender<T>,
    ) -> Result<O::Output> {
        if self.port.is_none() {
            return Err(Error::NotConnected);
        }
        let pending = self.session.start(self.now(), op)?;
        let (mut cancelled, mut progress) = (false, None);
        loop {
            self.flush().await?;
            if self.port_commands().await {
                continue;
            }
            self.dispatch_events();
            if let Some(out) = self.session.take_output(&pending) {
                self.flush().await?;
                return out;
            }
            let p = self.session.progress();
            if p != progress {
                progress = p;
                if let (Some(p), Some(f)) = (p, self.progress.as_mut()) {
                    f(p);
                }
            }
            let deadline = self.session.poll_timeout();
            let now = self.now();
            if deadline.is_some_and(|t| t <= now) {
                self.session.handle_timeout(now);
                continue;
            }
            tokio::select! {
                biased;
                () = reply.closed(), if !cancelled => {
                    cancelled = true;
                    self.session.cancel();
                }
                r = recv(&mut self.port, &mut self.rbuf) => match r {
                    Ok(n) => self.input(n),
                    Err(e) => return Err(self.io_error(e)),
                },
                () = sleep_until(self.epoch, deadline) => self.session.handle_timeout(self.now()),
            }
        }
    }

    /// Reads the port while idle, for up to `timeout`, returning early once
    /// an event arrived (then taking in what is already there). Returns
    /// the number of events.
    pub(crate) async fn idle_receive(&mut self, timeout: std::time::Duration) -> Result<u64> {
        if self.port.is_none() {
            return Err(Error::NotConnected);
        }
        let before = self.session.event_state().total;
        let end = tokio::time::Instant::now() + timeout;
        loop {
            self.flush().await?;
            // After the first event, only what is already there.
            let got = self.session.event_state().total > before;
            let until = if got {
                tokio::time::Instant::now()
            } else {
                end
            };
            match tokio::time::timeout_at(until, recv(&mut self.port, &mut self.rbuf)).await {
                Ok(Ok(n)) => self.input(n),
                Ok(Err(e)) => return Err(self.io_error(e)),
                Err(_) => break,
            }
            self.dispatch_events();
        }
        self.dispatch_events();
        self.flush().await?;
        Ok(self.session.event_state().total - before)
    }

    /// Closes the port.
    pub(crate) fn disconnect(&mut self) {
        if self.port.is_some() {
            log::debug!("{}: disconnecting", self.port_name);
        }
        self.session.port_closed();
        self.port = None;
    }
}
