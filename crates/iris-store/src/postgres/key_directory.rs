//! [`KeyStore`] on PostgreSQL: a device's identity, one-time keys and key state on its account's
//! shard, written with synced commits; key-exchange peers on each account's shard.
//!
//! Exactly-once claims across nodes: a claim locks the device's `key_state` row (`FOR UPDATE`),
//! so claims of one device run one at a time whichever node they come from, deletes one pool
//! row (`DELETE … RETURNING`, the row chosen `FOR UPDATE SKIP LOCKED`) and commits before the
//! key is returned. A deleted row cannot be returned twice, and a crash before the commit
//! returns nothing.

use async_trait::async_trait;
use tokio_postgres::Transaction;

use super::error::db_err;
use super::shards::{sql, unsql, Shard};
use super::{query, PgStore};
use crate::{
    AccountId, ClaimOutcome, ClaimedKey, DeviceAddr, DeviceIdentity, IdentityOutcome, KeyCounts, KeyStore, LowKeys,
    SignedKeyRecord, StoreError, StoreResult,
};

impl PgStore {
    fn device_shard(&self, device: DeviceAddr) -> &Shard {
        self.account_shard(device.account)
    }

    /// Runs `work` in one transaction on `device`'s shard with its `key_state` row locked.
    async fn with_key_state<T, F>(&self, device: DeviceAddr, work: F) -> StoreResult<T>
    where
        F: for<'a> FnOnce(
            &'a Transaction<'a>,
            KeyState,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<T>> + Send + 'a>>,
    {
        let shard = self.device_shard(device);
        let err = |e| db_err(shard.idx, e);
        let mut client = shard.client().await?;
        let tx = client.transaction().await.map_err(err)?;
        let (a, d) = (sql(device.account), device.device as i32);
        tx.execute("INSERT INTO key_state (account, device) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&a, &d])
            .await
            .map_err(err)?;
        let row = tx
            .query_one(
                "SELECT low_notified, fallback_notified, fallback_key_id, fallback_key, fallback_signature
                 FROM key_state WHERE account = $1 AND device = $2 FOR UPDATE",
                &[&a, &d],
            )
            .await
            .map_err(err)?;
        let fallback = match (row.get::<_, Option<String>>(2), row.get(3), row.get(4)) {
            (Some(key_id), Some(key), Some(signature)) => Some(SignedKeyRecord { key_id, key, signature }),
            _ => None,
        };
        let state = KeyState { low_notified: row.get(0), fallback_notified: row.get(1), fallback };
        let out = work(&tx, state).await?;
        tx.commit().await.map_err(err)?;
        Ok(out)
    }
}

/// A device's locked `key_state` row.
struct KeyState {
    low_notified: bool,
    fallback_notified: bool,
    fallback: Option<SignedKeyRecord>,
}

async fn one_time_count(tx: &Transaction<'_>, shard: usize, device: DeviceAddr) -> StoreResult<u32> {
    let row = tx
        .query_one(
            "SELECT count(*) FROM one_time_keys WHERE account = $1 AND device = $2",
            &[&sql(device.account), &(device.device as i32)],
        )
        .await
        .map_err(|e| db_err(shard, e))?;
    Ok(row.get::<_, i64>(0) as u32)
}

async fn set_flags(
    tx: &Transaction<'_>,
    shard: usize,
    device: DeviceAddr,
    low: bool,
    fallback: bool,
) -> StoreResult<()> {
    tx.execute(
        "UPDATE key_state SET low_notified = $3, fallback_notified = $4 WHERE account = $1 AND device = $2",
        &[&sql(device.account), &(device.device as i32), &low, &fallback],
    )
    .await
    .map_err(|e| db_err(shard, e))?;
    Ok(())
}

#[async_trait]
impl KeyStore for PgStore {
    async fn set_identity(&self, device: DeviceAddr, identity: DeviceIdentity) -> StoreResult<IdentityOutcome> {
        self.on_task(move |this| async move {
            let shard = this.device_shard(device);
            let (a, d) = (sql(device.account), device.device as i32);
            let inserted = query(
                shard,
                "INSERT INTO device_identities (account, device, curve25519, ed25519, signature)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
                &[&a, &d, &identity.curve25519, &identity.ed25519, &identity.signature],
            )
            .await?;
            if !inserted.is_empty() {
                return Ok(IdentityOutcome::Published);
            }
            let existing = this.identities(&[device]).await?.pop().flatten();
            match existing {
                Some(e) if e == identity => Ok(IdentityOutcome::Unchanged),
                Some(e) => Ok(IdentityOutcome::Conflict(e)),
                None => Err(StoreError::Unavailable("identity vanished while publishing".into())),
            }
        })
        .await
    }

    async fn identities(&self, devices: &[DeviceAddr]) -> StoreResult<Vec<Option<DeviceIdentity>>> {
        let devices = devices.to_owned();
        self.on_task(move |this| async move {
            let devices: &[DeviceAddr] = &devices;
            let mut out = Vec::with_capacity(devices.len());
            for &device in devices {
                let rows = query(
                    this.device_shard(device),
                    "SELECT curve25519, ed25519, signature FROM device_identities WHERE account = $1 AND device = $2",
                    &[&sql(device.account), &(device.device as i32)],
                )
                .await?;
                out.push(rows.first().map(|r| DeviceIdentity {
                    curve25519: r.get(0),
                    ed25519: r.get(1),
                    signature: r.get(2),
                }));
            }
            Ok(out)
        })
        .await
    }

    async fn add_one_time_keys(
        &self,
        device: DeviceAddr,
        keys: &[SignedKeyRecord],
        pool_max: u32,
        low_watermark: u32,
    ) -> StoreResult<u32> {
        let keys = keys.to_owned();
        self.on_task(move |this| async move {
            let keys: &[SignedKeyRecord] = &keys;
            let shard = this.device_shard(device).idx;
            let keys = keys.to_vec();
            this.with_key_state(device, move |tx, state| {
                Box::pin(async move {
                    let (a, d) = (sql(device.account), device.device as i32);
                    let ids: Vec<&str> = keys.iter().map(|k| k.key_id.as_str()).collect();
                    let values: Vec<&str> = keys.iter().map(|k| k.key.as_str()).collect();
                    let sigs: Vec<&str> = keys.iter().map(|k| k.signature.as_str()).collect();
                    let inserted = tx
                        .execute(
                            "INSERT INTO one_time_keys (account, device, key_id, key, signature)
                             SELECT $1, $2, k.id, k.key, k.sig FROM unnest($3::text[], $4::text[], $5::text[])
                                 AS k(id, key, sig)
                             ON CONFLICT DO NOTHING",
                            &[&a, &d, &ids, &values, &sigs],
                        )
                        .await
                        .map_err(|e| db_err(shard, e))?;
                    let count = one_time_count(tx, shard, device).await?;
                    if count > pool_max {
                        // Dropping the transaction rolls the insert back.
                        return Err(StoreError::PoolFull { max: pool_max, would_hold: count });
                    }
                    let _ = inserted;
                    if count >= low_watermark && state.low_notified {
                        set_flags(tx, shard, device, false, state.fallback_notified).await?;
                    }
                    Ok(count)
                })
            })
            .await
        })
        .await
    }

    async fn set_fallback_key(&self, device: DeviceAddr, key: SignedKeyRecord) -> StoreResult<()> {
        self.on_task(move |this| async move {
            let shard = this.device_shard(device).idx;
            this.with_key_state(device, move |tx, _state| {
                Box::pin(async move {
                    tx.execute(
                        "UPDATE key_state SET fallback_notified = false, fallback_key_id = $3, fallback_key = $4,
                             fallback_signature = $5
                         WHERE account = $1 AND device = $2",
                        &[&sql(device.account), &(device.device as i32), &key.key_id, &key.key, &key.signature],
                    )
                    .await
                    .map_err(|e| db_err(shard, e))?;
                    Ok(())
                })
            })
            .await
        })
        .await
    }

    async fn key_counts(&self, device: DeviceAddr) -> StoreResult<KeyCounts> {
        self.on_task(move |this| async move {
            let rows = query(
                this.device_shard(device),
                "SELECT (SELECT count(*) FROM one_time_keys WHERE account = $1 AND device = $2),
                        EXISTS (SELECT 1 FROM key_state WHERE account = $1 AND device = $2 AND fallback_key IS NOT NULL)",
                &[&sql(device.account), &(device.device as i32)],
            )
            .await?;
            let row = rows.first().ok_or_else(|| StoreError::Unavailable("no answer to a count".into()))?;
            Ok(KeyCounts { one_time_keys: row.get::<_, i64>(0) as u32, fallback_key: row.get(1) })
        })
        .await
    }

    async fn claim_key(&self, device: DeviceAddr, low_watermark: u32) -> StoreResult<ClaimOutcome> {
        self.on_task(move |this| async move {
            let shard = this.device_shard(device).idx;
            this.with_key_state(device, move |tx, state| {
                Box::pin(async move {
                    let (a, d) = (sql(device.account), device.device as i32);
                    let taken = tx
                        .query(
                            "DELETE FROM one_time_keys WHERE (account, device, key_id) IN (
                                 SELECT account, device, key_id FROM one_time_keys
                                 WHERE account = $1 AND device = $2 ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
                             RETURNING key_id, key, signature",
                            &[&a, &d],
                        )
                        .await
                        .map_err(|e| db_err(shard, e))?;
                    if let Some(row) = taken.first() {
                        let key = SignedKeyRecord { key_id: row.get(0), key: row.get(1), signature: row.get(2) };
                        let left = one_time_count(tx, shard, device).await?;
                        let notify = left < low_watermark && !state.low_notified;
                        if notify {
                            set_flags(tx, shard, device, true, state.fallback_notified).await?;
                        }
                        let low = LowKeys { one_time_keys: left, fallback_key_used: false };
                        return Ok(ClaimOutcome {
                            key: Some(ClaimedKey::OneTime(key)),
                            one_time_keys_left: left,
                            notify: notify.then_some(low),
                        });
                    }
                    let Some(fallback) = state.fallback else { return Ok(ClaimOutcome::default()) };
                    let notify = !state.fallback_notified;
                    if notify {
                        set_flags(tx, shard, device, true, true).await?;
                    }
                    let low = LowKeys { one_time_keys: 0, fallback_key_used: true };
                    Ok(ClaimOutcome {
                        key: Some(ClaimedKey::Fallback(fallback)),
                        one_time_keys_left: 0,
                        notify: notify.then_some(low),
                    })
                })
            })
            .await
        })
        .await
    }

    async fn delete_keys(&self, device: DeviceAddr) -> StoreResult<()> {
        self.on_task(move |this| async move {
            let shard = this.device_shard(device);
            let (a, d) = (sql(device.account), device.device as i32);
            query(shard, "DELETE FROM one_time_keys WHERE account = $1 AND device = $2", &[&a, &d]).await?;
            query(shard, "DELETE FROM key_state WHERE account = $1 AND device = $2", &[&a, &d]).await?;
            Ok(())
        })
        .await
    }

    async fn record_key_peers(&self, account: AccountId, peers: &[AccountId], now_ms: u64) -> StoreResult<()> {
        let peers = peers.to_owned();
        self.on_task(move |this| async move {
            let peers: &[AccountId] = &peers;
            const UPSERT: &str = "INSERT INTO key_peers (account, peer, last_ms) VALUES ($1, $2, $3)
                                  ON CONFLICT (account, peer) DO UPDATE SET last_ms = excluded.last_ms";
            for &peer in peers.iter().filter(|&&p| p != account) {
                query(this.account_shard(account), UPSERT, &[&sql(account), &sql(peer), &sql(now_ms)]).await?;
                query(this.account_shard(peer), UPSERT, &[&sql(peer), &sql(account), &sql(now_ms)]).await?;
            }
            Ok(())
        })
        .await
    }

    async fn key_peers(&self, account: AccountId, since_ms: u64) -> StoreResult<Vec<AccountId>> {
        self.on_task(move |this| async move {
            let rows = query(
                this.account_shard(account),
                "SELECT peer FROM key_peers WHERE account = $1 AND last_ms >= $2",
                &[&sql(account), &sql(since_ms)],
            )
            .await?;
            let mut ids: Vec<AccountId> = rows.iter().map(|r| unsql(r.get(0))).collect();
            ids.sort_unstable();
            Ok(ids)
        })
        .await
    }
}
