//! Framer.
