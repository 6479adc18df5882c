//! `iris bench presence`: how long a presence change takes to reach the accounts watching it,
//! on one node or across the nodes of a cluster (seed 001: p99 ≤ 200 ms, max 300 ms).
//!
//! One subject account's device changes presence (away, back) `--changes` times, `--every-ms`
//! apart: longer than the server's push interval, so each change is the first of its tick and
//! is pushed at once (later changes within one tick are coalesced into the tick by design, and
//! would measure the interval, not the path). `--watchers` accounts subscribe to the subject,
//! connected round-robin over the `--server` nodes after it (the subject is on the first node),
//! so with several nodes most watchers are on another node. Latency: from just before
//! `SetPresence` is sent to the watcher's `Presence` event showing the new state, one clock.

use std::time::Duration;

use anyhow::Context as _;
use iris_client::pb::PresencePrivacy;
use iris_client::Event;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::harness;
use super::server::Target;
use super::stats::{Latencies, Report};
use super::CommonArgs;

/// How long one change may take to reach every watcher before the missing ones are counted.
const REACH_TIMEOUT: Duration = Duration::from_secs(5);

/// Flags of `iris bench presence`.
#[derive(clap::Args, Debug)]
pub struct PresenceArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Accounts watching the subject, one connected device each.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub watchers: u32,
    /// Presence changes of the subject (alternately away and back).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub changes: u32,
    /// Time between changes, in ms (keep it above the server's `presence.push_interval_ms`).
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub every_ms: u64,
}

/// What a watcher saw: its index, the subject's new state, when.
type Seen = (usize, bool, Instant);

/// Logs in the subject and the watchers, changes the subject's presence, reports the latencies.
pub async fn run(args: &PresenceArgs, target: &Target) -> anyhow::Result<Report> {
    target.require_server("presence")?;
    let n_watchers = args.watchers as usize;
    let nodes = harness::server_urls(&target.url).len().max(1);
    let creds = harness::login_all(&target.url, 0, n_watchers + 1).await?;
    let subject_id = creds[0].account_id;
    let mut conns = harness::connect_all(&target.url, creds).await?.into_iter();
    let (subject, _subject_events) = conns.next().context("the subject's connection")?;
    subject.set_presence(false, Some(PresencePrivacy::Everyone)).await.context("the subject's privacy")?;

    let (tx, mut seen) = mpsc::unbounded_channel::<Seen>();
    let mut watchers = Vec::with_capacity(n_watchers);
    for (i, (client, mut events)) in conns.enumerate() {
        client.presence_subscribe(vec![subject_id]).await.context("subscribe to the subject")?;
        let tx = tx.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if let Event::Presence(p) = event {
                    if p.account_id == subject_id && tx.send((i, p.online, Instant::now())).is_err() {
                        return;
                    }
                }
            }
        });
        // Watcher `i` is connection `i + 1`: on node (i + 1) % nodes; the subject is on node 0.
        watchers.push((client, task, (i + 1) % nodes != 0));
    }

    let (mut all, mut same_node, mut cross_node) = (Latencies::new(), Latencies::new(), Latencies::new());
    let (mut delivered, mut missed) = (0u64, 0u64);
    let started = Instant::now();
    let mut pace = tokio::time::interval(Duration::from_millis(args.every_ms));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    pace.tick().await;
    for change in 0..args.changes {
        pace.tick().await;
        let away = change % 2 == 0;
        let sent_at = Instant::now();
        subject.set_presence(away, None).await.context("SetPresence")?;
        let mut reached = vec![false; n_watchers];
        let mut got = 0;
        let deadline = sent_at + REACH_TIMEOUT;
        while got < n_watchers {
            let Ok(Some((i, online, at))) = tokio::time::timeout_at(deadline, seen.recv()).await else { break };
            // An update of an earlier change that arrived late is not this change's.
            if online == away || reached[i] {
                continue;
            }
            reached[i] = true;
            got += 1;
            let ns = u64::try_from(at.duration_since(sent_at).as_nanos()).unwrap_or(u64::MAX);
            all.record_ns(ns);
            if watchers[i].2 {
                cross_node.record_ns(ns)
            } else {
                same_node.record_ns(ns)
            }
        }
        delivered += got as u64;
        missed += (n_watchers - got) as u64;
    }
    let took = started.elapsed();
    for (client, task, _) in watchers {
        client.close().await;
        task.abort();
    }
    subject.close().await;

    let mut report = Report::empty("presence", took);
    report.sent = u64::from(args.changes);
    report.accepted = u64::from(args.changes);
    report.delivered = delivered;
    report.msgs_per_s = 0.0;
    report.latency_ms = all.summary();
    report.set("nodes", nodes as u64);
    report.set("watchers", n_watchers as u64);
    report.set("every_ms", args.every_ms);
    report.set("same_node_ms", serde_json::to_value(same_node.summary())?);
    report.set("cross_node_ms", serde_json::to_value(cross_node.summary())?);
    report.set("cross_node_updates", cross_node.len());
    report.set("missed_updates", missed);
    Ok(report)
}
