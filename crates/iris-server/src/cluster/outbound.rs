//! Forwarding to other nodes: the [`RemoteRoute`] the router uses in cluster mode.
//!
//! The router calls it on the message path, so it only queues (bounded; full means the item is
//! dropped, which for a hint only delays delivery until the inbox check). One task drains the
//! queue in batches: it looks up the nodes holding the batch's devices in the session registry
//! (with a short-lived local cache, so a hot recipient costs one lookup per second, not one per
//! message), groups the items by node and publishes one [`NodeBatch`] per node. A device that is
//! registered nowhere is offline: its items are dropped (hints are in its inbox anyway), and its
//! hints go to the router's offline hook (push notifications), so the committing node, and only
//! it, wakes the device.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iris_proto::pb;
use iris_store::DeviceAddr;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bus::Bus;
use super::wire::{self, NodeBatch, NodeItem};
use crate::metrics::Metrics;
use crate::router::{Hint, Kick, RemoteRoute, Router};

/// Items waiting to be forwarded; more are dropped (soft: hints are also in the inboxes).
const QUEUE_LEN: usize = 65_536;
/// Most items forwarded per round (one registry lookup, one publish per node).
const ROUND_ITEMS_MAX: usize = 2048;
/// How long a registry answer is trusted. A device that moved meanwhile gets its hints on the
/// old node, which drops them; the inbox check delivers them within its interval.
const CACHE_TTL: Duration = Duration::from_secs(1);
/// Registry answers kept at most (cleared when full).
const CACHE_LEN_MAX: usize = 200_000;

/// Where an item goes.
pub enum Target {
    /// Whichever node holds this device.
    Device(DeviceAddr),
    /// Every node, this one included.
    Everyone,
    /// One node.
    Node(u16),
}

/// The queueing side, installed into the router.
pub struct Outbound {
    tx: mpsc::Sender<(Target, NodeItem)>,
    metrics: Arc<Metrics>,
}

impl Outbound {
    /// The forwarder and the task that drains it (spawn `run`).
    pub fn new(metrics: Arc<Metrics>) -> (Arc<Self>, mpsc::Receiver<(Target, NodeItem)>) {
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        (Arc::new(Self { tx, metrics }), rx)
    }

    fn queue(&self, target: Target, item: NodeItem) {
        if self.tx.try_send((target, item)).is_err() {
            self.metrics.cluster_items_dropped.inc();
            tracing::debug!("cluster forward queue full: item dropped");
        }
    }

    /// Sends `item` to every node (directory invalidations).
    pub fn broadcast(&self, item: NodeItem) {
        self.queue(Target::Everyone, item);
    }

    /// Sends `item` to one node.
    pub fn to_node(&self, node: u16, item: NodeItem) {
        self.queue(Target::Node(node), item);
    }
}

impl RemoteRoute for Outbound {
    fn hint(&self, addr: DeviceAddr, hint: Hint) {
        self.queue(Target::Device(addr), NodeItem::hint(addr, hint));
    }

    fn ephemeral(&self, addr: DeviceAddr, event: &pb::ServerEvent) {
        self.queue(Target::Device(addr), NodeItem::ephemeral(addr, event));
    }

    fn kick(&self, addr: DeviceAddr, why: Kick) {
        self.queue(Target::Device(addr), NodeItem::kick(addr, why));
    }
}

/// Publishes `items` to every node at once, [`ROUND_ITEMS_MAX`] per message, outside the
/// queue: for presence reports, whose full round holds one item per online account here and
/// would not fit in the queue past [`QUEUE_LEN`] accounts (nor should it crowd out hints).
/// Waits for each publish, so a round paces itself to Redis; a failed publish drops its items
/// (counted), the next round repeats them.
pub async fn broadcast_in_batches(bus: &Bus, node_id: u16, items: Vec<NodeItem>, metrics: &Metrics) {
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let batch: Vec<NodeItem> = items.by_ref().take(ROUND_ITEMS_MAX).collect();
        let n = batch.len() as u64;
        let payload = wire::encode(&NodeBatch { from_node: node_id.into(), items: batch });
        match bus.broadcast(payload).await {
            Ok(()) => {
                metrics.cluster_items_out.inc_by(n);
            }
            Err(e) => {
                metrics.cluster_items_dropped.inc_by(n);
                tracing::debug!(error = %e, "cluster broadcast failed");
            }
        }
    }
}

/// Drains the queue until shutdown: look up, group by node, publish.
pub async fn run(
    bus: Bus,
    router: Arc<Router>,
    node_id: u16,
    mut rx: mpsc::Receiver<(Target, NodeItem)>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut cache: HashMap<DeviceAddr, (Option<u16>, Instant)> = HashMap::new();
    let mut round = Vec::with_capacity(ROUND_ITEMS_MAX);
    loop {
        round.clear();
        tokio::select! {
            _ = stop.cancelled() => return,
            n = rx.recv_many(&mut round, ROUND_ITEMS_MAX) => if n == 0 { return },
        }
        let now = Instant::now();
        let mut unknown: Vec<DeviceAddr> = round
            .iter()
            .filter_map(|(t, _)| match t {
                Target::Device(a) => Some(*a),
                _ => None,
            })
            .filter(|a| cache.get(a).is_none_or(|&(_, at)| now.duration_since(at) > CACHE_TTL))
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        if !unknown.is_empty() {
            match bus.lookup_devices(&unknown).await {
                Ok(nodes) => {
                    if cache.len() + unknown.len() > CACHE_LEN_MAX {
                        cache.clear();
                    }
                    for (addr, node) in unknown.iter().zip(nodes) {
                        cache.insert(*addr, (node, now));
                    }
                }
                Err(e) => tracing::debug!(error = %e, "session registry lookup failed; hints wait for the inbox check"),
            }
        }
        let mut by_node: HashMap<u16, Vec<NodeItem>> = HashMap::new();
        let mut everyone = Vec::new();
        for (target, item) in round.drain(..) {
            match target {
                Target::Everyone => everyone.push(item),
                Target::Node(n) => by_node.entry(n).or_default().push(item),
                Target::Device(addr) => match cache.get(&addr) {
                    // Registered here but no session (it just ended) or nowhere: offline.
                    Some(&(Some(n), _)) if n != node_id => by_node.entry(n).or_default().push(item),
                    // The registry answered: no session anywhere. (No answer: unknown, no push.)
                    Some(_) => {
                        if let Some(wire::node_item::Kind::Hint(h)) = &item.kind {
                            router.wake_offline(addr, &h.item);
                        }
                    }
                    None => {}
                },
            }
        }
        let mut sends = Vec::with_capacity(by_node.len() + 1);
        for (node, items) in by_node {
            let n = items.len() as u64;
            let payload = wire::encode(&NodeBatch { from_node: node_id.into(), items });
            let bus = bus.clone();
            sends.push(tokio::spawn(async move { (node, n, bus.publish_to_node(node, payload).await) }));
        }
        broadcast_in_batches(&bus, node_id, everyone, &metrics).await;
        for send in sends {
            match send.await {
                Ok((_, n, Ok(()))) => {
                    metrics.cluster_items_out.inc_by(n);
                }
                Ok((node, n, Err(e))) => {
                    metrics.cluster_items_dropped.inc_by(n);
                    tracing::debug!(node, error = %e, "publishing to a node failed; its hints wait for the inbox check");
                }
                Err(_) => {}
            }
        }
    }
}
