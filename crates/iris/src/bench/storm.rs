//! `iris bench storm`: N connected devices all drop their connections and reconnect at once,
//! while one SDK client keeps sending to them: the time until every device is back, the
//! refusals and failures on the way, and whether every ACCEPTED message arrived exactly once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use iris_client::{new_client_msg_id, Client, HttpApi, Recipient};
use tokio::time::Instant;

use super::harness::{self, now_ns, Counters};
use super::raw::Devices;
use super::server::Target;
use super::stats::Report;
use super::CommonArgs;

/// Handshakes in flight while the devices first connect (the storm itself is unbounded).
const CONNECT_CONCURRENCY: usize = 256;
/// Sending before the storm and after every device is back.
const AROUND: Duration = Duration::from_secs(1);
/// Longest the reconnection may take before the run gives up waiting.
const RECONNECT_LIMIT: Duration = Duration::from_secs(120);
/// Sends in flight from the storm's sender.
const SENDER_INFLIGHT: usize = 8;

/// Flags of `iris bench storm`.
#[derive(clap::Args, Debug)]
pub struct StormArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Connected devices that drop and reconnect (default: the open-files limit minus a reserve).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connections: Option<u32>,
}

/// The outcome of one storm (also used by `iris fire`).
pub struct StormResult {
    /// The report (duration = reconnect time).
    pub report: Report,
    /// Devices back after the storm.
    pub back: u64,
    /// Devices in the storm.
    pub n: u64,
}

/// Runs `iris bench storm`.
pub async fn run(args: &StormArgs, target: &Target) -> anyhow::Result<Report> {
    target.require_server("storm")?;
    let (n, capped) = super::idle::connection_count(args.connections);
    let mut result = storm(&target.url, n, args.common.drain()).await?;
    result.report.set("fd_limited", capped.is_some());
    if let Some(why) = capped {
        result.report.set("note", why);
    }
    Ok(result.report)
}

/// Connects `n` devices, storms them with a sender running around it, checks every message.
pub async fn storm(url: &str, n: usize, drain: Duration) -> anyhow::Result<StormResult> {
    // Raw devices connect to the first node (a cluster's other nodes get no storm clients).
    let first = harness::server_urls(url).first().copied().unwrap_or(url);
    let tcp: SocketAddr = HttpApi::new(first)?.server_info().await.context("GET /v1/info")?.tcp_addr.parse()?;
    let creds = harness::login_all(url, 0, n + 1).await?;
    let ids: Arc<Vec<u64>> = Arc::new(creds[1..].iter().map(|c| c.account_id).collect());
    let sender_creds = creds[0].clone();
    let devices = Devices::connect(tcp, creds[1..].to_vec(), CONNECT_CONCURRENCY).await;
    let mut sender = harness::connect_all(url, vec![sender_creds]).await?;
    let (client, _events) = sender.pop().context("sender")?;

    let counters = Arc::new(Counters::default());
    let accepted: Arc<Mutex<HashMap<String, (u64, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..SENDER_INFLIGHT)
        .map(|_| tokio::spawn(send_loop(client.clone(), ids.clone(), accepted.clone(), counters.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(AROUND).await;
    let handshakes_before = devices.stats.handshakes.load(Relaxed);
    let storm_at = devices.storm();
    let end = Instant::now() + RECONNECT_LIMIT;
    let stats = devices.stats.clone();
    while Instant::now() < end {
        let back = stats.handshakes.load(Relaxed) - handshakes_before;
        if back + stats.failed.load(Relaxed) >= n as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let back = stats.handshakes.load(Relaxed) - handshakes_before;
    let reconnect = Duration::from_nanos(stats.last_handshake_ns.load(Relaxed).saturating_sub(storm_at));
    tokio::time::sleep(AROUND).await;
    stop.store(true, Relaxed);
    harness::join_senders(workers).await;
    let backlog_at_end =
        (accepted.lock().expect("lock").len() as u64).saturating_sub(stats.received.lock().expect("lock").len() as u64);
    wait_received(&stats, &accepted, drain).await;
    let (mut lost, mut duplicates, mut delivered) = (0, 0, 0);
    let mut stalled = 0;
    for round in 0..2 {
        (lost, duplicates, delivered) = check(&accepted.lock().expect("lock"), &stats.received.lock().expect("lock"));
        if lost == 0 || round == 1 {
            break;
        }
        // Tell a message stuck in an inbox (delivered after one more reconnect) from one gone.
        stalled = lost;
        let before = stats.handshakes.load(Relaxed);
        devices.storm();
        kit_wait(|| stats.handshakes.load(Relaxed) - before + stats.failed.load(Relaxed) >= n as u64).await;
        wait_received(&stats, &accepted, drain).await;
    }
    let stalled = stalled - lost;
    let (retries, failed) = (stats.retries.load(Relaxed), stats.failed.load(Relaxed));
    let refusal = stats.last_refusal.lock().expect("lock").clone();
    let latencies = std::mem::take(&mut *stats.latencies.lock().expect("lock"));
    devices.stop().await;
    client.close().await;

    let mut report = counters.report("storm", reconnect, &latencies);
    report.delivered = delivered;
    report.set_loss(lost, backlog_at_end, lost);
    report.duplicates = duplicates;
    report.msgs_per_s = 0.0;
    report.set("connections", n as u64);
    report.set("reconnected", back);
    report.set("reconnect_s", reconnect.as_secs_f64());
    report.set("reconnects_per_s", back as f64 / reconnect.as_secs_f64().max(1e-9));
    report.set("retries", retries);
    report.set("stalled_until_reconnect", stalled);
    report.set("seq_gaps", stats.seq_gaps.load(Relaxed));
    report.set("failed", failed);
    if !refusal.is_empty() {
        report.set("last_refusal", refusal);
    }
    Ok(StormResult { report, back, n: n as u64 })
}

/// One sender pipeline: sends to random devices under its own ids until `stop`, recording
/// each ACCEPTED message (client id → (recipient, server id)).
async fn send_loop(
    client: Client,
    ids: Arc<Vec<u64>>,
    accepted: Arc<Mutex<HashMap<String, (u64, u64)>>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Relaxed) {
        let to = ids[rand::random_range(0..ids.len())];
        let id = new_client_msg_id();
        counters.on_sent();
        let sent = tokio::time::timeout(
            Duration::from_secs(30),
            client.send_with_id(Recipient::Account(to), id.clone(), harness::payload_at(now_ns())),
        )
        .await;
        match sent {
            Ok(Ok(r)) if r.status == iris_client::pb::SendStatus::Accepted as i32 => {
                counters.on_accepted();
                accepted.lock().expect("lock").insert(id, (to, r.server_msg_id));
            }
            _ => {
                counters.on_send_error();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Polls `cond` until it holds or [`RECONNECT_LIMIT`] passes.
async fn kit_wait(mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + RECONNECT_LIMIT;
    while !cond() && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until every accepted message was received, or `limit`.
async fn wait_received(
    stats: &super::raw::DeviceStats,
    accepted: &Mutex<HashMap<String, (u64, u64)>>,
    limit: Duration,
) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        let want = accepted.lock().expect("lock").len();
        if stats.received.lock().expect("lock").len() >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (lost, duplicates, delivered): an accepted message is lost unless its recipient received
/// it under its server id; a duplicate is one client id received under two server ids.
pub fn check(accepted: &HashMap<String, (u64, u64)>, received: &[(u64, u64, String)]) -> (u64, u64, u64) {
    let mut by_client: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
    for (account, server_id, client_id) in received {
        by_client.entry(client_id).or_default().push((*account, *server_id));
    }
    let duplicates = by_client.values().filter(|v| v.len() > 1).count() as u64;
    let mut lost = 0;
    let mut delivered = 0;
    for (client_id, (to, server_id)) in accepted {
        match by_client.get(client_id.as_str()) {
            Some(v) if v.contains(&(*to, *server_id)) => delivered += 1,
            _ => lost += 1,
        }
    }
    (lost, duplicates, delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_counts_lost_and_duplicated_messages() {
        let mut accepted = HashMap::new();
        accepted.insert("a".to_owned(), (1, 10));
        accepted.insert("b".to_owned(), (2, 11));
        let received = vec![(1, 10, "a".to_owned()), (1, 12, "a".to_owned())];
        assert_eq!(check(&accepted, &received), (1, 1, 1));
    }
}
