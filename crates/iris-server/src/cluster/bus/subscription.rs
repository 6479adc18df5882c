//! The receiving side of the bus: the push sink that turns the cluster connection's RESP3 pushes
//! into messages for the node, and the liveness state the probe task keeps. The client library
//! re-subscribes after a reconnect or a topology change it notices, but a connection that only
//! receives does not notice a failover (measured: without probes a node channel stayed dead for
//! more than 15 s after its primary was killed). So every interval the bus publishes a probe to
//! itself on each subscribed shard: the publish makes the library notice a dead node and refresh
//! the topology, and when probes stop coming back the bus subscribes again. A failover costs a
//! few seconds of hints, never the subscription.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, Notify};

/// Which of the subscribed channels a message came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pair {
    /// This node's channel (and its probe channel).
    Node,
    /// The broadcast channel (and this node's probe channel beside it).
    Broadcast,
}

/// Liveness of the subscriptions, shared by the push sink, the probe task and `is_healthy`.
#[derive(Debug)]
pub(crate) struct SubState {
    /// The bus's clock.
    epoch: Instant,
    /// Per [`Pair`]: when a probe last came back, or when we last (re)subscribed, whichever is
    /// later (ms on `epoch`).
    fresh_ms: [AtomicU64; 2],
    /// Wakes the probe task early: the connection reported a disconnect or the server dropped a
    /// subscription (a slot moved).
    pub(crate) wake: Notify,
    /// Messages dropped because the node's receiver was full.
    pub(crate) dropped: AtomicU64,
}

impl SubState {
    /// Fresh state: both pairs count as just subscribed.
    pub(crate) fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            fresh_ms: [AtomicU64::new(0), AtomicU64::new(0)],
            wake: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Milliseconds on the bus's clock.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Marks `pair` as proven live now.
    pub(crate) fn touch(&self, pair: Pair) {
        self.fresh_ms[pair as usize].fetch_max(self.now_ms(), Ordering::AcqRel);
    }

    /// How long since `pair` was last proven live (or subscribed).
    pub(crate) fn silent_ms(&self, pair: Pair) -> u64 {
        self.now_ms().saturating_sub(self.fresh_ms[pair as usize].load(Ordering::Acquire))
    }
}

/// The names the sink matches pushes against.
#[derive(Debug, Clone)]
pub(crate) struct Channels {
    /// This node's channel.
    pub(crate) node: String,
    /// Probe channel on the node channel's slot.
    pub(crate) node_probe: String,
    /// The broadcast channel.
    pub(crate) broadcast: String,
    /// This node's probe channel on the broadcast channel's slot.
    pub(crate) broadcast_probe: String,
}

impl Channels {
    /// The channels of `pair`, as one `SSUBSCRIBE` (both share a slot).
    pub(crate) fn of(&self, pair: Pair) -> [&str; 2] {
        match pair {
            Pair::Node => [&self.node, &self.node_probe],
            Pair::Broadcast => [&self.broadcast, &self.broadcast_probe],
        }
    }
}

/// Turns pushes into node messages. Runs on the connection's reader, so it never blocks: a full
/// receiver drops the message (hints are lossy by design; the node falls back to its inbox checks).
pub(crate) struct PushSink {
    pub(crate) channels: Channels,
    pub(crate) tx: mpsc::Sender<Bytes>,
    pub(crate) state: Arc<SubState>,
}

impl PushSink {
    /// Handles one push from any node connection.
    pub(crate) fn accept(&self, info: PushInfo) {
        match info.kind {
            PushKind::SMessage => self.message(info.data),
            PushKind::Disconnection | PushKind::SUnsubscribe => self.state.wake.notify_one(),
            _ => {}
        }
    }

    fn message(&self, data: Vec<Value>) {
        let mut data = data.into_iter();
        let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) = (data.next(), data.next()) else {
            return;
        };
        let c = &self.channels;
        if channel == c.node.as_bytes() || channel == c.broadcast.as_bytes() {
            if self.tx.try_send(Bytes::from(payload)).is_err() {
                self.state.dropped.fetch_add(1, Ordering::Relaxed);
            }
        } else if channel == c.node_probe.as_bytes() {
            self.state.touch(Pair::Node);
        } else if channel == c.broadcast_probe.as_bytes() {
            self.state.touch(Pair::Broadcast);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(capacity: usize) -> (PushSink, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(capacity);
        let channels = Channels {
            node: "n:node:{1}".into(),
            node_probe: "n:node:{1}:probe".into(),
            broadcast: "n:bcast:{all}".into(),
            broadcast_probe: "n:bcast:{all}:probe:1".into(),
        };
        (PushSink { channels, tx, state: Arc::new(SubState::new(Instant::now())) }, rx)
    }

    fn smessage(channel: &str, payload: &[u8]) -> PushInfo {
        PushInfo {
            kind: PushKind::SMessage,
            data: vec![Value::BulkString(channel.as_bytes().to_vec()), Value::BulkString(payload.to_vec())],
        }
    }

    #[test]
    fn messages_reach_the_node_probes_do_not_and_overflow_is_counted() {
        // Proves: node and broadcast messages go to the receiver, probes and foreign channels
        // never do, and a full receiver drops (and counts) instead of blocking the connection.
        let (sink, mut rx) = sink(2);
        sink.accept(smessage("n:node:{1}", b"a"));
        sink.accept(smessage("n:node:{1}:probe", b"p"));
        sink.accept(smessage("n:node:{2}", b"other"));
        sink.accept(smessage("n:bcast:{all}", b"b"));
        sink.accept(smessage("n:node:{1}", b"c"));
        assert_eq!(rx.try_recv().unwrap(), Bytes::from_static(b"a"));
        assert_eq!(rx.try_recv().unwrap(), Bytes::from_static(b"b"));
        assert!(rx.try_recv().is_err());
        assert_eq!(sink.state.dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn probes_refresh_their_own_pair_only() {
        // Proves: a probe on the node shard marks only that subscription live.
        let (sink, _rx) = sink(1);
        std::thread::sleep(std::time::Duration::from_millis(20));
        sink.accept(smessage("n:node:{1}:probe", b"p"));
        assert!(sink.state.silent_ms(Pair::Node) < 20);
        assert!(sink.state.silent_ms(Pair::Broadcast) >= 20);
    }
}
