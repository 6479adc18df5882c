//! `iris bench hotspot`: M senders send to one recipient device ("Messi"), closed loop. The
//! device receives far less than the senders get accepted, so the figure that matters is
//! `delivered_during_load_per_s`; the rest arrives in the drain (`backlog_at_end`), and only
//! what never arrives is `lost`.

use std::sync::Arc;
use std::time::Duration;

use super::closed_loop::{self, Pace, Plan, RawPlan};
use super::harness::{self, Pick};
use super::load::{self, Dest, RawFleet, To};
use super::server::Target;
use super::stats::Report;
use super::CommonArgs;

/// Flags of `iris bench hotspot`.
#[derive(clap::Args, Debug)]
pub struct HotspotArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Senders, each one connected device.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub senders: u32,
    /// Length of the sending phase, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration_s: u64,
    /// Sends in flight per sender.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub inflight: u32,
}

/// Logs in the recipient (index 0) and the senders, runs the load, reports.
pub async fn run(args: &HotspotArgs, target: &Target) -> anyhow::Result<Report> {
    let (duration, drain) = (Duration::from_secs(args.duration_s), args.common.drain());
    if args.common.sdk {
        target.require_server("--sdk")?;
        let creds = harness::login_all(&target.url, 0, args.senders as usize + 1).await?;
        let hot = creds[0].account_id;
        let conns = harness::connect_all(&target.url, creds).await?;
        let pick: Pick = Arc::new(move || Some(hot));
        let senders = (1..conns.len()).map(|i| (i, pick.clone())).collect();
        let plan = Plan { scenario: "hotspot", conns, senders, inflight: args.inflight as usize, duration, drain };
        return Ok(closed_loop::run(plan, target).await);
    }
    let (tcp, creds) = load::accounts(target, 0, args.senders as usize + 1).await?;
    let hot = creds[0].account_id;
    let fleet = RawFleet::connect(tcp, creds, 1, args.common.raw_options()).await?;
    let plan = RawPlan {
        scenario: "hotspot",
        senders: (1..=args.senders as usize).collect(),
        dest: Dest::Fixed(To::Account(hot)),
        pace: Pace::InFlight(args.inflight),
        duration,
        drain,
    };
    Ok(closed_loop::run_raw(fleet, plan, target).await?.0)
}
