//! slow consumer: a device that stops reading while a flood is sent to it. The server's RSS must
//! stay within a bound and another pair of users must keep getting their messages promptly.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iris_client::{Client, RetryPolicy};
use tokio::time::Instant;

use super::kit::{self, RssPeak};
use super::{Line, Sizes};
use crate::bench::harness::{self, Counters};
use crate::bench::raw::{Handshake, RawConn};

/// Keep the non-reader connected for the whole flood (the default write timeout would end it,
/// which is bounded too but tests less).
const CONFIG: &str = "[session]\nheartbeat_interval_ms = 600000\nwrite_timeout_ms = 600000\n";
/// Flood pipelines.
const PIPELINES: usize = 16;
/// Growth of the server's RSS over its baseline that passes.
const RSS_GROWTH_MAX: u64 = 128 * 1024 * 1024;
/// Longest the flood may take. One send may take all of it: what is checked is that every send
/// is accepted in the end, not how fast (a loaded machine can stall a send for tens of seconds).
const FLOOD_LIMIT: Duration = Duration::from_secs(300);
/// How the flooder retries sends refused with OVERLOADED (the store's queue stayed full): far
/// longer than an app's default, so a machine stalled by other work does not fail the check.
const FLOOD_RETRY: RetryPolicy =
    RetryPolicy { max_attempts: 100, default_delay: Duration::from_millis(200), max_wait: Duration::from_secs(30) };

/// Runs the test.
pub async fn run(sizes: Sizes) -> anyhow::Result<Line> {
    let server = kit::server(CONFIG).await?;
    let creds = harness::login_all(&server.url(), 0, 4).await?;
    let (flooder, sleeper, talker, listener) = (&creds[0], &creds[1], &creds[2], &creds[3]);
    let mut non_reader = RawConn::open(server.tcp, 0).await?;
    let Handshake::Welcome(..) = non_reader.hello(sleeper, 0).await? else { anyhow::bail!("non-reader refused") };
    let (a, _ae) = kit::connect_with_retry(&server, flooder.clone(), FLOOD_RETRY).await?;
    let (c, _ce) = kit::connect(&server, talker.clone()).await?;
    let (d, de) = kit::connect(&server, listener.clone()).await?;
    let pair = Arc::new(Counters::default());
    let receiver = harness::spawn_receiver(d.clone(), de, pair.clone(), 0, Instant::now() + FLOOD_LIMIT * 2);

    let baseline = server.rss_bytes().unwrap_or(0);
    let peak = RssPeak::start(server.pid().unwrap_or(0));
    let left = Arc::new(AtomicU64::new(sizes.flood as u64));
    let flood_counters = Arc::new(Counters::default());
    let failures = Arc::new(Mutex::new(BTreeSet::new()));
    let end = Instant::now() + FLOOD_LIMIT;
    let workers: Vec<_> = (0..PIPELINES)
        .map(|_| {
            let sink = Flood { to: sleeper.account_id, counters: flood_counters.clone(), failures: failures.clone() };
            tokio::spawn(flood(a.clone(), sink, left.clone(), end))
        })
        .collect();
    let talk = tokio::spawn(talk(c.clone(), listener.account_id, pair.clone(), left.clone(), end));
    harness::join_senders(workers).await;
    let _ = talk.await;
    let peak = peak.finish().await;
    pair.finish_sending();
    let others = harness::join_receivers(vec![receiver]).await;
    drop(non_reader);
    harness::close_all(&[a, c, d]).await;

    let (_, flood_accepted, _, flood_errors) = flood_counters.totals();
    let others_report = pair.report("pair", Duration::from_secs(1), &others);
    let growth = peak.saturating_sub(baseline);
    let p99 = others.summary().p99;
    let ok = flood_accepted == sizes.flood as u64
        && growth <= RSS_GROWTH_MAX
        && others_report.lost == 0
        && others_report.delivered > 0
        && p99 <= sizes.pair_p99_max_ms;
    let failures = failures.lock().expect("failures lock");
    let why = if failures.is_empty() {
        String::new()
    } else {
        format!(": {}", failures.iter().cloned().collect::<Vec<_>>().join("; "))
    };
    let figure = format!(
        "{flood_accepted}/{} msgs accepted for a device that reads nothing ({flood_errors} errors{why}); server RSS \
         peak +{:.0} MiB over {:.0} MiB (bound +{:.0}); other pair: {} delivered, {} lost, p99 {p99:.1} ms \
         (bound {:.0})",
        sizes.flood,
        kit::mib(growth),
        kit::mib(baseline),
        kit::mib(RSS_GROWTH_MAX),
        others_report.delivered,
        others_report.lost,
        sizes.pair_p99_max_ms
    );
    Ok(Line::check("slow-consumer", ok, figure))
}

/// Where a flood pipeline sends and what it records.
struct Flood {
    /// The non-reader's account.
    to: u64,
    /// Sends, acceptances and errors.
    counters: Arc<Counters>,
    /// Each distinct reason a send failed, for the report (a failure must say why).
    failures: Arc<Mutex<BTreeSet<String>>>,
}

/// One flood pipeline: takes sends from `left` until none are left or `end`.
async fn flood(client: Client, sink: Flood, left: Arc<AtomicU64>, end: Instant) {
    while Instant::now() < end && left.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1)).is_ok() {
        let payload = harness::payload_at(harness::now_ns());
        let timeout = end.saturating_duration_since(Instant::now());
        if let Err(why) = harness::try_send(&client, sink.to, payload, &sink.counters, timeout).await {
            sink.failures.lock().expect("failures lock").insert(why);
        }
    }
}

/// The other pair: one message every 10 ms while the flood lasts.
async fn talk(client: Client, to: u64, counters: Arc<Counters>, left: Arc<AtomicU64>, end: Instant) {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while Instant::now() < end && left.load(Relaxed) > 0 {
        tick.tick().await;
        harness::send_one(&client, to, harness::payload_at(harness::now_ns()), &counters).await;
    }
}
