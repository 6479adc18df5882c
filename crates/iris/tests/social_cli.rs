//! Contacts, discovery, blocks, message actions and presence through the real binary: every
//! command is scriptable (one JSON line per answer on stdout) and refusals are one JSON line
//! `{"code","message"}` on stderr with a failing exit status, like `send` and `group`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

/// Runs `iris <args>` and returns its stdout lines as JSON, failing the test on a bad exit.
fn iris(args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_iris")).args(args).output().unwrap();
    assert!(out.status.success(), "iris {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Runs `iris <args>`, expects it to fail, and returns its error line.
fn iris_fails(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_iris")).args(args).output().unwrap();
    assert!(!out.status.success(), "iris {args:?} should have failed");
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let line = stderr.lines().last().expect("an error line");
    let err: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"));
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "a message: {err}");
    err
}

fn login(url: &str, dir: &Path, name: &str, phone: &str) -> String {
    let profile = dir.join(name).to_string_lossy().into_owned();
    iris(&["login", "--server", url, "--phone", phone, "--profile", &profile]);
    profile
}

fn phones(lines: &[Value]) -> Vec<&str> {
    lines.iter().map(|l| l["phone"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_discover_block_and_unblock_are_scriptable() {
    // Proves: contacts add/remove/list print the list after the change; discover prints only the
    // registered numbers; an unknown phone is a JSON error; a block keeps the blocked account's
    // messages out of `iris recv` (its send still ACCEPTED) until unblock.
    let server = Process::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (login(&url, dir.path(), "a", "+14155550301"), login(&url, dir.path(), "b", "+14155550302"));
    login(&url, dir.path(), "c", "+14155550303");

    let added = iris(&["contacts", "add", "--profile", &a, "--phones", "+14155550302,+14155550303"]);
    assert_eq!(phones(&added), ["+14155550302", "+14155550303"]);
    assert!(added[0]["account_id"].as_u64().is_some_and(|id| id > 0));
    let left = iris(&["contacts", "remove", "--profile", &a, "--phones", "+14155550303"]);
    assert_eq!(phones(&left), ["+14155550302"]);
    assert_eq!(phones(&iris(&["contacts", "list", "--profile", &a])), ["+14155550302"]);
    let err = iris_fails(&["contacts", "add", "--profile", &a, "--phones", "+14155550399"]);
    assert_eq!(err["code"], "ERROR_CODE_NOT_FOUND", "{err}");
    let err = iris_fails(&["contacts", "add", "--profile", &a, "--phones", "not-a-phone"]);
    assert_eq!(err["code"], "CLIENT_ERROR", "{err}");

    let found = iris(&["discover", "--profile", &a, "+14155550303", "+14155550398", "+14155550302"]);
    let mut found = phones(&found);
    found.sort_unstable();
    assert_eq!(found, ["+14155550302", "+14155550303"]);

    let blocked = iris(&["block", "--profile", &a, "--phone", "+14155550302"]);
    assert_eq!(blocked[0]["blocked"], true);
    let sent = iris(&["send", "--profile", &b, "--to", "+14155550301", "while", "blocked"]);
    assert_eq!(sent[0]["status"], "ACCEPTED");
    assert!(iris(&["recv", "--profile", &a, "--timeout", "1"]).is_empty(), "a blocked message got through");
    assert_eq!(iris(&["unblock", "--profile", &a, "--phone", "+14155550302"])[0]["blocked"], false);
    iris(&["send", "--profile", &b, "--to", "+14155550301", "after", "unblock"]);
    let got = iris(&["recv", "--profile", &a, "--count", "1", "--timeout", "10"]);
    assert_eq!(got.iter().map(|l| l["text"].as_str().unwrap()).collect::<Vec<_>>(), ["after unblock"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_actions_are_scriptable_and_arrive_through_recv() {
    // Proves: reply, edit, react and delete print their answers; `iris recv` prints the reply's
    // reference and each action; an edit after the delete is a NOT_FOUND JSON error; forward
    // reaches people and groups (flagged), and more than 5 chats is INVALID_ARGUMENT.
    let server = Process::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (login(&url, dir.path(), "a", "+14155550311"), login(&url, dir.path(), "b", "+14155550312"));
    let c = login(&url, dir.path(), "c", "+14155550313");

    let sent = iris(&["send", "--profile", &a, "--to", "+14155550312", "lunch?"]);
    let id = sent[0]["server_msg_id"].as_u64().unwrap().to_string();
    let reply = iris(&["reply", "--profile", &b, "--to", "+14155550311", "--msg", &id, "sure"]);
    assert_eq!((&reply[0]["status"], reply[0]["reply_to_server_msg_id"].to_string()), (&"ACCEPTED".into(), id.clone()));
    let got = iris(&["recv", "--profile", &a, "--count", "1", "--timeout", "10"]);
    let answer = got.iter().find(|l| l["text"] == "sure").expect("the reply");
    assert_eq!(answer["reply_to_server_msg_id"].to_string(), id);

    let edit = iris(&["edit", "--profile", &a, "--msg", &id, "lunch at 1?"]);
    assert_eq!((&edit[0]["action"], edit[0]["target_server_msg_id"].to_string()), (&"EDIT".into(), id.clone()));
    // b never received it on this device: an encrypted reaction names the conversation.
    assert_eq!(iris(&["react", "--profile", &b, "--msg", &id, "--to", "+14155550311", "👍"])[0]["emoji"], "👍");
    assert_eq!(iris(&["react", "--profile", &b, "--msg", &id, "--to", "+14155550311", "--remove"])[0]["emoji"], "");
    assert_eq!(iris(&["delete", "--profile", &a, "--msg", &id])[0]["action"], "DELETE");
    let err = iris_fails(&["edit", "--profile", &a, "--msg", &id, "too late"]);
    assert_eq!(err["code"], "ERROR_CODE_NOT_FOUND", "{err}");
    let err = iris_fails(&["delete", "--profile", &b, "--msg", &id]);
    assert_eq!(err["code"], "ERROR_CODE_NOT_FOUND", "{err}");

    let got = iris(&["recv", "--profile", &b, "--count", "3", "--timeout", "10"]);
    let text: Vec<_> = got.iter().filter_map(|l| l["text"].as_str()).collect();
    assert_eq!(text, ["lunch?", "lunch at 1?"], "the message, then the edit's text: {got:?}");
    let actions: Vec<_> = got.iter().filter_map(|l| l["action"].as_str()).collect();
    assert_eq!(actions, ["EDIT", "DELETE"], "b's own reactions are not in b's inbox from this device: {got:?}");
    let target = sent[0]["server_msg_id"].as_u64().unwrap();
    assert!(got.iter().filter(|l| l["action"].is_string()).all(|l| l["target_server_msg_id"] == target));

    let group = iris(&["group", "create", "--profile", &a, "--name", "fwd", "--members", "+14155550313"]);
    let group_id = group[0]["group_id"].to_string();
    let copies =
        iris(&["forward", "--profile", &a, "--to", "+14155550312", "--groups", &group_id, "look", "at", "this"]);
    assert_eq!(copies.len(), 2);
    assert_eq!((&copies[0]["to_phone"], copies[1]["group_id"].to_string()), (&"+14155550312".into(), group_id));
    assert!(copies.iter().all(|l| l["status"] == "ACCEPTED" && l["forwarded"] == true));
    let got = iris(&["recv", "--profile", &c, "--count", "1", "--timeout", "10"]);
    let fwd = got.iter().find(|l| l["text"] == "look at this").expect("the forward in the group");
    assert_eq!(fwd["forwarded"], true);
    // Six names of three chats: one copy each (a chat listed twice is sent once).
    let six = "+14155550312,+14155550313,+14155550311,+14155550312,+14155550313,+14155550311";
    let copies = iris(&["forward", "--profile", &a, "--to", six, "again"]);
    assert_eq!(copies.len(), 3, "{copies:?}");
    let err = iris_fails(&["forward", "--profile", &a, "--groups", "1,2,3,4,5,6", "spam"]);
    assert_eq!(err["code"], "ERROR_CODE_INVALID_ARGUMENT", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_show_subscribe_and_privacy_are_scriptable() {
    // Proves: `presence show` prints the current state (a device seen online, then offline with a
    // last seen); `presence subscribe` prints the state then a push when the peer connects;
    // `presence privacy nobody` hides both online and last seen from `show`.
    let server = Process::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (login(&url, dir.path(), "a", "+14155550321"), login(&url, dir.path(), "b", "+14155550322"));

    // b's login connected nothing; its privacy command connects and leaves, setting a last seen.
    assert_eq!(iris(&["presence", "privacy", "--profile", &b, "everyone"])[0]["privacy"], "EVERYONE");
    let shown = iris(&["presence", "show", "--profile", &a, "--phones", "+14155550322"]);
    assert_eq!((&shown[0]["phone"], &shown[0]["online"]), (&"+14155550322".into(), &false.into()));
    assert!(shown[0]["last_seen_ms"].as_u64().is_some_and(|t| t > 0), "a last seen: {shown:?}");

    let mut watcher = Command::new(env!("CARGO_BIN_EXE_iris"))
        .args(["presence", "subscribe", "--profile", &a, "--phones", "+14155550322", "--count", "1"])
        .args(["--timeout", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Until the watcher's state line is out, b's connecting could come before its subscription.
    let mut stdout = std::io::BufReader::new(watcher.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["online"], false);
    let mut b_online = Command::new(env!("CARGO_BIN_EXE_iris"))
        .args(["recv", "--profile", &b, "--timeout", "3"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut push = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut push).unwrap();
    let push: Value = serde_json::from_str(&push).unwrap_or_else(|e| panic!("no push ({e}): {push:?}"));
    assert_eq!((&push["phone"], &push["online"]), (&"+14155550322".into(), &true.into()));
    b_online.wait().unwrap();
    assert!(watcher.wait().unwrap().success(), "the watcher stops after --count pushes");

    assert_eq!(iris(&["presence", "privacy", "--profile", &b, "nobody"])[0]["privacy"], "NOBODY");
    let shown = iris(&["presence", "show", "--profile", &a, "--phones", "+14155550322"]);
    assert_eq!((&shown[0]["online"], &shown[0]["last_seen_ms"]), (&false.into(), &0.into()), "nobody: {shown:?}");
    let err = iris_fails(&["presence", "show", "--profile", &a, "--phones", "+14155550399"]);
    assert_eq!(err["code"], "ERROR_CODE_NOT_FOUND", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_contacts_by_phone_takes_one_discovery_request_for_the_lot() {
    // Proves: `contacts add` of three new numbers fits a budget of 2 discovery requests a day
    // (one to find the three, one to add them); a lookup per number would need four. Removing
    // a contact is free (contacts are exempt), and the third request of the day is refused.
    let server = Process::start_with_config("[rate_limits]\ndiscover_requests_per_account_per_day = 2\n").await;
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let a = login(&url, dir.path(), "a", "+14155550311");
    for (name, phone) in [("b", "+14155550312"), ("c", "+14155550313"), ("d", "+14155550314")] {
        login(&url, dir.path(), name, phone);
    }
    let added = iris(&["contacts", "add", "--profile", &a, "--phones", "+14155550312,+14155550313,+14155550314"]);
    assert_eq!(phones(&added), ["+14155550312", "+14155550313", "+14155550314"]);
    let left = iris(&["contacts", "remove", "--profile", &a, "--phones", "+14155550314"]);
    assert_eq!(phones(&left), ["+14155550312", "+14155550313"]);
    let err = iris_fails(&["discover", "--profile", &a, "+14155550314"]);
    assert_eq!(err["code"], "ERROR_CODE_RATE_LIMITED", "{err}");
}
