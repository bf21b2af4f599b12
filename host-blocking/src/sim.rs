//! An embedded simulated cam: `sim-device`'s [`SimCam`] served on a thread
//! over an in-memory link, for the `omv` CLI (when no port is given), for
//! examples and for tests.
//!
//! ```
//! use host_blocking::sim::EmbeddedSim;
//! use host_blocking::{Camera, CameraConfig};
//! use sim_device::cam::SimConfig;
//! let sim = EmbeddedSim::start(SimConfig::new().channel("bulk", 1000), |_| {}).unwrap();
//! let mut cam = Camera::with_transport(sim.take_link().unwrap(), CameraConfig::new("sim"));
//! cam.connect().unwrap();
//! assert_eq!(cam.channel_read("bulk", Some(4)).unwrap(), Some(vec![0, 1, 2, 3]));
//! ```

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sim_device::cam::{SimCam, SimConfig, SimError};
use sim_device::link::{duplex, LinkEnd};
use sim_device::serve::{serve, MonotonicClock, ServeOptions};

use crate::transport::Transport;

/// The host end of an in-memory link: reads honour the driver's timeout.
#[derive(Debug)]
pub struct LinkTransport {
    end: LinkEnd,
    name: String,
}

impl LinkTransport {
    /// Wraps one end of a [`sim_device::link::duplex`] pair.
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
pub enum StartError {
    /// The simulated cam's configuration was rejected.
    #[error("simulated cam: {0}")]
    Build(#[from] SimError),
    /// Its thread could not be spawned.
    #[error("cannot start the simulated cam's thread: {0}")]
    Thread(#[source] io::Error),
}

/// A [`SimCam`] running on its own thread. Dropping it stops the thread.
pub struct EmbeddedSim {
    shutdown: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    link: Mutex<Option<LinkTransport>>,
}

impl EmbeddedSim {
    /// Builds the cam from `config`, lets `setup` register extra channels
    /// (or anything else), and serves it on a thread. The host end of the
    /// link is available once through [`take_link`](Self::take_link).
    pub fn start(
        config: SimConfig,
        setup: impl FnOnce(&mut SimCam) + Send + 'static,
    ) -> Result<EmbeddedSim, StartError> {
        let mut cam = config.build()?;
        let (host_end, mut cam_end) = duplex();
        let shutdown = Arc::new(AtomicBool::new(false));
        let flag = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name("omv-embedded-sim".into())
            .spawn(move || {
                setup(&mut cam);
                let clock = MonotonicClock::new();
                match serve(
                    &mut cam,
                    &mut cam_end,
                    &clock,
                    &flag,
                    &ServeOptions::default(),
                ) {
                    Ok(end) => log::debug!("embedded sim: {end:?}"),
                    Err(e) => log::warn!("embedded sim stopped: {e}"),
                }
            })
            .map_err(StartError::Thread)?;
        Ok(EmbeddedSim {
            shutdown,
            thread: Some(thread),
            link: Mutex::new(Some(LinkTransport::new("embedded-sim", host_end))),
        })
    }

    /// The host end of the link (once).
    pub fn take_link(&self) -> Option<LinkTransport> {
        self.link.lock().unwrap_or_else(|e| e.into_inner()).take()
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
