//! Profile channel records (section 9).
//!
//! The profile channel's shape is `(record_count, record_size)`; its data is
//! `record_count` records of `record_size` bytes. A record holds u32
//! function address, caller, call_count, min_ticks, max_ticks; u64
//! total_ticks, total_cycles; `pmu_eventcnt` × u64 event totals; and a u32
//! link pointer, which readers ignore. `pmu_eventcnt` comes from
//! [`HwCaps::pmu_eventcnt`](crate::sysinfo::HwCaps::pmu_eventcnt).

use alloc::vec::Vec;

use crate::error::{le32, le64, need, DecodeError};

/// Size of a record with `pmu_eventcnt` event counters:
/// `5·4 + 2·8 + pmu_eventcnt·8 + 4`.
pub const fn record_size(pmu_eventcnt: u8) -> usize {
    5 * 4 + 2 * 8 + pmu_eventcnt as usize * 8 + 4
}

/// One profiled function.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct ProfileRecord {
    /// Function address.
    pub address: u32,
    /// Caller address.
    pub caller: u32,
    /// Number of calls.
    pub call_count: u32,
    /// Shortest call, in ticks.
    pub min_ticks: u32,
    /// Longest call, in ticks.
    pub max_ticks: u32,
    /// Total time, in ticks.
    pub total_ticks: u64,
    /// Total CPU cycles.
    pub total_cycles: u64,
    /// PMU event totals, one per event counter.
    pub events: Vec<u64>,
}

impl ProfileRecord {
    /// Size of the encoded record: `40 + 8·events.len()`.
    pub fn encoded_len(&self) -> usize {
        5 * 4 + 2 * 8 + self.events.len() * 8 + 4
    }

    /// Appends the record to `out`; the trailing link pointer is written as 0.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        for v in [
            self.address,
            self.caller,
            self.call_count,
            self.min_ticks,
            self.max_ticks,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.total_ticks.to_le_bytes());
        out.extend_from_slice(&self.total_cycles.to_le_bytes());
        for e in &self.events {
            out.extend_from_slice(&e.to_le_bytes());
        }
        out.extend_from_slice(&0u32.to_le_bytes());
    }

    /// Decodes one record with `pmu_eventcnt` event counters from the start
    /// of `buf`; needs `record_size(pmu_eventcnt)` bytes, ignores the link
    /// pointer and anything after it.
    pub fn decode(buf: &[u8], pmu_eventcnt: u8) -> Result<ProfileRecord, DecodeError> {
        need("profile record", buf, record_size(pmu_eventcnt))?;
        let events = (0..usize::from(pmu_eventcnt))
            .map(|i| le64(buf, 36 + i * 8))
            .collect();
        Ok(ProfileRecord {
            address: le32(buf, 0),
            caller: le32(buf, 4),
            call_count: le32(buf, 8),
            min_ticks: le32(buf, 12),
            max_ticks: le32(buf, 16),
            total_ticks: le64(buf, 20),
            total_cycles: le64(buf, 28),
            events,
        })
    }
}

/// Decodes the profile channel's data: records of `record_size` bytes (from
/// the channel's shape), each with `pmu_eventcnt` event counters. Errors:
/// [`DecodeError::InvalidValue`] when `record_size` is 0 or smaller than
/// [`record_size`]`(pmu_eventcnt)`; [`DecodeError::BadLength`] when
/// `data.len()` is not a multiple of `record_size`. Bytes of a record past
/// its link pointer are ignored.
pub fn decode_records(
    data: &[u8],
    record_size: usize,
    pmu_eventcnt: u8,
) -> Result<Vec<ProfileRecord>, DecodeError> {
    if record_size == 0 || record_size < self::record_size(pmu_eventcnt) {
        return Err(DecodeError::InvalidValue {
            what: "profile record size",
            value: record_size as u64,
        });
    }
    let chunks = data.chunks_exact(record_size);
    // Not `is_multiple_of`: that needs Rust 1.87, the workspace targets 1.80.
    if !chunks.remainder().is_empty() {
        return Err(DecodeError::BadLength {
            what: "profile records",
            got: data.len(),
        });
    }
    chunks
        .map(|r| ProfileRecord::decode(r, pmu_eventcnt))
        .collect()
}

/// Encodes records back to back (each `40 + 8·events.len()` bytes).
pub fn encode_records(records: &[ProfileRecord], out: &mut Vec<u8>) {
    for r in records {
        r.encode_into(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn sizes() {
        assert_eq!(record_size(0), 40);
        assert_eq!(record_size(2), 56);
        assert_eq!(record_size(255), 40 + 255 * 8);
    }

    #[test]
    fn layout() {
        let r = ProfileRecord {
            address: 0x0800_1234,
            caller: 0x0800_0100,
            call_count: 3,
            min_ticks: 4,
            max_ticks: 5,
            total_ticks: 0x0102_0304_0506_0708,
            total_cycles: 9,
            events: vec![0xAA, 0xBB00],
        };
        let mut b = Vec::new();
        r.encode_into(&mut b);
        #[rustfmt::skip]
        let want: [u8; 56] = [
            0x34, 0x12, 0x00, 0x08, 0x00, 0x01, 0x00, 0x08, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0,
            8, 7, 6, 5, 4, 3, 2, 1, 9, 0, 0, 0, 0, 0, 0, 0,
            0xAA, 0, 0, 0, 0, 0, 0, 0, 0, 0xBB, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0,
        ];
        assert_eq!(b, want);
        assert_eq!(r.encoded_len(), 56);
        let mut two = b.clone();
        two.extend_from_slice(&b);
        two[52] = 0xEE; // link pointer ignored
        assert_eq!(decode_records(&two, 56, 2), Ok(vec![r.clone(), r.clone()]));
        assert_eq!(decode_records(&[], 56, 2), Ok(vec![]));
    }

    #[test]
    fn errors() {
        let b = [0u8; 112];
        assert_eq!(
            decode_records(&b, 0, 0),
            Err(DecodeError::InvalidValue {
                what: "profile record size",
                value: 0
            })
        );
        assert!(matches!(
            decode_records(&b, 48, 2),
            Err(DecodeError::InvalidValue { .. })
        ));
        assert_eq!(
            decode_records(&b[..100], 56, 2),
            Err(DecodeError::BadLength {
                what: "profile records",
                got: 100
            })
        );
        // Larger records than needed: the extra bytes are skipped.
        let recs = decode_records(&b, 56, 0).unwrap();
        assert_eq!(recs.len(), 2);
        assert!(recs[0].events.is_empty());
        assert!(ProfileRecord::decode(&b[..39], 0).is_err());
    }
}
