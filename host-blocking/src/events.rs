//! Cam events: what they mean ([`Event`], [`EventKind`], from
//! `omv-session`), the handler a program installs ([`EventHandler`]) and
//! the state the session tracks from them ([`EventState`]).
//!
//! Every event the cam sends is classified, recorded in [`EventState`],
//! passed to the handler (if any) and appended to the pending queue
//! ([`Camera::take_events`](crate::Camera::take_events)). Events arrive
//! whenever the driver reads the port: during any request, or in
//! [`Camera::poll_events`](crate::Camera::poll_events) /
//! [`Camera::wait_events`](crate::Camera::wait_events) when idle.

pub use omv_session::{Event, EventHandler, EventKind, EventState};
