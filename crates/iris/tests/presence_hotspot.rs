//! A presence hotspot through the real binary: 10,000 connections watch one account whose state
//! flaps many times per push interval. Proves the pushes are coalesced (each watcher gets at most
//! about one per interval, far fewer than the flaps, and ends on the final state) and that the
//! server's memory stays bounded while it fans out.
//!
//! The server runs as its own process: this machine caps open files at 20,000 per process, and
//! the watchers' 10,000 sockets plus the server's 10,000 would not fit in one. Watchers are raw
//! framed connections (a `Hello`, one `PresenceSubscribe`, then reads), not SDK clients.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use common::*;
use iris_client::api::Credentials;
use iris_client::pb::{self, client_op, server_event, ClientOp, PresenceUpdate};
use iris_client::HttpApi;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Watchers of the hot account.
const WATCHERS: usize = 10_000;
/// The server's presence push interval in this test.
const PUSH_INTERVAL: Duration = Duration::from_millis(250);
/// State changes of the hot account, one every [`FLAP_EVERY`].
const FLAPS: usize = 200;
const FLAP_EVERY: Duration = Duration::from_millis(10);
/// Logins, connects and subscribes in flight at once.
const CONCURRENCY: usize = 64;
/// Most the server's resident memory may grow while the flapping is fanned out (queueing every
/// change for every watcher instead of coalescing would take 10k × 200 pushes, far more).
const FANOUT_GROWTH_MAX: u64 = 32 << 20;
/// Most resident memory per watching connection (sessions, buffers, subscriptions).
const BYTES_PER_WATCHER_MAX: u64 = 64 << 10;

/// One watcher: a framed TCP connection read by hand.
struct Watcher {
    stream: TcpStream,
    buf: BytesMut,
    decoder: iris_proto::FrameDecoder,
    /// Events of a frame not yet returned (a frame may carry several).
    pending: std::collections::VecDeque<server_event::Event>,
}

impl Watcher {
    /// Connects as `creds`, subscribes to `hot` and checks the answer shows it online.
    async fn subscribe(tcp: SocketAddr, creds: Credentials, hot: u64) -> Self {
        let stream = TcpStream::connect(tcp).await.unwrap();
        let decoder = iris_proto::FrameDecoder::new(16 << 20);
        let mut w = Self { stream, buf: BytesMut::new(), decoder, pending: Default::default() };
        let hello = pb::Hello {
            versions: vec![iris_proto::version::CURRENT],
            token: creds.access_token,
            device_id: creds.device_id,
            capabilities: vec![],
            resume_after_seq: 0,
            receipts_unwanted: vec![],
        };
        let subscribe = pb::PresenceSubscribe { account_ids: vec![hot] };
        w.send(vec![
            ClientOp { request_id: 1, op: Some(client_op::Op::Hello(hello)) },
            ClientOp { request_id: 2, op: Some(client_op::Op::PresenceSubscribe(subscribe)) },
        ])
        .await;
        let deadline = Instant::now() + PATIENCE;
        loop {
            match w.next(deadline).await.expect("no answer to the subscription") {
                server_event::Event::PresenceState(s) => {
                    assert_eq!(s.accounts.len(), 1);
                    assert!(s.accounts[0].online, "the hot account is online before it flaps");
                    return w;
                }
                server_event::Event::Error(e) => panic!("subscription refused: {e:?}"),
                _ => {}
            }
        }
    }

    async fn send(&mut self, ops: Vec<ClientOp>) {
        let bytes = iris_proto::frame::encode_to_bytes(&pb::ClientFrame { ops });
        self.stream.write_all(&bytes).await.unwrap();
    }

    /// The next event before `deadline`; `None` at the deadline.
    async fn next(&mut self, deadline: Instant) -> Option<server_event::Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if let Some(body) = self.decoder.decode(&mut self.buf).unwrap() {
                let frame: pb::ServerFrame = iris_proto::frame::decode_body(&body).unwrap();
                self.pending.extend(frame.events.into_iter().filter_map(|e| e.event));
                continue;
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => panic!("the server closed a watcher"),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Every presence push until the flapping is over (`flapping_done`) and the final state
    /// arrived (at the first tick after the last flap). (Arrival times would say nothing: 10k
    /// readers on two threads often find several frames waiting; the count per watcher is what
    /// is bounded.)
    async fn pushes_until_final(
        mut self,
        mut flapping_done: watch::Receiver<bool>,
        final_state: PresenceUpdate,
    ) -> Vec<PresenceUpdate> {
        let mut got = Vec::new();
        let forever = Instant::now() + Duration::from_secs(3600);
        loop {
            tokio::select! {
                _ = flapping_done.wait_for(|done| *done) => break,
                event = self.next(forever) => {
                    if let Some(server_event::Event::Presence(p)) = event {
                        got.push(p);
                    }
                }
            }
        }
        let deadline = Instant::now() + PATIENCE;
        while got.last() != Some(&final_state) {
            match self.next(deadline).await {
                Some(server_event::Event::Presence(p)) => got.push(p),
                Some(_) => {}
                None => break,
            }
        }
        got
    }
}

/// Logs in `n` dev accounts, [`CONCURRENCY`] at a time.
async fn login_many(url: &str, n: usize) -> Vec<Credentials> {
    let http = Arc::new(HttpApi::new(url).unwrap());
    let mut all = Vec::with_capacity(n);
    let mut tasks = JoinSet::new();
    for i in 0..n {
        if tasks.len() >= CONCURRENCY {
            all.push(tasks.join_next().await.unwrap().unwrap());
        }
        let http = http.clone();
        tasks.spawn(async move { http.login_dev(&format!("+1415{:07}", 3_000_000 + i), "w").await.unwrap() });
    }
    while let Some(creds) = tasks.join_next().await {
        all.push(creds.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_watchers_of_a_flapping_account_get_coalesced_pushes() {
    // Proves: with 10k watchers and 200 changes in 2 s, each watcher gets at most one push per
    // interval (plus a tick at either end and a late one), the last push is the final state,
    // and the server's memory grows by no more than a bound while it fans out.
    let started = Instant::now();
    let extra = format!(
        "[presence]\npush_interval_ms = {}\n[session]\nheartbeat_interval_ms = 120000\n",
        PUSH_INTERVAL.as_millis()
    );
    let server = Process::start_with_config(&extra).await;
    let url = server.url();
    let rss_idle = server.rss_bytes();
    // The hot account connects first: the push of its coming online is long gone (several
    // intervals of logins later) before anyone watches.
    let hot_creds = HttpApi::new(&url).unwrap().login_dev("+14152999999", "hot").await.unwrap();
    let hot = hot_creds.account_id;
    let mut hot_device = RawDevice::connect(server.tcp, &hot_creds).await;
    let creds = login_many(&url, WATCHERS).await;
    let logged_in = started.elapsed();

    let mut watchers = Vec::with_capacity(WATCHERS);
    let mut tasks = JoinSet::new();
    for c in creds {
        if tasks.len() >= CONCURRENCY {
            watchers.push(tasks.join_next().await.unwrap().unwrap());
        }
        tasks.spawn(Watcher::subscribe(server.tcp, c, hot));
    }
    while let Some(w) = tasks.join_next().await {
        watchers.push(w.unwrap());
    }
    let subscribed = started.elapsed();
    let rss_watched = server.rss_bytes();

    // Flap: away / back, FLAPS times, ending back (online). Every watcher reads meanwhile, and
    // until the final state reached it.
    let final_state = PresenceUpdate { account_id: hot, online: true, last_seen_ms: 0 };
    let (flapping_done, done_rx) = watch::channel(false);
    let readers: Vec<_> =
        watchers.into_iter().map(|w| tokio::spawn(w.pushes_until_final(done_rx.clone(), final_state))).collect();
    let mut rss_peak = 0;
    // The rate of change is this test's input: one flap per FLAP_EVERY.
    let mut pace = tokio::time::interval(FLAP_EVERY);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..FLAPS {
        pace.tick().await;
        let away = i % 2 == 0;
        let op = client_op::Op::SetPresence(pb::SetPresence { away, privacy: 0 });
        hot_device.send_ops(vec![ClientOp { request_id: 100 + i as u64, op: Some(op) }]).await;
        if i % 20 == 0 {
            rss_peak = rss_peak.max(server.rss_bytes());
        }
    }
    let flapped_for = started.elapsed() - subscribed;
    flapping_done.send_replace(true);
    // Memory is sampled while the last pushes fan out, until every reader has the final state.
    let mut sample = tokio::time::interval(PUSH_INTERVAL / 2);
    let all_read = async {
        let mut all = Vec::with_capacity(readers.len());
        for reader in readers {
            all.push(reader.await.unwrap());
        }
        all
    };
    tokio::pin!(all_read);
    let pushes_per_watcher = loop {
        tokio::select! {
            all = &mut all_read => break all,
            _ = sample.tick() => rss_peak = rss_peak.max(server.rss_bytes()),
        }
    };

    let mut n_pushes_max = 0;
    let mut n_pushes_total = 0;
    for pushes in pushes_per_watcher {
        assert!(!pushes.is_empty(), "a watcher got no push at all");
        let last = pushes.last().unwrap();
        assert_eq!(last, &final_state, "final state");
        n_pushes_max = n_pushes_max.max(pushes.len());
        n_pushes_total += pushes.len();
    }
    // The ticks the flapping spans, plus one at either end (the push of the final state comes at
    // the first tick after it) and one for a tick due just before it that ran late.
    let ticks = (flapped_for.as_millis() / PUSH_INTERVAL.as_millis()) as usize + 3;
    println!(
        "logins {logged_in:?}, subscribed {subscribed:?}, flapped {flapped_for:?}: pushes max {n_pushes_max} \
         per watcher (ticks {ticks}, flaps {FLAPS}), total {n_pushes_total}; RSS idle {} MiB, \
         watched {} MiB, peak {} MiB",
        rss_idle >> 20,
        rss_watched >> 20,
        rss_peak >> 20
    );
    assert!(n_pushes_max <= ticks, "a watcher got {n_pushes_max} pushes in {ticks} intervals");
    assert!(n_pushes_max * 10 <= FLAPS, "pushes are not coalesced: {n_pushes_max} for {FLAPS} flaps");
    let per_watcher = rss_watched.saturating_sub(rss_idle) / WATCHERS as u64;
    assert!(per_watcher <= BYTES_PER_WATCHER_MAX, "{per_watcher} bytes of server memory per watcher");
    let growth = rss_peak.saturating_sub(rss_watched);
    assert!(growth <= FANOUT_GROWTH_MAX, "the fan-out grew the server by {} MiB", growth >> 20);
    assert!(started.elapsed() < Duration::from_secs(120), "took {:?}", started.elapsed());
}
