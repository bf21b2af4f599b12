//! A minimal RGB image and its conversions: RGB565 (the stream's raw
//! format), JPEG encoding (`jpeg-encoder`) and PNG/JPEG decoding (`png`,
//! `zune-jpeg`).

use std::fmt;
use std::io::Cursor;

/// Largest width or height handled (JPEG's limit).
pub const MAX_DIM: u32 = 65_535;
/// Largest decoded image accepted, in pixels (64 Mpx), so that a hostile
/// file cannot make the sim allocate without bound.
pub const MAX_PIXELS: u64 = 64 << 20;

/// An image could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageError(pub String);

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ImageError {}

fn err(msg: impl Into<String>) -> ImageError {
    ImageError(msg.into())
}

/// An 8-bit RGB image, rows top to bottom, 3 bytes per pixel.
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RgbImage({}x{})", self.width, self.height)
    }
}

/// Checks an image size (1..=[`MAX_DIM`] each way, at most [`MAX_PIXELS`])
/// and returns its pixel count.
pub fn check_size(width: u32, height: u32) -> Result<usize, ImageError> {
    if width == 0 || height == 0 || width > MAX_DIM || height > MAX_DIM {
        return Err(err(format!("bad image size {width}x{height}")));
    }
    let n = u64::from(width) * u64::from(height);
    if n > MAX_PIXELS {
        return Err(err(format!("image too large: {width}x{height}")));
    }
    usize::try_from(n).map_err(|_| err("image too large"))
}

impl RgbImage {
    /// A black image; sizes must be 1..=65535 and at most
    /// 64 Mi pixels.
    pub fn new(width: u32, height: u32) -> Result<Self, ImageError> {
        let n = check_size(width, height)?;
        Ok(RgbImage {
            width,
            height,
            data: vec![0; n * 3],
        })
    }

    /// An image from packed RGB888 data of exactly `width * height * 3` bytes.
    pub fn from_rgb(width: u32, height: u32, data: Vec<u8>) -> Result<Self, ImageError> {
        let n = check_size(width, height)?;
        if data.len() != n * 3 {
            return Err(err(format!(
                "{} bytes for a {width}x{height} RGB image",
                data.len()
            )));
        }
        Ok(RgbImage {
            width,
            height,
            data,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The packed RGB888 pixels.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    fn index(&self, x: u32, y: u32) -> Option<usize> {
        (x < self.width && y < self.height)
            .then(|| (y as usize * self.width as usize + x as usize) * 3)
    }

    /// The pixel at (x, y), `None` outside the image.
    pub fn get(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        let i = self.index(x, y)?;
        Some([self.data[i], self.data[i + 1], self.data[i + 2]])
    }

    /// Sets the pixel at (x, y); ignored outside the image.
    pub fn put(&mut self, x: u32, y: u32, rgb: [u8; 3]) {
        if let Some(i) = self.index(x, y) {
            self.data[i..i + 3].copy_from_slice(&rgb);
        }
    }

    /// Fills a rectangle, clipped to the image.
    pub fn fill_rect(&mut self, x: u32, y: u32, w: u32, h: u32, rgb: [u8; 3]) {
        let x1 = x.saturating_add(w).min(self.width);
        let y1 = y.saturating_add(h).min(self.height);
        for yy in y.min(y1)..y1 {
            for xx in x.min(x1)..x1 {
                self.put(xx, yy, rgb);
            }
        }
    }

    /// Converts to RGB565, each pixel a little-endian u16 (`w * h * 2` bytes).
    pub fn to_rgb565_le(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() / 3 * 2);
        for p in self.data.chunks_exact(3) {
            out.extend_from_slice(&rgb565(p[0], p[1], p[2]).to_le_bytes());
        }
        out
    }

    /// A nearest-neighbour resize to `width` x `height`.
    pub fn resize_nearest(&self, width: u32, height: u32) -> Result<RgbImage, ImageError> {
        if width == self.width && height == self.height {
            return Ok(self.clone());
        }
        let mut out = RgbImage::new(width, height)?;
        for y in 0..height {
            let sy = (u64::from(y) * u64::from(self.height) / u64::from(height)) as u32;
            for x in 0..width {
                let sx = (u64::from(x) * u64::from(self.width) / u64::from(width)) as u32;
                if let Some(p) = self.get(sx, sy) {
                    out.put(x, y, p);
                }
            }
        }
        Ok(out)
    }

    /// Encodes as a baseline JPEG (4:2:0) of the given quality (1..=100).
    pub fn encode_jpeg(&self, quality: u8) -> Result<Vec<u8>, ImageError> {
        let w = u16::try_from(self.width).map_err(|_| err("image too wide for JPEG"))?;
        let h = u16::try_from(self.height).map_err(|_| err("image too tall for JPEG"))?;
        let mut out = Vec::new();
        let enc = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
        enc.encode(&self.data, w, h, jpeg_encoder::ColorType::Rgb)
            .map_err(|e| err(format!("JPEG encoding failed: {e}")))?;
        Ok(out)
    }
}

/// Packs 8-bit RGB into RGB565.
pub fn rgb565(r: u8, g: u8, b: u8) -> u16 {
    (u16::from(r >> 3) << 11) | (u16::from(g >> 2) << 5) | u16::from(b >> 3)
}

/// True if `bytes` starts like a JPEG file (SOI marker).
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// True if `bytes` starts with the PNG signature.
pub fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n")
}

fn jpeg_options() -> zune_core::options::DecoderOptions {
    zune_core::options::DecoderOptions::default()
        .jpeg_set_out_colorspace(zune_core::colorspace::ColorSpace::RGB)
        .set_max_width(MAX_DIM as usize)
        .set_max_height(MAX_DIM as usize)
}

/// Reads a JPEG's width and height from its headers.
pub fn jpeg_dimensions(bytes: &[u8]) -> Result<(u32, u32), ImageError> {
    let mut dec = zune_jpeg::JpegDecoder::new_with_options(
        zune_core::bytestream::ZCursor::new(bytes),
        jpeg_options(),
    );
    dec.decode_headers()
        .map_err(|e| err(format!("bad JPEG: {e:?}")))?;
    let info = dec.info().ok_or_else(|| err("bad JPEG: no frame header"))?;
    Ok((u32::from(info.width), u32::from(info.height)))
}

/// Decodes a JPEG to RGB.
pub fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    let (w, h) = jpeg_dimensions(bytes)?;
    check_size(w, h)?;
    // The decoder is third-party code fed with files from disk: contain a
    // panic on a malformed file rather than taking the cam down.
    let decoded = std::panic::catch_unwind(|| {
        let mut dec = zune_jpeg::JpegDecoder::new_with_options(
            zune_core::bytestream::ZCursor::new(bytes),
            jpeg_options(),
        );
        dec.decode()
    })
    .map_err(|_| err("JPEG decoder panicked"))?
    .map_err(|e| err(format!("bad JPEG: {e:?}")))?;
    RgbImage::from_rgb(w, h, decoded)
}

/// Decodes a PNG (any colour type and depth) to RGB; alpha is dropped.
pub fn decode_png(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    let mut dec = png::Decoder::new(Cursor::new(bytes));
    dec.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = dec.read_info().map_err(|e| err(format!("bad PNG: {e}")))?;
    let (w, h) = {
        let info = reader.info();
        (info.width, info.height)
    };
    check_size(w, h)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| err("PNG too large"))?;
    let mut buf = vec![0u8; size];
    let out = reader
        .next_frame(&mut buf)
        .map_err(|e| err(format!("bad PNG: {e}")))?;
    let stride = out.line_size;
    let channels = match out.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err(err("PNG palette was not expanded")),
    };
    if out.bit_depth != png::BitDepth::Eight {
        return Err(err("PNG depth was not normalised to 8 bits"));
    }
    let mut img = RgbImage::new(out.width, out.height)?;
    for y in 0..out.height {
        let row_start = (y as usize)
            .checked_mul(stride)
            .ok_or_else(|| err("PNG too large"))?;
        let row = buf
            .get(row_start..row_start + (out.width as usize) * channels)
            .ok_or_else(|| err("PNG data shorter than its size"))?;
        for (x, px) in row.chunks_exact(channels).enumerate() {
            let rgb = match channels {
                1 | 2 => [px[0], px[0], px[0]],
                _ => [px[0], px[1], px[2]],
            };
            img.put(x as u32, y, rgb);
        }
    }
    Ok(img)
}

/// Decodes a PNG or JPEG file, chosen by its signature.
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    if is_png(bytes) {
        decode_png(bytes)
    } else if is_jpeg(bytes) {
        decode_jpeg(bytes)
    } else {
        Err(err("neither a PNG nor a JPEG"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        let mut img = RgbImage::new(w, h).unwrap();
        for y in 0..h {
            for x in 0..w {
                img.put(x, y, [(x * 255 / w) as u8, (y * 255 / h) as u8, 128]);
            }
        }
        img
    }

    #[test]
    fn sizes_are_checked() {
        assert!(RgbImage::new(0, 5).is_err());
        assert!(RgbImage::new(70_000, 1).is_err());
        assert!(RgbImage::new(65_535, 65_535).is_err());
        assert!(RgbImage::from_rgb(2, 2, vec![0; 11]).is_err());
        assert!(RgbImage::from_rgb(2, 2, vec![0; 12]).is_ok());
    }

    #[test]
    fn rgb565_packing() {
        assert_eq!(rgb565(255, 255, 255), 0xFFFF);
        assert_eq!(rgb565(255, 0, 0), 0xF800);
        assert_eq!(rgb565(0, 255, 0), 0x07E0);
        assert_eq!(rgb565(0, 0, 255), 0x001F);
        let mut img = RgbImage::new(3, 2).unwrap();
        img.put(0, 0, [255, 0, 0]);
        let raw = img.to_rgb565_le();
        assert_eq!(raw.len(), 3 * 2 * 2);
        assert_eq!(&raw[..2], &[0x00, 0xF8]);
    }

    #[test]
    fn jpeg_round_trip() {
        let img = gradient(64, 48);
        let jpeg = img.encode_jpeg(80).unwrap();
        assert!(is_jpeg(&jpeg));
        assert_eq!(jpeg_dimensions(&jpeg).unwrap(), (64, 48));
        let back = decode_jpeg(&jpeg).unwrap();
        assert_eq!((back.width(), back.height()), (64, 48));
        let a = img.get(40, 30).unwrap();
        let b = back.get(40, 30).unwrap();
        for c in 0..3 {
            assert!(a[c].abs_diff(b[c]) < 24, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn png_decodes() {
        let mut bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut bytes, 2, 2);
            enc.set_color(png::ColorType::Rgba);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().unwrap();
            w.write_image_data(&[255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 9, 8, 7, 0])
                .unwrap();
        }
        let img = decode_image(&bytes).unwrap();
        assert_eq!(img.get(0, 0), Some([255, 0, 0]));
        assert_eq!(img.get(1, 1), Some([9, 8, 7]));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_image(b"hello").is_err());
        assert!(decode_jpeg(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]).is_err());
        assert!(decode_png(b"\x89PNG\r\n\x1a\n\0\0").is_err());
        let mut jpeg = gradient(16, 16).encode_jpeg(50).unwrap();
        jpeg.truncate(jpeg.len() / 2);
        let _ = decode_jpeg(&jpeg);
    }

    #[test]
    fn resize() {
        let img = gradient(4, 4);
        let r = img.resize_nearest(8, 2).unwrap();
        assert_eq!((r.width(), r.height()), (8, 2));
        assert_eq!(r.get(0, 0), img.get(0, 0));
        assert_eq!(r.get(7, 1), img.get(3, 2));
    }
}
