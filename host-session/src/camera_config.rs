//! [`CameraConfig`]: the stock `openmv.Camera` constructor parameters, with
//! the same defaults, plus a few of our own; what every std driver's
//! `Camera` is built from (feature `std`).

use std::time::Duration;

use omv_proto::host::HostConfig;

use crate::config::SessionConfig;
use crate::error::{Error, Result};

/// The serial line rate that switches an OpenMV cam's USB port to the
/// protocol (the stock default).
pub const DEFAULT_BAUDRATE: u32 = 921_600;

/// How to reach and talk to a cam. Build it with [`CameraConfig::new`] and
/// the chainable setters; the defaults are the stock package's.
///
/// ```
/// use omv_session::CameraConfig;
/// use std::time::Duration;
/// let cfg = CameraConfig::new("/dev/ttyACM0")
///     .timeout(Duration::from_millis(500))
///     .max_payload(1024)
///     .retries(2);
/// assert_eq!(cfg.baudrate, 921_600);
/// assert!(cfg.crc && cfg.seq && cfg.ack && cfg.events);
/// assert_eq!(cfg.max_retry, 3);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CameraConfig {
    /// Serial device path (`/dev/ttyACM0`, `COM3`, ...), or the name of a
    /// transport given to a driver's `Camera::with_transport`.
    pub port: String,
    /// Serial line rate. Over USB, 921600 switches the cam to the protocol.
    pub baudrate: u32,
    /// Ask for CRCs on every packet.
    pub crc: bool,
    /// Ask for sequence number checks.
    pub seq: bool,
    /// Ask the cam to request ACKs (and retransmit lost packets).
    pub ack: bool,
    /// Ask for event packets.
    pub events: bool,
    /// How long to wait for each packet of a response.
    pub timeout: Duration,
    /// SYNC attempts before a resync fails.
    pub max_retry: u8,
    /// Largest payload wanted; the cam clips it to its own maximum (498,
    /// 4082 or 8178 by board; any value up to 65535 is accepted).
    pub max_payload: u16,
    /// Test only: probability of dropping each received packet and each
    /// ACK, in `[0, 1]`.
    pub drop_rate: f64,
    /// Seed of the drop simulation, so every run with faults replays.
    pub seed: u64,
    /// How many times a driver's `Camera::retry` runs a
    /// caller's closure again after a retryable error (the stock package
    /// retries once). The built-in operations retry by time instead (see
    /// [`deadline_base`](Self::deadline_base)).
    pub retries: u8,
    /// Fixed part of every operation's deadline: within it, a failed
    /// operation is resynced and resumed (reads at the first byte not
    /// received, writes at the first not acknowledged).
    pub deadline_base: Duration,
    /// Part of the deadline per MiB moved (default 20 s: 10 s + 20 s for
    /// a 1 MiB read).
    pub deadline_per_mib: Duration,
    /// Most events kept in the pending queue before the oldest are dropped.
    pub event_queue: usize,
    /// See [`SessionConfig::unacked_read_max`]; drivers' `Camera::udp`
    /// set it through [`for_datagrams`](Self::for_datagrams).
    pub unacked_read_max: Option<u32>,
}

impl Default for CameraConfig {
    fn default() -> Self {
        CameraConfig::new("/dev/ttyACM0")
    }
}

impl CameraConfig {
    /// The stock defaults for `port`: 921600 baud, CRC, sequence, ACK and
    /// events on, 1 s timeout, 3 SYNC attempts, max payload 4096 (clipped
    /// by the cam), no drops, one retry.
    pub fn new(port: impl Into<String>) -> CameraConfig {
        CameraConfig {
            port: port.into(),
            baudrate: DEFAULT_BAUDRATE,
            crc: true,
            seq: true,
            ack: true,
            events: true,
            timeout: Duration::from_secs(1),
            max_retry: 3,
            max_payload: 4096,
            drop_rate: 0.0,
            seed: 0,
            retries: 1,
            deadline_base: Duration::from_secs(10),
            deadline_per_mib: Duration::from_secs(20),
            event_queue: 1024,
            unacked_read_max: None,
        }
    }

    /// Sets [`port`](Self::port).
    pub fn port(mut self, port: impl Into<String>) -> Self {
        self.port = port.into();
        self
    }
    /// Sets [`baudrate`](Self::baudrate).
    pub fn baudrate(mut self, baudrate: u32) -> Self {
        self.baudrate = baudrate;
        self
    }
    /// Sets [`crc`](Self::crc).
    pub fn crc(mut self, on: bool) -> Self {
        self.crc = on;
        self
    }
    /// Sets [`seq`](Self::seq).
    pub fn seq(mut self, on: bool) -> Self {
        self.seq = on;
        self
    }
    /// Sets [`ack`](Self::ack).
    pub fn ack(mut self, on: bool) -> Self {
        self.ack = on;
        self
    }
    /// Sets [`events`](Self::events).
    pub fn events(mut self, on: bool) -> Self {
        self.events = on;
        self
    }
    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Sets [`max_retry`](Self::max_retry).
    pub fn max_retry(mut self, n: u8) -> Self {
        self.max_retry = n;
        self
    }
    /// Sets [`max_payload`](Self::max_payload).
    pub fn max_payload(mut self, n: u16) -> Self {
        self.max_payload = n;
        self
    }
    /// Sets [`drop_rate`](Self::drop_rate).
    pub fn drop_rate(mut self, p: f64) -> Self {
        self.drop_rate = p;
        self
    }
    /// Sets [`seed`](Self::seed).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Sets [`retries`](Self::retries).
    pub fn retries(mut self, n: u8) -> Self {
        self.retries = n;
        self
    }
    /// Sets [`deadline_base`](Self::deadline_base) and
    /// [`deadline_per_mib`](Self::deadline_per_mib).
    pub fn deadline(mut self, base: Duration, per_mib: Duration) -> Self {
        self.deadline_base = base;
        self.deadline_per_mib = per_mib;
        self
    }
    /// Sets [`event_queue`](Self::event_queue).
    pub fn event_queue(mut self, n: usize) -> Self {
        self.event_queue = n;
        self
    }

    /// Sets [`unacked_read_max`](Self::unacked_read_max).
    pub fn unacked_read_max(mut self, max: Option<u32>) -> Self {
        self.unacked_read_max = max;
        self
    }

    /// The settings for a datagram transport (UDP, one packet per
    /// datagram): reads with ACKs off are asked for in requests of at most
    /// [`DATAGRAM_UNACKED_READ`](crate::DATAGRAM_UNACKED_READ) bytes unless
    /// [`unacked_read_max`](Self::unacked_read_max) is set already.
    pub fn for_datagrams(mut self) -> Self {
        self.unacked_read_max
            .get_or_insert(crate::DATAGRAM_UNACKED_READ);
        self
    }

    /// Checks the values are usable.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.drop_rate) {
            return Err(Error::InvalidArgument(format!(
                "drop_rate must be in [0, 1], got {}",
                self.drop_rate
            )));
        }
        if self.timeout.is_zero() {
            return Err(Error::InvalidArgument("timeout must be positive".into()));
        }
        if self.max_retry == 0 {
            return Err(Error::InvalidArgument(
                "max_retry must be at least 1".into(),
            ));
        }
        if self.max_payload < omv_proto::MIN_PAYLOAD {
            return Err(Error::InvalidArgument(format!(
                "max_payload must be at least {}, got {}",
                omv_proto::MIN_PAYLOAD,
                self.max_payload
            )));
        }
        Ok(())
    }

    /// Whether a driver's `Camera::retry` runs the caller's closure again
    /// after `e`, having retried `attempts` times already: a retryable
    /// error and fewer than [`retries`](Self::retries) attempts.
    pub fn should_retry(&self, e: &Error, attempts: u8) -> bool {
        e.is_retryable() && attempts < self.retries
    }

    /// The session's settings.
    pub fn session_config(&self) -> SessionConfig {
        SessionConfig {
            crc: self.crc,
            seq: self.seq,
            ack: self.ack,
            events: self.events,
            max_payload: self.max_payload,
            timeout: self.timeout,
            max_retry: self.max_retry,
            deadline_base: self.deadline_base,
            deadline_per_mib: self.deadline_per_mib,
            drop_rate: self.drop_rate,
            seed: self.seed,
            event_queue: self.event_queue,
            unacked_read_max: self.unacked_read_max,
            ..SessionConfig::default()
        }
    }

    /// The sans-IO host endpoint's settings (the session's mapping).
    pub fn host_config(&self) -> HostConfig {
        self.session_config().host_config()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_stock() {
        let c = CameraConfig::default();
        assert_eq!(c.baudrate, 921_600);
        assert_eq!(c.timeout, Duration::from_secs(1));
        assert_eq!((c.max_retry, c.max_payload, c.retries), (3, 4096, 1));
        assert_eq!(c.drop_rate, 0.0);
        assert_eq!(c.host_config(), HostConfig::default());
        assert_eq!(c.session_config(), SessionConfig::default());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validation() {
        assert!(CameraConfig::default().drop_rate(1.5).validate().is_err());
        assert!(CameraConfig::default().max_payload(10).validate().is_err());
        assert!(CameraConfig::default().max_retry(0).validate().is_err());
        assert!(CameraConfig::default()
            .timeout(Duration::ZERO)
            .validate()
            .is_err());
    }
}
