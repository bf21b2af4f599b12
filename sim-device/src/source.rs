//! Where the stream channel's frames come from.
//!
//! A [`FrameSource`] produces one image per call, in the format the stream
//! asks for ([`FrameRequest`]): JPEG normally, RGB565 at the RAW_CFG size in
//! raw mode.
//!
//! * [`PatternSource`]: a moving test pattern (colour bars and a gradient
//!   that scroll) with the frame number drawn in a tiny bitmap font.
//! * [`DirSource`]: the PNG/JPEG files of a directory, sorted by name,
//!   looping; JPEG files that fit are passed through unchanged.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use omv_proto::frame::PixFormat;

use crate::font;
use crate::image::{self, ImageError, RgbImage};

/// Default JPEG quality of the sources.
pub const DEFAULT_QUALITY: u8 = 80;
/// Default width of the test pattern.
pub const DEFAULT_WIDTH: u32 = 320;
/// Default height of the test pattern.
pub const DEFAULT_HEIGHT: u32 = 240;

/// What the stream asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRequest {
    /// Raw (RGB565) instead of JPEG.
    pub raw: bool,
    /// Raw frame width (RAW_CFG).
    pub raw_width: u32,
    /// Raw frame height (RAW_CFG).
    pub raw_height: u32,
    /// Number of the frame (0 for the first one produced).
    pub index: u64,
    /// The image sensor selected with SOURCE (0 = default).
    pub sensor: u32,
    /// Most image bytes the stream buffer holds.
    pub max_bytes: usize,
}

/// One produced image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixel format ([`PixFormat::JPEG`] or [`PixFormat::RGB565`]).
    pub pixfmt: PixFormat,
    /// The image bytes.
    pub data: Vec<u8>,
}

impl Frame {
    /// A frame holding `img` as little-endian RGB565.
    pub fn rgb565(img: &RgbImage) -> Frame {
        Frame {
            width: img.width(),
            height: img.height(),
            pixfmt: PixFormat::RGB565,
            data: img.to_rgb565_le(),
        }
    }

    /// A frame holding `img` JPEG-compressed at `quality`, lowering the
    /// quality and then the resolution until it fits `max_bytes`.
    pub fn jpeg(img: &RgbImage, quality: u8, max_bytes: usize) -> Result<Frame, ImageError> {
        let mut img = std::borrow::Cow::Borrowed(img);
        for _ in 0..8 {
            for q in [quality, 50, 25] {
                let data = img.encode_jpeg(q)?;
                if data.len() <= max_bytes {
                    return Ok(Frame {
                        width: img.width(),
                        height: img.height(),
                        pixfmt: PixFormat::JPEG,
                        data,
                    });
                }
            }
            let (w, h) = ((img.width() / 2).max(1), (img.height() / 2).max(1));
            img = std::borrow::Cow::Owned(img.resize_nearest(w, h)?);
        }
        Err(ImageError(format!(
            "cannot fit a JPEG into {max_bytes} bytes"
        )))
    }
}

/// Produces the stream's frames.
pub trait FrameSource: Send {
    /// The next frame, as `req` asks.
    fn next_frame(&mut self, req: &FrameRequest) -> Result<Frame, ImageError>;

    /// Frame `index` as an RGB image of exactly `width` x `height` (what a
    /// script's `csi.snapshot()` gets, scaled to its frame size).
    fn snapshot(&mut self, index: u64, width: u32, height: u32) -> Result<RgbImage, ImageError>;
}

/// A moving test pattern with a visible frame counter.
#[derive(Clone, Debug)]
pub struct PatternSource {
    width: u32,
    height: u32,
    quality: u8,
}

impl Default for PatternSource {
    fn default() -> Self {
        PatternSource::new(DEFAULT_WIDTH, DEFAULT_HEIGHT)
    }
}

/// The classic colour bars: white, yellow, cyan, green, magenta, red, blue, black.
const BARS: [[u8; 3]; 8] = [
    [235, 235, 235],
    [235, 235, 16],
    [16, 235, 235],
    [16, 235, 16],
    [235, 16, 235],
    [235, 16, 16],
    [16, 16, 235],
    [16, 16, 16],
];

impl PatternSource {
    /// A pattern of `width` x `height` in JPEG mode (raw mode uses the
    /// RAW_CFG size); zero sizes become 1.
    pub fn new(width: u32, height: u32) -> Self {
        PatternSource {
            width: width.clamp(1, image::MAX_DIM),
            height: height.clamp(1, image::MAX_DIM),
            quality: DEFAULT_QUALITY,
        }
    }

    /// Sets the JPEG quality (1..=100).
    pub fn with_quality(mut self, quality: u8) -> Self {
        self.quality = quality.clamp(1, 100);
        self
    }

    /// Draws frame `index` at `width` x `height`: colour bars scrolling
    /// right over the top two thirds, a colour ramp with a moving white band
    /// below, and the frame number in the top-left corner.
    pub fn render(width: u32, height: u32, index: u64) -> Result<RgbImage, ImageError> {
        image::check_size(width, height)?;
        let (w, h) = (width as usize, height as usize);
        let bars_h = (h * 2 / 3).max(1);
        let shift = (index.wrapping_mul(4) % u64::from(width)) as usize;
        let band = (index.wrapping_mul(3) % u64::from(width)) as usize;
        let band_w = (w / 16).max(1);
        // Every row of a region is the same: build one row of each, then copy.
        let mut bars_row = Vec::with_capacity(w * 3);
        let mut ramp_row = Vec::with_capacity(w * 3);
        for x in 0..w {
            let sx = (x + w - shift) % w;
            bars_row.extend_from_slice(&BARS[sx * BARS.len() / w]);
            if x.wrapping_sub(band) < band_w {
                ramp_row.extend_from_slice(&[255, 255, 255]);
            } else {
                let v = (x * 255 / w) as u8;
                let g = 255 - (2 * i32::from(v) - 255).unsigned_abs().min(255) as u8;
                ramp_row.extend_from_slice(&[v, g, 255 - v]);
            }
        }
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            data.extend_from_slice(if y < bars_h { &bars_row } else { &ramp_row });
        }
        let mut img = RgbImage::from_rgb(width, height, data)?;
        let text = index.to_string();
        let scale = (height / 60).clamp(1, 16);
        let pad = scale;
        let tw = font::text_width(&text, scale);
        img.fill_rect(
            0,
            0,
            tw + 2 * pad,
            font::GLYPH_H * scale + 2 * pad,
            [0, 0, 0],
        );
        font::draw_text(&mut img, pad, pad, scale, &text, [255, 255, 255]);
        Ok(img)
    }
}

impl FrameSource for PatternSource {
    fn next_frame(&mut self, req: &FrameRequest) -> Result<Frame, ImageError> {
        if req.raw {
            let img = PatternSource::render(req.raw_width, req.raw_height, req.index)?;
            Ok(Frame::rgb565(&img))
        } else {
            let img = PatternSource::render(self.width, self.height, req.index)?;
            Frame::jpeg(&img, self.quality, req.max_bytes)
        }
    }

    fn snapshot(&mut self, index: u64, width: u32, height: u32) -> Result<RgbImage, ImageError> {
        PatternSource::render(width, height, index)
    }
}

/// Decoded images kept in memory at most (bytes of RGB data).
const CACHE_BUDGET: usize = 64 << 20;

/// Frames from the PNG/JPEG files of a directory, sorted by file name,
/// looping forever. Unreadable files are skipped with a warning.
#[derive(Debug)]
pub struct DirSource {
    files: Vec<PathBuf>,
    next: usize,
    quality: u8,
    cache: Vec<Option<Arc<RgbImage>>>,
    cached_bytes: usize,
}

impl DirSource {
    /// Lists the `.png`, `.jpg` and `.jpeg` files (any case) of `dir`; an
    /// error if it cannot be read or holds none.
    pub fn new(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref();
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .map(|e| e.to_ascii_lowercase());
            if matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) && path.is_file() {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no .png/.jpg/.jpeg files in {}", dir.display()),
            ));
        }
        files.sort();
        let cache = vec![None; files.len()];
        Ok(DirSource {
            files,
            next: 0,
            quality: DEFAULT_QUALITY,
            cache,
            cached_bytes: 0,
        })
    }

    /// Sets the JPEG quality used when re-encoding (1..=100).
    pub fn with_quality(mut self, quality: u8) -> Self {
        self.quality = quality.clamp(1, 100);
        self
    }

    /// The image files, in playing order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn decoded(&mut self, i: usize, bytes: &[u8]) -> Result<Arc<RgbImage>, ImageError> {
        if let Some(Some(img)) = self.cache.get(i) {
            return Ok(img.clone());
        }
        let img = Arc::new(image::decode_image(bytes)?);
        let size = img.data().len();
        if self.cached_bytes.saturating_add(size) <= CACHE_BUDGET {
            if let Some(slot) = self.cache.get_mut(i) {
                *slot = Some(img.clone());
                self.cached_bytes += size;
            }
        }
        Ok(img)
    }

    fn frame_from(&mut self, i: usize, req: &FrameRequest) -> Result<Frame, ImageError> {
        let path = &self.files[i];
        let bytes =
            std::fs::read(path).map_err(|e| ImageError(format!("{}: {e}", path.display())))?;
        if !req.raw && image::is_jpeg(&bytes) && bytes.len() <= req.max_bytes {
            let (width, height) = image::jpeg_dimensions(&bytes)?;
            return Ok(Frame {
                width,
                height,
                pixfmt: PixFormat::JPEG,
                data: bytes,
            });
        }
        let img = self.decoded(i, &bytes)?;
        if req.raw {
            Ok(Frame::rgb565(
                &img.resize_nearest(req.raw_width, req.raw_height)?,
            ))
        } else {
            Frame::jpeg(&img, self.quality, req.max_bytes)
        }
    }
}

impl FrameSource for DirSource {
    fn next_frame(&mut self, req: &FrameRequest) -> Result<Frame, ImageError> {
        let n = self.files.len();
        let mut last_err = ImageError("no image files".into());
        for _ in 0..n {
            let i = self.next % n;
            self.next = (i + 1) % n;
            match self.frame_from(i, req) {
                Ok(f) => return Ok(f),
                Err(e) => {
                    log::warn!("stream: skipping {}: {e}", self.files[i].display());
                    last_err = e;
                }
            }
        }
        Err(last_err)
    }

    fn snapshot(&mut self, _index: u64, width: u32, height: u32) -> Result<RgbImage, ImageError> {
        let n = self.files.len();
        let mut last_err = ImageError("no image files".into());
        for _ in 0..n {
            let i = self.next % n;
            self.next = (i + 1) % n;
            let path = self.files[i].clone();
            let img = std::fs::read(&path)
                .map_err(|e| ImageError(format!("{}: {e}", path.display())))
                .and_then(|bytes| self.decoded(i, &bytes));
            match img {
                Ok(img) if (img.width(), img.height()) == (width, height) => {
                    return Ok((*img).clone())
                }
                Ok(img) => return img.resize_nearest(width, height),
                Err(e) => {
                    log::warn!("csi: skipping {}: {e}", path.display());
                    last_err = e;
                }
            }
        }
        Err(last_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: bool, index: u64) -> FrameRequest {
        FrameRequest {
            raw,
            raw_width: 160,
            raw_height: 120,
            index,
            sensor: 0,
            max_bytes: 1 << 20,
        }
    }

    #[test]
    fn pattern_jpeg_decodes_to_default_size() {
        let mut s = PatternSource::default();
        let f = s.next_frame(&req(false, 7)).unwrap();
        assert_eq!(f.pixfmt, PixFormat::JPEG);
        assert_eq!((f.width, f.height), (320, 240));
        let img = image::decode_jpeg(&f.data).unwrap();
        assert_eq!((img.width(), img.height()), (320, 240));
    }

    #[test]
    fn pattern_raw_is_rgb565_at_raw_size() {
        let mut s = PatternSource::default();
        let f = s.next_frame(&req(true, 0)).unwrap();
        assert_eq!(f.pixfmt, PixFormat::RGB565);
        assert_eq!((f.width, f.height), (160, 120));
        assert_eq!(f.data.len(), 160 * 120 * 2);
    }

    #[test]
    fn pattern_moves_and_shows_counter() {
        let a = PatternSource::render(64, 48, 1).unwrap();
        let b = PatternSource::render(64, 48, 2).unwrap();
        assert_ne!(a, b);
        assert_eq!(
            a,
            PatternSource::render(64, 48, 1).unwrap(),
            "deterministic"
        );
        // The counter box is black with white digits in the top-left corner.
        assert_eq!(a.get(0, 0), Some([0, 0, 0]));
        let white = (0..20).any(|x| (0..10).any(|y| a.get(x, y) == Some([255, 255, 255])));
        assert!(white);
        assert!(PatternSource::render(1, 1, u64::MAX).is_ok());
    }

    #[test]
    fn jpeg_fits_small_buffer() {
        let img = PatternSource::render(320, 240, 0).unwrap();
        let f = Frame::jpeg(&img, 90, 2000).unwrap();
        assert!(f.data.len() <= 2000);
        assert!(f.width < 320);
        assert!(Frame::jpeg(&img, 90, 10).is_err());
    }

    #[test]
    fn dir_source_loops_sorted_and_passes_jpeg_through() {
        let dir = std::env::temp_dir().join(format!("sim-dirsource-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = PatternSource::render(40, 30, 3).unwrap();
        let jpeg = img.encode_jpeg(70).unwrap();
        std::fs::write(dir.join("b.jpg"), &jpeg).unwrap();
        let mut png_bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut png_bytes, 40, 30);
            enc.set_color(png::ColorType::Rgb);
            let mut w = enc.write_header().unwrap();
            w.write_image_data(img.data()).unwrap();
        }
        std::fs::write(dir.join("a.PNG"), &png_bytes).unwrap();
        std::fs::write(dir.join("c.jpeg"), b"not a jpeg").unwrap();
        std::fs::write(dir.join("notes.txt"), b"ignored").unwrap();

        let mut s = DirSource::new(&dir).unwrap();
        assert_eq!(s.files().len(), 3);
        let f0 = s.next_frame(&req(false, 0)).unwrap(); // a.PNG, re-encoded
        assert_eq!(f0.pixfmt, PixFormat::JPEG);
        assert_eq!((f0.width, f0.height), (40, 30));
        assert!(image::decode_jpeg(&f0.data).is_ok());
        let f1 = s.next_frame(&req(false, 1)).unwrap(); // b.jpg, unchanged
        assert_eq!(f1.data, jpeg);
        // c.jpeg is broken: skipped, back to a.PNG.
        let f2 = s.next_frame(&req(false, 2)).unwrap();
        assert_eq!(f2.data, f0.data);
        let raw = s.next_frame(&req(true, 3)).unwrap(); // b.jpg as RGB565
        assert_eq!(raw.pixfmt, PixFormat::RGB565);
        assert_eq!(raw.data.len(), 160 * 120 * 2);
        // A too-small buffer forces re-encoding the JPEG instead.
        let mut small = req(false, 4);
        small.max_bytes = jpeg.len() - 1;
        let mut s2 = DirSource::new(&dir).unwrap();
        s2.next_frame(&small).unwrap();
        let f = s2.next_frame(&small).unwrap();
        assert!(f.data.len() < jpeg.len());

        std::fs::remove_dir_all(&dir).unwrap();
        assert!(DirSource::new(&dir).is_err());
    }
}
