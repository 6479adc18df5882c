//! Open-loop load behind `throughput` and `latency`: sends are scheduled at a target rate from
//! random users to random others whether or not earlier sends were answered, and each payload
//! carries its *scheduled* time, so a server (or generator) that falls behind shows it as
//! latency instead of silently slowing the load (no coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use iris_client::Client;
use serde::Serialize;
use serde_json::Value;

use super::harness::{self, now_ns, Counters};
use super::stats::Latencies;

/// Most sends scheduled but not yet answered; past it the generator skips sends (and says so),
/// which makes the step fail instead of growing memory without bound.
const OUTSTANDING_MAX: u64 = 200_000;
/// How often the scheduler wakes to start the sends that are due.
const TICK: Duration = Duration::from_millis(1);
/// A step passes only if at least this share of its offered rate was delivered.
const DELIVERED_SHARE_MIN: f64 = 0.97;
/// A step passes only if the accepted-but-undelivered backlog at its end is below this many
/// seconds of its rate (a queue that would add more latency than the p99 bound).
const BACKLOG_S_MAX: f64 = 0.1;

/// Lowest rate the step-up halves down to when even its start rate fails.
const RATE_MIN: f64 = 100.0;

/// The connected users that send and receive.
pub struct Fleet {
    /// One SDK client per user.
    pub clients: Vec<Client>,
    /// Account id of each user (same order).
    pub ids: Arc<Vec<u64>>,
    /// Counts of the run.
    pub counters: Arc<Counters>,
    outstanding: Arc<AtomicU64>,
    skipped: AtomicU64,
}

impl Fleet {
    /// Wraps connected users.
    pub fn new(clients: Vec<Client>, ids: Arc<Vec<u64>>, counters: Arc<Counters>) -> Self {
        Self { clients, ids, counters, outstanding: Arc::default(), skipped: AtomicU64::new(0) }
    }

    /// Sends at `rate` per second for `duration`; returns how many sends were scheduled.
    pub async fn run_at(&self, rate: f64, duration: Duration) -> u64 {
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

    /// Starts one send scheduled at `at_ns` from a random user to a random other.
    fn start_send(&self, at_ns: u64) {
        if self.outstanding.load(Relaxed) >= OUTSTANDING_MAX {
            self.skipped.fetch_add(1, Relaxed);
            return;
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

    /// Sends the generator had to skip because too many were outstanding.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Relaxed)
    }

    /// Waits until every accepted message was delivered and no send is outstanding, or `limit`.
    pub async fn settle(&self, limit: Duration) {
        let end = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < end {
            let (_, accepted, delivered, _) = self.counters.totals();
            if self.outstanding.load(Relaxed) == 0 && delivered >= accepted {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
    /// Whether the server kept up (delivered ≥ 97% of offered, p99 under the bound, small backlog,
    /// and the generator skipped nothing).
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
}

/// Raises the rate step by step until a step fails or a cap is reached (halving it first while
/// not even the start rate holds).
pub async fn step_up(fleet: &Fleet, plan: StepPlan) -> StepUp {
    let mut out = StepUp { steps: Vec::new(), best: None, best_latencies: Latencies::new() };
    let mut rate = plan.start_rate;
    for _ in 0..plan.steps_max {
        let (_, _, delivered_before, _) = fleet.counters.totals();
        let skipped_before = fleet.skipped();
        fleet.counters.swap_window(Some(Latencies::new()));
        let started = tokio::time::Instant::now();
        fleet.run_at(rate, plan.step).await;
        let elapsed = started.elapsed().as_secs_f64();
        let window = fleet.counters.swap_window(None).unwrap_or_default();
        let (_, accepted, delivered, _) = fleet.counters.totals();
        let delivered_per_s = (delivered - delivered_before) as f64 / elapsed;
        let backlog = accepted.saturating_sub(delivered);
        let p99_ms = window.summary().p99;
        let ok = delivered_per_s >= DELIVERED_SHARE_MIN * rate
            && p99_ms <= plan.p99_max_ms
            && (backlog as f64) <= BACKLOG_S_MAX * rate
            && fleet.skipped() == skipped_before;
        let step = Step { offered_per_s: rate, delivered_per_s, p99_ms, backlog, ok };
        out.steps.push(step.clone());
        if !ok && out.best.is_none() && rate / 2.0 >= RATE_MIN {
            // Not even the start rate held: halve it until one step holds, then climb from there.
            rate /= 2.0;
            continue;
        }
        if !ok {
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
pub async fn connect_fleet(
    url: &str,
    users: usize,
    deadline: tokio::time::Instant,
) -> anyhow::Result<(Fleet, Vec<tokio::task::JoinHandle<Latencies>>)> {
    let creds = harness::login_all(url, 0, users).await?;
    let ids: Arc<Vec<u64>> = Arc::new(creds.iter().map(|c| c.account_id).collect());
    let conns = harness::connect_all(url, creds).await?;
    let counters = Arc::new(Counters::default());
    let clients: Vec<Client> = conns.iter().map(|(c, _)| c.clone()).collect();
    let receivers =
        conns.into_iter().map(|(c, e)| harness::spawn_receiver(c, e, counters.clone(), 0, deadline)).collect();
    Ok((Fleet::new(clients, ids, counters), receivers))
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
