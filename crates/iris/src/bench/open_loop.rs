//! Open-loop load behind `throughput` and `latency`: sends are scheduled at a target rate from
//! random users to random others whether or not earlier sends were answered, and each payload
//! carries its *scheduled* time, so a server (or generator) that falls behind shows it as
//! latency instead of silently slowing the load (no coordinated omission). The load is the raw
//! clients (`load/`) or, with `--sdk`, SDK clients with a task per send ([`SdkFleet`]); both
//! implement [`OpenLoad`], which the step-up drives.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use iris_client::Client;
use serde::Serialize;
use serde_json::Value;

use super::generator::{CpuMeter, LoadThread};
use super::harness::{self, now_ns, Counters};
use super::load::{RawFleet, OUTSTANDING_MAX};
use super::stats::Latencies;

/// How often the SDK path's scheduler wakes to start the sends that are due.
const TICK: Duration = Duration::from_millis(1);
/// A send started this long after its scheduled time means the generator fell behind.
const LATE_NS: u64 = 10_000_000;
/// A step passes only if at least this share of its offered rate was delivered.
const DELIVERED_SHARE_MIN: f64 = 0.97;
/// A step passes only if the accepted-but-undelivered backlog at its end is below this many
/// seconds of its rate (a queue that would add more latency than the p99 bound).
const BACKLOG_S_MAX: f64 = 0.1;

/// Lowest rate the step-up halves down to when even its start rate fails.
const RATE_MIN: f64 = 100.0;

/// A load that can be offered at a fixed rate: the raw clients or the SDK fleet.
pub trait OpenLoad {
    /// The run's counts and latency window.
    fn counters(&self) -> &Counters;
    /// Sends at `rate` per second for `duration`; resolves once the last send was due, with
    /// the number of sends scheduled.
    fn run_at(&self, rate: f64, duration: Duration) -> impl Future<Output = u64>;
    /// Sends skipped so far because too many were outstanding.
    fn skipped(&self) -> u64;
    /// Sends started more than 10 ms after their scheduled time so far.
    fn late(&self) -> u64;
    /// Deliveries accepted messages owe now.
    fn backlog(&self) -> u64;
    /// Waits until nothing is outstanding or owed, or `limit`.
    fn settle(&self, limit: Duration) -> impl Future<Output = ()>;
    /// The one thread driving the load, if one does (its CPU share then bounds the generator).
    fn load_thread(&self) -> Option<LoadThread>;
}

impl OpenLoad for RawFleet {
    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn run_at(&self, rate: f64, duration: Duration) -> impl Future<Output = u64> {
        self.run_open(rate, duration)
    }

    fn skipped(&self) -> u64 {
        RawFleet::skipped(self)
    }

    fn late(&self) -> u64 {
        RawFleet::late(self)
    }

    fn backlog(&self) -> u64 {
        self.owed()
    }

    async fn settle(&self, limit: Duration) {
        RawFleet::settle(self, limit).await;
    }

    fn load_thread(&self) -> Option<LoadThread> {
        RawFleet::load_thread(self)
    }
}

/// The connected users of the SDK path (`--sdk`): one SDK client each, a task per send.
pub struct SdkFleet {
    /// One SDK client per user.
    pub clients: Vec<Client>,
    /// Account id of each user (same order).
    pub ids: Arc<Vec<u64>>,
    /// Counts of the run.
    pub counters: Arc<Counters>,
    outstanding: Arc<AtomicU64>,
    skipped: AtomicU64,
    late: AtomicU64,
}

impl SdkFleet {
    /// Wraps connected users.
    pub fn new(clients: Vec<Client>, ids: Arc<Vec<u64>>, counters: Arc<Counters>) -> Self {
        Self {
            clients,
            ids,
            counters,
            outstanding: Arc::default(),
            skipped: AtomicU64::new(0),
            late: AtomicU64::new(0),
        }
    }

    /// Starts one send scheduled at `at_ns` from a random user to a random other.
    fn start_send(&self, at_ns: u64) {
        if self.outstanding.load(Relaxed) >= OUTSTANDING_MAX {
            self.skipped.fetch_add(1, Relaxed);
            return;
        }
        if now_ns().saturating_sub(at_ns) > LATE_NS {
            self.late.fetch_add(1, Relaxed);
        }
        let n = self.clients.len();
        let from = rand::random_range(0..n);
        let other = rand::random_range(0..n - 1);
        let to = self.ids[if other >= from { other + 1 } else { other }];
        let (client, counters, outstanding) =
            (self.clients[from].clone(), self.counters.clone(), self.outstanding.clone());
        outstanding.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            harness::send_one(&client, to, harness::payload_at(at_ns), &counters).await;
            outstanding.fetch_sub(1, Relaxed);
        });
    }
}

impl OpenLoad for SdkFleet {
    fn counters(&self) -> &Counters {
        &self.counters
    }

    async fn run_at(&self, rate: f64, duration: Duration) -> u64 {
        let start_ns = now_ns();
        let total = (rate * duration.as_secs_f64()).round() as u64;
        let interval_ns = 1e9 / rate.max(1.0);
        let mut next = 0u64;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while next < total {
            tick.tick().await;
            let due = (((now_ns() - start_ns) as f64 / interval_ns) as u64 + 1).min(total);
            for k in next..due {
                self.start_send(start_ns + (k as f64 * interval_ns) as u64);
            }
            next = due;
        }
        total
    }

    fn skipped(&self) -> u64 {
        self.skipped.load(Relaxed)
    }

    fn late(&self) -> u64 {
        self.late.load(Relaxed)
    }

    fn backlog(&self) -> u64 {
        let (_, accepted, delivered, _) = self.counters.totals();
        accepted.saturating_sub(delivered)
    }

    async fn settle(&self, limit: Duration) {
        let end = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < end {
            let (_, accepted, delivered, _) = self.counters.totals();
            if self.outstanding.load(Relaxed) == 0 && delivered >= accepted {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn load_thread(&self) -> Option<LoadThread> {
        None
    }
}

/// How the rate steps up.
#[derive(Debug, Clone, Copy)]
pub struct StepPlan {
    /// Rate of the first step, msgs/s.
    pub start_rate: f64,
    /// Growth per step, percent.
    pub step_pct: f64,
    /// Length of one step.
    pub step: Duration,
    /// Most steps.
    pub steps_max: u32,
    /// Highest rate tried.
    pub rate_max: f64,
    /// A step fails when the p99 of its deliveries passes this.
    pub p99_max_ms: f64,
}

/// One step's outcome (an element of the JSON `steps` array).
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Offered (scheduled) rate, msgs/s.
    pub offered_per_s: f64,
    /// Delivered during the step, per second.
    pub delivered_per_s: f64,
    /// p99 of the deliveries during the step (measured from their scheduled time), ms.
    pub p99_ms: f64,
    /// Accepted but not yet delivered at the end of the step.
    pub backlog: u64,
    /// How busy the generator was during the step (its load thread, or the process over its
    /// cores), percent.
    pub generator_busy_pct: f64,
    /// Sends the generator skipped (too many outstanding) or wrote more than 10 ms late in
    /// this step: with a calm `generator_busy_pct`, the core was taken by something else.
    pub generator_skipped_or_late: u64,
    /// Whether the generator was the limit in this step (≥ 90% busy, sends skipped or late).
    pub generator_limited: bool,
    /// The spawned server's CPU over the step per message delivered in it, µs (the price of
    /// this service level; absent without `--spawn`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_msg: Option<f64>,
    /// Whether the server kept up (delivered ≥ 97% of offered, p99 under the bound, small backlog,
    /// and the generator was not the limit).
    pub ok: bool,
}

/// The result of a step-up: every step and the best passing one.
pub struct StepUp {
    /// Every step run, in order.
    pub steps: Vec<Step>,
    /// The passing step with the highest delivered rate.
    pub best: Option<Step>,
    /// That step's latencies.
    pub best_latencies: Latencies,
    /// The climb ended at a step the generator could not offer: the figure is the generator's.
    pub stopped_by_generator: bool,
}

/// Raises the rate step by step until a step fails or a cap is reached (halving it first while
/// not even the start rate holds). `server_cpu_s` reads the server's CPU time, if it can.
pub async fn step_up(fleet: &impl OpenLoad, plan: StepPlan, server_cpu_s: impl Fn() -> Option<f64>) -> StepUp {
    let mut out =
        StepUp { steps: Vec::new(), best: None, best_latencies: Latencies::new(), stopped_by_generator: false };
    let mut rate = plan.start_rate;
    for _ in 0..plan.steps_max {
        let (sent_before, _, delivered_before, _) = fleet.counters().totals();
        let (skipped_before, late_before) = (fleet.skipped(), fleet.late());
        fleet.counters().swap_window(Some(Latencies::new()));
        let meter = CpuMeter::start(fleet.load_thread());
        let server_before = server_cpu_s();
        let started = tokio::time::Instant::now();
        fleet.run_at(rate, plan.step).await;
        let elapsed = started.elapsed().as_secs_f64();
        let used = meter.stop();
        let server_cpu = server_cpu_s().zip(server_before).map(|(after, before)| (after - before).max(0.0));
        let window = fleet.counters().swap_window(None).unwrap_or_default();
        let (sent, _, delivered, _) = fleet.counters().totals();
        let (skipped, late) = (fleet.skipped() - skipped_before, fleet.late() - late_before);
        let generator_limited = used.limited(sent - sent_before, skipped, late);
        let delivered_per_s = (delivered - delivered_before) as f64 / elapsed;
        let backlog = fleet.backlog();
        let p99_ms = window.summary().p99;
        let ok = delivered_per_s >= DELIVERED_SHARE_MIN * rate
            && p99_ms <= plan.p99_max_ms
            && (backlog as f64) <= BACKLOG_S_MAX * rate
            && !generator_limited;
        let generator_busy_pct = (used.busy * 1000.0).round() / 10.0;
        let step_delivered = delivered - delivered_before;
        let server_cpu_us_per_msg =
            server_cpu.filter(|_| step_delivered > 0).map(|s| (s * 1e7 / step_delivered as f64).round() / 10.0);
        let step = Step {
            offered_per_s: rate,
            delivered_per_s,
            p99_ms,
            backlog,
            generator_busy_pct,
            generator_skipped_or_late: skipped + late,
            generator_limited,
            server_cpu_us_per_msg,
            ok,
        };
        out.steps.push(step.clone());
        if !ok && out.best.is_none() && rate / 2.0 >= RATE_MIN {
            // Not even the start rate held: halve it until one step holds, then climb from there.
            rate /= 2.0;
            continue;
        }
        if !ok {
            out.stopped_by_generator = generator_limited;
            break;
        }
        if out.best.as_ref().is_none_or(|b| b.delivered_per_s < step.delivered_per_s) {
            out.best = Some(step);
            out.best_latencies = window;
        }
        rate *= 1.0 + plan.step_pct / 100.0;
        if rate > plan.rate_max {
            break;
        }
    }
    out
}

/// The steps as a JSON array.
pub fn steps_json(steps: &[Step]) -> Value {
    serde_json::to_value(steps).unwrap_or(Value::Null)
}

/// Logs in and connects `users` users, starts a receiver per user (acks, counts, latency) that
/// lasts until the run settles or `deadline`.
pub async fn connect_sdk_fleet(
    url: &str,
    users: usize,
    deadline: tokio::time::Instant,
) -> anyhow::Result<(SdkFleet, Vec<tokio::task::JoinHandle<Latencies>>)> {
    let creds = harness::login_all(url, 0, users).await?;
    let ids: Arc<Vec<u64>> = Arc::new(creds.iter().map(|c| c.account_id).collect());
    let conns = harness::connect_all(url, creds).await?;
    let counters = Arc::new(Counters::default());
    let clients: Vec<Client> = conns.iter().map(|(c, _)| c.clone()).collect();
    let receivers =
        conns.into_iter().map(|(c, e)| harness::spawn_receiver(c, e, counters.clone(), 0, deadline)).collect();
    Ok((SdkFleet::new(clients, ids, counters), receivers))
}

/// Flags of the open-loop scenarios: the users and the step-up.
#[derive(clap::Args, Debug, Clone)]
pub struct OpenLoopArgs {
    /// Users, each one connected device that sends and receives.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(2..=5000))]
    pub users: u32,
    /// Rate of the first step, msgs/s.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(10..=5_000_000))]
    pub start_rate: u32,
    /// Growth of the rate per step, percent.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=400))]
    pub step_pct: u32,
    /// Length of each step, seconds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub step_s: u64,
    /// Most steps (bounds the run: at most steps × step length).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub steps_max: u32,
    /// A step fails when the p99 of its deliveries passes this many ms.
    #[arg(long, default_value_t = 100.0)]
    pub p99_max_ms: f64,
}

impl OpenLoopArgs {
    /// The step plan these flags describe.
    pub fn plan(&self) -> StepPlan {
        StepPlan {
            start_rate: f64::from(self.start_rate),
            step_pct: f64::from(self.step_pct),
            step: Duration::from_secs(self.step_s),
            steps_max: self.steps_max,
            rate_max: 5_000_000.0,
            p99_max_ms: self.p99_max_ms,
        }
    }

    /// Longest the step-up can run.
    pub fn bound(&self) -> Duration {
        Duration::from_secs(self.step_s * u64::from(self.steps_max))
    }
}
