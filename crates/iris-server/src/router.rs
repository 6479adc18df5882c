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
//!
//! Receipts are hinted without waking their session ([`Router::notify_receipt`]): they wait for
//! the session's next wake-up, or for the end of their hold (`held_receipts.rs`).

use foldhash::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use iris_proto::pb;
use iris_store::DeviceAddr;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::backlog::Backlog;
use crate::held_receipts::{Held, HeldHints, Releases};

const SHARDS: usize = 16;

/// Ephemeral events (typing, presence pushes) a session queues; more are dropped (soft state).
const EPHEMERAL_QUEUE_LEN: usize = 256;

/// An ephemeral event as queued: boxed, because a channel allocates its first block of 32 slots
/// when it is created, and 32 unboxed `ServerEvent`s cost every idle connection ~4 KiB.
pub type Ephemeral = Box<pb::ServerEvent>;

/// A committed inbox entry for a session to push. The default, seq 0, is never buffered: it only
/// wakes the session.
#[derive(Debug, Clone, Default)]
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
    /// Nothing declined.
    pub const NONE: Self = Self(0);

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
    /// Receipt hints waiting for the session's next wake-up.
    held: Arc<HeldHints<Hint>>,
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
    /// Receipt hints for this device that woke nobody: taken on every wake-up, before `hints`.
    pub held: Arc<HeldHints<Hint>>,
    /// The receipt kinds the connection declined (its delivery leaves them out).
    pub unwanted: UnwantedReceipts,
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

/// Wakes the sessions of `router` whose held receipts are due, until `shutdown`
/// ([`Router::notify_receipt`]).
pub async fn release_receipts_on(router: Arc<Router>, shutdown: CancellationToken) {
    let releases = router.releases.clone();
    releases.run(shutdown).await;
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
    /// When sessions holding receipt hints are woken.
    releases: Arc<Releases<Hint>>,
    /// Set once in cluster mode.
    remote: OnceLock<Arc<dyn RemoteRoute>>,
    /// Set once when push notifications run. Weak: the hook (push) holds this router, and a
    /// cycle would keep both, and with them the store, alive after shutdown.
    offline: OnceLock<Weak<dyn Offline>>,
}

impl Router {
    /// A router whose sessions each queue at most `hint_queue_len` hints (and as many receipt
    /// hints), and hold receipts for `receipt_hold` (`session.receipt_hold_ms`; zero: receipts
    /// are hinted like anything else). Receipts are released by [`release_receipts_on`].
    pub fn new(hint_queue_len: usize, receipt_hold: Duration) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            next_conn_id: AtomicU64::new(1),
            hint_queue_len: hint_queue_len.max(1),
            releases: Arc::new(Releases::new(receipt_hold)),
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
        let held = Arc::new(HeldHints::default());
        let link = Link {
            conn_id,
            unwanted,
            hints: hint_tx,
            held: held.clone(),
            ephemeral: ephemeral_tx.clone(),
            lagged: lagged.clone(),
            kick: Some(kick_tx),
            backlog: backlog.clone(),
        };
        let old = self.shard(addr).write().expect("router lock").insert(addr, link);
        if let Some(old) = old {
            old.end(Some(Kick::Replaced));
        }
        Registration { conn_id, hints, held, unwanted, ephemeral, ephemeral_tx, lagged, kick, backlog }
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
            self.notify_elsewhere(addr, hint);
        }
    }

    /// A hint for a device with no session here: to the node holding it (cluster mode), else
    /// to the offline hook (push).
    fn notify_elsewhere(&self, addr: DeviceAddr, hint: Hint) {
        match self.remote.get() {
            Some(remote) => remote.hint(addr, hint),
            None => self.wake_offline(addr, &hint.item),
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

    /// [`Router::notify`] for a receipt: a session connected here is not woken for it. The hint
    /// waits until the session wakes for something else, or until its hold is over
    /// (`held_receipts.rs`). Never waits.
    pub fn notify_receipt(&self, addr: DeviceAddr, hint: Hint) {
        if !self.releases.holds() {
            return self.notify(addr, hint);
        }
        let now = tokio::time::Instant::now();
        let shard = self.shard(addr).read().expect("router lock");
        let Some(link) = shard.get(&addr) else {
            drop(shard);
            return self.notify_elsewhere(addr, hint);
        };
        link.backlog.hinted(hint.seq);
        match link.held.push(hint, now, self.hint_queue_len) {
            Held::First => self.releases.schedule(now, link.held.clone(), link.hints.clone()),
            Held::Behind => {}
            // The first one held has its release scheduled: the session wakes and reads then.
            Held::Full => link.lagged.store(true, Ordering::Release),
        }
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
        let router = Router::new(2, Duration::ZERO);
        let dev = DeviceAddr::new(1, 1);
        let mut reg = router.register(dev);
        for seq in 1..=3 {
            router.notify(dev, Hint { seq, item: Bytes::new() });
        }
        assert_eq!(reg.hints.recv().await.unwrap().seq, 1);
        assert_eq!(reg.hints.recv().await.unwrap().seq, 2);
        assert!(reg.lagged.load(Ordering::Acquire), "third hint did not fit");
    }

    #[tokio::test(start_paused = true)]
    async fn a_receipt_waits_for_the_session_or_for_its_hold() {
        let hold = Duration::from_millis(20);
        let router = Arc::new(Router::new(2, hold));
        let shutdown = CancellationToken::new();
        let releasing = tokio::spawn(release_receipts_on(router.clone(), shutdown.clone()));
        let dev = DeviceAddr::new(1, 1);
        let mut reg = router.register(dev);
        let start = tokio::time::Instant::now();
        router.notify_receipt(dev, Hint { seq: 1, item: Bytes::new() });
        router.notify_receipt(dev, Hint { seq: 2, item: Bytes::new() });
        router.notify_receipt(dev, Hint { seq: 3, item: Bytes::new() });
        assert!(reg.hints.try_recv().is_err(), "nothing woke the session");
        assert!(reg.lagged.load(Ordering::Acquire), "the third did not fit");
        // The hold is over: the session is woken (seq 0) and finds both held receipts.
        assert_eq!(reg.hints.recv().await.unwrap().seq, 0);
        assert!(start.elapsed() >= hold);
        let mut held = Vec::new();
        reg.held.take_into(&mut held);
        assert_eq!(held.iter().map(|(h, _)| h.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert!(held.iter().all(|&(_, at)| at == start), "each stamped with when it came");
        // Without a hold, a receipt is a hint like any other; with no session, nothing is held.
        let plain = Router::new(2, Duration::ZERO);
        let mut reg = plain.register(dev);
        plain.notify_receipt(dev, Hint { seq: 1, item: Bytes::new() });
        assert_eq!(reg.hints.try_recv().unwrap().seq, 1);
        router.notify_receipt(DeviceAddr::new(2, 1), Hint { seq: 1, item: Bytes::new() });
        shutdown.cancel();
        releasing.await.unwrap();
    }

    #[tokio::test]
    async fn a_second_connection_replaces_the_first() {
        let router = Router::new(2, Duration::ZERO);
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
        let router = Arc::new(Router::new(2, Duration::ZERO));
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
