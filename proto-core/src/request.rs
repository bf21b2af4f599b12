//! Payload codec: request (filled in below).
