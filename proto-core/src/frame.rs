//! Stream channel frames: the frame header and pixel formats (section 9).
//!
//! A frame read from the stream channel is a header followed, at `offset`,
//! by the image bytes. Firmware ≥ 5.0 sends a 24-byte header (with fps),
//! older firmware 20 bytes; readers must always use `offset`.

use alloc::vec::Vec;
use core::fmt;

use crate::error::{le32, need, DecodeError};
use crate::shape::Shape;

/// An OpenMV pixel format. Unknown values are preserved.
///
/// The value packs, from the top: flags in bits 24..=28 (YUV, mutable,
/// color, compressed, raw/Bayer), the format id in bits 16..=23, a
/// sub-format id in bits 8..=15 and the bytes per pixel in bits 0..=7.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PixFormat(pub u32);

impl PixFormat {
    /// 8-bit grayscale.
    pub const GRAYSCALE: PixFormat = PixFormat(0x0802_0001);
    /// RGB565, little-endian u16 per pixel.
    pub const RGB565: PixFormat = PixFormat(0x0C03_0002);
    /// JPEG-compressed.
    pub const JPEG: PixFormat = PixFormat(0x0606_0000);
    /// PNG-compressed.
    pub const PNG: PixFormat = PixFormat(0x0607_0000);
    /// Raw Bayer, BGGR, 8 bits per pixel.
    pub const BAYER_BGGR: PixFormat = PixFormat(0x0504_0001);
    /// YUV 4:2:2, 2 bytes per pixel.
    pub const YUV422: PixFormat = PixFormat(0x1405_0002);
    /// ARGB, 8 bits per channel.
    pub const ARGB8: PixFormat = PixFormat(0x0C08_0004);
    /// 1 bit per pixel.
    pub const BINARY: PixFormat = PixFormat(0x0801_0000);

    /// Flag bit marking a compressed format (JPEG, PNG).
    pub const FLAG_COMPRESSED: u32 = 1 << 25;
    /// Format id of [`PixFormat::BINARY`].
    pub const ID_BINARY: u8 = 1;

    /// True for compressed formats (JPEG, PNG): the header's `size` is then
    /// the image byte size. Read from the format's compressed flag bit.
    pub const fn is_compressed(self) -> bool {
        self.0 & Self::FLAG_COMPRESSED != 0
    }

    /// The format id (bits 16..=23): 1 binary, 2 gray, 3 RGB565, 4 Bayer,
    /// 5 YUV422, 6 JPEG, 7 PNG, 8 ARGB8.
    pub const fn id(self) -> u8 {
        (self.0 >> 16) as u8
    }

    /// Whole bytes per pixel, from the format's low byte: GRAYSCALE 1,
    /// RGB565 2, BAYER_BGGR 1, YUV422 2, ARGB8 4. It is 0 for compressed
    /// formats and for BINARY (1 bit per pixel, rows packed into u32 words;
    /// see [`FrameHeader::expected_image_len`]).
    pub const fn bytes_per_pixel(self) -> u32 {
        self.0 & 0xFF
    }

    /// Name of a known format.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0802_0001 => "GRAYSCALE",
            0x0C03_0002 => "RGB565",
            0x0606_0000 => "JPEG",
            0x0607_0000 => "PNG",
            0x0504_0001 => "BAYER_BGGR",
            0x1405_0002 => "YUV422",
            0x0C08_0004 => "ARGB8",
            0x0801_0000 => "BINARY",
            _ => return None,
        })
    }
}

impl fmt::Debug for PixFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "PixFormat({:#010x})", self.0),
        }
    }
}

impl fmt::Display for PixFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The header in front of each stream frame.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct FrameHeader {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixel format.
    pub pixfmt: PixFormat,
    /// Compressed formats: image byte size; otherwise bytes per pixel.
    pub size: u32,
    /// Where the image data starts, from the start of the header.
    pub offset: u32,
    /// Frames per second (firmware ≥ 5.0; `None` for the 20-byte header).
    pub fps: Option<f32>,
}

impl FrameHeader {
    /// Size of the header with fps (firmware ≥ 5.0).
    pub const LEN_V5: usize = 24;
    /// Size of the header without fps (older firmware); also the minimum.
    pub const LEN_V4: usize = 20;

    /// A header whose `offset` is its own encoded length (24 with fps, 20
    /// without), so the image bytes follow it directly.
    pub fn new(width: u32, height: u32, pixfmt: PixFormat, size: u32, fps: Option<f32>) -> Self {
        let mut h = FrameHeader {
            width,
            height,
            pixfmt,
            size,
            offset: 0,
            fps,
        };
        h.offset = h.encoded_len() as u32;
        h
    }

    /// Encoded length: 24 when `fps` is `Some`, else 20.
    pub const fn encoded_len(&self) -> usize {
        if self.fps.is_some() {
            Self::LEN_V5
        } else {
            Self::LEN_V4
        }
    }

    /// Encodes into `out` and returns the used length (24 with fps, 20
    /// without). The `offset` field is written as given.
    pub fn encode(&self, out: &mut [u8; Self::LEN_V5]) -> usize {
        let words = [
            self.width,
            self.height,
            self.pixfmt.0,
            self.size,
            self.offset,
        ];
        for (i, v) in words.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        match self.fps {
            Some(fps) => {
                out[20..24].copy_from_slice(&fps.to_bits().to_le_bytes());
                Self::LEN_V5
            }
            None => Self::LEN_V4,
        }
    }

    /// Appends the encoded header to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut b = [0u8; Self::LEN_V5];
        let n = self.encode(&mut b);
        out.extend_from_slice(&b[..n]);
    }

    /// Decodes the header at the start of `buf` (a frame, or at least its
    /// first `offset` bytes). Needs 20 bytes; `offset` must be ≥ 20
    /// ([`DecodeError::InvalidValue`]) and ≤ `buf.len()`
    /// ([`DecodeError::Short`]). fps is read only when `offset` ≥ 24.
    pub fn decode(buf: &[u8]) -> Result<FrameHeader, DecodeError> {
        need("frame header", buf, Self::LEN_V4)?;
        let offset = le32(buf, 16);
        let off = usize::try_from(offset).map_err(|_| DecodeError::InvalidValue {
            what: "frame offset",
            value: offset.into(),
        })?;
        if off < Self::LEN_V4 {
            return Err(DecodeError::InvalidValue {
                what: "frame offset",
                value: offset.into(),
            });
        }
        need("frame header", buf, off)?;
        let fps = if off >= Self::LEN_V5 && buf.len() >= Self::LEN_V5 {
            Some(f32::from_bits(le32(buf, 20)))
        } else {
            None
        };
        Ok(FrameHeader {
            width: le32(buf, 0),
            height: le32(buf, 4),
            pixfmt: PixFormat(le32(buf, 8)),
            size: le32(buf, 12),
            offset,
            fps,
        })
    }

    /// The image bytes of `buf` (the frame this header was decoded from):
    /// everything from `offset` on; empty when `buf` is shorter than `offset`.
    pub fn image_data<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        usize::try_from(self.offset)
            .ok()
            .and_then(|o| buf.get(o..))
            .unwrap_or(&[])
    }

    /// Image byte length the header implies: `size` for compressed formats,
    /// `width · height · bytes_per_pixel` otherwise, and for BINARY
    /// `ceil(width / 32) · 4 · height` (rows packed into u32 words, as the
    /// firmware stores them). `None` for an unknown format with no byte
    /// size, or on overflow.
    pub fn expected_image_len(&self) -> Option<u64> {
        let (w, h) = (u64::from(self.width), u64::from(self.height));
        if self.pixfmt.is_compressed() {
            Some(self.size.into())
        } else if self.pixfmt.id() == PixFormat::ID_BINARY {
            w.div_ceil(32).checked_mul(4)?.checked_mul(h)
        } else {
            match self.pixfmt.bytes_per_pixel() {
                0 => None,
                bpp => w.checked_mul(h)?.checked_mul(bpp.into()),
            }
        }
    }

    /// The stream channel's CHANNEL_SHAPE for this frame: `(size,)` when
    /// compressed, `(width, height, size)` otherwise (`size` being the bytes
    /// per pixel then).
    pub fn shape(&self) -> Shape {
        let s = if self.pixfmt.is_compressed() {
            Shape::new(&[self.size])
        } else {
            Shape::new(&[self.width, self.height, self.size])
        };
        s.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixformats() {
        let table = [
            (PixFormat::GRAYSCALE, false, 1, "GRAYSCALE"),
            (PixFormat::RGB565, false, 2, "RGB565"),
            (PixFormat::JPEG, true, 0, "JPEG"),
            (PixFormat::PNG, true, 0, "PNG"),
            (PixFormat::BAYER_BGGR, false, 1, "BAYER_BGGR"),
            (PixFormat::YUV422, false, 2, "YUV422"),
            (PixFormat::ARGB8, false, 4, "ARGB8"),
            (PixFormat::BINARY, false, 0, "BINARY"),
        ];
        for (p, comp, bpp, name) in table {
            assert_eq!(p.is_compressed(), comp, "{name}");
            assert_eq!(p.bytes_per_pixel(), bpp, "{name}");
            assert_eq!(p.name(), Some(name));
        }
        assert_eq!(PixFormat::JPEG.id(), 6);
        assert_eq!(PixFormat(1).name(), None);
        assert_eq!(
            alloc::format!("{:?}", PixFormat(1)),
            "PixFormat(0x00000001)"
        );
    }

    #[test]
    fn layout_v5() {
        let h = FrameHeader::new(320, 240, PixFormat::JPEG, 0x1234, Some(30.0));
        assert_eq!(h.offset, 24);
        let mut b = [0u8; 24];
        assert_eq!(h.encode(&mut b), 24);
        #[rustfmt::skip]
        let want = [
            0x40, 0x01, 0, 0, 0xf0, 0, 0, 0, 0, 0, 0x06, 0x06, 0x34, 0x12, 0, 0,
            24, 0, 0, 0, 0, 0, 0xf0, 0x41,
        ];
        assert_eq!(b, want);
        let mut frame = b.to_vec();
        frame.extend_from_slice(&[0xff, 0xd8]);
        let d = FrameHeader::decode(&frame).unwrap();
        assert_eq!(d, h);
        assert_eq!(d.image_data(&frame), &[0xff, 0xd8]);
        assert_eq!(d.expected_image_len(), Some(0x1234));
        assert_eq!(d.shape().dims(), &[0x1234]);
    }

    #[test]
    fn layout_v4() {
        let h = FrameHeader::new(4, 2, PixFormat::RGB565, 2, None);
        let mut v = Vec::new();
        h.encode_into(&mut v);
        #[rustfmt::skip]
        assert_eq!(v, [4, 0, 0, 0, 2, 0, 0, 0, 2, 0, 3, 0x0c, 2, 0, 0, 0, 20, 0, 0, 0]);
        v.extend_from_slice(&[9; 16]);
        let d = FrameHeader::decode(&v).unwrap();
        assert_eq!(d, h);
        assert_eq!(d.fps, None);
        assert_eq!(d.image_data(&v), &[9; 16]);
        assert_eq!(d.expected_image_len(), Some(16));
        assert_eq!(d.shape().dims(), &[4, 2, 2]);
    }

    #[test]
    fn offset_rules() {
        let mut b = [0u8; 32];
        // offset < 20
        b[16] = 19;
        assert_eq!(
            FrameHeader::decode(&b),
            Err(DecodeError::InvalidValue {
                what: "frame offset",
                value: 19
            })
        );
        // offset past the buffer
        b[16] = 33;
        assert!(matches!(
            FrameHeader::decode(&b),
            Err(DecodeError::Short { need: 33, .. })
        ));
        b[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(FrameHeader::decode(&b).is_err());
        // Larger offset: fps is read, the image starts at the offset.
        b[16..20].copy_from_slice(&28u32.to_le_bytes());
        b[20..24].copy_from_slice(&1.5f32.to_bits().to_le_bytes());
        b[28] = 7;
        let d = FrameHeader::decode(&b).unwrap();
        assert_eq!(d.fps, Some(1.5));
        assert_eq!(d.image_data(&b), &[7, 0, 0, 0]);
        // A 20-byte header with offset 20 in a 24-byte buffer: no fps.
        b[16..20].copy_from_slice(&20u32.to_le_bytes());
        assert_eq!(FrameHeader::decode(&b[..24]).unwrap().fps, None);
        assert!(FrameHeader::decode(&b[..19]).is_err());
        // image_data never panics on a mismatched buffer.
        assert_eq!(d.image_data(&b[..5]), &[] as &[u8]);
    }

    #[test]
    fn binary_len() {
        let h = FrameHeader::new(33, 3, PixFormat::BINARY, 0, None);
        assert_eq!(h.expected_image_len(), Some(8 * 3));
        let h = FrameHeader::new(u32::MAX, u32::MAX, PixFormat::ARGB8, 4, None);
        assert_eq!(h.expected_image_len(), None);
        assert_eq!(
            FrameHeader::new(1, 1, PixFormat(0), 0, None).expected_image_len(),
            None
        );
    }
}
