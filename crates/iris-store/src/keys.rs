//! The end-to-end key directory: per device its identity keys, its fallback key and its pool of
//! one-time keys, and which accounts exchanged keys with which (who to tell when an account's
//! identity keys change).
//!
//! The store keeps public keys and signatures as the strings the server was given (unpadded
//! base64, libolm's form); it checks nothing about them (the server verified the signatures
//! before storing). It owns the one hard promise of the directory: **a one-time key is handed
//! out at most once**, whatever claims run at once, on one node or many.

use async_trait::async_trait;

use crate::{AccountId, DeviceAddr, StoreResult};

/// A device's long-term public keys, as published once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// Curve25519 identity key (Olm's sender key).
    pub curve25519: String,
    /// Ed25519 fingerprint key, which signs everything else.
    pub ed25519: String,
    /// Ed25519 signature binding the two.
    pub signature: String,
}

/// A signed Curve25519 key: a one-time key or a fallback key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedKeyRecord {
    /// The client's id of the key, unique per device.
    pub key_id: String,
    /// The public key.
    pub key: String,
    /// Ed25519 signature by the device.
    pub signature: String,
}

/// What [`KeyStore::set_identity`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityOutcome {
    /// Stored: the device had none.
    Published,
    /// The device already had exactly these keys (a retried upload).
    Unchanged,
    /// The device already has other keys; nothing was changed.
    Conflict(DeviceIdentity),
}

/// What a device has in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyCounts {
    /// One-time keys left in the pool.
    pub one_time_keys: u32,
    /// Whether a fallback key is set.
    pub fallback_key: bool,
}

/// The key a claim handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimedKey {
    /// A one-time key, now removed from the pool.
    OneTime(SignedKeyRecord),
    /// The fallback key (the pool was empty); it stays until replaced.
    Fallback(SignedKeyRecord),
}

/// What one claim did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClaimOutcome {
    /// The key handed out; `None` when the device has neither one-time nor fallback keys.
    pub key: Option<ClaimedKey>,
    /// One-time keys left after the claim.
    pub one_time_keys_left: u32,
    /// Set for exactly one claim per crossing: the first to leave fewer than the watermark
    /// since the pool was last filled above it, or the first to hand out the current fallback
    /// key. The server then tells the device (`KeysLow`).
    pub notify: Option<LowKeys>,
}

/// Why a device should upload keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowKeys {
    /// One-time keys left.
    pub one_time_keys: u32,
    /// The fallback key was handed out.
    pub fallback_key_used: bool,
}

/// The key directory: durable, low-rate, exactly-once claims.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Records `device`'s identity keys unless it has some. Durable when it returns.
    async fn set_identity(&self, device: DeviceAddr, identity: DeviceIdentity) -> StoreResult<IdentityOutcome>;

    /// The identity keys of each of `devices`, in order (`None`: never published).
    async fn identities(&self, devices: &[DeviceAddr]) -> StoreResult<Vec<Option<DeviceIdentity>>>;

    /// Adds one-time keys to `device`'s pool, skipping key ids it already holds (a retry), and
    /// returns the pool's size after. Refused with [`StoreError::PoolFull`] (nothing added) when
    /// the pool would exceed `pool_max`. Filling the pool to `low_watermark` or more re-arms
    /// the low-keys notice. Durable when it returns.
    ///
    /// [`StoreError::PoolFull`]: crate::StoreError::PoolFull
    async fn add_one_time_keys(
        &self,
        device: DeviceAddr,
        keys: &[SignedKeyRecord],
        pool_max: u32,
        low_watermark: u32,
    ) -> StoreResult<u32>;

    /// Sets (replaces) `device`'s fallback key and re-arms its "fallback used" notice. Durable
    /// when it returns.
    async fn set_fallback_key(&self, device: DeviceAddr, key: SignedKeyRecord) -> StoreResult<()>;

    /// How many one-time keys `device` has left, and whether it has a fallback key.
    async fn key_counts(&self, device: DeviceAddr) -> StoreResult<KeyCounts>;

    /// Hands out one key of `device`: a one-time key, removed durably before this returns so
    /// that no other claim (here or on another node) can get it, or the fallback key when the
    /// pool is empty. See [`ClaimOutcome::notify`] for the low-keys notice.
    async fn claim_key(&self, device: DeviceAddr, low_watermark: u32) -> StoreResult<ClaimOutcome>;

    /// Deletes `device`'s one-time and fallback keys (revocation). Its identity stays on
    /// record (device ids are never reused). Durable when it returns.
    async fn delete_keys(&self, device: DeviceAddr) -> StoreResult<()>;

    /// Records that `account` and each of `peers` exchanged keys at `now_ms`, both ways.
    async fn record_key_peers(&self, account: AccountId, peers: &[AccountId], now_ms: u64) -> StoreResult<()>;

    /// The accounts that exchanged keys with `account` since `since_ms`, ascending.
    async fn key_peers(&self, account: AccountId, since_ms: u64) -> StoreResult<Vec<AccountId>>;
}
