//! Plaintext images: decoded with bounds (width, height, memory: a decompression bomb stops at
//! the decoder's limits, not in the allocator), turned upright, re-encoded without any metadata
//! (EXIF, GPS, comments are simply not written again), and given a small JPEG thumbnail; the
//! whole step runs on a blocking thread under a time bound.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// The bounds of one image's processing.
#[derive(Debug, Clone, Copy)]
pub struct ImageBounds {
    /// Widest and tallest image decoded.
    pub dimension_px_max: u32,
    /// Most bytes the decoder may allocate.
    pub decode_bytes_max: u64,
    /// Longest the whole step may take.
    pub timeout: Duration,
    /// Longest side of the thumbnail.
    pub thumbnail_px_max: u32,
}

/// A processed image.
#[derive(Debug)]
pub struct Processed {
    /// The image re-encoded without metadata (same format).
    pub bytes: Vec<u8>,
    /// Its MIME type.
    pub mime: &'static str,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// A JPEG thumbnail, at most `thumbnail_px_max` on its longer side.
    pub thumbnail: Vec<u8>,
}

/// JPEG quality of re-encoded photos and of thumbnails.
const JPEG_QUALITY: u8 = 85;
const THUMBNAIL_QUALITY: u8 = 70;

/// Processes the image file at `path` on a blocking thread within `bounds.timeout`; the error
/// says why it was refused.
pub async fn process(path: &Path, bounds: ImageBounds) -> Result<Processed, String> {
    let path: PathBuf = path.to_owned();
    let work = tokio::task::spawn_blocking(move || process_blocking(&path, bounds));
    match tokio::time::timeout(bounds.timeout, work).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(format!("image processing failed: {e}")),
        // The thread finishes on its own (its memory is bounded by the decoder limits).
        Err(_) => Err(format!("decoding took longer than {} ms", bounds.timeout.as_millis())),
    }
}

/// The work itself, bounded in memory by the decoder limits.
pub fn process_blocking(path: &Path, bounds: ImageBounds) -> Result<Processed, String> {
    let reader =
        ImageReader::open(path).map_err(|e| e.to_string())?.with_guessed_format().map_err(|e| e.to_string())?;
    let format = reader.format().ok_or("not an image format this server decodes")?;
    let (format, mime) = match format {
        ImageFormat::Png => (ImageFormat::Png, "image/png"),
        ImageFormat::Jpeg => (ImageFormat::Jpeg, "image/jpeg"),
        other => {
            return Err(format!(
                "{other:?} images are not processed by the server: send them encrypted or as a document"
            ))
        }
    };
    let mut limits = Limits::default();
    limits.max_image_width = Some(bounds.dimension_px_max);
    limits.max_image_height = Some(bounds.dimension_px_max);
    limits.max_alloc = Some(bounds.decode_bytes_max);
    let mut reader = reader;
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(refusal)?;
    let orientation = decoder.orientation().map_err(refusal)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(refusal)?;
    img.apply_orientation(orientation);
    let (width, height) = (img.width(), img.height());
    let bytes = match format {
        ImageFormat::Png => {
            let mut out = Cursor::new(Vec::new());
            img.write_to(&mut out, ImageFormat::Png).map_err(|e| e.to_string())?;
            out.into_inner()
        }
        _ => jpeg(&img, JPEG_QUALITY)?,
    };
    let thumbnail = jpeg(&img.thumbnail(bounds.thumbnail_px_max, bounds.thumbnail_px_max), THUMBNAIL_QUALITY)?;
    Ok(Processed { bytes, mime, width, height, thumbnail })
}

/// Why a decode failed, naming the bounds when they were the reason.
fn refusal(e: image::ImageError) -> String {
    match e {
        image::ImageError::Limits(l) => format!("over the decode bounds (a decompression bomb?): {l}"),
        other => other.to_string(),
    }
}

fn jpeg(img: &DynamicImage, quality: u8) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality).encode_image(&img.to_rgb8()).map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> ImageBounds {
        ImageBounds {
            dimension_px_max: 4096,
            decode_bytes_max: 64 << 20,
            timeout: Duration::from_secs(5),
            thumbnail_px_max: 32,
        }
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// A JPEG with an EXIF APP1 segment carrying a marker string.
    fn jpeg_with_exif() -> Vec<u8> {
        let img = DynamicImage::new_rgb8(64, 48);
        let plain = jpeg(&img, 90).unwrap();
        let payload = b"Exif\0\0GPS-SECRET-LOCATION";
        let mut out = plain[..2].to_vec(); // SOI
        out.extend_from_slice(&[0xff, 0xe1]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(&plain[2..]);
        out
    }

    #[test]
    fn metadata_is_stripped_and_a_thumbnail_made() {
        let dir = tempfile::tempdir().unwrap();
        let original = jpeg_with_exif();
        assert!(original.windows(10).any(|w| w == b"GPS-SECRET"));
        let done = process_blocking(&write(dir.path(), "a.jpg", &original), bounds()).unwrap();
        assert_eq!((done.width, done.height, done.mime), (64, 48, "image/jpeg"));
        assert!(!done.bytes.windows(10).any(|w| w == b"GPS-SECRET"), "EXIF gone");
        let thumb = image::load_from_memory(&done.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (32, 24));
    }

    #[test]
    fn bombs_and_broken_images_are_refused() {
        // A PNG claiming 100,000 × 100,000 pixels in a few hundred bytes: refused by the
        // decoder's bounds before any pixel buffer is allocated.
        let dir = tempfile::tempdir().unwrap();
        let bomb = iris_testkit::images::png_claiming(100_000);
        let refused = process_blocking(&write(dir.path(), "bomb.png", &bomb), bounds()).unwrap_err();
        assert!(refused.contains("decode bounds"), "{refused}");
        let mut png = Vec::new();
        DynamicImage::new_rgb8(300, 300).write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
        let truncated = &png[..png.len() / 2];
        assert!(process_blocking(&write(dir.path(), "half.png", truncated), bounds()).is_err());
        let gif = b"GIF89a\x01\0\x01\0\0\0\0;";
        assert!(process_blocking(&write(dir.path(), "a.gif", gif), bounds()).is_err());
    }
}
