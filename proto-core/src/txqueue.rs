//! The endpoints' queue of encoded packets waiting to be written: one
//! byte buffer and the packets' lengths, both reused, so that queueing and
//! taking a packet allocates nothing once the buffer has grown.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Encoded packets in order, stored back to back.
#[derive(Debug, Default)]
pub(crate) struct TxQueue {
    bytes: Vec<u8>,
    /// Length of each queued packet, oldest first.
    lens: VecDeque<usize>,
    /// Start of the oldest packet in `bytes`.
    head: usize,
}

impl TxQueue {
    /// Queues the packet `encode` appends to the buffer it is given.
    pub(crate) fn push_with(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        encode(&mut self.bytes);
        self.lens.push_back(self.bytes.len() - start);
    }

    /// Queues a copy of an encoded packet.
    pub(crate) fn push(&mut self, packet: &[u8]) {
        self.push_with(|out| out.extend_from_slice(packet));
    }

    /// Appends the oldest packet to `out` and returns its length.
    pub(crate) fn pop_into(&mut self, out: &mut Vec<u8>) -> Option<usize> {
        let len = self.lens.pop_front()?;
        out.extend_from_slice(&self.bytes[self.head..self.head + len]);
        self.head += len;
        if self.lens.is_empty() {
            self.bytes.clear();
            self.head = 0;
        } else if self.head > self.bytes.len() / 2 {
            // Packets keep arriving before the queue empties: move the
            // rest to the front so that the buffer stays bounded.
            self.bytes.drain(..self.head);
            self.head = 0;
        }
        Some(len)
    }

    /// True when nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Drops every queued packet (the buffers keep their capacity).
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.lens.clear();
        self.head = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_come_out_whole_and_in_order() {
        let mut q = TxQueue::default();
        q.push(&[1, 2, 3]);
        q.push_with(|o| o.extend_from_slice(&[4]));
        q.push(&[]);
        q.push(&[5, 6]);
        let mut out = Vec::new();
        assert_eq!(q.pop_into(&mut out), Some(3));
        q.push(&[7]);
        let mut lens = Vec::new();
        while let Some(n) = q.pop_into(&mut out) {
            lens.push(n);
        }
        assert_eq!(lens, [1, 0, 2, 1]);
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7]);
        assert!(q.is_empty());
        assert!(q.bytes.is_empty());
    }
}
