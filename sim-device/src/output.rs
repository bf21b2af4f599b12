//! The cam's text output: a bounded ring buffer shared between whatever
//! produces text (the script runner's reader threads) and the stdout
//! channel that the host drains.
//!
//! When text overflows the buffer the oldest bytes are dropped, like the
//! firmware's stdout ring buffer (section 9).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// Smallest stdout buffer a board has.
pub const MIN_CAPACITY: usize = 512;
/// Largest stdout buffer a board has.
pub const MAX_CAPACITY: usize = 2048;
/// The stdout buffer size when a board does not say otherwise.
pub const DEFAULT_CAPACITY: usize = 1024;

/// A callback run after every write, e.g. to wake a cam loop blocked on I/O.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// A byte ring buffer that drops its oldest bytes on overflow.
#[derive(Debug, Clone)]
pub struct RingBuffer {
    buf: VecDeque<u8>,
    capacity: usize,
    dropped: u64,
    written: u64,
}

impl RingBuffer {
    /// An empty buffer holding at most `capacity` bytes (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        RingBuffer {
            buf: VecDeque::with_capacity(capacity),
            capacity,
            dropped: 0,
            written: 0,
        }
    }

    /// Most bytes the buffer holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Unread bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Bytes dropped because of overflow since creation.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes written since creation (including dropped ones).
    #[cfg(test)]
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends `data`, dropping the oldest bytes when it does not fit.
    pub fn write(&mut self, data: &[u8]) {
        self.written = self.written.saturating_add(data.len() as u64);
        // Only the last `capacity` bytes of `data` can survive.
        let keep = if data.len() > self.capacity {
            let skip = data.len() - self.capacity;
            self.dropped = self.dropped.saturating_add(skip as u64);
            &data[skip..]
        } else {
            data
        };
        let free = self.capacity - self.buf.len();
        if keep.len() > free {
            let evict = keep.len() - free;
            self.buf.drain(..evict);
            self.dropped = self.dropped.saturating_add(evict as u64);
        }
        self.buf.extend(keep.iter().copied());
    }

    /// Moves up to `out.len()` of the oldest unread bytes into `out`;
    /// returns how many.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.buf.len());
        for (dst, src) in out.iter_mut().zip(self.buf.drain(..n)) {
            *dst = src;
        }
        n
    }

    /// Takes all unread bytes.
    pub fn take_all(&mut self) -> Vec<u8> {
        self.buf.drain(..).collect()
    }

    /// Drops all unread bytes.
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

/// A cloneable handle on the cam's stdout ring buffer: the script runner
/// writes into it from its threads, the stdout channel reads from it.
#[derive(Clone)]
pub struct SharedOutput {
    inner: Arc<Mutex<RingBuffer>>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl fmt::Debug for SharedOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedOutput")
            .field("capacity", &self.capacity())
            .field("unread", &self.len())
            .finish()
    }
}

impl Default for SharedOutput {
    fn default() -> Self {
        SharedOutput::new(DEFAULT_CAPACITY)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A writer that panicked cannot leave the ring buffer inconsistent in a
    // way that matters here: keep going with the data as it is.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SharedOutput {
    /// A buffer of `capacity` bytes, clamped to the boards' range
    /// 512..=2048 bytes.
    pub fn new(capacity: usize) -> Self {
        SharedOutput::with_exact_capacity(capacity.clamp(MIN_CAPACITY, MAX_CAPACITY))
    }

    /// A buffer of exactly `capacity` bytes (at least 1), outside the board
    /// range too; for tests.
    pub fn with_exact_capacity(capacity: usize) -> Self {
        SharedOutput {
            inner: Arc::new(Mutex::new(RingBuffer::new(capacity))),
            waker: Arc::new(Mutex::new(None)),
        }
    }

    /// Sets (or clears) a callback run after every write.
    pub fn set_waker(&self, waker: Option<Waker>) {
        *lock(&self.waker) = waker;
    }

    /// Appends text, dropping the oldest on overflow, then runs the waker.
    pub fn write(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        lock(&self.inner).write(data);
        let waker = lock(&self.waker).clone();
        if let Some(w) = waker {
            w();
        }
    }

    /// Appends a string (see [`write`](Self::write)).
    pub fn write_str(&self, s: &str) {
        self.write(s.as_bytes());
    }

    /// Consumes up to `out.len()` unread bytes into `out`; returns how many.
    pub fn read(&self, out: &mut [u8]) -> usize {
        lock(&self.inner).read(out)
    }

    /// Takes all unread text.
    pub fn take_all(&self) -> Vec<u8> {
        lock(&self.inner).take_all()
    }

    /// Unread bytes.
    pub fn len(&self) -> usize {
        lock(&self.inner).len()
    }

    /// True when there is no unread text.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer's capacity.
    pub fn capacity(&self) -> usize {
        lock(&self.inner).capacity()
    }

    /// Bytes dropped on overflow so far.
    pub fn dropped(&self) -> u64 {
        lock(&self.inner).dropped()
    }

    /// Drops all unread text.
    pub fn clear(&self) {
        lock(&self.inner).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn overflow_drops_oldest() {
        let mut r = RingBuffer::new(8);
        r.write(b"abcdef");
        r.write(b"ghij");
        assert_eq!(r.len(), 8);
        assert_eq!(r.dropped(), 2);
        assert_eq!(r.take_all(), b"cdefghij");
    }

    #[test]
    fn oversized_write_keeps_tail() {
        let mut r = RingBuffer::new(4);
        r.write(b"x");
        r.write(b"0123456789");
        assert_eq!(r.take_all(), b"6789");
        assert_eq!(r.dropped(), 7);
        assert_eq!(r.written(), 11);
    }

    #[test]
    fn read_consumes_in_order() {
        let mut r = RingBuffer::new(16);
        r.write(b"hello world");
        let mut b = [0u8; 5];
        assert_eq!(r.read(&mut b), 5);
        assert_eq!(&b, b"hello");
        assert_eq!(r.len(), 6);
        let mut big = [0u8; 64];
        assert_eq!(r.read(&mut big), 6);
        assert_eq!(&big[..6], b" world");
        assert_eq!(r.read(&mut big), 0);
    }

    #[test]
    fn shared_clamps_and_wakes() {
        assert_eq!(SharedOutput::new(10).capacity(), MIN_CAPACITY);
        assert_eq!(SharedOutput::new(1 << 20).capacity(), MAX_CAPACITY);
        assert_eq!(SharedOutput::default().capacity(), DEFAULT_CAPACITY);
        let out = SharedOutput::new(1024);
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        out.set_waker(Some(Arc::new(move || {
            h.fetch_add(1, Ordering::SeqCst);
        })));
        out.write(b"a");
        out.write(b"");
        out.write_str("bc");
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert_eq!(out.take_all(), b"abc");
    }
}
