//! `iris bench latency`: U users send 1:1 to random others at one fixed open-loop rate;
//! send→delivered latency measured from each send's scheduled time. Without `--rate`, a
//! step-up (as in `throughput`) runs first on the same connections and the rate is
//! `--share-pct` (50%) of its highest sustained rate.

use std::time::Duration;

use tokio::time::Instant;

use super::harness::{self, Progress};
use super::open_loop::{self, OpenLoopArgs};
use super::server::Target;
use super::stats::{Latencies, Report};
use super::CommonArgs;

/// Sending at the given rate before the measured phase (with `--rate`; else the step-up warms up).
const WARMUP: Duration = Duration::from_secs(3);
/// Pause between the step-up and the measured phase, so the step-up's backlog is gone.
const SETTLE: Duration = Duration::from_secs(10);

/// Flags of `iris bench latency`.
#[derive(clap::Args, Debug)]
pub struct LatencyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub open: OpenLoopArgs,
    /// Fixed rate, msgs/s (default: `--share-pct` of a step-up's sustained rate).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=5_000_000))]
    pub rate: Option<u32>,
    /// Without `--rate`: the share of the sustained rate to run at, percent.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub share_pct: u32,
    /// Length of the measured phase, seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration_s: u64,
}

/// Connects the users, finds the rate if needed, runs the fixed rate, reports its latencies.
pub async fn run(args: &LatencyArgs, target: &Target) -> anyhow::Result<Report> {
    let bound = args.open.bound() + WARMUP + SETTLE + Duration::from_secs(args.duration_s) + args.common.drain();
    let deadline = Instant::now() + bound + Duration::from_secs(600);
    let (fleet, receivers) = open_loop::connect_fleet(&target.url, args.open.users as usize, deadline).await?;
    let progress = Progress::start("latency", fleet.counters.clone());
    let (rate, found) = match args.rate {
        Some(r) => {
            // Warm up at the rate first (fresh connections, cold caches), as the step-up does.
            fleet.run_at(f64::from(r), WARMUP).await;
            fleet.settle(SETTLE).await;
            (f64::from(r), None)
        }
        None => {
            let result = open_loop::step_up(&fleet, args.open.plan()).await;
            fleet.settle(SETTLE).await;
            let sustained = result.best.as_ref().map_or(f64::from(args.open.start_rate), |b| b.delivered_per_s);
            (sustained * f64::from(args.share_pct) / 100.0, Some(sustained))
        }
    };
    let (_, accepted_before, delivered_before, _) = fleet.counters.totals();
    fleet.counters.swap_window(Some(Latencies::new()));
    let start = Instant::now();
    fleet.run_at(rate, Duration::from_secs(args.duration_s)).await;
    fleet.settle(args.common.drain()).await;
    let sending = start.elapsed();
    let window = fleet.counters.swap_window(None).unwrap_or_default();
    fleet.counters.finish_sending();
    let all = harness::join_receivers(receivers).await;
    progress.finish();
    harness::close_all(&fleet.clients).await;
    let mut report = fleet.counters.report("latency", sending, &all);
    let (_, accepted, delivered, _) = fleet.counters.totals();
    report.msgs_per_s = (delivered - delivered_before) as f64 / Duration::from_secs(args.duration_s).as_secs_f64();
    report.latency_ms = window.summary();
    report.charts.histogram = window.buckets();
    report.set("rate_target_per_s", rate);
    report.set("measured_accepted", accepted - accepted_before);
    report.set("measured_delivered", window.len());
    report.set("generator_skipped", fleet.skipped());
    if let Some(s) = found {
        report.set("sustained_rate_per_s", s);
    }
    Ok(report)
}
