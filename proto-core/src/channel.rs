//! Channel ids, channel flags and the CHANNEL_LIST entry (sections 3 and 9).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::error::DecodeError;

/// A channel id: 0 is the transport/system channel, 1..=31 are data channels.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ChannelId(pub u8);

impl ChannelId {
    /// The system channel (and the transport itself).
    pub const SYSTEM: ChannelId = ChannelId(0);
    /// Built-in stdin channel.
    pub const STDIN: ChannelId = ChannelId(1);
    /// Built-in stdout channel.
    pub const STDOUT: ChannelId = ChannelId(2);
    /// Built-in stream (frame buffer) channel.
    pub const STREAM: ChannelId = ChannelId(3);
    /// Built-in profile channel (profiling builds only).
    pub const PROFILE: ChannelId = ChannelId(4);
    /// Number of channel ids (the poll bitmap is 32 bits wide).
    pub const COUNT: usize = 32;
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ch{}", self.0)
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Channel capability flags, as listed by CHANNEL_LIST.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChannelFlags(pub u8);

crate::bits::bit_set!(ChannelFlags);

impl ChannelFlags {
    /// Readable.
    pub const READ: ChannelFlags = ChannelFlags(0x01);
    /// Writable.
    pub const WRITE: ChannelFlags = ChannelFlags(0x02);
    /// Executes what is written (stdin).
    pub const EXEC: ChannelFlags = ChannelFlags(0x04);
    /// Supports lock/unlock.
    pub const LOCK: ChannelFlags = ChannelFlags(0x08);
    /// A stream of frames.
    pub const STREAM: ChannelFlags = ChannelFlags(0x10);
    /// Registered at run time.
    pub const DYNAMIC: ChannelFlags = ChannelFlags(0x20);
    /// A physical transport.
    pub const PHYSICAL: ChannelFlags = ChannelFlags(0x40);
}

impl fmt::Debug for ChannelFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(u8, &str); 7] = [
            (0x01, "READ"),
            (0x02, "WRITE"),
            (0x04, "EXEC"),
            (0x08, "LOCK"),
            (0x10, "STREAM"),
            (0x20, "DYNAMIC"),
            (0x40, "PHYSICAL"),
        ];
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
        if self.0 & 0x80 != 0 || first {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{:#04x}", self.0 & 0x80)?;
        }
        Ok(())
    }
}

/// Size of one CHANNEL_LIST entry.
pub const ENTRY_SIZE: usize = 16;
/// Longest channel name (the 14-byte field keeps a NUL).
pub const MAX_NAME_LEN: usize = 13;

/// One CHANNEL_LIST entry: id, flags and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChannelEntry {
    /// Channel id.
    pub id: ChannelId,
    /// Capability flags.
    pub flags: ChannelFlags,
    /// Name (at most 13 bytes on the wire; longer names are truncated on encode).
    pub name: String,
}

impl ChannelEntry {
    /// Encodes the entry (16 bytes), truncating the name to 13 bytes at a
    /// character boundary.
    pub fn encode(&self) -> [u8; ENTRY_SIZE] {
        let mut b = [0u8; ENTRY_SIZE];
        b[0] = self.id.0;
        b[1] = self.flags.0;
        let name = truncate_name(&self.name);
        b[2..2 + name.len()].copy_from_slice(name.as_bytes());
        b
    }

    /// Decodes one 16-byte entry. The name stops at the first NUL; invalid
    /// UTF-8 is replaced, never rejected.
    pub fn decode(buf: &[u8]) -> Result<ChannelEntry, DecodeError> {
        crate::error::need("channel entry", buf, ENTRY_SIZE)?;
        let raw = &buf[2..ENTRY_SIZE];
        let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
        Ok(ChannelEntry {
            id: ChannelId(buf[0]),
            flags: ChannelFlags(buf[1]),
            name: String::from_utf8_lossy(&raw[..end]).into_owned(),
        })
    }

    /// Encodes a CHANNEL_LIST payload.
    pub fn encode_list(entries: &[ChannelEntry]) -> Vec<u8> {
        let mut out = Vec::with_capacity(entries.len() * ENTRY_SIZE);
        for e in entries {
            out.extend_from_slice(&e.encode());
        }
        out
    }

    /// Decodes a CHANNEL_LIST payload; its length must be a multiple of 16.
    pub fn decode_list(payload: &[u8]) -> Result<Vec<ChannelEntry>, DecodeError> {
        if payload.len() % ENTRY_SIZE != 0 {
            return Err(DecodeError::BadLength {
                what: "channel list",
                got: payload.len(),
            });
        }
        payload
            .chunks_exact(ENTRY_SIZE)
            .map(ChannelEntry::decode)
            .collect()
    }
}

/// The longest prefix of `name` that fits a list entry, cut at a char boundary.
pub fn truncate_name(name: &str) -> &str {
    if name.len() <= MAX_NAME_LEN {
        return name;
    }
    let mut end = MAX_NAME_LEN;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}
