//! Cam events: what they mean ([`Event`], [`EventKind`]) and the state the
//! session tracks from them ([`EventState`]).
//!
//! Every event the cam sends is classified, recorded in [`EventState`] and
//! queued for [`Session::poll_event`](crate::Session::poll_event). Events
//! arrive whenever the driver feeds input: during an operation or idle.

use omv_proto::channel::ChannelEntry;
use omv_proto::event::EventId;
use omv_proto::host::CamEvent;
use omv_proto::ChannelId;

use alloc::collections::VecDeque;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// What an event means, given the channel that sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// System: a channel was registered (the channel cache is refreshed
    /// before the next by-name lookup).
    ChannelRegistered,
    /// System: a channel was unregistered.
    ChannelUnregistered,
    /// System: the cam soft-rebooted (a script ended).
    SoftReboot,
    /// stdin: a script started.
    ScriptStarted,
    /// stdin: the script stopped.
    ScriptStopped,
    /// stream: a new frame is ready.
    FrameReady,
    /// stdout: unread text is waiting.
    StdoutReady,
    /// Any other event (a user channel's, or an unknown system event).
    Other,
}

/// One event from the cam.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// Channel (0 for system events) and event id as received.
    pub raw: CamEvent,
    /// Its meaning.
    pub kind: EventKind,
    /// The channel's name, when the channel cache knows it.
    pub channel_name: Option<String>,
}

impl Event {
    /// Classifies `raw` using the cached channel list (built-in channels
    /// are recognised by name, or by their fixed ids when the cache lacks
    /// them).
    pub fn classify(raw: CamEvent, channels: &[ChannelEntry]) -> Event {
        let channel_name = channels
            .iter()
            .find(|c| c.id == raw.channel)
            .map(|c| c.name.clone());
        let builtin = match (raw.channel, channel_name.as_deref()) {
            (ChannelId::SYSTEM, _) => "system",
            (_, Some(n)) => n,
            (ChannelId::STDIN, None) => "stdin",
            (ChannelId::STDOUT, None) => "stdout",
            (ChannelId::STREAM, None) => "stream",
            _ => "",
        };
        let id = EventId(raw.event);
        let kind = match builtin {
            "system" => match id {
                EventId::CHANNEL_REGISTERED => EventKind::ChannelRegistered,
                EventId::CHANNEL_UNREGISTERED => EventKind::ChannelUnregistered,
                EventId::SOFT_REBOOT => EventKind::SoftReboot,
                _ => EventKind::Other,
            },
            "stdin" => match id {
                EventId::SCRIPT_STARTED => EventKind::ScriptStarted,
                EventId::SCRIPT_STOPPED => EventKind::ScriptStopped,
                _ => EventKind::Other,
            },
            "stream" => EventKind::FrameReady,
            "stdout" => EventKind::StdoutReady,
            _ => EventKind::Other,
        };
        Event {
            raw,
            kind,
            channel_name,
        }
    }
}

impl core::fmt::Display for Event {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let chan = match (&self.channel_name, self.raw.channel) {
            (_, ChannelId::SYSTEM) => "system".to_string(),
            (Some(n), _) => n.clone(),
            (None, id) => alloc::format!("#{id}"),
        };
        write!(
            f,
            "channel={chan} event=0x{:04X} ({:?})",
            self.raw.event, self.kind
        )
    }
}

/// State the session derives from events (and from CHANNEL_POLL).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventState {
    /// A frame-ready event arrived since the last frame read.
    pub frame_ready: bool,
    /// Whether a script is running, as last reported by stdin events or
    /// the stdin bit of a CHANNEL_POLL (`None` before either was seen).
    pub script_running: Option<bool>,
    /// Script-started events seen.
    pub scripts_started: u64,
    /// Script-stopped events seen.
    pub scripts_stopped: u64,
    /// Soft reboots seen.
    pub soft_reboots: u64,
    /// Channel (un)registration events seen.
    pub channel_changes: u64,
    /// Events seen in total.
    pub total: u64,
    /// Events dropped from the pending queue because it was full.
    pub dropped: u64,
}

impl EventState {
    /// Records one event.
    pub fn record(&mut self, e: &Event) {
        self.total += 1;
        match e.kind {
            EventKind::FrameReady => self.frame_ready = true,
            EventKind::ScriptStarted => {
                self.script_running = Some(true);
                self.scripts_started += 1;
            }
            EventKind::ScriptStopped => {
                self.script_running = Some(false);
                self.scripts_stopped += 1;
            }
            EventKind::SoftReboot => self.soft_reboots += 1,
            EventKind::ChannelRegistered | EventKind::ChannelUnregistered => {
                self.channel_changes += 1
            }
            EventKind::StdoutReady | EventKind::Other => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use omv_proto::ChannelFlags;

    #[test]
    fn event_queue_keeps_the_newest_and_counts_drops() {
        let e = |id| Event::classify(ev(0, id), &[]);
        let mut q = EventQueue::new();
        for id in 0..5 {
            q.push(e(id), 3);
        }
        let ids: Vec<u16> = q.iter().map(|e| e.raw.event).collect();
        assert_eq!(ids, vec![2, 3, 4]);
        assert_eq!(q.dropped(), 2);
        q.push(e(9), 0);
        assert_eq!(q.dropped(), 3);
        assert_eq!(q.state(EventState::default()).dropped, 3);
        assert_eq!(q.take().len(), 3);
        assert_eq!(q.iter().count(), 0);
    }

    fn ev(ch: u8, id: u16) -> CamEvent {
        CamEvent {
            channel: ChannelId(ch),
            event: id,
        }
    }

    #[test]
    fn classification() {
        let chans = vec![
            ChannelEntry {
                id: ChannelId(1),
                flags: ChannelFlags::WRITE,
                name: "stdin".into(),
            },
            ChannelEntry {
                id: ChannelId(7),
                flags: ChannelFlags::READ,
                name: "stream".into(),
            },
        ];
        assert_eq!(
            Event::classify(ev(0, 0), &chans).kind,
            EventKind::ChannelRegistered
        );
        assert_eq!(
            Event::classify(ev(0, 2), &chans).kind,
            EventKind::SoftReboot
        );
        assert_eq!(Event::classify(ev(0, 9), &chans).kind, EventKind::Other);
        assert_eq!(
            Event::classify(ev(1, 1), &chans).kind,
            EventKind::ScriptStarted
        );
        assert_eq!(
            Event::classify(ev(1, 0), &chans).kind,
            EventKind::ScriptStopped
        );
        assert_eq!(
            Event::classify(ev(7, 0xFFFF), &chans).kind,
            EventKind::FrameReady
        );
        // Not in the cache: fixed ids.
        assert_eq!(
            Event::classify(ev(2, 0xFFFF), &chans).kind,
            EventKind::StdoutReady
        );
        assert_eq!(Event::classify(ev(9, 3), &chans).kind, EventKind::Other);
        let mut s = EventState::default();
        s.record(&Event::classify(ev(1, 1), &chans));
        s.record(&Event::classify(ev(7, 0xFFFF), &chans));
        assert_eq!(s.script_running, Some(true));
        assert!(s.frame_ready);
        assert_eq!(s.total, 2);
    }
}

/// Receives every event as it arrives (the stock `_handle_event`
/// override), in any driver.
///
/// Closures work directly:
///
/// ```
/// use omv_session::{Event, EventHandler};
/// let mut seen = Vec::new();
/// let mut handler = |e: &Event| seen.push(e.kind);
/// # let _ = &mut handler as &mut dyn FnMut(&Event);
/// ```
pub trait EventHandler: Send {
    /// Called once per event, after the driver updated its own state.
    fn on_event(&mut self, event: &Event);
}

impl<F: FnMut(&Event) + Send> EventHandler for F {
    fn on_event(&mut self, event: &Event) {
        self(event)
    }
}

/// The events a driver keeps for its caller (`Camera::pending_events`,
/// `Camera::take_events`): the newest `cap`, the older ones dropped and
/// counted.
#[derive(Clone, Debug, Default)]
pub struct EventQueue {
    events: VecDeque<Event>,
    dropped: u64,
}

impl EventQueue {
    /// An empty queue.
    pub fn new() -> EventQueue {
        EventQueue::default()
    }

    /// Appends `e`, dropping the oldest event when `cap` are queued
    /// (everything when `cap` is 0).
    pub fn push(&mut self, e: Event, cap: usize) {
        if cap == 0 {
            self.dropped += 1;
            return;
        }
        while self.events.len() >= cap {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(e);
    }

    /// The queued events, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// Takes every queued event, oldest first.
    pub fn take(&mut self) -> Vec<Event> {
        self.events.drain(..).collect()
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The session's event state with this queue's drops added.
    pub fn state(&self, mut session: EventState) -> EventState {
        session.dropped += self.dropped;
        session
    }
}
