//! `iris bench idle`: N idle authenticated connections (raw devices, one account each): the
//! server's resident memory per connection and the rate of authenticated connects (logins).
//! The default N is what this process's open-files limit allows; the report says when that
//! limit of the machine, not Iris, capped it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Context as _;
use iris_client::HttpApi;
use tokio::time::Instant;

use super::harness;
use super::raw::{Devices, RawConn};
use super::server::{self, Target};
use super::stats::{Latencies, Report};
use super::CommonArgs;

/// File descriptors kept free for everything but the idle connections (HTTP, runtime, stdio).
const FD_RESERVE: u64 = 1_000;
/// Handshakes in flight while connecting.
const CONNECT_CONCURRENCY: usize = 256;
/// How long the connections stay idle before the memory is read.
const HOLD: Duration = Duration::from_secs(2);

/// Flags of `iris bench idle`.
#[derive(clap::Args, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Idle connections (default: the open-files limit minus a reserve; capped to it).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connections: Option<u32>,
    /// Hold TCP connections that never send `Hello` instead (admission and framing only, no
    /// session): with a normal run, splits the memory per connection between the two. The
    /// server closes them after its handshake timeout (10 s), far beyond this run's hold.
    #[arg(long)]
    pub bare: bool,
}

/// How many connections to open, and whether the machine's fd limit decided it.
pub fn connection_count(asked: Option<u32>) -> (usize, Option<String>) {
    let limit = server::open_files_limit().unwrap_or(1024);
    let room = limit.saturating_sub(FD_RESERVE).max(1) as usize;
    match asked {
        Some(n) if (n as usize) <= room => (n as usize, None),
        _ => {
            let why = format!(
                "N capped by this machine's open-files limit (ulimit -n = {limit}, per process, for \
                 generator and server alike), not by Iris"
            );
            (room, Some(why))
        }
    }
}

/// Registers the accounts, measures RSS, connects them all, measures again, reports.
pub async fn run(args: &IdleArgs, target: &Target) -> anyhow::Result<Report> {
    target.require_server("idle")?;
    let (n, capped) = connection_count(args.connections);
    let first = harness::server_urls(&target.url).first().copied().unwrap_or(&target.url);
    let tcp = HttpApi::new(first)?.server_info().await.context("GET /v1/info")?.tcp_addr;
    let tcp: SocketAddr = tcp.parse().context("server tcp address")?;
    if args.bare {
        return bare(tcp, n, target).await;
    }
    let reg_start = Instant::now();
    let creds = harness::login_all(&target.url, 0, n).await?;
    let registrations_per_s = n as f64 / reg_start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    target.phase("connecting").await;
    let rss_before = target.usage().map(|(rss, _)| rss);
    let start = Instant::now();
    let devices = Devices::connect(tcp, creds, CONNECT_CONCURRENCY).await;
    let took = start.elapsed();
    let connected = devices.stats.connected.load(Relaxed);
    tokio::time::sleep(HOLD).await;
    let rss_after = target.usage().map(|(rss, _)| rss);
    target.phase("connected").await;
    let still = devices.stats.connected.load(Relaxed);
    let (failed, retries) = (devices.stats.failed.load(Relaxed), devices.stats.retries.load(Relaxed));
    let refusal = devices.stats.last_refusal.lock().expect("lock").clone();
    devices.stop().await;
    target.phase("closed").await;

    let logins_per_s = connected as f64 / took.as_secs_f64();
    let mut report = Report::empty("idle", took);
    report.msgs_per_s = 0.0;
    report.set("connections", connected);
    report.set("connections_asked", n as u64);
    report.set("connections_after_hold", still);
    report.set("logins_per_s", logins_per_s.round());
    report.set("registrations_per_s", registrations_per_s.round());
    report.set("connect_failures", failed);
    report.set("connect_retries", retries);
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        report.set("server_rss_before_bytes", before);
        report.set("server_rss_per_conn_bytes", after.saturating_sub(before) / connected.max(1));
    }
    if !refusal.is_empty() {
        report.set("last_refusal", refusal);
    }
    report.set("fd_limited", capped.is_some());
    if let Some(why) = capped {
        report.set("note", why);
    }
    Ok(report)
}

/// Holds `n` TCP connections that never authenticate and measures the server's RSS per one.
async fn bare(tcp: SocketAddr, n: usize, target: &Target) -> anyhow::Result<Report> {
    let rss_before = target.usage().map(|(rss, _)| rss);
    let start = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        conns.push(RawConn::open(tcp, i).await?);
    }
    let took = start.elapsed();
    tokio::time::sleep(HOLD).await;
    let rss_after = target.usage().map(|(rss, _)| rss);
    drop(conns);
    let mut report = Report::empty("idle", took);
    report.set("bare", true);
    report.set("connections", n as u64);
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        report.set("server_rss_before_bytes", before);
        report.set("server_rss_per_conn_bytes", after.saturating_sub(before) / n.max(1) as u64);
    }
    Ok(report)
}

impl Report {
    /// A report of a run without messages (idle connections).
    pub fn empty(scenario: &'static str, duration: Duration) -> Self {
        let mut report = harness::Counters::default().report(scenario, duration, &Latencies::new());
        report.set_loss(0, 0, 0);
        report
    }
}
