//! Device endpoint.
