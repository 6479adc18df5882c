//! The media API end to end over HTTP, on whichever engine `IRIS_TEST_ENGINE` picks (the
//! embedded store, or PostgreSQL + Redis in cluster mode: `scripts/test.sh` runs both): a
//! resumed 50 MB upload, content addressing, every refusal with its code, signed URLs that
//! expire, ranges and ETags, a message's media fetched by the recipient's second device, EXIF
//! stripping, the collection of unreferenced blobs, and profile photos that hold theirs.

mod common;

use std::time::Duration;

use common::{as_message, text_to_account, wait_until, TestServer};
use iris_proto::http::{Credentials, MediaInfo, MediaUrl, UploadRequest, UploadState};
use iris_proto::pb::ErrorCode;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Deterministic pseudo-random bytes (incompressible enough, no RNG state to share).
fn bytes_of(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A small real PNG.
fn png(width: u32, height: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::new_rgb8(width, height).write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A JPEG carrying an EXIF segment with a marker.
fn jpeg_with_exif(marker: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 90)
        .encode_image(&image::DynamicImage::new_rgb8(120, 80))
        .unwrap();
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(marker);
    let mut out = plain[..2].to_vec();
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&plain[2..]);
    out
}

/// One HTTP client for a test's media calls.
struct Api<'a> {
    server: &'a TestServer,
    http: reqwest::Client,
    token: String,
}

struct Fetched {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl<'a> Api<'a> {
    async fn login(server: &'a TestServer, phone: &str, device: &str) -> (Api<'a>, Credentials) {
        let creds = server.login(phone, device).await;
        (
            Api {
                server,
                http: iris_client::TlsTrust::none().http_builder().build().unwrap(),
                token: creds.access_token.clone(),
            },
            creds,
        )
    }

    async fn start(&self, kind: &str, bytes: &[u8], encrypted: bool, key: &str) -> reqwest::Response {
        let req = UploadRequest {
            kind: kind.into(),
            size_bytes: bytes.len() as u64,
            sha256: sha_hex(bytes),
            encrypted,
            mime: String::new(),
            idempotency_key: key.into(),
        };
        self.start_raw(&req).await
    }

    async fn start_raw(&self, req: &UploadRequest) -> reqwest::Response {
        let url = self.server.url("/v1/media/uploads");
        self.http.post(url).bearer_auth(&self.token).json(req).send().await.unwrap()
    }

    async fn patch(&self, upload_id: &str, offset: u64, body: Vec<u8>) -> reqwest::Response {
        let url = self.server.url(&format!("/v1/media/uploads/{upload_id}"));
        let req = self.http.patch(url).bearer_auth(&self.token).header("upload-offset", offset.to_string());
        req.header("content-type", "application/offset+octet-stream").body(body).send().await.unwrap()
    }

    async fn state(&self, upload_id: &str) -> UploadState {
        let url = self.server.url(&format!("/v1/media/uploads/{upload_id}"));
        let r = self.http.get(url).bearer_auth(&self.token).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Uploads `bytes` in one chunk; the stored blob.
    async fn upload(&self, kind: &str, bytes: &[u8], encrypted: bool) -> MediaInfo {
        let state: UploadState = ok_json(self.start(kind, bytes, encrypted, &sha_hex(bytes)).await).await;
        let done: UploadState = ok_json(self.patch(&state.upload_id, 0, bytes.to_vec()).await).await;
        done.media.expect("complete")
    }

    async fn url(&self, media_id: &str) -> MediaUrl {
        let url = self.server.url(&format!("/v1/media/{media_id}/url"));
        ok_json(self.http.get(url).bearer_auth(&self.token).send().await.unwrap()).await
    }

    async fn fetch(&self, path: &str, headers: &[(&str, &str)]) -> Fetched {
        let mut req = self.http.get(self.server.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        Fetched { status, headers, body: r.bytes().await.unwrap().to_vec() }
    }
}

async fn ok_json<T: serde::de::DeserializeOwned>(r: reqwest::Response) -> T {
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn expect_code(r: reqwest::Response, status: u16, code: ErrorCode) {
    let got = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    let e: iris_proto::http::ApiError = serde_json::from_str(&text).unwrap();
    assert_eq!(e.code, code.as_str_name(), "{text}");
}

/// Writes a PATCH by hand and drops the connection after `sent` of `total` body bytes: a
/// client whose network went away mid-upload.
async fn patch_then_drop(server: &TestServer, token: &str, upload_id: &str, body: &[u8], sent: usize) {
    let mut conn = tokio::net::TcpStream::connect(server.http_addr).await.unwrap();
    let head = format!(
        "PATCH /v1/media/uploads/{upload_id} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         upload-offset: 0\r\ncontent-type: application/offset+octet-stream\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body[..sent]).await.unwrap();
    conn.flush().await.unwrap();
    drop(conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_50_mb_upload_interrupted_at_60_percent_resumes_and_verifies() {
    // Proves: the bytes that arrived before a dropped connection are kept (durably, before the
    // offset moves); the client asks the offset, sends the rest, and the blob is verified
    // against the declared SHA-256 and downloads identical.
    let server = TestServer::start().await;
    let (api, creds) = Api::login(&server, "+15550100001", "phone").await;
    let file = bytes_of(50 << 20, 1);
    let state: UploadState = ok_json(api.start("document", &file, true, "resume").await).await;
    assert_eq!((state.offset, state.size_bytes), (0, file.len() as u64));
    let cut = file.len() * 6 / 10;
    patch_then_drop(&server, &creds.access_token, &state.upload_id, &file, cut).await;
    // The server notices the drop once it has read what was sent.
    let offset = wait_until("every byte that arrived is kept", Duration::from_secs(10), || async {
        let offset = api.state(&state.upload_id).await.offset;
        (offset == cut as u64).then_some(offset)
    })
    .await;
    // The same start again (a retried POST) finds the same upload where it stands.
    let again: UploadState = ok_json(api.start("document", &file, true, "resume").await).await;
    assert_eq!((again.upload_id.as_str(), again.offset), (state.upload_id.as_str(), offset));
    expect_code(api.patch(&state.upload_id, 0, file[..1].to_vec()).await, 409, ErrorCode::MediaOffsetMismatch).await;
    let done: UploadState = ok_json(api.patch(&state.upload_id, offset, file[cut..].to_vec()).await).await;
    let media = done.media.expect("complete after the rest");
    assert_eq!(media.media_id, sha_hex(&file));
    assert_eq!(media.size_bytes, file.len() as u64);
    let url = api.url(&media.media_id).await;
    let got = api.fetch(&url.url, &[]).await;
    assert_eq!(got.status, 200);
    assert!(got.body == file, "downloaded bytes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_blob_uploaded_twice_is_stored_once() {
    // Proves content addressing: two accounts uploading the same bytes get the same media id and
    // the object store holds one object.
    let server = TestServer::start().await;
    let (alice, _) = Api::login(&server, "+15550100011", "phone").await;
    let (bob, _) = Api::login(&server, "+15550100012", "phone").await;
    let file = bytes_of(3 << 20, 2);
    let a = alice.upload("video", &{ mp4_header(&file) }, true).await;
    let b = bob.upload("video", &{ mp4_header(&file) }, true).await;
    assert_eq!(a.media_id, b.media_id);
    let objects = list_blobs(&server).await;
    assert_eq!(objects, vec![a.media_id.clone()], "one object");
}

/// `bytes` with an MP4 `ftyp` box in front.
fn mp4_header(bytes: &[u8]) -> Vec<u8> {
    let mut out = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".to_vec();
    out.extend_from_slice(bytes);
    out
}

async fn list_blobs(server: &TestServer) -> Vec<String> {
    use futures_util::StreamExt;
    let mut ids: Vec<String> =
        server.running().ctx().media.blobs().list().map(|r| r.unwrap().0).collect::<Vec<_>>().await;
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_uploads_are_refused_with_their_codes() {
    // Proves each refusal's status and code: oversized for the kind, a body past the declared
    // size, a truncated file (hash), PNG bytes declared as video, a truncated image, a
    // decompression bomb, a wrong offset, the hourly quota and the upload rate.
    let server = TestServer::start_with(|c| {
        c.media.image_bytes_max = 1 << 20;
        c.media.quota_per_account_per_hour_mb = 8;
    })
    .await;
    let (api, _) = Api::login(&server, "+15550100021", "phone").await;
    let picture = png(64, 64);

    let oversized = UploadRequest {
        kind: "image".into(),
        size_bytes: 2 << 20,
        sha256: sha_hex(b"x"),
        encrypted: false,
        mime: String::new(),
        idempotency_key: "big".into(),
    };
    expect_code(api.start_raw(&oversized).await, 413, ErrorCode::MediaTooLarge).await;

    let state: UploadState = ok_json(api.start("image", &picture, false, "long").await).await;
    let mut longer = picture.clone();
    longer.push(0);
    expect_code(api.patch(&state.upload_id, 0, longer).await, 413, ErrorCode::MediaTooLarge).await;

    // Declared the whole file, sent it cut short: the hash says so, and the upload is gone.
    let cut = &picture[..picture.len() - 10];
    let req = UploadRequest { size_bytes: cut.len() as u64, idempotency_key: "cut".into(), ..upload_req(&picture) };
    let state: UploadState = ok_json(api.start_raw(&req).await).await;
    expect_code(api.patch(&state.upload_id, 0, cut.to_vec()).await, 422, ErrorCode::MediaHashMismatch).await;
    let gone = api.http.get(server.url(&format!("/v1/media/uploads/{}", state.upload_id)));
    assert_eq!(gone.bearer_auth(&api.token).send().await.unwrap().status(), 404);

    // PNG bytes, whatever the name said: not a video.
    let state: UploadState = ok_json(api.start("video", &picture, false, "mislabelled").await).await;
    expect_code(api.patch(&state.upload_id, 0, picture.clone()).await, 415, ErrorCode::MediaKindMismatch).await;

    // A truncated image (its own hash, so only decoding can tell) and a bomb.
    let half = picture[..picture.len() / 2].to_vec();
    let state: UploadState = ok_json(api.start("image", &half, false, "half").await).await;
    expect_code(api.patch(&state.upload_id, 0, half).await, 422, ErrorCode::MediaRejected).await;
    let bomb = iris_testkit::images::png_claiming(9_000);
    let state: UploadState = ok_json(api.start("image", &bomb, false, "bomb").await).await;
    expect_code(api.patch(&state.upload_id, 0, bomb).await, 422, ErrorCode::MediaRejected).await;

    let state: UploadState = ok_json(api.start("document", b"%PDF-1.7 hello", false, "offset").await).await;
    expect_code(api.patch(&state.upload_id, 5, b"1.7 hello".to_vec()).await, 409, ErrorCode::MediaOffsetMismatch).await;

    // 8 MB per hour: the declared sizes count when an upload starts.
    let seven = UploadRequest {
        kind: "document".into(),
        size_bytes: 7 << 20,
        sha256: sha_hex(b"y"),
        encrypted: true,
        mime: String::new(),
        idempotency_key: "q1".into(),
    };
    ok_json::<UploadState>(api.start_raw(&seven).await).await;
    let r = api.start_raw(&UploadRequest { idempotency_key: "q2".into(), ..seven }).await;
    assert!(r.headers().get("retry-after").is_some());
    expect_code(r, 429, ErrorCode::MediaQuotaExceeded).await;

    let metrics = server.get("/metrics", None).await.text();
    assert!(metrics.contains("iris_media_bytes_in_total"), "{metrics}");
}

fn upload_req(bytes: &[u8]) -> UploadRequest {
    UploadRequest {
        kind: "image".into(),
        size_bytes: bytes.len() as u64,
        sha256: sha_hex(bytes),
        encrypted: false,
        mime: String::new(),
        idempotency_key: sha_hex(bytes),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_upload_rate_limit_is_typed() {
    let server = TestServer::start_with(|c| c.rate_limits.media_uploads_per_account_per_minute = 2).await;
    let (api, _) = Api::login(&server, "+15550100022", "phone").await;
    for key in ["a", "b"] {
        ok_json::<UploadState>(api.start("document", b"doc", true, key).await).await;
    }
    expect_code(api.start("document", b"doc", true, "c").await, 429, ErrorCode::RateLimited).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_urls_expire_and_ranges_return_the_right_bytes() {
    // Proves: a URL works until its expiry and not after (nor with another signature); a range
    // request returns exactly those bytes with Content-Range; the ETag answers 304; a range past
    // the end is 416.
    let server = TestServer::start_with_manual_clock(|c| c.media.url_ttl_s = 60).await;
    let (api, _) = Api::login(&server, "+15550100031", "phone").await;
    let file = bytes_of(1_000_000, 3);
    let media = api.upload("document", &file, true).await;
    let url = api.url(&media.media_id).await;

    let part = api.fetch(&url.url, &[("range", "bytes=1000-1999")]).await;
    assert_eq!(part.status, 206);
    assert!(part.body == file[1000..2000]);
    assert_eq!(part.headers["content-range"], "bytes 1000-1999/1000000");
    let tail = api.fetch(&url.url, &[("range", "bytes=-10")]).await;
    assert!(tail.status == 206 && tail.body == file[file.len() - 10..]);
    let past = api.fetch(&url.url, &[("range", "bytes=2000000-")]).await;
    assert_eq!((past.status, past.headers["content-range"].to_str().unwrap()), (416, "bytes */1000000"));
    let whole = api.fetch(&url.url, &[]).await;
    let etag = whole.headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", media.media_id));
    assert_eq!(api.fetch(&url.url, &[("if-none-match", &etag)]).await.status, 304);

    let forged = url.url.replace("sig=", "sig=00");
    let f = api.fetch(&forged, &[]).await;
    assert_eq!(f.status, 403);
    server.advance_clock_ms(61_000);
    let expired = api.fetch(&url.url, &[]).await;
    assert_eq!(expired.status, 403);
    assert!(String::from_utf8_lossy(&expired.body).contains("ERROR_CODE_MEDIA_URL_EXPIRED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_messages_media_downloads_on_the_recipients_second_device() {
    // Proves: a send naming an uploaded blob carries `media_ids` to every device of the
    // recipient; the second device gets a URL and the same bytes; a send naming an unknown blob
    // is NOT_FOUND and stores nothing; plaintext images come back without their EXIF and with a
    // thumbnail, and the message references the thumbnail too.
    let server = TestServer::start().await;
    let (alice_api, alice) = Api::login(&server, "+15550100041", "phone").await;
    let bob = server.login("+15550100042", "phone").await;
    let (bob_laptop_api, bob_laptop) = Api::login(&server, "+15550100042", "laptop").await;
    let photo = jpeg_with_exif(b"GPS 48.85N 2.29E");
    let media = alice_api.upload("image", &photo, false).await;
    assert_eq!((media.width, media.height, media.mime.as_str()), (120, 80, "image/jpeg"));
    let thumbnail_id = media.thumbnail_id.clone().expect("a server-made thumbnail");

    let (mut conn, _) = server.connect_as(&alice).await;
    let mut msg = text_to_account("m1", bob.account_id, b"caption");
    msg.media_ids = vec![media.media_id.clone()];
    conn.send_accepted(1, msg).await;
    let mut unknown = text_to_account("m2", bob.account_id, b"x");
    unknown.media_ids = vec!["ab".repeat(32)];
    let answer = conn.send_message(2, unknown).await;
    assert_eq!(common::as_error(answer).expect("an error").code, ErrorCode::NotFound as i32);

    let (mut laptop, _) = server.connect_as(&bob_laptop).await;
    let items = laptop.expect_delivery().await;
    let got = as_message(&items[0]).expect("a message");
    assert_eq!(got.media_ids, vec![media.media_id.clone()]);
    assert_eq!(items.len(), 1, "the refused send stored nothing");

    let url = bob_laptop_api.url(&got.media_ids[0]).await;
    let fetched = bob_laptop_api.fetch(&url.url, &[]).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(sha_hex(&fetched.body), media.media_id);
    assert!(!fetched.body.windows(10).any(|w| w == b"GPS 48.85N"), "EXIF stripped");
    let thumb = bob_laptop_api.fetch(&bob_laptop_api.url(&thumbnail_id).await.url, &[]).await;
    let decoded = image::load_from_memory(&thumb.body).unwrap();
    assert!(decoded.width() <= 320 && decoded.height() <= 320);
    let store = &server.running().ctx().store;
    let id = |h: &str| -> [u8; 32] { hex::decode(h).unwrap().try_into().unwrap() };
    assert_eq!(store.media_ref_count(id(&media.media_id)).await.unwrap(), 1);
    assert_eq!(store.media_ref_count(id(&thumbnail_id)).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreferenced_blobs_are_collected_after_the_grace_period() {
    // Proves: a blob no message references is deleted (record and bytes) once untouched for the
    // grace period; a referenced one stays until its message's references expire with the
    // inbox TTL, then goes too; an abandoned upload is forgotten after the upload TTL.
    let server = TestServer::start_with_manual_clock(|c| {
        c.media.gc_grace_hours = 1;
        c.media.upload_ttl_hours = 2;
        c.retention.inbox_ttl_days = 1;
    })
    .await;
    let (api, alice) = Api::login(&server, "+15550100051", "phone").await;
    let bob = server.login("+15550100052", "phone").await;
    let kept = api.upload("document", &bytes_of(10_000, 5), true).await;
    let orphan = api.upload("document", &bytes_of(10_000, 6), true).await;
    let abandoned: UploadState = ok_json(api.start("document", &bytes_of(100, 7), true, "abandoned").await).await;
    let (mut conn, _) = server.connect_as(&alice).await;
    let mut msg = text_to_account("m1", bob.account_id, b"doc");
    msg.media_ids = vec![kept.media_id.clone()];
    conn.send_accepted(1, msg).await;

    let media = &server.running().ctx().media;
    let ttl_ms = 86_400_000;
    server.advance_clock_ms(30 * 60_000);
    assert_eq!(media.sweep(ttl_ms).await.unwrap().blobs, 0, "within the grace period");
    server.advance_clock_ms(3 * 3_600_000);
    let report = media.sweep(ttl_ms).await.unwrap();
    // The abandoned upload, and the two finished ones past their idempotency window.
    assert_eq!((report.blobs, report.uploads), (1, 3));
    assert_eq!(list_blobs(&server).await, vec![kept.media_id.clone()]);
    let store = &server.running().ctx().store;
    let id = |h: &str| -> [u8; 32] { hex::decode(h).unwrap().try_into().unwrap() };
    assert!(store.blob(id(&orphan.media_id)).await.unwrap().is_none(), "the record went with the bytes");
    let upload_id: [u8; 16] = hex::decode(&abandoned.upload_id).unwrap().try_into().unwrap();
    assert!(store.upload(upload_id).await.unwrap().is_none());

    server.advance_clock_ms(ttl_ms);
    let report = media.sweep(ttl_ms).await.unwrap();
    assert_eq!((report.refs, report.blobs), (1, 1));
    assert!(list_blobs(&server).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_profile_photo_is_kept_by_the_sweep_until_the_profile_drops_it() {
    // Proves: an image set as a profile photo (and its thumbnail) survives sweeps long past the
    // grace period and the inbox TTL; replacing the photo lets the old one (and its thumbnail)
    // be collected while the new one stays; removing the photo lets it go too.
    let server = TestServer::start_with_manual_clock(|c| {
        c.media.gc_grace_hours = 1;
        c.retention.inbox_ttl_days = 1;
        c.auth.access_token_ttl_s = 30 * 86_400;
    })
    .await;
    let (api, alice) = Api::login(&server, "+15550100061", "phone").await;
    let http = iris_client::HttpApi::new(&server.url("")).unwrap();
    let set_photo = |id: &str| iris_proto::http::ProfileUpdate {
        photo_media_id: Some(id.to_owned()),
        ..iris_proto::http::ProfileUpdate::default()
    };
    let with_thumbnail = |m: &MediaInfo| {
        let mut ids: Vec<String> = std::iter::once(m.media_id.clone()).chain(m.thumbnail_id.clone()).collect();
        ids.sort();
        ids
    };
    let media = &server.running().ctx().media;
    let (day_ms, ttl_ms) = (86_400_000, 86_400_000);

    let first = api.upload("image", &png(640, 480), false).await;
    assert!(first.thumbnail_id.is_some(), "a plaintext image gets a thumbnail: {first:?}");
    http.set_profile(&alice.access_token, &set_photo(&first.media_id)).await.unwrap();
    server.advance_clock_ms(2 * day_ms);
    media.sweep(ttl_ms).await.unwrap();
    assert_eq!(list_blobs(&server).await, with_thumbnail(&first), "the photo in use is kept");

    let second = api.upload("image", &png(320, 640), false).await;
    http.set_profile(&alice.access_token, &set_photo(&second.media_id)).await.unwrap();
    server.advance_clock_ms(2 * day_ms);
    let report = media.sweep(ttl_ms).await.unwrap();
    assert_eq!(report.blobs, 2, "the replaced photo and its thumbnail");
    assert_eq!(list_blobs(&server).await, with_thumbnail(&second));
    let view = http.profile(&alice.access_token, alice.account_id).await.unwrap();
    assert_eq!(view.photo_media_id, second.media_id);

    http.set_profile(&alice.access_token, &set_photo("")).await.unwrap();
    server.advance_clock_ms(2 * day_ms);
    media.sweep(ttl_ms).await.unwrap();
    assert!(list_blobs(&server).await.is_empty(), "a removed photo is collected");
}
