//! Machinery shared by the scenarios: logins, connections, closed-loop sender workers,
//! receivers that ack and measure, and the live progress bar.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use iris_client::api::Credentials;
use iris_client::pb::{inbox_item, InboxItem, SendStatus};
use iris_client::{Client, ClientConfig, Event, Events, HttpApi, Recipient};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::stats::{Charts, Latencies, Report};
use super::timeline::{Kind, Timeline};

/// Size of every benchmark payload: 8 bytes of send time, then padding.
const PAYLOAD_BYTES: usize = 100;
/// Logins or connects running at once.
const SETUP_CONCURRENCY: usize = 32;
/// Longest a single send may take before it counts as an error.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an idle receiver waits before checking whether the run is over.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// The process-wide time origin for payload timestamps (sender and receiver share a clock).
fn epoch() -> std::time::Instant {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

/// Nanoseconds since [`epoch`].
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// A payload carrying the current time.
fn payload() -> Bytes {
    payload_at(now_ns())
}

/// A payload carrying `ns` as its send time: open-loop sends carry their scheduled time, so a
/// late send counts its lateness as latency (no coordinated omission).
pub fn payload_at(ns: u64) -> Bytes {
    let mut p = vec![0x2a_u8; PAYLOAD_BYTES];
    p[..8].copy_from_slice(&ns.to_le_bytes());
    Bytes::from(p)
}

/// The send time written by [`payload`].
pub fn sent_ns(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

/// Counts of events handled together (the raw load driver publishes one per loop iteration,
/// instead of touching shared counters per event).
#[derive(Debug, Default)]
pub struct Tally {
    /// Sends written.
    pub sent: u64,
    /// Sends answered ACCEPTED.
    pub accepted: u64,
    /// Sends answered with an error.
    pub send_errors: u64,
    /// First deliveries of messages.
    pub delivered: u64,
    /// Repeated deliveries.
    pub duplicates: u64,
    /// Latency of each first delivery, in ns.
    pub latencies_ns: Vec<u64>,
}

/// Counts shared by every task of a run.
#[derive(Default)]
pub struct Counters {
    sent: AtomicU64,
    accepted: AtomicU64,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    send_errors: AtomicU64,
    last_delivery_ns: AtomicU64,
    sending_done: AtomicBool,
    /// Set when the drain is over: receivers stop whether or not everything arrived.
    receiving_done: AtomicBool,
    /// Deliveries each accepted send produces beyond the first (group fan-out: members − 2).
    extra_deliveries_per_send: AtomicU64,
    /// Counts per 100 ms, for rate charts and the open-loop controller.
    pub timeline: Timeline,
    /// When set, deliveries also record their latency here (one step or phase of a run).
    window: Mutex<Option<Latencies>>,
    /// When set (fanout), per message: deliveries so far and the slowest one's latency in ns.
    per_message: OnceLock<Mutex<HashMap<u64, (u32, u64)>>>,
}

impl Counters {
    /// Counts a send about to start.
    pub fn on_sent(&self) {
        self.sent.fetch_add(1, Relaxed);
        self.timeline.add(Kind::Sent, now_ns());
    }

    /// Counts a send answered ACCEPTED.
    pub fn on_accepted(&self) {
        self.accepted.fetch_add(1, Relaxed);
        self.timeline.add(Kind::Accepted, now_ns());
    }

    /// Counts a send that failed or timed out.
    pub fn on_send_error(&self) {
        self.send_errors.fetch_add(1, Relaxed);
    }

    /// Adds a batch of events that happened at about `now` and empties it.
    pub fn add_tally(&self, t: &mut Tally, now: u64) {
        let add = |a: &AtomicU64, n: u64| {
            if n > 0 {
                a.fetch_add(n, Relaxed);
            }
        };
        add(&self.sent, t.sent);
        add(&self.accepted, t.accepted);
        add(&self.send_errors, t.send_errors);
        add(&self.delivered, t.delivered);
        add(&self.duplicates, t.duplicates);
        let n32 = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        self.timeline.add_n(Kind::Sent, now, n32(t.sent));
        self.timeline.add_n(Kind::Accepted, now, n32(t.accepted));
        self.timeline.add_n(Kind::Delivered, now, n32(t.delivered));
        if t.delivered > 0 {
            self.last_delivery_ns.fetch_max(now, Relaxed);
        }
        if !t.latencies_ns.is_empty() {
            if let Some(window) = self.window.lock().expect("window lock").as_mut() {
                for ns in &t.latencies_ns {
                    window.record_ns(*ns);
                }
            }
        }
        let latencies = std::mem::take(&mut t.latencies_ns);
        *t = Tally { latencies_ns: latencies, ..Tally::default() };
        t.latencies_ns.clear();
    }

    /// (sent, accepted, delivered, send errors) so far.
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        let load = |a: &AtomicU64| a.load(Relaxed);
        (load(&self.sent), load(&self.accepted), load(&self.delivered), load(&self.send_errors))
    }

    /// Tracks, per message, when its last recipient got it (for "every member has it" times).
    pub fn track_per_message(&self) {
        let _ = self.per_message.set(Mutex::default());
    }

    /// Per message that reached `recipients` devices: the latency of its last delivery, and how
    /// many messages did (needs [`track_per_message`](Self::track_per_message)).
    pub fn completion(&self, recipients: u32) -> (Latencies, u64) {
        let mut all = Latencies::new();
        let Some(map) = self.per_message.get() else { return (all, 0) };
        let map = map.lock().expect("per-message lock");
        for (_, slowest_ns) in map.values().filter(|(count, _)| *count >= recipients) {
            all.record_ns(*slowest_ns);
        }
        let complete = all.len();
        (all, complete)
    }

    /// Starts a fresh latency window and returns the previous one (if any).
    pub fn swap_window(&self, fresh: Option<Latencies>) -> Option<Latencies> {
        std::mem::replace(&mut *self.window.lock().expect("window lock"), fresh)
    }

    /// Marks the end of sending: receivers stop once everything accepted has arrived.
    pub fn finish_sending(&self) {
        self.sending_done.store(true, Relaxed);
    }

    /// Ends the drain: receivers stop at their next poll, whatever is still missing.
    pub fn finish_receiving(&self) {
        self.sending_done.store(true, Relaxed);
        self.receiving_done.store(true, Relaxed);
    }

    /// Whether receivers may stop: sending is over and every accepted message was delivered,
    /// or the drain is over.
    fn settled(&self) -> bool {
        self.receiving_done.load(Relaxed)
            || (self.sending_done.load(Relaxed) && self.delivered.load(Relaxed) >= self.expected_deliveries())
    }

    /// Each accepted send is delivered `1 + extra` times (groups: once per other member).
    pub fn set_deliveries_per_send(&self, n: u64) {
        self.extra_deliveries_per_send.store(n.saturating_sub(1), Relaxed);
    }

    /// Deliveries owed to the messages accepted so far.
    pub fn expected_deliveries(&self) -> u64 {
        self.accepted.load(Relaxed) * self.deliveries_per_send()
    }

    /// Deliveries each accepted send produces.
    pub fn deliveries_per_send(&self) -> u64 {
        1 + self.extra_deliveries_per_send.load(Relaxed)
    }

    /// When the latest delivery arrived, in [`now_ns`] time.
    pub fn last_delivery_ns(&self) -> u64 {
        self.last_delivery_ns.load(Relaxed)
    }

    /// The report for a run that lasted `duration`.
    pub fn report(&self, scenario: &'static str, duration: Duration, latencies: &Latencies) -> Report {
        let accepted = self.accepted.load(Relaxed);
        let delivered = self.delivered.load(Relaxed);
        let duration_s = duration.as_secs_f64().max(1e-9);
        Report {
            scenario,
            sent: self.sent.load(Relaxed),
            accepted,
            delivered,
            lost: self.expected_deliveries().saturating_sub(delivered),
            duplicates: self.duplicates.load(Relaxed),
            send_errors: self.send_errors.load(Relaxed),
            duration_s,
            msgs_per_s: delivered as f64 / duration_s,
            latency_ms: latencies.summary(),
            server_rss_bytes: None,
            server_cpu_s: None,
            generator_cpu_s: None,
            generator_limited: None,
            extra: Default::default(),
            charts: Charts { histogram: latencies.buckets(), rates: self.timeline.series() },
        }
    }
}

/// A phone number unique to this process run and `index`.
fn phone(index: usize) -> String {
    static RUN: OnceLock<u32> = OnceLock::new();
    let run = RUN.get_or_init(|| rand::random_range(0..10_000));
    format!("+19{run:04}{index:05}")
}

/// The server URLs in a `--server` value: one, or several nodes of a cluster, comma-separated.
pub fn server_urls(url: &str) -> Vec<&str> {
    url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
}

/// Registers `count` new accounts (phones `first..first+count`) on a `--dev` server (the first
/// node of a cluster: accounts are the cluster's).
pub async fn login_all(url: &str, first: usize, count: usize) -> anyhow::Result<Vec<Credentials>> {
    let http = HttpApi::new(server_urls(url).first().copied().unwrap_or(url))?;
    let limit = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut set = JoinSet::new();
    for i in first..first + count {
        let (http, limit) = (http.clone(), limit.clone());
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let creds = http.login_dev(&phone(i), "bench").await;
            (i, creds)
        });
    }
    let mut out = Vec::with_capacity(count);
    while let Some(joined) = set.join_next().await {
        let (i, creds) = joined?;
        out.push((i, creds.with_context(|| format!("login of {}", phone(i)))?));
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

/// Connects one client per credentials, in order, straight to the server's TCP address; with
/// several nodes (`--server URL,URL,…`) client `i` goes to node `i mod n`.
pub async fn connect_all(url: &str, creds: Vec<Credentials>) -> anyhow::Result<Vec<(Client, Events)>> {
    let mut nodes = Vec::new();
    for node in server_urls(url) {
        let tcp = HttpApi::new(node)?.server_info().await.with_context(|| format!("GET {node}/v1/info"))?.tcp_addr;
        nodes.push((node.to_owned(), tcp));
    }
    anyhow::ensure!(!nodes.is_empty(), "no server URL");
    let limit = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut set = JoinSet::new();
    for (i, c) in creds.into_iter().enumerate() {
        let (node, tcp) = &nodes[i % nodes.len()];
        let mut config = ClientConfig::new(node.as_str(), c);
        config.tcp_addr = Some(tcp.clone());
        let limit = limit.clone();
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (i, Client::connect(config).await)
        });
    }
    let mut out = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (i, conn) = joined?;
        out.push((i, conn.context("connect")?));
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

/// Starts a receiver that acks every item, counts deliveries and duplicates, and records the
/// latency from `max(send time, origin_ns)` to arrival. Ends once the run is settled, the
/// stream ends, or at `deadline`.
pub fn spawn_receiver(
    client: Client,
    mut events: Events,
    counters: Arc<Counters>,
    origin_ns: u64,
    deadline: Instant,
) -> JoinHandle<Latencies> {
    tokio::spawn(async move {
        let mut seen = HashSet::new();
        let mut latencies = Latencies::new();
        while !counters.settled() && Instant::now() < deadline {
            while let Some(event) = events.try_next() {
                if !handle(&client, event, &counters, &mut seen, &mut latencies, origin_ns) {
                    return latencies;
                }
            }
            match tokio::time::timeout(IDLE_POLL, events.next()).await {
                Err(_) => {}
                Ok(None) => break,
                Ok(Some(event)) => {
                    if !handle(&client, event, &counters, &mut seen, &mut latencies, origin_ns) {
                        break;
                    }
                }
            }
        }
        latencies
    })
}

/// Processes one event; false when the client is gone for good.
fn handle(
    client: &Client,
    event: Event,
    counters: &Counters,
    seen: &mut HashSet<u64>,
    latencies: &mut Latencies,
    origin_ns: u64,
) -> bool {
    match event {
        Event::Message(item) => {
            client.ack(item.seq);
            record_delivery(&item, counters, seen, latencies, origin_ns);
        }
        Event::Receipt(item)
        | Event::Group(item)
        | Event::Keys(item)
        | Event::Timer(item)
        | Event::Account(item)
        | Event::MissedCall(item) => client.ack(item.seq),
        Event::Fatal(e) => {
            eprintln!("receiver stopped: {e:?}");
            return false;
        }
        Event::Connected(_) | Event::Disconnected(_) | Event::Presence(_) | Event::Typing(_) | Event::Call(_) => {}
    }
    true
}

/// Counts a delivered message (or a duplicate) and records its latency.
fn record_delivery(
    item: &InboxItem,
    counters: &Counters,
    seen: &mut HashSet<u64>,
    latencies: &mut Latencies,
    origin_ns: u64,
) {
    if !seen.insert(item.server_msg_id) {
        counters.duplicates.fetch_add(1, Relaxed);
        return;
    }
    let now = now_ns();
    counters.delivered.fetch_add(1, Relaxed);
    counters.timeline.add(Kind::Delivered, now);
    counters.last_delivery_ns.fetch_max(now, Relaxed);
    let payload = match &item.body {
        Some(inbox_item::Body::Message(m)) => &m.payload,
        Some(inbox_item::Body::GroupMessage(m)) => &m.payload,
        _ => return,
    };
    if let Some(sent) = sent_ns(payload) {
        let ns = now.saturating_sub(sent.max(origin_ns));
        latencies.record_ns(ns);
        if let Some(window) = counters.window.lock().expect("window lock").as_mut() {
            window.record_ns(ns);
        }
        if let Some(map) = counters.per_message.get() {
            let mut map = map.lock().expect("per-message lock");
            let entry = map.entry(item.server_msg_id).or_default();
            *entry = (entry.0 + 1, entry.1.max(ns));
        }
    }
}

/// Chooses the next recipient account of a sender, or `None` to stop.
pub type Pick = Arc<dyn Fn() -> Option<u64> + Send + Sync>;

/// Starts `inflight` closed-loop workers on `client`, each sending to `pick()` until `pick`
/// says stop or `end` passes.
pub fn spawn_senders(
    client: &Client,
    inflight: usize,
    end: Instant,
    pick: Pick,
    counters: &Arc<Counters>,
) -> Vec<JoinHandle<()>> {
    (0..inflight).map(|_| tokio::spawn(send_loop(client.clone(), end, pick.clone(), counters.clone()))).collect()
}

/// Starts `inflight` closed-loop workers on `client`, each sending to group `group_id` until
/// `end` passes.
pub fn spawn_group_senders(
    client: &Client,
    inflight: usize,
    end: Instant,
    group_id: u64,
    counters: &Arc<Counters>,
) -> Vec<JoinHandle<()>> {
    (0..inflight)
        .map(|_| {
            let (client, counters) = (client.clone(), counters.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    counters.on_sent();
                    match tokio::time::timeout(SEND_TIMEOUT, client.group_send(group_id, payload())).await {
                        Ok(Ok(r)) if r.status == SendStatus::Accepted as i32 => counters.on_accepted(),
                        _ => {
                            counters.on_send_error();
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            })
        })
        .collect()
}

/// One closed-loop worker: one send in flight at a time.
async fn send_loop(client: Client, end: Instant, pick: Pick, counters: Arc<Counters>) {
    while Instant::now() < end {
        let Some(to) = pick() else { break };
        if !send_one(&client, to, payload(), &counters).await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One 1:1 send with the run's timeout, counted; true when ACCEPTED.
pub async fn send_one(client: &Client, to: u64, payload: Bytes, counters: &Counters) -> bool {
    try_send(client, to, payload, counters, SEND_TIMEOUT).await.is_ok()
}

/// One 1:1 send that may take up to `timeout`, counted; on failure, says why (for a test's
/// report).
pub async fn try_send(
    client: &Client,
    to: u64,
    payload: Bytes,
    counters: &Counters,
    timeout: Duration,
) -> Result<(), String> {
    counters.on_sent();
    let sent = tokio::time::timeout(timeout, client.send(Recipient::Account(to), payload)).await;
    let outcome = match sent {
        Ok(Ok(r)) if r.status == SendStatus::Accepted as i32 => Ok(()),
        Ok(Ok(r)) => Err(format!("status {}", r.status)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {:.1} s", timeout.as_secs_f64())),
    };
    match outcome {
        Ok(()) => counters.on_accepted(),
        Err(_) => counters.on_send_error(),
    }
    outcome
}

/// A recipient picker: a uniformly random account of `ids` other than `me`.
pub fn random_other(ids: Arc<Vec<u64>>, me: usize) -> Pick {
    Arc::new(move || {
        let n = ids.len();
        if n < 2 {
            return None;
        }
        let j = rand::random_range(0..n - 1);
        Some(ids[if j >= me { j + 1 } else { j }])
    })
}

/// Waits for every task and merges the receivers' latencies.
pub async fn join_receivers(handles: Vec<JoinHandle<Latencies>>) -> Latencies {
    let mut all = Latencies::new();
    for h in handles {
        if let Ok(l) = h.await {
            all.merge(&l);
        }
    }
    all
}

/// Waits for sender workers.
pub async fn join_senders(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

/// Closes every client.
pub async fn close_all(clients: &[Client]) {
    for c in clients {
        c.close().await;
    }
}

/// A live progress line on stderr with the current delivery rate (hidden when not a terminal).
pub struct Progress {
    bar: ProgressBar,
    ticker: JoinHandle<()>,
}

impl Progress {
    /// Starts updating the line four times a second.
    pub fn start(scenario: &'static str, counters: Arc<Counters>) -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {prefix} {msg}").expect("valid template"));
        bar.set_prefix(scenario);
        let ticker = tokio::spawn(tick(bar.clone(), counters));
        Self { bar, ticker }
    }

    /// Removes the line.
    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

/// Updates the progress line until aborted.
async fn tick(bar: ProgressBar, counters: Arc<Counters>) {
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let delivered = counters.delivered.load(Relaxed);
        let now = Instant::now();
        let rate = (delivered - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
        last = (now, delivered);
        bar.set_message(format!(
            "{rate:>9.0} msgs/s  sent {}  accepted {}  delivered {delivered}",
            counters.sent.load(Relaxed),
            counters.accepted.load(Relaxed)
        ));
        bar.tick();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_their_send_time() {
        let before = now_ns();
        let p = payload();
        assert_eq!(p.len(), PAYLOAD_BYTES);
        let t = sent_ns(&p).unwrap();
        assert!(t >= before && t <= now_ns());
    }

    #[test]
    fn random_other_never_picks_the_sender() {
        let ids = Arc::new(vec![10, 11, 12]);
        let pick = random_other(ids, 1);
        for _ in 0..200 {
            assert_ne!(pick(), Some(11));
        }
    }
}
