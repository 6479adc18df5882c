//! `iris bench fanout`: S members send to one group of G members, closed-loop; every other
//! member's device receives and acks each message. Exercises the group path: roster read under
//! the group lock, one stored payload, G − 1 inbox references, hints with the full item.
//!
//! The closed loop measures the capacity; its all-members latency is the queue that capacity
//! needs (a sender sends again as soon as a send is accepted, so each message waits behind the
//! deliveries of those before it). With `--rate` the senders send that many group messages per
//! second instead, whatever the answers: the all-members latency at a chosen load. With
//! `--read` every member also marks each message read as it acks it (raw clients).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use iris_client::pb::GroupSettings;
use iris_client::{Client, Recipient};
use tokio::time::Instant;

use super::closed_loop::{self, Pace, PhaseClock, RawPlan};
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
    /// Open loop instead: group messages per second from the senders in all (raw clients only);
    /// deliveries per second are this times members − 1.
    #[arg(long, conflicts_with = "sdk", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: Option<u32>,
    /// Raw clients: every member also marks each group message read (`GroupRead`, answered,
    /// not waited for) with the ack that covers it, as members with the chat open do; the
    /// server then records a read as well as a delivery per member per message.
    #[arg(long, conflicts_with = "sdk")]
    pub read: bool,
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
    let options = load::RawOptions { read_groups: args.read, ..args.common.raw_options() };
    let fleet = RawFleet::connect(tcp, creds, (n - 1) as u16, options).await?;
    let plan = RawPlan {
        scenario: "fanout",
        senders: (0..args.senders.min(args.members) as usize).collect(),
        dest: Dest::Fixed(To::Group(group.group_id)),
        pace: args.rate.map_or(Pace::InFlight(args.inflight), |r| Pace::PerSecond(f64::from(r))),
        duration: Duration::from_secs(args.duration_s),
        drain: args.common.drain(),
    };
    let (mut report, outcome) = closed_loop::run_raw(fleet, plan, target).await?;
    report.set("all_members_ms", serde_json::to_value(outcome.all_recipients.summary())?);
    report.set("messages_to_all_members", outcome.complete);
    if let Some(rate) = args.rate {
        report.set("group_msgs_per_s_target", rate);
    }
    if args.read {
        report.set("members_read", true);
    }
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
