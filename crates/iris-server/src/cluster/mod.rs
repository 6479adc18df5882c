//! Cluster mode: many Iris nodes on one shared durable store (PostgreSQL shards) and a Redis
//! Cluster bus for soft state.
//!
//! The store holds the truth; the bus only makes things fast. A message is acknowledged once
//! its store commit succeeded, whatever happens to Redis. Then:
//! - **Hints** for devices connected to other nodes go through [`outbound`]: look up the node in
//!   the session registry (device → node, with a TTL), publish on that node's sharded channel;
//!   [`inbound`] hands them to the local session.
//! - **Lost hints** (Redis failover, a stale registry entry, Redis down) only delay delivery:
//!   [`poll`] checks the inboxes of the devices connected here every
//!   `cluster.inbox_poll_interval_ms` and wakes the sessions that have entries to fetch.
//! - **Registry**: a session claims its device on connect (the previous holder, if on another
//!   node, is told to end its session), refreshes the claim while connected and releases it on
//!   disconnect ([`registry`]).
//! - **Presence** is per node and shared by broadcast ([`presence_sync`]); **typing** travels as
//!   ephemeral items to the recipient's node; **directory** invalidations (devices linked or
//!   revoked) are broadcast, and cached accounts also age out.
//!
//! **Invariant:** nothing here is on the acknowledgement path: every bus call has a timeout and
//! a circuit breaker, and every failure only degrades (slower delivery, stale presence).

pub mod bus;
pub mod inbound;
pub mod outbound;
pub mod poll;
pub mod presence_sync;
pub mod registry;
pub mod tasks;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iris_store::DeviceAddr;
use tokio::sync::mpsc;

use bus::{Bus, BusConfig, BusError};
use outbound::Outbound;
use wire::NodeItem;

/// This node's link to the other nodes (present when `cluster.redis_urls` is set).
pub struct Cluster {
    /// The Redis Cluster connection.
    pub bus: Bus,
    /// Forwarding queue (also installed into the router).
    pub outbound: Arc<Outbound>,
    node_id: u16,
    registry_ttl_ms: u64,
    /// Registry releases for [`registry::release_loop`].
    releases: mpsc::Sender<DeviceAddr>,
}

/// What [`Cluster::connect`] gives back besides the cluster: started by [`tasks::spawn`].
pub struct ClusterTasks {
    inbound: mpsc::Receiver<Bytes>,
    outbound: mpsc::Receiver<(outbound::Target, NodeItem)>,
    releases: mpsc::Receiver<DeviceAddr>,
}

impl Cluster {
    /// Connects to Redis Cluster. Fails if no seed answers (a node must not start blind).
    pub async fn connect(
        config: &crate::config::Config,
        metrics: &Arc<crate::metrics::Metrics>,
    ) -> Result<(Arc<Self>, ClusterTasks), BusError> {
        let c = &config.cluster;
        let ca_pem = match &c.redis_ca_path {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| BusError::Config(format!("cluster.redis_ca_path {}: {e}", path.display())))?,
            ),
            None => None,
        };
        let (bus, inbound) = Bus::connect(BusConfig {
            urls: c.redis_urls.clone(),
            ca_pem,
            namespace: c.namespace.clone(),
            node_id: config.node_id,
            command_timeout_ms: c.redis_timeout_ms,
            ..BusConfig::default()
        })
        .await?;
        let (outbound, outbound_rx) = Outbound::new(metrics.clone());
        let (releases, releases_rx) = mpsc::channel(registry::RELEASE_QUEUE_MAX);
        let cluster = Arc::new(Self {
            bus,
            outbound,
            node_id: config.node_id,
            registry_ttl_ms: c.registry_ttl_ms.max(1000),
            releases,
        });
        Ok((cluster, ClusterTasks { inbound, outbound: outbound_rx, releases: releases_rx }))
    }

    /// This node's id.
    pub fn node_id(&self) -> u16 {
        self.node_id
    }

    /// How long a registry claim lives without a refresh.
    pub fn registry_ttl_ms(&self) -> u64 {
        self.registry_ttl_ms
    }

    /// Tells every node to drop `account` from its directory cache (its devices changed).
    pub fn invalidate_account(&self, account: u64) {
        self.outbound.broadcast(NodeItem::invalidate(account));
    }
}

/// A periodic loop's clock that also ends with the server: `while ticker.next().await { … }`.
pub(crate) struct Ticker {
    tick: tokio::time::Interval,
    stop: tokio_util::sync::CancellationToken,
}

impl Ticker {
    /// Ticks every `period` (late ticks are delayed, not bunched) until `stop` is cancelled.
    pub(crate) fn new(stop: &tokio_util::sync::CancellationToken, period: Duration) -> Self {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { tick, stop: stop.clone() }
    }

    /// Waits for the next tick; false once the server is shutting down.
    pub(crate) async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = self.tick.tick() => true,
        }
    }
}
