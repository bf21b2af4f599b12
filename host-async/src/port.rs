//! Async byte ports: any `AsyncRead + AsyncWrite` stream (TCP, a serial
//! port through tokio-serial, an in-memory duplex) or a connected UDP socket (one packet per
//! datagram).

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{lookup_host, TcpStream, UdpSocket};

/// A byte stream the driver can own: anything `AsyncRead + AsyncWrite`.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncStream for T {}

/// The driver's port.
pub(crate) enum Port {
    /// A byte stream: packets are written back to back.
    Stream(Box<dyn AsyncStream>),
    /// A connected UDP socket: one packet per datagram.
    Datagram(UdpSocket),
}

impl Port {
    /// Sends one packet.
    pub(crate) async fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        match self {
            Port::Stream(s) => {
                s.write_all(packet).await?;
                s.flush().await
            }
            Port::Datagram(u) => u.send(packet).await.map(drop),
        }
    }

    /// Receives what arrived (at least one byte). Cancel-safe: nothing is
    /// lost when the future is dropped before it completes.
    pub(crate) async fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self {
            Port::Stream(s) => s.read(buf).await?,
            Port::Datagram(u) => return u.recv(buf).await,
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the cam closed the connection",
            ));
        }
        Ok(n)
    }
}

/// Connects to a TCP address, Nagle off.
pub(crate) async fn tcp(addr: &str) -> io::Result<Port> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(Port::Stream(Box::new(s)))
}

/// A UDP socket connected to `addr`.
pub(crate) async fn udp(addr: &str) -> io::Result<Port> {
    let peer = lookup_host(addr).await?.next().ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "the address resolved to nothing")
    })?;
    let local: SocketAddr = if peer.is_ipv4() {
        ([0u8; 4], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(peer).await?;
    Ok(Port::Datagram(socket))
}

/// Opens the serial port `path` at `baudrate` (raw 8N1, no flow control).
pub(crate) fn serial(path: &str, baudrate: u32) -> io::Result<Port> {
    use tokio_serial::SerialPortBuilderExt;
    let s = tokio_serial::new(path, baudrate)
        .open_native_async()
        .map_err(io::Error::from)?;
    Ok(Port::Stream(Box::new(s)))
}
