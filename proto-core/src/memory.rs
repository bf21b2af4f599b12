//! SYS_MEMORY payload: memory pool statistics (4 + 24·n bytes, section 3;
//! firmware ≥ 4.8).

use alloc::vec::Vec;
use core::fmt;

use crate::error::{le16, le32, need, DecodeError};

/// Kind of a memory pool. Unknown values are preserved.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MemoryKind(pub u8);

impl MemoryKind {
    /// The MicroPython garbage-collected heap.
    pub const GC_HEAP: MemoryKind = MemoryKind(0);
    /// A unified memory allocator pool.
    pub const UMA_POOL: MemoryKind = MemoryKind(1);

    /// Protocol name of a known kind.
    pub const fn name(self) -> Option<&'static str> {
        match self.0 {
            0 => Some("GC_HEAP"),
            1 => Some("UMA_POOL"),
            _ => None,
        }
    }
}

impl fmt::Debug for MemoryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "MemoryKind({})", self.0),
        }
    }
}

/// Statistics of one memory pool (sizes in bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MemoryEntry {
    /// Pool kind.
    pub kind: MemoryKind,
    /// Pool flags (meaning defined by the firmware).
    pub flags: u16,
    /// Total size.
    pub total: u32,
    /// Bytes in use.
    pub used: u32,
    /// Bytes free.
    pub free: u32,
    /// Bytes in persistent allocations.
    pub persist: u32,
    /// Peak usage.
    pub peak: u32,
}

impl MemoryEntry {
    /// Size of one entry on the wire.
    pub const LEN: usize = 24;

    /// Encodes one 24-byte entry (the reserved byte is 0).
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.kind.0;
        b[2..4].copy_from_slice(&self.flags.to_le_bytes());
        for (i, v) in [self.total, self.used, self.free, self.persist, self.peak]
            .iter()
            .enumerate()
        {
            b[4 + i * 4..8 + i * 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Decodes one entry; needs at least 24 bytes.
    pub fn decode(buf: &[u8]) -> Result<MemoryEntry, DecodeError> {
        need("memory entry", buf, Self::LEN)?;
        Ok(MemoryEntry {
            kind: MemoryKind(buf[0]),
            flags: le16(buf, 2),
            total: le32(buf, 4),
            used: le32(buf, 8),
            free: le32(buf, 12),
            persist: le32(buf, 16),
            peak: le32(buf, 20),
        })
    }
}

/// The SYS_MEMORY answer: one entry per memory pool.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct MemoryStats {
    /// The pools.
    pub entries: Vec<MemoryEntry>,
}

impl MemoryStats {
    /// Size of the fixed part (u8 count, 3 reserved bytes).
    pub const HEADER_LEN: usize = 4;
    /// Most entries a payload can carry (the count is a u8).
    pub const MAX_ENTRIES: usize = 255;

    /// Size of the encoded payload.
    pub fn encoded_len(&self) -> usize {
        Self::HEADER_LEN + MemoryEntry::LEN * self.entries.len().min(Self::MAX_ENTRIES)
    }

    /// Encodes the payload. Only the first 255 entries are encoded (the
    /// count is a u8).
    pub fn encode(&self) -> Vec<u8> {
        let n = self.entries.len().min(Self::MAX_ENTRIES);
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&[n as u8, 0, 0, 0]);
        for e in &self.entries[..n] {
            out.extend_from_slice(&e.encode());
        }
        out
    }

    /// Decodes the payload: errors when it is shorter than `4 + 24·count`;
    /// bytes after the last entry are ignored.
    pub fn decode(payload: &[u8]) -> Result<MemoryStats, DecodeError> {
        need("memory stats", payload, Self::HEADER_LEN)?;
        let n = usize::from(payload[0]);
        need(
            "memory stats",
            payload,
            Self::HEADER_LEN + n * MemoryEntry::LEN,
        )?;
        let entries = payload[Self::HEADER_LEN..]
            .chunks_exact(MemoryEntry::LEN)
            .take(n)
            .map(MemoryEntry::decode)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MemoryStats { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn layout() {
        let m = MemoryStats {
            entries: vec![
                MemoryEntry {
                    kind: MemoryKind::GC_HEAP,
                    flags: 0x0102,
                    total: 0x10000,
                    used: 0x100,
                    free: 0xFF00,
                    persist: 0x20,
                    peak: 0x200,
                },
                MemoryEntry {
                    kind: MemoryKind(7),
                    ..Default::default()
                },
            ],
        };
        let b = m.encode();
        #[rustfmt::skip]
        let want: [u8; 52] = [
            2, 0, 0, 0,
            0, 0, 0x02, 0x01, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0xFF, 0, 0, 0x20, 0, 0, 0, 0, 2, 0, 0,
            7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(b, want);
        assert_eq!(m.encoded_len(), 52);
        assert_eq!(MemoryStats::decode(&b), Ok(m.clone()));
        let mut longer = b.clone();
        longer.push(9);
        assert_eq!(MemoryStats::decode(&longer), Ok(m));
        assert_eq!(
            MemoryStats::decode(&b[..51]),
            Err(DecodeError::Short {
                what: "memory stats",
                need: 52,
                got: 51
            })
        );
        assert!(MemoryStats::decode(&[0, 0, 0]).is_err());
        assert_eq!(
            MemoryStats::decode(&[0, 0, 0, 0]),
            Ok(MemoryStats::default())
        );
        assert_eq!(alloc::format!("{:?}", MemoryKind(1)), "UMA_POOL");
        assert_eq!(alloc::format!("{:?}", MemoryKind(9)), "MemoryKind(9)");
    }

    #[test]
    fn too_many_entries() {
        let m = MemoryStats {
            entries: vec![MemoryEntry::default(); 300],
        };
        let b = m.encode();
        assert_eq!(b.len(), 4 + 255 * 24);
        assert_eq!(b[0], 255);
        assert_eq!(MemoryStats::decode(&b).map(|s| s.entries.len()), Ok(255));
    }
}
