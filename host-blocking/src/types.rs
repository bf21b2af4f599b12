//! Typed results of [`Camera`](crate::Camera) calls: the session's types,
//! re-exported from `omv-session` (decoded frames included).

pub use omv_session::{
    ChannelKey, ChannelStatus, DecodeFrame, Frame, ProfileData, ProfileEntry, RawFrame, SystemInfo,
};
