//! Media kinds as both sides name them, and what their bytes must start with.
//!
//! The server sniffs plaintext uploads, and clients sniff files before they encrypt them, with
//! the same table: a kind is decided by magic bytes, never by a file name, so PNG bytes named
//! `.mp4` are an image whatever the name says.

use crate::pb::MediaKind;

/// Bytes a sniffer needs to see: enough for every signature below.
pub const SNIFF_BYTES: usize = 16;

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sniffed {
    /// The kind these bytes belong to.
    pub kind: MediaKind,
    /// Their MIME type.
    pub mime: &'static str,
}

/// The kind and MIME type of a file from its first bytes (at least [`SNIFF_BYTES`] when the
/// file is that long); `None` when no known signature matches (any document).
pub fn sniff(head: &[u8]) -> Option<Sniffed> {
    use MediaKind::{Image, Video, Voice};
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    let found = |kind, mime| Some(Sniffed { kind, mime });
    if at(0, b"\x89PNG\r\n\x1a\n") {
        return found(Image, "image/png");
    }
    if at(0, b"\xff\xd8\xff") {
        return found(Image, "image/jpeg");
    }
    if at(0, b"GIF87a") || at(0, b"GIF89a") {
        return found(Image, "image/gif");
    }
    if at(0, b"RIFF") && at(8, b"WEBP") {
        return found(Image, "image/webp");
    }
    if at(0, b"RIFF") && at(8, b"WAVE") {
        return found(Voice, "audio/wav");
    }
    if at(0, b"OggS") {
        return found(Voice, "audio/ogg");
    }
    if at(0, b"#!AMR") {
        return found(Voice, "audio/amr");
    }
    if at(0, b"ID3") || (head.len() >= 2 && head[0] == 0xff && head[1] & 0xe0 == 0xe0) {
        return found(Voice, "audio/mpeg");
    }
    if at(4, b"ftyp") {
        // ISO base media: the brand tells audio-only M4A from video.
        if at(8, b"M4A ") || at(8, b"M4B ") {
            return found(Voice, "audio/mp4");
        }
        if at(8, b"qt  ") {
            return found(Video, "video/quicktime");
        }
        return found(Video, "video/mp4");
    }
    if at(0, b"\x1a\x45\xdf\xa3") {
        return found(Video, "video/webm");
    }
    None
}

/// Whether bytes starting with `head` may be stored as `kind`: images, voice and video must
/// sniff as that kind; documents may be anything but an image, voice note or video sent as a
/// document is fine too (WhatsApp sends photos "as document" uncompressed), so documents take
/// any bytes. Thumbnails must be images.
pub fn kind_matches(kind: MediaKind, head: &[u8]) -> bool {
    match kind {
        MediaKind::Document => true,
        MediaKind::Thumbnail => sniff(head).is_some_and(|s| s.kind == MediaKind::Image),
        MediaKind::Unspecified => false,
        other => sniff(head).is_some_and(|s| s.kind == other),
    }
}

/// The short name of a kind in the HTTP API and the CLI (`image`, `voice`, …).
pub fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Unspecified => "unspecified",
        MediaKind::Image => "image",
        MediaKind::Voice => "voice",
        MediaKind::Video => "video",
        MediaKind::Document => "document",
        MediaKind::Thumbnail => "thumbnail",
    }
}

/// The kind with this short name.
pub fn kind_from_name(name: &str) -> Option<MediaKind> {
    [MediaKind::Image, MediaKind::Voice, MediaKind::Video, MediaKind::Document, MediaKind::Thumbnail]
        .into_iter()
        .find(|&k| kind_name(k) == name)
}

/// Whether `id` has the shape of a media id: 64 lowercase hex digits (a SHA-256).
pub fn is_media_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_follows_the_bytes_not_the_name() {
        // Proves each signature maps to its kind, and that documents take anything while the
        // other kinds demand their own bytes (PNG bytes cannot be a video).
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        let cases: &[(&[u8], Option<MediaKind>)] = &[
            (png, Some(MediaKind::Image)),
            (b"\xff\xd8\xff\xe0\0\x10JFIF", Some(MediaKind::Image)),
            (b"GIF89a....", Some(MediaKind::Image)),
            (b"RIFF\0\0\0\0WEBPVP8 ", Some(MediaKind::Image)),
            (b"RIFF\0\0\0\0WAVEfmt ", Some(MediaKind::Voice)),
            (b"OggS\0\x02", Some(MediaKind::Voice)),
            (b"\0\0\0\x20ftypM4A \0\0", Some(MediaKind::Voice)),
            (b"\0\0\0\x20ftypisom\0\0", Some(MediaKind::Video)),
            (b"\x1a\x45\xdf\xa3\x01", Some(MediaKind::Video)),
            (b"%PDF-1.7", None),
            (b"", None),
        ];
        for (bytes, kind) in cases {
            assert_eq!(sniff(bytes).map(|s| s.kind), *kind, "{bytes:?}");
        }
        assert!(!kind_matches(MediaKind::Video, png));
        assert!(kind_matches(MediaKind::Image, png));
        assert!(kind_matches(MediaKind::Document, png));
        assert!(!kind_matches(MediaKind::Image, b"%PDF-1.7"));
    }

    #[test]
    fn names_and_ids() {
        for k in [MediaKind::Image, MediaKind::Voice, MediaKind::Video, MediaKind::Document, MediaKind::Thumbnail] {
            assert_eq!(kind_from_name(kind_name(k)), Some(k));
        }
        assert!(is_media_id(&"ab".repeat(32)));
        assert!(!is_media_id(&"AB".repeat(32)) && !is_media_id("ab"));
    }
}
