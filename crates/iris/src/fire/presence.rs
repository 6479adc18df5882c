//! presence hotspot: many subscribers watch one account that flaps between online and away.
//! The server must coalesce the changes (each subscriber gets about one push per push interval,
//! not one per flap), end with the right state everywhere, and keep its memory bounded.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use iris_client::{Client, Event, Events};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::kit::{self, RssPeak};
use super::{Line, Sizes};
use crate::bench::harness;

/// The server's coalescing interval (the spawn config sets it).
const PUSH_INTERVAL: Duration = Duration::from_millis(500);
/// Time between two flaps.
const FLAP_EVERY: Duration = Duration::from_millis(10);
/// Growth of the server's RSS over its baseline that passes.
const RSS_GROWTH_MAX: u64 = 64 * 1024 * 1024;

/// What one subscriber saw of the hot account.
#[derive(Default)]
struct Seen {
    pushes: AtomicU64,
    online: AtomicBool,
}

/// Runs the test.
pub async fn run(sizes: Sizes) -> anyhow::Result<Line> {
    let server = kit::server(&format!("[presence]\npush_interval_ms = {}\n", PUSH_INTERVAL.as_millis())).await?;
    let creds = harness::login_all(&server.url(), 0, sizes.subscribers + 1).await?;
    let hot_id = creds[0].account_id;
    let (hot, _he) = kit::connect(&server, creds[0].clone()).await?;
    let conns = harness::connect_all(&server.url(), creds[1..].to_vec()).await?;
    let mut watchers = Vec::new();
    let mut clients = vec![hot.clone()];
    for (client, events) in conns {
        client.presence_subscribe(vec![hot_id]).await?;
        let seen = Arc::new(Seen::default());
        watchers.push((seen.clone(), watch(client.clone(), events, hot_id, seen)));
        clients.push(client);
    }
    tokio::time::sleep(PUSH_INTERVAL * 2).await;
    for (seen, _) in &watchers {
        seen.pushes.store(0, Relaxed);
    }

    let baseline = server.rss_bytes().unwrap_or(0);
    let peak = RssPeak::start(server.pid().unwrap_or(0));
    let started = Instant::now();
    for i in 0..sizes.flaps {
        hot.set_presence(i % 2 == 0, None).await?;
        tokio::time::sleep(FLAP_EVERY).await;
    }
    hot.set_presence(false, None).await?;
    let flapping = started.elapsed();
    tokio::time::sleep(PUSH_INTERVAL * 3).await;
    let peak = peak.finish().await;

    let pushes: Vec<u64> = watchers.iter().map(|(s, _)| s.pushes.load(Relaxed)).collect();
    let online = watchers.iter().filter(|(s, _)| s.online.load(Relaxed)).count();
    for (_, task) in &watchers {
        task.abort();
    }
    harness::close_all(&clients).await;
    let max = pushes.iter().copied().max().unwrap_or(0);
    let mean = pushes.iter().sum::<u64>() as f64 / pushes.len().max(1) as f64;
    let bound = (flapping.as_secs_f64() / PUSH_INTERVAL.as_secs_f64()).ceil() as u64 + 3;
    let growth = peak.saturating_sub(baseline);
    let ok = max <= bound && online == watchers.len() && growth <= RSS_GROWTH_MAX;
    let figure = format!(
        "{} flaps in {:.1} s to {} subscribers: pushes per subscriber mean {mean:.1}, max {max} (bound {bound}, \
         uncoalesced would be {}); {online}/{} saw the final state; server RSS +{:.1} MiB",
        sizes.flaps + 1,
        flapping.as_secs_f64(),
        watchers.len(),
        sizes.flaps + 1,
        watchers.len(),
        kit::mib(growth)
    );
    Ok(Line::check("presence-hotspot", ok, figure))
}

/// Counts the hot account's presence pushes and keeps its last state.
fn watch(client: Client, mut events: Events, hot: u64, seen: Arc<Seen>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                Event::Presence(u) if u.account_id == hot => {
                    seen.pushes.fetch_add(1, Relaxed);
                    seen.online.store(u.online, Relaxed);
                }
                Event::Message(i) | Event::Receipt(i) | Event::Group(i) => client.ack(i.seq),
                Event::Fatal(_) => return,
                _ => {}
            }
        }
    })
}
