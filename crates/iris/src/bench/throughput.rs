//! `iris bench throughput`: U users send 1:1 to random others, closed-loop.

use std::sync::Arc;
use std::time::Duration;

use super::closed_loop::{self, Plan};
use super::harness;
use super::server::Target;
use super::stats::Report;
use super::CommonArgs;

/// Flags of `iris bench throughput`.
#[derive(clap::Args, Debug)]
pub struct ThroughputArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Users, each one connected device that sends and receives.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(2..=5000))]
    pub users: u32,
    /// Length of the sending phase, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration_s: u64,
    /// Sends in flight per sender.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub inflight: u32,
}

/// Logs in and connects the users, runs the load, reports.
pub async fn run(args: &ThroughputArgs, target: &Target) -> anyhow::Result<Report> {
    let creds = harness::login_all(&target.url, 0, args.users as usize).await?;
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
