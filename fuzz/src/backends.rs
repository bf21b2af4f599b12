//! Simple cam channel backends for the endpoint targets.

use std::sync::{Arc, Mutex};

use omv_proto::backend::{ChannelBackend, ChannelError, Ops};
use omv_proto::shape::Shape;
use omv_proto::Instant;

/// Bytes shared between a backend and the harness, so a check can look at
/// what the cam really holds.
pub type Shared = Arc<Mutex<Vec<u8>>>;

/// A shared byte buffer.
pub fn shared(data: Vec<u8>) -> Shared {
    Arc::new(Mutex::new(data))
}

/// Copy of a shared buffer.
pub fn snapshot(s: &Shared) -> Vec<u8> {
    s.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn with<T>(s: &Shared, f: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    f(&mut s.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A fixed-size random-access buffer: read, write, size, lock/unlock.
/// Out-of-range accesses fail (NAK FAILED).
pub struct BufChan {
    /// The bytes.
    pub data: Shared,
    locked: bool,
}

impl BufChan {
    /// A channel over `data`.
    pub fn new(data: Shared) -> BufChan {
        BufChan {
            data,
            locked: false,
        }
    }
}

impl ChannelBackend for BufChan {
    fn ops(&self) -> Ops {
        Ops::READ | Ops::WRITE | Ops::SIZE | Ops::LOCK
    }
    fn size(&mut self) -> Result<u32, ChannelError> {
        Ok(with(&self.data, |d| d.len() as u32))
    }
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<usize, ChannelError> {
        with(&self.data, |d| {
            let start = offset as usize;
            let end = start.checked_add(buf.len()).ok_or(ChannelError::Failed)?;
            let src = d.get(start..end).ok_or(ChannelError::Failed)?;
            buf.copy_from_slice(src);
            Ok(buf.len())
        })
    }
    fn write(&mut self, offset: u32, src: &[u8]) -> Result<(), ChannelError> {
        with(&self.data, |d| {
            let start = offset as usize;
            let end = start.checked_add(src.len()).ok_or(ChannelError::Failed)?;
            d.get_mut(start..end)
                .ok_or(ChannelError::Failed)?
                .copy_from_slice(src);
            Ok(())
        })
    }
    fn lock(&mut self) -> Result<(), ChannelError> {
        if self.locked {
            return Err(ChannelError::Busy);
        }
        self.locked = true;
        Ok(())
    }
    fn unlock(&mut self) -> Result<(), ChannelError> {
        if !self.locked {
            return Err(ChannelError::Busy);
        }
        self.locked = false;
        Ok(())
    }
    fn reset(&mut self) {
        self.locked = false;
    }
}

/// Like the stdin channel: a write at offset 0 replaces the contents, a
/// write at the current end appends, anything else fails. Reads return
/// what was written. A duplicated upload shows up as repeated bytes.
pub struct AppendChan {
    /// The bytes.
    pub data: Shared,
    /// Largest size accepted.
    pub capacity: usize,
}

impl ChannelBackend for AppendChan {
    fn ops(&self) -> Ops {
        Ops::READ | Ops::WRITE | Ops::SIZE | Ops::IOCTL | Ops::POLL
    }
    fn poll(&mut self, _now: Instant) -> bool {
        with(&self.data, |d| !d.is_empty())
    }
    fn size(&mut self) -> Result<u32, ChannelError> {
        Ok(with(&self.data, |d| d.len() as u32))
    }
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<usize, ChannelError> {
        with(&self.data, |d| {
            let start = offset as usize;
            let avail = d.get(start..).ok_or(ChannelError::Failed)?;
            let n = avail.len().min(buf.len());
            buf[..n].copy_from_slice(&avail[..n]);
            Ok(n)
        })
    }
    fn write(&mut self, offset: u32, src: &[u8]) -> Result<(), ChannelError> {
        let cap = self.capacity;
        with(&self.data, |d| {
            if offset == 0 {
                d.clear();
            } else if offset as usize != d.len() {
                return Err(ChannelError::Failed);
            }
            if d.len() + src.len() > cap {
                return Err(ChannelError::Failed);
            }
            d.extend_from_slice(src);
            Ok(())
        })
    }
    fn ioctl(&mut self, request: u32, args: &[u8]) -> Result<(), ChannelError> {
        // 3 = RESET (no args), as on stdin.
        match (request, args.len()) {
            (3, 0) => {
                with(&self.data, |d| d.clear());
                Ok(())
            }
            _ => Err(ChannelError::Invalid),
        }
    }
}

/// A read-only channel served with `readp` (zero-copy), with a shape, a
/// u32 ioctl, and NOTIFY events every few polls while `chatty`.
pub struct ViewChan {
    /// The bytes.
    pub data: Vec<u8>,
    /// Emit events from `poll_event`.
    pub chatty: bool,
    polls: u32,
    /// Events left to emit (bounded, so a run always quiesces).
    pub budget: u32,
    next: Option<Instant>,
}

impl ViewChan {
    /// A channel over `data`.
    pub fn new(data: Vec<u8>, chatty: bool) -> ViewChan {
        ViewChan {
            data,
            chatty,
            polls: 0,
            budget: 16,
            next: None,
        }
    }
}

impl ChannelBackend for ViewChan {
    fn ops(&self) -> Ops {
        Ops::READP | Ops::SIZE | Ops::SHAPE | Ops::IOCTL | Ops::POLL
    }
    fn poll(&mut self, _now: Instant) -> bool {
        true
    }
    fn size(&mut self) -> Result<u32, ChannelError> {
        Ok(self.data.len() as u32)
    }
    fn shape(&mut self) -> Result<Shape, ChannelError> {
        Shape::new(&[self.data.len() as u32, 1]).ok_or(ChannelError::Failed)
    }
    fn readp(&mut self, offset: u32, len: u32) -> Result<&[u8], ChannelError> {
        let start = offset as usize;
        let end = start
            .checked_add(len as usize)
            .ok_or(ChannelError::Failed)?;
        self.data.get(start..end).ok_or(ChannelError::Failed)
    }
    fn ioctl(&mut self, request: u32, args: &[u8]) -> Result<(), ChannelError> {
        match (request, args.len()) {
            (0, 4) => Ok(()),
            (0, _) => Err(ChannelError::Invalid),
            (1, _) => Err(ChannelError::Failed),
            _ => Err(ChannelError::Invalid),
        }
    }
    fn poll_event(&mut self, now: Instant) -> Option<omv_proto::backend::ChannelEventOut> {
        if !self.chatty || self.budget == 0 {
            return None;
        }
        self.polls = self.polls.wrapping_add(1);
        if self.polls % 5 != 0 {
            self.next = Some(now + omv_proto::Duration::from_millis(50));
            return None;
        }
        self.budget -= 1;
        self.next = None;
        let ack_req = self.polls % 10 == 0;
        Some(omv_proto::backend::ChannelEventOut {
            event: None,
            ack_req,
        })
    }
    fn next_deadline(&self) -> Option<Instant> {
        if self.budget == 0 {
            None
        } else {
            self.next
        }
    }
}

/// The pattern the harnesses fill buffers with.
pub fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + 7) % 251) as u8 ^ salt)
        .collect()
}
