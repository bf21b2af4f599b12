//! `omv-tests`: end-to-end tests of the OpenMV cam protocol stack and the
//! deterministic simulation harness ([`dst`]), a library so that the fuzz
//! crate can drive the same simulator from its inputs
//! ([`dst::run_bytes`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod dst;
