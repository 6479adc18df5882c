//! Presence: which accounts are online on this node, who watches them, and coalesced pushes.
//!
//! Soft state in memory, never in the store: a restart forgets it (devices reconnect and are
//! online again; `last_seen_ms` of accounts offline at the restart is lost). A change marks the
//! account dirty. The first change of an account that was not pushed since the last tick is
//! pushed at once ([`PresenceHub::push_due`] wakes the loop, [`PresenceHub::flush_ready`]); later
//! ones wait for the ticker (`presence.push_interval_ms`), which sends each subscriber one batch
//! with the latest visible state of every dirty account it watches. So a change is seen within
//! milliseconds, and a hot account costs each watcher at most two pushes per interval however
//! often it flaps. Pushes go through the
//! session's bounded ephemeral channel and are dropped when it is full: the next change resends
//! the whole state. Knows nothing of sockets or the store.
//!
//! The privacy setting (everyone / my contacts / nobody) is durable in the store; the session
//! loads it into the hub before an account's device counts as connected
//! ([`PresenceHub::load_privacy`]), and `SetPresence` writes it to the store before the hub. For
//! "my contacts" the hub caches the (owner, contact) pairs it needs, like blocks: loaded from the
//! store when a subscription involves them, changed by contact operations.
//!
//! Cluster mode: each node knows its own devices. A node reports every change of an account's
//! local state to the other nodes, the first at once and later ones coalesced by the same rule
//! ([`PresenceHub::report_due`], [`PresenceHub::take_ready_local_changes`],
//! [`PresenceHub::take_local_changes`]) and, periodically, all of it
//! ([`PresenceHub::local_snapshot`]) to the other nodes, which keep it per node
//! ([`PresenceHub::set_remote`]) and forget a node's word when it is not repeated in time
//! ([`PresenceHub::expire_remote`]), so a dead node's accounts go offline by themselves.

use std::collections::{HashMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use iris_proto::pb::{self, server_event};
use iris_store::{AccountId, DeviceAddr, DeviceId};
use tokio::sync::{mpsc, Notify};

use crate::router::Ephemeral;

/// Most accounts one connection may watch.
pub const SUBSCRIPTIONS_MAX: usize = 1000;

/// Presence privacy of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Privacy {
    /// Anyone may see online and last seen.
    #[default]
    Everyone,
    /// Nobody else sees anything (offline, last seen unknown).
    Nobody,
    /// Only accounts in the owner's contact list see it; others see what `Nobody` shows.
    Contacts,
}

impl Privacy {
    /// The code the store keeps.
    pub fn code(self) -> u8 {
        match self {
            Self::Everyone => 0,
            Self::Nobody => 1,
            Self::Contacts => 2,
        }
    }

    /// From a stored code (unknown codes: the most private, nobody).
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Self::Everyone,
            2 => Self::Contacts,
            _ => Self::Nobody,
        }
    }
}

#[derive(Default)]
struct Account {
    /// Connected devices: connection id and whether the device is set away.
    devices: HashMap<DeviceId, (u64, bool)>,
    last_seen_ms: u64,
    /// When each device's last session here ended (for operators: `admin/`), at most one entry
    /// per device of the account.
    devices_seen_ms: HashMap<DeviceId, u64>,
    privacy: Privacy,
    /// What other nodes said of this account (cluster mode), by node.
    remote: HashMap<u16, RemoteState>,
}

/// One other node's word on an account.
#[derive(Clone, Copy)]
struct RemoteState {
    online: bool,
    last_seen_ms: u64,
    at: Instant,
}

impl Account {
    /// Online on this node.
    fn local_online(&self) -> bool {
        self.devices.values().any(|&(_, away)| !away)
    }

    /// Online on this node or, by their last word, on another.
    fn online(&self) -> bool {
        self.local_online() || self.remote.values().any(|r| r.online)
    }

    fn last_seen(&self) -> u64 {
        self.remote.values().map(|r| r.last_seen_ms).fold(self.last_seen_ms, u64::max)
    }
}

/// An account's presence on this node, as reported to the other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalPresence {
    /// The account.
    pub account: AccountId,
    /// A device is connected here and not away.
    pub online: bool,
    /// When it was last online here (0: unknown).
    pub last_seen_ms: u64,
    /// Its privacy.
    pub privacy: Privacy,
}

struct Subscriber {
    viewer: AccountId,
    tx: mpsc::Sender<Ephemeral>,
    watching: HashSet<AccountId>,
}

#[derive(Default)]
struct Inner {
    accounts: HashMap<AccountId, Account>,
    /// Watched account → connection ids watching it.
    watchers: HashMap<AccountId, HashSet<u64>>,
    subscribers: HashMap<u64, Subscriber>,
    /// Accounts whose visible state changed since the last flush.
    dirty: HashSet<AccountId>,
    /// Accounts pushed since the last tick: their next change waits for the tick.
    cooling: HashSet<AccountId>,
    /// A dirty account is not cooling: the push loop should run [`PresenceHub::flush_ready`].
    push_now: bool,
    /// (blocker, blocked) pairs known here: loaded from the store when a subscription involves
    /// them, changed by block operations. Presence is hidden both ways between such a pair.
    blocks: HashSet<(AccountId, AccountId)>,
    /// (owner, contact) pairs known here: loaded from the store when a subscription involves
    /// them, changed by contact operations. Drives [`Privacy::Contacts`].
    contacts: HashSet<(AccountId, AccountId)>,
    /// Cluster mode: accounts whose local state changed since the last report to other nodes.
    /// `None` on a single node (nobody would drain it).
    local_changes: Option<HashSet<AccountId>>,
    /// Accounts reported to other nodes since the last report tick.
    local_cooling: HashSet<AccountId>,
    /// A local change is not cooling: the report loop should run
    /// [`PresenceHub::take_ready_local_changes`].
    report_now: bool,
}

impl Inner {
    fn visible(&self, account: AccountId, viewer: AccountId) -> pb::PresenceUpdate {
        let hidden = pb::PresenceUpdate { account_id: account, online: false, last_seen_ms: 0 };
        let Some(a) = self.accounts.get(&account) else { return hidden };
        if self.blocks.contains(&(account, viewer)) || self.blocks.contains(&(viewer, account)) {
            return hidden;
        }
        let shown = match a.privacy {
            Privacy::Everyone => true,
            Privacy::Nobody => viewer == account,
            Privacy::Contacts => viewer == account || self.contacts.contains(&(account, viewer)),
        };
        if !shown {
            return hidden;
        }
        let online = a.online();
        pb::PresenceUpdate { account_id: account, online, last_seen_ms: if online { 0 } else { a.last_seen() } }
    }

    /// Notes a local event of `account` for the next report to other nodes (cluster mode).
    fn note_local(&mut self, account: AccountId) {
        if let Some(c) = &mut self.local_changes {
            c.insert(account);
            self.report_now |= !self.local_cooling.contains(&account);
        }
    }

    /// Marks `account` dirty for its watchers (the caller checked there are some).
    fn mark(&mut self, account: AccountId) {
        self.dirty.insert(account);
        self.push_now |= !self.cooling.contains(&account);
    }

    /// Sends each watcher of `accounts` their latest visible state, one batch per subscriber.
    fn push(&self, accounts: impl IntoIterator<Item = AccountId>) -> usize {
        let mut batches: HashMap<u64, Vec<AccountId>> = HashMap::new();
        for account in accounts {
            for &conn in self.watchers.get(&account).into_iter().flatten() {
                batches.entry(conn).or_default().push(account);
            }
        }
        let mut n_pushed = 0;
        for (conn, accounts) in batches {
            let Some(sub) = self.subscribers.get(&conn) else { continue };
            for account in accounts {
                let update = self.visible(account, sub.viewer);
                let event = pb::ServerEvent { request_id: 0, event: Some(server_event::Event::Presence(update)) };
                // Full: dropped; soft state, the next change resends the whole state.
                if sub.tx.try_send(Box::new(event)).is_ok() {
                    n_pushed += 1;
                }
            }
        }
        n_pushed
    }

    /// Marks a change others may see (a "nobody" account's changes are invisible: not marked).
    fn changed(&mut self, account: AccountId) {
        let visible = self.accounts.get(&account).is_none_or(|a| a.privacy != Privacy::Nobody);
        if visible && self.watchers.contains_key(&account) {
            self.mark(account);
        }
    }
}

/// The node's presence state; see the module doc. One mutex, held only for map updates.
#[derive(Default)]
pub struct PresenceHub {
    inner: Mutex<Inner>,
    /// Wakes the push loop for a change that should not wait for the tick.
    push_wake: Notify,
    /// Wakes the cluster report loop likewise.
    report_wake: Notify,
}

/// The hub's lock; on release it wakes the loops a change asked for.
struct Locked<'a> {
    inner: MutexGuard<'a, Inner>,
    hub: &'a PresenceHub,
}

impl Deref for Locked<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.inner
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if std::mem::take(&mut self.inner.push_now) {
            self.hub.push_wake.notify_one();
        }
        if std::mem::take(&mut self.inner.report_now) {
            self.hub.report_wake.notify_one();
        }
    }
}

impl PresenceHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Locked<'_> {
        Locked { inner: self.inner.lock().unwrap_or_else(PoisonError::into_inner), hub: self }
    }

    /// Whether a device of `account` is connected here (away or not) or another node reports it
    /// online: whether a call to it rings somewhere. Ignores privacy (a ringing call shows it,
    /// as in WhatsApp); callers hide blocked pairs themselves.
    pub fn is_reachable(&self, account: AccountId) -> bool {
        self.lock().accounts.get(&account).is_some_and(|a| !a.devices.is_empty() || a.online())
    }

    /// Sets `account`'s privacy from the store unless the hub already knows the account (then
    /// its value is newer: set by `SetPresence`, which also wrote the store).
    pub fn load_privacy(&self, account: AccountId, privacy: Privacy) {
        self.lock().accounts.entry(account).or_insert_with(|| Account { privacy, ..Account::default() });
    }

    /// A device's session started (`conn_id` from the router): it is online, not away.
    pub fn connected(&self, device: DeviceAddr, conn_id: u64) {
        let mut inner = self.lock();
        inner.note_local(device.account);
        let a = inner.accounts.entry(device.account).or_default();
        let was = a.online();
        a.devices.insert(device.device, (conn_id, false));
        if !was {
            inner.changed(device.account);
        }
    }

    /// A session ended: its subscriptions end, and the device is offline unless a newer
    /// connection replaced it. The account's last device going sets `last_seen_ms`.
    pub fn disconnected(&self, device: DeviceAddr, conn_id: u64, now_ms: u64) {
        let mut inner = self.lock();
        if let Some(sub) = inner.subscribers.remove(&conn_id) {
            for account in sub.watching {
                unwatch(&mut inner.watchers, account, conn_id);
            }
        }
        let Some(a) = inner.accounts.get_mut(&device.account) else { return };
        if a.devices.get(&device.device).is_none_or(|&(c, _)| c != conn_id) {
            return;
        }
        let was = a.online();
        a.devices.remove(&device.device);
        a.devices_seen_ms.insert(device.device, now_ms);
        if a.devices.is_empty() {
            a.last_seen_ms = now_ms;
        }
        if was != a.online() || a.devices.is_empty() {
            inner.changed(device.account);
        }
        inner.note_local(device.account);
    }

    /// Sets the device away (or back) and, when given, the account's privacy.
    pub fn set(&self, device: DeviceAddr, conn_id: u64, away: bool, privacy: Option<Privacy>, now_ms: u64) {
        let mut inner = self.lock();
        inner.note_local(device.account);
        let a = inner.accounts.entry(device.account).or_default();
        let was = a.online();
        let old_privacy = a.privacy;
        a.devices.insert(device.device, (conn_id, away));
        if was && !a.online() {
            a.last_seen_ms = now_ms;
        }
        let now_online = a.online();
        if let Some(p) = privacy {
            a.privacy = p;
        }
        let privacy_changed = a.privacy != old_privacy;
        if privacy_changed && inner.watchers.contains_key(&device.account) {
            // Watchers learn the newly visible (or hidden) state.
            inner.mark(device.account);
        } else if was != now_online {
            inner.changed(device.account);
        }
    }

    /// What this node saw of `account` for an operator, ignoring privacy: when it was last online
    /// (by this node's and the other nodes' last word; 0: unknown), and when each device's last
    /// session here ended.
    pub fn seen(&self, account: AccountId) -> (u64, HashMap<DeviceId, u64>) {
        self.lock().accounts.get(&account).map(|a| (a.last_seen(), a.devices_seen_ms.clone())).unwrap_or_default()
    }

    /// Account deletion: forgets what the hub holds of `account` (devices, last seen, privacy,
    /// and the contact and block pairs naming it); its watchers see it offline.
    pub fn forget_account(&self, account: AccountId) {
        let mut inner = self.lock();
        inner.accounts.remove(&account);
        inner.contacts.retain(|&(a, b)| a != account && b != account);
        inner.blocks.retain(|&(a, b)| a != account && b != account);
        if inner.watchers.contains_key(&account) {
            inner.dirty.insert(account);
        }
        inner.note_local(account);
    }

    /// Records (or forgets) that `owner` keeps `contact` as a contact; when it changes what
    /// `contact` may see of `owner`, `owner`'s watchers get its state again.
    pub fn set_contact(&self, owner: AccountId, contact: AccountId, on: bool) {
        let mut inner = self.lock();
        let changed =
            if on { inner.contacts.insert((owner, contact)) } else { inner.contacts.remove(&(owner, contact)) };
        let matters = inner.accounts.get(&owner).is_some_and(|a| a.privacy == Privacy::Contacts);
        if changed && matters && inner.watchers.contains_key(&owner) {
            inner.mark(owner);
        }
    }

    /// Records (or forgets) that `blocker` blocked `blocked`; watchers of either get the new
    /// visible state at the next flush.
    pub fn set_block(&self, blocker: AccountId, blocked: AccountId, on: bool) {
        let mut inner = self.lock();
        let changed =
            if on { inner.blocks.insert((blocker, blocked)) } else { inner.blocks.remove(&(blocker, blocked)) };
        if changed {
            for account in [blocker, blocked] {
                if inner.watchers.contains_key(&account) {
                    inner.mark(account);
                }
            }
        }
    }

    /// Adds watches for connection `conn_id` of `viewer` and answers their current visible state.
    pub fn subscribe(
        &self,
        viewer: AccountId,
        conn_id: u64,
        tx: &mpsc::Sender<Ephemeral>,
        accounts: &[AccountId],
    ) -> Result<pb::PresenceState, usize> {
        let mut inner = self.lock();
        let current = inner.subscribers.get(&conn_id).map_or(0, |s| s.watching.len());
        let new: HashSet<AccountId> = accounts
            .iter()
            .copied()
            .filter(|a| !inner.subscribers.get(&conn_id).is_some_and(|s| s.watching.contains(a)))
            .collect();
        if current + new.len() > SUBSCRIPTIONS_MAX {
            return Err(current + new.len());
        }
        let sub = inner.subscribers.entry(conn_id).or_insert_with(|| Subscriber {
            viewer,
            tx: tx.clone(),
            watching: HashSet::new(),
        });
        sub.watching.extend(new.iter().copied());
        for &account in &new {
            inner.watchers.entry(account).or_default().insert(conn_id);
        }
        let accounts = accounts.iter().map(|&a| inner.visible(a, viewer)).collect();
        Ok(pb::PresenceState { accounts })
    }

    /// Removes watches of connection `conn_id`.
    pub fn unsubscribe(&self, conn_id: u64, accounts: &[AccountId]) {
        let mut inner = self.lock();
        let Some(sub) = inner.subscribers.get_mut(&conn_id) else { return };
        let removed: Vec<AccountId> = accounts.iter().copied().filter(|a| sub.watching.remove(a)).collect();
        for account in removed {
            unwatch(&mut inner.watchers, account, conn_id);
        }
    }

    /// The tick: sends every subscriber the latest state of the dirty accounts it watches, one
    /// batch (event per account, one channel slot each) per subscriber; the accounts pushed now
    /// cool until the next tick. Returns the pushes made.
    pub fn flush(&self) -> usize {
        let mut inner = self.lock();
        let dirty: HashSet<AccountId> = std::mem::take(&mut inner.dirty);
        let n_pushed = inner.push(dirty.iter().copied());
        inner.cooling = dirty;
        n_pushed
    }

    /// Pushes at once the dirty accounts not pushed since the last tick (their first change),
    /// which then cool until the tick. Returns the pushes made.
    pub fn flush_ready(&self) -> usize {
        let mut inner = self.lock();
        let Inner { dirty, cooling, .. } = &mut *inner;
        let ready: Vec<AccountId> = dirty.iter().copied().filter(|a| !cooling.contains(a)).collect();
        for account in &ready {
            dirty.remove(account);
            cooling.insert(*account);
        }
        inner.push(ready)
    }

    /// Resolves when a change is due before the next tick ([`PresenceHub::flush_ready`]).
    pub async fn push_due(&self) {
        self.push_wake.notified().await;
    }

    /// Cluster mode: resolves when a local change is due to the other nodes before the next
    /// report tick ([`PresenceHub::take_ready_local_changes`]).
    pub async fn report_due(&self) {
        self.report_wake.notified().await;
    }

    /// Cluster mode: start recording local changes for [`take_local_changes`](Self::take_local_changes).
    pub fn enable_cluster_reports(&self) {
        self.lock().local_changes.get_or_insert_with(HashSet::new);
    }

    /// The report tick: the local state of every account whose local state changed since the
    /// last report; those accounts cool until the next tick.
    pub fn take_local_changes(&self) -> Vec<LocalPresence> {
        let mut inner = self.lock();
        let changed: HashSet<AccountId> = inner.local_changes.as_mut().map(std::mem::take).unwrap_or_default();
        let reports = changed.iter().filter_map(|&id| inner.accounts.get(&id).map(|a| local_presence(id, a))).collect();
        inner.local_cooling = changed;
        reports
    }

    /// The local state of the changed accounts not reported since the last report tick (their
    /// first change, sent at once); they cool until the tick.
    pub fn take_ready_local_changes(&self) -> Vec<LocalPresence> {
        let mut inner = self.lock();
        let Inner { local_changes, local_cooling, accounts, .. } = &mut *inner;
        let Some(changes) = local_changes else { return Vec::new() };
        let ready: Vec<AccountId> = changes.iter().copied().filter(|a| !local_cooling.contains(a)).collect();
        ready
            .into_iter()
            .filter_map(|id| {
                changes.remove(&id);
                local_cooling.insert(id);
                accounts.get(&id).map(|a| local_presence(id, a))
            })
            .collect()
    }

    /// The local state of every account with a device connected here.
    pub fn local_snapshot(&self) -> Vec<LocalPresence> {
        let inner = self.lock();
        inner.accounts.iter().filter(|(_, a)| !a.devices.is_empty()).map(|(&id, a)| local_presence(id, a)).collect()
    }

    /// Records what node `node` says of `account`; watchers get the change at the next flush.
    pub fn set_remote(&self, account: AccountId, node: u16, online: bool, last_seen_ms: u64, privacy: Privacy) {
        let mut inner = self.lock();
        let a = inner.accounts.entry(account).or_default();
        let (was, old_privacy) = (a.online(), a.privacy);
        a.remote.insert(node, RemoteState { online, last_seen_ms, at: Instant::now() });
        a.privacy = privacy;
        if (a.online() != was || a.privacy != old_privacy) && inner.watchers.contains_key(&account) {
            inner.mark(account);
        }
    }

    /// Forgets what other nodes said longer than `max_age` ago (a node that stopped reporting
    /// is gone, or its account went offline there and is no longer repeated), keeping the
    /// latest last-seen time; returns how many accounts went offline by it.
    pub fn expire_remote(&self, max_age: Duration) -> usize {
        let mut inner = self.lock();
        let now = Instant::now();
        let mut changed = Vec::new();
        for (&id, a) in inner.accounts.iter_mut() {
            if a.remote.is_empty() {
                continue;
            }
            let was = a.online();
            let seen = a.last_seen();
            a.remote.retain(|_, r| now.duration_since(r.at) <= max_age);
            a.last_seen_ms = a.last_seen_ms.max(seen);
            if was && !a.online() {
                changed.push(id);
            }
        }
        let n = changed.len();
        for id in changed {
            if inner.watchers.contains_key(&id) {
                inner.mark(id);
            }
        }
        n
    }

    /// Number of accounts with presence state and of subscribing connections (for tests).
    pub fn sizes(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.accounts.len(), inner.subscribers.len())
    }
}

fn local_presence(account: AccountId, a: &Account) -> LocalPresence {
    LocalPresence { account, online: a.local_online(), last_seen_ms: a.last_seen_ms, privacy: a.privacy }
}

fn unwatch(watchers: &mut HashMap<AccountId, HashSet<u64>>, account: AccountId, conn_id: u64) {
    if let Some(w) = watchers.get_mut(&account) {
        w.remove(&conn_id);
        if w.is_empty() {
            watchers.remove(&account);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_are_coalesced_into_one_push_per_flush() {
        let hub = PresenceHub::new();
        let (tx, mut rx) = mpsc::channel(16);
        let bob = DeviceAddr::new(2, 1);
        let state = hub.subscribe(1, 100, &tx, &[2]).unwrap();
        assert!(!state.accounts[0].online);
        for i in 0..10 {
            hub.connected(bob, 200 + i);
            hub.disconnected(bob, 200 + i, 1000 + i);
        }
        hub.connected(bob, 300);
        assert_eq!(hub.flush(), 1);
        let Some(server_event::Event::Presence(p)) = rx.recv().await.unwrap().event else { panic!() };
        assert!(p.online);
        assert_eq!(hub.flush(), 0, "nothing changed since");
    }

    // Paused time: "not woken within 50 ms" is decided by the clock jumping, not by waiting.
    #[tokio::test(start_paused = true)]
    async fn a_first_change_is_pushed_at_once_and_later_ones_wait_for_the_tick() {
        // Proves: the loop is woken for a change of an account not pushed since the last tick,
        // `flush_ready` pushes it; a second change before the tick does not wake it and waits for
        // `flush`; an account quiet for a whole tick is immediate again.
        let hub = PresenceHub::new();
        let (tx, mut rx) = mpsc::channel(16);
        let bob = DeviceAddr::new(2, 1);
        hub.subscribe(1, 100, &tx, &[2]).unwrap();
        let woken = || tokio::time::timeout(Duration::from_millis(50), hub.push_due());
        assert!(woken().await.is_err(), "nothing changed yet");

        hub.connected(bob, 7);
        assert!(woken().await.is_ok(), "a first change wakes the push loop");
        assert_eq!(hub.flush_ready(), 1);
        let Some(server_event::Event::Presence(p)) = rx.recv().await.unwrap().event else { panic!() };
        assert!(p.online);

        hub.set(bob, 7, true, None, 50);
        assert!(woken().await.is_err(), "pushed since the last tick: it cools");
        assert_eq!(hub.flush_ready(), 0);
        assert_eq!(hub.flush(), 1, "the tick carries it");
        let Some(server_event::Event::Presence(p)) = rx.recv().await.unwrap().event else { panic!() };
        assert!(!p.online);

        hub.set(bob, 7, false, None, 60);
        assert_eq!(hub.flush_ready(), 0, "pushed at the last tick, still cooling");
        assert_eq!(hub.flush(), 1);
        assert_eq!(hub.flush(), 0, "a quiet tick ends the cooling");
        hub.set(bob, 7, true, None, 70);
        assert!(woken().await.is_ok());
        assert_eq!(hub.flush_ready(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_local_change_is_reported_to_other_nodes_at_once() {
        let hub = PresenceHub::new();
        hub.enable_cluster_reports();
        let bob = DeviceAddr::new(2, 1);
        let woken = || tokio::time::timeout(Duration::from_millis(50), hub.report_due());
        hub.connected(bob, 7);
        assert!(woken().await.is_ok(), "a first change wakes the report loop");
        let reports = hub.take_ready_local_changes();
        assert_eq!(reports.len(), 1);
        assert!(reports[0].online);
        hub.set(bob, 7, true, None, 5);
        assert!(woken().await.is_err(), "reported since the last tick: it waits");
        assert!(hub.take_ready_local_changes().is_empty());
        let reports = hub.take_local_changes();
        assert_eq!(reports.len(), 1, "the tick carries it");
        assert!(!reports[0].online);
    }

    #[test]
    fn a_hot_account_costs_each_of_10k_watchers_one_push_per_flush() {
        // 10k subscribers to one account, 1,000 changes between flushes: one push each, and the
        // hub's memory is the watch sets (not the changes).
        let hub = PresenceHub::new();
        let receivers: Vec<_> = (0..10_000u64)
            .map(|conn| {
                let (tx, rx) = mpsc::channel(4);
                hub.subscribe(100 + conn, conn, &tx, &[1]).unwrap();
                rx
            })
            .collect();
        let hot = DeviceAddr::new(1, 1);
        for i in 0..1000 {
            hub.set(hot, 50_000, i % 2 == 1, None, i);
        }
        assert_eq!(hub.flush(), 10_000);
        assert_eq!(hub.flush(), 0);
        for i in 0..10 {
            hub.set(hot, 50_000, i % 2 == 0, None, i);
            hub.flush();
        }
        // Each receiver holds at most its channel's capacity: the rest was dropped (soft state).
        assert!(receivers.iter().all(|rx| rx.len() == 4));
        assert_eq!(hub.sizes(), (1, 10_000));
    }

    #[test]
    fn contacts_privacy_shows_the_owners_contacts_only() {
        let hub = PresenceHub::new();
        let (tx, _rx) = mpsc::channel(16);
        let alice = DeviceAddr::new(1, 1);
        hub.connected(alice, 7);
        hub.set(alice, 7, false, Some(Privacy::Contacts), 5);
        hub.set_contact(1, 2, true);
        let online = pb::PresenceUpdate { account_id: 1, online: true, last_seen_ms: 0 };
        let hidden = pb::PresenceUpdate { account_id: 1, online: false, last_seen_ms: 0 };
        assert_eq!(hub.subscribe(2, 100, &tx, &[1]).unwrap().accounts, vec![online]);
        assert_eq!(hub.subscribe(3, 101, &tx, &[1]).unwrap().accounts, vec![hidden]);
        // The contact relation is one-way: 2 keeping 1 as a contact reveals nothing of 1 to 3.
        hub.set_contact(2, 3, true);
        assert_eq!(hub.subscribe(3, 101, &tx, &[1]).unwrap().accounts, vec![hidden]);
        hub.set_contact(1, 2, false);
        assert_eq!(hub.subscribe(2, 100, &tx, &[1]).unwrap().accounts, vec![hidden]);
        assert_eq!(hub.subscribe(1, 102, &tx, &[1]).unwrap().accounts, vec![online]);
    }

    #[test]
    fn nobody_is_never_revealed_and_the_bound_holds() {
        let hub = PresenceHub::new();
        let (tx, _rx) = mpsc::channel(16);
        let bob = DeviceAddr::new(2, 1);
        hub.set(bob, 7, false, Some(Privacy::Nobody), 5);
        let state = hub.subscribe(1, 100, &tx, &[2]).unwrap();
        assert_eq!(state.accounts[0], pb::PresenceUpdate { account_id: 2, online: false, last_seen_ms: 0 });
        hub.disconnected(bob, 7, 9);
        assert_eq!(hub.flush(), 0);
        let many: Vec<u64> = (10..10 + SUBSCRIPTIONS_MAX as u64).collect();
        assert!(hub.subscribe(1, 100, &tx, &many).is_err());
    }

    #[test]
    fn other_nodes_words_count_until_they_expire() {
        // Cluster mode: node 2 says account 5 is online there; watchers here see it online, then,
        // once node 2 stops repeating it, offline with the last time it was seen.
        let hub = PresenceHub::new();
        hub.enable_cluster_reports();
        let (tx, _rx) = mpsc::channel(16);
        hub.subscribe(1, 100, &tx, &[5]).unwrap();
        hub.set_remote(5, 2, true, 0, Privacy::Everyone);
        let online = pb::PresenceUpdate { account_id: 5, online: true, last_seen_ms: 0 };
        assert_eq!(hub.subscribe(1, 100, &tx, &[5]).unwrap().accounts, vec![online]);
        hub.set_remote(5, 2, false, 777, Privacy::Everyone);
        assert_eq!(hub.flush(), 1);
        hub.set_remote(5, 2, true, 777, Privacy::Everyone);
        assert_eq!(hub.expire_remote(Duration::ZERO), 1, "node 2 went silent");
        let offline = pb::PresenceUpdate { account_id: 5, online: false, last_seen_ms: 777 };
        assert_eq!(hub.subscribe(1, 100, &tx, &[5]).unwrap().accounts, vec![offline]);
        // A remote "nobody" hides the account like a local one.
        hub.set_remote(5, 3, true, 0, Privacy::Nobody);
        let hidden = pb::PresenceUpdate { account_id: 5, online: false, last_seen_ms: 0 };
        assert_eq!(hub.subscribe(1, 100, &tx, &[5]).unwrap().accounts, vec![hidden]);
    }

    #[test]
    fn local_changes_are_reported_once_for_the_other_nodes() {
        let hub = PresenceHub::new();
        hub.enable_cluster_reports();
        let bob = DeviceAddr::new(2, 1);
        hub.connected(bob, 7);
        hub.set(bob, 7, true, None, 5);
        let reports = hub.take_local_changes();
        assert_eq!(reports.len(), 1, "one report per account per round: {reports:?}");
        assert!(!reports[0].online, "the latest local state: away");
        assert!(hub.take_local_changes().is_empty());
        hub.disconnected(bob, 7, 9);
        assert_eq!(hub.take_local_changes()[0].last_seen_ms, 9);
        assert!(hub.local_snapshot().is_empty(), "no device here any more");
    }
}
