//! CHANNEL_SHAPE payload: up to four u32.

use crate::error::{le32, DecodeError};

/// A channel shape: 0 to 4 u32 whose meaning is per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct Shape {
    dims: [u32; 4],
    len: u8,
}

impl Shape {
    /// Most dimensions a shape carries.
    pub const MAX_DIMS: usize = 4;

    /// A shape from up to four dimensions; `None` if more are given.
    pub fn new(dims: &[u32]) -> Option<Shape> {
        if dims.len() > Self::MAX_DIMS {
            return None;
        }
        let mut s = Shape {
            dims: [0; 4],
            len: dims.len() as u8,
        };
        s.dims[..dims.len()].copy_from_slice(dims);
        Some(s)
    }

    /// The dimensions.
    pub fn dims(&self) -> &[u32] {
        &self.dims[..self.len as usize]
    }

    /// Product of the dimensions (0 for an empty shape), saturating.
    pub fn product(&self) -> u64 {
        if self.len == 0 {
            return 0;
        }
        self.dims()
            .iter()
            .fold(1u64, |a, &d| a.saturating_mul(u64::from(d)))
    }

    /// Encodes into `out` (at most 16 bytes) and returns the used length.
    pub fn encode(&self, out: &mut [u8; 16]) -> usize {
        for (i, d) in self.dims().iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&d.to_le_bytes());
        }
        self.len as usize * 4
    }

    /// Decodes a shape payload: a multiple of 4 bytes, at most 16.
    pub fn decode(payload: &[u8]) -> Result<Shape, DecodeError> {
        if payload.len() % 4 != 0 || payload.len() > 16 {
            return Err(DecodeError::BadLength {
                what: "shape",
                got: payload.len(),
            });
        }
        let mut s = Shape {
            dims: [0; 4],
            len: (payload.len() / 4) as u8,
        };
        for i in 0..s.len as usize {
            s.dims[i] = le32(payload, i * 4);
        }
        Ok(s)
    }
}
