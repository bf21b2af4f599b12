//! Conversion of stream-channel frames to RGB888, and PNG output.
//!
//! A frame read from the cam's `stream` channel (PROTOCOL.md section 9) is a
//! header (width, height, pixel format, ...) followed by image bytes. This
//! module turns those image bytes into packed RGB888 (`R, G, B` per pixel,
//! rows top to bottom, no padding) whatever the pixel format, and can encode
//! the result as PNG.
//!
//! Byte layouts (all multi-byte values little-endian, as on the cam):
//!
//! | format | layout |
//! |---|---|
//! | [`GRAYSCALE`](pixfmt::GRAYSCALE) | 1 byte per pixel |
//! | [`RGB565`](pixfmt::RGB565) | u16 per pixel, `RRRRRGGG GGGBBBBB`; scaled like the stock Python host: `r5 * 255 / 31` (truncating), `g6 * 255 / 63` |
//! | [`ARGB8`](pixfmt::ARGB8) | u32 per pixel holding `0xAARRGGBB`, so bytes `B, G, R, A`; alpha is dropped (assumption: the firmware stores the u32 natively) |
//! | [`YUV422`](pixfmt::YUV422) | u16 per pixel, bytes `Y0 U Y1 V` per horizontal pair (YUYV), pairs never span rows; full-range BT.601 (JFIF) like the firmware's imlib |
//! | [`BAYER_BGGR`](pixfmt::BAYER_BGGR) | 1 byte per pixel, rows `B G B G ...` / `G R G R ...`; bilinear demosaic |
//! | [`BINARY`](pixfmt::BINARY) | 1 bit per pixel, each row padded to whole u32 words; pixel `x` is bit `x % 32` of word `x / 32` (firmware `IMAGE_GET_BINARY_PIXEL`), i.e. bit `x % 8` of byte `x / 8`; 1 = white |
//! | [`JPEG`](pixfmt::JPEG), [`PNG`](pixfmt::PNG) | a complete compressed file |
//!
//! Uncompressed formats must have exactly the number of bytes the width and
//! height imply ([`ImageError::SizeMismatch`] otherwise), like the stock host.
//!
//! For JPEG and PNG the image's own dimensions are authoritative: the result
//! has the decoded width and height even when the frame header disagrees (a
//! compressed file cannot be wrong about its own size, whereas a header can
//! be stale, e.g. after a resolution change). Use
//! [`ConvertOptions::strict_compressed_dims`] to get
//! [`ImageError::DimensionMismatch`] instead.
//!
//! No input makes these functions panic; every failure is an [`ImageError`].
//! Output size is bounded by [`ConvertOptions::max_output_bytes`]
//! (default [`DEFAULT_MAX_OUTPUT_BYTES`]) before anything is allocated.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Pixel format codes carried in the stream frame header (PROTOCOL.md section 9),
/// as plain `u32`s for matching. They are defined once, by
/// [`omv_proto::frame::PixFormat`]; these are its values.
pub mod pixfmt {
    use omv_proto::frame::PixFormat;

    /// 8-bit grayscale, 1 byte per pixel.
    pub const GRAYSCALE: u32 = PixFormat::GRAYSCALE.0;
    /// RGB565, little-endian u16 per pixel.
    pub const RGB565: u32 = PixFormat::RGB565.0;
    /// A complete JPEG file.
    pub const JPEG: u32 = PixFormat::JPEG.0;
    /// A complete PNG file.
    pub const PNG: u32 = PixFormat::PNG.0;
    /// Raw Bayer, BGGR pattern, 1 byte per pixel.
    pub const BAYER_BGGR: u32 = PixFormat::BAYER_BGGR.0;
    /// YUV422 (YUYV byte order), 2 bytes per pixel.
    pub const YUV422: u32 = PixFormat::YUV422.0;
    /// ARGB8888, u32 per pixel.
    pub const ARGB8: u32 = PixFormat::ARGB8.0;
    /// 1 bit per pixel, rows padded to 32 bits.
    pub const BINARY: u32 = PixFormat::BINARY.0;

    /// A short name for a pixel format code (`"0x????????"` is not produced
    /// here; unknown codes give `None`); [`PixFormat::name`].
    pub fn name(code: u32) -> Option<&'static str> {
        PixFormat(code).name()
    }
}

/// Default bound on the size of a converted image: 256 MiB of RGB888.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 256 * 1024 * 1024;

/// A packed RGB888 image: `pixels.len() == width * height * 3`, rows top to
/// bottom, each pixel `R, G, B`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb888Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height` pixels of 3 bytes each.
    pub pixels: Vec<u8>,
}

impl Rgb888Image {
    /// The `[r, g, b]` value at (`x`, `y`), or `None` when out of range (or
    /// when `pixels` is shorter than the dimensions claim).
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize)
            .checked_mul(self.width as usize)?
            .checked_add(x as usize)?
            .checked_mul(3)?;
        let p = self.pixels.get(i..i.checked_add(3)?)?;
        Some([p[0], p[1], p[2]])
    }
}

/// Everything that can go wrong converting or saving an image.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ImageError {
    /// Uncompressed data whose length does not match width and height.
    #[error("{format} {width}x{height} needs {expected} bytes of image data, got {got}")]
    SizeMismatch {
        /// Pixel format name.
        format: &'static str,
        /// Width from the frame header.
        width: u32,
        /// Height from the frame header.
        height: u32,
        /// Bytes the dimensions imply.
        expected: usize,
        /// Bytes supplied.
        got: usize,
    },
    /// A pixel format code this module does not know.
    #[error("unsupported pixel format 0x{0:08X}")]
    UnsupportedFormat(u32),
    /// Width or height is zero.
    #[error("{format} image has a zero dimension: {width}x{height}")]
    ZeroDimension {
        /// Pixel format name.
        format: &'static str,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// The RGB888 result would exceed the size limit (or overflow).
    #[error("{width}x{height} RGB888 image needs {bytes} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// `width * height * 3`, computed without overflow.
        bytes: u128,
        /// The limit in force.
        limit: usize,
    },
    /// The JPEG or PNG decoder rejected the data.
    #[error("{format} decode error: {message}")]
    Decode {
        /// `"JPEG"` or `"PNG"`.
        format: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// The compressed image's own dimensions differ from the frame header's
    /// (only with [`ConvertOptions::strict_compressed_dims`]).
    #[error(
        "frame header says {header_width}x{header_height} but the {format} data is \
         {decoded_width}x{decoded_height}"
    )]
    DimensionMismatch {
        /// `"JPEG"` or `"PNG"`.
        format: &'static str,
        /// Width from the frame header.
        header_width: u32,
        /// Height from the frame header.
        header_height: u32,
        /// Width found in the compressed data.
        decoded_width: u32,
        /// Height found in the compressed data.
        decoded_height: u32,
    },
    /// An [`Rgb888Image`] whose `pixels` length does not match its dimensions.
    #[error("RGB888 image {width}x{height} must hold {expected} bytes, has {got}")]
    InvalidImage {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// `width * height * 3` (saturating).
        expected: usize,
        /// `pixels.len()`.
        got: usize,
    },
    /// The PNG encoder failed.
    #[error("PNG encode error: {0}")]
    Encode(String),
    /// Writing the output file failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Tunables for [`to_rgb888_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConvertOptions {
    /// Largest RGB888 result accepted, in bytes (checked before allocating).
    pub max_output_bytes: usize,
    /// For JPEG/PNG: fail with [`ImageError::DimensionMismatch`] when the
    /// decoded size differs from the header's, instead of trusting the
    /// decoded size. A header of 0x0 is never considered a mismatch.
    pub strict_compressed_dims: bool,
}

/// Chainable setters, one per field (the struct is `#[non_exhaustive]`:
/// build it from [`Default::default`] and these, not with a struct literal).
impl ConvertOptions {
    /// Sets [`max_output_bytes`](Self::max_output_bytes).
    #[must_use]
    pub fn max_output_bytes(mut self, max_output_bytes: usize) -> Self {
        self.max_output_bytes = max_output_bytes;
        self
    }
    /// Sets [`strict_compressed_dims`](Self::strict_compressed_dims).
    #[must_use]
    pub fn strict_compressed_dims(mut self, strict_compressed_dims: bool) -> Self {
        self.strict_compressed_dims = strict_compressed_dims;
        self
    }
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            strict_compressed_dims: false,
        }
    }
}

/// Converts a frame's image bytes to RGB888 with the default options.
///
/// `width`, `height` and `pixfmt` come from the stream frame header. For
/// JPEG and PNG the decoded dimensions win over the header's (see the module
/// documentation).
pub fn to_rgb888(
    data: &[u8],
    width: u32,
    height: u32,
    pixfmt: u32,
) -> Result<Rgb888Image, ImageError> {
    to_rgb888_with(data, width, height, pixfmt, &ConvertOptions::default())
}

/// Converts a frame's image bytes to RGB888 with explicit options.
pub fn to_rgb888_with(
    data: &[u8],
    width: u32,
    height: u32,
    pixfmt: u32,
    opts: &ConvertOptions,
) -> Result<Rgb888Image, ImageError> {
    let format = pixfmt::name(pixfmt).ok_or(ImageError::UnsupportedFormat(pixfmt))?;
    match pixfmt {
        pixfmt::JPEG => return decode_jpeg(data, width, height, opts),
        pixfmt::PNG => return decode_png(data, width, height, opts),
        _ => {}
    }

    let out_len = output_len(format, width, height, opts.max_output_bytes)?;
    // Dimensions fit in usize now (out_len does), so these products cannot overflow.
    let (w, h) = (width as usize, height as usize);
    let expected = match pixfmt {
        pixfmt::GRAYSCALE | pixfmt::BAYER_BGGR => w * h,
        pixfmt::RGB565 | pixfmt::YUV422 => w * h * 2,
        pixfmt::ARGB8 => w * h * 4,
        pixfmt::BINARY => binary_row_bytes(w) * h,
        _ => return Err(ImageError::UnsupportedFormat(pixfmt)),
    };
    if data.len() != expected {
        return Err(ImageError::SizeMismatch {
            format,
            width,
            height,
            expected,
            got: data.len(),
        });
    }

    let mut out = Vec::with_capacity(out_len);
    match pixfmt {
        pixfmt::GRAYSCALE => grayscale(data, &mut out),
        pixfmt::RGB565 => rgb565(data, &mut out),
        pixfmt::ARGB8 => argb8(data, &mut out),
        pixfmt::YUV422 => yuv422(data, w, &mut out),
        pixfmt::BAYER_BGGR => bayer_bggr(data, w, h, &mut out),
        pixfmt::BINARY => binary(data, w, &mut out),
        _ => return Err(ImageError::UnsupportedFormat(pixfmt)),
    }
    debug_assert_eq!(out.len(), out_len);
    Ok(Rgb888Image {
        width,
        height,
        pixels: out,
    })
}

/// Checks the dimensions and returns `width * height * 3` as a usize.
fn output_len(
    format: &'static str,
    width: u32,
    height: u32,
    limit: usize,
) -> Result<usize, ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::ZeroDimension {
            format,
            width,
            height,
        });
    }
    let bytes = u128::from(width) * u128::from(height) * 3;
    match usize::try_from(bytes) {
        Ok(n) if n <= limit => Ok(n),
        _ => Err(ImageError::TooLarge {
            width,
            height,
            bytes,
            limit,
        }),
    }
}

/// Bytes per row of a BINARY image: whole u32 words.
fn binary_row_bytes(width: usize) -> usize {
    width.div_ceil(32) * 4
}

fn grayscale(data: &[u8], out: &mut Vec<u8>) {
    for &v in data {
        out.extend_from_slice(&[v, v, v]);
    }
}

/// RGB565 -> RGB888 exactly like the stock host (numpy float scaling then
/// truncation, which equals integer `v * 255 / max`).
fn rgb565(data: &[u8], out: &mut Vec<u8>) {
    for px in data.chunks_exact(2) {
        let v = u16::from_le_bytes([px[0], px[1]]);
        let r = u32::from(v >> 11) & 0x1F;
        let g = u32::from(v >> 5) & 0x3F;
        let b = u32::from(v) & 0x1F;
        out.extend_from_slice(&[scale(r, 31), scale(g, 63), scale(b, 31)]);
    }
}

/// `v * 255 / max`, truncated; `v <= max` so the result fits a byte.
fn scale(v: u32, max: u32) -> u8 {
    u8::try_from(v * 255 / max).unwrap_or(u8::MAX)
}

fn argb8(data: &[u8], out: &mut Vec<u8>) {
    for px in data.chunks_exact(4) {
        // Little-endian u32 0xAARRGGBB: bytes B, G, R, A.
        out.extend_from_slice(&[px[2], px[1], px[0]]);
    }
}

/// Full-range BT.601 (JFIF) YCbCr -> RGB, 16.16 fixed point, rounded.
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let y = i32::from(y);
    let cb = i32::from(u) - 128;
    let cr = i32::from(v) - 128;
    // 1.402, 0.344136, 0.714136, 1.772 scaled by 65536.
    let r = y + ((91_881 * cr + 32_768) >> 16);
    let g = y + ((-22_554 * cb - 46_802 * cr + 32_768) >> 16);
    let b = y + ((116_130 * cb + 32_768) >> 16);
    [clamp_u8(r), clamp_u8(g), clamp_u8(b)]
}

fn clamp_u8(v: i32) -> u8 {
    u8::try_from(v.clamp(0, 255)).unwrap_or(u8::MAX)
}

/// YUYV: each row is `w` u16 pixels; pixel pairs (2k, 2k+1) share U (byte 1
/// of the even pixel) and V (byte 1 of the odd pixel). On an odd width the
/// last pixel has no partner: it borrows V from the previous (odd) pixel like
/// the firmware does, or uses neutral chroma on a 1-pixel-wide image.
fn yuv422(data: &[u8], w: usize, out: &mut Vec<u8>) {
    for row in data.chunks_exact(w * 2) {
        for x in 0..w {
            let even = x & !1;
            let y = row[x * 2];
            let u = row[even * 2 + 1];
            let v = if even + 1 < w {
                row[(even + 1) * 2 + 1]
            } else if even >= 1 {
                row[(even - 1) * 2 + 1]
            } else {
                128
            };
            out.extend_from_slice(&yuv_to_rgb(y, u, v));
        }
    }
}

/// Colour index (0 R, 1 G, 2 B) of a BGGR Bayer site.
fn bggr_color(x: usize, y: usize) -> usize {
    match (y & 1, x & 1) {
        (0, 0) => 2,
        (1, 1) => 0,
        _ => 1,
    }
}

/// Bilinear demosaic: a site keeps its own colour; each missing colour is
/// the rounded mean of the in-bounds 3x3 neighbours of that colour (which is
/// exactly bilinear interpolation in the interior). At the borders only
/// in-bounds neighbours count; a colour with no neighbour at all (possible
/// only on 1-pixel-wide or 1-pixel-high images) is 0.
fn bayer_bggr(data: &[u8], w: usize, h: usize, out: &mut Vec<u8>) {
    for y in 0..h {
        for x in 0..w {
            let own = bggr_color(x, y);
            let mut sum = [0u32; 3];
            let mut count = [0u32; 3];
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let c = bggr_color(nx, ny);
                    if c != own {
                        sum[c] += u32::from(data[ny * w + nx]);
                        count[c] += 1;
                    }
                }
            }
            let mut rgb = [0u8; 3];
            for c in 0..3 {
                rgb[c] = if c == own {
                    data[y * w + x]
                } else {
                    // Rounded mean; no neighbour of that colour gives 0.
                    (sum[c] + count[c] / 2)
                        .checked_div(count[c])
                        .and_then(|v| u8::try_from(v).ok())
                        .unwrap_or(0)
                };
            }
            out.extend_from_slice(&rgb);
        }
    }
}

fn binary(data: &[u8], w: usize, out: &mut Vec<u8>) {
    for row in data.chunks_exact(binary_row_bytes(w)) {
        for x in 0..w {
            let v = if (row[x / 8] >> (x % 8)) & 1 == 1 {
                255
            } else {
                0
            };
            out.extend_from_slice(&[v, v, v]);
        }
    }
}

/// Applies the header-vs-decoded policy for compressed formats.
fn check_compressed_dims(
    format: &'static str,
    header: (u32, u32),
    decoded: (u32, u32),
    opts: &ConvertOptions,
) -> Result<(), ImageError> {
    if opts.strict_compressed_dims && header != (0, 0) && header != decoded {
        return Err(ImageError::DimensionMismatch {
            format,
            header_width: header.0,
            header_height: header.1,
            decoded_width: decoded.0,
            decoded_height: decoded.1,
        });
    }
    Ok(())
}

/// Runs a third-party decoder, turning a panic inside it (which would be a
/// bug in that crate) into a decode error rather than taking the host down.
fn guarded<T>(
    format: &'static str,
    f: impl FnOnce() -> Result<T, ImageError> + std::panic::UnwindSafe,
) -> Result<T, ImageError> {
    std::panic::catch_unwind(f).unwrap_or_else(|_| {
        Err(ImageError::Decode {
            format,
            message: "decoder panicked".to_string(),
        })
    })
}

fn decode_jpeg(
    data: &[u8],
    width: u32,
    height: u32,
    opts: &ConvertOptions,
) -> Result<Rgb888Image, ImageError> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    use zune_jpeg::JpegDecoder;

    let err = |e: zune_jpeg::errors::DecodeErrors| ImageError::Decode {
        format: "JPEG",
        message: e.to_string(),
    };
    let opts = *opts;
    guarded("JPEG", move || {
        let dopts = DecoderOptions::default()
            .jpeg_set_out_colorspace(ColorSpace::RGB)
            .set_max_width(usize::from(u16::MAX))
            .set_max_height(usize::from(u16::MAX));
        let mut dec = JpegDecoder::new_with_options(ZCursor::new(data), dopts);
        dec.decode_headers().map_err(err)?;
        let (dw, dh) = dec.dimensions().ok_or_else(|| ImageError::Decode {
            format: "JPEG",
            message: "no frame header".to_string(),
        })?;
        let (dw, dh) = (dw as u32, dh as u32);
        check_compressed_dims("JPEG", (width, height), (dw, dh), &opts)?;
        let len = output_len("JPEG", dw, dh, opts.max_output_bytes)?;
        if dec.output_buffer_size() != Some(len) {
            return Err(ImageError::Decode {
                format: "JPEG",
                message: "decoder output is not 3 bytes per pixel".to_string(),
            });
        }
        let mut pixels = vec![0u8; len];
        dec.decode_into(&mut pixels).map_err(err)?;
        Ok(Rgb888Image {
            width: dw,
            height: dh,
            pixels,
        })
    })
}

fn decode_png(
    data: &[u8],
    width: u32,
    height: u32,
    opts: &ConvertOptions,
) -> Result<Rgb888Image, ImageError> {
    use png::{BitDepth, ColorType, Decoder, Limits, Transformations};

    let err = |e: png::DecodingError| ImageError::Decode {
        format: "PNG",
        message: e.to_string(),
    };
    let opts = *opts;
    guarded("PNG", move || {
        // The decoder's own buffers are bounded by the same limit, with room
        // for its 4-byte-per-pixel intermediate output.
        let limits = Limits {
            bytes: opts.max_output_bytes.saturating_mul(2),
        };
        let mut dec = Decoder::new_with_limits(Cursor::new(data), limits);
        dec.set_transformations(Transformations::EXPAND | Transformations::STRIP_16);
        let mut reader = dec.read_info().map_err(err)?;
        let (dw, dh) = reader.info().size();
        check_compressed_dims("PNG", (width, height), (dw, dh), &opts)?;
        let len = output_len("PNG", dw, dh, opts.max_output_bytes)?;
        let buf_len = reader
            .output_buffer_size()
            .ok_or_else(|| ImageError::TooLarge {
                width: dw,
                height: dh,
                bytes: u128::from(dw) * u128::from(dh) * 8,
                limit: opts.max_output_bytes,
            })?;
        // At most 4 bytes per pixel after EXPAND | STRIP_16, so buf_len is
        // within 4/3 of the already-bounded `len`.
        if buf_len / 4 > len / 3 {
            return Err(ImageError::Decode {
                format: "PNG",
                message: "unexpected decoder output size".to_string(),
            });
        }
        let mut buf = vec![0u8; buf_len];
        let info = reader.next_frame(&mut buf).map_err(err)?;
        let buf = buf.get(..info.buffer_size()).unwrap_or(&buf);
        if info.bit_depth != BitDepth::Eight {
            return Err(ImageError::Decode {
                format: "PNG",
                message: format!("unexpected output bit depth {:?}", info.bit_depth),
            });
        }
        let line = info.line_size;
        let w = dw as usize;
        let mut pixels = Vec::with_capacity(len);
        for row in buf.chunks_exact(line).take(dh as usize) {
            match info.color_type {
                ColorType::Grayscale => {
                    for &v in row.iter().take(w) {
                        pixels.extend_from_slice(&[v, v, v]);
                    }
                }
                ColorType::GrayscaleAlpha => {
                    for px in row.chunks_exact(2).take(w) {
                        pixels.extend_from_slice(&[px[0], px[0], px[0]]);
                    }
                }
                ColorType::Rgb => pixels.extend_from_slice(row.get(..w * 3).unwrap_or(row)),
                ColorType::Rgba => {
                    for px in row.chunks_exact(4).take(w) {
                        pixels.extend_from_slice(&px[..3]);
                    }
                }
                ColorType::Indexed => {
                    return Err(ImageError::Decode {
                        format: "PNG",
                        message: "palette was not expanded".to_string(),
                    })
                }
            }
        }
        if pixels.len() != len {
            return Err(ImageError::Decode {
                format: "PNG",
                message: format!("decoded {} bytes, expected {len}", pixels.len()),
            });
        }
        Ok(Rgb888Image {
            width: dw,
            height: dh,
            pixels,
        })
    })
}

/// Encodes an image as an 8-bit RGB PNG.
///
/// Fails with [`ImageError::InvalidImage`] when `pixels` does not hold
/// exactly `width * height * 3` bytes and with [`ImageError::ZeroDimension`]
/// for an empty image (PNG cannot represent one).
pub fn encode_png(img: &Rgb888Image) -> Result<Vec<u8>, ImageError> {
    if img.width == 0 || img.height == 0 {
        return Err(ImageError::ZeroDimension {
            format: "PNG",
            width: img.width,
            height: img.height,
        });
    }
    let expected = u128::from(img.width) * u128::from(img.height) * 3;
    if expected != img.pixels.len() as u128 {
        return Err(ImageError::InvalidImage {
            width: img.width,
            height: img.height,
            expected: usize::try_from(expected).unwrap_or(usize::MAX),
            got: img.pixels.len(),
        });
    }
    let enc_err = |e: png::EncodingError| ImageError::Encode(e.to_string());
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, img.width, img.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(enc_err)?;
        writer.write_image_data(&img.pixels).map_err(enc_err)?;
        writer.finish().map_err(enc_err)?;
    }
    Ok(out)
}

/// Encodes an image as PNG ([`encode_png`]) and writes it to `path`.
pub fn save_png(img: &Rgb888Image, path: impl AsRef<Path>) -> Result<(), ImageError> {
    let path = path.as_ref();
    let bytes = encode_png(img)?;
    std::fs::write(path, bytes).map_err(|source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn px(img: &Rgb888Image, x: u32, y: u32) -> [u8; 3] {
        img.pixel(x, y).expect("pixel in range")
    }

    #[test]
    fn grayscale_replicates() {
        let img = to_rgb888(&[0, 7, 128, 255], 2, 2, pixfmt::GRAYSCALE).unwrap();
        assert_eq!((img.width, img.height), (2, 2));
        assert_eq!(
            img.pixels,
            vec![0, 0, 0, 7, 7, 7, 128, 128, 128, 255, 255, 255]
        );
    }

    #[test]
    fn rgb565_matches_stock_scaling() {
        let words: [u16; 6] = [0xF800, 0x07E0, 0x001F, 0xFFFF, 0x0000, 0x0821];
        let data: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let img = to_rgb888(&data, 3, 2, pixfmt::RGB565).unwrap();
        assert_eq!(px(&img, 0, 0), [255, 0, 0]);
        assert_eq!(px(&img, 1, 0), [0, 255, 0]);
        assert_eq!(px(&img, 2, 0), [0, 0, 255]);
        assert_eq!(px(&img, 0, 1), [255, 255, 255]);
        assert_eq!(px(&img, 1, 1), [0, 0, 0]);
        // r5 = 1, g6 = 1, b5 = 1: 255/31 = 8.2 -> 8, 255/63 = 4.04 -> 4.
        assert_eq!(px(&img, 2, 1), [8, 4, 8]);
    }

    #[test]
    fn rgb565_scaling_is_truncating_for_every_value() {
        // Same as numpy's (v * 255.0 / max).astype(uint8).
        for v in 0..32u32 {
            assert_eq!(
                u32::from(scale(v, 31)),
                (f64::from(v) * 255.0 / 31.0) as u32
            );
        }
        for v in 0..64u32 {
            assert_eq!(
                u32::from(scale(v, 63)),
                (f64::from(v) * 255.0 / 63.0) as u32
            );
        }
    }

    #[test]
    fn argb8_drops_alpha() {
        // 0x80112233 little-endian, then 0xFFFF0000 (opaque red).
        let data = [0x33, 0x22, 0x11, 0x80, 0x00, 0x00, 0xFF, 0xFF];
        let img = to_rgb888(&data, 2, 1, pixfmt::ARGB8).unwrap();
        assert_eq!(img.pixels, vec![0x11, 0x22, 0x33, 0xFF, 0, 0]);
    }

    #[test]
    fn yuv422_bt601_full_range() {
        // Pair 1: neutral chroma, Y 16 and 235. Pair 2: Y 76/U 85/V 255 ~ red.
        let data = [16, 128, 235, 128, 76, 85, 76, 255];
        let img = to_rgb888(&data, 4, 1, pixfmt::YUV422).unwrap();
        assert_eq!(px(&img, 0, 0), [16, 16, 16]);
        assert_eq!(px(&img, 1, 0), [235, 235, 235]);
        // R = 76 + 1.402*127 = 254.05; G = 76 + 0.344*43 - 0.714*127 = 0.1;
        // B = 76 - 1.772*43 = -0.2 -> 0.
        assert_eq!(px(&img, 2, 0), [254, 0, 0]);
        assert_eq!(px(&img, 3, 0), [254, 0, 0]);
    }

    #[test]
    fn yuv422_blue_and_odd_width() {
        // Y 29, U 255, V 107 ~ pure blue: R = 29 - 1.402*21 = -0.4 -> 0,
        // G = 29 - 0.344*127 + 0.714*21 = 0.3 -> 0, B = 29 + 1.772*127 = 254.04.
        let img = to_rgb888(&[29, 255, 29, 107], 2, 1, pixfmt::YUV422).unwrap();
        assert_eq!(px(&img, 0, 0), [0, 0, 254]);
        // Width 3: the last pixel borrows V from pixel 1.
        let img = to_rgb888(&[29, 255, 29, 107, 29, 255], 3, 1, pixfmt::YUV422).unwrap();
        assert_eq!(px(&img, 2, 0), [0, 0, 254]);
        // Width 1: neutral V.
        let img = to_rgb888(&[100, 128], 1, 1, pixfmt::YUV422).unwrap();
        assert_eq!(px(&img, 0, 0), [100, 100, 100]);
    }

    #[test]
    fn bayer_uniform_planes() {
        // B sites 10, G sites 20, R sites 30 on a 4x4 BGGR mosaic: every
        // output pixel must be (30, 20, 10), borders included.
        let (w, h) = (4usize, 4usize);
        let data: Vec<u8> = (0..w * h)
            .map(|i| match bggr_color(i % w, i / w) {
                0 => 30,
                1 => 20,
                _ => 10,
            })
            .collect();
        let img = to_rgb888(&data, 4, 4, pixfmt::BAYER_BGGR).unwrap();
        for y in 0..4 {
            for x in 0..4 {
                assert_eq!(px(&img, x, y), [30, 20, 10], "at {x},{y}");
            }
        }
    }

    #[test]
    fn bayer_bilinear_interior() {
        // 3x3:  B0  G1  B2
        //       G3  R4  G5
        //       B6  G7  B8
        let data = [0, 10, 20, 30, 40, 50, 60, 70, 80];
        let img = to_rgb888(&data, 3, 3, pixfmt::BAYER_BGGR).unwrap();
        // Centre R site: G = mean(10, 30, 50, 70) = 40, B = mean(0, 20, 60, 80) = 40.
        assert_eq!(px(&img, 1, 1), [40, 40, 40]);
        // Top-left B site: R = 40, G = mean(10, 30) = 20.
        assert_eq!(px(&img, 0, 0), [40, 20, 0]);
        // Top-middle G site: B = mean(0, 20) = 10, R = 40.
        assert_eq!(px(&img, 1, 0), [40, 10, 10]);
        // Left-middle G site: B = mean(0, 60) = 30, R = 40.
        assert_eq!(px(&img, 0, 1), [40, 30, 30]);
    }

    #[test]
    fn bayer_odd_and_tiny_sizes() {
        for (w, h) in [(1u32, 1u32), (1, 2), (2, 1), (3, 1), (1, 5), (5, 3), (7, 7)] {
            let data = vec![100u8; (w * h) as usize];
            let img = to_rgb888(&data, w, h, pixfmt::BAYER_BGGR).unwrap();
            assert_eq!(img.pixels.len(), (w * h * 3) as usize);
        }
        // 1x1: only a B site; R and G have no neighbours.
        let img = to_rgb888(&[200], 1, 1, pixfmt::BAYER_BGGR).unwrap();
        assert_eq!(img.pixels, vec![0, 0, 200]);
    }

    #[test]
    fn binary_rows_padded_to_words() {
        // Width 33: 2 words (8 bytes) per row. Row 0: pixels 0, 9 and 32 set;
        // row 1: pixel 31 set.
        let mut data = vec![0u8; 16];
        data[0] = 0b0000_0001;
        data[1] = 0b0000_0010;
        data[4] = 0b0000_0001;
        data[8 + 3] = 0b1000_0000;
        let img = to_rgb888(&data, 33, 2, pixfmt::BINARY).unwrap();
        for x in 0..33 {
            let on0 = matches!(x, 0 | 9 | 32);
            assert_eq!(
                px(&img, x, 0),
                if on0 { [255; 3] } else { [0; 3] },
                "row 0 x {x}"
            );
            let on1 = x == 31;
            assert_eq!(
                px(&img, x, 1),
                if on1 { [255; 3] } else { [0; 3] },
                "row 1 x {x}"
            );
        }
        // Unpadded data is a size mismatch.
        assert!(matches!(
            to_rgb888(&[0u8; 5], 33, 1, pixfmt::BINARY),
            Err(ImageError::SizeMismatch {
                expected: 8,
                got: 5,
                ..
            })
        ));
    }

    #[test]
    fn size_mismatch_reports_expected_and_got() {
        let e = to_rgb888(&[0u8; 7], 2, 2, pixfmt::RGB565).unwrap_err();
        assert!(matches!(
            e,
            ImageError::SizeMismatch {
                format: "RGB565",
                expected: 8,
                got: 7,
                ..
            }
        ));
        assert!(e.to_string().contains("needs 8 bytes"));
    }

    #[test]
    fn unsupported_and_zero_and_huge() {
        assert!(matches!(
            to_rgb888(&[], 1, 1, 0x1234_5678),
            Err(ImageError::UnsupportedFormat(0x1234_5678))
        ));
        assert!(matches!(
            to_rgb888(&[], 0, 10, pixfmt::GRAYSCALE),
            Err(ImageError::ZeroDimension { .. })
        ));
        assert!(matches!(
            to_rgb888(&[], u32::MAX, u32::MAX, pixfmt::ARGB8),
            Err(ImageError::TooLarge { .. })
        ));
        // Just above 256 MiB of output.
        assert!(matches!(
            to_rgb888(&[], 16384, 5462, pixfmt::GRAYSCALE),
            Err(ImageError::TooLarge { .. })
        ));
        let small = ConvertOptions::default().max_output_bytes(11);
        assert!(matches!(
            to_rgb888_with(&[0; 4], 2, 2, pixfmt::GRAYSCALE, &small),
            Err(ImageError::TooLarge {
                bytes: 12,
                limit: 11,
                ..
            })
        ));
    }

    fn make_jpeg(w: u16, h: u16, rgb: [u8; 3]) -> Vec<u8> {
        let pixels: Vec<u8> = (0..usize::from(w) * usize::from(h))
            .flat_map(|_| rgb)
            .collect();
        let mut out = Vec::new();
        let enc = jpeg_encoder::Encoder::new(&mut out, 90);
        enc.encode(&pixels, w, h, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        out
    }

    fn assert_close(a: [u8; 3], b: [u8; 3], tol: u8) {
        for c in 0..3 {
            assert!(a[c].abs_diff(b[c]) <= tol, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn jpeg_round_trip() {
        let jpeg = make_jpeg(37, 21, [200, 40, 90]);
        let img = to_rgb888(&jpeg, 37, 21, pixfmt::JPEG).unwrap();
        assert_eq!((img.width, img.height), (37, 21));
        assert_eq!(img.pixels.len(), 37 * 21 * 3);
        assert_close(px(&img, 0, 0), [200, 40, 90], 6);
        assert_close(px(&img, 36, 20), [200, 40, 90], 6);
    }

    #[test]
    fn jpeg_grayscale_source() {
        let pixels = vec![77u8; 16 * 8];
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 90)
            .encode(&pixels, 16, 8, jpeg_encoder::ColorType::Luma)
            .unwrap();
        let img = to_rgb888(&out, 16, 8, pixfmt::JPEG).unwrap();
        assert_close(px(&img, 3, 3), [77, 77, 77], 2);
    }

    #[test]
    fn jpeg_header_dims_policy() {
        let jpeg = make_jpeg(16, 8, [0, 0, 255]);
        // Default: decoded dims win.
        let img = to_rgb888(&jpeg, 320, 240, pixfmt::JPEG).unwrap();
        assert_eq!((img.width, img.height), (16, 8));
        // Strict: mismatch is an error.
        let strict = ConvertOptions::default().strict_compressed_dims(true);
        assert!(matches!(
            to_rgb888_with(&jpeg, 320, 240, pixfmt::JPEG, &strict),
            Err(ImageError::DimensionMismatch {
                header_width: 320,
                decoded_width: 16,
                ..
            })
        ));
        assert!(to_rgb888_with(&jpeg, 16, 8, pixfmt::JPEG, &strict).is_ok());
        // Size limit applies to the decoded dims.
        let tiny = ConvertOptions::default().max_output_bytes(100);
        assert!(matches!(
            to_rgb888_with(&jpeg, 1, 1, pixfmt::JPEG, &tiny),
            Err(ImageError::TooLarge { .. })
        ));
    }

    #[test]
    fn png_round_trip() {
        let pixels: Vec<u8> = (0..5 * 3 * 3).map(|i| (i * 7) as u8).collect();
        let img = Rgb888Image {
            width: 5,
            height: 3,
            pixels,
        };
        let png = encode_png(&img).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let back = to_rgb888(&png, 5, 3, pixfmt::PNG).unwrap();
        assert_eq!(back, img);
    }

    fn encode_png_raw(
        w: u32,
        h: u32,
        ct: png::ColorType,
        depth: png::BitDepth,
        data: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(ct);
        enc.set_depth(depth);
        if ct == png::ColorType::Indexed {
            enc.set_palette(vec![0, 0, 0, 255, 0, 0]);
        }
        let mut wr = enc.write_header().unwrap();
        wr.write_image_data(data).unwrap();
        wr.finish().unwrap();
        out
    }

    #[test]
    fn png_other_color_types() {
        use png::{BitDepth, ColorType};
        let gray = encode_png_raw(2, 1, ColorType::Grayscale, BitDepth::Eight, &[9, 250]);
        assert_eq!(
            to_rgb888(&gray, 0, 0, pixfmt::PNG).unwrap().pixels,
            vec![9, 9, 9, 250, 250, 250]
        );
        let rgba = encode_png_raw(1, 1, ColorType::Rgba, BitDepth::Eight, &[1, 2, 3, 4]);
        assert_eq!(
            to_rgb888(&rgba, 1, 1, pixfmt::PNG).unwrap().pixels,
            vec![1, 2, 3]
        );
        let ga16 = encode_png_raw(
            1,
            1,
            ColorType::GrayscaleAlpha,
            BitDepth::Sixteen,
            &[0xAB, 0xCD, 0, 0],
        );
        assert_eq!(
            to_rgb888(&ga16, 1, 1, pixfmt::PNG).unwrap().pixels,
            vec![0xAB; 3]
        );
        // 1-bit palette, 3 pixels: indices 1, 0, 1.
        let idx = encode_png_raw(3, 1, ColorType::Indexed, BitDepth::One, &[0b1010_0000]);
        assert_eq!(
            to_rgb888(&idx, 3, 1, pixfmt::PNG).unwrap().pixels,
            vec![255, 0, 0, 0, 0, 0, 255, 0, 0]
        );
    }

    #[test]
    fn encode_png_rejects_inconsistent_images() {
        let bad = Rgb888Image {
            width: 2,
            height: 2,
            pixels: vec![0; 11],
        };
        assert!(matches!(
            encode_png(&bad),
            Err(ImageError::InvalidImage {
                expected: 12,
                got: 11,
                ..
            })
        ));
        let empty = Rgb888Image {
            width: 0,
            height: 5,
            pixels: vec![],
        };
        assert!(matches!(
            encode_png(&empty),
            Err(ImageError::ZeroDimension { .. })
        ));
    }

    #[test]
    fn save_png_writes_file() {
        let dir = std::env::temp_dir().join(format!("hb-image-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.png");
        let img = Rgb888Image {
            width: 1,
            height: 1,
            pixels: vec![1, 2, 3],
        };
        save_png(&img, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(to_rgb888(&bytes, 1, 1, pixfmt::PNG).unwrap(), img);
        std::fs::remove_dir_all(&dir).unwrap();
        let missing = dir.join("no-such-dir").join("x.png");
        assert!(matches!(
            save_png(&img, missing),
            Err(ImageError::Io { .. })
        ));
    }

    /// Small deterministic PRNG (xorshift64*), so the tests need no crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    const ALL_FORMATS: [u32; 9] = [
        pixfmt::GRAYSCALE,
        pixfmt::RGB565,
        pixfmt::JPEG,
        pixfmt::PNG,
        pixfmt::BAYER_BGGR,
        pixfmt::YUV422,
        pixfmt::ARGB8,
        pixfmt::BINARY,
        0xDEAD_BEEF,
    ];

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(0x5EED_1234_ABCD_0001);
        let dims = [0u32, 1, 2, 3, 7, 8, 31, 33, 64, 65535, 65536, u32::MAX];
        for round in 0..400 {
            let len = (rng.next() % 300) as usize;
            let data = rng.bytes(len);
            let w = dims[(rng.next() % dims.len() as u64) as usize];
            let h = dims[(rng.next() % dims.len() as u64) as usize];
            for fmt in ALL_FORMATS {
                let _ = to_rgb888(&data, w, h, fmt);
            }
            // Data of exactly the right size for small dims.
            let (w, h) = ((round % 9 + 1) as u32, (round % 5 + 1) as u32);
            for (fmt, n) in [
                (pixfmt::GRAYSCALE, w * h),
                (pixfmt::BAYER_BGGR, w * h),
                (pixfmt::RGB565, w * h * 2),
                (pixfmt::YUV422, w * h * 2),
                (pixfmt::ARGB8, w * h * 4),
                (pixfmt::BINARY, w.div_ceil(32) * 4 * h),
            ] {
                let img = to_rgb888(&rng.bytes(n as usize), w, h, fmt).unwrap();
                assert_eq!(img.pixels.len(), (w * h * 3) as usize);
            }
        }
    }

    #[test]
    fn corrupted_compressed_never_panics() {
        let mut rng = Rng(0xC0FF_EE00_1234_5678);
        let jpeg = make_jpeg(24, 16, [10, 200, 30]);
        let png = encode_png(&Rgb888Image {
            width: 9,
            height: 4,
            pixels: rng.bytes(9 * 4 * 3),
        })
        .unwrap();
        for (fmt, good) in [(pixfmt::JPEG, &jpeg), (pixfmt::PNG, &png)] {
            for _ in 0..300 {
                let mut bad = good.clone();
                match rng.next() % 3 {
                    0 => {
                        let n = 1 + (rng.next() % 8) as usize;
                        for _ in 0..n {
                            let i = (rng.next() % bad.len() as u64) as usize;
                            bad[i] ^= 1 << (rng.next() % 8);
                        }
                    }
                    1 => bad.truncate((rng.next() % bad.len() as u64) as usize),
                    _ => {
                        let i = (rng.next() % bad.len() as u64) as usize;
                        let junk = rng.bytes(16);
                        bad.splice(i..i, junk);
                    }
                }
                let _ = to_rgb888(&bad, 24, 16, fmt);
            }
            // Garbage that starts with the right magic.
            let mut fake = good[..8.min(good.len())].to_vec();
            fake.extend(rng.bytes(200));
            assert!(to_rgb888(&fake, 1, 1, fmt).is_err());
        }
    }

    #[test]
    fn jpeg_with_huge_declared_size_is_rejected_before_allocating() {
        // SOF0 claiming 65535x65535: 12 GiB of RGB888, over the default limit.
        let mut jpeg = make_jpeg(8, 8, [1, 2, 3]);
        let sof = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("baseline SOF0 marker");
        // FF C0 len(2) precision(1) height(2) width(2)
        jpeg[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        let e = to_rgb888(&jpeg, 8, 8, pixfmt::JPEG).unwrap_err();
        assert!(
            matches!(e, ImageError::TooLarge { .. } | ImageError::Decode { .. }),
            "{e}"
        );
    }
}
