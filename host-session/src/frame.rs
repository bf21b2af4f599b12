//! Decoded frames: [`Frame`] and [`DecodeFrame`] (feature `image`), what
//! every driver's `read_frame` returns.

use omv_proto::frame::PixFormat;

use crate::image::{ImageError, Rgb888Image};
use crate::types::RawFrame;

/// A decoded frame from the stream channel (stock `read_frame()` dict).
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Width in pixels (of the decoded image).
    pub width: u32,
    /// Height in pixels (of the decoded image).
    pub height: u32,
    /// Pixel format the cam declared.
    pub pixfmt: PixFormat,
    /// The header's size field: byte size for JPEG/PNG, bytes per pixel
    /// otherwise (stock `depth`).
    pub depth: u32,
    /// Image bytes the cam sent, before decoding.
    pub raw_size: usize,
    /// The pixels as RGB888.
    pub rgb: Rgb888Image,
    /// Frame rate reported by firmware 5.0 and later.
    pub fps: Option<f32>,
}

/// Pixel decoding of a [`RawFrame`].
pub trait DecodeFrame {
    /// Converts to RGB888 (JPEG, PNG, RGB565, grayscale, Bayer, YUV422,
    /// ARGB8, binary).
    fn decode(self) -> Result<Frame, ImageError>;
}

impl DecodeFrame for RawFrame {
    fn decode(self) -> Result<Frame, ImageError> {
        let h = self.header;
        let rgb = crate::image::to_rgb888(&self.data, h.width, h.height, h.pixfmt.0)?;
        Ok(Frame {
            width: rgb.width,
            height: rgb.height,
            pixfmt: h.pixfmt,
            depth: h.size,
            raw_size: self.data.len(),
            rgb,
            fps: h.fps,
        })
    }
}
