//! `iris admin lookup | revoke | suspend | unsuspend | lift | reports | review` through the real binary against a server's admin listener: the
//! token from `--token` or `IRIS_ADMIN_TOKEN`, JSON on stdout, and a refusal as one JSON error
//! line on stderr with a failing exit status.

mod common;

use std::process::{Command, Output};

use common::*;
use serde_json::Value;

const TOKEN: &str = "cli-operator-token-42";
const ALICE: &str = "+15550000801";
const BOB: &str = "+15550000802";
const CAROL: &str = "+15550000803";

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

/// `iris admin <command> --admin-url URL <rest…>` with the token in the environment.
async fn admin_cmd(admin: &str, command: &str, rest: &[&str]) -> Output {
    let mut args = vec![command.to_owned(), "--admin-url".to_owned(), admin.to_owned()];
    args.extend(rest.iter().map(|&a| a.to_owned()));
    iris_admin(args, Some(TOKEN)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_suspension_and_restrictions_are_reviewed_from_the_command_line() {
    // Proves: two reports from distinct accounts suspend the account (threshold 2); `iris admin
    // review` lists it as the one account to review; `iris admin reports` lists them newest first with the disclosed message (base64) and the count of
    // distinct reporters; `lookup` shows the suspension; `unsuspend` lifts it (a second time:
    // `changed: false`) and the account sends again, which (1 new recipient a day) restricts
    // its sending; `lift sending` ends that; `suspend --reason` records `operator: <reason>`
    // and refuses its sends; an empty reason is INVALID_ARGUMENT.
    let server = TestServer::start_with(|c| {
        c.admin.listen = Some("127.0.0.1:0".parse().unwrap());
        c.admin.token = Some(TOKEN.to_owned());
        c.abuse.reports_to_suspend = 2;
        c.abuse.reports_per_account_per_day = 10;
        c.abuse.new_recipients_per_day = 1;
    })
    .await;
    let url = server.base_url();
    let admin = server.admin_url();
    let alice = Dev::without_retries(&url, ALICE).await;
    let bob = Dev::new(&url, BOB).await;
    let carol = Dev::new(&url, CAROL).await;
    let disclosed =
        iris_client::pb::ReportedMessage { server_msg_id: 5, sent_at_ms: 1, content: b"buy now".to_vec().into() };
    bob.client.report(alice.id(), "spam".into(), vec![disclosed]).await.unwrap();
    carol.client.report(alice.id(), "scam".into(), vec![]).await.unwrap();

    let reports = stdout_json(&admin_cmd(&admin, "reports", &[ALICE]).await);
    assert_eq!(reports["distinct_reporters_in_window"], 2);
    let list = reports["reports"].as_array().unwrap();
    assert_eq!((list[0]["reason"].as_str(), list[1]["reason"].as_str()), (Some("scam"), Some("spam")));
    assert_eq!(list[1]["reporter_account_id"], bob.id());
    assert_eq!(list[1]["messages"][0]["content_base64"], "YnV5IG5vdw==");
    let found = stdout_json(&admin_cmd(&admin, "lookup", &[ALICE]).await);
    assert_eq!(found["abuse"]["suspended"]["reason"], "reports");
    let queue = stdout_json(&admin_cmd(&admin, "review", &["--limit", "5"]).await);
    let listed = &queue["accounts"][0];
    assert_eq!((listed["phone"].as_str(), listed["recent_reports"].as_u64()), (Some(ALICE), Some(2)), "{queue}");
    assert_eq!((queue["accounts"].as_array().unwrap().len(), &queue["next"]), (1, &Value::Null), "{queue}");
    let refused = alice.client.send(bob.id(), "x").await.unwrap_err();
    assert_eq!(refused.code(), Some(iris_client::pb::ErrorCode::AccountSuspended));

    let id = alice.id().to_string();
    let lifted = stdout_json(&admin_cmd(&admin, "unsuspend", &[&id]).await);
    assert_eq!((lifted["changed"].as_bool(), &lifted["abuse"]["suspended"]), (Some(true), &Value::Null));
    assert_eq!(stdout_json(&admin_cmd(&admin, "unsuspend", &[&id]).await)["changed"], false);
    let restricted = alice.client.send(bob.id(), "after review").await.unwrap_err();
    assert_eq!(restricted.code(), Some(iris_client::pb::ErrorCode::SendingRestricted));
    let lift = stdout_json(&admin_cmd(&admin, "lift", &[ALICE, "sending"]).await);
    assert_eq!(
        (lift["changed"].as_bool(), lift["abuse"]["sending_restricted_until_ms"].as_u64()),
        (Some(true), Some(0))
    );
    alice.client.send(bob.id(), "lifted").await.unwrap();

    let suspended = stdout_json(&admin_cmd(&admin, "suspend", &[ALICE, "--reason", "review of ticket 7"]).await);
    assert_eq!(suspended["changed"], true);
    assert_eq!(suspended["abuse"]["suspended"]["reason"], "operator: review of ticket 7");
    // Other sessions see the suspension within `state_cache_ms` (1 s); this node at once.
    let refused = alice.client.send(bob.id(), "y").await.unwrap_err();
    assert_eq!(refused.code(), Some(iris_client::pb::ErrorCode::AccountSuspended));
    let empty = error_line(&admin_cmd(&admin, "suspend", &[ALICE, "--reason", " "]).await);
    assert_eq!(empty["code"], "ERROR_CODE_INVALID_ARGUMENT", "{empty}");
}
