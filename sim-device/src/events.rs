//! System events a backend wants the cam to send on channel 0.
//!
//! Channel events go through [`ChannelBackend::poll_event`], but system
//! events (SYS_EVENT: CHANNEL_REGISTERED 0, CHANNEL_UNREGISTERED 1,
//! SOFT_REBOOT 2) are not per channel. A backend that causes one (the stdin
//! channel, when a script ends) pushes its id onto a shared
//! [`SystemEvents`] queue, and the cam loop drains the queue after polling
//! the channels' events.
//!
//! [`ChannelBackend::poll_event`]: omv_proto::backend::ChannelBackend::poll_event

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use omv_proto::event::EventId;

/// A cloneable, thread-safe FIFO of pending system event ids.
#[derive(Clone, Debug, Default)]
pub struct SystemEvents {
    queue: Arc<Mutex<VecDeque<EventId>>>,
}

impl SystemEvents {
    /// An empty queue.
    pub fn new() -> Self {
        SystemEvents::default()
    }

    fn q(&self) -> MutexGuard<'_, VecDeque<EventId>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a system event.
    pub fn push(&self, id: EventId) {
        self.q().push_back(id);
    }

    /// Takes the oldest pending event.
    pub fn pop(&self) -> Option<EventId> {
        self.q().pop_front()
    }

    /// Takes all pending events, oldest first.
    pub fn drain(&self) -> Vec<EventId> {
        self.q().drain(..).collect()
    }

    /// True when no event is pending.
    pub fn is_empty(&self) -> bool {
        self.q().is_empty()
    }

    /// Number of pending events.
    pub fn len(&self) -> usize {
        self.q().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_shared_between_clones() {
        let a = SystemEvents::new();
        let b = a.clone();
        a.push(EventId::SOFT_REBOOT);
        a.push(EventId::CHANNEL_REGISTERED);
        assert_eq!(b.len(), 2);
        assert_eq!(b.pop(), Some(EventId::SOFT_REBOOT));
        assert_eq!(b.drain(), vec![EventId::CHANNEL_REGISTERED]);
        assert!(a.is_empty());
    }
}
