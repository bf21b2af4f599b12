//! Ready-made backends for channels registered at run time (user channels).
//!
//! Their flags are derived from their [`Ops`] (READ, WRITE, LOCK and
//! DYNAMIC), as the firmware derives them from a Python backend object.
//!
//! * [`BufferChannel`]: a fixed-size byte buffer the host reads and writes,
//!   optionally lockable; the cam side shares it through a [`BufferHandle`].
//! * [`SnapshotChannel`]: read-only data produced by a closure, sampled on
//!   every `size` request and served by the following reads, like the
//!   `status` channel example of the protocol's documentation.

/// Copies a channel's bytes at `offset` into `buf`, for a backend's
/// `read` (FAILED past the end, as the cam's channels answer).
pub use crate::args::copy_from;
use std::sync::{Arc, Mutex, MutexGuard};

use omv_proto::backend::{ChannelBackend, ChannelError, Ops};

use crate::args::{copy_exact, size_u32};

/// The cam side's view of a [`BufferChannel`]'s bytes.
#[derive(Clone, Debug)]
pub struct BufferHandle(Arc<Mutex<Vec<u8>>>);

impl BufferHandle {
    fn data(&self) -> MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the buffer.
    pub fn contents(&self) -> Vec<u8> {
        self.data().clone()
    }

    /// The buffer size.
    pub fn len(&self) -> usize {
        self.data().len()
    }

    /// True for a zero-size buffer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Overwrites bytes at `offset`; false (and nothing written) if they do
    /// not fit.
    pub fn write_at(&self, offset: usize, bytes: &[u8]) -> bool {
        let mut d = self.data();
        let Some(dst) = offset
            .checked_add(bytes.len())
            .and_then(|end| d.get_mut(offset..end))
        else {
            return false;
        };
        dst.copy_from_slice(bytes);
        true
    }
}

/// A fixed-capacity byte buffer channel: `size` is the capacity, reads and
/// writes must lie inside it (FAILED otherwise), optional lock support.
#[derive(Debug)]
pub struct BufferChannel {
    data: BufferHandle,
    lockable: bool,
    locked: bool,
}

impl BufferChannel {
    /// A zero-filled buffer of `size` bytes.
    pub fn new(size: usize) -> Self {
        BufferChannel::from_bytes(vec![0; size])
    }

    /// A buffer holding `bytes` (its size is fixed from now on).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        BufferChannel {
            data: BufferHandle(Arc::new(Mutex::new(bytes))),
            lockable: false,
            locked: false,
        }
    }

    /// A buffer of `size` bytes where byte `i` is `i % 251` (a pattern
    /// whose period is prime, so misplaced chunks show).
    pub fn with_pattern(size: usize) -> Self {
        BufferChannel::from_bytes((0..size).map(|i| (i % 251) as u8).collect())
    }

    /// Enables or disables lock/unlock support.
    pub fn lockable(mut self, lockable: bool) -> Self {
        self.lockable = lockable;
        self
    }

    /// A handle on the bytes for the cam side.
    pub fn handle(&self) -> BufferHandle {
        self.data.clone()
    }

    /// True while the host holds the lock.
    pub fn is_locked(&self) -> bool {
        self.locked
    }
}

impl ChannelBackend for BufferChannel {
    fn ops(&self) -> Ops {
        let ops = Ops::READ | Ops::WRITE | Ops::SIZE;
        if self.lockable {
            ops | Ops::LOCK
        } else {
            ops
        }
    }

    fn lock(&mut self) -> Result<(), ChannelError> {
        if !self.lockable {
            return Err(ChannelError::Unsupported);
        }
        if self.locked || self.data.is_empty() {
            return Err(ChannelError::Busy);
        }
        self.locked = true;
        Ok(())
    }

    fn unlock(&mut self) -> Result<(), ChannelError> {
        if !self.lockable {
            return Err(ChannelError::Unsupported);
        }
        if !self.locked {
            return Err(ChannelError::Busy);
        }
        self.locked = false;
        Ok(())
    }

    fn size(&mut self) -> Result<u32, ChannelError> {
        Ok(size_u32(self.data.len()))
    }

    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<usize, ChannelError> {
        copy_exact(&self.data.data(), offset, buf)
    }

    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), ChannelError> {
        let offset = usize::try_from(offset).map_err(|_| ChannelError::Failed)?;
        if self.data.write_at(offset, data) {
            Ok(())
        } else {
            Err(ChannelError::Failed)
        }
    }

    fn reset(&mut self) {
        self.locked = false;
    }
}

/// The closure a [`SnapshotChannel`] samples.
pub type SnapshotFn = dyn FnMut() -> Vec<u8> + Send;

/// A read-only channel whose data a closure produces: every `size` request
/// takes a new snapshot, and reads serve the last snapshot (taking one
/// first if there is none). A read may end short at the end of the
/// snapshot; a read starting at or past its end fails.
pub struct SnapshotChannel {
    f: Box<SnapshotFn>,
    snapshot: Option<Vec<u8>>,
}

impl std::fmt::Debug for SnapshotChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotChannel")
            .field("snapshot_len", &self.snapshot.as_ref().map(Vec::len))
            .finish()
    }
}

impl SnapshotChannel {
    /// A channel sampling `f`.
    pub fn new(f: impl FnMut() -> Vec<u8> + Send + 'static) -> Self {
        SnapshotChannel {
            f: Box::new(f),
            snapshot: None,
        }
    }

    /// The last snapshot taken, if any.
    pub fn last_snapshot(&self) -> Option<&[u8]> {
        self.snapshot.as_deref()
    }
}

impl ChannelBackend for SnapshotChannel {
    fn ops(&self) -> Ops {
        Ops::READ | Ops::SIZE
    }

    fn size(&mut self) -> Result<u32, ChannelError> {
        let snap = (self.f)();
        let n = size_u32(snap.len());
        self.snapshot = Some(snap);
        Ok(n)
    }

    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<usize, ChannelError> {
        let snap = match &mut self.snapshot {
            Some(s) => s,
            slot @ None => slot.insert((self.f)()),
        };
        copy_from(snap, offset, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omv_proto::backend::derived_flags;
    use omv_proto::ChannelFlags;

    #[test]
    fn pattern_and_bounds() {
        let mut c = BufferChannel::with_pattern(600);
        assert_eq!(c.size(), Ok(600));
        let mut b = [0u8; 4];
        assert_eq!(c.read(250, &mut b), Ok(4));
        assert_eq!(b, [250, 0, 1, 2]);
        assert_eq!(c.read(596, &mut b), Ok(4));
        assert_eq!(c.read(597, &mut b), Err(ChannelError::Failed));
        assert_eq!(c.read(600, &mut b), Err(ChannelError::Failed));
        assert_eq!(c.read(u32::MAX, &mut b), Err(ChannelError::Failed));
        assert_eq!(c.read(u32::MAX - 1, &mut b), Err(ChannelError::Failed));
    }

    #[test]
    fn writes_within_capacity() {
        let mut c = BufferChannel::new(8);
        let h = c.handle();
        c.write(2, b"abc").unwrap();
        c.write(5, b"xyz").unwrap();
        assert_eq!(h.contents(), b"\0\0abcxyz");
        assert_eq!(c.write(6, b"xyz"), Err(ChannelError::Failed));
        assert_eq!(c.write(u32::MAX, b"x"), Err(ChannelError::Failed));
        assert_eq!(h.contents(), b"\0\0abcxyz");
        assert!(h.write_at(0, b"Z"));
        assert!(!h.write_at(usize::MAX, b"Z"));
        let mut b = [0u8; 8];
        c.read(0, &mut b).unwrap();
        assert_eq!(&b, b"Z\0abcxyz");
    }

    #[test]
    fn optional_lock() {
        let mut c = BufferChannel::new(4);
        assert_eq!(
            derived_flags(c.ops()),
            ChannelFlags::DYNAMIC | ChannelFlags::READ | ChannelFlags::WRITE
        );
        assert_eq!(c.lock(), Err(ChannelError::Unsupported));
        let mut c = c.lockable(true);
        assert!(derived_flags(c.ops()).contains(ChannelFlags::LOCK));
        assert_eq!(c.unlock(), Err(ChannelError::Busy));
        c.lock().unwrap();
        assert_eq!(c.lock(), Err(ChannelError::Busy));
        c.reset();
        assert!(!c.is_locked());
        c.lock().unwrap();
        c.unlock().unwrap();
        let mut empty = BufferChannel::new(0).lockable(true);
        assert_eq!(empty.lock(), Err(ChannelError::Busy));
    }

    #[test]
    fn snapshot_on_size() {
        let mut n = 0u32;
        let mut c = SnapshotChannel::new(move || {
            n += 1;
            format!("{{\"n\": {n}}}").into_bytes()
        });
        assert_eq!(
            derived_flags(c.ops()),
            ChannelFlags::DYNAMIC | ChannelFlags::READ
        );
        // A read before any size takes a snapshot.
        let mut b = [0u8; 64];
        assert_eq!(c.read(0, &mut b), Ok(8));
        assert_eq!(&b[..8], b"{\"n\": 1}");
        // Reads keep serving the same snapshot.
        assert_eq!(c.read(6, &mut b), Ok(2));
        assert_eq!(&b[..2], b"1}");
        assert_eq!(c.size(), Ok(8));
        assert_eq!(c.read(0, &mut b), Ok(8));
        assert_eq!(&b[..8], b"{\"n\": 2}");
        assert_eq!(c.read(8, &mut b), Err(ChannelError::Failed));
        assert_eq!(c.read(u32::MAX, &mut b), Err(ChannelError::Failed));
        assert_eq!(c.last_snapshot(), Some(&b"{\"n\": 2}"[..]));
    }
}
