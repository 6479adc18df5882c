//! Groups on fjall: one versioned record per group, a member index (account ‖ group), an
//! invite index (token → group), shared payloads (msg id ‖ group → payload) and receipts
//! (msg id ‖ group ‖ account → delivered ‖ read, with account 0 holding the sender and the
//! counters as of the send and account `u64::MAX` the recipient list). A send writes two
//! receipt records whatever the group's size (the counters and the list); a recipient's own
//! row is staged when it first delivers or reads (the counts are counted from the rows when
//! read, not rewritten per mark), and settles into its message's block of rows (`receipt_blocks.rs`,
//! account `u64::MAX - 1`), or as a row of its own when it comes late. (Messages sent before
//! the list existed have a row per recipient from the start; every layout is read.)
//! Every write to these keyspaces goes through the inbox log (so recovery replays them in the
//! order they were made): group records change under one mutex with a version check, as a synced
//! batch of their own or with their events; payloads and receipts are staged for the next batch.
//! Message-keyed records start with the server message id, whose top bits are its time, so
//! expiry is a range delete from the start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use fixedbitset::FixedBitSet;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::codec::{Reader, RECORD_V1};
use super::log::KvWrite;
use super::receipt_blocks::{self, BLOCK, COUNTERS, RECIPIENTS};
use super::staged::Staged;
use super::{keys, space, unavailable, FjallStore, SideWriter};
use crate::{
    AccountId, AppendRequest, Group, GroupId, GroupMember, GroupReceiptRow, GroupRole, GroupSettings, GroupStore,
    PendingAppend, PendingJoin, ReceiptProgress, StoreError, StoreResult,
};

/// Meta key of the next group id to hand out.
const NEXT_GROUP_ID: &[u8] = b"next_group_id";
/// Bytes of recent group messages' receipt states kept in memory ([`ReceiptState::cost`]), so
/// that a member's mark reads nothing from the store: a 1024-member message whose recipients
/// it shares with its group's other messages holds ~400 bytes, so ~20,000 such messages fit,
/// and a member thousands of messages behind still marks from memory. Past this the oldest
/// messages' states go first (message ids start with their time). A mark of a message not held
/// rebuilds its state from every record of the message (`scan_receipts`), which costs as much
/// as a few hundred marks: when the cache held 256 such messages (24 bytes per recipient, the
/// same 8 MiB), members that fell that far behind made every one of their marks a rebuild and
/// the server could not catch up.
const RECEIPT_STATE_BYTES: usize = 8 << 20;
/// Most receipt records held in memory, pending and logged (see [`Staged`]; ~120 bytes each,
/// so ~30 MiB): a settle is asked for at a quarter of it, and past it a mark is refused as
/// overloaded (its ack is retried by redelivery).
const STAGED_RECEIPTS_MAX: usize = 262_144;
/// How many of the newest cached receipt states a new group message looks through for one of
/// its group whose recipients it can share (other groups' messages come between).
const ROSTER_LOOKBACK: usize = 8;
/// Most group payloads held in memory, pending and logged (≤ 64 KiB each, so ≤ 64 MiB); past
/// this a send waits for a settle.
const STAGED_PAYLOADS_MAX: usize = 1024;

/// One group message's receipts as marks need them: who of its recipients delivered and who
/// read it. Kept in [`Groups`]' cache, always equal to what the store holds
/// (staged changes included), since every change to a message's receipts goes through
/// [`Groups::mark`] under the groups lock. The times are not kept (a read mark of a delivered
/// row looks its delivery time up, [`Groups::row_of`]): two bits per recipient, not 24
/// bytes, is what lets the cache hold the thousands of messages a lagging member still acks.
struct ReceiptState {
    sender: AccountId,
    /// The recipients, sorted: each mark searches them. Shared by a group's messages with the
    /// same recipients ([`ReceiptStates::roster`]), so a large group's marks search one array
    /// the CPU's caches keep, and a message's state costs its bits, not its list.
    accounts: Arc<[AccountId]>,
    /// Bit `i`: `accounts[i]` has delivered the message.
    delivered: FixedBitSet,
    /// Bit `i`: `accounts[i]` has read it (reading implies delivery).
    read: FixedBitSet,
    /// What this state holds in memory besides its recipient list (see [`ReceiptState::charge`]).
    cost: usize,
}

impl ReceiptState {
    /// The state of `rows` (sorted by account, one per recipient) over `accounts` (theirs).
    fn new(sender: AccountId, rows: &[GroupReceiptRow], accounts: Arc<[AccountId]>) -> Self {
        let mut state = Self::started(sender, accounts);
        for (i, row) in rows.iter().enumerate() {
            state.delivered.set(i, row.delivered_at_ms != 0);
            state.read.set(i, row.read_at_ms != 0);
        }
        state
    }

    /// A just-started message's state: every recipient of `accounts` (sorted) unmarked.
    fn started(sender: AccountId, accounts: Arc<[AccountId]>) -> Self {
        let bits = FixedBitSet::with_capacity(accounts.len());
        let cost = std::mem::size_of::<Self>() + 2 * std::mem::size_of_val(bits.as_slice()) + RECEIPT_STATE_ENTRY_BYTES;
        Self { sender, accounts, delivered: bits.clone(), read: bits, cost }
    }

    /// What keeping this state costs while it is the only holder of its recipient list (that
    /// is when the list comes and goes with it): its own bytes, and the list's when alone.
    fn charge(&self) -> usize {
        match Arc::strong_count(&self.accounts) {
            1 => self.cost + std::mem::size_of_val(&*self.accounts),
            _ => self.cost,
        }
    }
}

/// What a state's place in [`ReceiptStates`]' map costs besides the state (its key, and a
/// share of the tree's nodes).
const RECEIPT_STATE_ENTRY_BYTES: usize = 32;

/// Receipt states by (message, group), oldest message first, within [`RECEIPT_STATE_BYTES`].
struct ReceiptStates {
    states: std::collections::BTreeMap<(u64, GroupId), ReceiptState>,
    /// The states' [`ReceiptState::cost`]s, summed.
    bytes: usize,
    /// Most `bytes` kept ([`RECEIPT_STATE_BYTES`]; smaller in tests).
    budget: usize,
    /// Accounts erased (or being erased) since the store opened: no mark stages a row of
    /// theirs or a change to a message they sent, so none lands after the erasure's scan.
    erased: std::collections::HashSet<AccountId>,
}

impl Default for ReceiptStates {
    fn default() -> Self {
        Self { states: Default::default(), bytes: 0, budget: RECEIPT_STATE_BYTES, erased: Default::default() }
    }
}

impl ReceiptStates {
    fn get_mut(&mut self, msg: u64, group: GroupId) -> Option<&mut ReceiptState> {
        self.states.get_mut(&(msg, group))
    }

    /// The recipient list of a cached message of `group` near `msg` (among the
    /// [`ROSTER_LOOKBACK`] states on either side) when it is `accounts`: a state for `msg`
    /// shares it. A new message finds its group's newest one; a rebuilt old one, its neighbours.
    fn roster(&self, msg: u64, group: GroupId, accounts: &[AccountId]) -> Option<Arc<[AccountId]>> {
        let before = self.states.range(..(msg, group)).rev().take(ROSTER_LOOKBACK);
        let after = self.states.range((msg, group)..).take(ROSTER_LOOKBACK);
        let (_, near) = before.chain(after).find(|((_, g), _)| *g == group)?;
        (*near.accounts == *accounts).then(|| Arc::clone(&near.accounts))
    }

    /// Keeps `state`, dropping the oldest messages' states while over the budget (never the
    /// one just kept). A recipient list is counted once, whichever states share it: added with
    /// the state that brings it, taken off with the last state holding it.
    fn insert(&mut self, msg: u64, group: GroupId, state: ReceiptState) {
        self.bytes += state.charge();
        if let Some(old) = self.states.insert((msg, group), state) {
            self.bytes -= old.charge();
        }
        while self.bytes > self.budget {
            let mut keys = self.states.keys().copied();
            let oldest = match keys.next() {
                Some(key) if key == (msg, group) => keys.next(),
                key => key,
            };
            let Some(oldest) = oldest else { break };
            let old = self.states.remove(&oldest).expect("a key of the map");
            self.bytes -= old.charge();
        }
    }

    /// Forgets the states of messages with ids below `before`.
    fn expire(&mut self, before: u64) {
        let kept = self.states.split_off(&(before, 0));
        let mut dropped = std::mem::replace(&mut self.states, kept);
        // One by one, so the last of the states sharing a list is charged for it.
        while let Some((_, old)) = dropped.pop_first() {
            self.bytes -= old.charge();
        }
    }

    /// Forgets every state (erasure: they may name the account), keeping the erased accounts.
    fn clear(&mut self) {
        self.states.clear();
        self.bytes = 0;
    }
}

/// Group-side state of [`FjallStore`].
pub(super) struct Groups {
    db: Database,
    meta: Keyspace,
    /// Group id → group record.
    groups: Keyspace,
    /// Account ‖ group → empty: the groups of an account.
    members: Keyspace,
    /// Invite token → group id.
    invites: Keyspace,
    /// Server msg id ‖ group → payload.
    payloads: Keyspace,
    /// Server msg id ‖ group ‖ account → delivered ‖ read (account 0: sender ‖ n ‖ 0 ‖ 0, the
    /// counts as of the send; `u64::MAX`: the recipient list; `u64::MAX − 1`: a block of rows).
    receipts: Keyspace,
    /// Receipt rows and counters changed by acks and reads, waiting for the committer's next
    /// batch (`staged.rs`): every member's ack of every group message changes two records.
    staged_receipts: Arc<Staged>,
    /// Payloads of group messages, waiting for the batch of their references.
    staged_payloads: Arc<Staged>,
    /// Serialises group record changes and receipt counters (read-check-write sequences).
    lock: Mutex<()>,
    /// Records queued with their events but not yet committed: reads see them at once, so the
    /// next change of the same group checks its version against them.
    queued: Mutex<HashMap<GroupId, Group>>,
    /// Recent messages' receipt states (see [`RECEIPT_STATE_BYTES`]); taken under `lock`.
    receipt_states: Mutex<ReceiptStates>,
}

impl Groups {
    pub(super) fn open(db: &Database, meta: Keyspace, max_memtable_bytes: u64) -> StoreResult<Self> {
        let open = |name: &str| {
            db.keyspace(name, || KeyspaceCreateOptions::default().max_memtable_size(max_memtable_bytes))
                .map_err(unavailable)
        };
        let receipts = open("group_receipts")?;
        Ok(Self {
            staged_receipts: Arc::new(
                Staged::new(space::GROUP_RECEIPTS, STAGED_RECEIPTS_MAX).settled_by(receipt_blocks::settle),
            ),
            staged_payloads: Arc::new(Staged::new(space::GROUP_PAYLOADS, STAGED_PAYLOADS_MAX)),
            receipts,
            groups: open("groups")?,
            members: open("group_members")?,
            invites: open("group_invites")?,
            payloads: open("group_payloads")?,
            db: db.clone(),
            meta,
            lock: Mutex::new(()),
            queued: Mutex::default(),
            receipt_states: Mutex::default(),
        })
    }

    /// The stagings the committer drains: receipt records and payloads.
    pub(super) fn staged(&self) -> [Arc<Staged>; 2] {
        [Arc::clone(&self.staged_receipts), Arc::clone(&self.staged_payloads)]
    }

    /// The side keyspaces the log writes for groups, by space number.
    pub(super) fn spaces(&self) -> Vec<(u8, Keyspace)> {
        vec![
            (space::GROUPS, self.groups.clone()),
            (space::GROUP_MEMBERS, self.members.clone()),
            (space::GROUP_INVITES, self.invites.clone()),
            (space::GROUP_PAYLOADS, self.payloads.clone()),
            (space::GROUP_RECEIPTS, self.receipts.clone()),
            (space::META, self.meta.clone()),
        ]
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Deletes keys outside the log (expiry: a delete lost in a crash is redone by the next
    /// sweep, and a write replayed from the log is expired again).
    fn delete(&self, ks: &Keyspace, keys: &[fjall::Slice]) -> StoreResult<()> {
        let mut batch = self.db.batch();
        for key in keys {
            batch.remove(ks, key.clone());
        }
        batch.durability(Some(PersistMode::Buffer)).commit().map_err(unavailable)
    }

    fn get(&self, id: GroupId) -> StoreResult<Option<Group>> {
        if let Some(g) = self.queued.lock().unwrap_or_else(PoisonError::into_inner).get(&id) {
            return Ok(Some(g.clone()));
        }
        let value = self.groups.get(id.to_be_bytes()).map_err(unavailable)?;
        value.map(|v| decode_group(id, &v)).transpose()
    }

    /// Blocking (the caller is on a blocking thread): a fresh id, the counter moved past it
    /// durably (through the log) before it is returned.
    fn reserve_id(&self, log: &SideWriter) -> StoreResult<GroupId> {
        let _guard = self.lock();
        let next = self.meta.get(NEXT_GROUP_ID).map_err(unavailable)?;
        let id = match next {
            Some(v) => u64::from_be_bytes(keys::array(&v)?),
            None => 1,
        };
        log.write_blocking(vec![put(space::META, NEXT_GROUP_ID, &(id + 1).to_be_bytes())])?;
        Ok(id)
    }

    /// Blocking, like [`reserve_id`](Self::reserve_id).
    fn update(&self, group: &Group, log: &SideWriter) -> StoreResult<bool> {
        let _guard = self.lock();
        let Some(old) = self.follows(group)? else { return Ok(false) };
        let mut writes = Vec::new();
        self.write(&mut writes, old.as_ref(), group);
        log.write_blocking(writes)?;
        Ok(true)
    }

    /// The stored record `group` replaces, when its version follows that record's, or `None`
    /// inside when it creates a group (version 1, no record yet: a reserved id); `None` when
    /// the version moved. The caller holds the lock.
    fn follows(&self, group: &Group) -> StoreResult<Option<Option<Group>>> {
        let old = self.get(group.id)?;
        let fits = match &old {
            Some(old) => old.version + 1 == group.version,
            None => group.version == 1,
        };
        Ok(fits.then_some(old))
    }

    /// Checks the version and makes `group` visible to reads; returns the writes to commit with
    /// its events, or `None` when the version moved.
    fn prepare_update(&self, group: &Group) -> StoreResult<Option<Vec<KvWrite>>> {
        let _guard = self.lock();
        let Some(old) = self.follows(group)? else { return Ok(None) };
        self.queued.lock().unwrap_or_else(PoisonError::into_inner).insert(group.id, group.clone());
        let mut writes = Vec::new();
        self.write(&mut writes, old.as_ref(), group);
        Ok(Some(writes))
    }

    /// Forgets a queued record once its commit is over (the store now answers reads), unless a
    /// later version was queued meanwhile.
    fn settle(&self, id: GroupId, version: u64) {
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        if queued.get(&id).is_some_and(|g| g.version == version) {
            queued.remove(&id);
        }
    }

    /// Adds the record and the index changes from `old` to `new` to `writes`.
    fn write(&self, writes: &mut Vec<KvWrite>, old: Option<&Group>, new: &Group) {
        writes.push(put(space::GROUPS, &new.id.to_be_bytes(), &encode_group(new)));
        let was = |a: AccountId| old.is_some_and(|g| g.member(a).is_some());
        for m in &new.members {
            if !was(m.account) {
                writes.push(put(space::GROUP_MEMBERS, &pair(m.account, new.id), &[]));
            }
        }
        for m in old.iter().flat_map(|g| &g.members) {
            if new.member(m.account).is_none() {
                writes.push(remove(space::GROUP_MEMBERS, &pair(m.account, new.id)));
            }
        }
        let old_token = old.and_then(|g| g.invite_token.as_deref());
        if old_token != new.invite_token.as_deref() {
            if let Some(t) = old_token {
                writes.push(remove(space::GROUP_INVITES, t.as_bytes()));
            }
            if let Some(t) = &new.invite_token {
                writes.push(put(space::GROUP_INVITES, t.as_bytes(), &new.id.to_be_bytes()));
            }
        }
    }

    /// Groups where `account` waits for a join approval (a full scan: deletion is rare).
    pub(super) fn pending_for(&self, account: AccountId) -> StoreResult<Vec<GroupId>> {
        let mut ids = Vec::new();
        for guard in self.groups.iter() {
            let (k, v) = guard.into_inner().map_err(unavailable)?;
            let group = decode_group(u64::from_be_bytes(keys::array(&k)?), &v)?;
            if group.pending.iter().any(|p| p.account == account) {
                ids.push(group.id);
            }
        }
        Ok(ids)
    }

    /// Blocking: removes a group that has no members left (record, invite index), through the
    /// log. Does nothing to a group that still has members.
    pub(super) fn delete_empty(&self, id: GroupId, log: &SideWriter) -> StoreResult<()> {
        let _guard = self.lock();
        let Some(group) = self.get(id)? else { return Ok(()) };
        if !group.members.is_empty() {
            return Ok(());
        }
        let mut writes = vec![remove(space::GROUPS, &id.to_be_bytes())];
        if let Some(t) = &group.invite_token {
            writes.push(remove(space::GROUP_INVITES, t.as_bytes()));
        }
        log.write_blocking(writes)
    }

    /// Blocking: deletes the receipt records an erased account leaves, through the log: its
    /// own rows (on their own or in a block), and every record of the messages it sent (their
    /// counters name it as the sender). Holds off settles until the log has applied the
    /// deletions, so no settle merges rows into a block between its read here and its
    /// rewrite.
    pub(super) fn erase_receipts(&self, account: AccountId, log: &SideWriter) -> StoreResult<()> {
        {
            // From here on no mark stages anything naming the account (`Groups::mark`) ...
            let _marks = self.lock();
            let mut states = self.receipt_states();
            states.erased.insert(account);
            states.clear();
        }
        // ... and an empty batch logs what was staged before, so the settle below puts every
        // record naming it on disk, where the scan finds it.
        log.write_blocking(Vec::new())?;
        let one = self.staged_receipts.exclusive();
        self.staged_receipts.settle_holding(&one, &self.db, &self.receipts)?;
        let mut sent = std::collections::HashSet::new();
        let mut writes = Vec::new();
        for guard in self.receipts.iter() {
            let (k, v) = guard.into_inner().map_err(unavailable)?;
            let row_account = u64::from_be_bytes(keys::array(k.get(16..).unwrap_or_default())?);
            if row_account == COUNTERS && quad(&v)?[0] == account {
                sent.insert(k.get(..16).unwrap_or_default().to_vec());
            } else if row_account == RECIPIENTS {
                let mut list = decode_accounts(&v)?;
                if let Ok(at) = list.binary_search(&account) {
                    list.remove(at);
                    writes.push(put(space::GROUP_RECEIPTS, &k, &encode_accounts(&list)));
                }
            } else if row_account == BLOCK {
                let mut rows = receipt_blocks::decode(&v)?;
                if let Ok(at) = rows.binary_search_by_key(&account, |r| r.account) {
                    rows.remove(at);
                    writes.push(put(space::GROUP_RECEIPTS, &k, &receipt_blocks::encode(&rows)));
                    // A row of its own replayed from the log after a crash would bring it back.
                    let mut own = k.to_vec();
                    own[16..].copy_from_slice(&account.to_be_bytes());
                    writes.push(remove(space::GROUP_RECEIPTS, &own));
                }
            } else if row_account == account {
                writes.push(remove(space::GROUP_RECEIPTS, &k));
            }
        }
        for prefix in sent {
            for guard in self.receipts.prefix(&prefix) {
                writes.push(remove(space::GROUP_RECEIPTS, &guard.key().map_err(unavailable)?));
            }
        }
        for chunk in writes.chunks(super::erasure::WRITES_PER_RECORD) {
            log.write_blocking(chunk.to_vec())?;
        }
        drop(one);
        Ok(())
    }

    /// Membership from the member index (a queued change's record first, as [`Groups::get`]).
    fn is_member(&self, id: GroupId, account: AccountId) -> StoreResult<bool> {
        if let Some(g) = self.queued.lock().unwrap_or_else(PoisonError::into_inner).get(&id) {
            return Ok(g.member(account).is_some());
        }
        Ok(self.members.get(pair(account, id)).map_err(unavailable)?.is_some())
    }

    fn groups_of(&self, account: AccountId) -> StoreResult<Vec<GroupId>> {
        let mut ids = Vec::new();
        for guard in self.members.prefix(account.to_be_bytes()) {
            let key = guard.key().map_err(unavailable)?;
            ids.push(u64::from_be_bytes(keys::array(key.get(8..).unwrap_or_default())?));
        }
        Ok(ids)
    }

    /// Records `account`'s receipts of `messages` (group, message id), in order, under one
    /// taking of the locks (an ack usually covers several); the changed rows go to `stage`
    /// (which writes them through the log). Works on each message's [`ReceiptState`], read
    /// from the store at its first mark and then kept, so that each member's mark reads nothing.
    /// An error stops at that message: the marks before it stand (marks are idempotent).
    fn mark(
        &self,
        account: AccountId,
        messages: &[(GroupId, u64)],
        read: bool,
        now: u64,
        stage: impl Fn(&[(&[u8], &[u8])]) -> StoreResult<()>,
    ) -> StoreResult<Vec<Option<ReceiptProgress>>> {
        let _guard = self.lock();
        let mut states = self.receipt_states();
        messages
            .iter()
            .map(|&(group, msg)| self.mark_one(&mut states, group, msg, account, read, now, &stage))
            .collect()
    }

    /// One message's mark of [`Groups::mark`], the locks held.
    #[allow(clippy::too_many_arguments)]
    fn mark_one(
        &self,
        states: &mut ReceiptStates,
        group: GroupId,
        msg: u64,
        account: AccountId,
        read: bool,
        now: u64,
        stage: &impl Fn(&[(&[u8], &[u8])]) -> StoreResult<()>,
    ) -> StoreResult<Option<ReceiptProgress>> {
        if states.get_mut(msg, group).is_none() {
            let Some((sender, rows)) = self.scan_receipts(group, msg)? else { return Ok(None) };
            let accounts: Vec<AccountId> = rows.iter().map(|r| r.account).collect();
            let accounts = states.roster(msg, group, &accounts).unwrap_or_else(|| accounts.into());
            states.insert(msg, group, ReceiptState::new(sender, &rows, accounts));
        }
        let ReceiptStates { states: by_message, erased, .. } = states;
        let state = by_message.get_mut(&(msg, group)).expect("present or just inserted");
        if erased.contains(&account) || erased.contains(&state.sender) {
            return Ok(None); // its erasure is running or done
        }
        let Ok(i) = state.accounts.binary_search(&account) else {
            return Ok(None); // not a recipient
        };
        let deliver = !state.delivered.contains(i); // reading implies delivery
        let mark_read = read && !state.read.contains(i);
        if !deliver && !mark_read {
            // A repeat: the store holds this row already.
            return Ok(Some(ReceiptProgress { sender: state.sender, all_delivered_now: false, all_read_now: false }));
        }
        // The row's record is written whole: a time it already has is looked up.
        let old = match !deliver || state.read.contains(i) {
            true => self.row_of(group, msg, account)?,
            false => GroupReceiptRow { account, delivered_at_ms: 0, read_at_ms: 0 },
        };
        let delivered_at_ms = if deliver || old.delivered_at_ms == 0 { now } else { old.delivered_at_ms };
        let read_at_ms = if mark_read { now } else { old.read_at_ms };
        // Staged under the lock, in the order the marks happen; the state follows only once
        // staged (a refused stage changes nothing). The counts are not written: a read counts
        // them from the rows (`scan_receipts`).
        stage(&[(&triple(msg, group, account), &receipt_blocks::row_value(delivered_at_ms, read_at_ms))])?;
        state.delivered.insert(i);
        if mark_read {
            state.read.insert(i);
        }
        let all = |bits: &FixedBitSet| bits.count_ones(..) == bits.len();
        Ok(Some(ReceiptProgress {
            sender: state.sender,
            all_delivered_now: deliver && all(&state.delivered),
            all_read_now: mark_read && all(&state.read),
        }))
    }

    /// `account`'s receipt row of a message as the store holds it (staged changes over the
    /// disk): its row record and its row in the message's block, merged. For a mark that
    /// keeps a time the row has, which [`ReceiptState`] does not hold.
    fn row_of(&self, group: GroupId, msg: u64, account: AccountId) -> StoreResult<GroupReceiptRow> {
        let mut row = GroupReceiptRow { account, delivered_at_ms: 0, read_at_ms: 0 };
        if let Some((delivered_at_ms, read_at_ms)) =
            self.receipt_record(&triple(msg, group, account), receipt_blocks::parse_row_value)?
        {
            (row.delivered_at_ms, row.read_at_ms) = (delivered_at_ms, read_at_ms);
        }
        let block_key = receipt_blocks::block_key(&pair(msg, group));
        if let Some(Some(in_block)) = self.receipt_record(&block_key, |v| receipt_blocks::find(v, account))? {
            receipt_blocks::merge_row(&mut row, in_block);
        }
        Ok(row)
    }

    /// The receipt record under `key` as the store holds it (staged over the disk), read by
    /// `parse` where it lies (a block is 24 bytes per recipient: not copied).
    fn receipt_record<T>(&self, key: &[u8], parse: impl Fn(&[u8]) -> StoreResult<T>) -> StoreResult<Option<T>> {
        match self.staged_receipts.get(key) {
            Some(v) => parse(&v).map(Some),
            None => self.receipts.get(key).map_err(unavailable)?.map(|v| parse(&v)).transpose(),
        }
    }

    /// A message's receipts were just started: its state is known without a read.
    fn receipts_started(&self, group: GroupId, msg: u64, sender: AccountId, recipients: Vec<AccountId>) {
        let _guard = self.lock();
        let mut states = self.receipt_states();
        let accounts = states.roster(msg, group, &recipients).unwrap_or_else(|| recipients.into());
        states.insert(msg, group, ReceiptState::started(sender, accounts));
    }

    fn receipt_states(&self) -> MutexGuard<'_, ReceiptStates> {
        self.receipt_states.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn receipts_of(&self, group: GroupId, msg: u64) -> StoreResult<Option<(AccountId, Vec<GroupReceiptRow>)>> {
        self.scan_receipts(group, msg)
    }

    /// The sender of a message and its recipients' rows (sorted by account) as the store holds
    /// them (staged changes over the disk); `None` when the message's receipts are not tracked
    /// (or expired).
    fn scan_receipts(&self, group: GroupId, msg: u64) -> StoreResult<Option<(AccountId, Vec<GroupReceiptRow>)>> {
        let mut prefix = Vec::with_capacity(16);
        prefix.extend_from_slice(&pair(msg, group));
        let mut records = std::collections::BTreeMap::new();
        for guard in self.receipts.prefix(&prefix) {
            let (key, value) = guard.into_inner().map_err(unavailable)?;
            records.insert(key.to_vec(), value.to_vec());
        }
        // Changes not yet committed replace what the scan found.
        for (key, value) in self.staged_receipts.matching(|k| k.starts_with(&prefix)) {
            records.insert(key.into_vec(), value.into_vec());
        }
        let mut counters = None;
        let mut rows = std::collections::BTreeMap::new();
        let mut recipients = Vec::new();
        // A recipient may have a row in the block and one of its own (a late mark, a replay
        // after a crash): they merge (`receipt_blocks.rs`).
        for (key, value) in records {
            let account = u64::from_be_bytes(keys::array(key.get(16..).unwrap_or_default())?);
            match account {
                COUNTERS => counters = Some(quad(&value)?),
                RECIPIENTS => recipients = decode_accounts(&value)?,
                BLOCK => {
                    for row in receipt_blocks::decode(&value)? {
                        receipt_blocks::merge_into(&mut rows, row);
                    }
                }
                _ => {
                    let (delivered_at_ms, read_at_ms) = receipt_blocks::parse_row_value(&value)?;
                    receipt_blocks::merge_into(&mut rows, GroupReceiptRow { account, delivered_at_ms, read_at_ms });
                }
            }
        }
        // Only the sender is taken from the counters record. Its counts are those of the send
        // (marks do not rewrite them; older data has those of its last mark) and an erasure
        // leaves them as they were, so the counts come from the rows: the recipients are the
        // list's accounts and those with rows.
        let Some([sender, ..]) = counters else { return Ok(None) };
        // Recipients with no row of their own have neither delivered nor read it.
        for account in recipients {
            rows.entry(account).or_insert(GroupReceiptRow { account, delivered_at_ms: 0, read_at_ms: 0 });
        }
        Ok(Some((sender, rows.into_values().collect())))
    }

    fn expire(&self, before_msg_id: u64) -> StoreResult<u64> {
        self.receipt_states().expire(before_msg_id);
        let mut n = 0;
        let before = before_msg_id.to_be_bytes();
        // A staged record may also be on disk already (committed, not yet forgotten): count it
        // once. One staged again after this sweep is expired by the next.
        for (ks, staged) in [(&self.payloads, &self.staged_payloads), (&self.receipts, &self.staged_receipts)] {
            let one = staged.exclusive();
            staged.settle_holding(&one, &self.db, ks)?;
            let staged_keys = staged.remove(|key| key < &before[..]);
            let doomed = ks
                .range(..before_msg_id.to_be_bytes().to_vec())
                .map(|g| g.key().map_err(unavailable))
                .collect::<StoreResult<Vec<_>>>()?;
            for chunk in doomed.chunks(1024) {
                self.delete(ks, chunk)?;
            }
            let on_disk: std::collections::HashSet<&[u8]> = doomed.iter().map(|k| &k[..]).collect();
            n += (doomed.len() + staged_keys.iter().filter(|k| !on_disk.contains(&k[..])).count()) as u64;
        }
        Ok(n)
    }
}

#[async_trait]
impl GroupStore for FjallStore {
    async fn group(&self, id: GroupId) -> StoreResult<Option<Group>> {
        self.groups.get(id)
    }

    async fn reserve_group_id(&self) -> StoreResult<GroupId> {
        let (groups, log) = (Arc::clone(&self.groups), self.side_writer()?);
        super::blocking(move || groups.reserve_id(&log)).await
    }

    async fn update_group(&self, group: &Group) -> StoreResult<bool> {
        let (groups, group, log) = (Arc::clone(&self.groups), group.clone(), self.side_writer()?);
        super::blocking(move || groups.update(&group, &log)).await
    }

    async fn enqueue_group_update(&self, group: &Group, events: AppendRequest) -> StoreResult<Option<PendingAppend>> {
        let Some(side) = self.groups.prepare_update(group)? else { return Ok(None) };
        let pending = match self.enqueue_append_with(events, side).await {
            Ok(p) => p,
            Err(e) => {
                self.groups.settle(group.id, group.version);
                return Err(e);
            }
        };
        let (groups, id, version) = (Arc::clone(&self.groups), group.id, group.version);
        Ok(Some(Box::pin(async move {
            let outcome = pending.await;
            groups.settle(id, version);
            outcome
        })))
    }

    async fn is_group_member(&self, id: GroupId, account: AccountId) -> StoreResult<bool> {
        self.groups.is_member(id, account)
    }

    async fn groups_of(&self, account: AccountId) -> StoreResult<Vec<GroupId>> {
        self.groups.groups_of(account)
    }

    async fn group_by_invite(&self, token: &str) -> StoreResult<Option<GroupId>> {
        let value = self.groups.invites.get(token.as_bytes()).map_err(unavailable)?;
        value.map(|v| Ok(u64::from_be_bytes(keys::array(&v)?))).transpose()
    }

    async fn put_group_payload(&self, group: GroupId, server_msg_id: u64, payload: Bytes) -> StoreResult<()> {
        self.stage_or_write(&self.groups.staged_payloads, &[(&pair(server_msg_id, group), &payload)]).await
    }

    async fn group_payload(&self, group: GroupId, server_msg_id: u64) -> StoreResult<Option<Bytes>> {
        let key = pair(server_msg_id, group);
        if let Some(v) = self.groups.staged_payloads.get(&key) {
            return Ok(Some(Bytes::from(v.into_vec())));
        }
        let value = self.groups.payloads.get(key).map_err(unavailable)?;
        Ok(value.map(|v| Bytes::copy_from_slice(&v)))
    }

    async fn start_group_receipts(
        &self,
        group: GroupId,
        server_msg_id: u64,
        sender: AccountId,
        recipients: &[AccountId],
    ) -> StoreResult<()> {
        let mut list = recipients.to_vec();
        list.sort_unstable();
        list.dedup();
        let counters = (triple(server_msg_id, group, COUNTERS), quad_bytes([sender, list.len() as u64, 0, 0]));
        let listed = (triple(server_msg_id, group, RECIPIENTS), encode_accounts(&list));
        let writes: [(&[u8], &[u8]); 2] = [(&counters.0, &counters.1), (&listed.0, &listed.1)];
        self.stage_or_write(&self.groups.staged_receipts, &writes).await?;
        self.groups.receipts_started(group, server_msg_id, sender, list);
        Ok(())
    }

    async fn mark_group_receipt(
        &self,
        group: GroupId,
        server_msg_id: u64,
        account: AccountId,
        read: bool,
        now_ms: u64,
    ) -> StoreResult<Option<ReceiptProgress>> {
        Ok(self.mark_group_receipts(account, &[(group, server_msg_id)], read, now_ms).await?.pop().flatten())
    }

    async fn mark_group_receipts(
        &self,
        account: AccountId,
        messages: &[(GroupId, u64)],
        read: bool,
        now_ms: u64,
    ) -> StoreResult<Vec<Option<ReceiptProgress>>> {
        // A full staging means the committer is far behind: refuse (the ack that asked is
        // retried by its redelivery) rather than grow.
        self.groups.mark(account, messages, read, now_ms, |writes| {
            if self.stage(&self.groups.staged_receipts, writes) {
                Ok(())
            } else {
                Err(StoreError::Overloaded { retry_after_ms: super::OVERLOADED_RETRY_AFTER_MS })
            }
        })
    }

    async fn group_receipts(
        &self,
        group: GroupId,
        server_msg_id: u64,
    ) -> StoreResult<Option<(AccountId, Vec<GroupReceiptRow>)>> {
        self.groups.receipts_of(group, server_msg_id)
    }

    async fn expire_group_messages(&self, before_msg_id: u64) -> StoreResult<u64> {
        let groups = Arc::clone(&self.groups);
        super::blocking(move || groups.expire(before_msg_id)).await
    }
}

/// A write of `value` under `key` in side keyspace `space`.
fn put(space: u8, key: &[u8], value: &[u8]) -> KvWrite {
    KvWrite { space, key: key.to_vec(), value: Some(value.to_vec()) }
}

/// A delete of `key` in side keyspace `space`.
fn remove(space: u8, key: &[u8]) -> KvWrite {
    KvWrite { space, key: key.to_vec(), value: None }
}

fn pair(a: u64, b: u64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&a.to_be_bytes());
    out[8..].copy_from_slice(&b.to_be_bytes());
    out
}

fn triple(a: u64, b: u64, c: u64) -> [u8; 24] {
    let mut out = [0; 24];
    out[..16].copy_from_slice(&pair(a, b));
    out[16..].copy_from_slice(&c.to_be_bytes());
    out
}

/// A recipient list's record: the account ids, 8 bytes each, big-endian.
fn encode_accounts(accounts: &[AccountId]) -> Vec<u8> {
    accounts.iter().flat_map(|a| a.to_be_bytes()).collect()
}

fn decode_accounts(v: &[u8]) -> StoreResult<Vec<AccountId>> {
    if !v.len().is_multiple_of(8) {
        return Err(StoreError::Corrupt(format!("group recipient list of {} bytes", v.len())));
    }
    Ok(v.chunks_exact(8).map(|w| u64::from_be_bytes(w.try_into().expect("8 bytes"))).collect())
}

fn quad(v: &[u8]) -> StoreResult<[u64; 4]> {
    words::<4>(v)
}

fn quad_bytes(q: [u64; 4]) -> Vec<u8> {
    q.iter().flat_map(|w| w.to_be_bytes()).collect()
}

fn words<const N: usize>(v: &[u8]) -> StoreResult<[u64; N]> {
    if v.len() != N * 8 {
        return Err(StoreError::Corrupt(format!("group receipt of {} bytes", v.len())));
    }
    let mut out = [0; N];
    for (i, w) in out.iter_mut().enumerate() {
        *w = u64::from_be_bytes(keys::array(&v[i * 8..i * 8 + 8])?);
    }
    Ok(out)
}

fn role_byte(r: GroupRole) -> u8 {
    match r {
        GroupRole::Member => 1,
        GroupRole::Admin => 2,
        GroupRole::Creator => 3,
    }
}

fn encode_group(g: &Group) -> Vec<u8> {
    let mut w = vec![RECORD_V1];
    let str = |w: &mut Vec<u8>, s: &str| {
        w.extend_from_slice(&(s.len() as u32).to_be_bytes());
        w.extend_from_slice(s.as_bytes());
    };
    str(&mut w, &g.name);
    str(&mut w, &g.description);
    let s = g.settings;
    w.push(u8::from(s.admins_only_send) | u8::from(s.admins_only_edit) << 1 | u8::from(s.join_approval) << 2);
    w.extend_from_slice(&g.created_at_ms.to_be_bytes());
    w.extend_from_slice(&g.version.to_be_bytes());
    w.extend_from_slice(&(g.members.len() as u32).to_be_bytes());
    for m in &g.members {
        w.extend_from_slice(&m.account.to_be_bytes());
        w.push(role_byte(m.role));
        w.extend_from_slice(&m.joined_at_ms.to_be_bytes());
        w.extend_from_slice(&m.joined_version.to_be_bytes());
    }
    w.extend_from_slice(&(g.pending.len() as u32).to_be_bytes());
    for p in &g.pending {
        w.extend_from_slice(&p.account.to_be_bytes());
        w.extend_from_slice(&p.requested_at_ms.to_be_bytes());
    }
    w.push(u8::from(g.invite_token.is_some()));
    str(&mut w, g.invite_token.as_deref().unwrap_or(""));
    w
}

fn decode_group(id: GroupId, v: &[u8]) -> StoreResult<Group> {
    let mut r = Reader::versioned(v, "group record")?;
    let name = r.str()?;
    let description = r.str()?;
    let flags = r.u8()?;
    let settings = GroupSettings {
        admins_only_send: flags & 1 != 0,
        admins_only_edit: flags & 2 != 0,
        join_approval: flags & 4 != 0,
    };
    let created_at_ms = r.u64()?;
    let version = r.u64()?;
    let n_members = r.u32()?;
    let mut members = Vec::with_capacity(n_members.min(4096) as usize);
    for _ in 0..n_members {
        let account = r.u64()?;
        let role = match r.u8()? {
            1 => GroupRole::Member,
            2 => GroupRole::Admin,
            3 => GroupRole::Creator,
            b => return Err(StoreError::Corrupt(format!("group record: role {b}"))),
        };
        members.push(GroupMember { account, role, joined_at_ms: r.u64()?, joined_version: r.u64()? });
    }
    let n_pending = r.u32()?;
    let mut pending = Vec::with_capacity(n_pending.min(4096) as usize);
    for _ in 0..n_pending {
        pending.push(PendingJoin { account: r.u64()?, requested_at_ms: r.u64()? });
    }
    let has_token = r.u8()? != 0;
    let token = r.str()?;
    r.end()?;
    let invite_token = has_token.then_some(token);
    Ok(Group { id, name, description, settings, created_at_ms, version, members, pending, invite_token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_records_round_trip() {
        // Proves a group record decodes to what was encoded, flags and roles included.
        let g = Group {
            id: 9,
            name: "team".into(),
            description: "d".into(),
            settings: GroupSettings { admins_only_send: true, admins_only_edit: false, join_approval: true },
            created_at_ms: 5,
            version: 3,
            members: vec![GroupMember { account: 1, role: GroupRole::Creator, joined_at_ms: 5, joined_version: 1 }],
            pending: vec![PendingJoin { account: 2, requested_at_ms: 6 }],
            invite_token: Some("tok".into()),
        };
        assert_eq!(decode_group(9, &encode_group(&g)).unwrap(), g);
        assert!(decode_group(9, &encode_group(&g)[..10]).is_err());
    }
}

#[cfg(test)]
mod receipt_layout_tests {
    use std::collections::BTreeSet;

    use super::{pair, triple, COUNTERS};
    use crate::embedded::{FjallConfig, FjallStore};
    use crate::{GroupStore, InboxStore};

    /// Keys of the receipt records of one message, staged or on disk.
    fn receipt_keys(store: &FjallStore, group: u64, msg: u64) -> BTreeSet<Vec<u8>> {
        let prefix = pair(msg, group);
        let mut keys: BTreeSet<Vec<u8>> =
            store.groups.receipts.prefix(prefix).map(|g| g.key().unwrap().to_vec()).collect();
        keys.extend(
            store.groups.staged_receipts.matching(|k| k.starts_with(&prefix)).into_iter().map(|(k, _)| k.into()),
        );
        keys
    }

    #[tokio::test]
    async fn a_mark_that_changes_no_row_stages_nothing() {
        // Proves a repeated ack (within one call or later) writes nothing, and a read after the
        // delivery still does: what a mark stages is exactly the rows it changes.
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
        store.start_group_receipts(7, 100, 1, &[2, 3]).await.unwrap();
        let staged = std::cell::Cell::new(0);
        let count = |_: &[(&[u8], &[u8])]| {
            staged.set(staged.get() + 1);
            Ok(())
        };
        let progress = store.groups.mark(2, &[(7, 100), (7, 100)], false, 10, count).unwrap();
        assert_eq!((staged.get(), progress.len()), (1, 2), "the repeat within the call");
        store.groups.mark(2, &[(7, 100)], false, 11, count).unwrap();
        assert_eq!(staged.get(), 1, "a later repeat");
        store.groups.mark(2, &[(7, 100)], true, 12, count).unwrap();
        assert_eq!(staged.get(), 2, "the read changes the row");
    }

    #[tokio::test]
    async fn a_send_to_1024_members_writes_two_receipt_records_and_marks_add_one_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
        let members: Vec<u64> = (2..1026).collect();
        store.start_group_receipts(7, 100, 1, &members).await.unwrap();
        assert_eq!(receipt_keys(&store, 7, 100).len(), 2, "the counters and the recipient list");
        for m in [2, 500, 1025] {
            store.mark_group_receipt(7, 100, m, false, 10 + m).await.unwrap().expect("a recipient");
        }
        assert!(store.mark_group_receipt(7, 100, 1026, false, 9).await.unwrap().is_none(), "not a recipient");
        assert!(store.mark_group_receipt(7, 100, 1, false, 9).await.unwrap().is_none(), "the sender is not one");
        assert_eq!(receipt_keys(&store, 7, 100).len(), 5);
        let (sender, rows) = store.group_receipts(7, 100).await.unwrap().unwrap();
        assert_eq!((sender, rows.len()), (1, 1024), "every recipient, marked or not");
        assert_eq!(rows.iter().map(|r| r.account).collect::<Vec<_>>(), members, "in account order");
        let marked: Vec<_> =
            rows.iter().filter(|r| r.delivered_at_ms != 0).map(|r| (r.account, r.delivered_at_ms)).collect();
        assert_eq!(marked, [(2, 12), (500, 510), (1025, 1035)]);

        store.close().await.unwrap();
        drop(store);
        let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
        let p = store.mark_group_receipt(7, 100, 3, false, 20).await.unwrap().expect("a recipient after a reopen");
        assert!(!p.all_delivered_now);
        let (_, rows) = store.group_receipts(7, 100).await.unwrap().unwrap();
        assert_eq!(rows.iter().filter(|r| r.delivered_at_ms != 0).count(), 4, "marks survive a reopen");
    }

    /// The receipt records of one message on disk, by the account field of their key.
    fn on_disk(store: &FjallStore, group: u64, msg: u64) -> Vec<(u64, Vec<u8>)> {
        store
            .groups
            .receipts
            .prefix(pair(msg, group))
            .map(|g| {
                let (k, v) = g.into_inner().unwrap();
                (u64::from_be_bytes(k[16..].try_into().unwrap()), v.to_vec())
            })
            .collect()
    }

    /// Logs everything staged (an empty batch does) and settles the receipts.
    async fn settle(store: &FjallStore) {
        store.request(|reply| crate::embedded::committer::Command::Writes { writes: Vec::new(), reply }).await.unwrap();
        store.groups.staged_receipts.settle(&store.groups.db, &store.groups.receipts).unwrap();
    }

    #[tokio::test]
    async fn marks_settle_as_one_block_late_marks_as_rows_and_an_erased_member_leaves_neither() {
        // Proves the fold of `receipt_blocks.rs`: 64 members' marks reach disk as one record
        // beside the counters and the list; three late reads as rows of their own; reads merge
        // both (and survive a reopen); erasure takes a member out of the block and its row.
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
        let members: Vec<u64> = (2..66).collect();
        store.start_group_receipts(7, 100, 1, &members).await.unwrap();
        for &m in &members {
            let p = store.mark_group_receipt(7, 100, m, false, 1000 + m).await.unwrap().unwrap();
            assert_eq!(p.all_delivered_now, m == 65, "the last delivery completes it");
        }
        settle(&store).await;
        let kinds: Vec<u64> = on_disk(&store, 7, 100).into_iter().map(|(a, _)| a).collect();
        assert_eq!(kinds, [COUNTERS, super::BLOCK, super::RECIPIENTS], "one block for 64 rows");

        for m in [5, 6, 7] {
            let p = store.mark_group_receipt(7, 100, m, true, 5000 + m).await.unwrap().unwrap();
            assert!(!p.all_read_now);
        }
        settle(&store).await;
        let kinds: Vec<u64> = on_disk(&store, 7, 100).into_iter().map(|(a, _)| a).collect();
        assert_eq!(kinds, [COUNTERS, 5, 6, 7, super::BLOCK, super::RECIPIENTS], "late reads are rows");
        let check = |rows: Vec<crate::GroupReceiptRow>| {
            assert_eq!(rows.len(), 64);
            assert!(rows.iter().all(|r| r.delivered_at_ms == 1000 + r.account), "delivery times kept");
            let read: Vec<_> = rows.iter().filter(|r| r.read_at_ms != 0).map(|r| (r.account, r.read_at_ms)).collect();
            assert_eq!(read, [(5, 5005), (6, 5006), (7, 5007)]);
        };
        check(store.group_receipts(7, 100).await.unwrap().unwrap().1);
        // A reopen replays the logged rows as rows of their own beside the block: the same.
        store.close().await.unwrap();
        drop(store);
        let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
        check(store.group_receipts(7, 100).await.unwrap().unwrap().1);
        // The counts come back from the rows (the counters record still says 0 of 64): the
        // last of the other 61 reads completes the message.
        for m in members.iter().copied().filter(|m| ![5, 6, 7].contains(m)) {
            let p = store.mark_group_receipt(7, 100, m, true, 6000 + m).await.unwrap().unwrap();
            assert!(!p.all_delivered_now, "delivered to all before the reopen");
            assert_eq!(p.all_read_now, m == 65, "only the last read completes it");
        }

        let (groups, log) = (std::sync::Arc::clone(&store.groups), store.side_writer().unwrap());
        tokio::task::spawn_blocking(move || groups.erase_receipts(6, &log)).await.unwrap().unwrap();
        let (_, rows) = store.group_receipts(7, 100).await.unwrap().unwrap();
        assert!(rows.iter().all(|r| r.account != 6) && rows.len() == 63);
        for (account, value) in on_disk(&store, 7, 100) {
            assert_ne!(account, 6, "its own row is gone");
            if account == super::BLOCK {
                assert!(super::receipt_blocks::decode(&value).unwrap().iter().all(|r| r.account != 6));
            }
        }
    }

    #[tokio::test]
    async fn an_erasure_finds_marks_not_yet_logged_and_no_mark_lands_after_it() {
        // Proves erasure leaves no receipt record naming the account even when its marks are
        // still staged (not yet in any batch) as it starts, and that marks coming during or
        // after it (its own, or others' of a message it sent) stage nothing.
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
        store.start_group_receipts(7, 100, 1, &[2, 3, 4]).await.unwrap();
        store.start_group_receipts(7, 101, 4, &[1, 2, 3]).await.unwrap();
        store.mark_group_receipt(7, 100, 4, false, 10).await.unwrap().unwrap();
        store.mark_group_receipt(7, 101, 2, false, 11).await.unwrap().unwrap();

        let (groups, log) = (std::sync::Arc::clone(&store.groups), store.side_writer().unwrap());
        tokio::task::spawn_blocking(move || groups.erase_receipts(4, &log)).await.unwrap().unwrap();
        assert!(store.mark_group_receipt(7, 100, 4, true, 12).await.unwrap().is_none(), "its own mark");
        assert!(store.mark_group_receipt(7, 101, 3, false, 13).await.unwrap().is_none(), "a message it sent");
        settle(&store).await;

        assert!(on_disk(&store, 7, 101).is_empty(), "nothing of the message it sent");
        let (_, rows) = store.group_receipts(7, 100).await.unwrap().unwrap();
        assert_eq!(rows.iter().map(|r| r.account).collect::<Vec<_>>(), [2, 3]);
        for (account, value) in on_disk(&store, 7, 100) {
            assert_ne!(account, 4, "no row of its own");
            if account == super::BLOCK {
                assert!(super::receipt_blocks::decode(&value).unwrap().iter().all(|r| r.account != 4));
            }
            if account == super::RECIPIENTS {
                assert_eq!(super::decode_accounts(&value).unwrap(), [2, 3]);
            }
        }
    }

    /// A just-started state of `n` recipients with a list of its own.
    fn state(n: u64) -> super::ReceiptState {
        super::ReceiptState::started(1, (2..2 + n).collect::<Vec<u64>>().into())
    }

    #[test]
    fn a_group_message_shares_the_recipients_of_a_neighbour_of_its_group_when_equal() {
        // Proves marks of a group's messages search one shared array: a new message finds it
        // past another group's message, an older one rebuilt later finds it too; never across
        // groups or differing recipients.
        let mut states = super::ReceiptStates::default();
        states.insert(10, 7, state(3));
        let roster = std::sync::Arc::clone(&states.get_mut(10, 7).unwrap().accounts);
        states.insert(11, 8, state(3));
        let shared = states.roster(12, 7, &[2, 3, 4]).expect("same group, same recipients");
        assert!(std::sync::Arc::ptr_eq(&shared, &roster));
        let older = states.roster(4, 7, &[2, 3, 4]).expect("a rebuilt older message, its neighbour");
        assert!(std::sync::Arc::ptr_eq(&older, &roster));
        assert!(states.roster(12, 7, &[2, 3]).is_none());
        assert!(states.roster(12, 9, &[2, 3, 4]).is_none());
    }

    #[test]
    fn a_shared_recipient_list_is_counted_once_until_its_last_state_goes() {
        let mut states = super::ReceiptStates::default();
        let list = 1000 * 8;
        states.insert(10, 7, state(1000));
        let own = states.get_mut(10, 7).unwrap().cost;
        assert_eq!(states.bytes, own + list, "the state that brings the list pays for it");
        for msg in [11, 12] {
            let shared = states.roster(msg, 7, &(2..1002).collect::<Vec<u64>>()).unwrap();
            states.insert(msg, 7, super::ReceiptState::started(1, shared));
        }
        assert_eq!(states.bytes, 3 * own + list, "those sharing it do not");
        states.expire(11);
        assert_eq!(states.bytes, 2 * own + list, "the list stays while shared");
        states.expire(13);
        assert_eq!(states.bytes, 0, "and goes with its last state");
    }

    #[test]
    fn cached_receipt_states_stay_within_the_byte_budget_oldest_message_first() {
        let one = state(1000).charge();
        let mut states = super::ReceiptStates { budget: 2 * one, ..Default::default() };
        states.insert(20, 7, state(1000));
        states.insert(10, 7, state(1000));
        assert_eq!(states.bytes, 2 * one);
        states.insert(30, 7, state(10));
        assert!(states.get_mut(10, 7).is_none(), "the oldest message went first");
        assert!(states.get_mut(20, 7).is_some() && states.get_mut(30, 7).is_some());
        assert_eq!(states.bytes, one + state(10).charge());
        states.insert(5, 7, state(3000));
        assert!(states.get_mut(5, 7).is_some(), "the state just kept stays, even alone over the budget");
        assert_eq!((states.states.len(), states.bytes), (1, state(3000).charge()));
        states.insert(40, 7, state(3));
        states.expire(40);
        assert_eq!((states.states.len(), states.bytes), (1, state(3).charge()), "expiry forgets older messages");
    }

    #[test]
    fn a_large_groups_message_costs_its_bits_when_it_shares_the_list() {
        // What lets a member thousands of messages behind mark from memory: ~400 bytes for a
        // 1024-member message, so the budget holds tens of thousands of them.
        let roster: std::sync::Arc<[u64]> = (2..1026).collect::<Vec<u64>>().into();
        let _first = super::ReceiptState::started(1, std::sync::Arc::clone(&roster));
        let cost = super::ReceiptState::started(1, roster).charge();
        assert!(cost <= 512, "{cost} bytes");
        assert!(super::RECEIPT_STATE_BYTES / cost >= 20_000);
    }

    #[tokio::test]
    async fn marks_keep_every_time_a_row_has_whether_its_state_is_cached_or_rebuilt() {
        // Proves the times a state does not hold are looked up, not lost: a read after a
        // delivery keeps the delivery's time when the row is staged, settled into the block,
        // or a row of its own, with the states cached and with every mark rebuilding its
        // message's state (a budget of nothing keeps only the state just used).
        for budget in [super::RECEIPT_STATE_BYTES, 0] {
            let dir = tempfile::tempdir().unwrap();
            let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
            store.groups.receipt_states().budget = budget;
            let members: Vec<u64> = (2..34).collect();
            for msg in [100, 101] {
                store.start_group_receipts(7, msg, 1, &members).await.unwrap();
            }
            for &m in &members {
                for msg in [100, 101] {
                    store.mark_group_receipt(7, msg, m, false, 1000 + m).await.unwrap().unwrap();
                }
            }
            // Staged rows: member 2 reads 100; then the block: member 3; then a row beside it.
            store.mark_group_receipt(7, 100, 2, true, 5002).await.unwrap().unwrap();
            settle(&store).await;
            store.mark_group_receipt(7, 100, 3, true, 5003).await.unwrap().unwrap();
            settle(&store).await;
            store.mark_group_receipt(7, 101, 4, true, 5004).await.unwrap().unwrap();
            let p = store.mark_group_receipt(7, 100, 3, true, 9999).await.unwrap().unwrap();
            assert!(!p.all_read_now && !p.all_delivered_now, "a repeat (budget {budget})");
            for (msg, read) in [(100, vec![(2, 5002), (3, 5003)]), (101, vec![(4, 5004)])] {
                let (_, rows) = store.group_receipts(7, msg).await.unwrap().unwrap();
                assert!(rows.iter().all(|r| r.delivered_at_ms == 1000 + r.account), "budget {budget}");
                let got: Vec<_> =
                    rows.iter().filter(|r| r.read_at_ms != 0).map(|r| (r.account, r.read_at_ms)).collect();
                assert_eq!(got, read, "budget {budget}");
            }
            for &m in &members {
                let p = store.mark_group_receipt(7, 101, m, true, 6000).await.unwrap().unwrap();
                assert_eq!(p.all_read_now, m == 33, "budget {budget}: only the last read completes it");
            }
        }
    }

    #[tokio::test]
    async fn messages_with_a_row_per_recipient_still_mark_and_list() {
        // Receipts written before the recipient list existed: counters plus a row per recipient.
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
        let counters = (triple(100, 7, COUNTERS), super::quad_bytes([1, 2, 0, 0]));
        let rows = [(triple(100, 7, 2), pair(0, 0)), (triple(100, 7, 3), pair(0, 0))];
        let mut writes: Vec<(&[u8], &[u8])> = vec![(&counters.0, &counters.1)];
        writes.extend(rows.iter().map(|(k, v)| (&k[..], &v[..])));
        store.stage_or_write(&store.groups.staged_receipts, &writes).await.unwrap();

        assert!(!store.mark_group_receipt(7, 100, 2, false, 5).await.unwrap().unwrap().all_delivered_now);
        assert!(store.mark_group_receipt(7, 100, 9, false, 5).await.unwrap().is_none(), "not a recipient");
        assert!(store.mark_group_receipt(7, 100, 3, true, 6).await.unwrap().unwrap().all_delivered_now);
        let (sender, rows) = store.group_receipts(7, 100).await.unwrap().unwrap();
        let rows: Vec<_> = rows.iter().map(|r| (r.account, r.delivered_at_ms, r.read_at_ms)).collect();
        assert_eq!((sender, rows), (1, vec![(2, 5, 0), (3, 6, 6)]));
    }
}
