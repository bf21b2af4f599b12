//! Payload codec: caps (filled in below).
