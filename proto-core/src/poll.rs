//! CHANNEL_POLL payload: a u32 bitmap, bit i set when channel i is ready.

use crate::error::{le32, need, DecodeError};
use crate::ChannelId;

/// Readiness of up to 32 channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PollBitmap(pub u32);

impl PollBitmap {
    /// Size of the payload on the wire.
    pub const LEN: usize = 4;

    /// True when channel `id` is ready (always false for ids ≥ 32).
    pub const fn is_ready(self, id: ChannelId) -> bool {
        id.0 < 32 && self.0 & (1 << id.0) != 0
    }

    /// Marks channel `id` ready; ids ≥ 32 are ignored.
    pub fn set(&mut self, id: ChannelId) {
        if id.0 < 32 {
            self.0 |= 1 << id.0;
        }
    }

    /// Marks channel `id` not ready; ids ≥ 32 are ignored.
    pub fn clear(&mut self, id: ChannelId) {
        if id.0 < 32 {
            self.0 &= !(1 << id.0);
        }
    }

    /// The ready channels, in increasing id order.
    pub fn ready(self) -> impl Iterator<Item = ChannelId> {
        (0u8..32)
            .map(ChannelId)
            .filter(move |&id| self.is_ready(id))
    }

    /// Encodes the 4-byte payload.
    pub const fn encode(self) -> [u8; Self::LEN] {
        self.0.to_le_bytes()
    }

    /// Decodes the payload; needs at least 4 bytes, extra bytes are ignored.
    pub fn decode(payload: &[u8]) -> Result<PollBitmap, DecodeError> {
        need("poll bitmap", payload, Self::LEN)?;
        Ok(PollBitmap(le32(payload, 0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn layout() {
        let mut p = PollBitmap::default();
        p.set(ChannelId::STDOUT);
        p.set(ChannelId::STREAM);
        p.set(ChannelId(31));
        p.set(ChannelId(32));
        p.set(ChannelId(255));
        assert_eq!(p.encode(), [0x0C, 0, 0, 0x80]);
        assert_eq!(PollBitmap::decode(&[0x0C, 0, 0, 0x80]), Ok(p));
        assert!(p.is_ready(ChannelId::STREAM) && !p.is_ready(ChannelId::STDIN));
        assert!(!PollBitmap(u32::MAX).is_ready(ChannelId(40)));
        assert_eq!(
            p.ready().collect::<Vec<_>>(),
            [ChannelId(2), ChannelId(3), ChannelId(31)]
        );
        p.clear(ChannelId(31));
        assert_eq!(p.0, 0x0C);
        assert!(PollBitmap::decode(&[1, 2, 3]).is_err());
    }
}
