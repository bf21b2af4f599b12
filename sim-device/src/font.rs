//! A tiny built-in 3x5 bitmap font (digits and a few symbols), enough to
//! stamp a frame counter on test frames.

use crate::image::RgbImage;

/// Glyph width in font pixels.
pub const GLYPH_W: u32 = 3;
/// Glyph height in font pixels.
pub const GLYPH_H: u32 = 5;

/// Rows of a glyph, top first, 3 bits each (bit 2 = left column).
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b001, 0b001, 0b001],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '#' => [0b101, 0b111, 0b101, 0b111, 0b101],
        ':' => [0b000, 0b010, 0b000, 0b010, 0b000],
        '-' => [0b000, 0b000, 0b111, 0b000, 0b000],
        '.' => [0b000, 0b000, 0b000, 0b000, 0b010],
        ' ' => [0; 5],
        _ => return None,
    })
}

/// Width in image pixels of `text` drawn at `scale` (1 font pixel of gap
/// between glyphs).
pub fn text_width(text: &str, scale: u32) -> u32 {
    let n = text.chars().count() as u32;
    if n == 0 {
        return 0;
    }
    (n.saturating_mul(GLYPH_W + 1) - 1).saturating_mul(scale)
}

/// Draws `text` with its top-left corner at (x, y), each font pixel a
/// `scale` x `scale` square. Unknown characters draw as blanks; drawing is
/// clipped to the image.
pub fn draw_text(img: &mut RgbImage, x: u32, y: u32, scale: u32, text: &str, rgb: [u8; 3]) {
    let scale = scale.max(1);
    let mut cx = x;
    for c in text.chars() {
        if let Some(rows) = glyph(c) {
            for (row, bits) in rows.iter().enumerate() {
                for col in 0..GLYPH_W {
                    if bits & (1 << (GLYPH_W - 1 - col)) != 0 {
                        img.fill_rect(
                            cx.saturating_add(col.saturating_mul(scale)),
                            y.saturating_add((row as u32).saturating_mul(scale)),
                            scale,
                            scale,
                            rgb,
                        );
                    }
                }
            }
        }
        cx = cx.saturating_add((GLYPH_W + 1).saturating_mul(scale));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_one() {
        let mut img = RgbImage::new(8, 8).unwrap();
        draw_text(&mut img, 1, 1, 1, "1", [255, 255, 255]);
        // The "1" glyph: column 1 set on every row, row 1 column 0 set.
        for row in 0..5 {
            assert_eq!(img.get(2, 1 + row), Some([255, 255, 255]));
        }
        assert_eq!(img.get(1, 2), Some([255, 255, 255]));
        assert_eq!(img.get(1, 3), Some([0, 0, 0]));
        assert_eq!(text_width("123", 2), 22);
        assert_eq!(text_width("", 2), 0);
    }

    #[test]
    fn clipped_and_unknown_chars_are_harmless() {
        let mut img = RgbImage::new(4, 4).unwrap();
        draw_text(&mut img, 2, 2, 9, "8x8", [1, 2, 3]);
        draw_text(&mut img, u32::MAX, u32::MAX, u32::MAX, "88", [1, 2, 3]);
        assert_eq!(img.get(2, 2), Some([1, 2, 3]));
    }
}
