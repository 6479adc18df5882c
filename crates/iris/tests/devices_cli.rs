//! `iris devices list | approve | refuse | revoke`, `iris pin set | clear` and `iris profile set |
//! show` through the real binary against `iris serve`: a companion `iris login` that waits for the
//! primary's approval, the JSON lines each command prints, and refusals as one JSON error line on
//! stderr with a failing exit status.

mod common;

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use common::*;
use serde_json::Value;

const ALICE: &str = "+14155550901";
const BOB: &str = "+14155550902";

/// Runs `iris <args>` off the runtime's threads.
async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || Command::new(env!("CARGO_BIN_EXE_iris")).args(&args).output().unwrap())
        .await
        .unwrap()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|&s| s.to_owned()).collect()
}

/// `iris <args>`, expected to succeed: its stdout lines as JSON.
async fn iris(a: &[&str]) -> Vec<Value> {
    lines(&run(args(a)).await)
}

fn lines(out: &Output) -> Vec<Value> {
    assert!(out.status.success(), "iris failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `iris <args>`, expected to fail: its last stderr line, a JSON error.
async fn iris_fails(a: &[&str]) -> Value {
    error_line(&run(args(a)).await)
}

fn error_line(out: &Output) -> Value {
    assert!(!out.status.success(), "should have failed: {}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().last().expect("an error line");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"))
}

/// Starts `iris login` for a companion of an account that has a primary, and returns the child
/// (waiting for approval) and the link code it printed on its first stdout line.
async fn companion_login(url: &str, profile: &Path, phone: &str, name: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iris"))
        .args(["login", "--plaintext", "--server", url, "--phone", phone, "--device-name", name, "--profile"])
        .arg(profile)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first = tokio::task::spawn_blocking(move || {
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        // Keep the rest of stdout for `finish`: hand the reader back through the line.
        (line, reader)
    });
    let (line, reader) = tokio::time::timeout(PATIENCE, first).await.expect("no link code printed").unwrap();
    child.stdout = Some(reader.into_inner());
    let pending: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
    let code = pending["link_code"].as_str().unwrap_or_else(|| panic!("no link_code in {pending}")).to_owned();
    assert!(pending["expires_in_s"].as_u64().is_some_and(|s| s > 0), "{pending}");
    (child, code)
}

/// Waits for a companion `iris login` to exit; its output after the link code line.
async fn finish(child: Child) -> Output {
    let wait = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    tokio::time::timeout(PATIENCE, wait).await.expect("iris login did not exit").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_pin_and_profile_commands_drive_a_real_server() {
    // Proves: a companion `iris login` waits with a link code until `iris devices approve CODE`
    // on the primary, then exits with its new device; `iris devices list` shows both (the primary
    // marked) and a waiting link; `refuse` makes that login fail LINK_REFUSED; `revoke` removes
    // the companion, whose profile then stops working; `pin set` makes a new-primary login
    // without the PIN fail PIN_REQUIRED and `pin clear` lets it through; `profile set` prints
    // the stored profile and `profile show` reads it back, mine and another account's.
    let server = Process::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let profile = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let (phone, laptop, tablet) = (profile("phone"), profile("laptop"), profile("tablet"));
    let primary = iris(&["login", "--plaintext", "--server", &url, "--phone", ALICE, "--profile", &phone]).await;
    let alice_id = primary[0]["account_id"].as_u64().unwrap();
    let primary_device = primary[0]["device_id"].as_u64().unwrap();

    let (child, code) = companion_login(&url, Path::new(&laptop), ALICE, "laptop").await;
    let approved = iris(&["devices", "approve", "--profile", &phone, &code.to_lowercase().replace('-', "")]).await;
    assert_eq!(approved[0]["name"], "laptop", "{approved:?}");
    let laptop_device = approved[0]["approved"].as_u64().unwrap();
    let linked = lines(&finish(child).await);
    let linked = linked.last().unwrap();
    assert_eq!((linked["account_id"].as_u64(), linked["device_id"].as_u64()), (Some(alice_id), Some(laptop_device)));

    let (child, code) = companion_login(&url, Path::new(&tablet), ALICE, "tablet").await;
    let listed = iris(&["devices", "list", "--profile", &phone]).await;
    let devices: Vec<(u64, &str, bool, bool)> = listed
        .iter()
        .filter(|l| l.get("device_id").is_some())
        .map(|l| {
            let id = l["device_id"].as_u64().unwrap();
            (id, l["name"].as_str().unwrap(), l["primary"].as_bool().unwrap(), l["this_device"].as_bool().unwrap())
        })
        .collect();
    assert_eq!(devices, [(primary_device, "iris-cli", true, true), (laptop_device, "laptop", false, false)]);
    let waiting: Vec<&str> = listed.iter().filter_map(|l| l["pending_link"].as_str()).collect();
    assert_eq!(waiting, [code.as_str()], "{listed:?}");
    let from_laptop = iris(&["devices", "list", "--profile", &laptop]).await;
    assert!(from_laptop.iter().all(|l| l.get("pending_link").is_none()), "only the primary sees links");
    assert_eq!(iris(&["devices", "refuse", "--profile", &phone, &code]).await[0]["refused"], code.as_str());
    let refused = error_line(&finish(child).await);
    assert_eq!(refused["code"], "ERROR_CODE_LINK_REFUSED", "{refused}");

    let laptop_id = laptop_device.to_string();
    assert_eq!(iris(&["devices", "revoke", "--profile", &phone, &laptop_id]).await[0]["revoked"], laptop_device);
    let after = iris(&["devices", "list", "--profile", &phone]).await;
    let ids: Vec<u64> = after.iter().filter_map(|l| l["device_id"].as_u64()).collect();
    assert_eq!(ids, [primary_device]);
    let gone = iris_fails(&["devices", "list", "--profile", &laptop]).await;
    assert!(gone["message"].as_str().is_some_and(|m| !m.is_empty()), "{gone}");

    let set =
        iris(&["profile", "set", "--profile", &phone, "--name", "Alice", "--about", "hi", "--privacy", "contacts"])
            .await;
    assert_eq!(
        (set[0]["display_name"].as_str(), set[0]["about"].as_str(), set[0]["privacy"].as_str()),
        (Some("Alice"), Some("hi"), Some("contacts"))
    );
    let shown = iris(&["profile", "show", "--profile", &phone]).await;
    assert_eq!((shown[0]["account_id"].as_u64(), shown[0]["phone"].as_str()), (Some(alice_id), Some(ALICE)));
    assert_eq!((shown[0]["display_name"].as_str(), shown[0]["visible"].as_bool()), (Some("Alice"), Some(true)));
    let bob = profile("bob");
    iris(&["login", "--plaintext", "--server", &url, "--phone", BOB, "--profile", &bob]).await;
    let by_bob = iris(&["profile", "show", "--profile", &bob, "--phone", ALICE]).await;
    assert_eq!((by_bob[0]["visible"].as_bool(), by_bob[0]["display_name"].as_str()), (Some(false), Some("")));

    assert_eq!(iris(&["pin", "set", "--profile", &phone, "2468"]).await[0]["pin"], "set");
    let new_phone = profile("new-phone");
    let new_primary = ["login", "--plaintext", "--server", &url, "--phone", ALICE, "--new-primary", "--profile"];
    let without = iris_fails(&[&new_primary[..], &[new_phone.as_str()]].concat()).await;
    assert_eq!(without["code"], "ERROR_CODE_PIN_REQUIRED", "{without}");
    assert_eq!(iris(&["pin", "clear", "--profile", &phone]).await[0]["pin"], "cleared");
    let replaced = iris(&[&new_primary[..], &[new_phone.as_str()]].concat()).await;
    assert_eq!(replaced[0]["account_id"].as_u64(), Some(alice_id));
}
