//! The box art `/appasset` serves: a small generated PNG (a dark gradient with a light "play"
//! triangle), so the host ships no image files.
//!
//! ```text
//! PNG = signature ‖ IHDR(w, h, 8-bit RGB) ‖ IDAT(zlib: stored deflate blocks) ‖ IEND
//! ```
//!
//! Uncompressed (stored) deflate keeps the encoder to a few lines; at 120×160 the image is
//! about 58 KB, fetched once per app by the client.

/// Box art width in pixels (Moonlight scales it; the aspect ratio is what matters, 3:4).
pub const WIDTH: u32 = 120;
/// Box art height in pixels.
pub const HEIGHT: u32 = 160;

fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for part in parts {
        for &b in *part {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    0xedb8_8320 ^ (crc >> 1)
                } else {
                    crc >> 1
                };
            }
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    b << 16 | a
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    // Chunks here are far below 4 GiB.
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
}

/// Encodes 8-bit RGB pixels (`width * height * 3` bytes, rows top to bottom) as PNG.
/// Returns `None` if `rgb` has the wrong length.
pub fn png_rgb(width: u32, height: u32, rgb: &[u8]) -> Option<Vec<u8>> {
    let row = usize::try_from(width).ok()?.checked_mul(3)?;
    if rgb.len() != row.checked_mul(usize::try_from(height).ok()?)? || row == 0 {
        return None;
    }
    // Scanlines, each prefixed with filter type 0 (none).
    let mut raw = Vec::with_capacity(rgb.len() + rgb.len() / row);
    for line in rgb.chunks_exact(row) {
        raw.push(0);
        raw.extend_from_slice(line);
    }
    // zlib: CMF/FLG for deflate with a 32K window and no dictionary, then stored blocks.
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16; // chunks of at most 65535
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    z.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, truecolour, deflate, no filter, no interlace

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &z);
    chunk(&mut png, b"IEND", &[]);
    Some(png)
}

/// The box art for every app.
pub fn app_png() -> Vec<u8> {
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            // A play triangle centred in the image: x from 45 to 80, y within a widening band.
            let dx = x as i32 - 45;
            let dy = (y as i32 - 80).abs();
            let inside = (0..=35).contains(&dx) && dy * 35 <= (35 - dx) * 20;
            let shade = (y * 60 / h) as u8;
            let px = if inside {
                [0xf2, 0xf2, 0xf2]
            } else {
                [0x18 + shade / 3, 0x22 + shade / 2, 0x3a + shade]
            };
            rgb.extend_from_slice(&px);
        }
    }
    // The buffer is exactly WIDTH * HEIGHT * 3 bytes.
    png_rgb(WIDTH, HEIGHT, &rgb).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_known_values() {
        assert_eq!(crc32(&[b"IEND"]), 0xae42_6082);
        assert_eq!(crc32(&[b"123456789"]), 0xcbf4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
    }

    #[test]
    fn well_formed_png() {
        let png = app_png();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // Walk the chunks, checking every CRC.
        let mut pos = 8;
        let mut kinds = Vec::new();
        while pos < png.len() {
            let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
            let kind = &png[pos + 4..pos + 8];
            let data = &png[pos + 8..pos + 8 + len];
            let crc = u32::from_be_bytes(png[pos + 8 + len..pos + 12 + len].try_into().unwrap());
            assert_eq!(crc, crc32(&[kind, data]));
            kinds.push(String::from_utf8(kind.to_vec()).unwrap());
            pos += 12 + len;
        }
        assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
        assert!(png_rgb(2, 2, &[0; 11]).is_none());
        // A multi-block image.
        assert!(png_rgb(200, 200, &[7; 200 * 200 * 3]).is_some());
    }
}
