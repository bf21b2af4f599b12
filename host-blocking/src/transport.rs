//! Byte ports: the [`Transport`] trait and its implementations for a serial
//! port ([`SerialTransport`]), TCP ([`TcpTransport`]), UDP
//! ([`UdpTransport`], one packet per datagram), a reader/writer pair
//! whose reads block ([`ThreadedTransport`], e.g. pipes or an in-memory
//! link) and any `Read + Write` whose reads honour their own timeout
//! ([`IoTransport`]).
//!
//! The driver blocks in [`Transport::read`] exactly until the protocol's
//! next deadline, so every implementation must return as soon as bytes are
//! available and return `Ok(0)` when the timeout passes with none.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

/// Default serial line rate (defined in `omv-session`).
pub use omv_session::DEFAULT_BAUDRATE;

/// A bidirectional byte port to a cam.
///
/// ```
/// use omv_blocking::transport::{IoTransport, Transport};
/// use std::io::Cursor;
/// use std::time::Duration;
/// let mut t = IoTransport::new("mem", Cursor::new(vec![1u8, 2, 3]));
/// let mut buf = [0u8; 8];
/// assert_eq!(t.read(&mut buf, Duration::from_millis(10)).unwrap(), 3);
/// ```
pub trait Transport: Send {
    /// Writes every byte of `buf` (blocking until done or failed).
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;

    /// Waits up to `timeout` for bytes and reads what is available into
    /// `buf`. Returns the count, or `Ok(0)` when the timeout passed with
    /// nothing to read. A closed port is an error, never `Ok(0)`.
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize>;

    /// A name for messages: the device path, address or link name.
    fn name(&self) -> &str;
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        (**self).write_all(buf)
    }
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        (**self).read(buf, timeout)
    }
    fn name(&self) -> &str {
        (**self).name()
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the port was closed")
}

/// Maps a port read with a timeout to the [`Transport::read`] contract:
/// a timeout or interruption is `Ok(0)` ("nothing yet"), end of stream is an error.
fn read_with_timeout(result: io::Result<usize>, wanted: usize) -> io::Result<usize> {
    match result {
        Ok(0) if wanted > 0 => Err(closed()),
        Ok(n) => Ok(n),
        Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// How a socket waits in a read: non-blocking for a zero timeout (a 1 µs
/// `SO_RCVTIMEO` would be rounded up to a scheduler tick, several
/// milliseconds, by Linux), else blocking with that read timeout. Remembers
/// the mode set last, so that a run of reads with one timeout costs no
/// system call to set it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum SocketWait {
    /// Not set yet.
    #[default]
    Unset,
    /// Non-blocking.
    Poll,
    /// Blocking with this read timeout.
    Block(Duration),
}

impl SocketWait {
    /// The mode for `timeout`.
    fn for_timeout(timeout: Duration) -> SocketWait {
        if timeout.is_zero() {
            SocketWait::Poll
        } else {
            SocketWait::Block(timeout)
        }
    }

    /// Switches a socket to the mode `timeout` needs, if it is not in it.
    fn apply(
        &mut self,
        timeout: Duration,
        set_nonblocking: impl FnOnce(bool) -> io::Result<()>,
        set_read_timeout: impl FnOnce(Option<Duration>) -> io::Result<()>,
    ) -> io::Result<()> {
        let want = SocketWait::for_timeout(timeout);
        if *self == want {
            return Ok(());
        }
        match want {
            SocketWait::Poll => set_nonblocking(true)?,
            SocketWait::Block(t) => {
                if matches!(*self, SocketWait::Poll | SocketWait::Unset) {
                    set_nonblocking(false)?;
                }
                set_read_timeout(Some(t))?;
            }
            SocketWait::Unset => {}
        }
        *self = want;
        Ok(())
    }
}

/// A serial port (USB CDC or UART), through the `serialport` crate.
pub struct SerialTransport {
    port: Box<dyn serialport::SerialPort>,
    name: String,
    write_timeout: Duration,
}

impl SerialTransport {
    /// Opens `path` at `baudrate` (use [`DEFAULT_BAUDRATE`] over USB), raw
    /// 8N1 without flow control. `write_timeout` bounds a blocked write.
    pub fn open(path: &str, baudrate: u32, write_timeout: Duration) -> io::Result<SerialTransport> {
        let port = serialport::new(path, baudrate)
            .timeout(write_timeout)
            .open()
            .map_err(io::Error::from)?;
        Ok(SerialTransport {
            port,
            name: path.to_string(),
            write_timeout,
        })
    }
}

impl Transport for SerialTransport {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.port
            .set_timeout(self.write_timeout)
            .map_err(io::Error::from)?;
        Write::write_all(&mut self.port, buf)
    }

    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        self.port.set_timeout(timeout).map_err(io::Error::from)?;
        let wanted = buf.len();
        read_with_timeout(self.port.read(buf), wanted)
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// A TCP connection (e.g. to `omv-sim --tcp`), with Nagle disabled.
pub struct TcpTransport {
    stream: TcpStream,
    name: String,
    wait: SocketWait,
}

impl TcpTransport {
    /// Connects to `addr` (`host:port`), trying each resolved address for
    /// at most `timeout`.
    pub fn connect(addr: &str, timeout: Duration) -> io::Result<TcpTransport> {
        let mut last = None;
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, timeout.max(Duration::from_millis(1))) {
                Ok(stream) => return TcpTransport::from_stream(stream, addr),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "the address resolved to nothing")
        }))
    }

    /// Wraps a connected stream.
    pub fn from_stream(stream: TcpStream, name: &str) -> io::Result<TcpTransport> {
        stream.set_nodelay(true)?;
        Ok(TcpTransport {
            stream,
            name: name.to_string(),
            wait: SocketWait::Unset,
        })
    }
}

impl Transport for TcpTransport {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.wait == SocketWait::Poll {
            // A non-blocking socket's write could stop short with WouldBlock.
            self.stream.set_nonblocking(false)?;
            self.wait = SocketWait::Unset;
        }
        self.stream.write_all(buf)
    }

    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        let stream = &self.stream;
        self.wait.apply(
            timeout,
            |on| stream.set_nonblocking(on),
            |t| stream.set_read_timeout(t),
        )?;
        let wanted = buf.len();
        read_with_timeout(self.stream.read(buf), wanted)
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// UDP to a cam (e.g. `omv-sim --udp`, or a cam script serving the protocol
/// over the network): one packet per datagram.
///
/// Each [`write_all`](Transport::write_all) is sent as one datagram, and the
/// drivers write one packet per call, so a packet never spans datagrams.
/// Each [`read`](Transport::read) returns one datagram from the cam's
/// address (the socket is connected: datagrams from anyone else are
/// filtered out by the system). Datagrams can be lost; the protocol
/// recovers as from a lost packet on a serial line. Use a `max_payload`
/// that fits one datagram (the firmware's network example uses 1400).
pub struct UdpTransport {
    socket: UdpSocket,
    name: String,
    wait: SocketWait,
}

impl UdpTransport {
    /// Binds an ephemeral local port of the address family of `addr`
    /// (`host:port`, its first resolved address) and connects it there.
    pub fn connect(addr: &str) -> io::Result<UdpTransport> {
        let peer = addr.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "the address resolved to nothing")
        })?;
        let local: SocketAddr = if peer.is_ipv4() {
            ([0u8; 4], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(peer)?;
        Ok(UdpTransport {
            socket,
            name: addr.to_string(),
            wait: SocketWait::Unset,
        })
    }
}

impl Transport for UdpTransport {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.wait == SocketWait::Poll {
            // Non-blocking, a full send buffer would fail the send.
            self.socket.set_nonblocking(false)?;
            self.wait = SocketWait::Unset;
        }
        let n = self.socket.send(buf)?;
        if n != buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {n} of a {}-byte datagram", buf.len()),
            ));
        }
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        let socket = &self.socket;
        self.wait.apply(
            timeout,
            |on| socket.set_nonblocking(on),
            |t| socket.set_read_timeout(t),
        )?;
        match self.socket.recv(buf) {
            Ok(n) => Ok(n),
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => Ok(0),
            // An ICMP "port unreachable" for an earlier datagram: nothing
            // listens at the address.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("nothing listens on UDP {}", self.name),
            )),
            Err(e) => Err(e),
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// Any `Read + Write` whose `read` returns within a bounded time on its own
/// (a stream with a read timeout, a cursor in a test): `WouldBlock` and
/// `TimedOut` count as "nothing yet", `Ok(0)` as closed.
///
/// The `timeout` argument of [`Transport::read`] is applied only through
/// [`IoTransport::with_timeout`]: give a stream that has a read timeout of
/// its own (a `TcpStream` with `set_read_timeout`, as in its example) that
/// way. Do not wrap a non-blocking socket: its `WouldBlock` returns at
/// once as "nothing yet", so the driver would call `read` again
/// immediately and busy-spin until the deadline. Use [`ThreadedTransport`]
/// for readers that block indefinitely and have no timeout.
pub struct IoTransport<T> {
    io: T,
    name: String,
    set_timeout: Option<TimeoutSetter<T>>,
}

/// Applies a read timeout to the wrapped stream of an [`IoTransport`].
pub type TimeoutSetter<T> = Box<dyn FnMut(&mut T, Duration) -> io::Result<()> + Send>;

impl<T: Read + Write + Send> IoTransport<T> {
    /// Wraps `io`, named `name` in messages.
    pub fn new(name: &str, io: T) -> IoTransport<T> {
        IoTransport {
            io,
            name: name.to_string(),
            set_timeout: None,
        }
    }

    /// Wraps `io` and calls `set_timeout` before each read with the time
    /// the driver may wait (never zero: at least 1 µs), for streams that
    /// have a read timeout of their own.
    ///
    /// ```
    /// use omv_blocking::transport::IoTransport;
    /// use std::net::TcpStream;
    /// # fn f(stream: TcpStream) {
    /// let t = IoTransport::with_timeout("cam", stream, |s: &mut TcpStream, d| {
    ///     s.set_read_timeout(Some(d))
    /// });
    /// # }
    /// ```
    pub fn with_timeout(
        name: &str,
        io: T,
        set_timeout: impl FnMut(&mut T, Duration) -> io::Result<()> + Send + 'static,
    ) -> IoTransport<T> {
        IoTransport {
            io,
            name: name.to_string(),
            set_timeout: Some(Box::new(set_timeout)),
        }
    }

    /// The wrapped stream.
    pub fn into_inner(self) -> T {
        self.io
    }
}

impl<T: Read + Write + Send> Transport for IoTransport<T> {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.io.write_all(buf)?;
        self.io.flush()
    }

    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        if let Some(set) = self.set_timeout.as_mut() {
            set(&mut self.io, timeout.max(Duration::from_micros(1)))?;
        }
        let wanted = buf.len();
        read_with_timeout(self.io.read(buf), wanted)
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// A reader and a writer where reads block until data arrives (pipes, one
/// end of an in-memory link, a `TcpStream` clone...). A helper thread reads
/// and hands chunks over a channel, so [`Transport::read`] can wait with a
/// timeout. The thread ends when the reader reports end of stream or an
/// error, or on its next read after the transport is dropped.
pub struct ThreadedTransport<W> {
    rx: Receiver<io::Result<Vec<u8>>>,
    pending: Vec<u8>,
    pending_at: usize,
    failed: Option<io::ErrorKind>,
    writer: W,
    name: String,
}

impl<W: Write + Send> ThreadedTransport<W> {
    /// Starts the reader thread on `reader`; writes go to `writer`.
    pub fn new<R: Read + Send + 'static>(
        name: &str,
        mut reader: R,
        writer: W,
    ) -> io::Result<ThreadedTransport<W>> {
        let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(64);
        std::thread::Builder::new()
            .name(format!("omv-read-{name}"))
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let r = match reader.read(&mut buf) {
                        Ok(0) => Err(closed()),
                        Ok(n) => Ok(buf[..n].to_vec()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) if is_timeout(&e) => continue,
                        Err(e) => Err(e),
                    };
                    let stop = r.is_err();
                    if tx.send(r).is_err() || stop {
                        break;
                    }
                }
            })?;
        Ok(ThreadedTransport {
            rx,
            pending: Vec::new(),
            pending_at: 0,
            failed: None,
            writer,
            name: name.to_string(),
        })
    }
}

impl<W: Write + Send> Transport for ThreadedTransport<W> {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer.write_all(buf)?;
        self.writer.flush()
    }

    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        if self.pending_at >= self.pending.len() {
            if let Some(kind) = self.failed {
                return Err(io::Error::new(kind, "the port was closed"));
            }
            let chunk = match self.rx.recv_timeout(timeout) {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    self.failed = Some(e.kind());
                    return Err(e);
                }
                Err(RecvTimeoutError::Timeout) => return Ok(0),
                Err(RecvTimeoutError::Disconnected) => {
                    self.failed = Some(io::ErrorKind::UnexpectedEof);
                    return Err(closed());
                }
            };
            self.pending = chunk;
            self.pending_at = 0;
        }
        let avail = &self.pending[self.pending_at..];
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.pending_at += n;
        Ok(n)
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn io_transport_reports_close() {
        let mut t = IoTransport::new("c", Cursor::new(vec![5u8]));
        let mut b = [0u8; 4];
        assert_eq!(t.read(&mut b, Duration::ZERO).unwrap(), 1);
        assert_eq!(
            t.read(&mut b, Duration::ZERO).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn io_transport_applies_the_timeout() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (_peer, _) = l.accept().expect("accept");
        let mut t =
            IoTransport::with_timeout("tcp", c, |s: &mut TcpStream, d| s.set_read_timeout(Some(d)));
        let start = std::time::Instant::now();
        let mut b = [0u8; 4];
        assert_eq!(t.read(&mut b, Duration::from_millis(40)).expect("read"), 0);
        assert!(start.elapsed() >= Duration::from_millis(35));
    }

    #[test]
    fn socket_reads_poll_without_waiting_and_block_with_a_timeout() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut t = TcpTransport::connect(
            &l.local_addr().expect("addr").to_string(),
            Duration::from_secs(1),
        )
        .expect("connect");
        let (mut peer, _) = l.accept().expect("accept");
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut ut =
            UdpTransport::connect(&u.local_addr().expect("addr").to_string()).expect("udp");
        let mut b = [0u8; 16];
        // Zero timeouts are non-blocking reads: 200 of them take far less
        // than one scheduler tick each (with a 1 us SO_RCVTIMEO they took
        // 1.6 s here: ~8 ms each).
        let start = std::time::Instant::now();
        for _ in 0..100 {
            assert_eq!(t.read(&mut b, Duration::ZERO).expect("tcp poll"), 0);
            assert_eq!(ut.read(&mut b, Duration::ZERO).expect("udp poll"), 0);
        }
        assert!(
            start.elapsed() < Duration::from_millis(200),
            "{:?}",
            start.elapsed()
        );
        // A write after polling is a blocking one, and a timed read waits.
        t.write_all(&[7; 4]).expect("write");
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).expect("peer reads");
        assert_eq!(got, [7; 4]);
        let start = std::time::Instant::now();
        assert_eq!(t.read(&mut b, Duration::from_millis(30)).expect("read"), 0);
        assert!(start.elapsed() >= Duration::from_millis(25));
        peer.write_all(&[1, 2, 3]).expect("peer writes");
        assert_eq!(t.read(&mut b, Duration::from_secs(5)).expect("read"), 3);
    }

    #[cfg(unix)]
    #[test]
    fn threaded_transport_times_out_then_reads() {
        let (r, mut w) = std::os::unix::net::UnixStream::pair().expect("pair");
        let mut t = ThreadedTransport::new("pipe", r, Vec::new()).expect("thread");
        let mut b = [0u8; 4];
        let start = std::time::Instant::now();
        assert_eq!(t.read(&mut b, Duration::from_millis(30)).unwrap(), 0);
        assert!(start.elapsed() >= Duration::from_millis(30));
        w.write_all(&[1, 2, 3, 4, 5, 6]).unwrap();
        let mut got = Vec::new();
        while got.len() < 6 {
            let n = t.read(&mut b, Duration::from_secs(1)).unwrap();
            got.extend_from_slice(&b[..n]);
        }
        assert_eq!(got, [1, 2, 3, 4, 5, 6]);
        drop(w);
        assert!(t.read(&mut b, Duration::from_secs(1)).is_err());
    }
}
