//! `read_frame` for every pixel format, the firmware 4.x header and
//! malformed frames, against a cam (proto-core's device endpoint served by
//! sim-device's loop) whose stream channel serves frames set by the test.
//! The same checks run over a pseudo-terminal in `tests/pty.rs`.

mod common;

use common::frames::*;

#[test]
fn every_pixel_format() {
    check_every_pixel_format(&mut frame_rig());
}

#[test]
fn malformed_frames_are_errors() {
    check_malformed_frames(&mut frame_rig());
}
