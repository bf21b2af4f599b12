//! `omv._omv`: the native half of the `omv` Python package.
//!
//! `Engine` wraps one `omv_blocking::Camera` (the blocking driver) and
//! exposes its methods with Python values; the `omv.Camera` class (Python,
//! `omv/camera.py`) builds the stock `openmv.Camera` API on it. Every call
//! that can wait on the port releases the GIL, and the camera sits behind a
//! mutex taken only while the GIL is released, so calls from several Python
//! threads are serialised without a deadlock. `SimulatedCam` serves
//! omv-sim's simulated cam on a loopback TCP port, on a thread.
//!
//! Errors become the exceptions of `omv.exceptions` (see `to_pyerr`).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use omv_blocking::omv_proto::{ChannelId, Opcode, Status};
use omv_blocking::sim::EmbeddedSim;
use omv_blocking::{Camera, CameraConfig, Error};
use omv_sim::board::Board;
use omv_sim::cam::SimConfig;
use omv_sim::fault::FaultConfig;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple, PyType};

use omv_blocking::transport::{TcpTransport, UdpTransport};

/// The `omv.exceptions` module, imported once.
static EXCEPTIONS: GILOnceCell<Py<PyModule>> = GILOnceCell::new();

/// The exception class of `omv.exceptions` that an engine error becomes.
///
/// Errors after which the driver resynchronised the link (the retryable
/// ones) are also `ResyncException`s, as in the stock package, where every
/// failed request resyncs and raises `ResyncException`.
fn class_name(e: &Error) -> &'static str {
    let resynced = e.is_retryable();
    match e {
        Error::Timeout { .. }
        | Error::Nak {
            status: Status::TIMEOUT,
            ..
        } if resynced => "ResyncedTimeoutException",
        Error::Timeout { .. } => "TimeoutException",
        Error::Checksum { .. } if resynced => "ResyncedChecksumException",
        Error::Checksum { .. } => "ChecksumException",
        Error::Sequence { .. } if resynced => "ResyncedSequenceException",
        Error::Sequence { .. } => "SequenceException",
        // The stock `_resync` raises TimeoutException when SYNC fails.
        Error::ResyncFailed { .. } => "TimeoutException",
        // The operation's deadline passed while the link kept failing: a
        // timeout, as the stock package reports a cam that stops answering.
        Error::DeadlineExceeded { .. } => "TimeoutException",
        // A read across a (soft) reboot: the session resynced, and reading
        // again gets the new content (`retry_if_failed` does).
        Error::Rebooted { .. } => "ResyncException",
        Error::Io { .. } => "PortException",
        Error::InvalidArgument(_) => "InvalidArgumentException",
        _ if resynced => "ResyncException",
        _ => "OMVException",
    }
}

/// Converts an engine error into the matching `omv.exceptions` exception,
/// with the engine's message (which names the request that failed).
fn to_pyerr(py: Python<'_>, e: Error) -> PyErr {
    let message = e.to_string();
    let class = EXCEPTIONS
        .get_or_try_init(py, || py.import("omv.exceptions").map(|m| m.unbind()))
        .and_then(|m| m.bind(py).getattr(class_name(&e)))
        .and_then(|c| c.downcast_into::<PyType>().map_err(PyErr::from));
    match class {
        Ok(c) => PyErr::from_type(c, message),
        // Only when omv.exceptions cannot be imported (a broken install).
        Err(import_error) => import_error,
    }
}

/// An `omv.InvalidArgumentException` (an `OMVException` and a `ValueError`).
fn invalid(message: impl Into<String>) -> PyErr {
    Python::with_gil(|py| to_pyerr(py, Error::InvalidArgument(message.into())))
}

/// How [`Engine::connect`] reaches the cam.
enum Target {
    /// `Camera::new`: the camera reopens its serial port itself.
    Serial,
    /// A TCP address: a new [`TcpTransport`] (and camera) at every connect.
    Tcp(String),
    /// A UDP address: a new transport (and camera) at every connect.
    Udp(String),
}

/// One cam connection: an `omv_blocking::Camera` and how to reach it.
#[pyclass(module = "omv._omv", frozen)]
struct Engine {
    cam: Mutex<Camera>,
    target: Target,
}

/// Builds the driver configuration from the stock constructor arguments.
#[allow(clippy::too_many_arguments)]
fn config(
    port: &str,
    baudrate: u32,
    crc: bool,
    seq: bool,
    ack: bool,
    events: bool,
    timeout: f64,
    max_retry: u32,
    max_payload: u32,
    drop_rate: f64,
    seed: u64,
) -> PyResult<CameraConfig> {
    let timeout = Duration::try_from_secs_f64(timeout)
        .ok()
        .filter(|t| !t.is_zero())
        .ok_or_else(|| {
            invalid(format!(
                "timeout must be a positive number of seconds, got {timeout}"
            ))
        })?;
    let max_retry = u8::try_from(max_retry)
        .map_err(|_| invalid(format!("max_retry must be 1..=255, got {max_retry}")))?;
    // The cam clips max_payload to its own maximum anyway.
    let max_payload = u16::try_from(max_payload).unwrap_or(u16::MAX);
    let cfg = CameraConfig::new(port)
        .baudrate(baudrate)
        .crc(crc)
        .seq(seq)
        .ack(ack)
        .events(events)
        .timeout(timeout)
        .max_retry(max_retry)
        .max_payload(max_payload)
        .drop_rate(drop_rate)
        .seed(seed);
    cfg.validate()
        .map_err(|e| Python::with_gil(|py| to_pyerr(py, e)))?;
    Ok(cfg)
}

impl Engine {
    fn lock(&self) -> MutexGuard<'_, Camera> {
        // A panic inside the driver cannot leave it half-updated in a way
        // that matters more than refusing every later call would.
        self.cam.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the camera with the GIL released. Python's signal
    /// handlers are polled meanwhile (every `CANCEL_POLL`, with the GIL
    /// taken back for the check): Ctrl-C cancels the operation and its
    /// `KeyboardInterrupt` is what the call raises, whatever the cam does.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Camera) -> omv_blocking::Result<T> + Send,
    ) -> PyResult<T> {
        let interrupt: Arc<Mutex<Option<PyErr>>> = Arc::default();
        let slot = interrupt.clone();
        let result = py.allow_threads(|| {
            let mut cam = self.lock();
            cam.set_cancel_check(move || {
                Python::with_gil(|py| match py.check_signals() {
                    Ok(()) => false,
                    Err(e) => {
                        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        true
                    }
                })
            });
            let r = f(&mut cam);
            cam.clear_cancel_flag();
            r
        });
        let raised = interrupt.lock().unwrap_or_else(|p| p.into_inner()).take();
        match (result, raised) {
            (Ok(v), None) => Ok(v),
            // The handler's exception (KeyboardInterrupt), the call's
            // result notwithstanding: Python would raise it next anyway.
            (_, Some(e)) => Err(e),
            (Err(e), None) => Err(to_pyerr(py, e)),
        }
    }
}

fn channel(id: i64) -> PyResult<ChannelId> {
    u8::try_from(id)
        .map(ChannelId)
        .map_err(|_| invalid(format!("channel id must be 0..=255, got {id}")))
}

#[pymethods]
impl Engine {
    /// A connection (not yet open) to the serial `port`, the TCP address
    /// `tcp` or the UDP address `udp` (exactly one).
    #[new]
    #[pyo3(signature = (port, tcp, udp, baudrate, crc, seq, ack, events, timeout, max_retry,
                        max_payload, drop_rate, seed))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        port: Option<String>,
        tcp: Option<String>,
        udp: Option<String>,
        baudrate: u32,
        crc: bool,
        seq: bool,
        ack: bool,
        events: bool,
        timeout: f64,
        max_retry: u32,
        max_payload: u32,
        drop_rate: f64,
        seed: u64,
    ) -> PyResult<Engine> {
        let name = match (&port, &tcp, &udp) {
            (Some(p), None, None) => p.clone(),
            (None, Some(a), None) | (None, None, Some(a)) => a.clone(),
            _ => return Err(invalid("give exactly one of port, tcp= and udp=")),
        };
        let cfg = config(
            &name,
            baudrate,
            crc,
            seq,
            ack,
            events,
            timeout,
            max_retry,
            max_payload,
            drop_rate,
            seed,
        )?;
        // For TCP and UDP, a placeholder replaced by a camera on a fresh
        // transport at every connect.
        let target = match (tcp, udp) {
            (Some(addr), _) => Target::Tcp(addr),
            (_, Some(addr)) => Target::Udp(addr),
            _ => Target::Serial,
        };
        let cam = Camera::new(cfg);
        Ok(Engine {
            cam: Mutex::new(cam),
            target,
        })
    }

    /// Opens the port and runs the handshake (caches channels, version,
    /// system information).
    fn connect(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |cam| {
            let io = |addr: &String| {
                let addr = addr.clone();
                move |source| Error::Io { port: addr, source }
            };
            match &self.target {
                Target::Serial => {}
                Target::Tcp(addr) => {
                    let t = TcpTransport::connect(addr, cam.config().timeout).map_err(io(addr))?;
                    *cam = Camera::with_transport(t, cam.config().clone());
                }
                Target::Udp(addr) => {
                    let t = UdpTransport::connect(addr).map_err(io(addr))?;
                    *cam = Camera::with_transport(t, cam.config().clone());
                }
            }
            cam.connect()
        })
    }

    /// Closes the port.
    fn disconnect(&self, py: Python<'_>) {
        py.allow_threads(|| self.lock().disconnect())
    }

    /// True while the port is open and the link synchronised.
    fn is_connected(&self, py: Python<'_>) -> bool {
        py.allow_threads(|| self.lock().is_connected())
    }

    /// SYS_RESET; the port is closed.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |c| c.reset())
    }

    /// SYS_BOOT; the port is closed.
    fn boot(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |c| c.boot())
    }

    /// GET_CAPS / SET_CAPS again.
    fn update_capabilities(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |c| c.update_capabilities())
    }

    /// The negotiated capabilities: (crc, seq, ack, events, max_payload).
    fn caps(&self, py: Python<'_>) -> (bool, bool, bool, bool, u16) {
        let c = py.allow_threads(|| self.lock().caps());
        (
            c.flags.crc(),
            c.flags.seq(),
            c.flags.ack(),
            c.flags.events(),
            c.max_payload,
        )
    }

    /// The full handshake again.
    fn resync(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |c| c.resync())
    }

    /// Takes in events already sent, without waiting; how many arrived.
    fn poll_events(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(py, |c| c.poll_events())
    }

    /// Waits up to `timeout` seconds for an event; how many arrived.
    fn wait_events(&self, py: Python<'_>, timeout: f64) -> PyResult<u64> {
        let t = Duration::try_from_secs_f64(timeout)
            .map_err(|_| invalid(format!("bad timeout {timeout}")))?;
        self.with(py, |c| c.wait_events(t))
    }

    /// The events received since the last call, oldest first, as
    /// (channel id, event id).
    fn take_events(&self, py: Python<'_>) -> Vec<(u8, u16)> {
        py.allow_threads(|| {
            self.lock()
                .take_events()
                .into_iter()
                .map(|e| (e.raw.channel.0, e.raw.event))
                .collect()
        })
    }

    /// True when a frame-ready event arrived since the last frame read.
    fn frame_ready(&self, py: Python<'_>) -> bool {
        py.allow_threads(|| self.lock().frame_ready())
    }

    /// Resyncs so far.
    fn resync_count(&self, py: Python<'_>) -> u64 {
        py.allow_threads(|| self.lock().resync_count())
    }

    fn exec(&self, py: Python<'_>, script: &str) -> PyResult<()> {
        self.with(py, |c| c.exec(script))
    }

    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |c| c.stop())
    }

    fn read_stdout(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.with(py, |c| c.read_stdout())
    }

    #[pyo3(signature = (enable, raw, resolution))]
    fn streaming(
        &self,
        py: Python<'_>,
        enable: bool,
        raw: bool,
        resolution: Option<(u32, u32)>,
    ) -> PyResult<()> {
        self.with(py, |c| c.streaming(enable, raw, resolution))
    }

    /// The waiting frame decoded to RGB888 as the stock dict, or None.
    /// A frame that cannot be decoded is logged and gives None, like the
    /// stock package.
    fn read_frame<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let got = self.with(py, |c| match c.read_frame() {
            Ok(f) => Ok(Ok(f)),
            Err(Error::Image(e)) => Ok(Err(e)),
            Err(e) => Err(e),
        })?;
        let frame = match got {
            Ok(None) => return Ok(None),
            Ok(Some(f)) => f,
            Err(e) => {
                log::error!("frame decode error: {e}");
                return Ok(None);
            }
        };
        let d = PyDict::new(py);
        d.set_item("width", frame.width)?;
        d.set_item("height", frame.height)?;
        d.set_item("format", frame.pixfmt.0)?;
        d.set_item("depth", frame.depth)?;
        d.set_item("data", PyBytes::new(py, &frame.rgb.pixels))?;
        d.set_item("raw_size", frame.raw_size)?;
        Ok(Some(d))
    }

    fn has_channel(&self, py: Python<'_>, name: &str) -> PyResult<bool> {
        self.with(py, |c| c.has_channel(name))
    }

    fn channel_size(&self, py: Python<'_>, name: &str) -> PyResult<u32> {
        self.with(py, |c| c.channel_size(name))
    }

    #[pyo3(signature = (name, size))]
    fn channel_read<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        size: Option<u32>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let data = self.with(py, |c| c.channel_read(name, size))?;
        Ok(data.map(|d| PyBytes::new(py, &d)))
    }

    fn channel_write(&self, py: Python<'_>, name: &str, data: &[u8]) -> PyResult<bool> {
        self.with(py, |c| c.channel_write(name, data))
    }

    /// Readiness by channel name.
    fn read_status(&self, py: Python<'_>) -> PyResult<Vec<(String, bool)>> {
        let s = self.with(py, |c| c.read_status())?;
        Ok(s.channels
            .into_iter()
            .map(|(e, ready)| (e.name, ready))
            .collect())
    }

    fn update_channels(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |c| c.update_channels())
    }

    /// The channel cache (refreshed first when a registration event
    /// arrived): (id, flags, name) per channel.
    fn channels(&self, py: Python<'_>) -> PyResult<Vec<(u8, u8, String)>> {
        self.with(py, |c| {
            Ok(c.channels()?
                .iter()
                .map(|e| (e.id.0, e.flags.0, e.name.clone()))
                .collect())
        })
    }

    fn channel_id(&self, py: Python<'_>, name: &str) -> PyResult<Option<u8>> {
        self.with(py, |c| Ok(c.get_channel_id(name)?.map(|id| id.0)))
    }

    fn channel_name(&self, py: Python<'_>, id: i64) -> PyResult<Option<String>> {
        let id = channel(id)?;
        self.with(py, |c| c.get_channel_name(id))
    }

    /// ((protocol), (bootloader), (firmware)) triples.
    #[allow(clippy::type_complexity)]
    fn version(&self, py: Python<'_>) -> PyResult<((u8, u8, u8), (u8, u8, u8), (u8, u8, u8))> {
        let v = self.with(py, |c| c.version())?;
        let t = |a: [u8; 3]| (a[0], a[1], a[2]);
        Ok((t(v.protocol), t(v.bootloader), t(v.firmware)))
    }

    /// The stock `system_info()` dict.
    fn system_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.with(py, |c| c.system_info())?;
        let d = PyDict::new(py);
        d.set_item("cpu_id", s.cpu_id)?;
        d.set_item("device_id", PyTuple::new(py, s.device_id)?)?;
        d.set_item("usb_vid", s.usb_vid)?;
        d.set_item("usb_pid", s.usb_pid)?;
        d.set_item("chip_id", PyTuple::new(py, s.chip_id)?)?;
        for (k, v) in [
            ("gpu_present", s.gpu_present),
            ("npu_present", s.npu_present),
            ("isp_present", s.isp_present),
            ("venc_present", s.venc_present),
            ("jpeg_present", s.jpeg_present),
            ("dram_present", s.dram_present),
            ("crc_present", s.crc_present),
            ("pmu_present", s.pmu_present),
        ] {
            d.set_item(k, v)?;
        }
        d.set_item("pmu_eventcnt", s.pmu_eventcnt)?;
        for (k, v) in [
            ("wifi_present", s.wifi_present),
            ("bt_present", s.bt_present),
            ("sd_present", s.sd_present),
            ("eth_present", s.eth_present),
            ("usb_highspeed", s.usb_highspeed),
            ("multicore_present", s.multicore_present),
        ] {
            d.set_item(k, v)?;
        }
        d.set_item("flash_size_kb", s.flash_size_kb)?;
        d.set_item("ram_size_kb", s.ram_size_kb)?;
        d.set_item("framebuffer_size_kb", s.framebuffer_size_kb)?;
        d.set_item("stream_buffer_size_kb", s.stream_buffer_size_kb)?;
        Ok(d)
    }

    /// The formatted system information block, one line per item.
    fn system_info_lines(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.with(py, |c| c.system_info_lines())
    }

    /// The host-side counters: the stock keys first, then ours.
    fn host_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (s, policy) = py.allow_threads(|| {
            let c = self.lock();
            (c.host_stats(), c.session_stats())
        });
        let d = PyDict::new(py);
        for (k, v) in [
            ("sent", s.sent),
            ("received", s.received),
            ("checksum", s.checksum),
            ("sequence", s.sequence),
            ("header_checksum", s.header_checksum),
            ("duplicates", s.duplicates),
            ("events", s.events),
            ("timeouts", s.timeouts),
            ("unexpected", s.unexpected),
            ("simulated_drops", policy.simulated_drops),
        ] {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// The cam-side counters (PROTO_STATS) with the stock keys.
    fn device_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.with(py, |c| c.device_stats())?;
        let d = PyDict::new(py);
        for (k, v) in [
            ("sent", s.sent),
            ("received", s.received),
            ("checksum", s.checksum_errors),
            ("sequence", s.sequence_errors),
            ("retransmit", s.retransmits),
            ("transport", s.transport_errors),
            ("sent_events", s.sent_events),
            ("max_ack_queue_depth", s.reserved),
        ] {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    fn profiler_mode(&self, py: Python<'_>, exclusive: bool) -> PyResult<()> {
        self.with(py, |c| c.profiler_mode(exclusive))
    }

    #[pyo3(signature = (events))]
    fn profiler_reset(&self, py: Python<'_>, events: Option<Vec<u32>>) -> PyResult<()> {
        self.with(py, |c| c.profiler_reset(events.as_deref()))
    }

    fn profiler_event(&self, py: Python<'_>, counter: u32, event: u32) -> PyResult<()> {
        self.with(py, |c| c.profiler_event(counter, event))
    }

    /// The stock record dicts, or None.
    fn read_profile<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        let Some(entries) = self.with(py, |c| c.read_profile(None))? else {
            return Ok(None);
        };
        let out = PyList::empty(py);
        for e in entries {
            let r = e.record;
            let d = PyDict::new(py);
            d.set_item("address", r.address)?;
            d.set_item("caller", r.caller)?;
            d.set_item("call_count", r.call_count)?;
            d.set_item("min_ticks", r.min_ticks)?;
            d.set_item("max_ticks", r.max_ticks)?;
            d.set_item("total_ticks", r.total_ticks)?;
            d.set_item("total_cycles", r.total_cycles)?;
            d.set_item("events", PyTuple::new(py, r.events)?)?;
            out.append(d)?;
        }
        Ok(Some(out))
    }

    // ------------------------------------------------------------------
    // The by-id primitives (no retry: a failure resyncs and raises)
    // ------------------------------------------------------------------

    /// CHANNEL_LOCK: False when the cam answers BUSY.
    fn channel_lock(&self, py: Python<'_>, id: i64) -> PyResult<bool> {
        let id = channel(id)?;
        self.with(py, |c| c.channel_lock(id))
    }

    /// CHANNEL_UNLOCK: False when the cam answers BUSY.
    fn channel_unlock(&self, py: Python<'_>, id: i64) -> PyResult<bool> {
        let id = channel(id)?;
        self.with(py, |c| c.channel_unlock(id))
    }

    fn channel_shape(&self, py: Python<'_>, id: i64) -> PyResult<Vec<u32>> {
        let id = channel(id)?;
        self.with(py, |c| Ok(c.channel_shape(id)?.dims().to_vec()))
    }

    fn channel_size_at(&self, py: Python<'_>, id: i64) -> PyResult<u32> {
        let id = channel(id)?;
        self.with(py, |c| c.channel_size_at(id))
    }

    fn channel_read_at<'py>(
        &self,
        py: Python<'py>,
        id: i64,
        offset: u32,
        length: u32,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let id = channel(id)?;
        let d = self.with(py, |c| c.channel_read_at(id, offset, length))?;
        Ok(PyBytes::new(py, &d))
    }

    fn channel_write_at(&self, py: Python<'_>, id: i64, offset: u32, data: &[u8]) -> PyResult<()> {
        let id = channel(id)?;
        self.with(py, |c| c.channel_write_at(id, offset, data))
    }

    /// CHANNEL_IOCTL with raw argument bytes: the answer's payload (empty
    /// for a plain ACK); None when the cam answers BUSY.
    fn channel_ioctl<'py>(
        &self,
        py: Python<'py>,
        id: i64,
        cmd: u32,
        args: &[u8],
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let id = channel(id)?;
        let r = self.with(py, |c| match c.channel_ioctl(id, cmd, args) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.is_nak(Status::BUSY) => Ok(None),
            Err(e) => Err(e),
        })?;
        Ok(r.map(|d| PyBytes::new(py, &d)))
    }

    /// CHANNEL_LIST as sent: (id, flags, name) per channel.
    fn channel_list(&self, py: Python<'_>) -> PyResult<Vec<(u8, u8, String)>> {
        self.with(py, |c| {
            Ok(c.channel_list()?
                .into_iter()
                .map(|e| (e.id.0, e.flags.0, e.name))
                .collect())
        })
    }

    /// A raw request: None for SYS_RESET / SYS_BOOT (no answer), True for
    /// an answer without data, False for NAK BUSY, else the data.
    fn request(
        &self,
        py: Python<'_>,
        opcode: i64,
        channel_id: i64,
        data: &[u8],
    ) -> PyResult<PyObject> {
        let op = u8::try_from(opcode)
            .map(Opcode)
            .map_err(|_| invalid(format!("opcode must be 0..=255, got {opcode}")))?;
        let id = channel(channel_id)?;
        let r = self.with(py, |c| match c.request(op, id, data) {
            Ok(r) => Ok(Some(r.map(|reply| reply.into_bytes()))),
            Err(e) if e.is_nak(Status::BUSY) => Ok(None),
            Err(e) => Err(e),
        })?;
        Ok(match r {
            None => false.into_pyobject(py)?.to_owned().into_any().unbind(),
            Some(None) => py.None(),
            Some(Some(d)) if d.is_empty() => true.into_pyobject(py)?.to_owned().into_any().unbind(),
            Some(Some(d)) => PyBytes::new(py, &d).into_any().unbind(),
        })
    }
}

/// omv-sim's simulated cam served on a loopback TCP port, on a thread of
/// this process, until closed or garbage-collected.
#[pyclass(module = "omv._omv", frozen)]
struct SimulatedCam {
    sim: Mutex<Option<EmbeddedSim>>,
    addr: String,
}

#[pymethods]
impl SimulatedCam {
    /// Starts the simulated cam: `channels` are (name, size) byte-buffer
    /// channels (byte i = i % 251), `python` the interpreter that runs
    /// scripts; the fault rates apply to what the cam sends
    /// (`drop_rate`, `corrupt_rate`) and receives (`rx_drop_rate`), with
    /// `seed`; `latency` in seconds is added to every packet it sends;
    /// `free_running_frames` streams frames without a script taking
    /// snapshots.
    #[new]
    #[pyo3(signature = (*, channels=Vec::new(), board=None, profiler=false, resolution=None,
                        fps=None, python=None, seed=1, drop_rate=0.0, rx_drop_rate=0.0,
                        corrupt_rate=0.0, latency=0.0, free_running_frames=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        channels: Vec<(String, usize)>,
        board: Option<String>,
        profiler: bool,
        resolution: Option<(u32, u32)>,
        fps: Option<f32>,
        python: Option<String>,
        seed: u64,
        drop_rate: f64,
        rx_drop_rate: f64,
        corrupt_rate: f64,
        latency: f64,
        free_running_frames: bool,
    ) -> PyResult<SimulatedCam> {
        let mut cfg = SimConfig::new()
            .profiler(profiler)
            .free_running_frames(free_running_frames);
        if let Some(b) = board {
            let b: Board = b
                .parse()
                .map_err(|e: omv_sim::board::UnknownBoard| PyValueError::new_err(e.to_string()))?;
            cfg = cfg.board(b);
        }
        for (name, size) in &channels {
            cfg = cfg.channel(name, *size);
        }
        if let Some((w, h)) = resolution {
            cfg = cfg.resolution(w, h);
        }
        if let Some(f) = fps {
            cfg = cfg.fps(f);
        }
        if let Some(p) = python {
            cfg = cfg.python(p);
        }
        let latency = Duration::try_from_secs_f64(latency)
            .map_err(|_| PyValueError::new_err(format!("bad latency {latency}")))?;
        // Field by field: FaultConfig may gain fields (or #[non_exhaustive]).
        #[allow(clippy::field_reassign_with_default)]
        let faults = {
            let mut f = FaultConfig::default();
            f.drop_rate = drop_rate;
            f.rx_drop_rate = rx_drop_rate;
            f.corrupt_rate = corrupt_rate;
            f.latency = latency;
            f.seed = seed;
            f
        };
        cfg = cfg.faults(faults);
        let sim = py
            .allow_threads(|| EmbeddedSim::start_tcp(cfg, |_| {}, "127.0.0.1:0"))
            .map_err(|e| match e {
                omv_blocking::sim::StartError::Build(e) => PyValueError::new_err(e.to_string()),
                e => PyOSError::new_err(e.to_string()),
            })?;
        let addr = sim.tcp_addr().unwrap_or_default().to_string();
        Ok(SimulatedCam {
            sim: Mutex::new(Some(sim)),
            addr,
        })
    }

    /// The loopback address the cam listens on (`127.0.0.1:PORT`).
    #[getter]
    fn address(&self) -> String {
        self.addr.clone()
    }

    /// True until closed.
    #[getter]
    fn running(&self) -> bool {
        self.sim.lock().map(|s| s.is_some()).unwrap_or(false)
    }

    /// Stops the cam's thread (idempotent).
    fn close(&self, py: Python<'_>) {
        let sim = self.sim.lock().ok().and_then(|mut s| s.take());
        // Joining the thread must not hold the GIL.
        py.allow_threads(move || drop(sim));
    }
}

/// pyo3-log's cache of Python logger levels.
static LOG_RESET: std::sync::OnceLock<pyo3_log::ResetHandle> = std::sync::OnceLock::new();

/// Drops the cached Python logger levels, so that a `logging` level set
/// after the first message takes effect.
#[pyfunction]
fn reset_log_cache() {
    if let Some(h) = LOG_RESET.get() {
        h.reset();
    }
}

/// The native module.
#[pymodule]
fn _omv(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The simulated cam's own thread logs too; it must never wait for the
    // GIL (it is joined with the GIL held when a SimulatedCam is freed).
    let handle = pyo3_log::Logger::new(m.py(), pyo3_log::Caching::LoggersAndLevels)?
        .filter_target("omv_sim".to_string(), log::LevelFilter::Off)
        .filter_target("omv_blocking::sim".to_string(), log::LevelFilter::Off)
        .install()
        .ok();
    if let Some(h) = handle {
        let _ = LOG_RESET.set(h);
    }
    m.add_class::<Engine>()?;
    m.add_class::<SimulatedCam>()?;
    m.add_function(wrap_pyfunction!(reset_log_cache, m)?)?;
    Ok(())
}
