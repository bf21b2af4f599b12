//! The one error type of every driver: `omv-session`'s [`Error`],
//! re-exported. It mirrors the stock `openmv` exception hierarchy
//! (`OMVException` with `TimeoutException`, `ChecksumException`,
//! `SequenceException`) with one variant per distinct cause, and adds the
//! driver's own failures (`Io` on a named port, `Image`, `Symbols`).

pub use omv_session::{Error, Result};
