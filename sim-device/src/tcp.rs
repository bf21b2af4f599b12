//! A TCP transport: the cam listens, serves one client at a time, and
//! accepts the next one after a disconnect.
//!
//! While no client is connected the cam keeps running (scripts, frames,
//! timers) and what it sends is discarded, as a USB cam's output with no
//! host attached. A disconnect tells the cam its transport closed
//! ([`SansIoCam::transport_closed`]).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration as StdDuration;

use crate::serve::{
    detached_wait, run_detached, serve, MonotonicClock, Recv, SansIoCam, ServeEnd, ServeOptions,
    Transport,
};

/// How long a write to a client may block before the client is dropped.
pub const WRITE_TIMEOUT: StdDuration = StdDuration::from_secs(5);

/// One connected client as a [`Transport`].
#[derive(Debug)]
pub struct TcpTransport {
    stream: TcpStream,
}

impl TcpTransport {
    /// Wraps a connected stream (Nagle off, write timeout [`WRITE_TIMEOUT`]).
    pub fn new(stream: TcpStream) -> io::Result<TcpTransport> {
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        Ok(TcpTransport { stream })
    }
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

impl Transport for TcpTransport {
    fn recv(&mut self, buf: &mut [u8], timeout: StdDuration) -> io::Result<Recv> {
        let r = if timeout.is_zero() {
            self.stream.set_nonblocking(true)?;
            let r = self.stream.read(buf);
            self.stream.set_nonblocking(false)?;
            r
        } else {
            self.stream.set_read_timeout(Some(timeout))?;
            self.stream.read(buf)
        };
        match r {
            Ok(0) => Ok(Recv::Closed),
            Ok(n) => Ok(Recv::Data(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(Recv::Timeout)
            }
            Err(e) if is_disconnect(&e) => Ok(Recv::Closed),
            Err(e) => Err(e),
        }
    }

    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream.write_all(data)
    }
}

/// A listening TCP cam. See the module documentation.
#[derive(Debug)]
pub struct TcpServer {
    listener: TcpListener,
}

impl TcpServer {
    /// Listens on `addr` (port 0 picks a free port; see [`local_addr`](Self::local_addr)).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpServer> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(TcpServer { listener })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves clients one after the other until `shutdown` is raised.
    /// A client's transport error ends that client only.
    pub fn run<C: SansIoCam + ?Sized>(
        &self,
        cam: &mut C,
        clock: &MonotonicClock,
        shutdown: &AtomicBool,
        options: &ServeOptions,
    ) -> io::Result<()> {
        while !shutdown.load(Ordering::SeqCst) {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    log::info!("tcp: client {peer} connected");
                    let mut t = match TcpTransport::new(stream) {
                        Ok(t) => t,
                        Err(e) => {
                            log::warn!("tcp: cannot set up {peer}: {e}");
                            continue;
                        }
                    };
                    match serve(cam, &mut t, clock, shutdown, options) {
                        Ok(ServeEnd::Shutdown) => return Ok(()),
                        Ok(ServeEnd::Closed) => log::info!("tcp: client {peer} disconnected"),
                        Err(e) => log::warn!("tcp: client {peer} dropped: {e}"),
                    }
                    // The connection is gone: the cam's transport is inactive
                    // (this is what ends an abandoned read on a real cam).
                    cam.transport_closed();
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted =>
                {
                    run_detached(cam, clock);
                    let wait = detached_wait(cam, clock, options.max_wait);
                    wait_readable(&self.listener, wait);
                }
                Err(e) => {
                    // Transient accept errors (EMFILE, ECONNABORTED...): back off.
                    log::warn!("tcp: accept failed: {e}");
                    std::thread::sleep(options.max_wait);
                }
            }
        }
        Ok(())
    }
}

/// Blocks until the listener has a pending connection or `wait` passes.
#[cfg(unix)]
fn wait_readable(listener: &TcpListener, wait: StdDuration) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let _ = poll(
        &mut fds,
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
    );
}

#[cfg(not(unix))]
fn wait_readable(_listener: &TcpListener, wait: StdDuration) {
    std::thread::sleep(wait);
}

#[cfg(test)]
mod tests {
    use super::*;
    use omv_proto::device::{DeviceConfig, DeviceEndpoint};
    use std::sync::Arc;
    use std::thread;

    const SYNC: [u8; 10] = [0xaa, 0xd5, 0, 0, 0, 0, 0, 0, 0xb0, 0xac];
    const SYNC_ACK: [u8; 10] = [0xaa, 0xd5, 0, 0, 1, 0, 0, 0, 0x08, 0x46];

    #[test]
    fn serves_clients_one_after_another() {
        let server = TcpServer::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let t = thread::spawn(move || {
            let mut cam = DeviceEndpoint::new(DeviceConfig::default());
            server.run(
                &mut cam,
                &MonotonicClock::new(),
                &s,
                &ServeOptions::default(),
            )
        });
        for _ in 0..3 {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(StdDuration::from_secs(5))).unwrap();
            c.write_all(&SYNC).unwrap();
            let mut ack = [0u8; 10];
            c.read_exact(&mut ack).unwrap();
            assert_eq!(ack, SYNC_ACK);
        }
        stop.store(true, Ordering::SeqCst);
        t.join().unwrap().unwrap();
    }
}
