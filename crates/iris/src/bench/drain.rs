//! `iris bench drain`: D offline devices get K messages each, then all connect at once; measures
//! the time from the start of connecting until the last message arrived.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use iris_client::Client;
use tokio::time::Instant;

use super::closed_loop::PhaseClock;
use super::harness::{self, Counters, Pick, Progress};
use super::server::Target;
use super::stats::Report;
use super::CommonArgs;

/// Longest the fill (sending while the devices are offline) may take.
const FILL_LIMIT: Duration = Duration::from_secs(300);

/// Flags of `iris bench drain`.
#[derive(clap::Args, Debug)]
pub struct DrainArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Offline devices (one account each).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub devices: u32,
    /// Messages queued for each device.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub queued: u32,
    /// Connected accounts that send the queued messages.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub senders: u32,
    /// Sends in flight per sender during the fill.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub inflight: u32,
}

/// Fills the offline inboxes, connects the devices, waits until everything arrived, reports.
/// Latency here is connect-start→delivered (queueing time while offline is not counted).
pub async fn run(args: &DrainArgs, target: &Target) -> anyhow::Result<Report> {
    target.require_server("drain")?;
    let devices = args.devices as usize;
    let offline = harness::login_all(&target.url, 0, devices).await?;
    let ids: Arc<Vec<u64>> = Arc::new(offline.iter().map(|c| c.account_id).collect());
    let sender_creds = harness::login_all(&target.url, devices, args.senders as usize).await?;
    let senders = harness::connect_all(&target.url, sender_creds).await?;
    let counters = Arc::new(Counters::default());
    let total = u64::from(args.queued) * devices as u64;
    let limit = Instant::now() + FILL_LIMIT + args.common.drain();
    let sender_clients: Vec<Client> = senders.iter().map(|(c, _)| c.clone()).collect();
    let mut receivers: Vec<_> =
        senders.into_iter().map(|(c, e)| harness::spawn_receiver(c, e, counters.clone(), 0, limit)).collect();
    fill(&sender_clients, args.inflight as usize, counted_pick(ids, total), &counters).await;
    counters.finish_sending();
    let (_, _, delivered_before, _) = counters.totals();
    let backlog_at_end = counters.expected_deliveries().saturating_sub(delivered_before);

    let progress = Progress::start("drain", counters.clone());
    let clock = PhaseClock::start(target, None);
    let origin = harness::now_ns();
    let start = Instant::now();
    let conns = harness::connect_all(&target.url, offline).await?;
    let clients: Vec<Client> = conns.iter().map(|(c, _)| c.clone()).collect();
    let deadline = start + args.common.drain() + Duration::from_secs(60);
    receivers.extend(conns.into_iter().map(|(c, e)| harness::spawn_receiver(c, e, counters.clone(), origin, deadline)));
    let latencies = harness::join_receivers(receivers).await;
    let phase = clock.stop(target);
    progress.finish();
    let took = Duration::from_nanos(counters.last_delivery_ns().saturating_sub(origin));
    harness::close_all(&clients).await;
    harness::close_all(&sender_clients).await;
    let mut report = counters.report("drain", took, &latencies);
    let lost = report.lost;
    report.set_loss(lost, backlog_at_end, lost);
    phase.used.write_to(&mut report, phase.used.limited(0, 0, 0), 0);
    Ok(report)
}

/// Sends until the picker runs out, with `inflight` workers per sender.
pub(super) async fn fill(senders: &[Client], inflight: usize, pick: Pick, counters: &Arc<Counters>) {
    let end = Instant::now() + FILL_LIMIT;
    let mut workers = Vec::new();
    for s in senders {
        workers.extend(harness::spawn_senders(s, inflight, end, pick.clone(), counters));
    }
    harness::join_senders(workers).await;
}

/// Hands out `total` sends round-robin over `ids`, then stops.
pub(super) fn counted_pick(ids: Arc<Vec<u64>>, total: u64) -> Pick {
    let next = AtomicU64::new(0);
    Arc::new(move || {
        let i = next.fetch_add(1, Relaxed);
        (i < total).then(|| ids[(i % ids.len() as u64) as usize])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_pick_hands_out_exactly_total_round_robin() {
        let pick = counted_pick(Arc::new(vec![1, 2]), 3);
        assert_eq!((pick(), pick(), pick(), pick()), (Some(1), Some(2), Some(1), None));
    }
}
