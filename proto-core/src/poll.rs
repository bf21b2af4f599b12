//! Payload codec: poll (filled in below).
