//! Payload codec: sysinfo (filled in below).
