//! The command line against a server with TLS on both listeners: `SSL_CERT_FILE` names the
//! private CA (as for OpenSSL tools), and login, send and receive run over HTTPS and the TLS
//! framed listener; without it the system's CAs do not trust the server and the command fails.

mod common;

use std::process::Output;

use common::*;
use iris_server::config::TlsConfig;
use iris_testkit::tls::TestCa;
use serde_json::Value;

/// Runs `iris <args>` off the runtime's threads (the server runs in this process), with
/// `SSL_CERT_FILE` set to `ca_file` when given.
async fn iris(args: Vec<String>, ca_file: Option<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_iris"));
        cmd.args(&args).env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR").env_remove("IRIS_SERVER");
        if let Some(f) = ca_file {
            cmd.env("SSL_CERT_FILE", f);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap()
}

fn lines(out: &Output) -> Vec<Value> {
    assert!(out.status.success(), "iris failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|&a| a.to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_send_and_receive_over_tls_with_a_private_ca() {
    // Proves: with SSL_CERT_FILE naming the test CA, `iris login` over https://, `iris send` and
    // `iris recv` (framed listener over TLS) deliver a message; the same login without the CA
    // fails with a JSON error line and a failing exit.
    let ca = TestCa::new("iris cli test CA");
    let cert = ca.issue();
    let tls = TlsConfig::new(cert.cert_path.clone(), cert.key_path.clone());
    let server = TestServer::start_with(|c| c.tls = Some(tls)).await;
    let url = format!("https://127.0.0.1:{}", server.http_addr.port());
    let dir = tempfile::tempdir().unwrap();
    let profile = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let (alice, bob) = (profile("alice.json"), profile("bob.json"));
    let ca_file = Some(ca.ca_path().to_string_lossy().into_owned());

    for (p, phone) in [(&alice, "+14155550321"), (&bob, "+14155550322")] {
        lines(&iris(args(&["login", "--server", &url, "--phone", phone, "--profile", p]), ca_file.clone()).await);
    }
    let send = args(&["send", "--profile", &alice, "--to", "+14155550322", "--plaintext", "over TLS"]);
    let sent = lines(&iris(send, ca_file.clone()).await);
    assert!(sent[0]["server_msg_id"].as_u64().is_some_and(|id| id > 0), "{sent:?}");
    let got = lines(&iris(args(&["recv", "--profile", &bob, "--count", "1", "--timeout", "10"]), ca_file).await);
    assert_eq!(got[0]["text"], "over TLS", "{got:?}");

    let refused =
        iris(args(&["login", "--server", &url, "--phone", "+14155550323", "--profile", &profile("c")]), None).await;
    assert!(!refused.status.success(), "a server no CA vouches for must be refused");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let err: Value = serde_json::from_str(stderr.lines().last().expect("an error line")).unwrap();
    assert!(err["code"].as_str().is_some_and(|c| c.starts_with("CLIENT_")), "{err}");
}
