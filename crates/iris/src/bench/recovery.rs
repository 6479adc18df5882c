//! `iris bench recovery`: D offline devices get K messages each (D×K un-acked inbox entries),
//! then the spawned server is killed with SIGKILL and started again on the same data; measures
//! the time until it listens again (recovery of the inbox log), then connects the devices and
//! checks that every accepted message arrives (nothing lost across the kill).

use std::sync::Arc;
use std::time::Duration;

use iris_client::Client;
use tokio::time::Instant;

use super::closed_loop::PhaseClock;
use super::drain::{counted_pick, fill};
use super::harness::{self, Counters, Progress};
use super::server::Target;
use super::stats::Report;
use super::CommonArgs;

/// Flags of `iris bench recovery`.
#[derive(clap::Args, Debug)]
pub struct RecoveryArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Offline devices (one account each).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub devices: u32,
    /// Messages queued for each device before the kill.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub queued: u32,
    /// Connected accounts that send the queued messages.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub senders: u32,
    /// Sends in flight per sender during the fill.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub inflight: u32,
}

/// Fills the inboxes, kills and restarts the server, then drains and checks everything arrived.
pub async fn run(args: &RecoveryArgs, target: &Target) -> anyhow::Result<Report> {
    target.require_server("recovery")?;
    let devices = args.devices as usize;
    let offline = harness::login_all(&target.url, 0, devices).await?;
    let ids: Arc<Vec<u64>> = Arc::new(offline.iter().map(|c| c.account_id).collect());
    let sender_creds = harness::login_all(&target.url, devices, args.senders as usize).await?;
    let senders = harness::connect_all(&target.url, sender_creds).await?;
    let counters = Arc::new(Counters::default());
    let total = u64::from(args.queued) * devices as u64;
    let sender_clients: Vec<Client> = senders.iter().map(|(c, _)| c.clone()).collect();
    let fill_started = Instant::now();
    fill(&sender_clients, args.inflight as usize, counted_pick(ids, total), &counters).await;
    let fill_s = fill_started.elapsed().as_secs_f64();
    harness::close_all(&sender_clients).await;
    drop(senders);
    counters.finish_sending();
    let (_, accepted, _, _) = counters.totals();

    let restart = target.kill9_and_restart().await?;

    let progress = Progress::start("recovery", counters.clone());
    let clock = PhaseClock::start(target, None);
    let origin = harness::now_ns();
    let start = Instant::now();
    let conns = harness::connect_all(&target.url, offline).await?;
    let clients: Vec<Client> = conns.iter().map(|(c, _)| c.clone()).collect();
    let deadline = start + args.common.drain() + Duration::from_secs(60);
    let receivers: Vec<_> =
        conns.into_iter().map(|(c, e)| harness::spawn_receiver(c, e, counters.clone(), origin, deadline)).collect();
    let latencies = harness::join_receivers(receivers).await;
    let phase = clock.stop(target);
    progress.finish();
    let took = Duration::from_nanos(counters.last_delivery_ns().saturating_sub(origin));
    harness::close_all(&clients).await;
    let mut report = counters.report("recovery", took, &latencies);
    let lost = report.lost;
    report.set_loss(lost, 0, lost);
    report.set("entries_at_kill", accepted);
    report.set("fill_s", fill_s);
    report.set("restart_ms", restart.as_secs_f64() * 1000.0);
    report.set("drain_after_restart_s", took.as_secs_f64());
    phase.used.write_to(&mut report, phase.used.limited(0, 0, 0), 0);
    Ok(report)
}
