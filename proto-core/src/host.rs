//! Host endpoint.
