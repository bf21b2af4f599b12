//! One typed operation per `Camera` method. Start one with
//! [`Session::start`](crate::Session::start); its
//! [`Operation::Output`] comes back from
//! [`Session::take_output`](crate::Session::take_output).
//!
//! Named operations (by channel name, and everything the stock package
//! retries) resync and go on after a retryable failure until their
//! deadline: reads resume at the first byte not received, writes at the
//! first byte not acknowledged (stdin, which appends, from 0), `exec`
//! starts over from STDIN_RESET, locked reads from the lock. The by-id
//! primitives ([`Request`], [`Lock`], [`Size`], [`Ioctl`], ...) resync and
//! report the error, so that a caller can compose them; [`ReadAt`] and
//! [`WriteAt`] resume like the named ones unless a lock is held.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use bytes::{Bytes, BytesMut};
use omv_proto::channel::ChannelEntry;
use omv_proto::frame::FrameHeader;
use omv_proto::host::{Command, Reply};
use omv_proto::ioctl::{
    PROFILE_MODE, PROFILE_RESET, PROFILE_SET_EVENT, STDIN_EXEC, STDIN_RESET, STDIN_STOP,
    STREAM_CTRL, STREAM_RAW_CFG, STREAM_RAW_CTRL,
};
use omv_proto::memory::MemoryStats;
use omv_proto::poll::PollBitmap;
use omv_proto::request::decode_u32;
use omv_proto::shape::Shape;
use omv_proto::stats::Stats;
use omv_proto::sysinfo::SysInfo;
use omv_proto::version::Version;
use omv_proto::{ChannelFlags, ChannelId, Opcode, Status, LOCK_INTERVAL};

use crate::error::{Error, Result};
use crate::session::{Cache, SendInfo};
use crate::task::{done, fail, Action, Input, Task};
use crate::types::{ChannelKey, ChannelStatus, ProfileData, RawFrame, SystemInfo};

mod sealed {
    pub trait Sealed {}
}

/// An operation the session can run. Implemented by the types of this
/// module only.
pub trait Operation: sealed::Sealed + 'static {
    /// What the operation returns.
    type Output: Send + 'static;
    #[doc(hidden)]
    fn into_task(self) -> Box<dyn Task>;
    #[doc(hidden)]
    fn is_connect(&self) -> bool {
        false
    }
    #[doc(hidden)]
    fn retries(&self) -> bool {
        true
    }
}

/// The PMU events the stock `profiler_reset(None)` assigns to counters
/// 0..8: CPU cycles, and L1I, L1D and L2D cache behaviour.
pub const DEFAULT_PROFILE_EVENTS: [u32; 8] = [
    0x0039, 0x0023, 0x0024, 0x0001, 0x0003, 0xC102, 0x02CC, 0xC303,
];

/// Largest profile table accepted (shape product), against a lying shape.
const MAX_PROFILE_BYTES: u64 = 64 * 1024 * 1024;

fn info() -> SendInfo {
    SendInfo::default()
}

/// A status answer of a task that starts over cheaply after a failure:
/// give up early when it is overdue.
fn restartable() -> SendInfo {
    SendInfo {
        resumable: true,
        ..SendInfo::default()
    }
}

fn data_info() -> SendInfo {
    SendInfo {
        data_answer: true,
        ..SendInfo::default()
    }
}

fn u32_args(args: &[u32]) -> Vec<u8> {
    args.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn reply_bytes(r: Reply) -> Bytes {
    r.into_bytes()
}

// ----------------------------------------------------------------------
// One request, decoded
// ----------------------------------------------------------------------

type Decode = fn(Bytes, &mut Cache) -> Result<Box<dyn core::any::Any + Send>>;
type OnNak = fn(&Error) -> Option<Box<dyn core::any::Any + Send>>;

/// A task of one request: sent again after a resync, decoded on success.
struct One {
    cmd: Command,
    info: SendInfo,
    decode: Decode,
    on_fail: Option<OnNak>,
}

impl Task for One {
    fn step(&mut self, cx: &mut Cache, input: Input) -> Action {
        match input {
            Input::Start | Input::Resumed { .. } => Action::Send(self.cmd.clone(), self.info),
            Input::Reply(r) => Action::Done((self.decode)(reply_bytes(r), cx)),
            Input::Failed(e) => match self.on_fail.and_then(|f| f(&e)) {
                Some(v) => Action::Done(Ok(v)),
                None => fail(e),
            },
        }
    }
}

fn one(cmd: Command, info: SendInfo, decode: Decode) -> Box<dyn Task> {
    Box::new(One {
        cmd,
        info,
        decode,
        on_fail: None,
    })
}

macro_rules! op {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty),* $(,)? } => $out:ty, retries = $r:expr, |$s:ident| $body:expr) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name { $($(#[$fm])* pub $f: $t),* }
        op!(@impl $name, $out, $r, |$s| $body);
    };
    ($(#[$m:meta])* $name:ident => $out:ty, retries = $r:expr, |$s:ident| $body:expr) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct $name;
        op!(@impl $name, $out, $r, |$s| $body);
    };
    (@impl $name:ident, $out:ty, $r:expr, |$s:ident| $body:expr) => {
        impl sealed::Sealed for $name {}
        impl Operation for $name {
            type Output = $out;
            fn into_task(self) -> Box<dyn Task> {
                let $s = self;
                $body
            }
            fn retries(&self) -> bool {
                $r
            }
        }
    };
}

fn boxed<T: core::any::Any + Send>(v: T) -> Box<dyn core::any::Any + Send> {
    Box::new(v)
}

// ----------------------------------------------------------------------
// Raw and by-id primitives
// ----------------------------------------------------------------------

op!(
    /// A raw request: `Some(reply)`, or `None` for SYS_RESET / SYS_BOOT,
    /// which have no answer (the link is down afterwards). Not retried.
    Request {
        /// Opcode.
        pub opcode: Opcode,
        /// Channel.
        pub channel: ChannelId,
        /// Payload.
        pub payload: Bytes,
    } => Option<Reply>, retries = false, |s| {
        let cmd = Command { opcode: s.opcode, channel: s.channel, payload: s.payload };
        if cmd.opcode == Opcode::SYS_RESET || cmd.opcode == Opcode::SYS_BOOT {
            return Box::new(Oneway(cmd, true));
        }
        Box::new(RawOne(cmd))
    }
);

impl Request {
    /// A raw request.
    pub fn new(opcode: Opcode, channel: ChannelId, payload: &[u8]) -> Request {
        Request {
            opcode,
            channel,
            payload: Bytes::copy_from_slice(payload),
        }
    }
}

struct RawOne(Command);
impl Task for RawOne {
    fn step(&mut self, _cx: &mut Cache, input: Input) -> Action {
        match input {
            Input::Start | Input::Resumed { .. } => Action::Send(self.0.clone(), data_info()),
            Input::Reply(r) => done(Some(r)),
            Input::Failed(e) => fail(e),
        }
    }
}

/// A request without answer; `true`: the output is `None::<Reply>` (a raw
/// [`Request`]), else `()`.
struct Oneway(Command, bool);
impl Task for Oneway {
    fn step(&mut self, _cx: &mut Cache, _input: Input) -> Action {
        let v = if self.1 {
            boxed(Option::<Reply>::None)
        } else {
            boxed(())
        };
        Action::Oneway(self.0.clone(), v)
    }
}

op!(
    /// Reboots the cam (SYS_RESET): no answer, the link drops.
    Reset => (), retries = false, |_s| Box::new(Oneway(Command::system(Opcode::SYS_RESET), false))
);
op!(
    /// The cam enters its bootloader (SYS_BOOT): no answer, the link drops.
    Boot => (), retries = false, |_s| Box::new(Oneway(Command::system(Opcode::SYS_BOOT), false))
);

op!(
    /// CHANNEL_LIST as the cam sends it, without touching the cache.
    ChannelList => Vec<ChannelEntry>, retries = false, |_s| one(
        Command::system(Opcode::CHANNEL_LIST), data_info(),
        |d, _| ChannelEntry::decode_list(&d).map(boxed).map_err(Error::malformed("channel list")))
);

fn busy_is_false(cmd: Command) -> Box<dyn Task> {
    Box::new(One {
        cmd,
        info: info(),
        decode: |_, _| Ok(boxed(true)),
        on_fail: Some(|e| e.is_nak(Status::BUSY).then(|| boxed(false))),
    })
}

op!(
    /// CHANNEL_LOCK: `true` when granted, `false` on BUSY.
    Lock { /** The channel. */ pub id: ChannelId } => bool, retries = false,
    |s| Box::new(LockTask { inner: busy_is_false(Command::new(Opcode::CHANNEL_LOCK, s.id)), id: s.id, lock: true })
);
op!(
    /// CHANNEL_UNLOCK: `true` when done, `false` on BUSY.
    Unlock { /** The channel. */ pub id: ChannelId } => bool, retries = false,
    |s| Box::new(LockTask { inner: busy_is_false(Command::new(Opcode::CHANNEL_UNLOCK, s.id)), id: s.id, lock: false })
);

/// Records held locks (a resync releases them all; a resumed read must
/// not silently continue without its lock).
struct LockTask {
    inner: Box<dyn Task>,
    id: ChannelId,
    lock: bool,
}
impl Task for LockTask {
    fn step(&mut self, cx: &mut Cache, input: Input) -> Action {
        let a = self.inner.step(cx, input);
        if let Action::Done(Ok(v)) = &a {
            if v.downcast_ref::<bool>() == Some(&true) {
                let bit = 1u32 << (self.id.0 & 31);
                if self.lock {
                    cx.locks |= bit;
                } else {
                    cx.locks &= !bit;
                }
            }
        }
        a
    }
}

op!(
    /// CHANNEL_SHAPE.
    ShapeOf { /** The channel. */ pub id: ChannelId } => Shape, retries = false, |s| one(
        Command::new(Opcode::CHANNEL_SHAPE, s.id), data_info(),
        |d, _| Shape::decode(&d).map(boxed).map_err(Error::malformed("channel shape")))
);
op!(
    /// CHANNEL_SIZE: bytes available.
    Size { /** The channel. */ pub id: ChannelId } => u32, retries = false, |s| one(
        Command::new(Opcode::CHANNEL_SIZE, s.id), data_info(),
        |d, _| decode_u32(&d).map(boxed).map_err(Error::malformed("channel size")))
);
op!(
    /// CHANNEL_POLL: the readiness bitmap (also updates whether a script
    /// runs, from the stdin bit).
    Poll => PollBitmap, retries = false, |_s| one(
        Command::system(Opcode::CHANNEL_POLL), data_info(),
        |d, cx| {
            let b = PollBitmap::decode(&d).map_err(Error::malformed("poll bitmap"))?;
            cx.state.script_running = Some(b.is_ready(ChannelId::STDIN));
            Ok(boxed(b))
        })
);
op!(
    /// CHANNEL_IOCTL with raw argument bytes; the answer's payload.
    Ioctl {
        /** The channel. */ pub id: ChannelId,
        /** The request number. */ pub request: u32,
        /** The arguments. */ pub args: Vec<u8>,
    } => Vec<u8>, retries = false, |s| one(
        Command::ioctl(s.id, s.request, &s.args), data_info(),
        |d, _| Ok(boxed(Vec::from(d))))
);

impl Ioctl {
    /// An ioctl with u32 arguments (the stock `fmt='I...'` form).
    pub fn u32s(id: ChannelId, request: u32, args: &[u32]) -> Ioctl {
        Ioctl {
            id,
            request,
            args: u32_args(args),
        }
    }
}

fn check_range(offset: u32, len: usize, what: &str) -> Result<()> {
    let end = u32::try_from(len).ok().and_then(|n| offset.checked_add(n));
    if end.is_none() {
        return Err(Error::InvalidArgument(alloc::format!(
            "{what} of {len} bytes at offset {offset} passes 4 GiB"
        )));
    }
    Ok(())
}

op!(
    /// Reads `len` bytes at `offset` from channel `id`, resuming at the
    /// first byte not received after a failure (unless the channel is
    /// locked: a resync releases the lock, and the error is returned).
    /// The cam may send fewer bytes than asked (end of data); more is
    /// [`Error::Overflow`].
    ReadAt {
        /** The channel. */ pub id: ChannelId,
        /** Offset. */ pub offset: u32,
        /** Length. */ pub len: u32,
    } => Vec<u8>, retries = true, |s| Box::new(ReadTask::new(s.id, s.offset, s.len))
);

op!(
    /// [`ReadAt`] into the caller's buffer: `buf` is cleared, the answer is
    /// reassembled in it as it arrives, and it is the output. With
    /// `buf.capacity() >= len` the read allocates nothing per packet and the
    /// same few times whatever its size (on failure the buffer is dropped).
    ReadAtInto {
        /** The channel. */ pub id: ChannelId,
        /** Offset. */ pub offset: u32,
        /** Length. */ pub len: u32,
        /** Where the bytes go (its capacity is reused). */ pub buf: Vec<u8>,
    } => Vec<u8>, retries = true, |s| Box::new(ReadTask::with_buffer(s.id, s.offset, s.len, s.buf))
);

/// A resumable read. Its requests are streamed: while one is in flight
/// the task's buffer is lent to [`Cache::read_buf`], where the session
/// appends the answer's fragments as they arrive (no second copy of the
/// answer), and taken back at the next step.
pub(crate) struct ReadTask {
    id: ChannelId,
    offset: u32,
    len: u32,
    got: Vec<u8>,
    /// `Some(bytes held before)` while `got` is lent to the cache.
    lent: Option<usize>,
    /// Held a lock when it started: may not resume.
    locked: Option<bool>,
    /// The channel consumes what it sends (stdout): after a failure the
    /// bytes the cam sent but the host lost are gone, so a resumed read
    /// would join the text across a hole; the read ends with what arrived.
    consuming: bool,
    /// The last request: bytes held before it and bytes it asked for.
    asked: (usize, u32),
}

impl ReadTask {
    pub(crate) fn new(id: ChannelId, offset: u32, len: u32) -> ReadTask {
        ReadTask::with_buffer(id, offset, len, Vec::new())
    }

    pub(crate) fn with_buffer(id: ChannelId, offset: u32, len: u32, mut buf: Vec<u8>) -> ReadTask {
        buf.clear();
        ReadTask {
            id,
            offset,
            len,
            got: buf,
            lent: None,
            locked: None,
            consuming: false,
            asked: (0, 0),
        }
    }

    /// Takes the buffer back from the cache after a request.
    fn reclaim(&mut self, cx: &mut Cache) {
        if self.lent.take().is_some() {
            self.got = core::mem::take(&mut cx.read_buf);
        }
    }

    /// True when no byte has arrived yet.
    fn got_nothing(&self, cx: &Cache) -> bool {
        match self.lent {
            Some(_) => cx.read_buf.is_empty(),
            None => self.got.is_empty(),
        }
    }

    /// The buffer (for a read that starts over).
    fn into_buffer(mut self, cx: &mut Cache) -> Vec<u8> {
        self.reclaim(cx);
        self.got
    }

    fn send(&mut self, cx: &mut Cache) -> Action {
        let at = self.offset + self.got.len() as u32;
        let mut rest = self.len - self.got.len() as u32;
        if !cx.caps.flags.ack() {
            if let Some(max) = cx.unacked_read_max {
                rest = rest.min(max.max(1));
            }
        }
        self.asked = (self.got.len(), rest);
        self.lent = Some(self.got.len());
        cx.read_buf = core::mem::take(&mut self.got);
        Action::Send(
            Command::read(self.id, at, rest),
            SendInfo {
                offset: Some(at),
                resumable: !self.locked.unwrap_or(false),
                data_answer: true,
                max_answer: Some(rest),
                stream: true,
            },
        )
    }

    /// True when requests are limited in length (ACKs off and
    /// `unacked_read_max` set).
    fn chunked(&self, cx: &Cache) -> bool {
        !cx.caps.flags.ack() && cx.unacked_read_max.is_some()
    }

    /// The last request's answer was as long as asked, and bytes remain.
    fn more_after_full_answer(&self) -> bool {
        let (before, asked) = self.asked;
        self.got.len() - before.min(self.got.len()) == asked as usize
            && (self.got.len() as u32) < self.len
    }

    fn append(&mut self, d: &[u8]) -> Result<()> {
        let room = (self.len as usize).saturating_sub(self.got.len());
        if d.len() > room {
            return Err(Error::Overflow {
                op: Opcode::CHANNEL_READ,
                channel: self.id.0,
                offset: self.offset + self.got.len() as u32,
                asked: room as u32,
                got: d.len(),
            });
        }
        self.got.extend_from_slice(d);
        Ok(())
    }
}

impl Task for ReadTask {
    fn size(&self) -> u64 {
        u64::from(self.len)
    }
    fn done(&self) -> u64 {
        // While a request is in flight the session adds its bytes.
        self.lent.unwrap_or(self.got.len()) as u64
    }
    fn step(&mut self, cx: &mut Cache, input: Input) -> Action {
        self.reclaim(cx);
        if self.locked.is_none() {
            self.locked = Some(cx.locks & (1 << (self.id.0 & 31)) != 0);
        }
        match input {
            Input::Start => {
                if self.len == 0 {
                    return done(core::mem::take(&mut self.got));
                }
                if let Err(e) = check_range(self.offset, self.len as usize, "read") {
                    return fail(e);
                }
                self.send(cx)
            }
            Input::Reply(r) => match self.append(&reply_bytes(r)) {
                // A read asked for in several requests (ACKs off,
                // `unacked_read_max`): a full answer asks for the rest; a
                // short one is the channel's end.
                Ok(()) if self.chunked(cx) && self.more_after_full_answer() => self.send(cx),
                Ok(()) => done(core::mem::take(&mut self.got)),
                Err(e) => fail(e),
            },
            Input::Resumed { partial, rebooted } => {
                if self.consuming && (!self.got.is_empty() || !partial.is_empty()) {
                    return match self.append(&partial) {
                        Ok(()) => done(core::mem::take(&mut self.got)),
                        Err(e) => fail(e),
                    };
                }
                // Bytes from before a soft reboot cannot be joined with
                // bytes from after it; with none received yet, ask again.
                if rebooted && (!self.got.is_empty() || !partial.is_empty()) {
                    return fail(Error::Rebooted {
                        op: Opcode::CHANNEL_READ,
                        channel: self.id.0,
                        offset: self.offset + self.got.len() as u32,
                    });
                }
                if self.locked == Some(true) {
                    // The lock went with the resync.
                    return fail(Error::NotConnected);
                }
                if let Err(e) = self.append(&partial) {
                    return fail(e);
                }
                if self.got.len() as u32 == self.len {
                    return done(core::mem::take(&mut self.got));
                }
                self.send(cx)
            }
            Input::Failed(e) => fail(e),
        }
    }
}

op!(
    /// Writes `data` at `offset` to channel `id`, in packets of
    /// `max_payload - 8` bytes, resuming at the first byte not acknowledged
    /// after a failure (from offset 0 on stdin, which appends).
    WriteAt {
        /** The channel. */ pub id: ChannelId,
        /** Offset. */ pub offset: u32,
        /** The bytes. */ pub data: Bytes,
    } => (), retries = true, |s| Box::new(WriteTask::new(s.id, s.offset, s.data))
);

/// A resumable write.
pub(crate) struct WriteTask {
    id: ChannelId,
    offset: u32,
    data: Bytes,
    acked: usize,
    inflight: usize,
    locked: Option<bool>,
    /// Where each packet's payload is built (reused: nothing allocated per packet).
    scratch: BytesMut,
}

impl WriteTask {
    pub(crate) fn new(id: ChannelId, offset: u32, data: Bytes) -> WriteTask {
        WriteTask {
            id,
            offset,
            data,
            acked: 0,
            inflight: 0,
            locked: None,
            scratch: BytesMut::new(),
        }
    }

    fn send(&mut self, cx: &Cache) -> Action {
        if self.acked >= self.data.len() {
            return done(());
        }
        let chunk = usize::from(cx.caps.max_payload).saturating_sub(8).max(1);
        let n = chunk.min(self.data.len() - self.acked);
        let at = self.offset + self.acked as u32;
        self.inflight = n;
        Action::Send(
            Command::write_in(
                &mut self.scratch,
                self.id,
                at,
                &self.data[self.acked..self.acked + n],
            ),
            SendInfo {
                offset: Some(at),
                resumable: !self.locked.unwrap_or(false),
                data_answer: false,
                max_answer: None,
                stream: false,
            },
        )
    }
}

impl Task for WriteTask {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn done(&self) -> u64 {
        self.acked as u64
    }
    fn step(&mut self, cx: &mut Cache, input: Input) -> Action {
        if self.locked.is_none() {
            self.locked = Some(cx.locks & (1 << (self.id.0 & 31)) != 0);
        }
        match input {
            Input::Start => {
                if let Err(e) = check_range(self.offset, self.data.len(), "write") {
                    return fail(e);
                }
                self.send(cx)
            }
            Input::Reply(_) => {
                self.acked += self.inflight;
                self.send(cx)
            }
            Input::Resumed { .. } => {
                if self.locked == Some(true) {
                    return fail(Error::NotConnected);
                }
                let appends = cx
                    .channels
                    .iter()
                    .any(|c| c.id == self.id && c.flags.contains(ChannelFlags::EXEC))
                    || self.id == ChannelId::STDIN;
                if appends {
                    // stdin appends: only a write from offset 0 (which
                    // clears the buffer) is exactly-once.
                    self.acked = 0;
                }
                self.send(cx)
            }
            Input::Failed(e) => fail(e),
        }
    }
}

// ----------------------------------------------------------------------
// Introspection
// ----------------------------------------------------------------------

op!(
    /// PROTO_VERSION (cached).
    GetVersion => Version, retries = true, |_s| Box::new(Cached {
        cmd: Command::system(Opcode::PROTO_VERSION),
        cached: |cx| cx.version.map(boxed),
        decode: |d, cx| {
            let v = Version::decode(&d).map_err(Error::malformed("PROTO_VERSION payload"))?;
            cx.version = Some(v);
            Ok(boxed(v))
        },
    })
);
op!(
    /// SYS_INFO (cached).
    GetSystemInfo => SystemInfo, retries = true, |_s| Box::new(Cached {
        cmd: Command::system(Opcode::SYS_INFO),
        cached: |cx| cx.sysinfo.map(boxed),
        decode: |d, cx| {
            let s = SysInfo::decode(&d).map(SystemInfo::from).map_err(Error::malformed("SYS_INFO payload"))?;
            cx.sysinfo = Some(s);
            Ok(boxed(s))
        },
    })
);

/// A request whose answer is cached.
struct Cached {
    cmd: Command,
    cached: fn(&Cache) -> Option<Box<dyn core::any::Any + Send>>,
    decode: Decode,
}
impl Task for Cached {
    fn step(&mut self, cx: &mut Cache, input: Input) -> Action {
        match input {
            Input::Start => match (self.cached)(cx) {
                Some(v) => Action::Done(Ok(v)),
                None => Action::Send(self.cmd.clone(), data_info()),
            },
            Input::Resumed { .. } => Action::Send(self.cmd.clone(), data_info()),
            Input::Reply(r) => Action::Done((self.decode)(reply_bytes(r), cx)),
            Input::Failed(e) => fail(e),
        }
    }
}

op!(
    /// SYS_MEMORY ([`Error::Unsupported`] before firmware 4.8).
    GetMemoryStats => MemoryStats, retries = true, |_s| Box::new(One {
        cmd: Command::system(Opcode::SYS_MEMORY),
        info: data_info(),
        decode: |d, _| MemoryStats::decode(&d).map(boxed).map_err(Error::malformed("SYS_MEMORY payload")),
        on_fail: None,
    }.map_fail(|e| if e.is_nak(Status::INVALID) {
        Error::Unsupported("SYS_MEMORY (memory statistics need firmware 4.8 or later)".to_string())
    } else { e }))
);
op!(
    /// PROTO_STATS: the cam's counters.
    GetDeviceStats => Stats, retries = true, |_s| one(
        Command::system(Opcode::PROTO_STATS), data_info(),
        |d, _| Stats::decode(&d).map(boxed).map_err(Error::malformed("PROTO_STATS payload")))
);

impl One {
    fn map_fail(self, f: fn(Error) -> Error) -> MapFail {
        MapFail { inner: self, f }
    }
}
struct MapFail {
    inner: One,
    f: fn(Error) -> Error,
}
impl Task for MapFail {
    fn step(&mut self, cx: &mut Cache, input: Input) -> Action {
        match self.inner.step(cx, input) {
            Action::Done(Err(e)) => fail((self.f)(e)),
            a => a,
        }
    }
}

// ----------------------------------------------------------------------
// Connection
// ----------------------------------------------------------------------

/// Connects: resync (SYNC, GET_CAPS, SET_CAPS), then the channel list,
/// version and system information are read and cached. The driver opens
/// the port first and calls [`Session::port_opened`](crate::Session::port_opened).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Connect;
impl sealed::Sealed for Connect {}
impl Operation for Connect {
    type Output = ();
    fn into_task(self) -> Box<dyn Task> {
        Box::new(ConnectTask { stage: 0 })
    }
    fn is_connect(&self) -> bool {
        true
    }
}

struct ConnectTask {
    stage: u8,
}
impl ConnectTask {
    fn send(&self) -> Action {
        let op = match self.stage {
            1 => Opcode::CHANNEL_LIST,
            2 => Opcode::PROTO_VERSION,
            _ => Opcode::SYS_INFO,
        };
        // The task asks again after a failure (resync, then the same
        // stage): an overdue answer is given up early, so that a lost
        // request on a lossy link costs a few thresholds, not the timeout.
        let info = SendInfo {
            resumable: true,
            ..data_info()
        };
        Action::Send(Command::system(op), info)
    }
}
impl Task for ConnectTask {
    fn step(&mut self, cx: &mut Cache, input: Input) -> Action {
        match input {
            Input::Start => Action::Resync,
            Input::Resumed { .. } => {
                if self.stage == 0 {
                    self.stage = 1;
                }
                self.send()
            }
            Input::Reply(r) => {
                let d = reply_bytes(r);
                let r = match self.stage {
                    1 => ChannelEntry::decode_list(&d)
                        .map(|l| set_channels(cx, l))
                        .map_err(Error::malformed("channel list")),
                    2 => Version::decode(&d)
                        .map(|v| cx.version = Some(v))
                        .map_err(Error::malformed("PROTO_VERSION payload")),
                    _ => SysInfo::decode(&d)
                        .map(|s| cx.sysinfo = Some(SystemInfo::from(s)))
                        .map_err(Error::malformed("SYS_INFO payload")),
                };
                if let Err(e) = r {
                    return fail(e);
                }
                if self.stage == 3 {
                    return done(());
                }
                self.stage += 1;
                self.send()
            }
            Input::Failed(e) => fail(e),
        }
    }
}

fn set_channels(cx: &mut Cache, list: Vec<ChannelEntry>) {
    log::info!("Registered channels ({}):", list.len());
    for c in &list {
        log::info!(
            "  ID: {}, Flags: 0x{:02X}, Name: {}",
            c.id,
            c.flags.0,
            c.name
        );
    }
    cx.channels = list;
    cx.stale = false;
}

op!(
    /// Resyncs the link now (SYNC, GET_CAPS, SET_CAPS); releases every lock.
    Resync => (), retries = false, |_s| Box::new(ResyncTask)
);
struct ResyncTask;
impl Task for ResyncTask {
    fn step(&mut self, _cx: &mut Cache, input: Input) -> Action {
        match input {
            Input::Start => Action::Resync,
            Input::Resumed { .. } => done(()),
            Input::Failed(e) => fail(e),
            Input::Reply(_) => done(()),
        }
    }
}

op!(
    /// Renegotiates the caps from the configuration (GET_CAPS, SET_CAPS).
    UpdateCaps => (), retries = false, |_s| Box::new(ResyncTask)
);

// ----------------------------------------------------------------------
// Channels by name
// ----------------------------------------------------------------------

type ThenFn =
    Box<dyn FnOnce(Option<ChannelEntry>) -> core::result::Result<Box<dyn Task>, Action> + Send>;

/// Refreshes the channel cache when stale, resolves a name, then runs the
/// task built for the channel.
struct Lookup {
    key: LookupKey,
    then: Option<ThenFn>,
    inner: Option<Box<dyn Task>>,
    listing: bool,
}

enum LookupKey {
    Name(String),
    Id(ChannelId),
}

fn lookup(key: LookupKey, then: ThenFn) -> Box<dyn Task> {
    Box::new(Lookup {
        key,
        then: Some(then),
        inner: None,
        listing: false,
    })
}

fn by_name(name: &str, then: ThenFn) -> Box<dyn Task> {
    lookup(LookupKey::Name(name.to_string()), then)
}

/// A built-in channel: [`Error::Unsupported`] when missing.
fn builtin(
    name: &'static str,
    then: impl FnOnce(ChannelId) -> Box<dyn Task> + Send + 'static,
) -> Box<dyn Task> {
    by_name(
        name,
        Box::new(move |e| match e {
            Some(e) => Ok(then(e.id)),
            None => Err(fail(Error::Unsupported(alloc::format!(
                "the cam has no {name:?} channel"
            )))),
        }),
    )
}

impl Lookup {
    fn resolve(&mut self, cx: &mut Cache) -> Action {
        let entry = cx
            .channels
            .iter()
            .find(|c| match &self.key {
                LookupKey::Name(n) => c.name == *n,
                LookupKey::Id(id) => c.id == *id,
            })
            .cloned();
        let Some(then) = self.then.take() else {
            return fail(Error::NotConnected);
        };
        match then(entry) {
            Ok(mut t) => {
                let a = t.step(cx, Input::Start);
                self.inner = Some(t);
                a
            }
            Err(a) => a,
        }
    }
}

impl Task for Lookup {
    fn size(&self) -> u64 {
        self.inner.as_ref().map_or(0, |t| t.size())
    }
    fn done(&self) -> u64 {
        self.inner.as_ref().map_or(0, |t| t.done())
    }
    fn step(&mut self, cx: &mut Cache, input: Input) -> Action {
        if let Some(t) = self.inner.as_mut() {
            return t.step(cx, input);
        }
        match input {
            Input::Start | Input::Resumed { .. } => {
                if cx.stale {
                    self.listing = true;
                    Action::Send(Command::system(Opcode::CHANNEL_LIST), data_info())
                } else {
                    self.resolve(cx)
                }
            }
            Input::Reply(r) => match ChannelEntry::decode_list(&reply_bytes(r)) {
                Ok(l) => {
                    set_channels(cx, l);
                    self.resolve(cx)
                }
                Err(e) => fail(Error::Malformed {
                    what: "channel list",
                    source: e,
                }),
            },
            Input::Failed(e) => fail(e),
        }
    }
}

op!(
    /// Refreshes the cached channel list from the cam.
    UpdateChannels => (), retries = true, |_s| Box::new(One {
        cmd: Command::system(Opcode::CHANNEL_LIST),
        info: data_info(),
        decode: |d, cx| {
            let l = ChannelEntry::decode_list(&d).map_err(Error::malformed("channel list"))?;
            set_channels(cx, l);
            Ok(boxed(()))
        },
        on_fail: None,
    })
);

op!(
    /// The cached channel list, refreshed first when stale.
    Channels => Vec<ChannelEntry>, retries = true, |_s| lookup(LookupKey::Id(ChannelId(255)),
        Box::new(|_| Ok(Box::new(Snapshot) as Box<dyn Task>)))
);
struct Snapshot;
impl Task for Snapshot {
    fn step(&mut self, cx: &mut Cache, _input: Input) -> Action {
        done(cx.channels.clone())
    }
}

/// Looks a channel up by name or id (refreshing the cache when stale):
/// `None` when it does not exist.
#[derive(Clone, Debug, PartialEq)]
pub struct GetChannel {
    /// By name (`Some`) or by id.
    pub name: Option<String>,
    /// The id, when looked up by id.
    pub id: ChannelId,
}
impl GetChannel {
    /// From a [`ChannelKey`].
    pub fn new(key: ChannelKey<'_>) -> GetChannel {
        match key {
            ChannelKey::Name(n) => GetChannel {
                name: Some(n.to_string()),
                id: ChannelId(0),
            },
            ChannelKey::Id(id) => GetChannel { name: None, id },
        }
    }
}
impl sealed::Sealed for GetChannel {}
impl Operation for GetChannel {
    type Output = Option<ChannelEntry>;
    fn into_task(self) -> Box<dyn Task> {
        let key = match self.name {
            Some(n) => LookupKey::Name(n),
            None => LookupKey::Id(self.id),
        };
        lookup(key, Box::new(|e| Err(done(e))))
    }
}

op!(
    /// Bytes available on the channel named `name` (0 when it does not exist).
    ChannelSize { /** The name. */ pub name: String } => u32, retries = true,
    |s| by_name(&s.name, Box::new(|e| match e {
        None => Err(done(0u32)),
        Some(e) => Ok(Size { id: e.id }.into_task()),
    }))
);
op!(
    /// Reads `size` bytes (or all available) from the channel named `name`:
    /// `None` when it does not exist. Resumes after failures.
    ChannelRead { /** The name. */ pub name: String, /** Bytes, or all available. */ pub size: Option<u32> } => Option<Vec<u8>>, retries = true,
    |s| {
        let size = s.size;
        by_name(&s.name, Box::new(move |e| match e {
            None => Err(done(Option::<Vec<u8>>::None)),
            Some(e) => Ok(Box::new(SizedRead::new(e.id, size, true)) as Box<dyn Task>),
        }))
    }
);
op!(
    /// Reads everything available on channel `id` now (CHANNEL_SIZE, then a
    /// resumable read; empty when nothing is). A soft reboot during the
    /// read (a script ending) starts it over from the size, whole: the
    /// output is what one content held, never two joined.
    ReadAvailable { /** The channel. */ pub id: ChannelId } => Vec<u8>, retries = true,
    |s| Box::new(SizedRead { restart: true, ..SizedRead::new(s.id, None, false) })
);

op!(
    /// [`ChannelRead`] into the caller's buffer (cleared, its capacity
    /// reused, returned as the output): `None` when the channel does not
    /// exist. Allocates nothing per packet; with enough capacity, the same
    /// few times whatever the size.
    ChannelReadInto {
        /** The name. */ pub name: String,
        /** Bytes, or all available. */ pub size: Option<u32>,
        /** Where the bytes go. */ pub buf: Vec<u8>,
    } => Option<Vec<u8>>, retries = true,
    |s| {
        let (size, buf) = (s.size, s.buf);
        by_name(&s.name, Box::new(move |e| match e {
            None => Err(done(Option::<Vec<u8>>::None)),
            Some(e) => {
                let mut r = SizedRead::new(e.id, size, true);
                r.buf = Some(buf);
                Ok(Box::new(r) as Box<dyn Task>)
            }
        }))
    }
);
op!(
    /// Writes to the channel named `name`: `false` when it does not exist.
    /// Resumes after failures (stdin from offset 0).
    ChannelWrite { /** The name. */ pub name: String, /** The bytes. */ pub data: Bytes } => bool, retries = true,
    |s| {
        let data = s.data;
        by_name(&s.name, Box::new(move |e| match e {
            None => Err(done(false)),
            Some(e) => Ok(Box::new(Then { inner: Box::new(WriteTask::new(e.id, 0, data)), map: |_| boxed(true) }) as Box<dyn Task>),
        }))
    }
);

/// Maps a task's successful output.
struct Then {
    inner: Box<dyn Task>,
    map: fn(Box<dyn core::any::Any + Send>) -> Box<dyn core::any::Any + Send>,
}
impl Task for Then {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn done(&self) -> u64 {
        self.inner.done()
    }
    fn step(&mut self, cx: &mut Cache, input: Input) -> Action {
        match self.inner.step(cx, input) {
            Action::Done(Ok(v)) => Action::Done(Ok((self.map)(v))),
            a => a,
        }
    }
}

/// CHANNEL_SIZE (unless the size is given), then a resumable read; a
/// failure during the size restarts it.
struct SizedRead {
    id: ChannelId,
    size: Option<u32>,
    read: Option<ReadTask>,
    wrap: bool,
    /// The channel consumes what it sends (see [`ReadTask`]).
    consuming: bool,
    /// A soft reboot during the read starts it over from the size (the
    /// bytes before it dropped) instead of failing with [`Error::Rebooted`].
    restart: bool,
    /// The caller's buffer, until the read starts.
    buf: Option<Vec<u8>>,
}
impl SizedRead {
    fn new(id: ChannelId, size: Option<u32>, wrap: bool) -> SizedRead {
        SizedRead {
            id,
            size,
            read: None,
            wrap,
            consuming: false,
            restart: false,
            buf: None,
        }
    }
    /// Of a channel that consumes what it sends (see [`ReadTask`]).
    fn consuming(mut self) -> SizedRead {
        self.consuming = true;
        self
    }
    fn start_read(&mut self, cx: &mut Cache, n: u32) -> Action {
        let buf = self.buf.take().unwrap_or_default();
        let mut r = ReadTask::with_buffer(self.id, 0, n, buf);
        r.consuming = self.consuming;
        let a = r.step(cx, Input::Start);
        self.read = Some(r);
        self.wrapped(a)
    }
    fn wrapped(&self, a: Action) -> Action {
        match a {
            Action::Done(Ok(v)) if self.wrap => match v.downcast::<Vec<u8>>() {
                Ok(v) => done(Some(*v)),
                Err(v) => Action::Done(Ok(v)),
            },
            a => a,
        }
    }
}
impl Task for SizedRead {
    fn size(&self) -> u64 {
        self.read.as_ref().map_or(0, |r| r.size())
    }
    fn done(&self) -> u64 {
        self.read.as_ref().map_or(0, |r| r.done())
    }
    fn step(&mut self, cx: &mut Cache, input: Input) -> Action {
        if let (Some(r), Input::Resumed { partial, rebooted }) = (&self.read, &input) {
            // A soft reboot before any byte arrived (or any time, when
            // asked to start over): the size may have changed too; measure
            // again.
            let none_yet = r.got_nothing(cx) && partial.is_empty();
            if *rebooted && self.size.is_none() && (none_yet || self.restart) {
                if !none_yet {
                    log::info!("the cam soft-rebooted during a read; reading again, whole");
                }
                // The bytes before the reboot go (the buffer is cleared
                // when the read starts again).
                self.buf = self.read.take().map(|r| r.into_buffer(cx));
                return Action::Send(Command::new(Opcode::CHANNEL_SIZE, self.id), data_info());
            }
        }
        if let Some(r) = self.read.as_mut() {
            let a = r.step(cx, input);
            return self.wrapped(a);
        }
        match (input, self.size) {
            (Input::Start | Input::Resumed { .. }, Some(n)) => self.start_read(cx, n),
            (Input::Start | Input::Resumed { .. }, None) => {
                Action::Send(Command::new(Opcode::CHANNEL_SIZE, self.id), data_info())
            }
            (Input::Reply(r), _) => match decode_u32(&reply_bytes(r)) {
                Ok(n) => self.start_read(cx, n),
                Err(e) => fail(Error::Malformed {
                    what: "channel size",
                    source: e,
                }),
            },
            (Input::Failed(e), _) => fail(e),
        }
    }
}

op!(
    /// Polls every channel: which have data ready (the cache refreshed first
    /// when stale).
    ReadStatus => ChannelStatus, retries = true, |_s| Box::new(StatusTask { bitmap: None, list: None })
);
struct StatusTask {
    bitmap: Option<PollBitmap>,
    list: Option<Box<dyn Task>>,
}
impl Task for StatusTask {
    fn step(&mut self, cx: &mut Cache, input: Input) -> Action {
        if let Some(l) = self.list.as_mut() {
            let a = l.step(cx, input);
            return match a {
                Action::Done(Ok(_)) => self.finish(cx),
                a => a,
            };
        }
        match input {
            Input::Start | Input::Resumed { .. } => {
                Action::Send(Command::system(Opcode::CHANNEL_POLL), data_info())
            }
            Input::Reply(r) => match PollBitmap::decode(&reply_bytes(r)) {
                Ok(b) => {
                    cx.state.script_running = Some(b.is_ready(ChannelId::STDIN));
                    self.bitmap = Some(b);
                    let mut l = Channels.into_task();
                    let a = l.step(cx, Input::Start);
                    self.list = Some(l);
                    match a {
                        Action::Done(Ok(_)) => self.finish(cx),
                        a => a,
                    }
                }
                Err(e) => fail(Error::Malformed {
                    what: "poll bitmap",
                    source: e,
                }),
            },
            Input::Failed(e) => fail(e),
        }
    }
}
impl StatusTask {
    fn finish(&mut self, cx: &Cache) -> Action {
        let bitmap = self.bitmap.unwrap_or_default();
        let channels = cx
            .channels
            .iter()
            .map(|e| (e.clone(), bitmap.is_ready(e.id)))
            .collect();
        done(ChannelStatus { bitmap, channels })
    }
}

// ----------------------------------------------------------------------
// Scripts
// ----------------------------------------------------------------------

op!(
    /// Uploads a script and runs it, exactly once: every attempt clears the
    /// script buffer (STDIN_RESET), writes from offset 0 and sends EXEC;
    /// when EXEC's answer is lost but the cam reported the script started,
    /// it is not run again.
    Exec { /** The script. */ pub script: Bytes } => (), retries = true, |s| {
        let script = s.script;
        if script.is_empty() {
            return Box::new(Fail(Some(Error::InvalidArgument("the script is empty".to_string()))));
        }
        builtin("stdin", move |id| Box::new(ExecTask { id, script, stage: ExecStage::Reset, started: 0, write: None }))
    }
);

struct Fail(Option<Error>);
impl Task for Fail {
    fn step(&mut self, _cx: &mut Cache, _input: Input) -> Action {
        fail(self.0.take().unwrap_or(Error::NotConnected))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ExecStage {
    Reset,
    Write,
    Exec,
}

struct ExecTask {
    id: ChannelId,
    script: Bytes,
    stage: ExecStage,
    started: u64,
    write: Option<WriteTask>,
}
impl ExecTask {
    fn reset(&mut self) -> Action {
        self.stage = ExecStage::Reset;
        Action::Send(Command::ioctl(self.id, STDIN_RESET, &[]), restartable())
    }
    fn exec(&mut self, cx: &Cache) -> Action {
        self.stage = ExecStage::Exec;
        self.started = cx.state.scripts_started;
        Action::Send(Command::ioctl(self.id, STDIN_EXEC, &[]), restartable())
    }
}
impl Task for ExecTask {
    fn size(&self) -> u64 {
        self.script.len() as u64
    }
    fn step(&mut self, cx: &mut Cache, input: Input) -> Action {
        if let Input::Resumed { .. } = input {
            if self.stage == ExecStage::Exec && cx.state.scripts_started > self.started {
                log::info!("EXEC's answer was lost but the script started: not re-running");
                return done(());
            }
            // Start over: reset, upload from 0, EXEC.
            self.write = None;
            return self.reset();
        }
        match self.stage {
            ExecStage::Reset => match input {
                Input::Start => self.reset(),
                Input::Reply(_) => {
                    self.stage = ExecStage::Write;
                    // A failed chunk restarts the whole exec (this task
                    // takes the Resumed input), not the write.
                    let mut w = WriteTask::new(self.id, 0, self.script.clone());
                    let a = w.step(cx, Input::Start);
                    self.write = Some(w);
                    match a {
                        Action::Done(Ok(_)) => self.exec(cx),
                        a => a,
                    }
                }
                Input::Failed(e) => fail(e),
                Input::Resumed { .. } => self.reset(),
            },
            ExecStage::Write => {
                let Some(w) = self.write.as_mut() else {
                    return self.reset();
                };
                match w.step(cx, input) {
                    Action::Done(Ok(_)) => self.exec(cx),
                    a => a,
                }
            }
            ExecStage::Exec => match input {
                Input::Reply(_) => done(()),
                Input::Failed(e) => fail(e),
                _ => self.exec(cx),
            },
        }
    }
}

op!(
    /// Stops the running script.
    Stop => (), retries = true, |_s| builtin("stdin", |id| one(
        Command::ioctl(id, STDIN_STOP, &[]), info(), |_, _| Ok(boxed(()))))
);

op!(
    /// The script's pending output as text (`None` when none). UTF-8
    /// characters split across reads are kept whole; invalid bytes become
    /// U+FFFD.
    ReadStdout => Option<String>, retries = true, |_s| builtin("stdout", |id| Box::new(Text {
        inner: Box::new(SizedRead::new(id, None, false).consuming()),
    }))
);
op!(
    /// The script's pending output as bytes (empty when none).
    ReadStdoutBytes => Vec<u8>, retries = true, |_s| builtin("stdout", |id| Box::new(SizedRead::new(id, None, false).consuming()))
);

struct Text {
    inner: Box<dyn Task>,
}
impl Task for Text {
    fn step(&mut self, cx: &mut Cache, input: Input) -> Action {
        match self.inner.step(cx, input) {
            Action::Done(Ok(v)) => {
                let bytes = v.downcast::<Vec<u8>>().map(|b| *b).unwrap_or_default();
                if bytes.is_empty() {
                    return done(Option::<String>::None);
                }
                let mut all = core::mem::take(&mut cx.stdout_carry);
                all.extend_from_slice(&bytes);
                let (text, carry) = decode_utf8_prefix(&all);
                cx.stdout_carry = carry.to_vec();
                done(if text.is_empty() { None } else { Some(text) })
            }
            a => a,
        }
    }
}

/// Splits `bytes` into the text it holds and an incomplete UTF-8 sequence
/// at its end (at most 3 bytes), replacing invalid bytes with U+FFFD.
pub(crate) fn decode_utf8_prefix(bytes: &[u8]) -> (String, &[u8]) {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match core::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return (out, &[]);
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(core::str::from_utf8(good).unwrap_or_default());
                match e.error_len() {
                    None => return (out, bad),
                    Some(n) => {
                        out.push('\u{FFFD}');
                        rest = &bad[n..];
                    }
                }
            }
        }
    }
}

// ----------------------------------------------------------------------
// Streaming and frames
// ----------------------------------------------------------------------

op!(
    /// Turns the frame stream on or off; `raw` sends uncompressed frames
    /// scaled to `resolution` (required with `raw`).
    Streaming {
        /** On or off. */ pub enable: bool,
        /** Uncompressed frames. */ pub raw: bool,
        /** Raw frame size. */ pub resolution: Option<(u32, u32)>,
    } => (), retries = true, |s| {
        if s.raw && s.resolution.is_none() {
            return Box::new(Fail(Some(Error::InvalidArgument(
                "raw streaming needs a resolution (width, height)".to_string()))));
        }
        builtin("stream", move |id| {
            let mut cmds = Vec::new();
            if let (true, Some((w, h))) = (s.raw, s.resolution) {
                cmds.push(Command::ioctl(id, STREAM_RAW_CFG, &u32_args(&[w, h])));
            }
            cmds.push(Command::ioctl(id, STREAM_RAW_CTRL, &u32_args(&[u32::from(s.raw)])));
            cmds.push(Command::ioctl(id, STREAM_CTRL, &u32_args(&[u32::from(s.enable)])));
            Box::new(Sequence { cmds, at: 0 })
        })
    }
);

/// Requests that must all succeed, in order; started over after a resync.
struct Sequence {
    cmds: Vec<Command>,
    at: usize,
}
impl Task for Sequence {
    fn step(&mut self, _cx: &mut Cache, input: Input) -> Action {
        match input {
            Input::Start => {}
            Input::Resumed { .. } => self.at = 0,
            Input::Reply(_) => self.at += 1,
            Input::Failed(e) => return fail(e),
        }
        match self.cmds.get(self.at) {
            Some(c) => Action::Send(c.clone(), info()),
            None => done(()),
        }
    }
}

op!(
    /// Reads the waiting frame without decoding it: lock, size, read,
    /// unlock. `None` when no frame is waiting (lock BUSY or empty).
    ReadFrame => Option<RawFrame>, retries = true, |_s| builtin("stream", |id| Box::new(Locked {
        id, stage: LockStage::Lock, kind: LockedKind::Frame, size: 0, result: None, busy_waits: 0, resumed: false,
    }))
);

op!(
    /// Reads the profile records' bytes (lock, shape, read, unlock): `None`
    /// without a profile channel or data. A BUSY lock (the firmware grants
    /// no lock within [`LOCK_INTERVAL`] of the last one on any channel, a
    /// frame read a moment before, say) is asked again after
    /// [`PROFILE_BUSY_WAIT`], up to [`PROFILE_BUSY_TRIES`] times within the
    /// deadline, before it counts as "no data". The record layout is decoded by
    /// the caller with [`ProfileData::records`].
    ReadProfile => Option<ProfileData>, retries = true, |_s| by_name("profile", Box::new(|e| match e {
        None => Err(done(Option::<ProfileData>::None)),
        Some(e) => Ok(Box::new(NeedSysInfo { inner: Some(Box::new(Locked {
            id: e.id, stage: LockStage::Lock, kind: LockedKind::Profile, size: 0, result: None, busy_waits: 0, resumed: false,
        })), started: false }) as Box<dyn Task>),
    }))
);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum LockStage {
    Lock,
    Measure,
    Read,
    Unlock,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum LockedKind {
    Frame,
    Profile,
}

/// How long a profile read waits after a BUSY lock before it asks again:
/// twice [`LOCK_INTERVAL`], since the cam counts the interval from its
/// last lock in its own millisecond ticks.
pub const PROFILE_BUSY_WAIT: core::time::Duration = LOCK_INTERVAL.saturating_mul(2);

/// Locks a profile read asks again after BUSY before "no data".
pub const PROFILE_BUSY_TRIES: u8 = 3;

/// A read under a lock; after a resync (which releases the lock) it
/// starts over from the lock.
struct Locked {
    id: ChannelId,
    stage: LockStage,
    kind: LockedKind,
    size: u32,
    result: Option<Box<dyn core::any::Any + Send>>,
    /// BUSY locks waited out so far.
    busy_waits: u8,
    /// The lock was asked for before in this operation (it resumed after
    /// a resync): a BUSY answer may be the cam's lock interval counted
    /// from that lock, granted though its answer was given up.
    resumed: bool,
}

impl Locked {
    fn send(&mut self, stage: LockStage) -> Action {
        self.stage = stage;
        let c = match stage {
            LockStage::Lock => Command::new(Opcode::CHANNEL_LOCK, self.id),
            LockStage::Measure if self.kind == LockedKind::Frame => {
                Command::new(Opcode::CHANNEL_SIZE, self.id)
            }
            LockStage::Measure => Command::new(Opcode::CHANNEL_SHAPE, self.id),
            LockStage::Read => Command::read(self.id, 0, self.size),
            LockStage::Unlock => Command::new(Opcode::CHANNEL_UNLOCK, self.id),
        };
        let i = SendInfo {
            offset: (stage == LockStage::Read).then_some(0),
            resumable: false,
            data_answer: stage != LockStage::Lock && stage != LockStage::Unlock,
            max_answer: (stage == LockStage::Read).then_some(self.size),
            stream: false,
        };
        Action::Send(c, i)
    }

    fn none(&self) -> Action {
        match self.kind {
            LockedKind::Frame => done(Option::<RawFrame>::None),
            LockedKind::Profile => done(Option::<ProfileData>::None),
        }
    }

    fn unlock_then(&mut self, result: Box<dyn core::any::Any + Send>) -> Action {
        self.result = Some(result);
        self.send(LockStage::Unlock)
    }
}

impl Task for Locked {
    fn size(&self) -> u64 {
        u64::from(self.size)
    }
    fn step(&mut self, cx: &mut Cache, input: Input) -> Action {
        let bit = 1u32 << (self.id.0 & 31);
        let reply = match input {
            Input::Start | Input::Resumed { .. } => {
                self.resumed |= matches!(input, Input::Resumed { .. });
                self.result = None;
                return self.send(LockStage::Lock);
            }
            Input::Failed(e) => {
                return match self.stage {
                    LockStage::Lock
                        if e.is_nak(Status::BUSY)
                            && self.kind == LockedKind::Profile
                            && self.busy_waits < PROFILE_BUSY_TRIES =>
                    {
                        self.busy_waits += 1;
                        Action::Wait {
                            time: PROFILE_BUSY_WAIT,
                            op: Opcode::CHANNEL_LOCK,
                            channel: self.id.0,
                        }
                    }
                    // A frame read that asked for the lock before (the
                    // lock may have been granted, its answer lost): BUSY
                    // may be the interval since that lock; wait it out once.
                    LockStage::Lock
                        if e.is_nak(Status::BUSY) && self.resumed && self.busy_waits == 0 =>
                    {
                        self.busy_waits += 1;
                        Action::Wait {
                            time: PROFILE_BUSY_WAIT,
                            op: Opcode::CHANNEL_LOCK,
                            channel: self.id.0,
                        }
                    }
                    LockStage::Lock if e.is_nak(Status::BUSY) => self.none(),
                    // Out of time to wait out a BUSY lock: no data.
                    LockStage::Lock
                        if self.busy_waits > 0 && matches!(e, Error::DeadlineExceeded { .. }) =>
                    {
                        self.none()
                    }
                    LockStage::Unlock => {
                        // The data is complete; a failed unlock resynced
                        // the link (which released the lock) or was BUSY.
                        log::debug!("unlock failed after a complete read: {e}");
                        cx.locks &= !bit;
                        match self.result.take() {
                            Some(r) => Action::Done(Ok(r)),
                            None => self.none(),
                        }
                    }
                    _ => fail(e),
                };
            }
            Input::Reply(r) => reply_bytes(r),
        };
        match self.stage {
            LockStage::Lock => {
                cx.locks |= bit;
                if self.kind == LockedKind::Frame {
                    cx.state.frame_ready = false;
                }
                self.send(LockStage::Measure)
            }
            LockStage::Measure if self.kind == LockedKind::Frame => match decode_u32(&reply) {
                Ok(n) if (n as usize) <= FrameHeader::LEN_V4 => {
                    self.unlock_then(boxed(Option::<RawFrame>::None))
                }
                Ok(n) => {
                    self.size = n;
                    self.send(LockStage::Read)
                }
                Err(e) => fail(Error::Malformed {
                    what: "channel size",
                    source: e,
                }),
            },
            LockStage::Measure => {
                let shape = match Shape::decode(&reply) {
                    Ok(s) => s,
                    Err(e) => {
                        return fail(Error::Malformed {
                            what: "channel shape",
                            source: e,
                        })
                    }
                };
                let [count, size] = match shape.dims() {
                    [a, b, ..] => [*a, *b],
                    _ => return self.unlock_then(boxed(Option::<ProfileData>::None)),
                };
                let total = u64::from(count) * u64::from(size);
                if total == 0 {
                    return self.unlock_then(boxed(Option::<ProfileData>::None));
                }
                if total > MAX_PROFILE_BYTES {
                    return fail(Error::Malformed {
                        what: "profile shape",
                        source: omv_proto::DecodeError::InvalidValue {
                            what: "profile table size",
                            value: total,
                        },
                    });
                }
                self.size = total as u32;
                self.result = Some(boxed(size));
                self.send(LockStage::Read)
            }
            LockStage::Read => {
                if reply.len() > self.size as usize {
                    return fail(Error::Overflow {
                        op: Opcode::CHANNEL_READ,
                        channel: self.id.0,
                        offset: 0,
                        asked: self.size,
                        got: reply.len(),
                    });
                }
                match self.kind {
                    LockedKind::Frame => match FrameHeader::decode(&reply) {
                        Ok(header) => {
                            let data = header.image_data(&reply).to_vec();
                            self.unlock_then(boxed(Some(RawFrame { header, data })))
                        }
                        Err(e) => fail(Error::Malformed {
                            what: "frame header",
                            source: e,
                        }),
                    },
                    LockedKind::Profile => {
                        let record_size = self
                            .result
                            .take()
                            .and_then(|b| b.downcast::<u32>().ok())
                            .map_or(0, |b| *b as usize);
                        let pmu = cx.sysinfo.map_or(0, |s| s.pmu_eventcnt);
                        self.unlock_then(boxed(Some(ProfileData {
                            data: Vec::from(reply),
                            record_size,
                            pmu_eventcnt: pmu,
                        })))
                    }
                }
            }
            LockStage::Unlock => {
                cx.locks &= !bit;
                match self.result.take() {
                    Some(r) => Action::Done(Ok(r)),
                    None => self.none(),
                }
            }
        }
    }
}

/// Reads SYS_INFO first when it is not cached (profile records need the
/// PMU counter count).
struct NeedSysInfo {
    inner: Option<Box<dyn Task>>,
    started: bool,
}
impl Task for NeedSysInfo {
    fn size(&self) -> u64 {
        self.inner.as_ref().map_or(0, |t| t.size())
    }
    fn step(&mut self, cx: &mut Cache, input: Input) -> Action {
        if self.started {
            return match self.inner.as_mut() {
                Some(t) => t.step(cx, input),
                None => fail(Error::NotConnected),
            };
        }
        match input {
            Input::Reply(r) => match SysInfo::decode(&reply_bytes(r)) {
                Ok(s) => cx.sysinfo = Some(SystemInfo::from(s)),
                Err(e) => {
                    return fail(Error::Malformed {
                        what: "SYS_INFO payload",
                        source: e,
                    })
                }
            },
            Input::Failed(e) => return fail(e),
            _ => {}
        }
        if cx.sysinfo.is_none() {
            return Action::Send(Command::system(Opcode::SYS_INFO), data_info());
        }
        self.started = true;
        match self.inner.as_mut() {
            Some(t) => t.step(cx, Input::Start),
            None => fail(Error::NotConnected),
        }
    }
}

// ----------------------------------------------------------------------
// Profiler
// ----------------------------------------------------------------------

op!(
    /// Exclusive (`true`) or inclusive timing; a no-op without a profile
    /// channel.
    ProfilerMode { /** Exclusive. */ pub exclusive: bool } => (), retries = true,
    |s| profile_cmds(move |id, _| alloc::vec![Command::ioctl(id, PROFILE_MODE, &u32_args(&[u32::from(s.exclusive)]))])
);
op!(
    /// Binds PMU counter `counter` to `event`; a no-op without a profile
    /// channel or a PMU.
    ProfilerEvent { /** Counter. */ pub counter: u32, /** Event id. */ pub event: u32 } => (), retries = true,
    |s| profile_cmds(move |id, si| if si.pmu_present {
        alloc::vec![Command::ioctl(id, PROFILE_SET_EVENT, &u32_args(&[s.counter, s.event]))]
    } else { Vec::new() })
);
op!(
    /// Clears the profile counters and assigns `events[i]` to counter `i`
    /// ([`DEFAULT_PROFILE_EVENTS`] when `None`), only for the cam's
    /// `pmu_eventcnt` counters; a no-op without a profile channel.
    ProfilerReset { /** Events per counter. */ pub events: Option<Vec<u32>> } => (), retries = true,
    |s| profile_cmds(move |id, si| {
        let mut v = alloc::vec![Command::ioctl(id, PROFILE_RESET, &[])];
        let events = s.events.unwrap_or_else(|| DEFAULT_PROFILE_EVENTS.to_vec());
        if si.pmu_present {
            let n = usize::from(si.pmu_eventcnt).min(events.len());
            for (counter, &event) in events[..n].iter().enumerate() {
                v.push(Command::ioctl(id, PROFILE_SET_EVENT, &u32_args(&[counter as u32, event])));
            }
        }
        v
    })
);

fn profile_cmds(
    make: impl FnOnce(ChannelId, SystemInfo) -> Vec<Command> + Send + 'static,
) -> Box<dyn Task> {
    by_name(
        "profile",
        Box::new(move |e| match e {
            None => Err(done(())),
            Some(e) => Ok(Box::new(NeedSysInfo {
                inner: Some(Box::new(Deferred {
                    make: Some(Box::new(move |cx: &Cache| {
                        make(e.id, cx.sysinfo.unwrap_or_default())
                    })),
                    seq: None,
                })),
                started: false,
            }) as Box<dyn Task>),
        }),
    )
}

type MakeCmds = Box<dyn FnOnce(&Cache) -> Vec<Command> + Send>;

/// A [`Sequence`] whose requests are built when it starts.
struct Deferred {
    make: Option<MakeCmds>,
    seq: Option<Sequence>,
}
impl Task for Deferred {
    fn step(&mut self, cx: &mut Cache, input: Input) -> Action {
        if let Some(make) = self.make.take() {
            self.seq = Some(Sequence {
                cmds: make(cx),
                at: 0,
            });
        }
        match self.seq.as_mut() {
            Some(s) => s.step(cx, input),
            None => fail(Error::NotConnected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_carry() {
        let s = "hé€".as_bytes();
        let (t, c) = decode_utf8_prefix(&s[..s.len() - 1]);
        assert_eq!(t, "hé");
        assert_eq!(c, &s[3..5]);
        let (t, c) = decode_utf8_prefix(b"a\xffb");
        assert_eq!(t, "a\u{FFFD}b");
        assert!(c.is_empty());
    }
}
