//! sim-device
