//! Profiles and device-linking security: each account's profile (display name, about text, photo,
//! who may see it), its registration PIN (only the Argon2id hash and the attempt counter), and
//! the device links waiting for the primary's approval.
//!
//! The store does not interpret the privacy code, the PIN hash or the link states' meaning; it
//! keeps the records and makes the read-check-write steps atomic (the pending-link bound, one
//! taker per link, the counting of PIN attempts).

use async_trait::async_trait;

use crate::{AccountId, Device, DeviceId, StoreResult};

/// An account's profile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Profile {
    /// Display name ("Alice"), bounded by the server.
    pub display_name: String,
    /// About text ("Hey there!"), bounded by the server.
    pub about: String,
    /// Media id of the photo (hex SHA-256 of its blob), empty for none.
    pub photo_media_id: String,
    /// Who may see it: a code the server chooses.
    pub privacy: u8,
    /// Last change, ms since the Unix epoch.
    pub updated_at_ms: u64,
}

/// Where a device link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Waiting for the primary.
    Pending,
    /// The primary approved it: the device exists; the new device collects its credentials.
    Approved {
        /// The device created for it.
        device: DeviceId,
    },
    /// The primary refused it.
    Refused,
}

/// A companion device's request to join an account, shown as a short code on the new device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLink {
    /// The account it wants to join.
    pub account: AccountId,
    /// The short code the primary types (unique among the account's links).
    pub code: String,
    /// SHA-256 of the secret only the new device holds (it collects the credentials with it).
    pub secret_hash: [u8; 32],
    /// The new device's label.
    pub device_name: String,
    /// When the link stops counting, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// Where it stands.
    pub state: LinkState,
}

impl PendingLink {
    /// Whether it still waits for the primary at `now_ms`: pending and not expired.
    pub fn is_waiting_at(&self, now_ms: u64) -> bool {
        self.state == LinkState::Pending && self.expires_at_ms > now_ms
    }
}

/// An account's registration PIN: the Argon2id hash (PHC string) and its attempt counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRecord {
    /// The PHC string of the Argon2id hash.
    pub hash: String,
    /// Wrong attempts since the last right one or lockout.
    pub failed_attempts: u32,
    /// Attempts are refused until then, ms since the Unix epoch (0: not locked).
    pub locked_until_ms: u64,
}

/// What counting a PIN attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinAttempt {
    /// The account has no PIN.
    NoPin,
    /// Locked until `until_ms`; nothing was counted.
    Locked {
        /// When the lockout ends.
        until_ms: u64,
    },
    /// The attempt was counted before the caller checks it (so concurrent guesses cannot exceed
    /// the bound); a wrong guess leaves `attempts_left` (0: this one started a lockout).
    Counted {
        /// The hash to check against.
        hash: String,
        /// Attempts left if this one is wrong.
        attempts_left: u32,
    },
}

/// Profiles, registration PINs and pending device links: durable, low-rate, per account.
#[async_trait]
pub trait ProfileStore: Send + Sync + 'static {
    /// `account`'s profile, if it ever set one.
    async fn profile(&self, account: AccountId) -> StoreResult<Option<Profile>>;

    /// Replaces `account`'s profile. Durable when it returns.
    async fn set_profile(&self, account: AccountId, profile: &Profile) -> StoreResult<()>;

    /// `account`'s PIN record, if it has a PIN.
    async fn pin(&self, account: AccountId) -> StoreResult<Option<PinRecord>>;

    /// Sets (`Some`, with fresh counters) or clears (`None`) `account`'s PIN hash. Durable when
    /// it returns.
    async fn set_pin(&self, account: AccountId, hash: Option<&str>) -> StoreResult<()>;

    /// Counts one PIN attempt, atomically: refused while locked; the `attempts_max`-th wrong
    /// attempt in a row locks the PIN for `lockout_ms` (the counter starts again after it).
    async fn count_pin_attempt(
        &self,
        account: AccountId,
        now_ms: u64,
        attempts_max: u32,
        lockout_ms: u64,
    ) -> StoreResult<PinAttempt>;

    /// A right PIN: clears the counter and any lockout.
    async fn reset_pin_attempts(&self, account: AccountId) -> StoreResult<()>;

    /// Stores a new pending link unless the account already has `max_pending` links that have
    /// not expired at `now_ms` (expired ones are dropped on the way, except approved ones: their
    /// device must be revoked first, by [`ProfileStore::expired_links`]' sweep). Returns whether
    /// it was stored; a link with the same code replaces the old one. Durable when it returns.
    async fn put_link(&self, link: &PendingLink, now_ms: u64, max_pending: u32) -> StoreResult<bool>;

    /// The link of `account` with this code, expired or not.
    async fn link(&self, account: AccountId, code: &str) -> StoreResult<Option<PendingLink>>;

    /// Removes and returns the link: of concurrent callers, exactly one gets it.
    async fn take_link(&self, account: AccountId, code: &str) -> StoreResult<Option<PendingLink>>;

    /// Approves `account`'s link `code` if it is pending and unexpired at `now_ms`: adds a
    /// device with the link's name (never primary; `DeviceLimit` past `max_devices`, leaving the
    /// link pending) and re-stores the link as approved for that device, to be collected by
    /// `collect_by_ms`, in one durable step, so no crash leaves a device its owner cannot
    /// collect. Of concurrent callers at most one gets the device; `None` when nothing was
    /// pending (taken, refused, expired, or the account is gone).
    async fn approve_link(
        &self,
        account: AccountId,
        code: &str,
        now_ms: u64,
        collect_by_ms: u64,
        max_devices: u32,
    ) -> StoreResult<Option<Device>>;

    /// Refuses `account`'s link `code` if it is pending and unexpired at `now_ms`: its state
    /// becomes refused (the new device is told when it collects), in one durable step, so of a
    /// refusal and an approval racing exactly one wins. Returns whether it was refused.
    async fn refuse_link(&self, account: AccountId, code: &str, now_ms: u64) -> StoreResult<bool>;

    /// The links of `account`, expired or not, ordered by code.
    async fn links(&self, account: AccountId) -> StoreResult<Vec<PendingLink>>;

    /// Up to `limit` links of any account that expired at `now_ms`, for the sweep that drops
    /// them: an approved one that is still here was never collected, so its device, which
    /// nobody can ever sign in as, is revoked before the link is taken.
    async fn expired_links(&self, now_ms: u64, limit: usize) -> StoreResult<Vec<PendingLink>>;

    /// Deletes `account`'s profile, PIN and links (account deletion). Durable when it returns.
    async fn erase_profile_rows(&self, account: AccountId) -> StoreResult<()>;
}

/// The counting rule of [`ProfileStore::count_pin_attempt`], shared by the engines: the record
/// after counting and what to answer.
pub fn count_pin_attempt(
    record: Option<PinRecord>,
    now_ms: u64,
    attempts_max: u32,
    lockout_ms: u64,
) -> (Option<PinRecord>, PinAttempt) {
    let Some(mut rec) = record else { return (None, PinAttempt::NoPin) };
    if rec.locked_until_ms > now_ms {
        let until_ms = rec.locked_until_ms;
        return (None, PinAttempt::Locked { until_ms });
    }
    rec.failed_attempts += 1;
    let attempts_left = attempts_max.max(1).saturating_sub(rec.failed_attempts);
    if attempts_left == 0 {
        rec.failed_attempts = 0;
        rec.locked_until_ms = now_ms + lockout_ms;
    }
    let hash = rec.hash.clone();
    (Some(rec), PinAttempt::Counted { hash, attempts_left })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin() -> Option<PinRecord> {
        Some(PinRecord { hash: "h".into(), failed_attempts: 0, locked_until_ms: 0 })
    }

    #[test]
    fn attempts_count_down_then_lock() {
        // Proves: each attempt is counted first; the last one locks; a locked PIN counts nothing.
        let (rec, a) = count_pin_attempt(pin(), 10, 2, 100);
        assert_eq!(a, PinAttempt::Counted { hash: "h".into(), attempts_left: 1 });
        let (rec, a) = count_pin_attempt(rec, 11, 2, 100);
        assert_eq!(a, PinAttempt::Counted { hash: "h".into(), attempts_left: 0 });
        assert_eq!(rec.as_ref().unwrap().locked_until_ms, 111);
        let (none, a) = count_pin_attempt(rec.clone(), 50, 2, 100);
        assert_eq!((none, a), (None, PinAttempt::Locked { until_ms: 111 }));
        let (_, a) = count_pin_attempt(rec, 111, 2, 100);
        assert_eq!(a, PinAttempt::Counted { hash: "h".into(), attempts_left: 1 });
        assert_eq!(count_pin_attempt(None, 1, 2, 3).1, PinAttempt::NoPin);
    }
}
