//! Which session holds which device, and how to nudge it.
//!
//! The router carries hints, never truth: `notify` hands a just-committed inbox entry to the
//! device's session if it has room, otherwise it only marks the session as lagged and the
//! session catches up from the inbox. Nothing here can block the message path or grow without
//! bound. A session is replaced (and told so) when the same device connects again.
//!
//! In cluster mode a [`RemoteRoute`] is installed: whatever is meant for a device that has no
//! session on this node (hints, ephemeral events, kicks) is handed to it, and it forwards them to
//! the node holding the device (`cluster::outbound`). The `*_local` methods are what arrives
//! from other nodes: they never forward again, so a stale registry entry cannot make a loop.
//!
//! It also knows which receipt kinds each connected session declined in its `Hello`
//! ([`UnwantedReceipts`]), so that receipts can be left out of those devices' inboxes.

use foldhash::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};

use bytes::Bytes;
use iris_proto::pb;
use iris_store::DeviceAddr;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::backlog::Backlog;

const SHARDS: usize = 16;

/// Ephemeral events (typing, presence pushes) a session queues; more are dropped (soft state).
const EPHEMERAL_QUEUE_LEN: usize = 256;

/// An ephemeral event as queued: boxed, because a channel allocates its first block of 32 slots
/// when it is created, and 32 unboxed `ServerEvent`s cost every idle connection ~4 KiB.
pub type Ephemeral = Box<pb::ServerEvent>;

/// A committed inbox entry for a session to push.
#[derive(Debug, Clone)]
pub struct Hint {
    /// Its sequence number in the device's inbox.
    pub seq: u64,
    /// The encoded `InboxItem` (seq 0).
    pub item: Bytes,
}

/// Why a session is told to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// The device was revoked.
    Revoked,
    /// Another connection authenticated as the same device.
    Replaced,
    /// The device's account was deleted.
    AccountDeleted,
    /// The server is shutting down: the session lets what is in flight finish, says `GoAway`
    /// and ends ([`Router::stop_sessions`]).
    ShuttingDown,
}

/// The receipt kinds a connection declined in `Hello.receipts_unwanted` (a set of
/// `ReceiptType`s; unknown and unspecified values are ignored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnwantedReceipts(u8);

impl UnwantedReceipts {
    /// The set named by `Hello.receipts_unwanted`.
    pub fn from_hello(kinds: &[i32]) -> Self {
        let bit = |kind: &i32| match pb::ReceiptType::try_from(*kind) {
            Ok(k @ (pb::ReceiptType::Delivered | pb::ReceiptType::Read)) => 1u8 << (k as i32),
            _ => 0,
        };
        Self(kinds.iter().map(bit).fold(0, |a, b| a | b))
    }

    /// Whether `kind` was declined.
    pub fn contains(self, kind: pb::ReceiptType) -> bool {
        matches!(kind, pb::ReceiptType::Delivered | pb::ReceiptType::Read) && self.0 & (1 << (kind as i32)) != 0
    }
}

struct Link {
    conn_id: u64,
    unwanted: UnwantedReceipts,
    hints: mpsc::Sender<Hint>,
    ephemeral: mpsc::Sender<Ephemeral>,
    lagged: Arc<AtomicBool>,
    /// Taken by the first kick (a session hears one, the first).
    kick: Option<oneshot::Sender<Kick>>,
    backlog: Arc<Backlog>,
}

impl Link {
    /// The registration ends (the device left or was replaced): whoever waits on its backlog
    /// stops waiting; the session hears `why`, if anything.
    fn end(self, why: Option<Kick>) {
        self.backlog.close();
        if let (Some(why), Some(kick)) = (why, self.kick) {
            let _ = kick.send(why);
        }
    }
}

/// The receiving side a session gets when it registers.
pub struct Registration {
    /// Identifies this registration (for `unregister`).
    pub conn_id: u64,
    /// Hints for this device.
    pub hints: mpsc::Receiver<Hint>,
    /// Ephemeral events (typing, presence) for this connection; dropped when full.
    pub ephemeral: mpsc::Receiver<Ephemeral>,
    /// The sending side of `ephemeral`, for the presence hub.
    pub ephemeral_tx: mpsc::Sender<Ephemeral>,
    /// Set when a hint could not be queued; the session must re-read its inbox.
    pub lagged: Arc<AtomicBool>,
    /// Fires when the session must end.
    pub kick: oneshot::Receiver<Kick>,
    /// What the device has yet to ack, for holding sends toward it (`send_gate.rs`); the
    /// session reports its cursor and acks here.
    pub backlog: Arc<Backlog>,
}

/// Tells every session of `router` when the server shuts down ([`Router::stop_sessions`]).
pub async fn stop_sessions_on(router: Arc<Router>, shutdown: CancellationToken) {
    shutdown.cancelled().await;
    router.stop_sessions();
}

/// Where the router sends what is meant for devices connected to other nodes (cluster mode).
/// Every method must return at once: it queues, it never waits on the network.
pub trait RemoteRoute: Send + Sync + 'static {
    /// A committed entry for a device that is not connected here.
    fn hint(&self, addr: DeviceAddr, hint: Hint);
    /// An ephemeral event for a device that is not connected here.
    fn ephemeral(&self, addr: DeviceAddr, event: &pb::ServerEvent);
    /// End the device's session wherever it is.
    fn kick(&self, addr: DeviceAddr, why: Kick);
}

/// Who hears about a committed entry for a device with no session anywhere (push
/// notifications). Must return at once: it queues, it never waits.
pub trait Offline: Send + Sync + 'static {
    /// `item` (an encoded `InboxItem`) was committed to `addr`'s inbox while it has no session.
    fn offline(&self, addr: DeviceAddr, item: &Bytes);
}

/// Device → session map, sharded to keep lock hold times short; looked up several times per
/// message, so its maps hash with foldhash rather than SipHash (keys are server-assigned ids).
pub struct Router {
    shards: Vec<RwLock<HashMap<DeviceAddr, Link>>>,
    next_conn_id: AtomicU64,
    hint_queue_len: usize,
    /// Set once in cluster mode.
    remote: OnceLock<Arc<dyn RemoteRoute>>,
    /// Set once when push notifications run. Weak: the hook (push) holds this router, and a
    /// cycle would keep both, and with them the store, alive after shutdown.
    offline: OnceLock<Weak<dyn Offline>>,
}

impl Router {
    /// A router whose sessions each queue at most `hint_queue_len` hints.
    pub fn new(hint_queue_len: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            next_conn_id: AtomicU64::new(1),
            hint_queue_len: hint_queue_len.max(1),
            remote: OnceLock::new(),
            offline: OnceLock::new(),
        }
    }

    /// Installs who wakes offline devices (once; later calls are ignored). The router keeps
    /// only a weak reference: the caller keeps the hook alive for as long as it should run.
    pub fn set_offline(&self, offline: &Arc<dyn Offline>) {
        let _ = self.offline.set(Arc::downgrade(offline));
    }

    /// Tells the offline hook that `item` was committed for `addr`, which has no session
    /// anywhere: called by `notify` on one node, and by the cluster's forwarder once the
    /// session registry named no node (so only the committing node calls it).
    pub fn wake_offline(&self, addr: DeviceAddr, item: &Bytes) {
        if let Some(offline) = self.offline.get().and_then(Weak::upgrade) {
            offline.offline(addr, item);
        }
    }

    /// Installs the cluster's forwarding (once; later calls are ignored).
    pub fn set_remote(&self, remote: Arc<dyn RemoteRoute>) {
        let _ = self.remote.set(remote);
    }

    fn shard(&self, addr: DeviceAddr) -> &RwLock<HashMap<DeviceAddr, Link>> {
        let h = addr.account.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(addr.device);
        &self.shards[(h % SHARDS as u64) as usize]
    }

    /// Makes this connection the device's session, kicking any previous one.
    pub fn register(&self, addr: DeviceAddr) -> Registration {
        self.register_declining(addr, UnwantedReceipts::default())
    }

    /// [`Router::register`] for a connection that declined the receipt kinds in `unwanted`.
    pub fn register_declining(&self, addr: DeviceAddr, unwanted: UnwantedReceipts) -> Registration {
        let conn_id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let (hint_tx, hints) = mpsc::channel(self.hint_queue_len);
        let (kick_tx, kick) = oneshot::channel();
        let (ephemeral_tx, ephemeral) = mpsc::channel(EPHEMERAL_QUEUE_LEN);
        let lagged = Arc::new(AtomicBool::new(false));
        let backlog = Arc::new(Backlog::default());
        let link = Link {
            conn_id,
            unwanted,
            hints: hint_tx,
            ephemeral: ephemeral_tx.clone(),
            lagged: lagged.clone(),
            kick: Some(kick_tx),
            backlog: backlog.clone(),
        };
        let old = self.shard(addr).write().expect("router lock").insert(addr, link);
        if let Some(old) = old {
            old.end(Some(Kick::Replaced));
        }
        Registration { conn_id, hints, ephemeral, ephemeral_tx, lagged, kick, backlog }
    }

    /// Removes the registration `conn_id` of `addr`, unless a newer one replaced it.
    pub fn unregister(&self, addr: DeviceAddr, conn_id: u64) {
        let mut shard = self.shard(addr).write().expect("router lock");
        if shard.get(&addr).is_some_and(|l| l.conn_id == conn_id) {
            shard.remove(&addr).expect("checked present").end(None);
        }
    }

    /// Whether a receipt of `kind` may go into `addr`'s inbox: false only while a session of
    /// that device is registered here and declined the kind.
    pub fn wants_receipt(&self, addr: DeviceAddr, kind: pb::ReceiptType) -> bool {
        let shard = self.shard(addr).read().expect("router lock");
        shard.get(&addr).is_none_or(|l| !l.unwanted.contains(kind))
    }

    /// Offers a committed entry to the device's session, here or (cluster mode) on the node
    /// holding it; with no session anywhere, to the offline hook (push). Never waits.
    pub fn notify(&self, addr: DeviceAddr, hint: Hint) {
        if let Err(hint) = self.notify_local(addr, hint) {
            match self.remote.get() {
                Some(remote) => remote.hint(addr, hint),
                None => self.wake_offline(addr, &hint.item),
            }
        }
    }

    /// Offers a committed entry to the device's session if it is connected here; gives the hint
    /// back otherwise. Never waits.
    pub fn notify_local(&self, addr: DeviceAddr, hint: Hint) -> Result<(), Hint> {
        let shard = self.shard(addr).read().expect("router lock");
        let Some(link) = shard.get(&addr) else { return Err(hint) };
        link.backlog.hinted(hint.seq);
        if link.hints.try_send(hint).is_err() {
            link.lagged.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Offers an ephemeral event (never stored) to the device's session, here or (cluster mode)
    /// on the node holding it. Never waits; dropped when a queue is full.
    pub fn notify_ephemeral(&self, addr: DeviceAddr, event: pb::ServerEvent) {
        {
            let shard = self.shard(addr).read().expect("router lock");
            if let Some(link) = shard.get(&addr) {
                let _ = link.ephemeral.try_send(Box::new(event));
                return;
            }
        }
        if let Some(remote) = self.remote.get() {
            remote.ephemeral(addr, &event);
        }
    }

    /// Offers an ephemeral event to the device's session if it is connected here. Never waits;
    /// dropped when the session's queue is full.
    pub fn notify_ephemeral_local(&self, addr: DeviceAddr, event: pb::ServerEvent) -> bool {
        let shard = self.shard(addr).read().expect("router lock");
        shard.get(&addr).is_some_and(|link| link.ephemeral.try_send(Box::new(event)).is_ok())
    }

    /// Tells every session registered here that the server is shutting down
    /// ([`Kick::ShuttingDown`]), leaving them registered while they drain (hints still reach
    /// them, no push goes out for a device still connected). Run once the shutdown token is
    /// cancelled; a session registered after that finds the token cancelled itself.
    ///
    /// Through the kick, not the token: a session's loop then waits on one channel for both,
    /// and a token's wait takes a lock every session shares on each poll.
    pub fn stop_sessions(&self) {
        for shard in &self.shards {
            for link in shard.write().expect("router lock").values_mut() {
                if let Some(kick) = link.kick.take() {
                    let _ = kick.send(Kick::ShuttingDown);
                }
            }
        }
    }

    /// Ends the device's session, here and (cluster mode) on whichever node holds it.
    pub fn kick(&self, addr: DeviceAddr, why: Kick) {
        if !self.kick_local(addr, why) {
            if let Some(remote) = self.remote.get() {
                remote.kick(addr, why);
            }
        }
    }

    /// Ends the device's session if it is connected here; whether it was.
    pub fn kick_local(&self, addr: DeviceAddr, why: Kick) -> bool {
        match self.shard(addr).write().expect("router lock").remove(&addr) {
            Some(link) => {
                link.end(Some(why));
                true
            }
            None => false,
        }
    }

    /// Sets the lagged flag of the device's session and wakes it, so it re-reads its inbox
    /// (cluster mode: an inbox check found entries whose hint may have been lost).
    pub fn poke(&self, addr: DeviceAddr) {
        let shard = self.shard(addr).read().expect("router lock");
        if let Some(link) = shard.get(&addr) {
            link.lagged.store(true, Ordering::Release);
            // Seq 0 is never buffered (every delivered seq is above it): it only wakes the session.
            let _ = link.hints.try_send(Hint { seq: 0, item: Bytes::new() });
        }
    }

    /// The backlog of the device's session, if it is connected here and `pick` takes it (checked
    /// under the lock, so that the common case, a device not over its bound, clones nothing).
    pub fn backlog_if(&self, addr: DeviceAddr, pick: impl Fn(&Backlog) -> bool) -> Option<Arc<Backlog>> {
        let shard = self.shard(addr).read().expect("router lock");
        shard.get(&addr).filter(|l| pick(&l.backlog)).map(|l| l.backlog.clone())
    }

    /// The devices with a session here (a snapshot).
    pub fn devices(&self) -> Vec<DeviceAddr> {
        self.shards.iter().flat_map(|s| s.read().expect("router lock").keys().copied().collect::<Vec<_>>()).collect()
    }

    /// Whether the device has a session on this node.
    pub fn is_connected(&self, addr: DeviceAddr) -> bool {
        self.shard(addr).read().expect("router lock").contains_key(&addr)
    }

    /// Number of registered sessions.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().expect("router lock").len()).sum()
    }

    /// Whether no session is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hints_reach_the_session_and_overflow_sets_lagged() {
        let router = Router::new(2);
        let dev = DeviceAddr::new(1, 1);
        let mut reg = router.register(dev);
        for seq in 1..=3 {
            router.notify(dev, Hint { seq, item: Bytes::new() });
        }
        assert_eq!(reg.hints.recv().await.unwrap().seq, 1);
        assert_eq!(reg.hints.recv().await.unwrap().seq, 2);
        assert!(reg.lagged.load(Ordering::Acquire), "third hint did not fit");
    }

    #[tokio::test]
    async fn a_second_connection_replaces_the_first() {
        let router = Router::new(2);
        let dev = DeviceAddr::new(1, 1);
        let first = router.register(dev);
        let second = router.register(dev);
        assert_eq!(first.kick.await, Ok(Kick::Replaced));
        router.unregister(dev, first.conn_id);
        assert!(router.is_connected(dev), "stale unregister must not remove the new session");
        router.unregister(dev, second.conn_id);
        assert!(router.is_empty());
    }

    #[tokio::test]
    async fn shutdown_kicks_every_session_and_leaves_it_registered_while_it_drains() {
        let router = Arc::new(Router::new(2));
        let (a, b) = (DeviceAddr::new(1, 1), DeviceAddr::new(2, 1));
        let (mut first, second) = (router.register(a), router.register(b));
        let shutdown = CancellationToken::new();
        let stopping = tokio::spawn(stop_sessions_on(router.clone(), shutdown.clone()));
        shutdown.cancel();
        stopping.await.unwrap();
        assert_eq!((&mut first.kick).await, Ok(Kick::ShuttingDown));
        assert_eq!(second.kick.await, Ok(Kick::ShuttingDown));
        router.notify(a, Hint { seq: 1, item: Bytes::new() });
        assert_eq!(first.hints.recv().await.unwrap().seq, 1, "a draining session still hears hints");
        // A later kick finds the kick taken: nothing more to tell.
        assert!(router.kick_local(a, Kick::Revoked));
    }
}
