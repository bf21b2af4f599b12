//! The cam's scripting runtime: the Python modules a script imports on a
//! cam (`protocol`, `csi`, `image`, `machine`, `omv`, `micropython`,
//! `cbor2`, MicroPython's `time` and `gc` extras), and the bridge that makes
//! the script's channels and frames real.
//!
//! The modules live in `sim-device/runtime/` and are embedded in the
//! binary; [`Bridge::new`] writes them into a fresh temporary directory
//! that the [`PythonRunner`](crate::script::PythonRunner) puts first on the
//! script's `PYTHONPATH`. The script connects back over a Unix socket in
//! that directory (`OMV_SIM_BRIDGE`) and speaks a small framed protocol of
//! ours (see `runtime/_omvsim.py`): the cam calls backend methods, the
//! script asks for channels, events, protocol settings and frames.
//!
//! The cam loop never waits for the script: a host request on a script
//! channel sends a call and answers [`ChannelError::Pending`] until the
//! answer arrives, the call times out ([`DEFAULT_CALL_TIMEOUT`]: NAK
//! TIMEOUT, logged) or the script goes away (NAK FAILED). A real cam would
//! stall instead; this is a deliberate difference. Snapshots and flushed
//! images are served on the bridge's own thread and land in a
//! [`FrameBuffer`] the stream channel takes frames from.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use omv_proto::backend::{ChannelBackend, ChannelError, ChannelEventOut, Ops};
use omv_proto::frame::PixFormat;
use omv_proto::shape::Shape;
use omv_proto::{Duration, Instant};

use crate::image::{self, RgbImage};
use crate::source::{Frame, FrameSource};

/// How long a script backend may take to answer a host request.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest read piece of a script channel (as the firmware's callback reads).
pub const SCRIPT_READ_PIECE: u16 = 512;
/// Largest bridge frame accepted from a script: the largest RGB565 frame
/// size of `csi` (2592x1944, 10 MB) fits.
pub const MAX_BRIDGE_FRAME: usize = 16 << 20;
/// Script requests waiting for the cam loop before more are refused.
const MAX_REQUESTS: usize = 256;
/// Frames queued towards the script before calls fail.
const WRITE_QUEUE: usize = 1024;
/// How often a pending call is checked for its answer: often at first (a
/// backend typically answers within a fraction of a millisecond), then
/// every millisecond, so a slow backend does not spin the cam loop.
const CALL_POLL_FAST: Duration = Duration::from_micros(100);
const CALL_POLL: Duration = Duration::from_millis(1);
/// How long a call is checked at [`CALL_POLL_FAST`].
const CALL_FAST_PERIOD: Duration = Duration::from_millis(3);

/// The embedded runtime modules: (path under the runtime dir, text).
pub const MODULES: &[(&str, &str)] = &[
    ("_omvsim.py", include_str!("../runtime/_omvsim.py")),
    (
        "sitecustomize.py",
        include_str!("../runtime/sitecustomize.py"),
    ),
    (
        "protocol/__init__.py",
        include_str!("../runtime/protocol/__init__.py"),
    ),
    ("uprotocol.py", include_str!("../runtime/uprotocol.py")),
    ("cbor2.py", include_str!("../runtime/cbor2.py")),
    ("micropython.py", include_str!("../runtime/micropython.py")),
    ("machine.py", include_str!("../runtime/machine.py")),
    ("omv.py", include_str!("../runtime/omv.py")),
    ("image.py", include_str!("../runtime/image.py")),
    ("csi.py", include_str!("../runtime/csi.py")),
    ("sensor.py", include_str!("../runtime/sensor.py")),
    ("utime.py", include_str!("../runtime/utime.py")),
];

// Bridge message kinds (runtime/_omvsim.py).
const K_REGISTER: u8 = 1;
const K_EVENT: u8 = 2;
const K_INIT: u8 = 3;
const K_ACTIVE: u8 = 4;
const K_SNAPSHOT: u8 = 5;
const K_FLUSH: u8 = 6;
const K_JPEG: u8 = 7;
const K_CALL: u8 = 0x40;
const K_REPLY: u8 = 0x80;
const K_ANSWER: u8 = 0x81;

// Backend methods, by number and REGISTER mask bit.
const M_POLL: u8 = 0;
const M_LOCK: u8 = 1;
const M_UNLOCK: u8 = 2;
const M_SIZE: u8 = 3;
const M_SHAPE: u8 = 4;
const M_READ: u8 = 5;
const M_WRITE: u8 = 6;
const M_IOCTL: u8 = 7;
const M_READP: u8 = 8;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a script's backend method returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// It raised.
    Raised,
    /// `None`.
    None,
    /// A bool.
    Bool(bool),
    /// An int (clamped to i64).
    Int(i64),
    /// bytes, bytearray, memoryview or str (UTF-8).
    Bytes(Vec<u8>),
    /// A tuple of (up to 4) ints.
    Tuple(Vec<i64>),
    /// Anything else, with its truth value.
    Other(bool),
    /// The script ended before answering.
    Gone,
}

impl Answer {
    fn decode(b: &[u8]) -> Answer {
        let i64_at = |i: usize| {
            b.get(i..i + 8)
                .map(|s| i64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
        };
        match b.first() {
            Some(1) => Answer::None,
            Some(2) => Answer::Bool(b.get(1).is_some_and(|&v| v != 0)),
            Some(3) => i64_at(1).map_or(Answer::Raised, Answer::Int),
            Some(4) => Answer::Bytes(b[1..].to_vec()),
            Some(5) => {
                let n = usize::from(b.get(1).copied().unwrap_or(0)).min(4);
                Answer::Tuple((0..n).filter_map(|k| i64_at(2 + 8 * k)).collect())
            }
            Some(6) => Answer::Other(b.get(1).is_some_and(|&v| v != 0)),
            _ => Answer::Raised,
        }
    }

    fn truthy(&self) -> bool {
        match self {
            Answer::Bool(v) | Answer::Other(v) => *v,
            Answer::Int(v) => *v != 0,
            Answer::Bytes(v) => !v.is_empty(),
            Answer::Tuple(v) => !v.is_empty(),
            Answer::Raised | Answer::None | Answer::Gone => false,
        }
    }
}

/// A script request the cam loop must act on (it needs the endpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptRequest {
    /// `protocol.register`: name and the backend's methods (mask bits).
    Register {
        /// The (already cut) channel name.
        name: String,
        /// Bit `n` set: the backend has method `n` (`_omvsim.METHODS`).
        methods: u16,
    },
    /// `ProtocolChannel.send_event`.
    Event {
        /// The channel id.
        channel: u8,
        /// The event (0xFFFF: NOTIFY).
        event: u16,
        /// `wait_ack`.
        wait_ack: bool,
    },
    /// `protocol.init`.
    Init(InitConfig),
}

/// The arguments of `protocol.init`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitConfig {
    /// CRC on.
    pub crc: bool,
    /// Sequence numbers on.
    pub seq: bool,
    /// ACKs on.
    pub ack: bool,
    /// Events on.
    pub events: bool,
    /// Largest payload.
    pub max_payload: u32,
    /// Resends.
    pub rtx_retries: u32,
    /// First resend timeout.
    pub rtx_timeout_ms: u32,
    /// Shortest lock interval.
    pub lock_interval_ms: u32,
    /// Periodic protocol poll (not modelled: the simulated cam is always polled).
    pub poll_ms: u32,
}

/// A request with what is needed to answer it.
#[derive(Debug)]
pub struct PendingRequest {
    generation: u64,
    id: u32,
    /// What the script asked.
    pub request: ScriptRequest,
}

/// Stream settings the frame buffer encodes published frames for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSettings {
    /// The host streams (CTRL).
    pub streaming: bool,
    /// Raw (RGB565) instead of JPEG.
    pub raw: bool,
    /// RAW_CFG width.
    pub raw_width: u32,
    /// RAW_CFG height.
    pub raw_height: u32,
    /// The stream buffer's size.
    pub max_bytes: usize,
}

#[derive(Debug, Default)]
struct FbInner {
    settings: Option<FrameSettings>,
    latest: Option<Frame>,
    seq: u64,
}

/// The cam's frame buffer as the stream sees it: the latest frame a
/// script's snapshot or `img.flush()` published, encoded for the stream's
/// settings (JPEG, or the image's own pixel format scaled to RAW_CFG in raw
/// mode).
#[derive(Debug, Default)]
pub struct FrameBuffer {
    inner: Mutex<FbInner>,
}

/// An image a script published.
pub enum Published {
    /// Pixels.
    Image(RgbImage),
    /// Pixels in the script's format: little-endian RGB565 or grayscale
    /// (`pixfmt`), `width * height * bpp` bytes.
    Pixels {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// [`PixFormat::RGB565`] or [`PixFormat::GRAYSCALE`].
        pixfmt: PixFormat,
        /// The pixels.
        data: Vec<u8>,
    },
    /// Already JPEG-compressed bytes.
    Jpeg(Vec<u8>),
}

impl Published {
    /// The image as RGB pixels (JPEG decoded).
    pub fn to_rgb(&self) -> Result<RgbImage, image::ImageError> {
        match self {
            Published::Image(i) => Ok(i.clone()),
            Published::Jpeg(j) => image::decode_jpeg(j),
            Published::Pixels {
                width,
                height,
                pixfmt,
                data,
            } => {
                let mut rgb = Vec::with_capacity(data.len() * 3);
                if *pixfmt == PixFormat::GRAYSCALE {
                    for &g in data {
                        rgb.extend_from_slice(&[g, g, g]);
                    }
                } else {
                    for p in data.chunks_exact(2) {
                        rgb.extend_from_slice(&rgb565_to_rgb(u16::from_le_bytes([p[0], p[1]])));
                    }
                }
                RgbImage::from_rgb(*width, *height, rgb)
            }
        }
    }
}

fn rgb565_to_rgb(v: u16) -> [u8; 3] {
    let (r, g, b) = (
        u32::from((v >> 11) & 31),
        u32::from((v >> 5) & 63),
        u32::from(v & 31),
    );
    [
        ((r * 255 + 15) / 31) as u8,
        ((g * 255 + 31) / 63) as u8,
        ((b * 255 + 15) / 31) as u8,
    ]
}

/// Nearest-neighbour scaling of `bpp`-byte pixels.
fn scale_pixels(data: &[u8], w: u32, h: u32, bpp: usize, nw: u32, nh: u32) -> Vec<u8> {
    if (w, h) == (nw, nh) {
        return data.to_vec();
    }
    let mut out = Vec::with_capacity(nw as usize * nh as usize * bpp);
    for y in 0..nh {
        let sy = (u64::from(y) * u64::from(h) / u64::from(nh.max(1))) as usize;
        for x in 0..nw {
            let sx = (u64::from(x) * u64::from(w) / u64::from(nw.max(1))) as usize;
            let i = (sy * w as usize + sx) * bpp;
            match data.get(i..i + bpp) {
                Some(p) => out.extend_from_slice(p),
                None => out.extend(std::iter::repeat(0).take(bpp)),
            }
        }
    }
    out
}

impl FrameBuffer {
    /// An empty frame buffer.
    pub fn new() -> Arc<FrameBuffer> {
        Arc::new(FrameBuffer::default())
    }

    /// The stream channel tells what it wants.
    pub fn set_settings(&self, s: FrameSettings) {
        lock(&self.inner).settings = Some(s);
    }

    /// True while a host streams.
    pub fn streaming(&self) -> bool {
        lock(&self.inner).settings.is_some_and(|s| s.streaming)
    }

    /// Publishes an image (encoded here, outside the cam loop); ignored
    /// while nobody streams.
    pub fn publish(&self, img: Published) {
        let Some(s) = lock(&self.inner).settings.filter(|s| s.streaming) else {
            return;
        };
        let frame = match (img, s.raw) {
            (Published::Jpeg(data), false) if data.len() <= s.max_bytes => {
                image::jpeg_dimensions(&data).map(|(width, height)| Frame {
                    width,
                    height,
                    pixfmt: PixFormat::JPEG,
                    data,
                })
            }
            (
                Published::Pixels {
                    width,
                    height,
                    pixfmt,
                    data,
                },
                true,
            ) => {
                // Raw streaming keeps the frame buffer's pixel format.
                let bpp = if pixfmt == PixFormat::GRAYSCALE { 1 } else { 2 };
                let (w, h) = (s.raw_width, s.raw_height);
                image::check_size(w, h).map(|_| Frame {
                    width: w,
                    height: h,
                    pixfmt,
                    data: scale_pixels(&data, width, height, bpp, w, h),
                })
            }
            (Published::Image(i), raw) => encode(&i, raw, &s),
            (other, raw) => other.to_rgb().and_then(|i| encode(&i, raw, &s)),
        };
        match frame {
            Ok(f) => {
                let mut g = lock(&self.inner);
                g.latest = Some(f);
                g.seq = g.seq.wrapping_add(1);
            }
            Err(e) => log::warn!("csi: frame not streamed: {e}"),
        }
    }

    /// The latest frame if newer than `seen` (its number is returned too).
    pub fn take_newer(&self, seen: u64) -> Option<(u64, Frame)> {
        let mut g = lock(&self.inner);
        if g.seq == seen {
            return None;
        }
        let seq = g.seq;
        g.latest.take().map(|f| (seq, f))
    }
}

fn encode(img: &RgbImage, raw: bool, s: &FrameSettings) -> Result<Frame, image::ImageError> {
    if raw {
        let scaled = if (img.width(), img.height()) == (s.raw_width, s.raw_height) {
            img.clone()
        } else {
            img.resize_nearest(s.raw_width, s.raw_height)?
        };
        Ok(Frame::rgb565(&scaled))
    } else {
        Frame::jpeg(img, crate::source::DEFAULT_QUALITY, s.max_bytes)
    }
}

/// Facts about the cam the script's modules report (omv, machine, protocol).
#[derive(Clone, Debug, Default)]
pub struct RuntimeFacts {
    /// `OMV_SIM_*` variables (name without the prefix, value).
    pub vars: Vec<(String, String)>,
}

#[derive(Default)]
struct Conn {
    generation: u64,
    tx: Option<SyncSender<Vec<u8>>>,
}

struct Shared {
    conn: Mutex<Conn>,
    generation: AtomicU64,
    pending: Mutex<HashMap<u32, Option<Answer>>>,
    requests: Mutex<VecDeque<PendingRequest>>,
    next_id: AtomicU32,
    active: AtomicBool,
    events: AtomicBool,
    frames: Arc<FrameBuffer>,
    source: Mutex<Box<dyn FrameSource>>,
    snapshots: AtomicU64,
    shutdown: AtomicBool,
}

impl Shared {
    fn id(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::Relaxed).max(1)
    }

    fn send(&self, generation: u64, kind: u8, id: u32, body: &[u8]) -> bool {
        let g = lock(&self.conn);
        if g.generation != generation {
            return false;
        }
        let Some(tx) = &g.tx else { return false };
        let mut frame = Vec::with_capacity(9 + body.len());
        frame.extend_from_slice(&(5 + body.len() as u32).to_le_bytes());
        frame.push(kind);
        frame.extend_from_slice(&id.to_le_bytes());
        frame.extend_from_slice(body);
        match tx.try_send(frame) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                log::warn!("script: the script does not take its calls; call dropped");
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    fn connected(&self, generation: u64) -> bool {
        let g = lock(&self.conn);
        g.generation == generation && g.tx.is_some()
    }
}

/// The cam's end of the bridge: the runtime directory, the socket and the
/// threads serving it. Dropping it stops the threads and removes the
/// directory.
pub struct Bridge {
    shared: Arc<Shared>,
    dir: PathBuf,
    socket: PathBuf,
    facts: RuntimeFacts,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge").field("dir", &self.dir).finish()
    }
}

/// Why the runtime could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// Writing the runtime modules failed.
    #[error("cannot write the script runtime into {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The bridge socket could not be opened.
    #[error("cannot open the script bridge socket {path}: {source}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn fresh_dir() -> Result<PathBuf, RuntimeError> {
    static N: AtomicU32 = AtomicU32::new(0);
    let base = std::env::temp_dir();
    loop {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("omv-sim-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 10_000 => continue,
            Err(source) => return Err(RuntimeError::Write { path: dir, source }),
        }
    }
}

/// Writes the runtime modules into `dir`.
pub fn write_modules(dir: &Path) -> Result<(), RuntimeError> {
    for (rel, text) in MODULES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| RuntimeError::Write {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, text).map_err(|source| RuntimeError::Write { path, source })?;
    }
    Ok(())
}

impl Bridge {
    /// Writes the runtime into a new temporary directory and listens on its
    /// socket. `source` makes the snapshots' pixels; `frames` receives what
    /// the stream sends.
    #[cfg(unix)]
    pub fn new(
        source: Box<dyn FrameSource>,
        frames: Arc<FrameBuffer>,
        facts: RuntimeFacts,
    ) -> Result<Bridge, RuntimeError> {
        let dir = fresh_dir()?;
        write_modules(&dir)?;
        let socket = dir.join("bridge.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).map_err(|source| {
            RuntimeError::Socket {
                path: socket.clone(),
                source,
            }
        })?;
        let shared = Arc::new(Shared {
            conn: Mutex::new(Conn::default()),
            generation: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            requests: Mutex::new(VecDeque::new()),
            next_id: AtomicU32::new(1),
            active: AtomicBool::new(false),
            events: AtomicBool::new(false),
            frames,
            source: Mutex::new(source),
            snapshots: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
        });
        let sh = shared.clone();
        thread::Builder::new()
            .name("sim-bridge-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if sh.shutdown.load(Ordering::SeqCst) {
                        break;
                    }
                    match stream {
                        Ok(s) => connect(&sh, s),
                        Err(e) => log::warn!("script bridge: accept failed: {e}"),
                    }
                }
            })
            .map_err(|source| RuntimeError::Socket {
                path: socket.clone(),
                source,
            })?;
        Ok(Bridge {
            shared,
            dir,
            socket,
            facts,
        })
    }

    /// Sets the facts the script's modules report.
    pub fn with_facts(mut self, facts: RuntimeFacts) -> Self {
        self.facts = facts;
        self
    }

    /// The directory holding the runtime modules (first on the script's path).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The environment a script needs: `PYTHONPATH`, the socket and facts.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut v = vec![
            (
                "OMV_SIM_BRIDGE".to_string(),
                self.socket.display().to_string(),
            ),
            ("PYTHONPATH".to_string(), self.dir.display().to_string()),
        ];
        for (k, val) in &self.facts.vars {
            v.push((format!("OMV_SIM_{k}"), val.clone()));
        }
        v
    }

    /// Takes the requests the cam loop must act on.
    pub fn take_requests(&self) -> Vec<PendingRequest> {
        lock(&self.shared.requests).drain(..).collect()
    }

    /// True when requests wait for the cam loop.
    pub fn has_requests(&self) -> bool {
        !lock(&self.shared.requests).is_empty()
    }

    /// Answers a request.
    pub fn reply(&self, req: &PendingRequest, body: &[u8]) {
        self.shared.send(req.generation, K_REPLY, req.id, body);
    }

    /// Tells the bridge whether a host is connected and events are on
    /// (answered on the bridge thread: `is_active`, `send_event`).
    pub fn set_status(&self, active: bool, events: bool) {
        self.shared.active.store(active, Ordering::SeqCst);
        self.shared.events.store(events, Ordering::SeqCst);
    }

    /// A backend for a channel `protocol.register` made.
    pub fn channel(
        &self,
        req: &PendingRequest,
        methods: u16,
        channel: u8,
        timeout: Duration,
    ) -> ScriptChannel {
        ScriptChannel {
            shared: self.shared.clone(),
            generation: req.generation,
            channel,
            methods,
            timeout,
            call: None,
            poll_call: None,
            poll_cache: false,
            last_now: Instant::ZERO,
        }
    }

    /// Snapshots served so far.
    pub fn snapshots(&self) -> u64 {
        self.shared.snapshots.load(Ordering::Relaxed)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        #[cfg(unix)]
        let _ = std::os::unix::net::UnixStream::connect(&self.socket);
        if let Some(tx) = lock(&self.shared.conn).tx.take() {
            drop(tx);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(unix)]
fn connect(sh: &Arc<Shared>, stream: std::os::unix::net::UnixStream) {
    let generation = sh.generation.fetch_add(1, Ordering::SeqCst) + 1;
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let (tx, rx) = sync_channel::<Vec<u8>>(WRITE_QUEUE);
    {
        let mut g = lock(&sh.conn);
        g.generation = generation;
        g.tx = Some(tx);
    }
    let _ = thread::Builder::new()
        .name("sim-bridge-write".into())
        .spawn(move || {
            for frame in rx {
                if writer.write_all(&frame).is_err() {
                    break;
                }
            }
            let _ = writer.shutdown(std::net::Shutdown::Both);
        });
    let sh = sh.clone();
    let _ = thread::Builder::new()
        .name("sim-bridge-read".into())
        .spawn(move || {
            let mut stream = stream;
            while let Ok(Some((kind, id, body))) = read_frame(&mut stream) {
                handle(&sh, generation, kind, id, body);
            }
            let mut g = lock(&sh.conn);
            if g.generation == generation {
                g.tx = None;
            }
            drop(g);
            for v in lock(&sh.pending).values_mut() {
                v.get_or_insert(Answer::Gone);
            }
        });
}

fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, u32, Vec<u8>)>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if !(5..=MAX_BRIDGE_FRAME).contains(&len) {
        log::warn!("script bridge: bad frame length {len}; closing");
        return Ok(None);
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let kind = body[0];
    let id = u32::from_le_bytes([body[1], body[2], body[3], body[4]]);
    body.drain(..5);
    Ok(Some((kind, id, body)))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    b.get(i..i + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn handle(sh: &Shared, generation: u64, kind: u8, id: u32, body: Vec<u8>) {
    let queue = |request: ScriptRequest| {
        let mut q = lock(&sh.requests);
        if q.len() >= MAX_REQUESTS {
            drop(q);
            log::warn!("script bridge: {MAX_REQUESTS} requests wait for the cam; refusing more");
            let refused: &[u8] = match request {
                ScriptRequest::Register { .. } => &[0xff; 4],
                _ => &[1],
            };
            sh.send(generation, K_REPLY, id, refused);
            return;
        }
        q.push_back(PendingRequest {
            generation,
            id,
            request,
        })
    };
    match kind {
        K_ANSWER => {
            if let Some(slot) = lock(&sh.pending).get_mut(&id) {
                *slot = Some(Answer::decode(&body));
            }
        }
        K_REGISTER if body.len() >= 2 => queue(ScriptRequest::Register {
            methods: u16::from_le_bytes([body[0], body[1]]),
            name: String::from_utf8_lossy(&body[2..]).into_owned(),
        }),
        K_EVENT if body.len() >= 4 => {
            let channel = body[0];
            let event = u16::from_le_bytes([body[1], body[2]]);
            let wait_ack = body[3] != 0;
            if !sh.events.load(Ordering::SeqCst) || !sh.active.load(Ordering::SeqCst) {
                sh.send(generation, K_REPLY, id, &[1]);
            } else {
                queue(ScriptRequest::Event {
                    channel,
                    event,
                    wait_ack,
                });
            }
        }
        K_INIT if body.len() >= 24 => {
            let f = |i| u32_at(&body, i).unwrap_or(0);
            queue(ScriptRequest::Init(InitConfig {
                crc: body[0] != 0,
                seq: body[1] != 0,
                ack: body[2] != 0,
                events: body[3] != 0,
                max_payload: f(4),
                rtx_retries: f(8),
                rtx_timeout_ms: f(12),
                lock_interval_ms: f(16),
                poll_ms: f(20),
            }))
        }
        K_ACTIVE => {
            let a = sh.active.load(Ordering::SeqCst);
            sh.send(generation, K_REPLY, id, &[u8::from(a)]);
        }
        K_SNAPSHOT => {
            let reply = snapshot(sh, &body).unwrap_or_else(|e| {
                log::warn!("csi: snapshot failed: {e}");
                Vec::new()
            });
            sh.send(generation, K_REPLY, id, &reply);
        }
        K_FLUSH => {
            if let Some(img) = decode_image(&body) {
                sh.frames.publish(img);
            }
            sh.send(generation, K_REPLY, id, &[0]);
        }
        K_JPEG if body.len() >= 10 => {
            let quality = body[9].clamp(1, 100);
            let mut img = body[..9].to_vec();
            img.extend_from_slice(&body[10..]);
            let out = match decode_image(&img) {
                Some(Published::Jpeg(j)) => j,
                Some(p) => p
                    .to_rgb()
                    .and_then(|i| i.encode_jpeg(quality))
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            sh.send(generation, K_REPLY, id, &out);
        }
        _ => log::warn!("script bridge: unknown or short message kind {kind}"),
    }
}

/// `w u32, h u32, code u8, pixels`: 0 RGB565 LE, 1 grayscale, 2 JPEG.
fn decode_image(b: &[u8]) -> Option<Published> {
    let (w, h) = (u32_at(b, 0)?, u32_at(b, 4)?);
    let code = *b.get(8)?;
    let px = b.get(9..)?;
    if code == 2 {
        return Some(Published::Jpeg(px.to_vec()));
    }
    let n = image::check_size(w, h).ok()?;
    let bpp = if code == 0 { 2 } else { 1 };
    if code > 1 || px.len() != n * bpp {
        log::warn!(
            "script bridge: an image of {} bytes is not {w}x{h}",
            px.len()
        );
        return None;
    }
    Some(Published::Pixels {
        width: w,
        height: h,
        pixfmt: if code == 0 {
            PixFormat::RGB565
        } else {
            PixFormat::GRAYSCALE
        },
        data: px.to_vec(),
    })
}

/// `w, h, code, hmirror, vflip, update`, then optionally the frame
/// buffer's current image (`w, h, code, pixels`: the previous snapshot with
/// what the script drew on it). The frame buffer's image is published
/// first, as a cam streams its frame buffer when the next snapshot starts;
/// then the new frame is made. Answers whether a host streams (u8), then
/// the new frame's pixels in the format asked.
fn snapshot(sh: &Shared, b: &[u8]) -> Result<Vec<u8>, image::ImageError> {
    let bad = || image::ImageError("malformed snapshot request".into());
    let (w, h) = (u32_at(b, 0).ok_or_else(bad)?, u32_at(b, 4).ok_or_else(bad)?);
    let code = *b.get(8).ok_or_else(bad)?;
    let (hmirror, vflip) = (b.get(9) == Some(&1), b.get(10) == Some(&1));
    let update = b.get(11) != Some(&0);
    if let Some(previous) = b.get(12..).filter(|p| !p.is_empty()) {
        if update {
            if let Some(img) = decode_image(previous) {
                sh.frames.publish(img);
            }
        }
    }
    let index = sh.snapshots.fetch_add(1, Ordering::Relaxed);
    let mut img = lock(&sh.source).snapshot(index, w, h)?;
    if hmirror || vflip {
        let mut out = RgbImage::new(w, h)?;
        for y in 0..h {
            for x in 0..w {
                let sx = if hmirror { w - 1 - x } else { x };
                let sy = if vflip { h - 1 - y } else { y };
                if let Some(p) = img.get(sx, sy) {
                    out.put(x, y, p);
                }
            }
        }
        img = out;
    }
    let mut reply = vec![u8::from(sh.frames.streaming())];
    match code {
        0 => reply.extend_from_slice(&img.to_rgb565_le()),
        1 => reply.extend(img.data().chunks_exact(3).map(|p| {
            ((u32::from(p[0]) * 38 + u32::from(p[1]) * 75 + u32::from(p[2]) * 15) >> 7) as u8
        })),
        _ => reply.extend_from_slice(&img.encode_jpeg(crate::source::DEFAULT_QUALITY)?),
    }
    Ok(reply)
}

/// The operation a script channel's call stands for (to tell a retry of
/// the same request from a new one).
#[derive(Clone, Debug, PartialEq, Eq)]
enum CallKey {
    Lock,
    Unlock,
    Size,
    Shape,
    Read { offset: u32, len: u32 },
    Write { offset: u32, data: Vec<u8> },
    Ioctl { request: u32, args: Vec<u8> },
}

#[derive(Debug)]
struct Call {
    id: u32,
    key: CallKey,
    /// When the call was first seen by `poll_event` (with a fresh `now`).
    started: Option<Instant>,
}

/// A channel `protocol.register` made: each host request calls the
/// script's backend through the bridge and is answered with the firmware's
/// rules (CAM-RUNTIME.md's table).
pub struct ScriptChannel {
    shared: Arc<Shared>,
    generation: u64,
    channel: u8,
    methods: u16,
    timeout: Duration,
    call: Option<Call>,
    poll_call: Option<u32>,
    poll_cache: bool,
    last_now: Instant,
}

impl std::fmt::Debug for ScriptChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptChannel")
            .field("channel", &self.channel)
            .field("methods", &self.methods)
            .field("call", &self.call)
            .finish()
    }
}

impl ScriptChannel {
    fn has(&self, m: u8) -> bool {
        self.methods & (1 << m) != 0
    }

    fn args(&self, method: u8, key: &CallKey) -> Vec<u8> {
        let mut b = vec![self.channel, method];
        match key {
            CallKey::Read { offset, len } => {
                b.extend_from_slice(&offset.to_le_bytes());
                b.extend_from_slice(&len.to_le_bytes());
            }
            CallKey::Write { offset, data } => {
                b.extend_from_slice(&offset.to_le_bytes());
                b.extend_from_slice(data);
            }
            CallKey::Ioctl { request, args } => {
                b.extend_from_slice(&request.to_le_bytes());
                b.extend_from_slice(&(args.len() as u32).to_le_bytes());
                b.extend_from_slice(args);
            }
            _ => {}
        }
        b
    }

    /// Calls `method` (or collects the answer of the same call made
    /// before): `Pending` until the answer comes.
    fn call(&mut self, method: u8, key: CallKey) -> Result<Answer, ChannelError> {
        if let Some(c) = &self.call {
            if c.key == key {
                let id = c.id;
                let answer = lock(&self.shared.pending).get(&id).cloned().flatten();
                if let Some(a) = answer {
                    lock(&self.shared.pending).remove(&id);
                    self.call = None;
                    if a == Answer::Gone {
                        return Err(ChannelError::Failed);
                    }
                    return Ok(a);
                }
                if !self.shared.connected(self.generation) {
                    lock(&self.shared.pending).remove(&id);
                    self.call = None;
                    return Err(ChannelError::Failed);
                }
                if c.started
                    .is_some_and(|t| self.last_now.saturating_duration_since(t) >= self.timeout)
                {
                    log::warn!(
                        "script: channel {} did not answer {key:?} within {:?}: NAK TIMEOUT",
                        self.channel,
                        self.timeout
                    );
                    lock(&self.shared.pending).remove(&id);
                    self.call = None;
                    return Err(ChannelError::Timeout);
                }
                return Err(ChannelError::Pending);
            }
            // The host moved on: forget the old call.
            lock(&self.shared.pending).remove(&c.id);
            self.call = None;
        }
        let id = self.shared.id();
        lock(&self.shared.pending).insert(id, None);
        let body = self.args(method, &key);
        if !self.shared.send(self.generation, K_CALL, id, &body) {
            lock(&self.shared.pending).remove(&id);
            return Err(ChannelError::Failed);
        }
        self.call = Some(Call {
            id,
            key,
            started: None,
        });
        Err(ChannelError::Pending)
    }

    fn fire_and_forget(&self, method: u8) {
        let id = self.shared.id();
        let body = self.args(method, &CallKey::Unlock);
        self.shared.send(self.generation, K_CALL, id, &body);
    }
}

impl ChannelBackend for ScriptChannel {
    fn ops(&self) -> Ops {
        let mut o = Ops::default();
        if self.has(M_READ) || self.has(M_READP) {
            o = o | Ops::READ;
        }
        if self.has(M_WRITE) {
            o = o | Ops::WRITE;
        }
        if self.has(M_LOCK) && self.has(M_UNLOCK) {
            o = o | Ops::LOCK;
        }
        if self.has(M_SIZE) {
            o = o | Ops::SIZE;
        }
        if self.has(M_SHAPE) {
            o = o | Ops::SHAPE;
        }
        if self.has(M_POLL) {
            o = o | Ops::POLL;
        }
        if self.has(M_IOCTL) {
            o = o | Ops::IOCTL;
        }
        o
    }

    fn poll(&mut self, now: Instant) -> bool {
        self.last_now = self.last_now.max(now);
        if !self.has(M_POLL) {
            return false;
        }
        // Answered from the last poll's answer; a new poll is asked for the
        // next time (the cam loop never waits for the script).
        if let Some(id) = self.poll_call {
            let mut p = lock(&self.shared.pending);
            match p.get(&id) {
                Some(Some(a)) => {
                    self.poll_cache = a.truthy();
                    p.remove(&id);
                    self.poll_call = None;
                }
                Some(None) => return self.poll_cache,
                None => self.poll_call = None,
            }
        }
        let id = self.shared.id();
        lock(&self.shared.pending).insert(id, None);
        if self
            .shared
            .send(self.generation, K_CALL, id, &[self.channel, M_POLL])
        {
            self.poll_call = Some(id);
        } else {
            lock(&self.shared.pending).remove(&id);
        }
        self.poll_cache
    }

    fn lock(&mut self) -> Result<(), ChannelError> {
        match self.call(M_LOCK, CallKey::Lock)? {
            a if a.truthy() => Ok(()),
            _ => Err(ChannelError::Busy),
        }
    }

    fn unlock(&mut self) -> Result<(), ChannelError> {
        match self.call(M_UNLOCK, CallKey::Unlock)? {
            a if a.truthy() => Ok(()),
            _ => Err(ChannelError::Busy),
        }
    }

    fn size(&mut self) -> Result<u32, ChannelError> {
        Ok(match self.call(M_SIZE, CallKey::Size)? {
            Answer::Int(n) => n as u32,
            Answer::Bool(b) => u32::from(b),
            _ => 0,
        })
    }

    fn shape(&mut self) -> Result<Shape, ChannelError> {
        let dims: Vec<u32> = match self.call(M_SHAPE, CallKey::Shape)? {
            Answer::Tuple(v) => v.iter().map(|&d| d as u32).collect(),
            _ => Vec::new(),
        };
        Ok(Shape::new(&dims).unwrap_or_default())
    }

    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<usize, ChannelError> {
        let len = buf.len() as u32;
        match self.call(M_READ, CallKey::Read { offset, len })? {
            Answer::Bytes(b) if !b.is_empty() => {
                let n = b.len().min(buf.len());
                buf[..n].copy_from_slice(&b[..n]);
                Ok(n)
            }
            _ => Err(ChannelError::Failed),
        }
    }

    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), ChannelError> {
        let key = CallKey::Write {
            offset,
            data: data.to_vec(),
        };
        match self.call(M_WRITE, key)? {
            Answer::Int(n) if n != 0 => Ok(()),
            // The firmware's quirk: a raising write is acknowledged.
            Answer::Raised => Ok(()),
            _ => Err(ChannelError::Failed),
        }
    }

    fn ioctl(&mut self, request: u32, args: &[u8]) -> Result<(), ChannelError> {
        let key = CallKey::Ioctl {
            request,
            args: args.to_vec(),
        };
        match self.call(M_IOCTL, key)? {
            Answer::None | Answer::Int(0) => Ok(()),
            Answer::Int(_) | Answer::Raised | Answer::Gone => Err(ChannelError::Failed),
            // Non-int answers count as success on the firmware.
            _ => Ok(()),
        }
    }

    fn read_piece(&self) -> Option<u16> {
        Some(SCRIPT_READ_PIECE)
    }

    fn reset(&mut self) {
        // PROTO_SYNC unlocks every channel that can unlock.
        if self.has(M_UNLOCK) {
            self.fire_and_forget(M_UNLOCK);
        }
    }

    fn poll_event(&mut self, now: Instant) -> Option<ChannelEventOut> {
        self.last_now = self.last_now.max(now);
        if let Some(c) = &mut self.call {
            c.started.get_or_insert(now);
        }
        None
    }

    fn next_deadline(&self) -> Option<Instant> {
        let c = self.call.as_ref()?;
        Some(match c.started {
            None => self.last_now,
            Some(t) => {
                let step = if self.last_now.saturating_duration_since(t) < CALL_FAST_PERIOD {
                    CALL_POLL_FAST
                } else {
                    CALL_POLL
                };
                (t + self.timeout).min(self.last_now + step)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_decode() {
        assert_eq!(Answer::decode(&[]), Answer::Raised);
        assert_eq!(Answer::decode(&[1]), Answer::None);
        assert_eq!(Answer::decode(&[2, 1]), Answer::Bool(true));
        let mut b = vec![3];
        b.extend_from_slice(&(-5i64).to_le_bytes());
        assert_eq!(Answer::decode(&b), Answer::Int(-5));
        assert_eq!(Answer::decode(&[3, 1]), Answer::Raised);
        assert_eq!(Answer::decode(&[4, 9, 8]), Answer::Bytes(vec![9, 8]));
        let mut t = vec![5, 9];
        t.extend_from_slice(&7i64.to_le_bytes());
        assert_eq!(Answer::decode(&t), Answer::Tuple(vec![7]));
        assert_eq!(Answer::decode(&[6, 0]), Answer::Other(false));
    }

    #[test]
    fn images_decode_and_reject_bad_sizes() {
        let mut b = Vec::new();
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.push(0);
        b.extend_from_slice(&[0x00, 0xF8, 0xE0, 0x07]); // red, green
        match decode_image(&b).map(|p| p.to_rgb()) {
            Some(Ok(i)) => {
                assert_eq!(i.get(0, 0), Some([255, 0, 0]));
                assert_eq!(i.get(1, 0), Some([0, 255, 0]));
            }
            _ => panic!("not decoded"),
        }
        b.pop();
        assert!(decode_image(&b).is_none());
    }

    #[test]
    fn modules_are_written() {
        let dir = fresh_dir().unwrap();
        write_modules(&dir).unwrap();
        for (rel, text) in MODULES {
            assert_eq!(std::fs::read_to_string(dir.join(rel)).unwrap(), *text);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
