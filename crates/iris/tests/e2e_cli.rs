//! The CLI encrypts by default, through the real binaries: `iris send` and `iris group send`
//! store only ciphertext in the server's data directory, `iris recv` decrypts and says so,
//! `--plaintext` still sends readable text, `iris keys` shows both people the same safety
//! number, and `iris recv` shows when it changes.

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
    let profile = dir.join(format!("{name}.json")).to_string_lossy().into_owned();
    iris(&["login", "--server", url, "--phone", phone, "--profile", &profile]);
    profile
}

/// Whether any file under `dir` contains `needle`.
fn stored(dir: &Path, needle: &str) -> bool {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path).unwrap_or_default().windows(needle.len()).any(|w| w == needle.as_bytes()) {
                return true;
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_encrypts_by_default_and_plaintext_stays_available() {
    // Proves: a message sent with `iris send` and one with `iris group send` reach the peer's
    // `iris recv` decrypted (`"encrypted":true`) while the data directory never holds their text;
    // the same with `--plaintext` is stored readable (the search sees stored text); both sides'
    // `iris keys --peer` print the same safety number, and a fingerprint of 30 digits.
    let server = Process::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) =
        (login(&url, dir.path(), "alice", "+14155550501"), login(&url, dir.path(), "bob", "+14155550502"));
    assert!(dir.path().join("alice.keys").exists(), "the key store lies beside the profile");

    let sent = iris(&["send", "--profile", &alice, "--to", "+14155550502", "CLI-SECRET-hello"]);
    assert_eq!((&sent[0]["status"], &sent[0]["encrypted"]), (&"ACCEPTED".into(), &true.into()));
    let group = iris(&["group", "create", "--profile", &alice, "--name", "g", "--members", "+14155550502"]);
    let group_id = group[0]["group_id"].to_string();
    iris(&["group", "send", "--profile", &alice, "--group", &group_id, "CLI-SECRET-group"]);
    iris(&["send", "--profile", &alice, "--to", "+14155550502", "--plaintext", "CLI-PLAIN-canary"]);

    let got = iris(&["recv", "--profile", &bob, "--count", "3", "--timeout", "10"]);
    let texts: Vec<(&str, bool)> = got
        .iter()
        .filter(|l| l["text"].is_string())
        .map(|l| (l["text"].as_str().unwrap(), l["encrypted"].as_bool().unwrap()))
        .collect();
    assert_eq!(texts, [("CLI-SECRET-hello", true), ("CLI-SECRET-group", true), ("CLI-PLAIN-canary", false)], "{got:?}");

    assert!(stored(&server.data_dir, "CLI-PLAIN-canary"), "the search sees stored plaintext");
    for secret in ["CLI-SECRET-hello", "CLI-SECRET-group"] {
        assert!(!stored(&server.data_dir, secret), "{secret} is readable in the data directory");
    }

    let mine = iris(&["keys", "--profile", &alice, "--peer", "+14155550502"]);
    let theirs = iris(&["keys", "--profile", &bob, "--peer", "+14155550501"]);
    assert_eq!(mine[0]["fingerprint"].as_str().unwrap().replace(' ', "").len(), 30);
    assert_eq!(mine[1]["safety_number"], theirs[1]["safety_number"]);

    // Bob links a second device: Alice's `iris recv` shows the security code change, once, and
    // the safety number is no longer the one they compared.
    let laptop = dir.path().join("bob-laptop.json").to_string_lossy().into_owned();
    let phone = "+14155550502";
    iris(&["login", "--server", &url, "--phone", phone, "--profile", &laptop, "--approve-with", &bob]);
    let got = iris(&["recv", "--profile", &alice, "--timeout", "3"]);
    let changes: Vec<&Value> = got.iter().filter(|l| l["identity_change"].is_string()).collect();
    assert_eq!(changes.len(), 1, "{got:?}");
    assert_eq!((&changes[0]["identity_change"], &changes[0]["device_id"]), (&"DEVICE_ADDED".into(), &2.into()));
    let now = iris(&["keys", "--profile", &alice, "--peer", "+14155550502"]);
    assert_ne!(now[1]["safety_number"], mine[1]["safety_number"]);
}
