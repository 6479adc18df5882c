//! Presence across nodes: this node broadcasts the local state of an account that changed here
//! at once, later changes within the push interval coalesced to one broadcast per interval
//! (the rule of `presence.rs`), and every third of the registry TTL the local state of all its
//! online accounts (so a node that just started learns everything, and a lost broadcast is
//! repaired). What other nodes said expires after the registry TTL, so the accounts of a dead
//! node go offline by themselves. Presence degrades (stale for up to a TTL) when Redis is down;
//! messaging does not depend on it.

use std::sync::Arc;
use std::time::Duration;

use super::outbound;
use super::wire::{NodeItem, WirePresence};
use super::Cluster;
use crate::context::Ctx;
use crate::presence::LocalPresence;

/// Broadcasts and expires until shutdown.
pub async fn run(ctx: Arc<Ctx>, cluster: Arc<Cluster>) {
    let mut changes = tokio::time::interval(Duration::from_millis(ctx.config.presence.push_interval_ms.max(10)));
    let mut full = tokio::time::interval(Duration::from_millis(cluster.registry_ttl_ms() / 3));
    changes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    full.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let max_age = Duration::from_millis(cluster.registry_ttl_ms());
    loop {
        let report = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = changes.tick() => ctx.presence.take_local_changes(),
            () = ctx.presence.report_due() => ctx.presence.take_ready_local_changes(),
            _ = full.tick() => {
                ctx.presence.expire_remote(max_age);
                ctx.presence.local_snapshot()
            }
        };
        // Straight to Redis, not through the forwarding queue: a round holds one item per
        // online account here, which may be more than the queue holds.
        let items = report.into_iter().map(item).collect();
        outbound::broadcast_in_batches(&cluster.bus, cluster.node_id(), items, &ctx.metrics).await;
    }
}

fn item(p: LocalPresence) -> NodeItem {
    NodeItem::presence(
        p.account,
        WirePresence { online: p.online, last_seen_ms: p.last_seen_ms, privacy: u32::from(p.privacy.code()) },
    )
}
