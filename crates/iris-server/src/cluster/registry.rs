//! The session registry: which node holds which device, kept in Redis with a TTL.
//!
//! A session claims its device when it starts; if another node held it, that node is told to
//! end its (stale) session, as a second connection on one node replaces the first. Claims are
//! refreshed while connected, so a node that dies without releasing them is forgotten after
//! the TTL. A failed registry call is logged and the session carries on: without a claim its
//! device gets its messages through the inbox check instead of hints.
//!
//! Releases are queued and sent in pipelined batches by [`release_loop`], as refreshes are: when
//! thousands of sessions close at once, one `EVAL` per device on a task of its own overran the
//! bus's deadline and most releases were lost (docs/CAPACITY.md).

use std::sync::Arc;
use std::time::Duration;

use iris_store::DeviceAddr;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::wire::NodeItem;
use super::Cluster;
use crate::router::{Kick, Router};

/// Devices per refresh call.
const REFRESH_CHUNK: usize = 1000;
/// Devices per release call.
const RELEASE_CHUNK: usize = 1000;
/// Releases waiting for [`release_loop`]; past it a release is dropped and its claim expires by
/// itself after the TTL.
pub const RELEASE_QUEUE_MAX: usize = 65_536;

/// Claims `addr` for this node and ends its session on the node that held it before.
pub async fn claim(cluster: &Cluster, addr: DeviceAddr) {
    match cluster.bus.claim_devices(&[addr], cluster.registry_ttl_ms()).await {
        Ok(previous) => {
            if let Some(Some(node)) = previous.first() {
                if *node != cluster.node_id() {
                    cluster.outbound.to_node(*node, NodeItem::kick(addr, Kick::Replaced));
                }
            }
        }
        Err(e) => tracing::debug!(%addr, error = %e, "session registry claim failed"),
    }
}

/// Queues the release of `addr`; [`release_loop`] skips it if a newer session on this node
/// holds the device by then (and the registry itself only deletes a claim that still names this
/// node). A full queue drops it: the claim expires after the TTL.
pub fn release(cluster: &Cluster, addr: DeviceAddr) {
    if cluster.releases.try_send(addr).is_err() {
        tracing::debug!(%addr, "session registry release queue full; the claim expires by itself");
    }
}

/// Sends queued releases in batches of up to [`RELEASE_CHUNK`], each one pipelined call,
/// skipping devices that connected here again meanwhile. Ends with the server.
pub async fn release_loop(
    router: Arc<Router>,
    cluster: Arc<Cluster>,
    mut queue: mpsc::Receiver<DeviceAddr>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(RELEASE_CHUNK);
    loop {
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            n = queue.recv_many(&mut batch, RELEASE_CHUNK) => n,
        };
        if received == 0 {
            return;
        }
        batch.retain(|addr| !router.is_connected(*addr));
        if let Err(e) = cluster.bus.release_devices(&batch).await {
            tracing::debug!(devices = batch.len(), error = %e, "session registry release failed; the claims expire by themselves");
        }
        batch.clear();
    }
}

/// Re-claims every device connected here every third of the TTL (a claim lost in a Redis
/// failover comes back within that time).
pub async fn refresh_loop(router: Arc<Router>, cluster: Arc<Cluster>, stop: CancellationToken) {
    let mut ticker = super::Ticker::new(&stop, Duration::from_millis(cluster.registry_ttl_ms() / 3));
    while ticker.next().await {
        let devices = router.devices();
        for chunk in devices.chunks(REFRESH_CHUNK) {
            if let Err(e) = cluster.bus.refresh_devices(chunk, cluster.registry_ttl_ms()).await {
                tracing::debug!(error = %e, "session registry refresh failed");
                break;
            }
        }
    }
}
