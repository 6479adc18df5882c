//! `iris bench latency`: U users send 1:1 to random others at one fixed open-loop rate;
//! send→delivered latency measured from each send's scheduled time. Without `--rate`, a
//! step-up (as in `throughput`) runs first on the same connections and the rate is
//! `--share-pct` (50%) of its highest sustained rate.

use std::time::Duration;

use tokio::time::Instant;

use super::generator::{CpuMeter, GeneratorUse};
use super::harness::{self, Progress};
use super::load::{self, RawFleet};
use super::open_loop::{self, OpenLoad, OpenLoopArgs};
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
    if args.common.sdk {
        target.require_server("--sdk")?;
        return run_sdk(args, target).await;
    }
    let (tcp, creds) = load::accounts(target, 0, args.open.users as usize).await?;
    let fleet = RawFleet::connect(tcp, creds, 1, args.common.raw_options()).await?;
    let progress = Progress::start("latency", fleet.counters.clone());
    let measured = measure(&fleet, args, target).await;
    progress.finish();
    let counters = fleet.counters.clone();
    let outcome = fleet.finish().await?;
    let mut report = counters.report("latency", measured.sending, &outcome.latencies);
    outcome.write_to(&mut report, measured.backlog_at_end);
    measured.write_to(&mut report);
    Ok(report)
}

/// The fixed-rate phase and what the report needs of it.
struct Measured {
    rate: f64,
    /// The step-up's sustained rate, when it chose the rate.
    found: Option<f64>,
    window: Latencies,
    sending: Duration,
    /// The server's CPU time while the phase sent (a spawned server only).
    server_cpu_s: Option<f64>,
    used: GeneratorUse,
    limited: bool,
    /// Sends of the fixed-rate phase.
    sent: u64,
    backlog_at_end: u64,
    accepted: u64,
    delivered: u64,
    skipped: u64,
    late: u64,
}

/// Finds the rate (or warms up at the given one), then runs it for `--duration-s` and drains.
async fn measure(fleet: &impl OpenLoad, args: &LatencyArgs, target: &Target) -> Measured {
    let (rate, found) = match args.rate {
        Some(r) => {
            // Warm up at the rate first (fresh connections, cold caches), as the step-up does.
            fleet.run_at(f64::from(r), WARMUP).await;
            fleet.settle(SETTLE).await;
            (f64::from(r), None)
        }
        None => {
            let result = open_loop::step_up(fleet, args.open.plan(), || target.cpu_s()).await;
            fleet.settle(SETTLE).await;
            let sustained = result.best.as_ref().map_or(f64::from(args.open.start_rate), |b| b.delivered_per_s);
            (sustained * f64::from(args.share_pct) / 100.0, Some(sustained))
        }
    };
    target.phase("sending").await;
    let counters = fleet.counters();
    let (sent_before, accepted_before, delivered_before, _) = counters.totals();
    let (skipped_before, late_before) = (fleet.skipped(), fleet.late());
    counters.swap_window(Some(Latencies::new()));
    let meter = CpuMeter::start(fleet.load_thread());
    let server_cpu_before = target.cpu_s();
    let start = Instant::now();
    fleet.run_at(rate, Duration::from_secs(args.duration_s)).await;
    let sending = start.elapsed();
    let server_cpu_s = target.cpu_s().zip(server_cpu_before).map(|(after, before)| after - before);
    let used = meter.stop();
    let backlog_at_end = fleet.backlog();
    fleet.settle(args.common.drain()).await;
    target.phase("settled").await;
    let window = counters.swap_window(None).unwrap_or_default();
    let (sent, accepted, delivered, _) = counters.totals();
    let (skipped, late) = (fleet.skipped() - skipped_before, fleet.late() - late_before);
    Measured {
        rate,
        found,
        window,
        sending,
        server_cpu_s,
        used,
        limited: used.limited(sent - sent_before, skipped, late),
        sent: sent - sent_before,
        backlog_at_end,
        accepted: accepted - accepted_before,
        delivered: delivered - delivered_before,
        skipped,
        late,
    }
}

impl Measured {
    /// The fixed-rate phase's rate and latencies, and whether the generator kept up.
    fn write_to(&self, report: &mut Report) {
        report.msgs_per_s = self.delivered as f64 / self.sending.as_secs_f64().max(1e-9);
        report.latency_ms = self.window.summary();
        report.charts.histogram = self.window.buckets();
        report.set("rate_target_per_s", self.rate);
        report.set("measured_accepted", self.accepted);
        report.set("measured_delivered", self.window.len());
        report.set("backlog_at_end", self.backlog_at_end);
        report.set("generator_skipped", self.skipped);
        report.set("generator_late_sends", self.late);
        self.used.write_to(report, self.limited, self.sent);
        if let Some(s) = self.found {
            report.set("sustained_rate_per_s", s);
        }
        // What a message costs the server below saturation, where each one wakes tasks of its
        // own (the closed loop's figure shares wake-ups among messages).
        if let Some(cpu) = self.server_cpu_s {
            report.set("server_cpu_sending_s", (cpu * 1000.0).round() / 1000.0);
            if self.accepted > 0 {
                report.set("server_cpu_us_per_msg", (cpu * 1e6 / self.accepted as f64 * 10.0).round() / 10.0);
            }
        }
    }
}

/// The same with SDK clients.
async fn run_sdk(args: &LatencyArgs, target: &Target) -> anyhow::Result<Report> {
    let bound = args.open.bound() + WARMUP + SETTLE + Duration::from_secs(args.duration_s) + args.common.drain();
    let deadline = Instant::now() + bound + Duration::from_secs(600);
    let (fleet, receivers) = open_loop::connect_sdk_fleet(&target.url, args.open.users as usize, deadline).await?;
    let progress = Progress::start("latency", fleet.counters.clone());
    let measured = measure(&fleet, args, target).await;
    fleet.counters.finish_receiving();
    let all = harness::join_receivers(receivers).await;
    progress.finish();
    harness::close_all(&fleet.clients).await;
    let mut report = fleet.counters.report("latency", measured.sending, &all);
    let lost = report.lost;
    report.set_loss(lost, measured.backlog_at_end, lost);
    measured.write_to(&mut report);
    report.set("clients", "sdk");
    Ok(report)
}
