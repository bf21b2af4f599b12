#!/usr/bin/env bash
# The blocking and the async driver side by side against the same simulated
# cams (release build): 4 MiB read throughput and 64-byte read latency over
# a pseudo-terminal and TCP, and UDP goodput of 1 MiB reads at 0 %, 2 % and
# 20 % datagram loss each way, ACKs on and off. Prints two Markdown tables.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet --release -p omv-async --example compare_drivers
