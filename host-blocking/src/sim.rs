//! An embedded simulated cam: `sim-device`'s [`SimCam`] served on a thread
//! over an in-memory link (or a pty, or TCP), for the `omv` CLI (when no
//! port is given), for examples and for tests.
//!
//! ```
//! use omv_blocking::sim::EmbeddedSim;
//! use omv_blocking::{Camera, CameraConfig};
//! use omv_sim::cam::SimConfig;
//! let sim = EmbeddedSim::start(SimConfig::new().channel("bulk", 1000), |_| {}).unwrap();
//! let mut cam = Camera::with_transport(sim.take_link().unwrap(), CameraConfig::new("sim"));
//! cam.connect().unwrap();
//! assert_eq!(cam.channel_read("bulk", Some(4)).unwrap(), Some(vec![0, 1, 2, 3]));
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use omv_proto::Instant;
use omv_sim::cam::{SimCam, SimConfig, SimError};
use omv_sim::link::{duplex, LinkEnd};
use omv_sim::serve::{serve, MonotonicClock, SansIoCam, ServeOptions, Transport as CamTransport};

use crate::transport::Transport;

/// The host end of an in-memory link: reads honour the driver's timeout.
#[derive(Debug)]
pub struct LinkTransport {
    end: LinkEnd,
    name: String,
}

impl LinkTransport {
    /// Wraps one end of a [`omv_sim::link::duplex`] pair.
    pub fn new(name: &str, end: LinkEnd) -> LinkTransport {
        LinkTransport {
            end,
            name: name.to_string(),
        }
    }
}

impl Transport for LinkTransport {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        io::Write::write_all(&mut self.end, buf)
    }

    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        if timeout.is_zero() && self.end.available() == 0 {
            if self.end.is_closed() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the simulated cam stopped",
                ));
            }
            return Ok(0);
        }
        self.end
            .set_read_timeout(Some(timeout.max(Duration::from_micros(1))));
        match io::Read::read(&mut self.end, buf) {
            Ok(0) if !buf.is_empty() => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the simulated cam stopped",
            )),
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// Why an embedded cam could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The simulated cam's configuration was rejected.
    #[error("simulated cam: {0}")]
    Build(#[from] SimError),
    /// The pseudo-terminal could not be created.
    #[error("cannot create a pseudo-terminal: {0}")]
    Pty(String),
    /// Its thread or its TCP listener could not be set up.
    #[error("cannot start the simulated cam: {0}")]
    Thread(#[source] io::Error),
}

/// Work to run on the cam's thread (see [`EmbeddedSim::with_cam`]).
type CamJob = Box<dyn FnOnce(&mut SimCam) + Send>;

/// The cam plus a queue of jobs run between packets: the serving loop
/// calls `poll_transmit` at least every 20 ms, and jobs run there.
struct Controlled {
    cam: SimCam,
    jobs: Receiver<CamJob>,
}

impl Controlled {
    fn run_jobs(&mut self) {
        while let Ok(job) = self.jobs.try_recv() {
            job(&mut self.cam);
        }
    }
}

impl SansIoCam for Controlled {
    fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.run_jobs();
        self.cam.handle_input(now, data)
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.run_jobs();
        self.cam.poll_transmit(now)
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.cam.handle_timeout(now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.cam.poll_timeout()
    }
    // The port closing is what ends an abandoned read (SimConfig::
    // abandoned_reads): it must reach the cam.
    fn transport_closed(&mut self) {
        self.run_jobs();
        self.cam.transport_closed()
    }
}

/// A [`SimCam`] served on its own thread, over an in-memory link
/// ([`start`](Self::start)) or a pseudo-terminal
/// ([`start_pty`](Self::start_pty)). Dropping it stops the thread.
pub struct EmbeddedSim {
    shutdown: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    link: Mutex<Option<LinkTransport>>,
    jobs: Mutex<Sender<CamJob>>,
    path: Option<PathBuf>,
    tcp_addr: Option<String>,
}

impl EmbeddedSim {
    /// Builds the cam from `config`, lets `setup` register extra channels
    /// (or anything else) and serves it on a thread over an in-memory
    /// link. The host end of the link is available once through
    /// [`take_link`](Self::take_link).
    pub fn start(
        config: SimConfig,
        setup: impl FnOnce(&mut SimCam) + Send + 'static,
    ) -> Result<EmbeddedSim, StartError> {
        let (host_end, cam_end) = duplex();
        let mut sim = EmbeddedSim::serve_on(config, setup, cam_end)?;
        sim.link = Mutex::new(Some(LinkTransport::new("embedded-sim", host_end)));
        Ok(sim)
    }

    /// Like [`start`](Self::start) but serves on a new pseudo-terminal,
    /// whose path ([`path`](Self::path)) a host opens as a serial port.
    #[cfg(unix)]
    pub fn start_pty(
        config: SimConfig,
        setup: impl FnOnce(&mut SimCam) + Send + 'static,
    ) -> Result<EmbeddedSim, StartError> {
        let pty = omv_sim::pty::Pty::open().map_err(|e| StartError::Pty(e.to_string()))?;
        let path = pty.path().to_path_buf();
        let mut sim = EmbeddedSim::serve_on(config, setup, pty)?;
        sim.path = Some(path);
        Ok(sim)
    }

    /// Like [`start`](Self::start) but listens on TCP at `addr` (port 0
    /// picks one; see [`tcp_addr`](Self::tcp_addr)), serving clients one
    /// after the other.
    pub fn start_tcp(
        config: SimConfig,
        setup: impl FnOnce(&mut SimCam) + Send + 'static,
        addr: &str,
    ) -> Result<EmbeddedSim, StartError> {
        let server = omv_sim::tcp::TcpServer::bind(addr).map_err(StartError::Thread)?;
        let bound = server.local_addr().map_err(StartError::Thread)?;
        let mut sim = EmbeddedSim::spawn(config, setup, move |cam, clock, flag, opts| {
            if let Err(e) = server.run(cam, clock, flag, opts) {
                log::warn!("embedded sim: TCP server stopped: {e}");
            }
        })?;
        sim.tcp_addr = Some(bound.to_string());
        Ok(sim)
    }

    /// Serves the cam over any transport of sim-device's.
    pub fn serve_on<T: CamTransport + Send + 'static>(
        config: SimConfig,
        setup: impl FnOnce(&mut SimCam) + Send + 'static,
        mut transport: T,
    ) -> Result<EmbeddedSim, StartError> {
        EmbeddedSim::spawn(config, setup, move |cam, clock, flag, opts| {
            match serve(cam, &mut transport, clock, flag, opts) {
                Ok(end) => log::debug!("embedded sim: {end:?}"),
                Err(e) => log::warn!("embedded sim stopped: {e}"),
            }
        })
    }

    fn spawn(
        config: SimConfig,
        setup: impl FnOnce(&mut SimCam) + Send + 'static,
        run: impl FnOnce(&mut Controlled, &MonotonicClock, &AtomicBool, &ServeOptions) + Send + 'static,
    ) -> Result<EmbeddedSim, StartError> {
        let cam = config.build()?;
        let (tx, rx) = mpsc::channel::<CamJob>();
        let shutdown = Arc::new(AtomicBool::new(false));
        let flag = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name("omv-embedded-sim".into())
            .spawn(move || {
                let mut cam = Controlled { cam, jobs: rx };
                setup(&mut cam.cam);
                run(
                    &mut cam,
                    &MonotonicClock::new(),
                    &flag,
                    &ServeOptions::default(),
                );
            })
            .map_err(StartError::Thread)?;
        Ok(EmbeddedSim {
            shutdown,
            thread: Some(thread),
            link: Mutex::new(None),
            jobs: Mutex::new(tx),
            path: None,
            tcp_addr: None,
        })
    }

    /// The host end of the in-memory link (once; `None` for a pty).
    pub fn take_link(&self) -> Option<LinkTransport> {
        self.link.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The pseudo-terminal's path, when serving on one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The bound TCP address, when serving on TCP.
    pub fn tcp_addr(&self) -> Option<&str> {
        self.tcp_addr.as_deref()
    }

    /// Runs `f` on the cam's thread (between packets, within about 20 ms)
    /// and returns its result; `None` if the cam is gone or `f` did not run
    /// within 5 s. For tests and tools: register a channel at run time,
    /// read the cam's counters...
    pub fn with_cam<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SimCam) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = mpsc::channel();
        let job: CamJob = Box::new(move |cam| {
            let _ = tx.send(f(cam));
        });
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .ok()?;
        rx.recv_timeout(Duration::from_secs(5)).ok()
    }
}

impl Drop for EmbeddedSim {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
