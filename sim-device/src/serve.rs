//! The serving loop: runs a sans-IO cam over a byte transport in real time.
//!
//! [`serve`] reads from a [`Transport`] with a timeout equal to the cam's
//! next deadline (capped at [`ServeOptions::max_wait`] so that work done on
//! other threads, such as script output, is noticed promptly), feeds what
//! arrives to the cam, writes everything the cam transmits, and stops when
//! a shutdown flag is raised or the transport closes. It never busy-waits:
//! every iteration blocks in the transport unless the cam has a deadline
//! that is already due.
//!
//! Time is a [`MonotonicClock`]: `std::time::Instant` converted to
//! [`omv_proto::Instant`] microseconds since the clock was made.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use omv_proto::device::DeviceEndpoint;
use omv_proto::Instant;

/// Default cap on one wait: stdout timers and frame production are
/// noticed at least this often.
pub const DEFAULT_MAX_WAIT: StdDuration = StdDuration::from_millis(20);

/// The sans-IO surface of a cam, as the serving loop drives it.
/// Implemented by [`DeviceEndpoint`] and [`SimCam`](crate::cam::SimCam).
pub trait SansIoCam {
    /// Bytes received from the host.
    fn handle_input(&mut self, now: Instant, data: &[u8]);
    /// Next bytes to send to the host.
    fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>>;
    /// Time has passed.
    fn handle_timeout(&mut self, now: Instant);
    /// When [`handle_timeout`](Self::handle_timeout) is due next.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The host closed the port (a TCP client left, a pty's host closed
    /// its descriptor). The default does nothing.
    fn transport_closed(&mut self) {}
}

impl SansIoCam for DeviceEndpoint {
    fn handle_input(&mut self, now: Instant, data: &[u8]) {
        DeviceEndpoint::handle_input(self, now, data)
    }
    fn transport_closed(&mut self) {
        self.set_transport_active(false)
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        DeviceEndpoint::poll_transmit(self, now)
    }
    fn handle_timeout(&mut self, now: Instant) {
        DeviceEndpoint::handle_timeout(self, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        DeviceEndpoint::poll_timeout(self)
    }
}

impl<C: SansIoCam + ?Sized> SansIoCam for &mut C {
    fn handle_input(&mut self, now: Instant, data: &[u8]) {
        (**self).handle_input(now, data)
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        (**self).poll_transmit(now)
    }
    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }
    fn transport_closed(&mut self) {
        (**self).transport_closed()
    }
}

/// What one [`Transport::recv`] produced.
///
/// Not `#[non_exhaustive]`: a read gives bytes, times out or finds the
/// peer gone; transports build it and the serve loop matches all three.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recv {
    /// This many bytes were read into the buffer.
    Data(usize),
    /// Nothing arrived within the timeout.
    Timeout,
    /// The peer is gone for good (TCP client disconnected, link dropped).
    Closed,
}

/// A byte transport the cam is served over.
pub trait Transport {
    /// Waits up to `timeout` for bytes (a zero timeout only checks).
    fn recv(&mut self, buf: &mut [u8], timeout: StdDuration) -> io::Result<Recv>;
    /// Writes all of `data`. A transport whose peer is not reading may
    /// discard data after a while rather than block forever.
    fn send(&mut self, data: &[u8]) -> io::Result<()>;
    /// True (once) when the host closed the port but the transport goes on
    /// for the next one (a pty's host closed its descriptor); [`serve`]
    /// then calls [`SansIoCam::transport_closed`]. The default: never.
    fn take_closed(&mut self) -> bool {
        false
    }
}

/// Real monotonic time as protocol [`Instant`]s (microseconds since the
/// clock was made).
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    start: StdInstant,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock::new()
    }
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> MonotonicClock {
        MonotonicClock {
            start: StdInstant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX))
    }
}

/// Serving loop settings.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Longest single wait for input.
    pub max_wait: StdDuration,
    /// Size of the read buffer.
    pub read_buffer: usize,
}

/// Chainable setters, one per field (the struct is `#[non_exhaustive]`:
/// build it from [`Default::default`] and these, not with a struct literal).
impl ServeOptions {
    /// Sets [`max_wait`](Self::max_wait).
    #[must_use]
    pub fn max_wait(mut self, max_wait: StdDuration) -> Self {
        self.max_wait = max_wait;
        self
    }
    /// Sets [`read_buffer`](Self::read_buffer).
    #[must_use]
    pub fn read_buffer(mut self, read_buffer: usize) -> Self {
        self.read_buffer = read_buffer;
        self
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_wait: DEFAULT_MAX_WAIT,
            read_buffer: 16 * 1024,
        }
    }
}

/// Why [`serve`] returned normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServeEnd {
    /// The shutdown flag was raised.
    Shutdown,
    /// The transport closed.
    Closed,
}

/// A transport failure that ended [`serve`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Reading failed.
    #[error("transport read failed: {0}")]
    Read(#[source] io::Error),
    /// Writing failed.
    #[error("transport write failed: {0}")]
    Write(#[source] io::Error),
}

/// How long to wait for input given the cam's next deadline.
fn wait_for(
    deadline: Option<Instant>,
    now: Instant,
    max_wait: StdDuration,
    spun: bool,
) -> StdDuration {
    match deadline {
        Some(t) if t > now => (t - now).min(max_wait),
        // A deadline already due: check input without blocking, but if the
        // last round was the same, block a little so a deadline that stays
        // in the past cannot spin the loop.
        Some(_) if spun => StdDuration::from_millis(1).min(max_wait),
        Some(_) => StdDuration::ZERO,
        None => max_wait,
    }
}

/// Sends everything the cam has for `now`.
pub fn flush<C: SansIoCam + ?Sized, T: Transport + ?Sized>(
    cam: &mut C,
    transport: &mut T,
    now: Instant,
) -> Result<(), ServeError> {
    while let Some(bytes) = cam.poll_transmit(now) {
        transport.send(&bytes).map_err(ServeError::Write)?;
    }
    Ok(())
}

/// Serves `cam` over `transport` until `shutdown` is raised or the
/// transport closes. See the module documentation.
pub fn serve<C: SansIoCam + ?Sized, T: Transport + ?Sized>(
    cam: &mut C,
    transport: &mut T,
    clock: &MonotonicClock,
    shutdown: &AtomicBool,
    options: &ServeOptions,
) -> Result<ServeEnd, ServeError> {
    let mut buf = vec![0u8; options.read_buffer.max(64)];
    let mut spun = false;
    loop {
        if shutdown.load(Ordering::SeqCst) {
            return Ok(ServeEnd::Shutdown);
        }
        let now = clock.now();
        if cam.poll_timeout().is_some_and(|t| t <= now) {
            cam.handle_timeout(now);
        }
        flush(cam, transport, now)?;
        let now = clock.now();
        let wait = wait_for(cam.poll_timeout(), now, options.max_wait, spun);
        spun = wait.is_zero();
        let got = transport.recv(&mut buf, wait).map_err(ServeError::Read)?;
        if transport.take_closed() {
            cam.transport_closed();
        }
        match got {
            Recv::Data(n) => {
                spun = false;
                let now = clock.now();
                cam.handle_input(now, &buf[..n]);
                flush(cam, transport, now)?;
            }
            Recv::Timeout => {}
            Recv::Closed => return Ok(ServeEnd::Closed),
        }
    }
}

/// Runs a cam's due timers and discards what it sends, while no host is
/// attached (a USB cam with no host: its packets go nowhere). Returns the
/// number of bytes discarded.
pub fn run_detached<C: SansIoCam + ?Sized>(cam: &mut C, clock: &MonotonicClock) -> usize {
    let now = clock.now();
    if cam.poll_timeout().is_some_and(|t| t <= now) {
        cam.handle_timeout(now);
    }
    let mut dropped = 0usize;
    while let Some(b) = cam.poll_transmit(now) {
        dropped += b.len();
    }
    if dropped > 0 {
        log::debug!("no host attached: discarded {dropped} bytes");
    }
    dropped
}

/// How long a loop with no host attached may sleep before the cam's next
/// deadline, capped at `max_wait`.
pub fn detached_wait<C: SansIoCam + ?Sized>(
    cam: &C,
    clock: &MonotonicClock,
    max_wait: StdDuration,
) -> StdDuration {
    let wait = wait_for(cam.poll_timeout(), clock.now(), max_wait, true);
    wait.max(StdDuration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::duplex;
    use omv_proto::device::DeviceConfig;
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn wait_rules() {
        let ms = StdDuration::from_millis;
        let max = ms(20);
        let now = Instant::from_millis(100);
        assert_eq!(wait_for(None, now, max, false), max);
        assert_eq!(
            wait_for(Some(Instant::from_millis(105)), now, max, false),
            ms(5)
        );
        assert_eq!(
            wait_for(Some(Instant::from_millis(500)), now, max, false),
            max
        );
        assert_eq!(
            wait_for(Some(Instant::from_millis(50)), now, max, false),
            ms(0)
        );
        assert_eq!(
            wait_for(Some(Instant::from_millis(50)), now, max, true),
            ms(1)
        );
    }

    #[test]
    fn serves_sync_over_a_link_and_stops_on_shutdown() {
        let (mut host, mut cam_end) = duplex();
        let shutdown = Arc::new(AtomicBool::new(false));
        let stop = shutdown.clone();
        let t = thread::spawn(move || {
            let mut cam = DeviceEndpoint::new(DeviceConfig::default());
            let clock = MonotonicClock::new();
            serve(
                &mut cam,
                &mut cam_end,
                &clock,
                &stop,
                &ServeOptions::default(),
            )
        });
        host.set_read_timeout(Some(StdDuration::from_secs(5)));
        host.write_all(&[0xaa, 0xd5, 0, 0, 0, 0, 0, 0, 0xb0, 0xac])
            .unwrap();
        let mut ack = [0u8; 10];
        host.read_exact(&mut ack).unwrap();
        assert_eq!(ack, [0xaa, 0xd5, 0, 0, 1, 0, 0, 0, 0x08, 0x46]);
        shutdown.store(true, Ordering::SeqCst);
        assert_eq!(t.join().unwrap().unwrap(), ServeEnd::Shutdown);
    }

    #[test]
    fn returns_closed_when_the_host_goes() {
        let (host, mut cam_end) = duplex();
        let t = thread::spawn(move || {
            let mut cam = DeviceEndpoint::new(DeviceConfig::default());
            serve(
                &mut cam,
                &mut cam_end,
                &MonotonicClock::new(),
                &AtomicBool::new(false),
                &ServeOptions::default(),
            )
        });
        drop(host);
        assert_eq!(t.join().unwrap().unwrap(), ServeEnd::Closed);
    }
}
