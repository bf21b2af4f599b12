//! PROTO_STATS payload: eight u32 counters (32 bytes, section 3).

use crate::error::{le32, need, DecodeError};

/// The cam's protocol counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Stats {
    /// Packets sent.
    pub sent: u32,
    /// Packets received.
    pub received: u32,
    /// CRC failures.
    pub checksum_errors: u32,
    /// Sequence mismatches.
    pub sequence_errors: u32,
    /// Retransmissions.
    pub retransmits: u32,
    /// Transport (I/O) errors.
    pub transport_errors: u32,
    /// Events sent.
    pub sent_events: u32,
    /// Reserved; the Python package calls it `max_ack_queue_depth`.
    pub reserved: u32,
}

impl Stats {
    /// Size of the payload on the wire.
    pub const LEN: usize = 32;

    fn fields(&self) -> [u32; 8] {
        [
            self.sent,
            self.received,
            self.checksum_errors,
            self.sequence_errors,
            self.retransmits,
            self.transport_errors,
            self.sent_events,
            self.reserved,
        ]
    }

    /// Encodes the 32-byte payload.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        for (i, v) in self.fields().iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Decodes the payload; needs at least 32 bytes, extra bytes are ignored.
    pub fn decode(payload: &[u8]) -> Result<Stats, DecodeError> {
        need("stats", payload, Self::LEN)?;
        let f = |i: usize| le32(payload, i * 4);
        Ok(Stats {
            sent: f(0),
            received: f(1),
            checksum_errors: f(2),
            sequence_errors: f(3),
            retransmits: f(4),
            transport_errors: f(5),
            sent_events: f(6),
            reserved: f(7),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let s = Stats {
            sent: 1,
            received: 2,
            checksum_errors: 3,
            sequence_errors: 4,
            retransmits: 5,
            transport_errors: 6,
            sent_events: 7,
            reserved: 0x0102_0304,
        };
        let b = s.encode();
        #[rustfmt::skip]
        let want = [
            1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0,
            5, 0, 0, 0, 6, 0, 0, 0, 7, 0, 0, 0, 4, 3, 2, 1,
        ];
        assert_eq!(b, want);
        assert_eq!(Stats::decode(&b), Ok(s));
        assert_eq!(
            Stats::decode(&b[..31]),
            Err(DecodeError::Short {
                what: "stats",
                need: 32,
                got: 31
            })
        );
    }
}
