//! host-blocking
