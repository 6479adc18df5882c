//! The key directory service: devices publish their end-to-end keys (identity once, a fallback
//! key, batches of one-time keys), count them, query other accounts' identity keys and claim one
//! key per device to start Olm sessions. The server only stores and hands out public keys; every
//! signature is checked before anything is stored (`key_signatures.rs`).
//!
//! Side effects, through the send kernel: a claim that leaves a device short of one-time keys
//! (or hands out its fallback key) puts one `KeysLow` item in that device's inbox; a device
//! publishing its identity, or a device with keys being revoked, is announced to its
//! conversation partners (`identity_notices.rs`). Claims are recorded as key peers of both
//! accounts, which is what makes them partners.
//!
//! Knows the key store, the directory, the kernel and the notices. Knows nothing of sockets,
//! sessions or messages.

use std::collections::BTreeSet;
use std::sync::Arc;

use iris_proto::pb::{self, inbox_item, keys_op, keys_result};
use iris_store::{
    AccountId, AppendRequest, ClaimedKey, DeviceAddr, DeviceIdentity, IdentityOutcome, LowKeys, SignedKeyRecord, Store,
};

use crate::clock::Clock;
use crate::config::KeysConfig;
use crate::directory::Directory;
use crate::error::ServiceError;
use crate::fanout::{encode_item, entries_for, Fanout};
use crate::identity_notices::IdentityNotices;
use crate::ids::IdGenerator;
use crate::key_signatures::{check_identity, check_signed_key};
use crate::ratelimit::SharedLimit;

/// Most accounts one query or claim names.
pub const ACCOUNTS_PER_REQUEST_MAX: usize = 32;
/// Most single devices one claim names.
pub const DEVICES_PER_CLAIM_MAX: usize = 64;

/// The parts the key service is built from.
pub struct KeysDeps {
    /// The key directory (and what the notices read).
    pub store: Arc<dyn Store>,
    /// Active devices.
    pub directory: Arc<Directory>,
    /// Appends `KeysLow` items.
    pub fanout: Fanout,
    /// Identity-change notices.
    pub notices: Arc<IdentityNotices>,
    /// Server ids of the notices.
    pub ids: Arc<IdGenerator>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Bounds.
    pub config: KeysConfig,
    /// Claims per requesting account.
    pub claim_limit: SharedLimit<AccountId>,
    /// Claims of one account's keys, by anyone.
    pub target_limit: SharedLimit<AccountId>,
    /// Queries per requesting account.
    pub query_limit: SharedLimit<AccountId>,
}

/// The key directory service.
pub struct Keys {
    deps: KeysDeps,
}

impl Keys {
    /// The service over `deps`.
    pub fn new(deps: KeysDeps) -> Self {
        Self { deps }
    }

    /// The identity-change notices this service sends.
    pub fn notices(&self) -> &IdentityNotices {
        &self.deps.notices
    }

    /// Runs one key operation of `device`.
    pub async fn op(&self, device: DeviceAddr, op: pb::KeysOp) -> Result<pb::KeysResult, ServiceError> {
        use keys_result::Result as R;
        let result = match op.op {
            Some(keys_op::Op::Upload(u)) => R::Count(self.upload(device, u).await?),
            Some(keys_op::Op::Count(_)) => R::Count(self.count(device).await?),
            Some(keys_op::Op::Query(q)) => R::Devices(self.query(device, q).await?),
            Some(keys_op::Op::Claim(c)) => R::Bundles(self.claim(device, c).await?),
            None => return Err(ServiceError::InvalidArgument("an empty keys operation".into())),
        };
        Ok(pb::KeysResult { result: Some(result) })
    }

    async fn upload(&self, device: DeviceAddr, op: pb::KeysUpload) -> Result<pb::KeysCount, ServiceError> {
        let d = &self.deps;
        if op.one_time_keys.len() > d.config.upload_keys_max as usize {
            return Err(ServiceError::InvalidArgument(format!(
                "an upload carries at most {} one-time keys",
                d.config.upload_keys_max
            )));
        }
        if let Some(identity) = op.identity {
            check_identity(&identity)?;
            let new = record(&identity);
            match d.store.identities(&[device]).await?.pop().flatten() {
                // A retried upload: it was announced before it was stored.
                Some(stored) if stored == new => {}
                Some(_) => return Err(ServiceError::IdentityMismatch),
                None => {
                    // Announced first: a failure before the identity is stored leaves the
                    // directory without it, so the client uploads it again, and the notice
                    // (deduplicated per identity) goes out once.
                    d.notices.announce_added(device, identity).await?;
                    if let IdentityOutcome::Conflict(_) = d.store.set_identity(device, new).await? {
                        return Err(ServiceError::IdentityMismatch);
                    }
                }
            }
        }
        if !op.one_time_keys.is_empty() || op.fallback_key.is_some() {
            let identity = d.store.identities(&[device]).await?.pop().flatten().ok_or_else(|| {
                ServiceError::InvalidArgument("publish the identity keys before (or with) other keys".into())
            })?;
            for key in &op.one_time_keys {
                check_signed_key(&identity.ed25519, device.account, device.device, key, false)?;
            }
            if let Some(key) = &op.fallback_key {
                check_signed_key(&identity.ed25519, device.account, device.device, key, true)?;
            }
            if !op.one_time_keys.is_empty() {
                let keys: Vec<SignedKeyRecord> = op.one_time_keys.iter().map(signed_record).collect();
                d.store.add_one_time_keys(device, &keys, d.config.one_time_keys_max, d.config.low_watermark).await?;
            }
            if let Some(key) = &op.fallback_key {
                d.store.set_fallback_key(device, signed_record(key)).await?;
            }
        }
        self.count(device).await
    }

    async fn count(&self, device: DeviceAddr) -> Result<pb::KeysCount, ServiceError> {
        let d = &self.deps;
        let counts = d.store.key_counts(device).await?;
        let identity = d.store.identities(&[device]).await?.pop().flatten().is_some();
        Ok(pb::KeysCount {
            one_time_keys: counts.one_time_keys,
            fallback_key: counts.fallback_key,
            identity,
            one_time_keys_max: d.config.one_time_keys_max,
        })
    }

    async fn query(&self, device: DeviceAddr, op: pb::KeysQuery) -> Result<pb::DeviceKeysList, ServiceError> {
        let d = &self.deps;
        let accounts = distinct(&op.account_ids);
        if accounts.is_empty() || accounts.len() > ACCOUNTS_PER_REQUEST_MAX {
            return Err(ServiceError::InvalidArgument(format!(
                "a query names 1 to {ACCOUNTS_PER_REQUEST_MAX} accounts"
            )));
        }
        d.query_limit.take(&device.account).await?;
        let devices = d.directory.devices_of(&accounts).await?;
        let identities = d.store.identities(&devices).await?;
        let devices = devices
            .into_iter()
            .zip(identities)
            .map(|(addr, identity)| pb::DeviceKeys {
                account_id: addr.account,
                device_id: addr.device,
                identity: identity.map(wire),
            })
            .collect();
        Ok(pb::DeviceKeysList { devices })
    }

    async fn claim(&self, device: DeviceAddr, op: pb::KeysClaim) -> Result<pb::KeyBundles, ServiceError> {
        let d = &self.deps;
        let accounts = distinct(&op.account_ids);
        let n = accounts.len() + op.devices.len();
        if n == 0 || accounts.len() > ACCOUNTS_PER_REQUEST_MAX || op.devices.len() > DEVICES_PER_CLAIM_MAX {
            return Err(ServiceError::InvalidArgument(format!(
                "a claim names 1 to {ACCOUNTS_PER_REQUEST_MAX} accounts and at most {DEVICES_PER_CLAIM_MAX} devices"
            )));
        }
        d.claim_limit.take(&device.account).await?;
        let mut targets: BTreeSet<DeviceAddr> = d.directory.devices_of(&accounts).await?.into_iter().collect();
        for r in &op.devices {
            let addr = DeviceAddr::new(r.account_id, r.device_id);
            if d.directory.is_active(addr).await? {
                targets.insert(addr);
            }
        }
        targets.remove(&device);
        let target_accounts: BTreeSet<AccountId> = targets.iter().map(|t| t.account).collect();
        for &account in target_accounts.iter().filter(|&&a| a != device.account) {
            d.target_limit.take(&account).await?;
        }
        let targets: Vec<DeviceAddr> = targets.into_iter().collect();
        let identities = d.store.identities(&targets).await?;
        let mut bundles = Vec::with_capacity(targets.len());
        for (addr, identity) in targets.into_iter().zip(identities) {
            let mut bundle = pb::KeyBundle { account_id: addr.account, device_id: addr.device, ..Default::default() };
            if let Some(identity) = identity {
                let claim = d.store.claim_key(addr, d.config.low_watermark).await?;
                (bundle.key, bundle.fallback) = match claim.key {
                    Some(ClaimedKey::OneTime(k)) => (Some(signed_wire(k)), false),
                    Some(ClaimedKey::Fallback(k)) => (Some(signed_wire(k)), true),
                    None => (None, false),
                };
                bundle.identity = Some(wire(identity));
                if let Some(low) = claim.notify {
                    self.tell_low(addr, low).await?;
                }
            }
            bundles.push(bundle);
        }
        let peers: Vec<AccountId> = target_accounts.into_iter().filter(|&a| a != device.account).collect();
        if !peers.is_empty() {
            d.store.record_key_peers(device.account, &peers, d.clock.now_ms()).await?;
        }
        Ok(pb::KeyBundles { bundles })
    }

    /// Puts one `KeysLow` item in `device`'s inbox.
    async fn tell_low(&self, device: DeviceAddr, low: LowKeys) -> Result<(), ServiceError> {
        let d = &self.deps;
        let now = d.clock.now_ms();
        let id = d.ids.next(now);
        let body = pb::KeysLow { one_time_keys: low.one_time_keys, fallback_key_used: low.fallback_key_used };
        let item = encode_item(id, now, inbox_item::Body::KeysLow(body));
        let req = AppendRequest {
            expires_at_ms: None,
            dedup: None,
            server_msg_id: id,
            server_ts_ms: now,
            entries: entries_for([device], &item),
        };
        d.fanout.append(req).await?;
        Ok(())
    }

    /// A device was revoked: its keys are deleted and, if it had published an identity, its
    /// conversation partners are told.
    pub async fn revoked(&self, device: DeviceAddr) -> Result<(), ServiceError> {
        let d = &self.deps;
        d.store.delete_keys(device).await?;
        if d.store.identities(&[device]).await?.pop().flatten().is_some() {
            d.notices.announce_removed(device).await?;
        }
        Ok(())
    }
}

/// `ids` without repeats, in first-seen order.
fn distinct(ids: &[u64]) -> Vec<u64> {
    let mut seen = Vec::with_capacity(ids.len());
    for &id in ids {
        if !seen.contains(&id) {
            seen.push(id);
        }
    }
    seen
}

fn record(identity: &pb::IdentityKeys) -> DeviceIdentity {
    DeviceIdentity {
        curve25519: identity.curve25519.clone(),
        ed25519: identity.ed25519.clone(),
        signature: identity.signature.clone(),
    }
}

fn wire(identity: DeviceIdentity) -> pb::IdentityKeys {
    pb::IdentityKeys { curve25519: identity.curve25519, ed25519: identity.ed25519, signature: identity.signature }
}

fn signed_record(key: &pb::SignedKey) -> SignedKeyRecord {
    SignedKeyRecord { key_id: key.key_id.clone(), key: key.key.clone(), signature: key.signature.clone() }
}

fn signed_wire(key: SignedKeyRecord) -> pb::SignedKey {
    pb::SignedKey { key_id: key.key_id, key: key.key, signature: key.signature }
}

#[cfg(test)]
mod tests {
    use iris_proto::e2e;
    use iris_store::InboxStore;
    use prost::Message as _;
    use vodozemac::olm::Account;

    use super::*;
    use crate::testing::Parts;

    /// What `device` publishes: its identity and `n` signed one-time keys.
    fn upload(account: &mut Account, device: DeviceAddr, n: usize) -> pb::KeysOp {
        let keys = account.identity_keys();
        let (curve25519, ed25519) = (keys.curve25519.to_base64(), keys.ed25519.to_base64());
        let signature = account.sign(e2e::identity_message(&curve25519, &ed25519)).to_base64();
        account.generate_one_time_keys(n);
        let one_time_keys = account
            .one_time_keys()
            .into_iter()
            .map(|(id, key)| {
                let (key_id, key) = (id.to_base64(), key.to_base64());
                let message = e2e::one_time_key_message(device.account, device.device, &key_id, &key);
                pb::SignedKey { key_id, key, signature: account.sign(message).to_base64() }
            })
            .collect();
        let identity = Some(pb::IdentityKeys { curve25519, ed25519, signature });
        pb::KeysOp { op: Some(keys_op::Op::Upload(pb::KeysUpload { identity, one_time_keys, fallback_key: None })) }
    }

    /// The bodies in `device`'s inbox.
    async fn inbox(parts: &Parts, device: DeviceAddr) -> Vec<inbox_item::Body> {
        let entries = parts.store.read(device, 0, 100).await.unwrap();
        entries.into_iter().filter_map(|e| pb::InboxItem::decode(e.item).unwrap().body).collect()
    }

    #[tokio::test]
    async fn claims_hand_out_keys_once_tell_the_device_and_make_partners() {
        // Proves: a claim of 11 published keys hands out distinct keys to each claimer, the
        // owner gets one KeysLow when fewer than 10 are left, and the claimer becomes a partner:
        // the owner's next device is announced to it (and to the owner's other devices), not to
        // a stranger.
        let parts = Parts::new();
        let keys = &parts.services.keys;
        let bob = parts.account("+15550000002", 1).await;
        let (alice, carol) = (parts.account("+15550000001", 1).await, parts.account("+15550000003", 1).await);
        keys.op(bob[0], upload(&mut Account::new(), bob[0], 11)).await.unwrap();
        let claim = || pb::KeysOp {
            op: Some(keys_op::Op::Claim(pb::KeysClaim { account_ids: vec![bob[0].account], devices: vec![] })),
        };
        let mut seen = BTreeSet::new();
        for _ in 0..2 {
            let Some(keys_result::Result::Bundles(b)) = keys.op(alice[0], claim()).await.unwrap().result else {
                panic!("bundles")
            };
            assert!(seen.insert(b.bundles[0].key.clone().unwrap().key_id), "a key handed out twice");
        }
        let lows: Vec<_> =
            inbox(&parts, bob[0]).await.into_iter().filter(|b| matches!(b, inbox_item::Body::KeysLow(_))).collect();
        assert_eq!(lows, vec![inbox_item::Body::KeysLow(pb::KeysLow { one_time_keys: 9, fallback_key_used: false })]);
        let bob_laptop = parts.account("+15550000002", 1).await[0];
        keys.op(bob_laptop, upload(&mut Account::new(), bob_laptop, 1)).await.unwrap();
        let announced = |bodies: Vec<inbox_item::Body>| {
            bodies
                .iter()
                .filter(|b| matches!(b, inbox_item::Body::IdentityChange(c) if c.device_id == bob_laptop.device))
                .count()
        };
        assert_eq!(announced(inbox(&parts, alice[0]).await), 1, "the claimer hears once");
        assert_eq!(announced(inbox(&parts, bob[0]).await), 1, "the owner's other device hears");
        assert_eq!(announced(inbox(&parts, carol[0]).await), 0, "a stranger hears nothing");
    }
}
