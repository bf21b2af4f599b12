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

use alloc::string::{String, ToString};

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
