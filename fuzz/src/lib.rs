//! Shared code of the fuzz targets: simple cam backends, a byte reader for
//! raw fuzz inputs, packet checks, a deterministic host+cam link with a fault
//! schedule, and one `check` function per target (`dst` drives the
//! deterministic simulator of `omv-tests` instead of this crate's link).
//!
//! The targets under `fuzz_targets/` only call these functions, so the same
//! checks replay the committed corpus under plain `cargo test` (see
//! `tests/corpus.rs`), without libFuzzer or a nightly toolchain.

pub mod backends;
pub mod decoders;
pub mod device;
pub mod dst;
pub mod framer;
pub mod host;
pub mod reader;
pub mod schedule;
pub mod sim;
pub mod wire;
