//! `iris admin lookup | revoke` through the real binary against a server's admin listener: the
//! token from `--token` or `IRIS_ADMIN_TOKEN`, JSON on stdout, and a refusal as one JSON error
//! line on stderr with a failing exit status.

mod common;

use std::process::{Command, Output};

use common::*;
use serde_json::Value;

const TOKEN: &str = "cli-operator-token-42";
const ALICE: &str = "+15550000801";

/// Runs `iris admin <args>` off the runtime's threads (the server runs in this process).
async fn iris_admin(args: Vec<String>, env_token: Option<&'static str>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_iris"));
        cmd.arg("admin").args(&args).env_remove("IRIS_ADMIN_TOKEN").env_remove("IRIS_ADMIN_URL");
        if let Some(t) = env_token {
            cmd.env("IRIS_ADMIN_TOKEN", t);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap()
}

fn stdout_json(out: &Output) -> Value {
    assert!(out.status.success(), "iris admin failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn error_line(out: &Output) -> Value {
    assert!(!out.status.success(), "should have failed: {}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    serde_json::from_str(stderr.lines().last().expect("an error line")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_and_revoke_from_the_command_line() {
    // Proves: `iris admin lookup` prints the account (found by phone, token from the
    // environment) with both devices; `iris admin revoke` (token as a flag) revokes the laptop,
    // which a second lookup no longer lists; a wrong token is UNAUTHENTICATED and an unknown
    // account NOT_FOUND, each as a JSON error line with a failing exit.
    let server = TestServer::start_with(|c| {
        c.admin.listen = Some("127.0.0.1:0".parse().unwrap());
        c.admin.token = Some(TOKEN.to_owned());
    })
    .await;
    let alice = server.login(ALICE, "phone").await;
    let laptop = link_device(&server.base_url(), &alice, "laptop").await;
    let admin = server.admin_url();

    let found = stdout_json(
        &iris_admin(vec!["lookup".into(), "--admin-url".into(), admin.clone(), ALICE.into()], Some(TOKEN)).await,
    );
    assert_eq!(found["account_id"], alice.account_id);
    let names: Vec<&str> = found["devices"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["phone", "laptop"]);

    let revoke = vec![
        "revoke".into(),
        "--admin-url".into(),
        admin.clone(),
        "--token".into(),
        TOKEN.into(),
        alice.account_id.to_string(),
        laptop.device_id.to_string(),
    ];
    let revoked = stdout_json(&iris_admin(revoke, None).await);
    assert_eq!(
        (revoked["device_id"].as_u64(), revoked["name"].as_str()),
        (Some(u64::from(laptop.device_id)), Some("laptop"))
    );
    let after = stdout_json(
        &iris_admin(vec!["lookup".into(), "--admin-url".into(), admin.clone(), ALICE.into()], Some(TOKEN)).await,
    );
    assert_eq!(after["devices"].as_array().unwrap().len(), 1);

    let wrong = error_line(
        &iris_admin(
            vec!["lookup".into(), "--admin-url".into(), admin.clone(), ALICE.into()],
            Some("not-the-token-at-all"),
        )
        .await,
    );
    assert_eq!(wrong["code"], "ERROR_CODE_UNAUTHENTICATED", "{wrong}");
    let unknown = error_line(
        &iris_admin(vec!["lookup".into(), "--admin-url".into(), admin, "+15559999999".into()], Some(TOKEN)).await,
    );
    assert_eq!(unknown["code"], "ERROR_CODE_NOT_FOUND", "{unknown}");
}
