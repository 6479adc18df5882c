//! Push targets: where to wake a device that has no open connection (a provider and the token
//! the device got from it). One target per device; registering again replaces it.
//!
//! The store keeps them; it neither knows the providers nor sends anything (the server's
//! `push/` does). Targets must be erasable per device (revocation) and per account (account
//! deletion).

use async_trait::async_trait;

use crate::{AccountId, DeviceAddr, StoreResult};

/// A device's push target as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    /// The device it wakes.
    pub device: DeviceAddr,
    /// The provider's name as the server chose it (`webhook`, `fcm`, `apns`); not interpreted.
    pub provider: String,
    /// The provider's token (an FCM registration token, an APNs device token, a UnifiedPush
    /// endpoint URL); not interpreted.
    pub token: String,
    /// When it was registered, ms since the Unix epoch.
    pub updated_at_ms: u64,
}

/// Push targets by device: durable, low-rate (registration), read when a wake-up is due.
#[async_trait]
pub trait PushStore: Send + Sync + 'static {
    /// Records `target` as its device's target, replacing any earlier one. Durable when it
    /// returns.
    async fn set_push_target(&self, target: PushTarget) -> StoreResult<()>;

    /// The device's target, if it registered one.
    async fn push_target(&self, device: DeviceAddr) -> StoreResult<Option<PushTarget>>;

    /// Deletes the device's target; with `only_token`, only while it still holds that token (a
    /// provider that rejected an old token must not erase a newer registration). Whether one
    /// was deleted. Durable when it returns.
    async fn delete_push_target(&self, device: DeviceAddr, only_token: Option<&str>) -> StoreResult<bool>;

    /// Deletes the targets of every device of `account` (account deletion); how many. Durable
    /// when it returns.
    async fn delete_account_push_targets(&self, account: AccountId) -> StoreResult<u64>;
}
