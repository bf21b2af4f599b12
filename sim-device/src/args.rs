//! Checked decoding of wire arguments shared by the backends: ioctl
//! arguments (exact sizes, little-endian u32) and read ranges (u32 offsets
//! from the host, never trusted).

use omv_proto::backend::ChannelError;

/// Checks an ioctl takes no arguments.
pub fn no_args(args: &[u8]) -> Result<(), ChannelError> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(ChannelError::Invalid)
    }
}

/// Decodes exactly `N` little-endian u32 arguments; any other size is
/// [`ChannelError::Invalid`].
pub fn u32_args<const N: usize>(args: &[u8]) -> Result<[u32; N], ChannelError> {
    if args.len() != N * 4 {
        return Err(ChannelError::Invalid);
    }
    let mut out = [0u32; N];
    for (v, c) in out.iter_mut().zip(args.chunks_exact(4)) {
        *v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    Ok(out)
}

/// Copies from `data` at the host's `offset` into `buf`, short at the end
/// of `data`. An offset at or past the end (for a non-empty `buf`) is
/// [`ChannelError::Failed`].
pub fn copy_from(data: &[u8], offset: u32, buf: &mut [u8]) -> Result<usize, ChannelError> {
    if buf.is_empty() {
        return Ok(0);
    }
    let start = usize::try_from(offset).map_err(|_| ChannelError::Failed)?;
    if start >= data.len() {
        return Err(ChannelError::Failed);
    }
    let n = buf.len().min(data.len() - start);
    buf[..n].copy_from_slice(&data[start..start + n]);
    Ok(n)
}

/// Like [`copy_from`] but the whole range `offset..offset + buf.len()` must
/// lie inside `data` (no short reads).
pub fn copy_exact(data: &[u8], offset: u32, buf: &mut [u8]) -> Result<usize, ChannelError> {
    let start = usize::try_from(offset).map_err(|_| ChannelError::Failed)?;
    let end = start.checked_add(buf.len()).ok_or(ChannelError::Failed)?;
    let src = data.get(start..end).ok_or(ChannelError::Failed)?;
    buf.copy_from_slice(src);
    Ok(buf.len())
}

/// A length as a u32 size, saturating (channel sizes are u32 on the wire).
pub fn size_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u32_args_exact_size() {
        assert_eq!(u32_args::<2>(&[1, 0, 0, 0, 2, 0, 0, 0]), Ok([1, 2]));
        assert_eq!(u32_args::<1>(&[1, 0, 0]), Err(ChannelError::Invalid));
        assert_eq!(u32_args::<1>(&[1, 0, 0, 0, 0]), Err(ChannelError::Invalid));
        assert_eq!(u32_args::<0>(&[]), Ok([]));
        assert_eq!(no_args(&[0]), Err(ChannelError::Invalid));
    }

    #[test]
    fn copy_ranges() {
        let d = [1u8, 2, 3, 4];
        let mut b = [0u8; 3];
        assert_eq!(copy_from(&d, 2, &mut b), Ok(2));
        assert_eq!(&b[..2], &[3, 4]);
        assert_eq!(copy_from(&d, 4, &mut b), Err(ChannelError::Failed));
        assert_eq!(copy_from(&d, u32::MAX, &mut b), Err(ChannelError::Failed));
        assert_eq!(copy_exact(&d, 1, &mut b), Ok(3));
        assert_eq!(copy_exact(&d, 2, &mut b), Err(ChannelError::Failed));
        assert_eq!(copy_exact(&d, u32::MAX, &mut b), Err(ChannelError::Failed));
    }
}
