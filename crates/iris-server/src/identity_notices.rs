//! "Security code changed": when an account's set of identity keys changes (a device published
//! its keys, or a device with keys was revoked), every device of every account that has a
//! conversation with it gets one durable `IdentityChange` inbox item, through the send kernel.
//!
//! "Has a conversation with it" is concrete and bounded: the account's own other devices, its
//! contacts, the members of its groups, and the accounts whose keys it claimed or that claimed
//! its keys within the inbox TTL (anyone who holds an Olm session with one of its devices
//! claimed a key of it, or had one claimed). Each device gets the notice once per change.
//!
//! Knows the kernel, the directory and the stores it reads (contacts, groups, key peers).
//! Knows nothing of sessions or of how keys are published.

use std::collections::BTreeSet;
use std::sync::Arc;

use iris_proto::pb::{self, inbox_item, IdentityChangeType};
use iris_store::{AccountId, AppendRequest, DedupKey, DeviceAddr, Store};

use crate::clock::Clock;
use crate::directory::Directory;
use crate::error::ServiceError;
use crate::fanout::{encode_item, entries_for, server_notice_key, Fanout};
use crate::ids::IdGenerator;

/// Tells conversation partners about identity changes.
pub struct IdentityNotices {
    fanout: Fanout,
    directory: Arc<Directory>,
    store: Arc<dyn Store>,
    ids: Arc<IdGenerator>,
    clock: Arc<dyn Clock>,
    /// How far back key exchanges count (the inbox TTL).
    peers_window_ms: u64,
}

impl IdentityNotices {
    /// Notices over these parts; key exchanges older than `peers_window_ms` no longer count.
    pub fn new(
        fanout: Fanout,
        directory: Arc<Directory>,
        store: Arc<dyn Store>,
        ids: Arc<IdGenerator>,
        clock: Arc<dyn Clock>,
        peers_window_ms: u64,
    ) -> Self {
        Self { fanout, directory, store, ids, clock, peers_window_ms }
    }

    /// Tells the partners of `device`'s account that it published `identity`, once per
    /// identity: a repeat within the dedup window (an upload retried after a failure) is
    /// deduplicated by the store ([`server_notice_key`]).
    /// Returns once the notices are durable.
    pub async fn announce_added(&self, device: DeviceAddr, identity: pb::IdentityKeys) -> Result<(), ServiceError> {
        let key: String = identity.curve25519.chars().take(32).collect();
        let dedup = server_notice_key(device.account, format!("identity/{}/{key}", device.device));
        self.announce(device, IdentityChangeType::DeviceAdded, Some(identity), Some(dedup)).await
    }

    /// Tells the partners of `device`'s account that it was revoked. Returns once the notices
    /// are durable.
    pub async fn announce_removed(&self, device: DeviceAddr) -> Result<(), ServiceError> {
        self.announce(device, IdentityChangeType::DeviceRemoved, None, None).await
    }

    /// Tells the partners of `device`'s account that it changed (`kind`), with the keys it
    /// published when it was added.
    async fn announce(
        &self,
        device: DeviceAddr,
        kind: IdentityChangeType,
        identity: Option<pb::IdentityKeys>,
        dedup: Option<DedupKey>,
    ) -> Result<(), ServiceError> {
        let Some(view) = self.directory.by_id(device.account).await? else { return Ok(()) };
        let partners = self.partners(device.account).await?;
        let mut devices = self.directory.devices_of(&partners).await?;
        devices.retain(|&d| d != device);
        if devices.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let id = self.ids.next(now);
        let item = encode_item(
            id,
            now,
            inbox_item::Body::IdentityChange(pb::IdentityChange {
                account_id: device.account,
                phone: view.phone.clone(),
                device_id: device.device,
                r#type: kind as i32,
                identity,
            }),
        );
        let entries = entries_for(devices, &item);
        self.fanout.append(AppendRequest { dedup, ..AppendRequest::event(id, now, entries) }).await?;
        Ok(())
    }

    /// The accounts that have a conversation with `account` (see the module doc), itself
    /// included, ascending and without repeats.
    pub async fn partners(&self, account: AccountId) -> Result<Vec<AccountId>, ServiceError> {
        let mut out = BTreeSet::from([account]);
        out.extend(self.store.contacts(account).await?);
        for group in self.store.groups_of(account).await? {
            if let Some(g) = self.store.group(group).await? {
                out.extend(g.members.iter().map(|m| m.account));
            }
        }
        let since = self.clock.now_ms().saturating_sub(self.peers_window_ms);
        out.extend(self.store.key_peers(account, since).await?);
        Ok(out.into_iter().collect())
    }
}
