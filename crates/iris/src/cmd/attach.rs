//! What `iris send --file` does before its send: a thumbnail for images (made here, so the
//! server never sees the picture in encrypted mode), the upload with a progress bar on stderr,
//! and the `MediaMessage` (blob ids, keys, hashes, caption) the send carries.

use std::path::Path;

use iris_client::media::{upload_media, MediaApi, MediaOptions};
use iris_client::pb::{self, MediaKind};
use iris_client::Client;

/// Longest side of a client-made thumbnail, as the server's default.
const THUMBNAIL_PX: u32 = 320;
/// Images larger than this are sent without a client-made thumbnail (decoding them here would
/// cost more than the thumbnail is worth).
const THUMBNAIL_SOURCE_BYTES_MAX: u64 = 32 << 20;

/// A JPEG thumbnail and the pixel size of the image at `path`, when it is a PNG or JPEG image
/// that decodes within bounds.
fn thumbnail(path: &Path) -> Option<(Vec<u8>, u32, u32)> {
    if std::fs::metadata(path).ok()?.len() > THUMBNAIL_SOURCE_BYTES_MAX {
        return None;
    }
    let mut reader = image::ImageReader::open(path).ok()?.with_guessed_format().ok()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(10_000);
    limits.max_image_height = Some(10_000);
    limits.max_alloc = Some(256 << 20);
    reader.limits(limits);
    let img = reader.decode().ok()?;
    let mut out = Vec::new();
    let thumb = img.thumbnail(THUMBNAIL_PX, THUMBNAIL_PX).to_rgb8();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 70).encode_image(&thumb).ok()?;
    Some((out, img.width(), img.height()))
}

/// Uploads `path` (encrypted unless `plaintext`) with a progress bar. Returns the media with
/// `caption`, and the blob ids the message must reference.
pub async fn prepare(
    client: &Client,
    path: &Path,
    plaintext: bool,
    caption: &str,
) -> anyhow::Result<(pb::MediaMessage, Vec<String>)> {
    let mut options = MediaOptions { plaintext, ..MediaOptions::default() };
    let head = {
        use std::io::Read;
        let mut head = vec![0u8; iris_proto::media::SNIFF_BYTES];
        let n = std::fs::File::open(path)?.read(&mut head)?;
        head.truncate(n);
        head
    };
    let is_image = iris_proto::media::sniff(&head).is_some_and(|s| s.kind == MediaKind::Image);
    if is_image && !plaintext {
        if let Some((thumb, width, height)) = tokio::task::spawn_blocking({
            let path = path.to_owned();
            move || thumbnail(&path)
        })
        .await?
        {
            (options.thumbnail, options.width, options.height) = (Some(thumb), width, height);
        }
    }
    let api = MediaApi::new(client.http_url(), &client.credentials().access_token)?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    let uploaded = upload_media(&api, path, &options, &|sent, total| {
        bar.set_length(total);
        bar.set_position(sent);
    })
    .await;
    bar.finish_and_clear();
    let uploaded = uploaded?;
    Ok((pb::MediaMessage { media: vec![uploaded.media], caption: caption.to_owned() }, uploaded.media_ids))
}
