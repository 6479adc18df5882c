//! Starts the cluster's tasks on a running server: forwarding, the bus inbox, registry refresh
//! and release, and presence broadcasts.
//!
//! The cluster's one entry from the server's root: it takes the [`Ctx`] and hands each task the
//! parts it needs, so the rest of `cluster/` stays usable below the root (sessions claim devices
//! through [`super::registry`] without any `Ctx`).

use std::sync::Arc;

use super::{inbound, outbound, presence_sync, registry, Cluster, ClusterTasks};
use crate::context::Ctx;

/// Installs forwarding into the router and starts the cluster's tasks.
pub fn spawn(cluster: &Arc<Cluster>, ctx: &Arc<Ctx>, tasks: ClusterTasks) {
    ctx.router.set_remote(cluster.outbound.clone());
    ctx.presence.enable_cluster_reports();
    tokio::spawn(outbound::run(
        cluster.bus.clone(),
        ctx.router.clone(),
        cluster.node_id(),
        tasks.outbound,
        ctx.metrics.clone(),
        ctx.shutdown.clone(),
    ));
    tokio::spawn(inbound::run(ctx.clone(), tasks.inbound));
    tokio::spawn(registry::refresh_loop(ctx.router.clone(), cluster.clone(), ctx.shutdown.clone()));
    tokio::spawn(registry::release_loop(ctx.router.clone(), cluster.clone(), tasks.releases, ctx.shutdown.clone()));
    tokio::spawn(presence_sync::run(ctx.clone(), cluster.clone()));
}
