//! PROTO_VERSION payload: three version triples (16 bytes, section 3).

use core::fmt;

use crate::error::{need, DecodeError};

/// A `major.minor.patch` triple, displayed as `1.0.2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Triple(pub [u8; 3]);

impl Triple {
    /// Major number.
    pub const fn major(self) -> u8 {
        self.0[0]
    }

    /// Minor number.
    pub const fn minor(self) -> u8 {
        self.0[1]
    }

    /// Patch number.
    pub const fn patch(self) -> u8 {
        self.0[2]
    }
}

impl From<[u8; 3]> for Triple {
    fn from(v: [u8; 3]) -> Triple {
        Triple(v)
    }
}

impl fmt::Display for Triple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0[0], self.0[1], self.0[2])
    }
}

/// Protocol, bootloader and firmware versions of a cam.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Version {
    /// Protocol version (major, minor, patch).
    pub protocol: [u8; 3],
    /// Bootloader version (major, minor, patch).
    pub bootloader: [u8; 3],
    /// Firmware version (major, minor, patch).
    pub firmware: [u8; 3],
}

impl Version {
    /// Size of the payload on the wire.
    pub const LEN: usize = 16;

    /// The protocol version as a displayable triple.
    pub const fn protocol_triple(&self) -> Triple {
        Triple(self.protocol)
    }

    /// The bootloader version as a displayable triple.
    pub const fn bootloader_triple(&self) -> Triple {
        Triple(self.bootloader)
    }

    /// The firmware version as a displayable triple.
    pub const fn firmware_triple(&self) -> Triple {
        Triple(self.firmware)
    }

    /// Encodes the 16-byte payload (9 version bytes, 7 zero bytes).
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..3].copy_from_slice(&self.protocol);
        b[3..6].copy_from_slice(&self.bootloader);
        b[6..9].copy_from_slice(&self.firmware);
        b
    }

    /// Decodes the payload; needs at least 16 bytes, the reserved bytes are ignored.
    pub fn decode(payload: &[u8]) -> Result<Version, DecodeError> {
        need("version", payload, Self::LEN)?;
        let t = |at: usize| [payload[at], payload[at + 1], payload[at + 2]];
        Ok(Version {
            protocol: t(0),
            bootloader: t(3),
            firmware: t(6),
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "protocol {}, bootloader {}, firmware {}",
            self.protocol_triple(),
            self.bootloader_triple(),
            self.firmware_triple()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn layout() {
        let v = Version {
            protocol: [1, 0, 2],
            bootloader: [3, 4, 5],
            firmware: [5, 0, 0],
        };
        let b = v.encode();
        assert_eq!(b, [1, 0, 2, 3, 4, 5, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Version::decode(&b), Ok(v));
        let mut junk = b;
        junk[9..].fill(0xEE);
        assert_eq!(Version::decode(&junk), Ok(v));
        assert!(Version::decode(&b[..15]).is_err());
        assert_eq!(v.protocol_triple().to_string(), "1.0.2");
        assert_eq!(
            v.to_string(),
            "protocol 1.0.2, bootloader 3.4.5, firmware 5.0.0"
        );
        assert!(Triple([1, 0, 2]) < Triple([1, 1, 0]));
    }
}
