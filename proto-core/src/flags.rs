//! Packet flags (section 1). Reserved bits are preserved but ignored.

use core::fmt;

/// The flags byte of a packet header.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

crate::bits::bit_set!(Flags);

impl Flags {
    /// No flags.
    pub const NONE: Flags = Flags(0);
    /// Positive acknowledgement / status "ok".
    pub const ACK: Flags = Flags(0x01);
    /// Negative acknowledgement; the payload is a u16 status.
    pub const NAK: Flags = Flags(0x02);
    /// Retransmission of an earlier packet.
    pub const RTX: Flags = Flags(0x04);
    /// The sender waits for an ACK of this packet.
    pub const ACK_REQ: Flags = Flags(0x08);
    /// More fragments of the same response follow.
    pub const FRAGMENT: Flags = Flags(0x10);
    /// An event packet.
    pub const EVENT: Flags = Flags(0x20);
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(u8, &str); 6] = [
            (0x01, "ACK"),
            (0x02, "NAK"),
            (0x04, "RTX"),
            (0x08, "ACK_REQ"),
            (0x10, "FRAGMENT"),
            (0x20, "EVENT"),
        ];
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
        if self.0 & 0xC0 != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{:#04x}", self.0 & 0xC0)?;
        }
        Ok(())
    }
}
