//! The web client's files served at `/` (`http/web.rs`): the page, its script and stylesheet
//! with the right content types, revalidation by `ETag`, the page's security headers, and the
//! API's typed 404 for everything else.

mod common;

use common::*;
use iris_proto::pb::ErrorCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_files_are_served_with_their_types() {
    // Proves: GET / is the single-page client (HTML, with its CSP), and each file it loads is
    // served from the binary with its content type.
    let server = TestServer::start().await;
    let http = iris_client::TlsTrust::none().http_builder().build().unwrap();
    let page = http.get(server.url("/")).send().await.expect("GET /");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("connect-src 'self'") && csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers()["cache-control"], "no-cache");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<div id="app">"#), "{html}");

    for (path, content_type, sample) in [
        ("/app.js", "text/javascript; charset=utf-8", "iris.v1.json"),
        ("/app.css", "text/css; charset=utf-8", ".bubble"),
        ("/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        assert!(html.contains(path), "index.html loads {path}");
        let reply = http.get(server.url(path)).send().await.expect("GET a file");
        assert_eq!(reply.status(), 200, "{path}");
        assert_eq!(reply.headers()["content-type"], content_type, "{path}");
        assert_eq!(reply.headers()["x-content-type-options"], "nosniff", "{path}");
        assert!(reply.text().await.unwrap().contains(sample), "{path} is the built file");
    }

    // libolm's WebAssembly, which app.js loads for end-to-end encryption: served from here too,
    // and the page's CSP lets it compile (without allowing `eval`), show decrypted images and
    // play decrypted voice notes and videos.
    assert!(csp.contains("'wasm-unsafe-eval'") && !csp.contains("'unsafe-eval'"), "{csp}");
    assert!(csp.contains("img-src 'self' data: blob:"), "{csp}");
    assert!(csp.contains("media-src blob:"), "{csp}");
    let wasm = http.get(server.url("/olm.wasm")).send().await.expect("GET /olm.wasm");
    assert_eq!(wasm.status(), 200);
    assert_eq!(wasm.headers()["content-type"], "application/wasm");
    assert!(wasm.bytes().await.unwrap().starts_with(b"\0asm"), "a WebAssembly module");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_file_is_revalidated_with_a_304() {
    // Proves: the ETag of a file is stable and If-None-Match with it answers 304 without a body,
    // while a stale validator gets the file.
    let server = TestServer::start().await;
    let http = iris_client::TlsTrust::none().http_builder().build().unwrap();
    let first = http.get(server.url("/app.js")).send().await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    let again = http.get(server.url("/app.js")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert!(again.bytes().await.unwrap().is_empty());

    let stale = http.get(server.url("/app.js")).header("if-none-match", "\"0\"").send().await.unwrap();
    assert_eq!(stale.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_paths_stay_the_apis_typed_404() {
    // Proves: serving the page did not turn unknown paths into HTML: they are still the typed
    // NOT_FOUND of the API, and the API routes are untouched.
    let server = TestServer::start().await;
    server.get("/index.html", None).await.expect_error(404, ErrorCode::NotFound);
    server.get("/v1/nope", None).await.expect_error(404, ErrorCode::NotFound);
    let info: serde_json::Value = server.get("/v1/info", None).await.expect_json(200);
    assert_eq!(info["ws_path"], "/v1/ws");
}
