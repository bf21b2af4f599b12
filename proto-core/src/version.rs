//! Payload codec: version (filled in below).
