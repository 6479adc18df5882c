//! `iris bench fanout`: S members send to one group of G members, closed-loop; every other
//! member's device receives and acks each message. Exercises the group path: roster read under
//! the group lock, one stored payload, G − 1 inbox references, hints with the full item.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use iris_client::pb::GroupSettings;
use iris_client::{Client, Recipient};
use tokio::time::Instant;

use super::closed_loop::{self, PhaseClock, RawPlan};
use super::harness::{self, Counters, Progress};
use super::load::{self, Dest, RawFleet, To};
use super::server::Target;
use super::stats::Report;
use super::CommonArgs;

/// Flags of `iris bench fanout`.
#[derive(clap::Args, Debug)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Members of the group, each one connected device (the server's limit applies).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(2..=1024))]
    pub members: u32,
    /// Members that send (the first ones).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub senders: u32,
    /// Length of the sending phase, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration_s: u64,
    /// Group sends in flight per sender.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub inflight: u32,
}

/// Logs in the members, creates the group, runs the load, reports deliveries per second.
pub async fn run(args: &FanoutArgs, target: &Target) -> anyhow::Result<Report> {
    target.require_server("fanout (groups)")?;
    let n = args.members as usize;
    if args.common.sdk {
        return run_sdk(args, target).await;
    }
    let (tcp, creds) = load::accounts(target, 0, n).await?;
    let mut creator = harness::connect_all(&target.url, vec![creds[0].clone()]).await?;
    let (client, _events) = creator.pop().context("group creator")?;
    let members: Vec<Recipient> = creds[1..].iter().map(|c| Recipient::Account(c.account_id)).collect();
    let created = client.group_create("bench", "", members, GroupSettings::default()).await;
    client.close().await;
    let group = created.context("group create")?;
    let fleet = RawFleet::connect(tcp, creds, (n - 1) as u16, args.common.ack_delay()).await?;
    let plan = RawPlan {
        scenario: "fanout",
        senders: (0..args.senders.min(args.members) as usize).collect(),
        dest: Dest::Fixed(To::Group(group.group_id)),
        inflight: args.inflight,
        duration: Duration::from_secs(args.duration_s),
        drain: args.common.drain(),
    };
    let (mut report, outcome) = closed_loop::run_raw(fleet, plan, target).await?;
    report.set("all_members_ms", serde_json::to_value(outcome.all_recipients.summary())?);
    report.set("messages_to_all_members", outcome.complete);
    Ok(report)
}

/// The same with SDK clients.
async fn run_sdk(args: &FanoutArgs, target: &Target) -> anyhow::Result<Report> {
    let n = args.members as usize;
    let creds = harness::login_all(&target.url, 0, n).await?;
    let ids: Vec<Recipient> = creds[1..].iter().map(|c| Recipient::Account(c.account_id)).collect();
    let conns = harness::connect_all(&target.url, creds).await?;
    let clients: Vec<Client> = conns.iter().map(|(c, _)| c.clone()).collect();
    let group = clients[0].group_create("bench", "", ids, GroupSettings::default()).await.context("group create")?;
    let counters = Arc::new(Counters::default());
    counters.set_deliveries_per_send(n as u64 - 1);
    counters.track_per_message();
    let (duration, drain) = (Duration::from_secs(args.duration_s), args.common.drain());
    let clock = PhaseClock::start(target, None);
    let end = Instant::now() + duration;
    let receivers: Vec<_> =
        conns.into_iter().map(|(c, e)| harness::spawn_receiver(c, e, counters.clone(), 0, end + drain)).collect();
    let progress = Progress::start("fanout", counters.clone());
    let mut workers = Vec::new();
    for client in clients.iter().take(args.senders.min(args.members) as usize) {
        workers.extend(harness::spawn_group_senders(client, args.inflight as usize, end, group.group_id, &counters));
    }
    let mut report =
        closed_loop::finish_sdk("fanout", clock, target, &counters, workers, receivers, progress, &clients).await;
    let (all_members, complete) = counters.completion(n as u32 - 1);
    report.set("all_members_ms", serde_json::to_value(all_members.summary())?);
    report.set("messages_to_all_members", complete);
    Ok(report)
}
