//! CHANNEL_IOCTL request numbers of the built-in channels (PROTOCOL.md
//! section 9).

/// stdin: stop the running script.
pub const STDIN_STOP: u32 = 1;
/// stdin: run the uploaded script (NAK FAILED on an empty buffer).
pub const STDIN_EXEC: u32 = 2;
/// stdin: clear the script buffer.
pub const STDIN_RESET: u32 = 3;
/// stream: streaming on/off (u32).
pub const STREAM_CTRL: u32 = 0;
/// stream: raw (uncompressed) frames on/off (u32).
pub const STREAM_RAW_CTRL: u32 = 1;
/// stream: raw frame resolution (u32 width, u32 height).
pub const STREAM_RAW_CFG: u32 = 2;
/// stream: select the image sensor (u32 chip id).
pub const STREAM_SOURCE: u32 = 3;
/// profile: 0 inclusive, 1 exclusive timing (u32).
pub const PROFILE_MODE: u32 = 0;
/// profile: bind a PMU counter to an event (u32 counter, u32 event).
pub const PROFILE_SET_EVENT: u32 = 1;
/// profile: clear the counters.
pub const PROFILE_RESET: u32 = 2;
/// profile: statistics.
pub const PROFILE_STATS: u32 = 3;
