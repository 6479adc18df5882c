//! `iris call` through the real binary, one process per device: an offer rings on both of the
//! callee's devices, one answers, the other prints "answered elsewhere", ICE goes both ways,
//! the caller hangs up; a call to a device that is never online ends unanswered and `iris recv`
//! prints the missed call.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;

use common::*;
use serde_json::Value;

fn iris(args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_iris")).args(args).output().unwrap();
    assert!(out.status.success(), "iris {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn login(url: &str, dir: &Path, name: &str, phone: &str) -> String {
    let profile = dir.join(name).to_string_lossy().into_owned();
    iris(&["login", "--server", url, "--phone", phone, "--profile", &profile, "--plaintext"]);
    profile
}

/// A second device of `primary`'s account, linked with the primary's approval.
fn link(url: &str, dir: &Path, name: &str, phone: &str, primary: &str) -> String {
    let profile = dir.join(name).to_string_lossy().into_owned();
    let args = ["login", "--server", url, "--phone", phone, "--profile", &profile, "--plaintext", "--approve-with"];
    iris(&[&args[..], &[primary]].concat());
    profile
}

/// A running `iris call …`: its JSON lines as they come, and its stdin.
struct Running {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
}

impl Running {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_iris"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")));
            }
        });
        let stdin = child.stdin.take().unwrap();
        Self { child, stdin, lines }
    }

    /// The next line whose `key` is `value` (an event name, usually); fails after [`PATIENCE`].
    fn expect(&self, key: &str, value: &str) -> Value {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line[key].as_str() == Some(value) || (value.is_empty() && !line[key].is_null()) => {
                    return line
                }
                Ok(_) => {}
                Err(_) => panic!("never printed {key} = {value:?}"),
            }
        }
    }

    fn say(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn finishes(mut self) {
        assert!(self.child.wait().unwrap().success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_call_rings_two_devices_one_answers_ice_hang_up_and_a_missed_call() {
    let server = Process::start_with_config("[calls]\nring_timeout_ms = 1500\n").await;
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let alice = login(&url, dir.path(), "alice", "+14155550901");
    let bob1 = login(&url, dir.path(), "bob1", "+14155550902");
    let bob2 = link(&url, dir.path(), "bob2", "+14155550902", &bob1);
    let carol = login(&url, dir.path(), "carol", "+14155550903");
    let sdp = dir.path().join("offer.sdp");
    std::fs::write(&sdp, "v=0 offer").unwrap();
    let answer_sdp = dir.path().join("answer.sdp");
    std::fs::write(&answer_sdp, "v=0 answer").unwrap();

    let mut answering = Running::start(&[
        "call",
        "answer",
        "--profile",
        &bob1,
        "--sdp-file",
        answer_sdp.to_str().unwrap(),
        "--timeout",
        "20",
    ]);
    let watching = Running::start(&["call", "wait", "--profile", &bob2, "--count", "2", "--timeout", "20"]);
    answering.expect("listening", "");
    watching.expect("listening", "");

    let mut calling = Running::start(&[
        "call",
        "offer",
        "--profile",
        &alice,
        "+14155550902",
        "--video",
        "--sdp-file",
        sdp.to_str().unwrap(),
        "--timeout",
        "20",
    ]);
    let started = calling.expect("event", "STARTED");
    let call_id = started["call_id"].as_str().unwrap().to_owned();
    for device in [&answering, &watching] {
        let incoming = device.expect("event", "INCOMING");
        assert_eq!((incoming["call_id"].as_str(), incoming["payload"].as_str()), (Some(&*call_id), Some("v=0 offer")));
        assert_eq!(incoming["video"], true);
    }
    calling.expect("event", "RINGING");
    assert_eq!(answering.expect("answered", "")["answered"].as_str(), Some(&*call_id));
    assert_eq!(calling.expect("event", "ANSWERED")["payload"], "v=0 answer");
    watching.expect("event", "ANSWERED_ELSEWHERE");
    watching.finishes();

    calling.say("ice candidate:alice");
    assert_eq!(answering.expect("event", "ICE")["payload"], "candidate:alice");
    answering.say("ice candidate:bob");
    assert_eq!(calling.expect("event", "ICE")["payload"], "candidate:bob");
    calling.say("hangup");
    calling.expect("hung_up", "");
    calling.finishes();
    answering.expect("event", "HANGUP");
    assert_eq!(answering.expect("event", "ENDED")["reason"], "HANGUP");
    answering.finishes();

    // Carol is never online: nobody answers, and her inbox holds the missed call.
    let unanswered = Running::start(&["call", "offer", "--profile", &alice, "+14155550903", "--timeout", "20"]);
    let missed_id = unanswered.expect("event", "STARTED")["call_id"].as_str().unwrap().to_owned();
    assert_eq!(unanswered.expect("event", "ENDED")["reason"], "NO_ANSWER");
    unanswered.finishes();
    // (`call wait` counts the missed call; `recv --count` counts only messages and would wait
    // out its timeout.)
    let lines = iris(&["call", "wait", "--profile", &carol, "--count", "1", "--timeout", "20"]);
    let missed = lines.iter().find(|l| !l["missed_call"].is_null());
    assert_eq!(missed.and_then(|l| l["missed_call"].as_str()), Some(&*missed_id), "{lines:?}");
}
