//! Groups through the real binary: the `iris group` commands are scriptable (one JSON line per
//! answer), group messages arrive through `iris recv`, an accepted group message survives
//! kill -9 (its once-stored payload is as durable as the inbox references), and join requests
//! are approved or declined from the command line.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// Runs `iris <args>` and returns its stdout lines as JSON, failing the test on a bad exit.
fn iris(args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_iris")).args(args).output().unwrap();
    assert!(out.status.success(), "iris {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn login(url: &str, dir: &Path, name: &str, phone: &str) -> String {
    let profile = dir.join(name).to_string_lossy().into_owned();
    iris(&["login", "--server", url, "--phone", phone, "--profile", &profile]);
    profile
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commands_are_scriptable_and_survive_kill_9() {
    // Proves: create/add/promote/info/send print JSON lines, `iris recv` prints the group message
    // with its group_id, and an accepted group send is delivered after kill -9 and a restart.
    let mut server = Process::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        login(&url, dir.path(), "a", "+14155550201"),
        login(&url, dir.path(), "b", "+14155550202"),
        login(&url, dir.path(), "c", "+14155550203"),
    );
    let created = iris(&["group", "create", "--profile", &a, "--name", "cli", "--members", "+14155550202"]);
    let group = created[0]["group_id"].as_u64().expect("group_id").to_string();
    iris(&["group", "add", "--profile", &a, "--group", &group, "--members", "+14155550203"]);
    iris(&["group", "promote", "--profile", &a, "--group", &group, "--members", "+14155550202"]);
    let info = iris(&["group", "info", "--profile", &b, "--group", &group]);
    let roles: Vec<&str> = info[0]["members"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["creator", "admin", "member"]);
    let sent = iris(&["group", "send", "--profile", &b, "--group", &group, "hello", "group"]);
    assert_eq!(sent[0]["status"], "ACCEPTED");
    server.kill9();
    server.restart().await;
    let lines = iris(&["recv", "--profile", &c, "--count", "1", "--timeout", "10"]);
    let message = lines.iter().find(|l| l["text"] == "hello group").expect("the group message");
    assert_eq!(message["group_id"].as_u64().unwrap().to_string(), group);
    assert!(lines.iter().any(|l| l["group_event"] == "MEMBERS_ADDED"), "membership events print too: {lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_requests_are_approved_or_declined_from_the_command_line() {
    // Proves: with join approval, `group join` prints `pending`, `group info` lists the
    // requester for the admin, `group approve` admits one and `--reject` declines another, who
    // reads JOIN_DECLINED through `iris recv`.
    let server = Process::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        login(&url, dir.path(), "a", "+14155550211"),
        login(&url, dir.path(), "b", "+14155550212"),
        login(&url, dir.path(), "c", "+14155550213"),
    );
    let created = iris(&["group", "create", "--profile", &a, "--name", "club", "--join-approval"]);
    let group = created[0]["group_id"].as_u64().expect("group_id").to_string();
    let token = iris(&["group", "invite", "--profile", &a, "--group", &group])[0]["token"].as_str().unwrap().to_owned();
    for requester in [&b, &c] {
        assert_eq!(iris(&["group", "join", "--profile", requester, "--token", &token])[0]["pending"], true);
    }
    let pending = iris(&["group", "info", "--profile", &a, "--group", &group])[0]["pending_account_ids"].clone();
    let ids: Vec<String> = pending.as_array().unwrap().iter().map(|v| v.as_u64().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 2, "{pending}");
    let admitted = iris(&["group", "approve", "--profile", &a, "--group", &group, "--accounts", &ids[0]]);
    assert_eq!(admitted[0]["members"].as_array().unwrap().len(), 2);
    let declined = iris(&["group", "approve", "--profile", &a, "--group", &group, "--accounts", &ids[1], "--reject"]);
    assert_eq!(declined[0]["pending_account_ids"], serde_json::json!([]));
    let lines = iris(&["recv", "--profile", &c, "--timeout", "2"]);
    assert!(lines.iter().any(|l| l["group_event"] == "JOIN_DECLINED"), "the declined requester is told: {lines:?}");
}
