//! Durability of the real binary: kill -9 while clients send, SIGTERM while idle.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use iris_client::pb::inbox_item;
use iris_client::Event;

const ALICE: &str = "+14155550101";
const BOB: &str = "+14155550102";
const SENDERS: usize = 8;
const KILLS: usize = 3;
const PER_CYCLE: usize = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_message_survives_kill_9_exactly_once() {
    // Proves: with SIGKILL three times while 8 pipelines send, every ACCEPTED message is delivered
    // after restart, the app sees each exactly once, and no retry became a second message.
    let mut server = Process::start().await;
    let url = server.url();
    let (alice, bob) = (login(&url, ALICE, "a").await, login(&url, BOB, "b").await);
    let (a, _ae) = connect(&url, &alice).await;
    let (b, mut be) = connect(&url, &bob).await;

    let accepted: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (a, accepted, stop) = (a.clone(), accepted.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("s{s}-{i}");
                    let result =
                        a.send_with_id(BOB, id.clone(), id.clone()).await.expect("send must eventually succeed");
                    accepted.lock().unwrap().insert(id, result.server_msg_id);
                    i += 1;
                }
            })
        })
        .collect();

    let delivered: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let receiver = {
        let (b, delivered) = (b.clone(), delivered.clone());
        tokio::spawn(async move {
            while let Some(event) = be.next().await {
                if let Event::Message(item) = event {
                    b.ack(item.seq);
                    let Some(inbox_item::Body::Message(m)) = item.body else { continue };
                    delivered.lock().unwrap().push((item.server_msg_id, m.client_msg_id));
                }
            }
        })
    };

    for cycle in 1..=KILLS {
        wait_until("sends accepted in this cycle", PATIENCE * 3, || async {
            accepted.lock().unwrap().len() >= cycle * PER_CYCLE
        })
        .await;
        server.kill9();
        server.restart().await;
    }
    wait_until("sends accepted after the last restart", PATIENCE * 3, || async {
        accepted.lock().unwrap().len() >= (KILLS + 1) * PER_CYCLE
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        tokio::time::timeout(PATIENCE, s).await.expect("senders finish").unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    wait_until("every accepted message delivered", PATIENCE * 3, || async {
        delivered.lock().unwrap().len() >= accepted.len()
    })
    .await;
    // A wrong extra delivery (a retry stored twice) sits in Bob's inbox before a message sent
    // now: wait for that one instead of leaving a quiet period.
    let fence = a.send_with_id(BOB, "fence".to_owned(), "fence").await.expect("the fence is accepted");
    wait_until("the fence is delivered", PATIENCE, || async {
        delivered.lock().unwrap().iter().any(|(id, _)| *id == fence.server_msg_id)
    })
    .await;
    receiver.abort();

    let mut delivered = delivered.lock().unwrap().clone();
    delivered.retain(|(id, _)| *id != fence.server_msg_id);
    let mut by_server_id: HashMap<u64, usize> = HashMap::new();
    let mut by_client_id: HashMap<String, u64> = HashMap::new();
    for (server_id, client_id) in &delivered {
        *by_server_id.entry(*server_id).or_default() += 1;
        if let Some(other) = by_client_id.insert(client_id.clone(), *server_id) {
            panic!("client_msg_id {client_id} stored twice: server ids {other} and {server_id}");
        }
    }
    assert!(by_server_id.values().all(|&n| n == 1), "the app saw a message twice");
    for (client_id, server_id) in &accepted {
        assert_eq!(by_client_id.get(client_id), Some(server_id), "ACCEPTED message {client_id} was lost");
    }
    assert_eq!(delivered.len(), accepted.len());
    eprintln!("{KILLS} kill -9 cycles: {} accepted, {} delivered once each", accepted.len(), delivered.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_cleanly_and_keeps_messages() {
    // Proves: SIGTERM shuts down with exit status 0 and accepted messages are there after restart.
    let mut server = Process::start().await;
    let url = server.url();
    let (alice, bob) = (login(&url, ALICE, "a").await, login(&url, BOB, "b").await);
    let (a, _ae) = connect(&url, &alice).await;
    for i in 0..10 {
        a.send(BOB, format!("m{i}")).await.unwrap();
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate();
        (server, status)
    });
    let (mut server, status) = status.await.unwrap();
    assert!(status.success(), "exit status {status:?}");
    server.restart().await;
    let (b, mut be) = connect(&url, &bob).await;
    assert_eq!(recv_messages(&b, &mut be, 10).await.len(), 10);
}
