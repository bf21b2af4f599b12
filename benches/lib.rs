//! Criterion benchmarks of proto-core; run `cargo bench -p omv-benches`.
