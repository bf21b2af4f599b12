//! The built-in stream channel (id 3, flags READ|LOCK|STREAM, section 9).
//!
//! The channel holds at most one frame: a 24-byte [`FrameHeader`] (with
//! fps) followed by the image. While streaming is enabled (ioctl CTRL), a
//! [`FrameSource`] produces a new frame every `1 / fps` seconds of the
//! cam's clock, whenever the frame is not locked: like the firmware's
//! stream buffer, an unlocked frame is overwritten by the next one, so the
//! host always gets the latest. A locked frame stays until unlock, which
//! releases it (size 0) so the next frame can be produced.
//!
//! Production is driven by the `now` the cam loop passes to
//! [`poll_event`](ChannelBackend::poll_event) / [`poll`](ChannelBackend::poll)
//! (or [`StreamChannel::tick`]); there are no threads, so for a given clock
//! the frames are deterministic. Each new frame yields one NOTIFY event.

use omv_proto::backend::{ChannelBackend, ChannelError, ChannelEventOut, Ops};
use omv_proto::frame::FrameHeader;
use omv_proto::ioctl::{STREAM_CTRL, STREAM_RAW_CFG, STREAM_RAW_CTRL, STREAM_SOURCE};
use omv_proto::shape::Shape;
use omv_proto::{ChannelFlags, Duration, Instant};

use std::sync::Arc;

use crate::args::{copy_exact, size_u32, u32_args};
use crate::runtime::{FrameBuffer, FrameSettings};
use crate::source::{Frame, FrameRequest, FrameSource, PatternSource};

/// Largest raw width or height RAW_CFG accepts.
pub const MAX_RAW_DIM: u32 = 4096;
/// Default stream buffer size when the board does not set one (1 MiB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1 << 20;

/// Settings of the stream channel.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StreamConfig {
    /// Frames per second while streaming (clamped to 0.1..=1000).
    pub fps: f32,
    /// Whether streaming starts enabled (the host normally enables it with CTRL).
    pub enabled: bool,
    /// Initial raw mode.
    pub raw: bool,
    /// Initial raw frame size.
    pub raw_width: u32,
    /// Initial raw frame height.
    pub raw_height: u32,
    /// Largest image (bytes) the stream buffer holds; RAW_CFG sizes whose
    /// RGB565 frame would exceed it are rejected.
    pub max_frame_bytes: usize,
    /// Chip ids SOURCE accepts (0 = default sensor is always accepted);
    /// empty accepts any id.
    pub sensors: Vec<u32>,
}

/// Chainable setters, one per field (the struct is `#[non_exhaustive]`:
/// build it from [`Default::default`] and these, not with a struct literal).
impl StreamConfig {
    /// Sets [`fps`](Self::fps).
    #[must_use]
    pub fn fps(mut self, fps: f32) -> Self {
        self.fps = fps;
        self
    }
    /// Sets [`enabled`](Self::enabled).
    #[must_use]
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }
    /// Sets [`raw`](Self::raw).
    #[must_use]
    pub fn raw(mut self, raw: bool) -> Self {
        self.raw = raw;
        self
    }
    /// Sets [`raw_width`](Self::raw_width).
    #[must_use]
    pub fn raw_width(mut self, raw_width: u32) -> Self {
        self.raw_width = raw_width;
        self
    }
    /// Sets [`raw_height`](Self::raw_height).
    #[must_use]
    pub fn raw_height(mut self, raw_height: u32) -> Self {
        self.raw_height = raw_height;
        self
    }
    /// Sets [`max_frame_bytes`](Self::max_frame_bytes).
    #[must_use]
    pub fn max_frame_bytes(mut self, max_frame_bytes: usize) -> Self {
        self.max_frame_bytes = max_frame_bytes;
        self
    }
    /// Sets [`sensors`](Self::sensors).
    #[must_use]
    pub fn sensors(mut self, sensors: Vec<u32>) -> Self {
        self.sensors = sensors;
        self
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            fps: 30.0,
            enabled: false,
            raw: false,
            raw_width: 320,
            raw_height: 240,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            sensors: Vec::new(),
        }
    }
}

/// The frame currently held.
#[derive(Clone, Debug)]
struct Slot {
    header: FrameHeader,
    /// Header followed by the image.
    bytes: Vec<u8>,
}

/// The stream channel. See the module documentation.
pub struct StreamChannel {
    source: Box<dyn FrameSource>,
    cfg: StreamConfig,
    interval: Duration,
    enabled: bool,
    raw: bool,
    raw_width: u32,
    raw_height: u32,
    sensor: u32,
    slot: Option<Slot>,
    locked: bool,
    produced: u64,
    next_due: Option<Instant>,
    last_frame_at: Option<Instant>,
    fps_estimate: f32,
    notify_pending: bool,
    last_now: Instant,
    /// Script-fed mode: frames come from the script's snapshots.
    frames: Option<Arc<FrameBuffer>>,
    frames_seen: u64,
    /// The script's frame rate is counted over windows of [`FPS_WINDOW`].
    window_start: Option<Instant>,
    window_frames: u64,
}

/// Window over which a script-fed stream counts the script's frame rate.
const FPS_WINDOW: Duration = Duration::from_millis(500);

/// How often a script-fed stream looks for a new frame while streaming.
pub const FRAME_BUFFER_POLL: Duration = Duration::from_millis(5);

impl std::fmt::Debug for StreamChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamChannel")
            .field("enabled", &self.enabled)
            .field("raw", &self.raw)
            .field("raw_size", &(self.raw_width, self.raw_height))
            .field("locked", &self.locked)
            .field("frame", &self.slot.as_ref().map(|s| s.header))
            .field("produced", &self.produced)
            .finish()
    }
}

impl Default for StreamChannel {
    fn default() -> Self {
        StreamChannel::new(Box::new(PatternSource::default()), StreamConfig::default())
    }
}

impl StreamChannel {
    /// A stream channel producing frames from `source`.
    pub fn new(source: Box<dyn FrameSource>, cfg: StreamConfig) -> Self {
        let fps = if cfg.fps.is_finite() {
            cfg.fps.clamp(0.1, 1000.0)
        } else {
            30.0
        };
        let interval = Duration::from_secs_f64(1.0 / f64::from(fps));
        let (raw_width, raw_height) = if valid_raw_size(cfg.raw_width, cfg.raw_height, &cfg) {
            (cfg.raw_width, cfg.raw_height)
        } else {
            (320, 240)
        };
        StreamChannel {
            source,
            interval,
            enabled: cfg.enabled,
            raw: cfg.raw,
            raw_width,
            raw_height,
            sensor: 0,
            slot: None,
            locked: false,
            produced: 0,
            next_due: None,
            last_frame_at: None,
            fps_estimate: fps,
            notify_pending: false,
            last_now: Instant::ZERO,
            frames: None,
            frames_seen: 0,
            window_start: None,
            window_frames: 0,
            cfg: StreamConfig { fps, ..cfg },
        }
    }

    /// Script-fed mode, as on a cam: frames are what the script's
    /// snapshots and `img.flush()` put into `frames` (encoded there for
    /// this channel's settings), one NOTIFY per frame; with no script
    /// taking snapshots nothing is streamed. Without it the channel runs
    /// free, producing frames from its source at its frame rate.
    pub fn with_frame_buffer(mut self, frames: Arc<FrameBuffer>) -> Self {
        self.frames = Some(frames);
        self
    }

    fn frame_settings(&self) -> FrameSettings {
        FrameSettings {
            streaming: self.enabled,
            raw: self.raw,
            raw_width: self.raw_width,
            raw_height: self.raw_height,
            max_bytes: self.cfg.max_frame_bytes,
        }
    }

    /// The raw frame size (RAW_CFG).
    #[cfg(test)]
    pub fn raw_size(&self) -> (u32, u32) {
        (self.raw_width, self.raw_height)
    }

    /// The sensor chip id selected with SOURCE (0 = default).
    #[cfg(test)]
    pub fn sensor(&self) -> u32 {
        self.sensor
    }

    /// True while the host holds the lock.
    #[cfg(test)]
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// Frames produced so far (the next frame's number).
    #[cfg(test)]
    pub fn frames_produced(&self) -> u64 {
        self.produced
    }

    /// The header of the frame held, if any.
    #[cfg(test)]
    pub fn frame_header(&self) -> Option<FrameHeader> {
        self.slot.as_ref().map(|s| s.header)
    }

    /// The frame held (header and image), if any.
    #[cfg(test)]
    pub fn frame_bytes(&self) -> Option<&[u8]> {
        self.slot.as_ref().map(|s| s.bytes.as_slice())
    }

    /// Enables or disables streaming, as CTRL does.
    pub fn set_enabled(&mut self, enabled: bool) {
        if enabled && !self.enabled {
            self.next_due = None;
        }
        self.enabled = enabled;
    }

    /// Produces the next frame if streaming is enabled, the frame is not
    /// locked and the frame interval has elapsed; returns true if it did.
    pub fn tick(&mut self, now: Instant) -> bool {
        self.last_now = self.last_now.max(now);
        if let Some(fb) = self.frames.clone() {
            fb.set_settings(self.frame_settings());
            if !self.enabled || self.locked {
                return false;
            }
            let Some((seq, frame)) = fb.take_newer(self.frames_seen) else {
                return false;
            };
            // The script's frame rate: frames published since the last one
            // taken (the host may take only some of them).
            let published = seq.wrapping_sub(self.frames_seen).max(1);
            self.frames_seen = seq;
            self.window_frames = self.window_frames.saturating_add(published);
            let start = *self.window_start.get_or_insert(now);
            let dt = now.saturating_duration_since(start);
            if dt >= FPS_WINDOW {
                self.fps_estimate = (self.window_frames as f32 / dt.as_secs_f32()).min(1000.0);
                self.window_start = Some(now);
                self.window_frames = 0;
            }
            self.store(frame);
            self.produced = self.produced.wrapping_add(1);
            self.notify_pending = true;
            return true;
        }
        if !self.enabled || self.locked {
            return false;
        }
        if matches!(self.next_due, Some(due) if now < due) {
            return false;
        }
        // Keep the cadence, but do not burst to catch up after a stall.
        self.next_due = Some(match self.next_due {
            Some(due) if now.saturating_duration_since(due) < self.interval => due + self.interval,
            _ => now + self.interval,
        });
        let req = FrameRequest {
            raw: self.raw,
            raw_width: self.raw_width,
            raw_height: self.raw_height,
            index: self.produced,
            sensor: self.sensor,
            max_bytes: self.cfg.max_frame_bytes,
        };
        match self.source.next_frame(&req) {
            Ok(frame) => {
                self.update_fps(now);
                self.store(frame);
                self.produced = self.produced.wrapping_add(1);
                self.notify_pending = true;
                true
            }
            Err(e) => {
                log::warn!("stream: frame {} not produced: {e}", self.produced);
                false
            }
        }
    }

    fn update_fps(&mut self, now: Instant) {
        if let Some(prev) = self.last_frame_at {
            let dt = now.saturating_duration_since(prev).as_secs_f32();
            if dt > 0.0 {
                self.fps_estimate = 0.8 * self.fps_estimate + 0.2 * (1.0 / dt);
            }
        }
        self.last_frame_at = Some(now);
    }

    fn store(&mut self, frame: Frame) {
        let size = if frame.pixfmt.is_compressed() {
            size_u32(frame.data.len())
        } else {
            frame.pixfmt.bytes_per_pixel()
        };
        let header = FrameHeader::new(
            frame.width,
            frame.height,
            frame.pixfmt,
            size,
            Some(self.fps_estimate),
        );
        let mut bytes = Vec::with_capacity(FrameHeader::LEN_V5 + frame.data.len());
        header.encode_into(&mut bytes);
        bytes.extend_from_slice(&frame.data);
        self.slot = Some(Slot { header, bytes });
    }
}

fn valid_raw_size(w: u32, h: u32, cfg: &StreamConfig) -> bool {
    if w == 0 || h == 0 || w > MAX_RAW_DIM || h > MAX_RAW_DIM {
        return false;
    }
    let bytes = u64::from(w) * u64::from(h) * 2;
    bytes <= cfg.max_frame_bytes as u64
}

impl ChannelBackend for StreamChannel {
    fn ops(&self) -> Ops {
        // Zero-copy reads, as the firmware's stream channel (its frame
        // buffer): a read is one answer, which a SYNC abandons whole.
        Ops::READ | Ops::READP | Ops::LOCK | Ops::SIZE | Ops::SHAPE | Ops::POLL | Ops::IOCTL
    }

    fn flags(&self) -> Option<ChannelFlags> {
        Some(ChannelFlags::READ | ChannelFlags::LOCK | ChannelFlags::STREAM)
    }

    fn poll(&mut self, now: Instant) -> bool {
        self.tick(now);
        self.slot.is_some()
    }

    fn lock(&mut self) -> Result<(), ChannelError> {
        if self.locked || self.slot.is_none() {
            return Err(ChannelError::Busy);
        }
        self.locked = true;
        Ok(())
    }

    fn unlock(&mut self) -> Result<(), ChannelError> {
        if !self.locked {
            return Err(ChannelError::Busy);
        }
        self.locked = false;
        self.slot = None;
        Ok(())
    }

    fn size(&mut self) -> Result<u32, ChannelError> {
        Ok(self.slot.as_ref().map_or(0, |s| size_u32(s.bytes.len())))
    }

    fn shape(&mut self) -> Result<Shape, ChannelError> {
        self.slot
            .as_ref()
            .map(|s| s.header.shape())
            .ok_or(ChannelError::Failed)
    }

    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<usize, ChannelError> {
        let slot = self.slot.as_ref().ok_or(ChannelError::Failed)?;
        copy_exact(&slot.bytes, offset, buf)
    }

    fn readp(&mut self, offset: u32, len: u32) -> Result<&[u8], ChannelError> {
        let slot = self.slot.as_ref().ok_or(ChannelError::Failed)?;
        let start = usize::try_from(offset).map_err(|_| ChannelError::Failed)?;
        let len = usize::try_from(len).map_err(|_| ChannelError::Failed)?;
        let end = start.checked_add(len).ok_or(ChannelError::Failed)?;
        slot.bytes.get(start..end).ok_or(ChannelError::Failed)
    }

    fn ioctl(&mut self, request: u32, args: &[u8]) -> Result<(), ChannelError> {
        match request {
            STREAM_CTRL => {
                let [enable] = u32_args::<1>(args)?;
                self.set_enabled(enable != 0);
                Ok(())
            }
            STREAM_RAW_CTRL => {
                let [raw] = u32_args::<1>(args)?;
                if self.raw != (raw != 0) {
                    self.raw = raw != 0;
                    self.next_due = None;
                }
                Ok(())
            }
            STREAM_RAW_CFG => {
                let [w, h] = u32_args::<2>(args)?;
                if !valid_raw_size(w, h, &self.cfg) {
                    return Err(ChannelError::Invalid);
                }
                if (w, h) != (self.raw_width, self.raw_height) {
                    self.raw_width = w;
                    self.raw_height = h;
                    self.next_due = None;
                }
                Ok(())
            }
            STREAM_SOURCE => {
                let [chip] = u32_args::<1>(args)?;
                if chip != 0 && !self.cfg.sensors.is_empty() && !self.cfg.sensors.contains(&chip) {
                    return Err(ChannelError::Invalid);
                }
                self.sensor = chip;
                Ok(())
            }
            _ => Err(ChannelError::Invalid),
        }
    }

    fn reset(&mut self) {
        // A protocol reset releases the host's lock; the frame stays.
        self.locked = false;
    }

    fn poll_event(&mut self, now: Instant) -> Option<ChannelEventOut> {
        self.tick(now);
        if std::mem::take(&mut self.notify_pending) {
            Some(ChannelEventOut {
                event: None,
                ack_req: false,
            })
        } else {
            None
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.notify_pending {
            Some(self.last_now)
        } else if self.enabled && !self.locked && self.frames.is_some() {
            Some(self.last_now + FRAME_BUFFER_POLL)
        } else if self.enabled && !self.locked {
            Some(self.next_due.unwrap_or(self.last_now))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{decode_jpeg, ImageError};
    use omv_proto::frame::PixFormat;

    fn ms(v: u64) -> Instant {
        Instant::from_millis(v)
    }

    const NOTIFY: Option<ChannelEventOut> = Some(ChannelEventOut {
        event: None,
        ack_req: false,
    });

    /// A cheap source: a w x h raw frame whose bytes are the frame index.
    struct Counter;
    impl FrameSource for Counter {
        fn next_frame(&mut self, req: &FrameRequest) -> Result<Frame, ImageError> {
            let (w, h, fmt) = if req.raw {
                (req.raw_width, req.raw_height, PixFormat::RGB565)
            } else {
                (4, 2, PixFormat::JPEG)
            };
            let len = if req.raw { (w * h * 2) as usize } else { 10 };
            Ok(Frame {
                width: w,
                height: h,
                pixfmt: fmt,
                data: vec![req.index as u8; len],
            })
        }
        fn snapshot(
            &mut self,
            _index: u64,
            width: u32,
            height: u32,
        ) -> Result<crate::image::RgbImage, ImageError> {
            crate::image::RgbImage::new(width, height)
        }
    }

    fn counter_stream(enabled: bool) -> StreamChannel {
        let cfg = StreamConfig {
            enabled,
            fps: 10.0,
            ..StreamConfig::default()
        };
        StreamChannel::new(Box::new(Counter), cfg)
    }

    fn le32(v: u32) -> [u8; 4] {
        v.to_le_bytes()
    }

    fn image_byte(s: &mut StreamChannel) -> u8 {
        let mut b = [0u8; 1];
        s.read(24, &mut b).unwrap();
        b[0]
    }

    #[test]
    fn flags_and_empty_state() {
        let mut s = counter_stream(false);
        assert_eq!(
            s.flags(),
            Some(ChannelFlags::READ | ChannelFlags::LOCK | ChannelFlags::STREAM)
        );
        assert_eq!(s.size(), Ok(0));
        assert_eq!(s.lock(), Err(ChannelError::Busy));
        assert_eq!(s.unlock(), Err(ChannelError::Busy));
        assert_eq!(s.shape(), Err(ChannelError::Failed));
        let mut b = [0u8; 4];
        assert_eq!(s.read(0, &mut b), Err(ChannelError::Failed));
        assert_eq!(s.poll_event(ms(0)), None);
        assert!(!s.poll(ms(0)));
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn frames_follow_the_clock_and_notify() {
        let mut s = counter_stream(false);
        s.ioctl(STREAM_CTRL, &le32(1)).unwrap();
        assert_eq!(s.next_deadline(), Some(ms(0)));
        assert_eq!(s.poll_event(ms(5)), NOTIFY);
        assert_eq!(s.size(), Ok(24 + 10));
        assert_eq!(image_byte(&mut s), 0);
        assert_eq!(s.poll_event(ms(6)), None);
        assert_eq!(s.next_deadline(), Some(ms(105)));
        assert_eq!(s.poll_event(ms(104)), None);
        // The unlocked frame is replaced by the next one.
        assert_eq!(s.poll_event(ms(105)), NOTIFY);
        assert_eq!(image_byte(&mut s), 1);
        assert_eq!(s.next_deadline(), Some(ms(205)));
        // After a stall there is one frame, not a burst.
        assert_eq!(s.poll_event(ms(1000)), NOTIFY);
        assert_eq!(s.poll_event(ms(1001)), None);
        assert_eq!(s.next_deadline(), Some(ms(1100)));
        // Disabling stops production.
        s.ioctl(STREAM_CTRL, &le32(0)).unwrap();
        assert_eq!(s.poll_event(ms(5000)), None);
        assert_eq!(s.next_deadline(), None);
        assert_eq!(s.frames_produced(), 3);
    }

    #[test]
    fn lock_holds_frame_until_unlock() {
        let mut s = counter_stream(true);
        assert_eq!(s.poll_event(ms(0)), NOTIFY);
        s.lock().unwrap();
        assert_eq!(s.lock(), Err(ChannelError::Busy));
        assert_eq!(s.next_deadline(), None);
        // Locked: no new frame however long the host takes.
        assert_eq!(s.poll_event(ms(500)), None);
        assert_eq!(image_byte(&mut s), 0);
        let size = s.size().unwrap();
        let mut all = vec![0u8; size as usize];
        assert_eq!(s.read(0, &mut all), Ok(size as usize));
        let h = FrameHeader::decode(&all).unwrap();
        assert_eq!(
            (h.width, h.height, h.pixfmt, h.size, h.offset),
            (4, 2, PixFormat::JPEG, 10, 24)
        );
        assert_eq!(s.shape().unwrap().dims(), &[10]);
        // Unlock releases the frame; the next one comes when due.
        s.unlock().unwrap();
        assert_eq!(s.size(), Ok(0));
        assert_eq!(s.lock(), Err(ChannelError::Busy));
        assert_eq!(s.poll_event(ms(501)), NOTIFY);
        assert_eq!(image_byte(&mut s), 1);
        // A protocol reset drops the lock but keeps the frame.
        s.lock().unwrap();
        s.reset();
        assert!(!s.is_locked());
        assert_eq!(s.size(), Ok(34));
    }

    #[test]
    fn reads_are_range_checked() {
        let mut s = counter_stream(true);
        s.poll_event(ms(0));
        let mut b = [0u8; 10];
        assert_eq!(s.read(24, &mut b), Ok(10));
        assert_eq!(s.read(25, &mut b), Err(ChannelError::Failed));
        assert_eq!(s.read(34, &mut b[..1]), Err(ChannelError::Failed));
        assert_eq!(s.read(u32::MAX, &mut b), Err(ChannelError::Failed));
        // The zero-copy view follows the same range rules.
        assert_eq!(s.readp(24, 10).map(<[u8]>::len), Ok(10));
        assert_eq!(s.readp(25, 10), Err(ChannelError::Failed));
        assert_eq!(s.readp(u32::MAX, 2), Err(ChannelError::Failed));
        assert_eq!(s.read(u32::MAX - 3, &mut b), Err(ChannelError::Failed));
    }

    #[test]
    fn ioctl_argument_checks() {
        let mut s = counter_stream(false);
        for req in [STREAM_CTRL, STREAM_RAW_CTRL, STREAM_SOURCE] {
            assert_eq!(s.ioctl(req, &[]), Err(ChannelError::Invalid));
            assert_eq!(s.ioctl(req, &[1, 0, 0]), Err(ChannelError::Invalid));
            assert_eq!(s.ioctl(req, &[0; 8]), Err(ChannelError::Invalid));
        }
        assert_eq!(
            s.ioctl(STREAM_RAW_CFG, &le32(8)),
            Err(ChannelError::Invalid)
        );
        assert_eq!(s.ioctl(4, &[]), Err(ChannelError::Invalid));
        assert_eq!(s.ioctl(u32::MAX, &[0; 4]), Err(ChannelError::Invalid));
        let cfg = |w: u32, h: u32| [le32(w), le32(h)].concat();
        assert_eq!(
            s.ioctl(STREAM_RAW_CFG, &cfg(0, 10)),
            Err(ChannelError::Invalid)
        );
        assert_eq!(
            s.ioctl(STREAM_RAW_CFG, &cfg(10, 0)),
            Err(ChannelError::Invalid)
        );
        assert_eq!(
            s.ioctl(STREAM_RAW_CFG, &cfg(100_000, 10)),
            Err(ChannelError::Invalid)
        );
        assert_eq!(
            s.ioctl(STREAM_RAW_CFG, &cfg(u32::MAX, u32::MAX)),
            Err(ChannelError::Invalid)
        );
        // 4096 x 4096 x 2 is over the 1 MiB buffer.
        assert_eq!(
            s.ioctl(STREAM_RAW_CFG, &cfg(4096, 4096)),
            Err(ChannelError::Invalid)
        );
        s.ioctl(STREAM_RAW_CFG, &cfg(64, 48)).unwrap();
        assert_eq!(s.raw_size(), (64, 48));
        s.ioctl(STREAM_SOURCE, &le32(0x5640)).unwrap();
        assert_eq!(s.sensor(), 0x5640);

        let cfg2 = StreamConfig {
            sensors: vec![0x5640],
            ..StreamConfig::default()
        };
        let mut t = StreamChannel::new(Box::new(Counter), cfg2);
        assert_eq!(
            t.ioctl(STREAM_SOURCE, &le32(0x77)),
            Err(ChannelError::Invalid)
        );
        t.ioctl(STREAM_SOURCE, &le32(0x5640)).unwrap();
        t.ioctl(STREAM_SOURCE, &le32(0)).unwrap();
    }

    #[test]
    fn raw_mode_frames() {
        let mut s = counter_stream(true);
        s.ioctl(STREAM_RAW_CTRL, &le32(1)).unwrap();
        s.ioctl(STREAM_RAW_CFG, &[le32(8), le32(6)].concat())
            .unwrap();
        assert_eq!(s.poll_event(ms(0)), NOTIFY);
        assert_eq!(s.size(), Ok(24 + 8 * 6 * 2));
        assert_eq!(s.shape().unwrap().dims(), &[8, 6, 2]);
        let h = s.frame_header().unwrap();
        assert_eq!((h.pixfmt, h.size), (PixFormat::RGB565, 2));
    }

    #[test]
    fn fps_in_header_tracks_production() {
        let mut s = counter_stream(true);
        s.poll_event(ms(0));
        assert_eq!(s.frame_header().unwrap().fps, Some(10.0));
        for i in 1..50 {
            s.poll_event(ms(i * 100));
        }
        let fps = s.frame_header().unwrap().fps.unwrap();
        assert!((fps - 10.0).abs() < 0.01, "{fps}");
    }

    #[test]
    fn pattern_stream_real_jpeg_and_rgb565() {
        let cfg = StreamConfig {
            enabled: true,
            ..StreamConfig::default()
        };
        let mut s = StreamChannel::new(Box::new(PatternSource::default()), cfg);
        assert_eq!(s.poll_event(ms(0)), NOTIFY);
        let h = s.frame_header().unwrap();
        assert_eq!((h.width, h.height, h.pixfmt), (320, 240, PixFormat::JPEG));
        let bytes = s.frame_bytes().unwrap().to_vec();
        assert_eq!(bytes.len(), 24 + h.size as usize);
        let img = decode_jpeg(h.image_data(&bytes)).unwrap();
        assert_eq!((img.width(), img.height()), (320, 240));

        s.ioctl(STREAM_RAW_CTRL, &le32(1)).unwrap();
        s.ioctl(STREAM_RAW_CFG, &[le32(80), le32(60)].concat())
            .unwrap();
        assert_eq!(s.poll_event(ms(1)), NOTIFY);
        let h = s.frame_header().unwrap();
        assert_eq!((h.width, h.height, h.pixfmt), (80, 60, PixFormat::RGB565));
        assert_eq!(s.size(), Ok(24 + 80 * 60 * 2));
    }
}
