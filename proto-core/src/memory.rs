//! Payload codec: memory (filled in below).
