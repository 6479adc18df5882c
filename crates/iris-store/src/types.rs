//! Records the store keeps, independent of any engine.

use bytes::Bytes;

/// Internal, never reused id of an account.
pub type AccountId = u64;
/// Number of a device within its account; never reused within the account.
pub type DeviceId = u32;

/// One device of one account: the unit of routing, inboxes and acks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceAddr {
    /// The account.
    pub account: AccountId,
    /// The device within it.
    pub device: DeviceId,
}

impl DeviceAddr {
    /// Shorthand constructor.
    pub fn new(account: AccountId, device: DeviceId) -> Self {
        Self { account, device }
    }
}

impl std::fmt::Display for DeviceAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.account, self.device)
    }
}

/// An account: a phone number with an internal id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Internal id.
    pub id: AccountId,
    /// E.164 phone number.
    pub phone: String,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
}

/// A device of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Where it lives.
    pub addr: DeviceAddr,
    /// Label given at login.
    pub name: String,
    /// The first device of the account.
    pub primary: bool,
    /// Link time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Revocation time; a revoked device's tokens are rejected and it gets no messages.
    pub revoked_at_ms: Option<u64>,
}

/// A revoked device whose server-side follow-ups (inbox, push target, keys, notices) are not
/// known to be done ([`crate::AccountStore::unfinished_revocations`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedRevocation {
    /// The device, as revoked (its `revoked_at_ms` set).
    pub device: Device,
    /// The account's device that revoked it, for the `DeviceChange` notice (0: the device itself
    /// or the server); `None`: nobody is told (a re-registration or an erasure).
    pub announce_by: Option<DeviceId>,
}

/// A stored refresh token (only the hash of its secret is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// SHA-256 of the token secret.
    pub hash: [u8; 32],
    /// The device it was issued to.
    pub device: DeviceAddr,
    /// Expiry, ms since the Unix epoch.
    pub expires_at_ms: u64,
}

/// Identifies a send for deduplication of retries: the sending device and its message id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DedupKey {
    /// The sending device.
    pub sender: DeviceAddr,
    /// The client's message id (at most 64 bytes).
    pub client_msg_id: String,
}

/// One entry to append to one device's inbox.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// The inbox.
    pub device: DeviceAddr,
    /// The encoded `iris.v1.InboxItem` with `seq` left 0 (the store assigns it).
    pub item: Bytes,
}

/// A durable append of one logical message (or receipt) to several inboxes.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    /// When set, the append happens at most once per key; retries get the original answer.
    pub dedup: Option<DedupKey>,
    /// Server id of the message, returned for duplicates.
    pub server_msg_id: u64,
    /// Server time of the message, ms since the Unix epoch; also the entries' age for expiry.
    pub server_ts_ms: u64,
    /// The entries, possibly for several devices (possibly none: a receipt to nobody).
    pub entries: Vec<NewEntry>,
    /// When a disappearing-messages timer is on in the message's conversation: the time (ms
    /// since the Unix epoch) at which every entry of this append is deleted, delivered or not
    /// ([`InboxStore::expire_due`](crate::InboxStore::expire_due)). `None`: only the retention
    /// TTL applies.
    pub expires_at_ms: Option<u64>,
}

impl AppendRequest {
    /// An event's append (a receipt, a notice, a timer change, a missed call): no dedup key (the
    /// server made it once) and no expiry beyond the retention TTL.
    pub fn event(server_msg_id: u64, server_ts_ms: u64, entries: Vec<NewEntry>) -> Self {
        Self { dedup: None, server_msg_id, server_ts_ms, entries, expires_at_ms: None }
    }
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored; `seqs[i]` is the sequence number given to `entries[i]`.
    Appended {
        /// Sequence numbers in the order of the request's entries.
        seqs: Vec<u64>,
    },
    /// The dedup key was already recorded; nothing was stored.
    Duplicate {
        /// The original message's server id.
        server_msg_id: u64,
        /// The original message's server time.
        server_ts_ms: u64,
    },
}

/// An inbox entry as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Its sequence number in the device's inbox.
    pub seq: u64,
    /// The encoded `iris.v1.InboxItem` (with `seq` 0).
    pub item: Bytes,
    /// When the entry disappears (its append's `expires_at_ms`): readers must not deliver it
    /// at or after this time, even before the sweep deleted it.
    pub expires_at_ms: Option<u64>,
}

impl StoredEntry {
    /// Whether the entry has disappeared at `now_ms` (its expiry passed; the sweep may not have
    /// deleted it yet).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }
}

/// Where a device's inbox stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InboxCursor {
    /// Highest acked sequence number (0 if none).
    pub acked: u64,
    /// Highest sequence number ever assigned (0 if none). Backlog is `last - acked`.
    pub last: u64,
}
