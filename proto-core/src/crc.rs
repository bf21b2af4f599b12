//! The two CRCs of the protocol, computed with the `crc` crate's
//! slice-by-16 tables.
//!
//! Both are MSB-first (not reflected), with no final xor.
//!
//! ```
//! assert_eq!(omv_proto::crc::crc16(b"123456789"), 0xE541);
//! assert_eq!(omv_proto::crc::crc32(b"123456789"), 0x41B4_03D3);
//! ```

use crc::{Algorithm, Crc, Table};

/// Header CRC-16: poly 0xF94F, init 0xFFFF.
pub const HEADER_CRC: Algorithm<u16> = Algorithm {
    width: 16,
    poly: 0xF94F,
    init: 0xFFFF,
    refin: false,
    refout: false,
    xorout: 0x0000,
    check: 0xE541,
    residue: 0x0000,
};

/// Payload CRC-32: poly 0xFA567D89, init 0xFFFFFFFF.
pub const PAYLOAD_CRC: Algorithm<u32> = Algorithm {
    width: 32,
    poly: 0xFA56_7D89,
    init: 0xFFFF_FFFF,
    refin: false,
    refout: false,
    xorout: 0x0000_0000,
    check: 0x41B4_03D3,
    residue: 0x0000_0000,
};

static CRC16: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&HEADER_CRC);
static CRC32: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&PAYLOAD_CRC);

/// CRC-16 of a header's first 8 bytes (or of any data).
pub fn crc16(data: &[u8]) -> u16 {
    CRC16.checksum(data)
}

/// CRC-32 of a payload.
pub fn crc32(data: &[u8]) -> u32 {
    CRC32.checksum(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values() {
        assert_eq!(crc16(b"123456789"), HEADER_CRC.check);
        assert_eq!(crc32(b"123456789"), PAYLOAD_CRC.check);
        assert_eq!(crc16(b""), 0xFFFF);
        assert_eq!(crc32(b""), 0xFFFF_FFFF);
    }
}
