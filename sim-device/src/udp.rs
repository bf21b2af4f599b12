//! A UDP transport: the protocol one packet per datagram, as the firmware's
//! network transport example runs it.
//!
//! The cam binds an address and answers whoever sent the last datagram (a
//! new sender takes over, as on the firmware). Every packet the cam sends is
//! one datagram. A datagram that is not exactly one protocol packet (no sync
//! word, shorter than a header, or a length field that disagrees with the
//! datagram's size) is counted and dropped; the cam keeps serving. With no
//! client yet, what the cam sends is discarded, like a USB cam's output with
//! no host attached.
//!
//! Datagrams have no flow control and can be lost; run the protocol over
//! UDP with a `max_payload` that fits one datagram on the path (the
//! firmware's example uses 1400, [`DEFAULT_UDP_MAX_PAYLOAD`]).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration as StdDuration;

use omv_proto::header::{Header, HEADER_SIZE, SYNC_BYTES};

use crate::serve::{Recv, Transport};

/// The max payload `omv-sim --udp` announces unless told otherwise: a
/// packet fits one Ethernet frame's UDP datagram.
pub const DEFAULT_UDP_MAX_PAYLOAD: u16 = 1400;

/// Largest datagram read (anything longer is not one of our packets).
const MAX_DATAGRAM: usize = 65_535;

/// Counters of a [`UdpTransport`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpStats {
    /// Datagrams received and handed to the cam.
    pub received: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams dropped because they were not exactly one protocol packet.
    pub rejected: u64,
    /// Times a new client took over (a datagram from another address).
    pub clients: u64,
    /// Packets the cam sent while no client was known (discarded).
    pub discarded: u64,
}

/// Why a datagram is not one protocol packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// Shorter than a packet header.
    #[error("{0} bytes is shorter than a packet header")]
    TooShort(usize),
    /// Does not start with the sync word.
    #[error("no sync word")]
    NoSync,
    /// The header's length field says another size.
    #[error("the header says {header} bytes but the datagram has {datagram}")]
    Length {
        /// Size the header announces.
        header: usize,
        /// Size of the datagram.
        datagram: usize,
    },
}

/// Checks that `datagram` is exactly one packet (sync word, header, and as
/// many bytes as its length field says). CRCs are the framer's business:
/// they may be negotiated off.
pub fn check_datagram(datagram: &[u8]) -> Result<(), DatagramError> {
    if datagram.len() < HEADER_SIZE {
        return Err(DatagramError::TooShort(datagram.len()));
    }
    if datagram[..2] != SYNC_BYTES {
        return Err(DatagramError::NoSync);
    }
    let header = Header::decode(datagram).map_err(|_| DatagramError::TooShort(datagram.len()))?;
    if header.wire_len() != datagram.len() {
        return Err(DatagramError::Length {
            header: header.wire_len(),
            datagram: datagram.len(),
        });
    }
    Ok(())
}

/// A bound UDP socket serving one client at a time (the last sender).
#[derive(Debug)]
pub struct UdpTransport {
    socket: UdpSocket,
    peer: Option<SocketAddr>,
    buf: Vec<u8>,
    stats: UdpStats,
}

impl UdpTransport {
    /// Binds `addr` (port 0 picks a free port; see [`local_addr`](Self::local_addr)).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpTransport> {
        let socket = UdpSocket::bind(addr)?;
        Ok(UdpTransport {
            socket,
            peer: None,
            buf: vec![0; MAX_DATAGRAM],
            stats: UdpStats::default(),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The client answers go to (the sender of the last valid datagram).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Counters so far.
    pub fn stats(&self) -> UdpStats {
        self.stats
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

impl Transport for UdpTransport {
    fn recv(&mut self, buf: &mut [u8], timeout: StdDuration) -> io::Result<Recv> {
        if timeout.is_zero() {
            self.socket.set_nonblocking(true)?;
        } else {
            self.socket.set_nonblocking(false)?;
            self.socket.set_read_timeout(Some(timeout))?;
        }
        let r = self.socket.recv_from(&mut self.buf);
        if timeout.is_zero() {
            self.socket.set_nonblocking(false)?;
        }
        let (n, from) = match r {
            Ok(x) => x,
            Err(e) if is_timeout(&e) => return Ok(Recv::Timeout),
            // An ICMP port-unreachable from an earlier send to a client that
            // went away surfaces here on some systems: not the cam's problem.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(Recv::Timeout),
            Err(e) => return Err(e),
        };
        let datagram = &self.buf[..n];
        if let Err(e) = check_datagram(datagram) {
            self.stats.rejected += 1;
            log::debug!("udp: dropped a datagram of {n} bytes from {from}: {e}");
            return Ok(Recv::Timeout);
        }
        if n > buf.len() {
            // The serving loop's buffer is larger than any packet we accept
            // from a sane peer; a bigger one is dropped rather than cut.
            self.stats.rejected += 1;
            log::debug!(
                "udp: dropped a {n}-byte datagram from {from}: larger than the read buffer"
            );
            return Ok(Recv::Timeout);
        }
        if self.peer != Some(from) {
            log::info!("udp: client {from}");
            self.peer = Some(from);
            self.stats.clients += 1;
        }
        self.stats.received += 1;
        buf[..n].copy_from_slice(datagram);
        Ok(Recv::Data(n))
    }

    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(peer) = self.peer else {
            self.stats.discarded += 1;
            return Ok(());
        };
        match self.socket.send_to(data, peer) {
            Ok(_) => {
                self.stats.sent += 1;
                Ok(())
            }
            // A datagram that could not go out is a lost datagram, which the
            // protocol recovers from; the cam keeps serving.
            Err(e) => {
                log::debug!("udp: send to {peer} failed: {e}");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::{serve, MonotonicClock, ServeOptions};
    use omv_proto::device::{DeviceConfig, DeviceEndpoint};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    const SYNC: [u8; 10] = [0xaa, 0xd5, 0, 0, 0, 0, 0, 0, 0xb0, 0xac];
    const SYNC_ACK: [u8; 10] = [0xaa, 0xd5, 0, 0, 1, 0, 0, 0, 0x08, 0x46];

    #[test]
    fn datagram_checks() {
        assert_eq!(check_datagram(&SYNC), Ok(()));
        assert_eq!(check_datagram(&SYNC[..9]), Err(DatagramError::TooShort(9)));
        let mut bad = SYNC;
        bad[0] = 0;
        assert_eq!(check_datagram(&bad), Err(DatagramError::NoSync));
        let mut two = SYNC.to_vec();
        two.extend_from_slice(&SYNC);
        assert_eq!(
            check_datagram(&two),
            Err(DatagramError::Length {
                header: 10,
                datagram: 20
            })
        );
    }

    #[test]
    fn answers_the_last_sender_and_drops_junk() {
        let mut t = UdpTransport::bind("127.0.0.1:0").unwrap();
        let addr = t.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let server = std::thread::spawn(move || {
            let mut cam = DeviceEndpoint::new(DeviceConfig::default());
            serve(
                &mut cam,
                &mut t,
                &MonotonicClock::new(),
                &s,
                &ServeOptions::default(),
            )
            .unwrap();
            t.stats()
        });
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        for c in [&a, &b] {
            c.set_read_timeout(Some(StdDuration::from_secs(5))).unwrap();
        }
        let mut got = [0u8; 64];
        // Junk first: dropped, the cam keeps serving.
        a.send_to(b"not a packet", addr).unwrap();
        a.send_to(&SYNC, addr).unwrap();
        let (n, _) = a.recv_from(&mut got).unwrap();
        assert_eq!(&got[..n], SYNC_ACK);
        // A second client takes over.
        b.send_to(&SYNC, addr).unwrap();
        let (n, _) = b.recv_from(&mut got).unwrap();
        assert_eq!(&got[..n], SYNC_ACK);
        stop.store(true, Ordering::SeqCst);
        let stats = server.join().unwrap();
        assert_eq!(stats.rejected, 1);
        assert_eq!(stats.received, 2);
        assert_eq!(stats.clients, 2);
        assert_eq!(stats.sent, 2);
    }
}
