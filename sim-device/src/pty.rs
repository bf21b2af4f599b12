//! A pseudo-terminal transport (Linux): the cam serves on the master side,
//! and a host opens the slave device (`/dev/pts/N`) as it would open a
//! cam's USB serial port.
//!
//! * Both sides are raw (`cfmakeraw` on the slave): no echo, no line
//!   editing, no CR/LF translation. A host setting a baud rate on the slave
//!   changes nothing, as over USB.
//! * When the host closes the port (its last descriptor of the slave) the
//!   master sees a hang-up: the cam is told its transport closed
//!   ([`Transport::take_closed`]), which is what ends an abandoned long
//!   read on a real cam. The pty lives on while the cam holds the master:
//!   the next host opens the same path and connects. (A host that closes
//!   and reopens between two polls of the cam goes unnoticed.)
//! * Writes never block the cam for long: when no host reads (the slave
//!   input queue is full) data is discarded after
//!   [`Pty::set_write_timeout`], like a USB cam whose host stopped reading,
//!   and at once while that lasts.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, PtyMaster};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};

use crate::serve::{Recv, Transport};

/// Default time a write may wait for a host that does not read.
pub const DEFAULT_WRITE_TIMEOUT: StdDuration = StdDuration::from_millis(250);

/// Why a pseudo-terminal could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PtyError {
    /// A system call failed.
    #[error("{call} failed: {source}")]
    Sys {
        /// What was being done.
        call: &'static str,
        /// The error.
        #[source]
        source: Errno,
    },
    /// Opening the slave device failed.
    #[error("cannot open {path}: {source}")]
    OpenSlave {
        /// The slave path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn sys(call: &'static str) -> impl FnOnce(Errno) -> PtyError {
    move |source| PtyError::Sys { call, source }
}

/// A pseudo-terminal the cam serves on. See the module documentation.
pub struct Pty {
    master: PtyMaster,
    path: PathBuf,
    write_timeout: StdDuration,
    /// A host has sent something since the last hang-up.
    host_present: bool,
    /// The host hung up; not yet reported by `take_closed`.
    closed_pending: bool,
    /// True after a write timed out, until the host shows signs of life.
    stalled: bool,
    discarded: u64,
}

impl std::fmt::Debug for Pty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pty")
            .field("path", &self.path)
            .field("stalled", &self.stalled)
            .field("discarded", &self.discarded)
            .finish_non_exhaustive()
    }
}

/// Puts a terminal in raw mode.
fn make_raw(fd: impl AsFd) -> Result<(), PtyError> {
    let mut t = tcgetattr(&fd).map_err(sys("tcgetattr"))?;
    cfmakeraw(&mut t);
    tcsetattr(&fd, SetArg::TCSANOW, &t).map_err(sys("tcsetattr"))
}

/// Opens a terminal device the way a host would, without making it the
/// controlling terminal, and sets it raw.
pub fn open_raw(path: &Path) -> Result<File, PtyError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(OFlag::O_NOCTTY.bits())
        .open(path)
        .map_err(|source| PtyError::OpenSlave {
            path: path.to_path_buf(),
            source,
        })?;
    make_raw(&f)?;
    Ok(f)
}

fn poll_one(fd: impl AsFd, events: PollFlags, timeout: StdDuration) -> Result<PollFlags, Errno> {
    // Round up so a sub-millisecond wait does not become a busy poll(0).
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    let t = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(fd.as_fd(), events)];
    match poll(&mut fds, t) {
        Ok(0) | Err(Errno::EINTR) => Ok(PollFlags::empty()),
        Ok(_) => Ok(fds[0].revents().unwrap_or(PollFlags::empty())),
        Err(e) => Err(e),
    }
}

impl Pty {
    /// Creates a pseudo-terminal, raw on both sides.
    pub fn open() -> Result<Pty, PtyError> {
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).map_err(sys("posix_openpt"))?;
        grantpt(&master).map_err(sys("grantpt"))?;
        unlockpt(&master).map_err(sys("unlockpt"))?;
        let path = PathBuf::from(ptsname_r(&master).map_err(sys("ptsname_r"))?);
        // Raw mode is a property of the terminal: it outlives this
        // descriptor and holds for every host that opens the slave.
        drop(open_raw(&path)?);
        let flags = fcntl(&master, FcntlArg::F_GETFL).map_err(sys("fcntl(F_GETFL)"))?;
        fcntl(
            &master,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        )
        .map_err(sys("fcntl(F_SETFL)"))?;
        log::debug!("pty: created {}", path.display());
        Ok(Pty {
            master,
            path,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            host_present: false,
            closed_pending: false,
            stalled: false,
            discarded: 0,
        })
    }

    /// The slave device a host opens, e.g. `/dev/pts/3`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long a write waits for a host that does not read before the
    /// data is discarded.
    pub fn set_write_timeout(&mut self, timeout: StdDuration) {
        self.write_timeout = timeout;
    }

    /// Bytes discarded because no host was reading.
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// No host has the slave open (a hang-up on the master).
    fn hung_up(&mut self) {
        if self.host_present {
            log::info!("pty: the host closed the port");
            self.host_present = false;
            self.closed_pending = true;
        }
    }

    fn discard(&mut self, n: usize) {
        if !self.stalled {
            log::info!("pty: the host is not reading; discarding output until it does");
        }
        self.stalled = true;
        self.discarded += n as u64;
    }
}

impl Transport for Pty {
    fn recv(&mut self, buf: &mut [u8], timeout: StdDuration) -> io::Result<Recv> {
        if !timeout.is_zero() {
            let ev = poll_one(&self.master, PollFlags::POLLIN, timeout).map_err(io::Error::from)?;
            if ev.is_empty() {
                return Ok(Recv::Timeout);
            }
            if !ev.contains(PollFlags::POLLIN) {
                // POLLHUP: no host has the port open. Poll reports it at
                // once, so wait out the timeout rather than spin.
                self.hung_up();
                std::thread::sleep(timeout);
                return Ok(Recv::Timeout);
            }
        }
        match self.master.read(buf) {
            Ok(0) => Ok(Recv::Timeout),
            Ok(n) => {
                if self.stalled {
                    log::info!("pty: the host is back");
                    self.stalled = false;
                }
                self.host_present = true;
                Ok(Recv::Data(n))
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                Ok(Recv::Timeout)
            }
            Err(e) if e.raw_os_error() == Some(Errno::EIO as i32) => {
                self.hung_up();
                std::thread::sleep(timeout.max(StdDuration::from_millis(1)));
                Ok(Recv::Timeout)
            }
            Err(e) => Err(e),
        }
    }

    fn take_closed(&mut self) -> bool {
        std::mem::take(&mut self.closed_pending)
    }

    fn send(&mut self, mut data: &[u8]) -> io::Result<()> {
        let deadline = StdInstant::now() + self.write_timeout;
        while !data.is_empty() {
            match self.master.write(data) {
                Ok(n) => {
                    data = &data[n..];
                    if self.stalled && n > 0 && data.is_empty() {
                        self.stalled = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(StdInstant::now());
                    if self.stalled || left.is_zero() {
                        self.discard(data.len());
                        return Ok(());
                    }
                    poll_one(&self.master, PollFlags::POLLOUT, left).map_err(io::Error::from)?;
                }
                Err(e) if e.raw_os_error() == Some(Errno::EIO as i32) => {
                    self.discard(data.len());
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::{serve, MonotonicClock, ServeEnd, ServeOptions};
    use omv_proto::device::{DeviceConfig, DeviceEndpoint};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::thread;

    const SYNC: [u8; 10] = [0xaa, 0xd5, 0, 0, 0, 0, 0, 0, 0xb0, 0xac];
    const SYNC_ACK: [u8; 10] = [0xaa, 0xd5, 0, 0, 1, 0, 0, 0, 0x08, 0x46];

    fn read_exact_within(f: &mut File, n: usize, timeout: StdDuration) -> Vec<u8> {
        let deadline = StdInstant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(StdInstant::now());
            assert!(!left.is_zero(), "timed out with {out:02x?}");
            if poll_one(&*f, PollFlags::POLLIN, left)
                .unwrap()
                .contains(PollFlags::POLLIN)
            {
                let mut buf = vec![0u8; n - out.len()];
                let k = f.read(&mut buf).unwrap();
                out.extend_from_slice(&buf[..k]);
            }
        }
        out
    }

    #[test]
    fn survives_host_close_and_reopen() {
        let mut pty = Pty::open().unwrap();
        let path = pty.path().to_path_buf();
        assert!(path.starts_with("/dev/pts"), "{path:?}");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let t = thread::spawn(move || {
            let mut cam = DeviceEndpoint::new(DeviceConfig::default());
            serve(
                &mut cam,
                &mut pty,
                &MonotonicClock::new(),
                &s,
                &ServeOptions::default(),
            )
        });
        for round in 0..3 {
            let mut host = open_raw(&path).unwrap();
            host.write_all(&SYNC).unwrap();
            let ack = read_exact_within(&mut host, 10, StdDuration::from_secs(5));
            assert_eq!(ack, SYNC_ACK, "round {round}");
            // Leave a request unanswered-for in the buffer, then close.
            host.write_all(&SYNC).unwrap();
            drop(host);
            thread::sleep(StdDuration::from_millis(30));
        }
        stop.store(true, Ordering::SeqCst);
        assert_eq!(t.join().unwrap().unwrap(), ServeEnd::Shutdown);
    }

    /// A read request on channel 1 (seq 0) after a SYNC: a long read.
    fn long_read_request() -> Vec<u8> {
        let h = omv_proto::Header {
            channel: omv_proto::ChannelId(1),
            opcode: omv_proto::Opcode::CHANNEL_READ,
            ..omv_proto::Header::default()
        };
        let payload = [0u32.to_le_bytes(), 100_000u32.to_le_bytes()].concat();
        let mut w = Vec::new();
        omv_proto::packet::encode_packet(&h, &payload, true, &mut w);
        w
    }

    /// Bytes that arrive within `t`.
    fn drain_for(f: &mut File, t: StdDuration) -> Vec<u8> {
        let deadline = StdInstant::now() + t;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(StdInstant::now());
            if left.is_zero() {
                return out;
            }
            if poll_one(&*f, PollFlags::POLLIN, left)
                .unwrap()
                .contains(PollFlags::POLLIN)
            {
                let mut buf = [0u8; 4096];
                let k = f.read(&mut buf).unwrap();
                out.extend_from_slice(&buf[..k]);
            }
        }
    }

    #[test]
    fn closing_the_port_ends_an_abandoned_read() {
        let mut pty = Pty::open().unwrap();
        let path = pty.path().to_path_buf();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let t = thread::spawn(move || {
            let mut cam = DeviceEndpoint::new(
                DeviceConfig::default()
                    .firmware_send_loop(true)
                    .read_piece(Some(512))
                    .rtx_timeout(omv_proto::Duration::from_millis(200)),
            );
            cam.register_at(
                omv_proto::ChannelId(1),
                "bulk",
                Box::new(crate::user::BufferChannel::with_pattern(100_000)),
            )
            .unwrap();
            serve(
                &mut cam,
                &mut pty,
                &MonotonicClock::new(),
                &s,
                &ServeOptions::default(),
            )
        });
        // A host asks for a long read, hears the first piece, and leaves
        // without ACKing it.
        let mut host = open_raw(&path).unwrap();
        host.write_all(&SYNC).unwrap();
        assert_eq!(
            read_exact_within(&mut host, 10, StdDuration::from_secs(5)),
            SYNC_ACK
        );
        host.write_all(&long_read_request()).unwrap();
        let first = read_exact_within(&mut host, 10 + 512 + 4, StdDuration::from_secs(5));
        assert_eq!(first[5], omv_proto::Opcode::CHANNEL_READ.0);
        drop(host);
        thread::sleep(StdDuration::from_millis(100));
        // The next host: its SYNC is answered, and nothing of the old read
        // follows (it would, right after the ACK, had the close not ended it).
        let mut host = open_raw(&path).unwrap();
        nix::sys::termios::tcflush(&host, nix::sys::termios::FlushArg::TCIFLUSH).unwrap();
        host.write_all(&SYNC).unwrap();
        let got = drain_for(&mut host, StdDuration::from_millis(700));
        assert_eq!(got, SYNC_ACK, "only the SYNC's ACK");
        stop.store(true, Ordering::SeqCst);
        assert_eq!(t.join().unwrap().unwrap(), ServeEnd::Shutdown);
    }

    #[test]
    fn a_host_that_does_not_read_does_not_block_the_cam() {
        let mut pty = Pty::open().unwrap();
        pty.set_write_timeout(StdDuration::from_millis(20));
        let big = vec![0x55u8; 256 * 1024];
        let t0 = StdInstant::now();
        pty.send(&big).unwrap();
        pty.send(&big).unwrap();
        assert!(t0.elapsed() < StdDuration::from_secs(2));
        assert!(pty.discarded() > 0);
        // A host that opens the port now can still talk to the cam.
        let mut host = open_raw(pty.path()).unwrap();
        nix::sys::termios::tcflush(&host, nix::sys::termios::FlushArg::TCIFLUSH).unwrap();
        host.write_all(b"hi").unwrap();
        let mut buf = [0u8; 8];
        let r = pty.recv(&mut buf, StdDuration::from_secs(2)).unwrap();
        assert_eq!(r, Recv::Data(2));
        pty.send(b"ok").unwrap();
        assert_eq!(
            read_exact_within(&mut host, 2, StdDuration::from_secs(2)),
            b"ok"
        );
    }

    #[test]
    fn baud_rate_changes_are_harmless() {
        use nix::sys::termios::{cfsetspeed, BaudRate};
        let mut pty = Pty::open().unwrap();
        let mut host = open_raw(pty.path()).unwrap();
        let mut t = tcgetattr(&host).unwrap();
        cfsetspeed(&mut t, BaudRate::B921600).unwrap();
        tcsetattr(&host, SetArg::TCSANOW, &t).unwrap();
        host.write_all(&[0u8, 0x0a, 0x0d, 0x11, 0x13, 0xff])
            .unwrap();
        let mut buf = [0u8; 16];
        let mut got = Vec::new();
        while got.len() < 6 {
            match pty.recv(&mut buf, StdDuration::from_secs(2)).unwrap() {
                Recv::Data(n) => got.extend_from_slice(&buf[..n]),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            got,
            [0u8, 0x0a, 0x0d, 0x11, 0x13, 0xff],
            "raw: no translation"
        );
    }
}
