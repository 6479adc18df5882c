//! The S3 side of the blob store against a real S3 API: a single-node Garage started by the test
//! kit. First the object store path on its own (multipart put, ranged get, list, delete; and over
//! HTTPS through a TLS-terminating proxy, verified against its CA), then a whole server keeping
//! its media in the bucket (upload, dedup, ranged download, collection).

mod common;

use common::TestServer;
use futures_util::StreamExt;
use iris_proto::http::{UploadRequest, UploadState};
use std::net::SocketAddr;
use std::time::Duration;

use iris_server::config::{MediaConfig, TlsConfig};
use iris_server::gateway::tls::ServerTls;
use iris_server::media::blobs::Blobs;
use iris_testkit::garage::{Garage, BUCKET, REGION};
use iris_testkit::tls::TestCa;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};

fn s3_config(garage: &Garage) -> MediaConfig {
    MediaConfig {
        s3_bucket: Some(BUCKET.into()),
        s3_endpoint: garage.endpoint.clone(),
        s3_region: REGION.into(),
        s3_access_key_id: garage.access_key_id.clone(),
        s3_secret_access_key: garage.secret_access_key.clone(),
        ..MediaConfig::default()
    }
}

fn bytes_of(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed).collect()
}

async fn collect(blobs: &Blobs, id: &str, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let mut stream = blobs.get(id, range).await.expect("get");
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    out
}

/// A TLS-terminating proxy in front of `upstream` (as a load balancer in front of an S3), with
/// a certificate `ca` issued; its `https://` endpoint.
async fn tls_proxy(ca: &TestCa, upstream: SocketAddr) -> String {
    let cert = ca.issue();
    let acceptor = ServerTls::load(&TlsConfig::new(cert.cert_path, cert.key_path)).expect("TLS").acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let (Ok(mut tls), Ok(mut plain)) = (acceptor.accept(tcp).await, TcpStream::connect(upstream).await)
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    format!("https://localhost:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_endpoint_is_verified_against_its_ca() {
    // Proves: an `https://` S3 endpoint is reached over TLS, trusting `media.s3_ca_file`: a put
    // and a get go through a TLS-terminating proxy in front of Garage, into the same bucket;
    // with another CA's certificate file nothing is stored.
    let garage = Garage::start();
    let upstream: SocketAddr = garage.endpoint.trim_start_matches("http://").parse().expect("Garage's address");
    let ca = TestCa::new("S3 CA");
    let dir = tempfile::tempdir().unwrap();
    let https = MediaConfig {
        s3_endpoint: tls_proxy(&ca, upstream).await,
        s3_ca_file: Some(ca.ca_path()),
        ..s3_config(&garage)
    };
    let blobs = Blobs::open(&https, dir.path()).expect("S3 store over HTTPS");
    blobs.put_bytes("over-tls", b"sealed".to_vec()).await.expect("put over TLS");
    assert_eq!(collect(&blobs, "over-tls", None).await, b"sealed");
    let plain = Blobs::open(&s3_config(&garage), dir.path()).expect("S3 store");
    assert!(plain.exists("over-tls").await.unwrap(), "the same bucket");

    let other = TestCa::new("another CA");
    let untrusted = Blobs::open(&MediaConfig { s3_ca_file: Some(other.ca_path()), ..https }, dir.path()).unwrap();
    // object_store retries a failed connection, so the refusal is bounded here, not awaited.
    let put = tokio::time::timeout(Duration::from_secs(10), untrusted.put_bytes("refused", b"x".to_vec())).await;
    assert!(!matches!(put, Ok(Ok(_))), "a certificate of another CA is refused");
    assert!(!plain.exists("refused").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_ranged_get_list_delete_on_garage() {
    // Proves the object_store S3 path works against a real S3 API: a 20 MB file goes up in
    // multipart parts, comes back whole and by range, is listed with its size, and is deleted.
    let garage = Garage::start();
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open(&s3_config(&garage), dir.path()).expect("S3 store");
    let file = bytes_of(20 << 20, 7);
    let path = dir.path().join("file");
    std::fs::write(&path, &file).unwrap();
    let id = hex::encode(Sha256::digest(&file));
    blobs.put_file(&id, &path).await.expect("multipart put");
    blobs.put_bytes("small", b"tiny".to_vec()).await.expect("put");
    assert!(blobs.exists(&id).await.unwrap());
    assert!(collect(&blobs, &id, None).await == file);
    assert!(collect(&blobs, &id, Some(9_000_000..9_000_100)).await == file[9_000_000..9_000_100]);
    let mut listed: Vec<(String, u64)> = blobs.list().map(|r| r.unwrap()).collect().await;
    listed.sort();
    assert_eq!(listed, vec![(id.clone(), file.len() as u64), ("small".to_owned(), 4)]);
    blobs.delete(&id).await.unwrap();
    blobs.delete(&id).await.expect("deleting twice is fine");
    assert!(!blobs.exists(&id).await.unwrap());
    assert_eq!(blobs.list().count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_keeps_its_media_in_the_bucket() {
    // Proves the whole media path on S3: an upload lands in the bucket, a second upload of the
    // same bytes stores nothing new, and a signed ranged download reads from the bucket.
    let garage = Garage::start();
    let config = s3_config(&garage);
    let server = TestServer::start_with(|c| c.media = config).await;
    let creds = server.login("+15550100061", "phone").await;
    let http = iris_client::TlsTrust::none().http_builder().build().unwrap();
    let file = bytes_of(3 << 20, 9);
    let sha = hex::encode(Sha256::digest(&file));
    let mut media_id = String::new();
    for key in ["first", "second"] {
        let req = UploadRequest {
            kind: "document".into(),
            size_bytes: file.len() as u64,
            sha256: sha.clone(),
            encrypted: true,
            mime: String::new(),
            idempotency_key: key.into(),
        };
        let r = http.post(server.url("/v1/media/uploads")).bearer_auth(&creds.access_token).json(&req).send();
        let state: UploadState = r.await.unwrap().json().await.unwrap();
        let r = http
            .patch(server.url(&format!("/v1/media/uploads/{}", state.upload_id)))
            .bearer_auth(&creds.access_token)
            .header("upload-offset", "0")
            .body(file.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let done: UploadState = r.json().await.unwrap();
        media_id = done.media.expect("complete").media_id;
    }
    assert_eq!(media_id, sha);
    let listed: Vec<_> = server.running().ctx().media.blobs().list().map(|r| r.unwrap()).collect().await;
    assert_eq!(listed, vec![(sha.clone(), file.len() as u64)]);
    let url: iris_proto::http::MediaUrl = http
        .get(server.url(&format!("/v1/media/{media_id}/url")))
        .bearer_auth(&creds.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let part = http.get(server.url(&url.url)).header("range", "bytes=100-199").send().await.unwrap();
    assert_eq!(part.status(), 206);
    assert!(part.bytes().await.unwrap() == file[100..200]);
}
