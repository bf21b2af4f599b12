//! The driver core: runs one [`HostEndpoint`] operation to completion over a
//! blocking [`Transport`].
//!
//! The loop writes every pending transmit, then blocks in
//! [`Transport::read`] exactly until the endpoint's next deadline
//! ([`HostEndpoint::poll_timeout`]): it never spins and never sleeps a fixed
//! amount. Bytes go to [`HostEndpoint::handle_input`], expired deadlines to
//! [`HostEndpoint::handle_timeout`], and every event is classified,
//! recorded, passed to the handler and queued before the loop goes on.

use std::time::Duration;

use omv_proto::host::{Completion, HostEndpoint};
use omv_proto::{Flags, Header, Instant};

use crate::camera::Camera;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::transport::Transport;

/// Size of the read buffer: a few full packets per read at any line rate.
pub(crate) const READ_BUF: usize = 64 * 1024;

impl Camera {
    /// The endpoint's clock: microseconds since the camera was created.
    pub(crate) fn now(&self) -> Instant {
        let us = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        Instant::from_micros(us)
    }

    /// Closes the port after an I/O error and wraps the error.
    pub(crate) fn io_error(&mut self, source: std::io::Error) -> Error {
        log::debug!("{}: I/O error, closing the port: {source}", self.port_name);
        self.port = None;
        self.host.disconnect();
        Error::Io {
            port: self.port_name.clone(),
            source,
        }
    }

    /// Writes every pending transmit.
    pub(crate) fn flush_transmits(&mut self) -> Result<()> {
        while let Some(bytes) = self.host.poll_transmit() {
            let Some(port) = self.port.as_mut() else {
                return Err(Error::NotConnected);
            };
            // One packet per transmit; requests carry neither ACK nor NAK.
            if let Ok(h) = Header::decode(&bytes) {
                if !h.flags.contains(Flags::ACK) && !h.flags.contains(Flags::NAK) {
                    self.last_request = Some(h.opcode);
                }
            }
            if let Err(e) = port.write_all(&bytes) {
                return Err(self.io_error(e));
            }
        }
        Ok(())
    }

    /// Blocks up to `wait` for bytes and feeds them to the endpoint.
    /// Returns whether any arrived.
    pub(crate) fn read_port(&mut self, wait: Duration) -> Result<bool> {
        let Some(port) = self.port.as_mut() else {
            return Err(Error::NotConnected);
        };
        let n = match port.read(&mut self.rbuf, wait) {
            Ok(n) => n,
            Err(e) => return Err(self.io_error(e)),
        };
        if n > 0 {
            let now = self.now();
            let Camera { host, rbuf, .. } = self;
            host.handle_input(now, &rbuf[..n]);
        }
        Ok(n > 0)
    }

    /// Moves the endpoint's events to the state, the handler and the queue.
    pub(crate) fn dispatch_events(&mut self) {
        if self.host.take_channels_changed() {
            self.channels_stale = true;
        }
        while let Some(raw) = self.host.poll_event() {
            let e = Event::classify(raw, &self.channels);
            log::debug!("event: {e}");
            self.state.record(&e);
            if let Some(h) = self.handler.as_mut() {
                h.on_event(&e);
            }
            if self.config.event_queue == 0 {
                self.state.dropped += 1;
                continue;
            }
            if self.pending.len() >= self.config.event_queue {
                self.pending.pop_front();
                self.state.dropped += 1;
            }
            self.pending.push_back(e);
        }
    }

    /// Runs the operation started on the endpoint until it completes.
    pub(crate) fn run_op(&mut self) -> Result<Completion> {
        loop {
            self.flush_transmits()?;
            self.dispatch_events();
            if let Some(c) = self.host.poll_completion() {
                // ACKs produced by the last input go out before returning.
                self.flush_transmits()?;
                return Ok(c);
            }
            let now = self.now();
            let Some(deadline) = self.host.poll_timeout() else {
                // Nothing in flight and nothing completed: the endpoint
                // dropped the operation (cannot happen with a started op).
                return Err(Error::NotConnected);
            };
            if deadline <= now {
                self.host.handle_timeout(now);
                continue;
            }
            self.read_port(deadline - now)?;
        }
    }

    /// Reads the port while idle, for up to `timeout`, returning early once
    /// at least one event arrived. Returns the number of events.
    pub(crate) fn idle_receive(&mut self, timeout: Duration) -> Result<u64> {
        let before = self.state.total;
        let start = self.now();
        let end = start + timeout;
        loop {
            self.flush_transmits()?;
            let now = self.now();
            let wait = end.saturating_duration_since(now);
            let got = self.read_port(wait)?;
            self.dispatch_events();
            self.flush_transmits()?;
            if self.state.total > before {
                // Drain what is already buffered, without waiting.
                while self.read_port(Duration::ZERO)? {
                    self.dispatch_events();
                    self.flush_transmits()?;
                }
                break;
            }
            if !got && self.now() >= end {
                break;
            }
        }
        Ok(self.state.total - before)
    }
}

/// Boxed transport (the camera owns one).
pub(crate) type Port = Box<dyn Transport>;

/// Fresh endpoint for a configuration.
pub(crate) fn endpoint(cfg: &crate::CameraConfig) -> HostEndpoint {
    HostEndpoint::new(cfg.host_config())
}
