//! Payload codec: profile (filled in below).
