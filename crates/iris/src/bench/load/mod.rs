//! Raw load clients for `throughput`, `latency`, `hotspot` and `fanout`: one framed connection
//! per simulated device (no SDK client: no retry bookkeeping, dedup maps or channels per
//! client), all driven by one event loop on a thread of its own with a current-thread runtime
//! (`driver.rs`), which batches each connection's sends and its ack into one write per turn.
//! Framing is iris-proto's; the payload carries (scheduled time, sender, seq), so latency runs
//! from the scheduled time and every delivery is matched to its send (`ledger.rs`).

mod driver;
mod ledger;
mod schedule;
mod wire;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::BytesMut;
use futures_util::stream::{self, StreamExt as _};
use iris_client::api::Credentials;
use iris_client::HttpApi;
use iris_proto::{frame, pb};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

pub use driver::{Dest, OpenSenders, Outcome, OUTSTANDING_MAX};
pub use wire::To;

use super::generator::{self, LoadThread};
use super::harness::{self, Counters};
use super::raw::{Handshake, RawConn};
use super::server::Target;
use super::sink;
use super::stats::Report;
use driver::{Command, Conn, Driver, Shared};

/// Handshakes in flight while connecting.
const CONNECT_CONCURRENCY: usize = 256;
/// Longest one connect + handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often `settle` looks at the backlog.
const SETTLE_POLL: Duration = Duration::from_millis(20);

/// How the raw clients behave (`iris bench`'s common flags).
#[derive(Clone, Copy, Debug)]
pub struct RawOptions {
    /// Longest an ack of received entries waits to ride with the client's next send.
    pub ack_delay: Duration,
    /// The load thread polls its sockets without sleeping (it takes its core whole), so the
    /// server's loopback writes do not pay for waking it.
    pub spin: bool,
    /// Each group message received is marked read (`GroupRead`) with the ack that covers it,
    /// as by a member with the chat open.
    pub read_groups: bool,
}

/// The connected load clients of a run and the thread that drives them.
pub struct RawFleet {
    /// The run's counts (shared with the driver, which adds to them once per turn).
    pub counters: Arc<Counters>,
    shared: Arc<Shared>,
    /// How many clients it drives.
    clients: usize,
    commands: mpsc::Sender<Command>,
    thread: Option<std::thread::JoinHandle<Option<Outcome>>>,
}

impl RawFleet {
    /// Connects one raw client per credentials to the framed TCP address `tcp` and starts the
    /// driver; each accepted message is expected `deliveries_per_send` times (none against an
    /// ack-only sink, which says so in its `Welcome`); clients ack and wait as `options` say.
    pub async fn connect(
        tcp: Vec<SocketAddr>,
        creds: Vec<Credentials>,
        deliveries_per_send: u16,
        options: RawOptions,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(!tcp.is_empty(), "no server address");
        let ids: Arc<Vec<u64>> = Arc::new(creds.iter().map(|c| c.account_id).collect());
        let shared = Arc::new(Shared::default());
        let counters = shared.counters.clone();
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
        let (commands, command_rx) = mpsc::channel(16);
        let (thread_ids, thread_shared) = (ids.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("bench-load".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                rt.block_on(async move {
                    let tid = generator::current_thread_id().unwrap_or(0);
                    thread_shared.thread_id.store(tid, Relaxed);
                    let (conns, welcome) = match connect_all(&tcp, &creds).await {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("{e:#}")));
                            return None;
                        }
                    };
                    let per_send = if welcome.node_id == sink::ACK_ONLY_NODE_ID { 0 } else { deliveries_per_send };
                    let heartbeat = Duration::from_millis(welcome.heartbeat_interval_ms.max(1000).into());
                    let _ = ready_tx.send(Ok(()));
                    Some(
                        Driver::new(conns, thread_ids, per_send, heartbeat, options, thread_shared)
                            .run(command_rx)
                            .await,
                    )
                })
            })
            .context("starting the load thread")?;
        match ready_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("raw load clients: {e}"),
            Err(_) => bail!("the load thread ended while connecting"),
        };
        Ok(Self { counters, shared, clients: ids.len(), commands, thread: Some(thread) })
    }

    /// The driver thread (for its CPU time), once known.
    pub fn load_thread(&self) -> Option<LoadThread> {
        let tid = Some(self.shared.thread_id.load(Relaxed)).filter(|&t| t != 0)?;
        Some(LoadThread { tid, spin_idle_ns: self.shared.spin_idle_ns.clone() })
    }

    /// Sends at `rate` per second for `duration`, open loop, from random clients to random
    /// others; returns how many sends were scheduled.
    pub async fn run_open(&self, rate: f64, duration: Duration) -> u64 {
        let every = OpenSenders { senders: (0..self.clients).collect(), dest: Dest::RandomOther };
        self.run_open_from(every, rate, duration).await
    }

    /// The same with the senders and destination of `from`.
    pub async fn run_open_from(&self, from: OpenSenders, rate: f64, duration: Duration) -> u64 {
        let (done, scheduled) = oneshot::channel();
        let command = Command::Open { rate, duration_s: duration.as_secs_f64(), from, done };
        if self.commands.send(command).await.is_err() {
            return 0;
        }
        scheduled.await.unwrap_or(0)
    }

    /// Keeps `inflight` sends in flight on each sender (client index) for `duration`, closed
    /// loop; returns when the sending phase is over (answers may still be on their way).
    pub async fn run_closed(&self, senders: Vec<usize>, dest: Dest, inflight: u32, duration: Duration) {
        let start = Instant::now();
        let _ = self.commands.send(Command::Closed { senders, dest, inflight, duration }).await;
        tokio::time::sleep_until(start + duration).await;
    }

    /// Waits until every send was answered and every accepted message delivered, or `limit`;
    /// true when settled.
    pub async fn settle(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        loop {
            if self.outstanding() == 0 && self.owed() == 0 {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }

    /// Sends written and not answered yet (on connections still open).
    pub fn outstanding(&self) -> u64 {
        self.shared.outstanding.load(Relaxed)
    }

    /// Deliveries accepted messages still owe now (the backlog).
    pub fn owed(&self) -> u64 {
        self.shared.owed.load(Relaxed)
    }

    /// Open-loop sends skipped because too many were outstanding.
    pub fn skipped(&self) -> u64 {
        self.shared.skipped.load(Relaxed)
    }

    /// Open-loop sends written more than 10 ms after their scheduled time.
    pub fn late(&self) -> u64 {
        self.shared.late.load(Relaxed)
    }

    /// Stops the driver, closes every connection and returns what it measured.
    pub async fn finish(mut self) -> anyhow::Result<Outcome> {
        let _ = self.commands.send(Command::Stop).await;
        let thread = self.thread.take().context("finished twice")?;
        let joined = tokio::task::spawn_blocking(move || thread.join()).await?;
        joined.map_err(|_| anyhow::anyhow!("the load thread panicked"))?.context("the load thread ended early")
    }
}

impl Outcome {
    /// Writes the raw clients' loss accounting and their own counts (those that only matter
    /// when not zero are left out when zero).
    pub fn write_to(&self, report: &mut Report, backlog_at_end: u64) {
        report.set_loss(self.owed, backlog_at_end, self.undelivered_messages);
        report.set("clients", "raw");
        if self.deliveries_per_send == 0 {
            report.set("deliveries_expected", "none: an ack-only sink answers sends and delivers nothing");
        }
        report.set("unanswered_sends", self.unanswered);
        if self.dropped > 0 {
            report.set("connections_dropped", self.dropped);
        }
        if self.unknown > 0 {
            report.set("unknown_deliveries", self.unknown);
        }
        if !self.last_refusal.is_empty() {
            report.set("last_refusal", self.last_refusal.as_str());
        }
    }
}

/// Connects and authenticates every client, [`CONNECT_CONCURRENCY`] at a time (client `i` to
/// node `i mod n`); returns them in order with the first `Welcome`.
async fn connect_all(tcp: &[SocketAddr], creds: &[Credentials]) -> anyhow::Result<(Vec<Conn>, pb::Welcome)> {
    let mut connected: Vec<(usize, Conn, pb::Welcome)> = stream::iter(creds.iter().enumerate())
        .map(|(i, c)| async move { connect_one(tcp[i % tcp.len()], i, c).await })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    connected.sort_by_key(|(i, _, _)| *i);
    let welcome = connected.first().map(|(_, _, w)| w.clone()).context("no clients")?;
    Ok((connected.into_iter().map(|(_, c, _)| c).collect(), welcome))
}

/// Connects client `i` (spread over loopback source addresses) and authenticates it.
async fn connect_one(tcp: SocketAddr, i: usize, creds: &Credentials) -> anyhow::Result<(usize, Conn, pb::Welcome)> {
    let attempt = async {
        let mut raw = RawConn::open(tcp, i).await.with_context(|| format!("connect to {tcp}"))?;
        let answer = raw.hello(creds, 0).await?;
        anyhow::Ok((raw, answer))
    };
    let (raw, answer) = tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt).await.context("handshake timed out")??;
    match answer {
        Handshake::Welcome(welcome, rest) => {
            let (stream, after) = raw.into_parts();
            // Events that came in the Welcome's frame (early deliveries) go first, re-framed.
            let mut rbuf = BytesMut::new();
            if !rest.is_empty() {
                frame::encode(&pb::ServerFrame { events: rest }, &mut rbuf);
            }
            rbuf.extend_from_slice(&after);
            Ok((i, Conn::new(stream, rbuf), welcome))
        }
        Handshake::Retry(_, code) | Handshake::Refused(code) => bail!("client {i} refused: {code}"),
    }
}

/// Where raw clients connect and as whom: against a sink, made-up accounts 1..=n; against a
/// server, `n` accounts logged in over HTTP (phones `first..first+n`) and the framed TCP address
/// of each of its nodes.
pub async fn accounts(target: &Target, first: usize, n: usize) -> anyhow::Result<(Vec<SocketAddr>, Vec<Credentials>)> {
    if let Some(sink) = target.sink {
        return Ok((vec![sink], sink_credentials(n)));
    }
    let mut tcp = Vec::new();
    for node in harness::server_urls(&target.url) {
        let info = HttpApi::new(node)?.server_info().await.with_context(|| format!("GET {node}/v1/info"))?;
        tcp.push(info.tcp_addr.parse().with_context(|| format!("tcp address of {node}"))?);
    }
    Ok((tcp, harness::login_all(&target.url, first, n).await?))
}

/// Credentials for `n` clients of a bench sink: accounts 1..=n, tokens that name them.
fn sink_credentials(n: usize) -> Vec<Credentials> {
    (1..=n as u64)
        .map(|account_id| Credentials {
            account_id,
            device_id: 1,
            phone: String::new(),
            access_token: format!("{}{account_id}", sink::TOKEN_PREFIX),
            access_expires_at_ms: u64::MAX,
            refresh_token: String::new(),
        })
        .collect()
}
