//! `iris chat` through the real binary with a piped keyboard: it shows the peer's presence
//! (online, then last seen) and typing, and tells the peer while the person types, before Enter.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use common::*;
use iris_client::Event;

/// Waits for a line of the chat's output containing `needle`; fails the test after [`PATIENCE`].
fn expect_line(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => panic!("the chat never printed {needle:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_shows_presence_and_typing_and_sends_typing_while_typing() {
    // Proves: the chat shows the peer online, their typing start and stop, and their last seen
    // once they leave; keys typed before Enter reach the peer as `typing`, Enter as the message.
    let server = Process::start_with_config("[presence]\npush_interval_ms = 100\n").await;
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("alice").to_string_lossy().into_owned();
    let login = Command::new(env!("CARGO_BIN_EXE_iris"))
        .args(["login", "--server", &url, "--phone", "+14155550401", "--profile", &profile])
        .output()
        .unwrap();
    assert!(login.status.success(), "{}", String::from_utf8_lossy(&login.stderr));
    let mut bob = Dev::new(&url, "+14155550402").await;
    let alice_id = bob.client.account_info("+14155550401").await.unwrap().account_id;

    let mut chat = Command::new(env!("CARGO_BIN_EXE_iris"))
        // Bob is a plaintext SDK client (no keys): the chat talks to him in the clear.
        .args(["chat", "--profile", &profile, "--to", "+14155550402", "--plaintext"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let stdout = chat.stdout.take().unwrap();
    std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).try_for_each(|l| tx.send(l)));
    let mut keys = chat.stdin.take().unwrap();

    expect_line(&lines, "+14155550402 is online");
    keys.write_all(b"hel").unwrap();
    keys.flush().unwrap();
    let typing = recv_until(&bob.client, &mut bob.events, |e| matches!(e, Event::Typing(_))).await;
    let Event::Typing(t) = typing else { unreachable!() };
    assert!(t.typing && t.from_account_id == alice_id && t.group_id == 0, "{t:?}");

    bob.client.typing(alice_id, true).await.unwrap();
    expect_line(&lines, "+14155550402 is typing");
    bob.client.typing(alice_id, false).await.unwrap();
    expect_line(&lines, "+14155550402 stopped typing");

    keys.write_all(b"lo\n").unwrap();
    keys.flush().unwrap();
    let got = recv_messages(&bob.client, &mut bob.events, 1).await;
    let Some(iris_client::pb::inbox_item::Body::Message(m)) = &got[0].body else { panic!("{got:?}") };
    assert_eq!(&m.payload[..], b"hello");

    bob.client.close().await;
    expect_line(&lines, "+14155550402 was last seen at");
    keys.write_all(b"/quit\n").unwrap();
    drop(keys);
    let status = tokio::task::spawn_blocking(move || chat.wait()).await.unwrap().unwrap();
    assert!(status.success());
}
