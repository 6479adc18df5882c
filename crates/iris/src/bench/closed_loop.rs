//! The closed-loop run behind `throughput` and `hotspot`: every connection receives and acks,
//! chosen connections send with a fixed number in flight for a fixed time, then a drain.

use std::sync::Arc;
use std::time::Duration;

use iris_client::{Client, Events};
use tokio::time::Instant;

use super::harness::{self, Counters, Pick, Progress};
use super::stats::Report;

/// What to run.
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

/// Runs the plan and reports; msgs/s counts only what was delivered during the sending phase.
pub async fn run(plan: Plan) -> Report {
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let end = start + plan.duration;
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
    let report = harness::finish_run(plan.scenario, start, &counters, workers, receivers, progress, &clients).await;
    report
}
