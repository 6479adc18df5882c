//! The minimal Python client (`clients/python/iris_client.py`, standard library only, written
//! from iris.proto and PROTOCOL.md) against a real dev-mode server: HTTP login with the code
//! 000000, one device over framed TCP and one over WebSocket JSON, a message each way, receipt,
//! acks, and the typed refusals at the edges. Fails, never skips, when python3 is missing.

mod common;

use std::path::Path;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_logs_in_sends_receives_and_acks() {
    // Proves: a client written from the documents alone completes a live exchange on both
    // transports and meets the refusals the documents describe.
    let server = TestServer::start().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("clients/python/iris_client.py");
    let proto = root.join("crates/iris-proto/proto/iris/v1/iris.proto");
    let base = server.url("");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").arg(script).arg("live").arg(proto).arg(base).output()
    })
    .await
    .expect("the client ran")
    .unwrap_or_else(|e| panic!("python3 is needed for this test (scripts/test.sh installs it): {e}"));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the Python client failed:\n{stdout}\n{stderr}");
    println!("{stdout}");
}
