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

pub use omv_session::{Event, EventKind, EventState};

/// Receives every event as it arrives (the stock `_handle_event` override).
///
/// Closures work directly:
///
/// ```
/// use omv_blocking::events::{Event, EventHandler};
/// let mut seen = Vec::new();
/// let mut handler = |e: &Event| seen.push(e.kind);
/// # let _ = &mut handler as &mut dyn FnMut(&Event);
/// ```
pub trait EventHandler: Send {
    /// Called once per event, after the driver updated its own state.
    fn on_event(&mut self, event: &Event);
}

impl<F: FnMut(&Event) + Send> EventHandler for F {
    fn on_event(&mut self, event: &Event) {
        self(event)
    }
}
