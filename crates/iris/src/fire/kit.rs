//! What the fire tests share: a spawned server, SDK clients that reconnect fast, a collector of
//! received messages, an RSS sampler and bounded waits.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iris_client::api::Credentials;
use iris_client::pb::inbox_item;
use iris_client::{Client, ClientConfig, Event, Events, ReconnectPolicy, RetryPolicy};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::bench::server::{ServerProcess, SpawnOptions};

/// Starts a server with `extra` config, logging to its own file.
pub async fn server(extra: &str) -> anyhow::Result<ServerProcess> {
    ServerProcess::start(SpawnOptions { extra_config: extra.into(), log_to_file: true, ..Default::default() }).await
}

/// Connects an SDK client that reconnects within ~0.5 s (a killed server comes back quickly and
/// 20 kills must not push the backoff to its 10 s default ceiling).
pub async fn connect(server: &ServerProcess, creds: Credentials) -> anyhow::Result<(Client, Events)> {
    connect_with_retry(server, creds, RetryPolicy::default()).await
}

/// [`connect`] with its own policy for retrying refused sends (a flood that must see every send
/// accepted retries OVERLOADED for longer than an app would).
pub async fn connect_with_retry(
    server: &ServerProcess,
    creds: Credentials,
    retry: RetryPolicy,
) -> anyhow::Result<(Client, Events)> {
    let mut config = ClientConfig::new(server.url(), creds);
    config.retry = retry;
    config.tcp_addr = Some(server.tcp.to_string());
    config.reconnect = ReconnectPolicy {
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(500),
        stable_after: Duration::from_millis(500),
        max_attempts: None,
    };
    Ok(Client::connect(config).await?)
}

/// Every message a client's app saw: (own account, server msg id, client msg id).
#[derive(Default)]
pub struct Received {
    /// The messages, in arrival order.
    pub messages: Mutex<Vec<(u64, u64, String)>>,
    /// Messages the app saw twice (same server id), which the SDK must prevent.
    pub repeats: AtomicU64,
}

impl Received {
    /// How many messages arrived.
    pub fn len(&self) -> usize {
        self.messages.lock().expect("lock").len()
    }
}

/// Receives and acks every item of `client` into `into` until aborted or the client ends.
pub fn collect(client: Client, mut events: Events, into: Arc<Received>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let account = client.credentials().account_id;
        let mut seen = HashSet::new();
        while let Some(event) = events.next().await {
            match event {
                Event::Message(item) => {
                    client.ack(item.seq);
                    let Some(inbox_item::Body::Message(m)) = item.body else { continue };
                    if !seen.insert(item.server_msg_id) {
                        into.repeats.fetch_add(1, Relaxed);
                        continue;
                    }
                    into.messages.lock().expect("lock").push((account, item.server_msg_id, m.client_msg_id));
                }
                Event::Receipt(item) | Event::Group(item) => client.ack(item.seq),
                Event::Fatal(_) => return,
                _ => {}
            }
        }
    })
}

/// Samples a process's RSS every 20 ms until stopped; the peak.
pub struct RssPeak {
    stop: Arc<AtomicBool>,
    task: JoinHandle<u64>,
}

impl RssPeak {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut peak = 0;
            while !flag.load(Relaxed) {
                peak = peak.max(crate::bench::server::rss_bytes(pid).unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        });
        Self { stop, task }
    }

    /// Stops and returns the peak in bytes.
    pub async fn finish(self) -> u64 {
        self.stop.store(true, Relaxed);
        self.task.await.unwrap_or(0)
    }
}

/// Polls `cond` every 10 ms until it holds (true) or `limit` passes (false).
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// Runs `f` with a time limit; `None` when it ran out.
pub async fn within<T>(limit: Duration, f: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(limit, f).await.ok()
}

/// Bytes as MiB for figures.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
