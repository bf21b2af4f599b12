//! The driver: runs one [`Session`](omv_session::Session) operation to
//! completion over a blocking [`Transport`](crate::Transport).
//!
//! The loop writes what the session transmits (one packet per write),
//! carries out its port commands (close and reopen the port),
//! hands events to the handler and the pending queue, then blocks in
//! [`Transport::read`](crate::Transport::read) exactly until the session's next deadline
//! ([`Session::poll_timeout`](omv_session::Session::poll_timeout)): it never
//! spins and never sleeps a fixed amount. With a cancel flag installed the
//! read waits at most [`CANCEL_POLL`], so that the flag is seen promptly.
//! All the policy (retries, resume, resync) is in the session.

use std::time::Duration;

use omv_proto::Instant;
use omv_session::{Operation, PortCommand};

use crate::camera::Camera;
use omv_session::{Error, Result};

/// Size of the read buffer: a few full packets per read at any line rate.
pub(crate) const READ_BUF: usize = 64 * 1024;

/// Longest blocking read while a cancel flag is installed.
pub const CANCEL_POLL: Duration = Duration::from_millis(50);

impl Camera {
    /// The session's clock: microseconds since the camera was created.
    pub(crate) fn now(&self) -> Instant {
        let us = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        Instant::from_micros(us)
    }

    /// Closes the port after an I/O error and wraps the error.
    fn io_error(&mut self, source: std::io::Error) -> Error {
        log::debug!("{}: I/O error, closing the port: {source}", self.port_name);
        self.port = None;
        self.session.port_closed();
        Error::Io {
            port: self.port_name.clone(),
            source,
        }
    }

    /// Writes every pending transmit, one packet per write (a datagram
    /// transport sends one packet per datagram).
    pub(crate) fn flush_transmits(&mut self) -> Result<()> {
        let now = self.now();
        self.tbuf.clear();
        while self.session.poll_transmit(now, &mut self.tbuf).is_some() {
            let Some(port) = self.port.as_mut() else {
                return Err(Error::NotConnected);
            };
            if let Err(e) = port.write_all(&self.tbuf) {
                return Err(self.io_error(e));
            }
            self.tbuf.clear();
        }
        Ok(())
    }

    /// Carries out the session's port commands; true when there were any
    /// (what the session sends next must go out before the loop blocks).
    fn port_commands(&mut self) -> Result<bool> {
        let mut any = false;
        while let Some(cmd) = self.session.poll_port_command() {
            any = true;
            match cmd {
                PortCommand::Reopen => {
                    let ok = self.reopen_port();
                    let now = self.now();
                    self.session.port_command_done(now, ok);
                }
                _ => {
                    let now = self.now();
                    self.session.port_command_done(now, false);
                }
            }
        }
        Ok(any)
    }

    /// Blocks up to `wait` for bytes and feeds them to the session.
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
            let Camera { session, rbuf, .. } = self;
            session.handle_input(now, &rbuf[..n]);
        }
        Ok(n > 0)
    }

    /// Moves the session's events to the handler and the pending queue.
    pub(crate) fn dispatch_events(&mut self) {
        while let Some(e) = self.session.poll_event() {
            if let Some(h) = self.handler.as_mut() {
                h.on_event(&e);
            }
            self.pending.push(e, self.config.event_queue);
        }
    }

    fn cancelled(&mut self) -> bool {
        self.cancel.as_mut().is_some_and(|c| c.requested())
    }

    /// Runs `op` to completion.
    pub(crate) fn run<O: Operation>(&mut self, op: O) -> Result<O::Output> {
        if self.port.is_none() {
            return Err(Error::NotConnected);
        }
        // Take in what the cam already sent (a registration must be seen
        // before the lookup it affects): a zero-timeout read.
        if self.session.is_connected() {
            self.read_port(Duration::ZERO)?;
        }
        let now = self.now();
        let pending = self.session.start(now, op)?;
        let mut progress = None;
        loop {
            self.flush_transmits()?;
            if self.port_commands()? {
                continue;
            }
            self.dispatch_events();
            if let Some(out) = self.session.take_output(&pending) {
                // ACKs produced by the last input go out before returning.
                self.flush_transmits()?;
                return out;
            }
            if self.cancelled() {
                self.session.cancel();
                continue;
            }
            let p = self.session.progress();
            if p != progress {
                progress = p;
                if let (Some(p), Some(f)) = (p, self.progress.as_mut()) {
                    f(p);
                }
            }
            let now = self.now();
            let mut wait = match self.session.poll_timeout() {
                Some(t) if t <= now => {
                    self.session.handle_timeout(now);
                    continue;
                }
                Some(t) => t - now,
                None => CANCEL_POLL,
            };
            if self.cancel.is_some() {
                wait = wait.min(CANCEL_POLL);
            }
            self.read_port(wait)?;
        }
    }

    /// Reads the port while idle, for up to `timeout`, returning early once
    /// at least one event arrived. Returns the number of events.
    pub(crate) fn idle_receive(&mut self, timeout: Duration) -> Result<u64> {
        let before = self.session.event_state().total;
        let end = self.now() + timeout;
        loop {
            self.flush_transmits()?;
            let mut wait = end.saturating_duration_since(self.now());
            if self.cancel.is_some() {
                wait = wait.min(CANCEL_POLL);
            }
            let got = self.read_port(wait)?;
            self.dispatch_events();
            self.flush_transmits()?;
            if self.session.event_state().total > before {
                // Drain what is already buffered, without waiting.
                while self.read_port(Duration::ZERO)? {
                    self.dispatch_events();
                    self.flush_transmits()?;
                }
                break;
            }
            if (!got && self.now() >= end) || self.cancelled() {
                break;
            }
        }
        Ok(self.session.event_state().total - before)
    }
}
