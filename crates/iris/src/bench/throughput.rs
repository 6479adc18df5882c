//! `iris bench throughput`: U users send 1:1 to random others. By default open-loop with a rate
//! that steps up until delivery falls behind or p99 passes its bound; reports the highest
//! sustained rate. `--closed-loop` keeps the first cut's fixed-in-flight form.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::closed_loop::{self, Plan};
use super::harness::{self, Progress};
use super::open_loop::{self, OpenLoopArgs};
use super::server::Target;
use super::stats::Report;
use super::CommonArgs;

/// Flags of `iris bench throughput`.
#[derive(clap::Args, Debug)]
pub struct ThroughputArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub open: OpenLoopArgs,
    /// Closed loop instead: every user keeps `--inflight` sends in flight for `--duration-s`.
    #[arg(long)]
    pub closed_loop: bool,
    /// Closed loop: length of the sending phase, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration_s: u64,
    /// Closed loop: sends in flight per sender.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub inflight: u32,
}

/// Logs in and connects the users, runs the load, reports.
pub async fn run(args: &ThroughputArgs, target: &Target) -> anyhow::Result<Report> {
    if args.closed_loop {
        return run_closed(args, target).await;
    }
    let deadline = Instant::now() + args.open.bound() + args.common.drain() + Duration::from_secs(600);
    let (fleet, receivers) = open_loop::connect_fleet(&target.url, args.open.users as usize, deadline).await?;
    let progress = Progress::start("throughput", fleet.counters.clone());
    let start = Instant::now();
    let result = open_loop::step_up(&fleet, args.open.plan()).await;
    let sending = start.elapsed();
    fleet.settle(args.common.drain()).await;
    fleet.counters.finish_sending();
    let all = harness::join_receivers(receivers).await;
    progress.finish();
    harness::close_all(&fleet.clients).await;
    let mut report = fleet.counters.report("throughput", sending, &all);
    let best = result.best.clone();
    report.msgs_per_s = best.as_ref().map_or(0.0, |b| b.delivered_per_s);
    report.latency_ms = result.best_latencies.summary();
    report.set("sustained_offered_per_s", best.as_ref().map_or(0.0, |b| b.offered_per_s));
    report.set("steps", open_loop::steps_json(&result.steps));
    report.set("generator_skipped", fleet.skipped());
    report.set(
        "note",
        "msgs_per_s and latency_ms are those of the highest passing step; the histogram is of the whole run",
    );
    Ok(report)
}

/// The closed-loop form: every user sends with `--inflight` in flight for `--duration-s`.
async fn run_closed(args: &ThroughputArgs, target: &Target) -> anyhow::Result<Report> {
    let creds = harness::login_all(&target.url, 0, args.open.users as usize).await?;
    let ids: Arc<Vec<u64>> = Arc::new(creds.iter().map(|c| c.account_id).collect());
    let conns = harness::connect_all(&target.url, creds).await?;
    let senders = (0..ids.len()).map(|i| (i, harness::random_other(ids.clone(), i))).collect();
    let plan = Plan {
        scenario: "throughput",
        conns,
        senders,
        inflight: args.inflight as usize,
        duration: Duration::from_secs(args.duration_s),
        drain: args.common.drain(),
    };
    Ok(closed_loop::run(plan).await)
}
