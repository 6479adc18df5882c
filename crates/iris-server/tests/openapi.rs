//! The published OpenAPI document of the HTTP API: `docs/openapi.json` is exactly what the code
//! generates (`IRIS_BLESS=1` rewrites it), the server serves the same document at
//! `/v1/openapi.json`, and every documented route answers with a status its description lists.

mod common;

use std::path::Path;

use common::*;

fn committed_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

fn generated() -> String {
    serde_json::to_string_pretty(&iris_server::http::openapi()).expect("the document serialises") + "\n"
}

#[test]
fn the_committed_document_is_what_the_code_generates() {
    // Proves: docs/openapi.json matches the handlers' annotations and body types byte for byte.
    let (path, now) = (committed_path(), generated());
    if std::env::var_os("IRIS_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &now).expect("write docs/openapi.json");
        return;
    }
    let committed =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (IRIS_BLESS=1 writes it)", path.display()));
    assert!(
        committed == now,
        "docs/openapi.json differs from what the code generates: regenerate it with \
         IRIS_BLESS=1 cargo nextest run -p iris-server --test openapi, and review the diff"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_its_document() {
    // Proves: GET /v1/openapi.json answers the generated document.
    let server = TestServer::start().await;
    let served: serde_json::Value = server.get("/v1/openapi.json", None).await.expect_json(200);
    assert_eq!(served, serde_json::to_value(iris_server::http::openapi()).unwrap());
    assert!(served["paths"]["/v1/auth/verify"]["post"].is_object(), "{served}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_answers_a_documented_status() {
    // Proves: each documented path and method exists on the server (never the "route not found"
    // fallback) and, called without credentials or body, answers a status listed for it.
    let server = TestServer::start().await;
    let doc = serde_json::to_value(iris_server::http::openapi()).unwrap();
    let http = iris_client::TlsTrust::none().http_builder().build().unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let concrete = path
            .replace("{device_id}", "2")
            .replace("{phone}", "+14155550102")
            .replace("{upload_id}", &"0".repeat(32))
            .replace("{media_id}", &"a".repeat(64))
            .replace("{code}", "ABCD-EFGH")
            .replace("{account_id}", "1");
        for (method, operation) in item.as_object().expect("a path item") {
            let url = server.url(&concrete);
            let request = match method.as_str() {
                "get" => http.get(url),
                "post" => http.post(url).header("content-type", "application/json").body("{}"),
                "put" => http.put(url).header("content-type", "application/json").body("{}"),
                "delete" => http.delete(url),
                "patch" => http.patch(url).body("x"),
                other => panic!("{path}: method {other} is not exercised here"),
            };
            let reply = request.send().await.expect("an answer");
            let status = reply.status().as_u16().to_string();
            let body = reply.text().await.unwrap_or_default();
            assert!(!body.contains("route not found"), "{method} {path} is documented but not routed");
            let listed = operation["responses"].as_object().expect("responses");
            assert!(listed.contains_key(&status), "{method} {path} answered {status}, not documented: {body}");
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} operations documented");
}
