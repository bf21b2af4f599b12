//! In-memory links between a host and a simulated cam, for tests.
//!
//! Two flavours:
//!
//! * [`duplex`]: a pair of [`LinkEnd`]s, byte pipes implementing
//!   [`std::io::Read`] + [`std::io::Write`] with read timeouts, like a
//!   serial port. A blocking host driver uses one end while
//!   [`serve`](crate::serve::serve) runs the cam on a thread on the other.
//! * [`SimLink`]: deterministic and single-threaded. It steps a sans-IO
//!   [`HostEndpoint`] and a cam against each other on a [`ManualClock`]
//!   that only moves when told to (or, when both sides are idle, to the
//!   next deadline), so a test replays exactly.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::time::Duration;
//! let (mut a, mut b) = omv_sim::link::duplex();
//! a.write_all(b"ping").unwrap();
//! let mut buf = [0u8; 8];
//! b.set_read_timeout(Some(Duration::from_millis(100)));
//! assert_eq!(b.read(&mut buf).unwrap(), 4);
//! drop(a);
//! assert_eq!(b.read(&mut buf).unwrap(), 0); // closed
//! ```

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use omv_proto::host::{CamEvent, Command, Completion, HostEndpoint, Reply, RequestError};
use omv_proto::{caps::Caps, Duration, Instant};

use crate::serve::{Recv, SansIoCam, Transport};

#[derive(Default)]
struct PipeState {
    buf: VecDeque<u8>,
    /// The writing end is gone.
    writer_closed: bool,
    /// The reading end is gone.
    reader_closed: bool,
}

#[derive(Default)]
struct Pipe {
    state: Mutex<PipeState>,
    ready: Condvar,
}

impl Pipe {
    fn lock(&self) -> MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One end of an in-memory duplex byte link (see [`duplex`]).
///
/// Reads block until bytes arrive, the read timeout passes (error
/// [`io::ErrorKind::TimedOut`], like a serial port) or the other end is
/// dropped (`Ok(0)` once the buffered bytes are read). Writes never block;
/// writing after the other end is dropped fails with
/// [`io::ErrorKind::BrokenPipe`].
pub struct LinkEnd {
    rx: Arc<Pipe>,
    tx: Arc<Pipe>,
    read_timeout: Option<StdDuration>,
}

impl std::fmt::Debug for LinkEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkEnd")
            .field("buffered", &self.rx.lock().buf.len())
            .field("read_timeout", &self.read_timeout)
            .finish()
    }
}

/// A connected pair of [`LinkEnd`]s: bytes written to one are read from the other.
pub fn duplex() -> (LinkEnd, LinkEnd) {
    let ab = Arc::new(Pipe::default());
    let ba = Arc::new(Pipe::default());
    (
        LinkEnd {
            rx: ba.clone(),
            tx: ab.clone(),
            read_timeout: None,
        },
        LinkEnd {
            rx: ab,
            tx: ba,
            read_timeout: None,
        },
    )
}

impl LinkEnd {
    /// Sets how long a read waits (`None`: forever).
    pub fn set_read_timeout(&mut self, timeout: Option<StdDuration>) {
        self.read_timeout = timeout;
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> Option<StdDuration> {
        self.read_timeout
    }

    /// Bytes waiting to be read.
    pub fn available(&self) -> usize {
        self.rx.lock().buf.len()
    }

    /// True once the other end has been dropped.
    pub fn is_closed(&self) -> bool {
        self.rx.lock().writer_closed
    }

    /// Waits up to `timeout` (`None`: forever) for bytes and reads them.
    fn read_within(&mut self, buf: &mut [u8], timeout: Option<StdDuration>) -> io::Result<Recv> {
        let deadline = timeout.map(|t| StdInstant::now() + t);
        let mut st = self.rx.lock();
        loop {
            if !st.buf.is_empty() {
                let n = buf.len().min(st.buf.len());
                for (d, s) in buf.iter_mut().zip(st.buf.drain(..n)) {
                    *d = s;
                }
                return Ok(Recv::Data(n));
            }
            if st.writer_closed {
                return Ok(Recv::Closed);
            }
            match deadline {
                None => st = self.rx.ready.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(StdInstant::now());
                    if left.is_zero() {
                        return Ok(Recv::Timeout);
                    }
                    st = self
                        .rx
                        .ready
                        .wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
}

impl io::Read for LinkEnd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.read_within(buf, self.read_timeout)? {
            Recv::Data(n) => Ok(n),
            Recv::Closed => Ok(0),
            Recv::Timeout => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "link read timed out",
            )),
        }
    }
}

impl io::Write for LinkEnd {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut st = self.tx.lock();
        if st.reader_closed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the other end of the link is closed",
            ));
        }
        st.buf.extend(data);
        drop(st);
        self.tx.ready.notify_all();
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LinkEnd {
    fn drop(&mut self) {
        self.tx.lock().writer_closed = true;
        self.tx.ready.notify_all();
        self.rx.lock().reader_closed = true;
    }
}

impl Transport for LinkEnd {
    fn recv(&mut self, buf: &mut [u8], timeout: StdDuration) -> io::Result<Recv> {
        self.read_within(buf, Some(timeout))
    }

    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        io::Write::write_all(self, data)
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock at [`Instant::ZERO`].
    pub fn new() -> ManualClock {
        ManualClock::default()
    }

    /// The current time.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.0.load(Ordering::SeqCst))
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                Some(v.saturating_add(us))
            })
            .ok();
    }

    /// Moves the clock to `t` if it is later than now.
    pub fn advance_to(&self, t: Instant) {
        self.0.fetch_max(t.as_micros(), Ordering::SeqCst);
    }
}

/// Why a [`SimLink`] run ended without a completion.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// Neither side has anything to send nor a timer set.
    #[error("link stalled: nothing to send and no timer pending")]
    Stalled,
    /// The step limit was reached.
    #[error("no completion after {0} steps")]
    TooManySteps(u64),
    /// The host refused to start the request.
    #[error("request refused: {0}")]
    Refused(#[from] RequestError),
    /// The host completed something other than what was awaited.
    #[error("unexpected completion {0}")]
    Unexpected(String),
}

/// A deterministic, single-threaded link between a sans-IO host and a cam.
///
/// Each step moves every pending host packet to the cam and every pending
/// cam packet to the host at the clock's current time. When nothing moves,
/// the clock jumps to the earlier of the two sides' deadlines. Virtual time
/// costs nothing, so a test of a 1 s timeout takes microseconds.
#[derive(Debug)]
pub struct SimLink<C: SansIoCam> {
    /// The host endpoint.
    pub host: HostEndpoint,
    /// The cam.
    pub cam: C,
    /// The shared virtual time.
    pub clock: ManualClock,
    /// Events the host received, oldest first.
    pub events: Vec<CamEvent>,
    /// Most steps one [`run`](Self::run) may take.
    pub max_steps: u64,
}

impl<C: SansIoCam> SimLink<C> {
    /// A link at time zero.
    pub fn new(host: HostEndpoint, cam: C) -> SimLink<C> {
        SimLink {
            host,
            cam,
            clock: ManualClock::new(),
            events: Vec::new(),
            max_steps: 10_000_000,
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Advances virtual time by `d` and lets both sides handle their timers.
    pub fn advance(&mut self, d: Duration) {
        self.clock.advance(d);
        let now = self.now();
        self.host.handle_timeout(now);
        self.cam.handle_timeout(now);
    }

    /// Moves pending bytes both ways once; returns true if anything moved.
    pub fn step(&mut self) -> bool {
        let now = self.now();
        let mut moved = false;
        while let Some(bytes) = self.host.poll_transmit() {
            moved = true;
            self.cam.handle_input(now, &bytes);
        }
        while let Some(bytes) = self.cam.poll_transmit(now) {
            moved = true;
            self.host.handle_input(now, &bytes);
        }
        while let Some(e) = self.host.poll_event() {
            self.events.push(e);
        }
        moved
    }

    /// Steps until the host completes something, jumping virtual time to
    /// the next deadline whenever both sides are idle.
    pub fn run(&mut self) -> Result<Completion, LinkError> {
        for _ in 0..self.max_steps {
            if let Some(c) = self.host.poll_completion() {
                while let Some(e) = self.host.poll_event() {
                    self.events.push(e);
                }
                return Ok(c);
            }
            if !self.step() {
                let next = [self.host.poll_timeout(), self.cam.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                let Some(t) = next else {
                    return Err(LinkError::Stalled);
                };
                self.clock.advance_to(t);
                let now = self.now();
                self.host.handle_timeout(now);
                self.cam.handle_timeout(now);
            }
        }
        Err(LinkError::TooManySteps(self.max_steps))
    }

    /// Steps until neither side moves a byte, without advancing time.
    pub fn settle(&mut self) {
        for _ in 0..self.max_steps {
            if !self.step() {
                return;
            }
        }
    }

    /// Connects the host (SYNC and caps negotiation).
    pub fn connect(&mut self) -> Result<Caps, LinkError> {
        self.host.connect(self.now());
        match self.run()? {
            Completion::Connected(r) => Ok(r?),
            other => Err(LinkError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Sends one request and waits for its reply; a NAK or timeout is an
    /// `Ok(Err(..))`, a link problem an `Err`.
    pub fn request(&mut self, cmd: &Command) -> Result<Result<Reply, RequestError>, LinkError> {
        self.host.request(self.now(), cmd)?;
        match self.run()? {
            Completion::Request(r) => Ok(r),
            other => Err(LinkError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Feeds raw bytes to the cam, as if the host had sent them (for
    /// malformed-packet tests), and returns what the cam answers right away.
    pub fn raw_exchange(&mut self, bytes: &[u8]) -> Vec<u8> {
        let now = self.now();
        self.cam.handle_input(now, bytes);
        let mut out = Vec::new();
        while let Some(b) = self.cam.poll_transmit(now) {
            out.extend_from_slice(&b);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omv_proto::device::{DeviceConfig, DeviceEndpoint};
    use omv_proto::host::HostConfig;
    use omv_proto::Opcode;
    use std::io::{Read, Write};
    use std::thread;

    #[test]
    fn read_timeout_and_close() {
        let (mut a, mut b) = duplex();
        b.set_read_timeout(Some(StdDuration::from_millis(20)));
        let mut buf = [0u8; 4];
        let t0 = StdInstant::now();
        let e = b.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t0.elapsed() >= StdDuration::from_millis(20));
        a.write_all(b"hello").unwrap();
        assert_eq!(b.read(&mut buf).unwrap(), 4);
        assert_eq!(b.available(), 1);
        drop(a);
        assert!(b.is_closed());
        assert_eq!(b.read(&mut buf).unwrap(), 1);
        assert_eq!(b.read(&mut buf).unwrap(), 0);
        assert_eq!(b.write(b"x").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn blocking_read_wakes_on_write_from_another_thread() {
        let (mut a, mut b) = duplex();
        let t = thread::spawn(move || {
            let mut buf = [0u8; 3];
            b.read_exact(&mut buf).unwrap();
            buf
        });
        thread::sleep(StdDuration::from_millis(10));
        a.write_all(b"abc").unwrap();
        assert_eq!(&t.join().unwrap(), b"abc");
    }

    #[test]
    fn manual_clock_is_shared() {
        let c = ManualClock::new();
        let d = c.clone();
        c.advance(Duration::from_millis(5));
        assert_eq!(d.now(), Instant::from_millis(5));
        d.advance_to(Instant::from_millis(3));
        assert_eq!(c.now(), Instant::from_millis(5));
        d.advance_to(Instant::from_millis(9));
        assert_eq!(c.now(), Instant::from_millis(9));
    }

    #[test]
    fn simlink_connects_and_times_out_in_virtual_time() {
        let host = HostEndpoint::new(HostConfig::default());
        let cam = DeviceEndpoint::new(DeviceConfig::default());
        let mut link = SimLink::new(host, cam);
        link.connect().unwrap();
        let r = link
            .request(&Command::system(Opcode::PROTO_VERSION))
            .unwrap()
            .unwrap();
        assert_eq!(&r.into_bytes()[..3], &[1, 0, 2]);
        // SYS_RESET gets no answer: the host times out in virtual time.
        let t0 = link.now();
        let r = link.request(&Command::system(Opcode::SYS_RESET)).unwrap();
        assert!(r.is_err());
        assert!(link.now() > t0);
    }
}
