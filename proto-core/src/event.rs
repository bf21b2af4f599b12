//! Payload codec: event (filled in below).
