//! [`AccountStore`] on PostgreSQL. An account lives on its phone's shard and its id names that
//! shard (see `shards.rs`), so registration (account row + device row) is one transaction on
//! one shard; revocation (device row + its tokens) too. Every change commits synchronously.
//! Only `take_refresh_token` fans out: the token's hash is all it knows.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::error::db_err;
use super::shards::{shard_of_id, shard_of_phone, sql, unsql, Shard, SHARD_BITS};
use super::{query, query_shards_up_to, PgStore};
use crate::{
    Account, AccountId, AccountStore, Device, DeviceAddr, DeviceId, RefreshTokenRecord, StoreError, StoreResult,
    UnfinishedRevocation,
};

pub(super) const ACCOUNT_COLUMNS: &str = "id, phone, created_at_ms";
const DEVICE_COLUMNS: &str = "account, device, name, is_primary, created_at_ms, revoked_at_ms";

pub(super) fn account_of(row: &Row) -> Account {
    Account { id: unsql(row.get(0)), phone: row.get(1), created_at_ms: unsql(row.get(2)) }
}

fn device_of(row: &Row) -> Device {
    Device {
        addr: DeviceAddr::new(unsql(row.get(0)), row.get::<_, i32>(1) as u32),
        name: row.get(2),
        primary: row.get(3),
        created_at_ms: unsql(row.get(4)),
        revoked_at_ms: row.get::<_, Option<i64>>(5).map(unsql),
    }
}

/// `AccountDeleting` while `phone`'s account is being erased (its mark is taken under the
/// account row's lock, so a caller holding that lock cannot race it).
pub(super) async fn refuse_while_erased(
    tx: &tokio_postgres::Transaction<'_>,
    shard: usize,
    phone: &str,
) -> StoreResult<()> {
    let marked = tx.query("SELECT 1 FROM account_erasures WHERE phone = $1", &[&phone]).await;
    if marked.map_err(|e| db_err(shard, e))?.is_empty() {
        Ok(())
    } else {
        Err(StoreError::AccountDeleting)
    }
}

/// Adds a device named `name` to account `id` (whose row `tx` holds locked, with its
/// `next_device_id`), enforcing `max_devices`; not committed, so another row can join the
/// transaction (an approved link).
pub(super) async fn stage_device(
    tx: &tokio_postgres::Transaction<'_>,
    shard: usize,
    id: AccountId,
    next_device_id: i32,
    name: &str,
    now_ms: u64,
    max_devices: u32,
) -> StoreResult<Device> {
    let err = |e| db_err(shard, e);
    let active: i64 = tx
        .query_one("SELECT count(*) FROM devices WHERE account = $1 AND revoked_at_ms IS NULL", &[&sql(id)])
        .await
        .map_err(err)?
        .get(0);
    if active >= i64::from(max_devices) {
        return Err(StoreError::DeviceLimit { max: max_devices });
    }
    let device = Device {
        addr: DeviceAddr::new(id, next_device_id as u32),
        name: name.to_owned(),
        primary: next_device_id == 1,
        created_at_ms: now_ms,
        revoked_at_ms: None,
    };
    let after = next_device_id
        .checked_add(1)
        .ok_or_else(|| StoreError::Corrupt(format!("account {id} ran out of device ids")))?;
    tx.execute(
        &format!("INSERT INTO devices ({DEVICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, NULL)"),
        &[&sql(id), &next_device_id, &device.name, &device.primary, &sql(now_ms)],
    )
    .await
    .map_err(err)?;
    tx.execute("UPDATE accounts SET next_device_id = $2 WHERE id = $1", &[&sql(id), &after]).await.map_err(err)?;
    Ok(device)
}

impl PgStore {
    /// The shard of an account (or of a group: their ids name their shard alike).
    pub(super) fn account_shard(&self, account: AccountId) -> &Shard {
        self.inner.shard(shard_of_id(account, self.inner.n_shards()))
    }
}

#[async_trait]
impl AccountStore for PgStore {
    async fn account_by_phone(&self, phone: &str) -> StoreResult<Option<Account>> {
        let phone = phone.to_owned();
        self.on_task(move |this| async move {
            let phone: &str = &phone;
            let shard = this.inner.shard(shard_of_phone(phone, this.inner.n_shards()));
            let rows =
                query(shard, "SELECT id, phone, created_at_ms FROM accounts WHERE phone = $1", &[&phone]).await?;
            Ok(rows.first().map(account_of))
        })
        .await
    }

    async fn account(&self, id: AccountId) -> StoreResult<Option<Account>> {
        self.on_task(move |this| async move {
            let rows = query(
                this.account_shard(id),
                "SELECT id, phone, created_at_ms FROM accounts WHERE id = $1",
                &[&sql(id)],
            )
            .await?;
            Ok(rows.first().map(account_of))
        })
        .await
    }

    async fn register_device(
        &self,
        phone: &str,
        device_name: &str,
        now_ms: u64,
        max_devices: u32,
    ) -> StoreResult<(Account, Device)> {
        let phone = phone.to_owned();
        let device_name = device_name.to_owned();
        self.on_task(move |this| async move {
            let phone: &str = &phone;
            let device_name: &str = &device_name;
            let idx = shard_of_phone(phone, this.inner.n_shards());
            let err = |e| db_err(idx, e);
            let mut client = this.inner.shard(idx).client().await?;
            let tx = client.transaction().await.map_err(err)?;
            // A phone whose account is being deleted waits until the deletion finished (the mark
            // is taken under the account row's lock, see `erasure.rs`, so this check cannot race it).
            refuse_while_erased(&tx, idx, phone).await?;
            // Creates the account unless the phone has one (a concurrent creator makes this wait
            // for its commit, then do nothing); the account id names this shard.
            tx.execute(
                "INSERT INTO accounts (id, phone, created_at_ms, next_device_id)
                 VALUES ((nextval('account_seq') << $3) | $2, $1, $4, 1)
                 ON CONFLICT (phone) DO NOTHING",
                &[&phone, &(idx as i64), &(SHARD_BITS as i32), &sql(now_ms)],
            )
            .await
            .map_err(err)?;
            // The row lock serialises registrations of one account: the device limit holds.
            let row = tx
                .query_one(
                    &format!("SELECT {ACCOUNT_COLUMNS}, next_device_id FROM accounts WHERE phone = $1 FOR UPDATE"),
                    &[&phone],
                )
                .await
                .map_err(err)?;
            let account = account_of(&row);
            refuse_while_erased(&tx, idx, phone).await?;
            if shard_of_id(account.id, this.inner.n_shards()) != idx {
                return Err(StoreError::Corrupt(format!(
                    "account {} found on shard {idx}, routed elsewhere",
                    account.id
                )));
            }
            // A `DeviceLimit` rolls back: a refused first login leaves no account behind.
            let device = stage_device(&tx, idx, account.id, row.get(3), device_name, now_ms, max_devices).await?;
            tx.commit().await.map_err(err)?;
            Ok((account, device))
        })
        .await
    }

    async fn register_primary(
        &self,
        phone: &str,
        device_name: &str,
        now_ms: u64,
    ) -> StoreResult<Option<(Account, Device, Vec<Device>)>> {
        let phone = phone.to_owned();
        let device_name = device_name.to_owned();
        self.on_task(move |this| async move {
            let phone: &str = &phone;
            let device_name: &str = &device_name;
            let idx = shard_of_phone(phone, this.inner.n_shards());
            let err = |e| db_err(idx, e);
            let mut client = this.inner.shard(idx).client().await?;
            let tx = client.transaction().await.map_err(err)?;
            // The row lock serialises this with registrations and other re-registrations.
            let Some(row) = tx
                .query_opt(
                    &format!("SELECT {ACCOUNT_COLUMNS}, next_device_id FROM accounts WHERE phone = $1 FOR UPDATE"),
                    &[&phone],
                )
                .await
                .map_err(err)?
            else {
                return Ok(None);
            };
            let account = account_of(&row);
            let next_device_id: i32 = row.get(3);
            let revoked: Vec<Device> = tx
                .query(
                    &format!(
                        "UPDATE devices SET revoked_at_ms = $2 WHERE account = $1 AND revoked_at_ms IS NULL
                         RETURNING {DEVICE_COLUMNS}"
                    ),
                    &[&sql(account.id), &sql(now_ms)],
                )
                .await
                .map_err(err)?
                .iter()
                .map(device_of)
                .collect();
            let ids: Vec<i32> = revoked.iter().map(|d| d.addr.device as i32).collect();
            tx.execute("DELETE FROM refresh_tokens WHERE account = $1 AND device = ANY($2)", &[&sql(account.id), &ids])
                .await
                .map_err(err)?;
            tx.execute(
                "INSERT INTO device_revocations (account, device, revoked_at_ms, announce_by)
                 SELECT $1, d, $3, NULL FROM unnest($2::integer[]) AS d
                 ON CONFLICT (account, device) DO NOTHING",
                &[&sql(account.id), &ids, &sql(now_ms)],
            )
            .await
            .map_err(err)?;
            let device = Device {
                addr: DeviceAddr::new(account.id, next_device_id as u32),
                name: device_name.to_owned(),
                primary: true,
                created_at_ms: now_ms,
                revoked_at_ms: None,
            };
            let after = next_device_id
                .checked_add(1)
                .ok_or_else(|| StoreError::Corrupt(format!("account {} ran out of device ids", account.id)))?;
            tx.execute(
                &format!("INSERT INTO devices ({DEVICE_COLUMNS}) VALUES ($1, $2, $3, TRUE, $4, NULL)"),
                &[&sql(account.id), &next_device_id, &device.name, &sql(now_ms)],
            )
            .await
            .map_err(err)?;
            tx.execute("UPDATE accounts SET next_device_id = $2 WHERE id = $1", &[&sql(account.id), &after])
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)?;
            let mut revoked = revoked;
            revoked.sort_by_key(|d| d.addr.device);
            Ok(Some((account, device, revoked)))
        })
        .await
    }

    async fn devices(&self, account: AccountId) -> StoreResult<Vec<Device>> {
        self.on_task(move |this| async move {
            let rows = query(
                this.account_shard(account),
                "SELECT account, device, name, is_primary, created_at_ms, revoked_at_ms FROM devices
                 WHERE account = $1 AND revoked_at_ms IS NULL ORDER BY device",
                &[&sql(account)],
            )
            .await?;
            Ok(rows.iter().map(device_of).collect())
        })
        .await
    }

    async fn device(&self, addr: DeviceAddr) -> StoreResult<Option<Device>> {
        self.on_task(move |this| async move {
            let rows = query(
                this.account_shard(addr.account),
                "SELECT account, device, name, is_primary, created_at_ms, revoked_at_ms FROM devices
                 WHERE account = $1 AND device = $2",
                &[&sql(addr.account), &(addr.device as i32)],
            )
            .await?;
            Ok(rows.first().map(device_of))
        })
        .await
    }

    async fn revoke_device(&self, addr: DeviceAddr, now_ms: u64, announce_by: Option<DeviceId>) -> StoreResult<bool> {
        self.on_task(move |this| async move {
            let shard = this.account_shard(addr.account);
            let err = |e| db_err(shard.idx, e);
            let mut client = shard.client().await?;
            let (account, device) = (sql(addr.account), addr.device as i32);
            let tx = client.transaction().await.map_err(err)?;
            let n = tx
                .execute(
                    "UPDATE devices SET revoked_at_ms = $3
                     WHERE account = $1 AND device = $2 AND revoked_at_ms IS NULL",
                    &[&account, &device, &sql(now_ms)],
                )
                .await
                .map_err(err)?;
            if n == 0 {
                return Ok(false);
            }
            tx.execute("DELETE FROM refresh_tokens WHERE account = $1 AND device = $2", &[&account, &device])
                .await
                .map_err(err)?;
            let by = announce_by.map(|d| d as i32);
            tx.execute(
                "INSERT INTO device_revocations (account, device, revoked_at_ms, announce_by) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (account, device) DO UPDATE SET revoked_at_ms = excluded.revoked_at_ms,
                     announce_by = excluded.announce_by",
                &[&account, &device, &sql(now_ms), &by],
            )
            .await
            .map_err(err)?;
            tx.commit().await.map_err(err)?;
            Ok(true)
        })
        .await
    }

    async fn unfinished_revocations(&self, before_ms: u64, limit: usize) -> StoreResult<Vec<UnfinishedRevocation>> {
        self.on_task(move |this| async move {
            query_shards_up_to(
                &this.inner.shards,
                "SELECT d.account, d.device, d.name, d.is_primary, d.created_at_ms, d.revoked_at_ms, r.announce_by
                 FROM device_revocations r JOIN devices d ON d.account = r.account AND d.device = r.device
                 WHERE r.revoked_at_ms <= $1 ORDER BY r.revoked_at_ms LIMIT $2",
                &[&sql(before_ms)],
                limit,
                |row| {
                    Ok(UnfinishedRevocation {
                        device: device_of(row),
                        announce_by: row.get::<_, Option<i32>>(6).map(|d| d as u32),
                    })
                },
            )
            .await
        })
        .await
    }

    async fn finish_revocation(&self, addr: DeviceAddr) -> StoreResult<()> {
        self.on_task(move |this| async move {
            query(
                this.account_shard(addr.account),
                "DELETE FROM device_revocations WHERE account = $1 AND device = $2",
                &[&sql(addr.account), &(addr.device as i32)],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn put_refresh_token(&self, token: RefreshTokenRecord) -> StoreResult<()> {
        self.on_task(move |this| async move {
            let idx = shard_of_id(token.device.account, this.inner.n_shards());
            let client = this.inner.shard(idx).client().await?;
            client
                .execute(
                    "INSERT INTO refresh_tokens (hash, account, device, expires_at_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (hash) DO UPDATE
                     SET account = excluded.account, device = excluded.device, expires_at_ms = excluded.expires_at_ms",
                    &[
                        &&token.hash[..],
                        &sql(token.device.account),
                        &(token.device.device as i32),
                        &sql(token.expires_at_ms),
                    ],
                )
                .await
                .map_err(|e| db_err(idx, e))?;
            Ok(())
        })
        .await
    }

    async fn take_refresh_token(&self, hash: &[u8; 32]) -> StoreResult<Option<RefreshTokenRecord>> {
        let hash = hash.to_owned();
        self.on_task(move |this| async move {
            let hash: &[u8; 32] = &hash;
            // The token lives on its device's shard, which the hash does not tell: ask every shard
            // (the DELETE makes it single-use; only one shard can hold it).
            let mut found = None;
            for shard in &this.inner.shards {
                let client = shard.client().await?;
                let row = client
                    .query_opt(
                        "DELETE FROM refresh_tokens WHERE hash = $1 RETURNING account, device, expires_at_ms",
                        &[&&hash[..]],
                    )
                    .await
                    .map_err(|e| db_err(shard.idx, e))?;
                if let Some(row) = row {
                    found = Some(RefreshTokenRecord {
                        hash: *hash,
                        device: DeviceAddr::new(unsql(row.get(0)), row.get::<_, i32>(1) as u32),
                        expires_at_ms: unsql(row.get(2)),
                    });
                    break;
                }
            }
            Ok(found)
        })
        .await
    }
}
