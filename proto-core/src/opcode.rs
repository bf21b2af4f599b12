//! Opcodes (section 3). Unknown values are preserved.

use core::fmt;

/// A packet's opcode. Any `u8` is representable; the named constants are the
/// ones protocol 1.0.x defines.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Opcode(pub u8);

impl Opcode {
    /// Reset the peer's protocol state.
    pub const PROTO_SYNC: Opcode = Opcode(0x00);
    /// Read the cam's capabilities.
    pub const PROTO_GET_CAPS: Opcode = Opcode(0x01);
    /// Set the link's capabilities.
    pub const PROTO_SET_CAPS: Opcode = Opcode(0x02);
    /// Read the cam's protocol statistics.
    pub const PROTO_STATS: Opcode = Opcode(0x03);
    /// Read protocol, bootloader and firmware versions.
    pub const PROTO_VERSION: Opcode = Opcode(0x04);
    /// Reboot the cam (no response).
    pub const SYS_RESET: Opcode = Opcode(0x10);
    /// Enter the bootloader (no response).
    pub const SYS_BOOT: Opcode = Opcode(0x11);
    /// Read system information.
    pub const SYS_INFO: Opcode = Opcode(0x12);
    /// System event (cam to host).
    pub const SYS_EVENT: Opcode = Opcode(0x13);
    /// Read memory statistics (firmware 4.8 and later).
    pub const SYS_MEMORY: Opcode = Opcode(0x14);
    /// List channels.
    pub const CHANNEL_LIST: Opcode = Opcode(0x20);
    /// Poll all channels' readiness.
    pub const CHANNEL_POLL: Opcode = Opcode(0x21);
    /// Lock a channel.
    pub const CHANNEL_LOCK: Opcode = Opcode(0x22);
    /// Unlock a channel.
    pub const CHANNEL_UNLOCK: Opcode = Opcode(0x23);
    /// Read a channel's shape.
    pub const CHANNEL_SHAPE: Opcode = Opcode(0x24);
    /// Read a channel's size.
    pub const CHANNEL_SIZE: Opcode = Opcode(0x25);
    /// Read from a channel.
    pub const CHANNEL_READ: Opcode = Opcode(0x26);
    /// Write to a channel.
    pub const CHANNEL_WRITE: Opcode = Opcode(0x27);
    /// Channel-specific control request.
    pub const CHANNEL_IOCTL: Opcode = Opcode(0x28);
    /// Channel event (cam to host).
    pub const CHANNEL_EVENT: Opcode = Opcode(0x29);

    /// System opcodes (< 0x20) must travel on channel 0.
    pub const fn is_system(self) -> bool {
        self.0 < 0x20
    }

    /// True for the two event opcodes.
    pub const fn is_event(self) -> bool {
        self.0 == Self::SYS_EVENT.0 || self.0 == Self::CHANNEL_EVENT.0
    }

    /// The protocol name, if the opcode is known.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x00 => "PROTO_SYNC",
            0x01 => "PROTO_GET_CAPS",
            0x02 => "PROTO_SET_CAPS",
            0x03 => "PROTO_STATS",
            0x04 => "PROTO_VERSION",
            0x10 => "SYS_RESET",
            0x11 => "SYS_BOOT",
            0x12 => "SYS_INFO",
            0x13 => "SYS_EVENT",
            0x14 => "SYS_MEMORY",
            0x20 => "CHANNEL_LIST",
            0x21 => "CHANNEL_POLL",
            0x22 => "CHANNEL_LOCK",
            0x23 => "CHANNEL_UNLOCK",
            0x24 => "CHANNEL_SHAPE",
            0x25 => "CHANNEL_SIZE",
            0x26 => "CHANNEL_READ",
            0x27 => "CHANNEL_WRITE",
            0x28 => "CHANNEL_IOCTL",
            0x29 => "CHANNEL_EVENT",
            _ => return None,
        })
    }
}

impl From<u8> for Opcode {
    fn from(v: u8) -> Self {
        Opcode(v)
    }
}

impl From<Opcode> for u8 {
    fn from(o: Opcode) -> u8 {
        o.0
    }
}

impl fmt::Debug for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Opcode({:#04x})", self.0),
        }
    }
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
