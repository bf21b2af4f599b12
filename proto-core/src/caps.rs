//! PROTO_GET_CAPS / PROTO_SET_CAPS payload (16 bytes, section 3).

use core::fmt;

use crate::error::{le16, le32, need, DecodeError};
use crate::MIN_PAYLOAD;

/// The capability bit field. Unknown bits are preserved.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CapFlags(pub u32);

crate::bits::bit_set!(CapFlags);

impl CapFlags {
    /// No capability.
    pub const NONE: CapFlags = CapFlags(0);
    /// Header and payload CRCs are checked.
    pub const CRC: CapFlags = CapFlags(1);
    /// Sequence numbers are checked.
    pub const SEQ: CapFlags = CapFlags(2);
    /// The cam asks for ACKs and retransmits.
    pub const ACK: CapFlags = CapFlags(4);
    /// The cam sends event packets.
    pub const EVENTS: CapFlags = CapFlags(8);
    /// Every bit the protocol defines.
    pub const KNOWN: CapFlags = CapFlags(0xF);

    /// CRC checking is on.
    pub const fn crc(self) -> bool {
        self.contains(Self::CRC)
    }

    /// Sequence checking is on.
    pub const fn seq(self) -> bool {
        self.contains(Self::SEQ)
    }

    /// ACK/retransmission is on.
    pub const fn ack(self) -> bool {
        self.contains(Self::ACK)
    }

    /// Events are on.
    pub const fn events(self) -> bool {
        self.contains(Self::EVENTS)
    }
}

impl fmt::Debug for CapFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(u32, &str); 4] = [(1, "CRC"), (2, "SEQ"), (4, "ACK"), (8, "EVENTS")];
        if self.0 == 0 {
            return f.write_str("0");
        }
        let mut first = true;
        for (bit, name) in NAMES {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        let rest = self.0 & !Self::KNOWN.0;
        if rest != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{rest:#x}")?;
        }
        Ok(())
    }
}

/// Negotiated capabilities: flags and the largest payload either side sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Caps {
    /// Capability bits.
    pub flags: CapFlags,
    /// Largest payload, both directions.
    pub max_payload: u16,
}

impl Default for Caps {
    fn default() -> Caps {
        Caps::DEFAULT
    }
}

impl Caps {
    /// Size of the payload on the wire.
    pub const LEN: usize = 16;
    /// Bytes `decode` needs (flags and max_payload; the rest is reserved).
    pub const MIN_LEN: usize = 6;
    /// Caps both sides use after a SYNC: CRC and SEQ on, `max_payload` = [`MIN_PAYLOAD`].
    pub const DEFAULT: Caps = Caps {
        flags: CapFlags(CapFlags::CRC.0 | CapFlags::SEQ.0),
        max_payload: MIN_PAYLOAD,
    };

    /// Encodes the 16-byte payload (u32 flags, u16 max_payload, 10 zero bytes).
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..4].copy_from_slice(&self.flags.0.to_le_bytes());
        b[4..6].copy_from_slice(&self.max_payload.to_le_bytes());
        b
    }

    /// Lenient decode, as the stock host does: needs at least 6 bytes
    /// (flags and max_payload); anything after them is ignored.
    pub fn decode(payload: &[u8]) -> Result<Caps, DecodeError> {
        need("caps", payload, Self::MIN_LEN)?;
        Ok(Caps {
            flags: CapFlags(le32(payload, 0)),
            max_payload: le16(payload, 4),
        })
    }

    /// Strict decode, as the cam does for SET_CAPS: the payload must be
    /// exactly 16 bytes ([`DecodeError::BadLength`] otherwise). The reserved
    /// bytes are not checked. `max_payload` is not range-checked either; see
    /// [`Caps::max_payload_valid`].
    pub fn decode_exact(payload: &[u8]) -> Result<Caps, DecodeError> {
        if payload.len() != Self::LEN {
            return Err(DecodeError::BadLength {
                what: "caps",
                got: payload.len(),
            });
        }
        Caps::decode(payload)
    }

    /// True when `max_payload` lies in `[MIN_PAYLOAD, MAX_PAYLOAD]`, what
    /// the protocol allows (every u16 from 50 up). A cam also NAKs SET_CAPS
    /// above its own largest payload.
    pub const fn max_payload_valid(&self) -> bool {
        // MAX_PAYLOAD is u16::MAX: only the lower bound can fail.
        self.max_payload >= MIN_PAYLOAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let c = Caps {
            flags: CapFlags(0xF),
            max_payload: 4082,
        };
        let b = c.encode();
        assert_eq!(b, [0x0f, 0, 0, 0, 0xf2, 0x0f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Caps::decode(&b), Ok(c));
        assert_eq!(Caps::decode_exact(&b), Ok(c));
        let c = Caps {
            flags: CapFlags::CRC,
            max_payload: 512,
        };
        assert_eq!(c.encode(), [1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn lengths() {
        assert!(matches!(
            Caps::decode(&[1, 0, 0, 0, 50]),
            Err(DecodeError::Short { .. })
        ));
        assert_eq!(
            Caps::decode(&[3, 0, 0, 0x80, 50, 0]),
            Ok(Caps {
                flags: CapFlags(0x8000_0003),
                max_payload: 50
            })
        );
        assert_eq!(
            Caps::decode_exact(&[3, 0, 0, 0, 50, 0]),
            Err(DecodeError::BadLength {
                what: "caps",
                got: 6
            })
        );
        assert!(Caps::decode_exact(&[0; 17]).is_err());
    }

    #[test]
    fn flags_and_default() {
        let d = Caps::DEFAULT;
        assert!(d.flags.crc() && d.flags.seq() && !d.flags.ack() && !d.flags.events());
        assert_eq!(d.max_payload, 50);
        assert!(d.max_payload_valid());
        assert!(!Caps {
            max_payload: 49,
            ..d
        }
        .max_payload_valid());
        // Any announced value up to the u16 limit: the N6 and AE3 offer 8178.
        for max in [4083, 8178, crate::MAX_PAYLOAD] {
            assert!(Caps {
                max_payload: max,
                ..d
            }
            .max_payload_valid());
        }
        assert_eq!(
            CapFlags::NONE
                .set(CapFlags::ACK, true)
                .set(CapFlags::ACK, false),
            CapFlags::NONE
        );
        assert_eq!(alloc::format!("{:?}", CapFlags(0x105)), "CRC|ACK|0x100");
    }
}
