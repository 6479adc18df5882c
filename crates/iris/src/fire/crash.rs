//! crash-durability: kill -9 the server N times while clients send; after the last restart every
//! ACCEPTED message must reach its recipient (under its server id) and the app must never see a
//! message twice or one `client_msg_id` stored as two messages.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iris_client::pb::SendStatus;
use iris_client::{Client, Recipient};

use super::kit::{self, Received};
use super::{Line, Sizes};
use crate::bench::{harness, storm};

/// Sending accounts, and pipelines per account.
const SENDERS: usize = 4;
const PIPELINES: usize = 4;
/// Longest wait for a cycle's messages, the final delivery, or the senders to finish.
const PATIENCE: Duration = Duration::from_secs(90);

type Accepted = Arc<Mutex<HashMap<String, (u64, u64)>>>;

/// Runs the test.
pub async fn run(sizes: Sizes) -> anyhow::Result<Line> {
    let mut server = kit::server("").await?;
    let creds = harness::login_all(&server.url(), 0, SENDERS + 1).await?;
    let to = creds[0].account_id;
    let received = Arc::new(Received::default());
    let (rc, re) = kit::connect(&server, creds[0].clone()).await?;
    let collector = kit::collect(rc.clone(), re, received.clone());
    let accepted: Accepted = Arc::default();
    let (stop, errors) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let mut clients = vec![rc];
    let mut workers = Vec::new();
    for (s, c) in creds[1..].iter().enumerate() {
        let (client, _events) = kit::connect(&server, c.clone()).await?;
        for p in 0..PIPELINES {
            let prefix = format!("s{s}p{p}-");
            workers.push(tokio::spawn(send_loop(
                client.clone(),
                to,
                prefix,
                accepted.clone(),
                stop.clone(),
                errors.clone(),
            )));
        }
        clients.push(client);
    }

    let mut restarts = Vec::new();
    let mut stalled = None;
    for cycle in 1..=sizes.cycles {
        let want = cycle * sizes.per_cycle;
        if !kit::wait_until(PATIENCE, || accepted.lock().expect("lock").len() >= want).await {
            stalled = Some(cycle);
            break;
        }
        server.kill9();
        let t = Instant::now();
        server.restart().await?;
        restarts.push(t.elapsed());
    }
    let want = (sizes.cycles + 1) * sizes.per_cycle;
    if stalled.is_none() && !kit::wait_until(PATIENCE, || accepted.lock().expect("lock").len() >= want).await {
        stalled = Some(sizes.cycles + 1);
    }
    stop.store(true, Relaxed);
    let _ = kit::within(PATIENCE, harness::join_senders(workers)).await;
    let n_accepted = accepted.lock().expect("lock").len();
    kit::wait_until(PATIENCE, || received.len() >= n_accepted).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // room for a wrong extra delivery
    collector.abort();
    harness::close_all(&clients).await;

    let accepted = accepted.lock().expect("lock").clone();
    let (lost, duplicates, delivered) = storm::check(&accepted, &received.messages.lock().expect("lock"));
    let repeats = received.repeats.load(Relaxed);
    restarts.sort();
    let median_ms = restarts.get(restarts.len() / 2).map_or(0, |d| d.as_millis());
    let ok = stalled.is_none() && lost == 0 && duplicates == 0 && repeats == 0 && restarts.len() == sizes.cycles;
    let mut figure = format!(
        "{} kill -9 cycles: {n_accepted} accepted, {delivered} delivered, {lost} lost, {duplicates} stored twice, \
         {repeats} seen twice; restart median {median_ms} ms; {} sends failed (not accepted, allowed)",
        restarts.len(),
        errors.load(Relaxed)
    );
    if let Some(c) = stalled {
        figure.push_str(&format!("; sending stalled in cycle {c}"));
    }
    Ok(Line::check("crash-durability", ok, figure))
}

/// One pipeline: sends under its own client ids until `stop`; records each ACCEPTED message.
async fn send_loop(
    client: Client,
    to: u64,
    prefix: String,
    accepted: Accepted,
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
) {
    let mut i = 0u64;
    while !stop.load(Relaxed) {
        let id = format!("{prefix}{i}");
        i += 1;
        let sent = kit::within(PATIENCE, client.send_with_id(Recipient::Account(to), id.clone(), id.clone())).await;
        match sent {
            Some(Ok(r)) if r.status == SendStatus::Accepted as i32 => {
                accepted.lock().expect("lock").insert(id, (to, r.server_msg_id));
            }
            _ => {
                errors.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
