//! Payload codec: stats (filled in below).
