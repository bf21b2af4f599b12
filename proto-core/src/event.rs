//! Event ids and the event payload (sections 3 and 8).
//!
//! An event id's meaning depends on the channel that sent it: system events
//! come on channel 0 (SYS_EVENT), channel events on the channel's id
//! (CHANNEL_EVENT). So [`EventId::CHANNEL_REGISTERED`] and
//! [`EventId::SCRIPT_STOPPED`] share the value 0.

use core::fmt;

use crate::error::{le16, DecodeError};

/// An event id. Unknown values are preserved.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EventId(pub u16);

impl EventId {
    /// System event (channel 0): a channel was registered.
    pub const CHANNEL_REGISTERED: EventId = EventId(0);
    /// System event (channel 0): a channel was unregistered.
    pub const CHANNEL_UNREGISTERED: EventId = EventId(1);
    /// System event (channel 0): the cam soft-rebooted (a script ended).
    pub const SOFT_REBOOT: EventId = EventId(2);
    /// Stdin channel event: the script stopped.
    pub const SCRIPT_STOPPED: EventId = EventId(0);
    /// Stdin channel event: a script started.
    pub const SCRIPT_STARTED: EventId = EventId(1);
    /// An event without payload (stdout has text, stream has a frame); the
    /// host reports it as 0xFFFF.
    pub const NOTIFY: EventId = EventId(0xFFFF);

    /// Name of the id as a system event (channel 0).
    pub const fn system_name(self) -> Option<&'static str> {
        match self.0 {
            0 => Some("CHANNEL_REGISTERED"),
            1 => Some("CHANNEL_UNREGISTERED"),
            2 => Some("SOFT_REBOOT"),
            0xFFFF => Some("NOTIFY"),
            _ => None,
        }
    }

    /// Name of the id as a stdin channel event.
    pub const fn stdin_name(self) -> Option<&'static str> {
        match self.0 {
            0 => Some("SCRIPT_STOPPED"),
            1 => Some("SCRIPT_STARTED"),
            0xFFFF => Some("NOTIFY"),
            _ => None,
        }
    }

    /// The 2-byte payload carrying this id.
    pub const fn encode(self) -> [u8; 2] {
        self.0.to_le_bytes()
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::NOTIFY {
            f.write_str("NOTIFY")
        } else {
            write!(f, "EventId({})", self.0)
        }
    }
}

/// Decodes an event payload: empty is [`EventId::NOTIFY`], otherwise a u16
/// id (extra bytes ignored); a single byte is [`DecodeError::Short`].
pub fn decode_event_payload(payload: &[u8]) -> Result<EventId, DecodeError> {
    match payload.len() {
        0 => Ok(EventId::NOTIFY),
        1 => Err(DecodeError::Short {
            what: "event",
            need: 2,
            got: 1,
        }),
        _ => Ok(EventId(le16(payload, 0))),
    }
}

/// Encodes an event payload without allocating: `None` (a NOTIFY) gives an
/// empty payload, `Some(id)` the u16 id. Returns the buffer and the used length.
pub const fn encode_event_payload(id: Option<u16>) -> ([u8; 2], usize) {
    match id {
        None => ([0; 2], 0),
        Some(v) => (v.to_le_bytes(), 2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(encode_event_payload(Some(0)), ([0, 0], 2));
        assert_eq!(encode_event_payload(Some(1)), ([1, 0], 2));
        assert_eq!(encode_event_payload(Some(0x1234)), ([0x34, 0x12], 2));
        assert_eq!(encode_event_payload(None).1, 0);
        assert_eq!(decode_event_payload(&[]), Ok(EventId::NOTIFY));
        assert_eq!(
            decode_event_payload(&[0, 0]),
            Ok(EventId::CHANNEL_REGISTERED)
        );
        assert_eq!(decode_event_payload(&[2, 0, 9]), Ok(EventId::SOFT_REBOOT));
        assert_eq!(decode_event_payload(&[1, 0]), Ok(EventId::SCRIPT_STARTED));
        assert!(matches!(
            decode_event_payload(&[1]),
            Err(DecodeError::Short { .. })
        ));
        assert_eq!(EventId::SOFT_REBOOT.encode(), [2, 0]);
        assert_eq!(EventId(0).system_name(), Some("CHANNEL_REGISTERED"));
        assert_eq!(EventId(0).stdin_name(), Some("SCRIPT_STOPPED"));
        assert_eq!(EventId(7).system_name(), None);
        assert_eq!(alloc::format!("{:?}", EventId::NOTIFY), "NOTIFY");
        assert_eq!(alloc::format!("{:?}", EventId(3)), "EventId(3)");
    }
}
