//! Payload codec: frame (filled in below).
