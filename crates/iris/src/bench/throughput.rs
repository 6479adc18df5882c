//! `iris bench throughput`: U users send 1:1 to random others. Two figures, answering two
//! questions: by default the **service level**, open loop with a rate that steps up until
//! delivery falls behind or p99 passes its bound (the highest sustained rate); with
//! `--closed-loop` the **capacity**, every user keeping `--inflight` sends in flight (msgs/s
//! delivered while sending, and the server's CPU µs per message).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::closed_loop::{self, Pace, Plan, RawPlan};
use super::generator::{CpuMeter, GeneratorUse};
use super::harness::{self, Progress};
use super::load::{self, Dest, RawFleet};
use super::open_loop::{self, OpenLoad, OpenLoopArgs, StepUp};
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
    /// Closed loop instead: every user keeps `--inflight` sends in flight for `--duration-s`
    /// (the capacity figure, with the server's CPU per message).
    #[arg(long)]
    pub closed_loop: bool,
    /// Closed loop: length of the sending phase, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration_s: u64,
    /// Closed loop: sends in flight per sender.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub inflight: u32,
}

/// Connects the users, runs the load, reports.
pub async fn run(args: &ThroughputArgs, target: &Target) -> anyhow::Result<Report> {
    let users = args.open.users as usize;
    if args.common.sdk {
        target.require_server("--sdk")?;
        return if args.closed_loop { run_closed_sdk(args, target).await } else { run_open_sdk(args, target).await };
    }
    let (tcp, creds) = load::accounts(target, 0, users).await?;
    let fleet = RawFleet::connect(tcp, creds, 1, args.common.raw_options()).await?;
    if args.closed_loop {
        let plan = RawPlan {
            scenario: "throughput",
            senders: (0..users).collect(),
            dest: Dest::RandomOther,
            pace: Pace::InFlight(args.inflight),
            duration: Duration::from_secs(args.duration_s),
            drain: args.common.drain(),
        };
        let (mut report, _) = closed_loop::run_raw(fleet, plan, target).await?;
        report.set("figure", CAPACITY);
        return Ok(report);
    }
    let progress = Progress::start("throughput", fleet.counters.clone());
    let climb = climb(&fleet, args, target).await;
    progress.finish();
    let counters = fleet.counters.clone();
    let outcome = fleet.finish().await?;
    let mut report = counters.report("throughput", climb.sending, &outcome.latencies);
    outcome.write_to(&mut report, climb.backlog_at_end);
    climb.write_to(&mut report);
    Ok(report)
}

/// What the closed-loop figure answers.
const CAPACITY: &str = "capacity: msgs/s delivered while every user keeps --inflight sends in flight (closed loop)";
/// What the open-loop figure answers.
const SERVICE_LEVEL: &str =
    "service level: the highest open-loop rate whose step held (delivered >= 97%, p99 <= --p99-max-ms, small backlog)";

/// A finished step-up and what the report needs of it.
struct Climb {
    result: StepUp,
    sending: Duration,
    used: GeneratorUse,
    backlog_at_end: u64,
    skipped: u64,
    /// Sends of the whole climb.
    sent: u64,
}

/// Runs the step-up, then drains until every accepted message arrived or `--drain-s`.
async fn climb(fleet: &impl OpenLoad, args: &ThroughputArgs, target: &Target) -> Climb {
    let meter = CpuMeter::start(fleet.load_thread());
    let start = Instant::now();
    let result = open_loop::step_up(fleet, args.open.plan(), || target.cpu_s()).await;
    let sending = start.elapsed();
    let used = meter.stop();
    let backlog_at_end = fleet.backlog();
    let (sent, _, _, _) = fleet.counters().totals();
    fleet.settle(args.common.drain()).await;
    Climb { result, sending, used, backlog_at_end, skipped: fleet.skipped(), sent }
}

impl Climb {
    /// The best step's rate and latencies, every step, and whether the generator ended the climb.
    fn write_to(&self, report: &mut Report) {
        let best = self.result.best.clone();
        report.msgs_per_s = best.as_ref().map_or(0.0, |b| b.delivered_per_s);
        report.latency_ms = self.result.best_latencies.summary();
        report.set("figure", SERVICE_LEVEL);
        report.set("sustained_offered_per_s", best.as_ref().map_or(0.0, |b| b.offered_per_s));
        if let Some(us) = best.as_ref().and_then(|b| b.server_cpu_us_per_msg) {
            report.set("server_cpu_us_per_msg", us);
        }
        report.set("steps", open_loop::steps_json(&self.result.steps));
        report.set("generator_skipped", self.skipped);
        report.set("backlog_at_end", self.backlog_at_end);
        self.used.write_to(report, self.result.stopped_by_generator, self.sent);
        report.set(
            "note",
            "msgs_per_s and latency_ms are those of the highest passing step; the histogram is of the whole run; \
             generator_limited: the step that ended the climb failed because the generator could not offer it",
        );
    }
}

/// The open loop with SDK clients.
async fn run_open_sdk(args: &ThroughputArgs, target: &Target) -> anyhow::Result<Report> {
    let deadline = Instant::now() + args.open.bound() + args.common.drain() + Duration::from_secs(600);
    let (fleet, receivers) = open_loop::connect_sdk_fleet(&target.url, args.open.users as usize, deadline).await?;
    let progress = Progress::start("throughput", fleet.counters.clone());
    let climb = climb(&fleet, args, target).await;
    fleet.counters.finish_receiving();
    let all = harness::join_receivers(receivers).await;
    progress.finish();
    harness::close_all(&fleet.clients).await;
    let mut report = fleet.counters.report("throughput", climb.sending, &all);
    let lost = report.lost;
    report.set_loss(lost, climb.backlog_at_end, lost);
    climb.write_to(&mut report);
    report.set("clients", "sdk");
    Ok(report)
}

/// The closed loop with SDK clients.
async fn run_closed_sdk(args: &ThroughputArgs, target: &Target) -> anyhow::Result<Report> {
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
    let mut report = closed_loop::run(plan, target).await;
    report.set("figure", CAPACITY);
    Ok(report)
}
