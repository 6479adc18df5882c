//! The closed-loop runs behind `throughput --closed-loop`, `hotspot` and `fanout`: chosen
//! connections send with a fixed number in flight for a fixed time while every connection
//! receives and acks; then a drain until every ACCEPTED message arrived or `--drain-s` passed.
//! The rate is what was delivered *while sending*; a backlog delivered in the drain is reported
//! (`backlog_at_end`, `delivered_after_sending`), not counted as rate, and only what never
//! arrives is `lost`. With a spawned server, its CPU over the sending phase per message
//! delivered in it is `server_cpu_us_per_msg`: the capacity figure's price.

use std::sync::Arc;
use std::time::Duration;

use iris_client::{Client, Events};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::generator::{CpuMeter, GeneratorUse, LoadThread};
use super::harness::{self, Counters, Pick, Progress};
use super::load::{Dest, OpenSenders, Outcome, RawFleet};
use super::server::Target;
use super::stats::{Latencies, Report};

/// What to run with SDK clients (`--sdk`).
pub struct Plan {
    /// Scenario name for the report.
    pub scenario: &'static str,
    /// Every connection (all receive and ack).
    pub conns: Vec<(Client, Events)>,
    /// Index into `conns` of each sender, with its recipient picker.
    pub senders: Vec<(usize, Pick)>,
    /// Sends in flight per sender.
    pub inflight: usize,
    /// Length of the sending phase.
    pub duration: Duration,
    /// Longest wait for accepted messages after sending stops.
    pub drain: Duration,
}

/// Runs the plan with SDK clients and reports.
pub async fn run(plan: Plan, target: &Target) -> Report {
    let counters = Arc::new(Counters::default());
    let clock = PhaseClock::start(target, None);
    let end = Instant::now() + plan.duration;
    let clients: Vec<Client> = plan.conns.iter().map(|(c, _)| c.clone()).collect();
    let receivers: Vec<_> = plan
        .conns
        .into_iter()
        .map(|(c, e)| harness::spawn_receiver(c, e, counters.clone(), 0, end + plan.drain))
        .collect();
    let progress = Progress::start(plan.scenario, counters.clone());
    let mut workers = Vec::new();
    for (i, pick) in plan.senders {
        workers.extend(harness::spawn_senders(&clients[i], plan.inflight, end, pick, &counters));
    }
    finish_sdk(plan.scenario, clock, target, &counters, workers, receivers, progress, &clients).await
}

/// Ends an SDK run whose senders stop by themselves: waits for them, reads the sending phase's
/// figures, lets the receivers settle (they end once everything accepted arrived, or at their
/// deadline), closes the clients and reports.
#[allow(clippy::too_many_arguments)]
pub async fn finish_sdk(
    scenario: &'static str,
    clock: PhaseClock,
    target: &Target,
    counters: &Counters,
    senders: Vec<JoinHandle<()>>,
    receivers: Vec<JoinHandle<Latencies>>,
    progress: Progress,
    clients: &[Client],
) -> Report {
    harness::join_senders(senders).await;
    let phase = clock.stop(target);
    let (sent, _, delivered_during, _) = counters.totals();
    let backlog_at_end = counters.expected_deliveries().saturating_sub(delivered_during);
    counters.finish_sending();
    let latencies = harness::join_receivers(receivers).await;
    progress.finish();
    harness::close_all(clients).await;
    let mut report = counters.report(scenario, phase.sending, &latencies);
    let lost = report.lost;
    report.set_loss(lost, backlog_at_end, lost.div_ceil(counters.deliveries_per_send()));
    phase.write_to(&mut report, delivered_during, backlog_at_end, sent);
    report.set("clients", "sdk");
    report
}

/// What to run with raw clients.
pub struct RawPlan {
    /// Scenario name for the report.
    pub scenario: &'static str,
    /// Index of each sending client.
    pub senders: Vec<usize>,
    /// Where they send.
    pub dest: Dest,
    /// How fast they send.
    pub pace: Pace,
    /// Length of the sending phase.
    pub duration: Duration,
    /// Longest wait for accepted messages after sending stops.
    pub drain: Duration,
}

/// How fast a raw plan's senders send.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Closed loop: each sender keeps this many sends in flight (the capacity).
    InFlight(u32),
    /// Open loop: this many sends per second in all, each from a random sender, whatever the
    /// answers (latency at a chosen load, not at capacity).
    PerSecond(f64),
}

/// Runs the plan on connected raw clients and reports; also returns the driver's outcome.
pub async fn run_raw(fleet: RawFleet, plan: RawPlan, target: &Target) -> anyhow::Result<(Report, Outcome)> {
    let counters = fleet.counters.clone();
    target.phase("sending").await;
    let progress = Progress::start(plan.scenario, counters.clone());
    let clock = PhaseClock::start(target, fleet.load_thread());
    match plan.pace {
        Pace::InFlight(inflight) => fleet.run_closed(plan.senders, plan.dest, inflight, plan.duration).await,
        Pace::PerSecond(rate) => {
            let from = OpenSenders { senders: plan.senders, dest: plan.dest };
            fleet.run_open_from(from, rate, plan.duration).await;
        }
    }
    let phase = clock.stop(target);
    let (sent, _, delivered_during, _) = counters.totals();
    let backlog_at_end = fleet.owed();
    fleet.settle(plan.drain).await;
    target.phase("settled").await;
    progress.finish();
    let outcome = fleet.finish().await?;
    let mut report = counters.report(plan.scenario, phase.sending, &outcome.latencies);
    outcome.write_to(&mut report, backlog_at_end);
    phase.write_to(&mut report, delivered_during, backlog_at_end, sent);
    Ok((report, outcome))
}

/// Readings at the start of a sending phase.
pub struct PhaseClock {
    start: Instant,
    meter: CpuMeter,
    server_cpu_s: Option<f64>,
}

/// A sending phase's length, the generator's CPU over it, and the spawned server's.
pub struct Phase {
    /// Length of the sending phase.
    pub sending: Duration,
    /// The generator's use of CPU over it.
    pub used: GeneratorUse,
    /// The spawned server's CPU seconds over it.
    pub server_cpu_s: Option<f64>,
}

impl PhaseClock {
    /// Starts the phase (`load_thread`: the raw driver's thread, if any).
    pub fn start(target: &Target, load_thread: Option<LoadThread>) -> Self {
        Self { start: Instant::now(), meter: CpuMeter::start(load_thread), server_cpu_s: target.cpu_s() }
    }

    /// Ends it.
    pub fn stop(&self, target: &Target) -> Phase {
        let server_cpu_s = match (self.server_cpu_s, target.cpu_s()) {
            (Some(before), Some(after)) => Some((after - before).max(0.0)),
            _ => None,
        };
        Phase { sending: self.start.elapsed(), used: self.meter.stop(), server_cpu_s }
    }
}

impl Phase {
    /// Writes the closed-loop figures: the rate while sending (`msgs_per_s`, also as
    /// `delivered_during_load_per_s`), the backlog left, the generator's CPU and whether it was
    /// the limit, and the server's CPU per message delivered while sending.
    pub fn write_to(&self, report: &mut Report, delivered_during: u64, backlog_at_end: u64, sent: u64) {
        report.rate_while_sending(delivered_during, self.sending);
        report.set("delivered_during_load_per_s", report.msgs_per_s.round());
        report.set("backlog_at_end", backlog_at_end);
        self.used.write_to(report, self.used.limited(sent, 0, 0), sent);
        if let Some(cpu) = self.server_cpu_s {
            report.set("server_cpu_sending_s", (cpu * 1000.0).round() / 1000.0);
            if delivered_during > 0 {
                report.set("server_cpu_us_per_msg", (cpu * 1e6 / delivered_during as f64 * 10.0).round() / 10.0);
            }
        }
    }
}
