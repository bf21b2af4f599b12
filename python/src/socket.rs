//! [`SocketPort`]: TCP and UDP transports whose zero-timeout reads do not
//! wait.
//!
//! `omv_blocking`'s `TcpTransport` and `UdpTransport` poll with a 1 µs
//! `SO_RCVTIMEO`, which Linux rounds up to a scheduler tick (4 ms): every
//! by-name call, which first takes in pending events with a zero-timeout
//! read, then costs about 8 ms. Here a zero timeout is a non-blocking read;
//! other reads block with the timeout; writes block.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

/// The socket under a [`SocketPort`].
enum Socket {
    /// A connected stream (Nagle off).
    Tcp(TcpStream),
    /// A connected datagram socket: one packet per datagram.
    Udp(UdpSocket),
}

/// A TCP or UDP connection to a cam, as an `omv_blocking::Transport`.
pub(crate) struct SocketPort {
    socket: Socket,
    name: String,
    /// `None` until set; `Some(None)`: non-blocking; `Some(Some(t))`:
    /// blocking with read timeout `t`.
    mode: Option<Option<Duration>>,
}

fn first_addr(addr: &str) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(ErrorKind::NotFound, "the address resolved to nothing"))
}

impl SocketPort {
    /// Connects to `addr` over TCP, trying each resolved address for at
    /// most `timeout`.
    pub(crate) fn tcp(addr: &str, timeout: Duration) -> io::Result<SocketPort> {
        let mut last = None;
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(SocketPort::new(Socket::Tcp(stream), addr));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(ErrorKind::NotFound, "the address resolved to nothing")
        }))
    }

    /// A UDP socket on an ephemeral local port, connected to `addr`.
    pub(crate) fn udp(addr: &str) -> io::Result<SocketPort> {
        let peer = first_addr(addr)?;
        let local: SocketAddr = if peer.is_ipv4() {
            ([0u8; 4], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(peer)?;
        Ok(SocketPort::new(Socket::Udp(socket), addr))
    }

    fn new(socket: Socket, name: &str) -> SocketPort {
        SocketPort {
            socket,
            name: name.to_string(),
            mode: None,
        }
    }

    fn set_mode(&mut self, wait: Option<Duration>) -> io::Result<()> {
        if self.mode == Some(wait) {
            return Ok(());
        }
        match (&self.socket, wait) {
            (Socket::Tcp(s), None) => s.set_nonblocking(true)?,
            (Socket::Udp(s), None) => s.set_nonblocking(true)?,
            (Socket::Tcp(s), Some(t)) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(t))?;
            }
            (Socket::Udp(s), Some(t)) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(t))?;
            }
        }
        self.mode = Some(wait);
        Ok(())
    }
}

impl omv_blocking::Transport for SocketPort {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        // Blocking: a non-blocking socket could take part of a packet.
        let wait = self.mode.flatten().unwrap_or(Duration::from_secs(1));
        self.set_mode(Some(wait))?;
        match &mut self.socket {
            Socket::Tcp(s) => s.write_all(buf),
            Socket::Udp(s) => {
                let n = s.send(buf)?;
                if n != buf.len() {
                    return Err(io::Error::new(
                        ErrorKind::WriteZero,
                        format!("sent {n} of a {}-byte datagram", buf.len()),
                    ));
                }
                Ok(())
            }
        }
    }

    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        self.set_mode(if timeout.is_zero() {
            None
        } else {
            Some(timeout)
        })?;
        let r = match &mut self.socket {
            Socket::Tcp(s) => match s.read(buf) {
                Ok(0) if !buf.is_empty() => Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the cam closed the connection",
                )),
                r => r,
            },
            Socket::Udp(s) => s.recv(buf),
        };
        match r {
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                Ok(0)
            }
            // An ICMP "port unreachable" for an earlier datagram.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Err(io::Error::new(
                ErrorKind::ConnectionRefused,
                format!("nothing listens on {}", self.name),
            )),
            Err(e) => Err(e),
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}
