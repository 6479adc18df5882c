//! Media through the real binary: `iris send --file` uploads (encrypted by default, or plaintext)
//! and sends; `iris recv --save-dir` saves the files, decrypted and checked, into a folder and
//! prints their paths, on the recipient's second device; `iris forward --media` sends a received
//! photo on. Also the SDK's media paths the CLI does not take: encrypted media in a group, and a
//! forward naming its media.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

fn iris(args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_iris")).args(args).output().unwrap();
    assert!(out.status.success(), "iris {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn cli_login(url: &str, dir: &Path, name: &str, phone: &str) -> String {
    let profile = dir.join(name).to_string_lossy().into_owned();
    iris(&["login", "--server", url, "--phone", phone, "--profile", &profile]);
    profile
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
    image::DynamicImage::ImageRgb8(img).write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_file_and_recv_save_dir() {
    // Proves: an encrypted photo and a plaintext document sent with `send --file` arrive on the
    // recipient's second device, where `recv --save-dir` writes byte-identical files and prints
    // their paths with a `[photo …]` description; the server stored ciphertext, not the photo.
    let server = Process::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let alice = cli_login(&url, dir.path(), "alice", "+14155550701");
    let bob = cli_login(&url, dir.path(), "bob", "+14155550702");
    let bob_laptop = dir.path().join("bob-laptop").to_string_lossy().into_owned();
    let phone = "+14155550702";
    iris(&["login", "--server", &url, "--phone", phone, "--profile", &bob_laptop, "--approve-with", &bob]);

    let photo = dir.path().join("holiday.png");
    std::fs::write(&photo, png(400, 300)).unwrap();
    let doc = dir.path().join("notes.pdf");
    let doc_bytes: Vec<u8> = b"%PDF-1.7\n".iter().copied().chain((0..200_000u32).map(|i| (i % 97) as u8)).collect();
    std::fs::write(&doc, &doc_bytes).unwrap();

    let sent = iris(&["send", "--profile", &alice, "--to", "+14155550702", "--file", photo.to_str().unwrap(), "beach"]);
    assert_eq!(sent[0]["status"], "ACCEPTED");
    let ids = sent[0]["media_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 2, "the photo and its client-made thumbnail: {sent:?}");
    iris(&["send", "--profile", &alice, "--to", "+14155550702", "--file", doc.to_str().unwrap(), "--plaintext"]);

    let saved = dir.path().join("saved");
    let lines = iris(&["recv", "--profile", &bob_laptop, "--count", "2", "--save-dir", saved.to_str().unwrap()]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["text"], "beach");
    let media = &lines[0]["media"][0];
    assert!(media["description"].as_str().unwrap().starts_with("[photo 400×300"), "{media}");
    let path = media["path"].as_str().unwrap();
    assert!(std::fs::read(path).unwrap() == std::fs::read(&photo).unwrap(), "the photo, decrypted");
    assert!(path.ends_with("holiday.png"));
    let path = lines[1]["media"][0]["path"].as_str().unwrap();
    assert!(std::fs::read(path).unwrap() == doc_bytes, "the document");

    // What the server holds for the photo is not the photo.
    let photo_bytes = std::fs::read(&photo).unwrap();
    let media_id = ids[0].as_str().unwrap();
    let blobs = walk(&dir_of_server_blobs(&server));
    let stored = blobs.iter().find(|p| p.ends_with(media_id)).expect("the blob on disk");
    let stored = std::fs::read(stored).unwrap();
    assert!(stored.len() == photo_bytes.len() + 48 && stored != photo_bytes, "ciphertext only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_photo_is_forwarded_from_the_file_recv_wrote() {
    // Proves: `recv --save-dir` writes a `forward_with` file for a media message, and `forward
    // --media` with it sends the same photo on (encrypted, nothing uploaded again) with its
    // caption, or a new one; the recipient saves the original bytes. A file that is not one
    // recv wrote is refused with a message, and nothing is sent.
    let server = Process::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let alice = cli_login(&url, dir.path(), "alice", "+14155550711");
    let bob = cli_login(&url, dir.path(), "bob", "+14155550712");
    let carol = cli_login(&url, dir.path(), "carol", "+14155550713");
    let photo = dir.path().join("harbour.png");
    std::fs::write(&photo, png(320, 200)).unwrap();
    let sent = iris(&["send", "--profile", &alice, "--to", "+14155550712", "--file", photo.to_str().unwrap(), "boats"]);
    let media_ids = sent[0]["media_ids"].clone();

    let bob_dir = dir.path().join("bob-saved");
    let got = iris(&["recv", "--profile", &bob, "--count", "1", "--save-dir", bob_dir.to_str().unwrap()]);
    let forward_with = got[0]["forward_with"].as_str().expect("a forward file").to_owned();
    let original_id = got[0]["server_msg_id"].as_u64().unwrap();
    assert!(forward_with.ends_with(&format!("{original_id}.media")), "{forward_with}");

    let fwd = iris(&["forward", "--profile", &bob, "--to", "+14155550713", "--media", &forward_with]);
    assert_eq!(fwd[0]["status"], "ACCEPTED", "{fwd:?}");
    assert_eq!(fwd[0]["forwarded"], true);
    iris(&["forward", "--profile", &bob, "--to", "+14155550713", "--media", &forward_with, "look", "at", "these"]);

    let carol_dir = dir.path().join("carol-saved");
    let lines = iris(&["recv", "--profile", &carol, "--count", "2", "--save-dir", carol_dir.to_str().unwrap()]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, caption) in lines.iter().zip(["boats", "look at these"]) {
        assert_eq!(line["forwarded"], true, "{line}");
        assert_eq!(line["text"], caption);
        let medium = &line["media"][0];
        assert_eq!(medium["media_id"], media_ids[0], "the same blob, not a new upload");
        assert!(medium["description"].as_str().unwrap().starts_with("[photo 320×200"), "{medium}");
        let path = medium["path"].as_str().unwrap();
        assert!(std::fs::read(path).unwrap() == std::fs::read(&photo).unwrap(), "the photo, decrypted");
    }

    let bogus = dir.path().join("bogus.media");
    std::fs::write(&bogus, b"not a media message").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_iris"))
        .args(["forward", "--profile", &bob, "--to", "+14155550713", "--media", bogus.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a file `iris recv --save-dir` wrote"));
    let none = iris(&["recv", "--profile", &carol, "--timeout", "1"]);
    assert!(none.is_empty(), "nothing was sent: {none:?}");
}

fn dir_of_server_blobs(server: &Process) -> std::path::PathBuf {
    server.data_dir.join("media")
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_message_carries_encrypted_media_through_the_sdk() {
    // Proves the SDK path for groups: `upload_media` (encrypted, with a client-made thumbnail)
    // and a `GroupSend` with `media_ids` reach a member as a `GroupMessage` with those ids, whose
    // `MediaMessage` payload `save_media` turns back into the original bytes (MAC and hash
    // checked); the server holds references on both blobs.
    use iris_client::media::{media_payload, save_media, upload_media, MediaApi, MediaOptions};
    use iris_client::pb;
    let server = TestServer::start().await;
    let url = server.base_url();
    let (alice, bob) = (login(&url, "+14155550711", "a").await, login(&url, "+14155550712", "b").await);
    let (a, _ae) = connect(&url, &alice).await;
    let (b, mut be) = connect(&url, &bob).await;
    let group = a
        .group_create("trip", "", vec![iris_client::Recipient::Account(bob.account_id)], Default::default())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    let bytes: Vec<u8> =
        b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".iter().copied().chain((0..500_000u32).map(|i| i as u8)).collect();
    std::fs::write(&clip, &bytes).unwrap();
    let api = MediaApi::new(&url, &alice.access_token).unwrap();
    let options = MediaOptions { thumbnail: Some(b"\xff\xd8\xff fake jpeg".to_vec()), ..MediaOptions::default() };
    let up = upload_media(&api, &clip, &options, &|_, _| {}).await.unwrap();
    assert_eq!(up.media.kind, pb::MediaKind::Video as i32, "sniffed from the bytes");
    assert_eq!(up.media_ids.len(), 2);
    let msg = pb::GroupSend {
        group_id: group.group_id,
        client_msg_id: "g1".into(),
        body: Some(pb::group_send::Body::Payload(media_payload(vec![up.media.clone()], "clip"))),
        media_ids: up.media_ids.clone(),
        ..Default::default()
    };
    a.group_send_message(msg).await.unwrap();

    let got = recv_until(&b, &mut be, |e| {
        matches!(e, iris_client::Event::Message(i) if matches!(i.body, Some(pb::inbox_item::Body::GroupMessage(_))))
    })
    .await;
    let iris_client::Event::Message(item) = got else { unreachable!() };
    let Some(pb::inbox_item::Body::GroupMessage(m)) = &item.body else { unreachable!() };
    assert_eq!(m.media_ids, up.media_ids);
    let media = iris_client::media::group_media_of(m).expect("a media payload");
    let bob_api = MediaApi::new(&url, &bob.access_token).unwrap();
    let saved = save_media(&bob_api, &media.media[0], &dir.path().join("bob"), &|_, _| {}).await.unwrap();
    assert!(std::fs::read(saved).unwrap() == bytes);
    let thumb = bob_api.fetch_small(&media.media[0].thumbnail_id).await.unwrap();
    let thumb = iris_client::media::crypto::decrypt_bytes(&thumb, &media.media[0].thumbnail_key).unwrap();
    assert_eq!(thumb, b"\xff\xd8\xff fake jpeg");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_names_its_media_in_every_copy() {
    // Proves: a forward with the message's `media_ids` gives every copy (1:1 and group) those
    // ids and a reference of its own on each blob, and the file saved from a forwarded copy is
    // the original; an unknown blob is NOT_FOUND and a malformed id INVALID_ARGUMENT, both
    // before anything is sent.
    use iris_client::media::{group_media_of, media_of, media_payload, save_media, upload_media, MediaApi};
    use iris_client::pb::{self, inbox_item::Body, ErrorCode};
    use iris_client::{Event, Recipient};
    let server = TestServer::start().await;
    let url = server.base_url();
    let alice = login(&url, "+14155550721", "a").await;
    let bob = login(&url, "+14155550722", "b").await;
    let carol = login(&url, "+14155550723", "c").await;
    let (a, _ae) = connect(&url, &alice).await;
    let (b, mut be) = connect(&url, &bob).await;
    let (c, mut ce) = connect(&url, &carol).await;
    let club = b.group_create("club", "", vec![Recipient::Account(carol.account_id)], Default::default()).await;
    let club = club.unwrap().group_id;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    let bytes: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(&file, &bytes).unwrap();
    let api = MediaApi::new(&url, &alice.access_token).unwrap();
    let up = upload_media(&api, &file, &Default::default(), &|_, _| {}).await.unwrap();
    let original = pb::SendMessage {
        client_msg_id: "m1".into(),
        to_account_id: bob.account_id,
        body: Some(pb::send_message::Body::Payload(media_payload(vec![up.media.clone()], "notes"))),
        media_ids: up.media_ids.clone(),
        ..Default::default()
    };
    a.send_message(original).await.unwrap();
    let is_message =
        |e: &Event| matches!(e, Event::Message(i) if matches!(i.body, Some(Body::Message(_) | Body::GroupMessage(_))));
    let Event::Message(got) = recv_until(&b, &mut be, is_message).await else { unreachable!() };
    let Some(Body::Message(m)) = &got.body else { unreachable!() };

    let forward = |media_ids: Vec<String>| {
        b.forward_media(got.server_msg_id, m.payload.clone(), media_ids, vec![carol.account_id], vec![club])
    };
    assert_eq!(forward(vec!["ab".repeat(32)]).await.unwrap_err().code(), Some(ErrorCode::NotFound));
    assert_eq!(forward(vec!["not hex".into()]).await.unwrap_err().code(), Some(ErrorCode::InvalidArgument));
    assert_eq!(forward(m.media_ids.clone()).await.unwrap().len(), 2);

    let mut copies = Vec::new();
    for _ in 0..2 {
        let Event::Message(item) = recv_until(&c, &mut ce, is_message).await else { unreachable!() };
        let (ids, forwarded, media) = match &item.body {
            Some(Body::Message(m)) => (m.media_ids.clone(), m.forwarded, media_of(m)),
            Some(Body::GroupMessage(m)) => (m.media_ids.clone(), m.forwarded, group_media_of(m)),
            _ => unreachable!(),
        };
        assert!(forwarded);
        assert_eq!(ids, up.media_ids, "every copy names the media (the refused forwards sent nothing)");
        copies.push(media.expect("a media payload"));
    }
    let carol_api = MediaApi::new(&url, &carol.access_token).unwrap();
    let saved = save_media(&carol_api, &copies[1].media[0], &dir.path().join("carol"), &|_, _| {}).await.unwrap();
    assert!(std::fs::read(saved).unwrap() == bytes);
    let id: [u8; 32] = hex::decode(&up.media_ids[0]).unwrap().try_into().unwrap();
    assert_eq!(server.ctx().store.media_ref_count(id).await.unwrap(), 3, "the original and two copies");
}
