//! [`ProfileStore`] on PostgreSQL: profiles, registration PINs and pending device links on
//! their account's shard (`0006_devices_profiles.sql`). Read-check-write steps are one
//! transaction holding a row lock (the account row for the link bound, the PIN row for an
//! attempt), so nodes that race see one order.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::accounts::{account_of, refuse_while_erased, stage_device, ACCOUNT_COLUMNS};
use super::error::db_err;
use super::shards::{sql, unsql};
use super::{query, query_shards_up_to, PgStore};
use crate::profiles::count_pin_attempt;
use crate::{
    AccountId, Device, LinkState, PendingLink, PinAttempt, PinRecord, Profile, ProfileStore, StoreError, StoreResult,
};

const LINK_COLUMNS: &str = "account, code, secret_hash, device_name, expires_at_ms, state, device";

fn link_of(row: &Row) -> StoreResult<PendingLink> {
    let hash: Vec<u8> = row.get(2);
    let state = match row.get::<_, i16>(5) {
        0 => LinkState::Pending,
        1 => LinkState::Approved { device: row.get::<_, i32>(6) as u32 },
        2 => LinkState::Refused,
        other => return Err(StoreError::Corrupt(format!("link state {other}"))),
    };
    Ok(PendingLink {
        account: unsql(row.get(0)),
        code: row.get(1),
        secret_hash: hash.try_into().map_err(|_| StoreError::Corrupt("link secret hash of a wrong length".into()))?,
        device_name: row.get(3),
        expires_at_ms: unsql(row.get(4)),
        state,
    })
}

fn state_of(state: LinkState) -> (i16, i32) {
    match state {
        LinkState::Pending => (0, 0),
        LinkState::Approved { device } => (1, device as i32),
        LinkState::Refused => (2, 0),
    }
}

fn pin_of(row: &Row) -> PinRecord {
    PinRecord { hash: row.get(0), failed_attempts: row.get::<_, i32>(1) as u32, locked_until_ms: unsql(row.get(2)) }
}

#[async_trait]
impl ProfileStore for PgStore {
    async fn profile(&self, account: AccountId) -> StoreResult<Option<Profile>> {
        self.on_task(move |this| async move {
            let rows = query(
                this.account_shard(account),
                "SELECT display_name, about, photo_media_id, privacy, updated_at_ms FROM profiles WHERE account = $1",
                &[&sql(account)],
            )
            .await?;
            Ok(rows.first().map(|r| Profile {
                display_name: r.get(0),
                about: r.get(1),
                photo_media_id: r.get(2),
                privacy: r.get::<_, i16>(3) as u8,
                updated_at_ms: unsql(r.get(4)),
            }))
        })
        .await
    }

    async fn set_profile(&self, account: AccountId, p: &Profile) -> StoreResult<()> {
        let p = p.to_owned();
        self.on_task(move |this| async move {
            let p: &Profile = &p;
            query(
                this.account_shard(account),
                "INSERT INTO profiles (account, display_name, about, photo_media_id, privacy, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (account) DO UPDATE SET display_name = excluded.display_name, about = excluded.about,
                     photo_media_id = excluded.photo_media_id, privacy = excluded.privacy,
                     updated_at_ms = excluded.updated_at_ms",
                &[
                    &sql(account),
                    &p.display_name,
                    &p.about,
                    &p.photo_media_id,
                    &i16::from(p.privacy),
                    &sql(p.updated_at_ms),
                ],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn pin(&self, account: AccountId) -> StoreResult<Option<PinRecord>> {
        self.on_task(move |this| async move {
            let rows = query(
                this.account_shard(account),
                "SELECT hash, failed_attempts, locked_until_ms FROM registration_pins WHERE account = $1",
                &[&sql(account)],
            )
            .await?;
            Ok(rows.first().map(pin_of))
        })
        .await
    }

    async fn set_pin(&self, account: AccountId, hash: Option<&str>) -> StoreResult<()> {
        let hash = hash.map(ToOwned::to_owned);
        self.on_task(move |this| async move {
            let hash: Option<&str> = hash.as_deref();
            let shard = this.account_shard(account);
            match hash {
                Some(h) => {
                    query(
                        shard,
                        "INSERT INTO registration_pins (account, hash, failed_attempts, locked_until_ms)
                         VALUES ($1, $2, 0, 0)
                         ON CONFLICT (account) DO UPDATE SET hash = excluded.hash, failed_attempts = 0,
                             locked_until_ms = 0",
                        &[&sql(account), &h],
                    )
                    .await?
                }
                None => query(shard, "DELETE FROM registration_pins WHERE account = $1", &[&sql(account)]).await?,
            };
            Ok(())
        })
        .await
    }

    async fn count_pin_attempt(
        &self,
        account: AccountId,
        now_ms: u64,
        attempts_max: u32,
        lockout_ms: u64,
    ) -> StoreResult<PinAttempt> {
        self.on_task(move |this| async move {
            let shard = this.account_shard(account);
            let err = |e| db_err(shard.idx, e);
            let mut client = shard.client().await?;
            let tx = client.transaction().await.map_err(err)?;
            let row = tx
                .query_opt(
                    "SELECT hash, failed_attempts, locked_until_ms FROM registration_pins WHERE account = $1 FOR UPDATE",
                    &[&sql(account)],
                )
                .await
                .map_err(err)?;
            let (after, attempt) = count_pin_attempt(row.as_ref().map(pin_of), now_ms, attempts_max, lockout_ms);
            if let Some(rec) = after {
                tx.execute(
                    "UPDATE registration_pins SET failed_attempts = $2, locked_until_ms = $3 WHERE account = $1",
                    &[&sql(account), &(rec.failed_attempts as i32), &sql(rec.locked_until_ms)],
                )
                .await
                .map_err(err)?;
            }
            tx.commit().await.map_err(err)?;
            Ok(attempt)
        })
        .await
    }

    async fn reset_pin_attempts(&self, account: AccountId) -> StoreResult<()> {
        self.on_task(move |this| async move {
            query(
                this.account_shard(account),
                "UPDATE registration_pins SET failed_attempts = 0, locked_until_ms = 0 WHERE account = $1",
                &[&sql(account)],
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn put_link(&self, link: &PendingLink, now_ms: u64, max_pending: u32) -> StoreResult<bool> {
        let link = link.to_owned();
        self.on_task(move |this| async move {
            let link: &PendingLink = &link;
            let shard = this.account_shard(link.account);
            let err = |e| db_err(shard.idx, e);
            let mut client = shard.client().await?;
            let tx = client.transaction().await.map_err(err)?;
            let account = sql(link.account);
            // The account row's lock serialises the links of one account: the bound holds.
            tx.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", &[&account]).await.map_err(err)?;
            // An expired approved link stays for the sweep, which revokes its device first.
            tx.execute(
                "DELETE FROM pending_links WHERE account = $1 AND expires_at_ms <= $2 AND state <> 1",
                &[&account, &sql(now_ms)],
            )
            .await
            .map_err(err)?;
            let live: i64 = tx
                .query_one(
                    "SELECT count(*) FROM pending_links WHERE account = $1 AND code <> $2 AND expires_at_ms > $3",
                    &[&account, &link.code, &sql(now_ms)],
                )
                .await
                .map_err(err)?
                .get(0);
            if live >= i64::from(max_pending) {
                tx.commit().await.map_err(err)?;
                return Ok(false);
            }
            let (state, device) = state_of(link.state);
            tx.execute(
                &format!(
                    "INSERT INTO pending_links ({LINK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (account, code) DO UPDATE SET secret_hash = excluded.secret_hash,
                         device_name = excluded.device_name, expires_at_ms = excluded.expires_at_ms,
                         state = excluded.state, device = excluded.device"
                ),
                &[
                    &account,
                    &link.code,
                    &link.secret_hash.as_slice(),
                    &link.device_name,
                    &sql(link.expires_at_ms),
                    &state,
                    &device,
                ],
            )
            .await
            .map_err(err)?;
            tx.commit().await.map_err(err)?;
            Ok(true)
        })
        .await
    }

    async fn link(&self, account: AccountId, code: &str) -> StoreResult<Option<PendingLink>> {
        let code = code.to_owned();
        self.on_task(move |this| async move {
            let code: &str = &code;
            let rows = query(
                this.account_shard(account),
                &format!("SELECT {LINK_COLUMNS} FROM pending_links WHERE account = $1 AND code = $2"),
                &[&sql(account), &code],
            )
            .await?;
            rows.first().map(link_of).transpose()
        })
        .await
    }

    async fn take_link(&self, account: AccountId, code: &str) -> StoreResult<Option<PendingLink>> {
        let code = code.to_owned();
        self.on_task(move |this| async move {
            let code: &str = &code;
            let rows = query(
                this.account_shard(account),
                &format!("DELETE FROM pending_links WHERE account = $1 AND code = $2 RETURNING {LINK_COLUMNS}"),
                &[&sql(account), &code],
            )
            .await?;
            rows.first().map(link_of).transpose()
        })
        .await
    }

    async fn approve_link(
        &self,
        account: AccountId,
        code: &str,
        now_ms: u64,
        collect_by_ms: u64,
        max_devices: u32,
    ) -> StoreResult<Option<Device>> {
        let code = code.to_owned();
        self.on_task(move |this| async move {
            let code: &str = &code;
            let shard = this.account_shard(account);
            let err = |e| db_err(shard.idx, e);
            let mut client = shard.client().await?;
            let tx = client.transaction().await.map_err(err)?;
            // The account row's lock serialises this with registrations, `put_link` and the
            // erasure's mark; the link row's with `take_link`.
            let Some(row) = tx
                .query_opt(
                    &format!("SELECT {ACCOUNT_COLUMNS}, next_device_id FROM accounts WHERE id = $1 FOR UPDATE"),
                    &[&sql(account)],
                )
                .await
                .map_err(err)?
            else {
                return Ok(None);
            };
            refuse_while_erased(&tx, shard.idx, &account_of(&row).phone).await?;
            let links = tx
                .query(
                    &format!("SELECT {LINK_COLUMNS} FROM pending_links WHERE account = $1 AND code = $2 FOR UPDATE"),
                    &[&sql(account), &code],
                )
                .await
                .map_err(err)?;
            let Some(link) = links.first().map(link_of).transpose()? else { return Ok(None) };
            if !link.is_waiting_at(now_ms) {
                return Ok(None);
            }
            let device =
                stage_device(&tx, shard.idx, account, row.get(3), &link.device_name, now_ms, max_devices).await?;
            let (state, device_id) = state_of(LinkState::Approved { device: device.addr.device });
            tx.execute(
                "UPDATE pending_links SET state = $3, device = $4, expires_at_ms = $5 WHERE account = $1 AND code = $2",
                &[&sql(account), &code, &state, &device_id, &sql(collect_by_ms)],
            )
            .await
            .map_err(err)?;
            tx.commit().await.map_err(err)?;
            Ok(Some(device))
        })
        .await
    }

    async fn refuse_link(&self, account: AccountId, code: &str, now_ms: u64) -> StoreResult<bool> {
        let code = code.to_owned();
        self.on_task(move |this| async move {
            let code: &str = &code;
            let (pending, _) = state_of(LinkState::Pending);
            let (refused, _) = state_of(LinkState::Refused);
            let shard = this.account_shard(account);
            let client = shard.client().await?;
            // One statement: its row lock orders it with `approve_link`'s, and the state it
            // checks is the one it changes.
            let n = client
                .execute(
                    "UPDATE pending_links SET state = $4
                     WHERE account = $1 AND code = $2 AND state = $3 AND expires_at_ms > $5",
                    &[&sql(account), &code, &pending, &refused, &sql(now_ms)],
                )
                .await
                .map_err(|e| db_err(shard.idx, e))?;
            Ok(n == 1)
        })
        .await
    }

    async fn links(&self, account: AccountId) -> StoreResult<Vec<PendingLink>> {
        self.on_task(move |this| async move {
            let rows = query(
                this.account_shard(account),
                &format!("SELECT {LINK_COLUMNS} FROM pending_links WHERE account = $1 ORDER BY code"),
                &[&sql(account)],
            )
            .await?;
            rows.iter().map(link_of).collect()
        })
        .await
    }

    async fn expired_links(&self, now_ms: u64, limit: usize) -> StoreResult<Vec<PendingLink>> {
        self.on_task(move |this| async move {
            let statement = format!(
                "SELECT {LINK_COLUMNS} FROM pending_links WHERE expires_at_ms <= $1 ORDER BY expires_at_ms LIMIT $2"
            );
            query_shards_up_to(&this.inner.shards, &statement, &[&sql(now_ms)], limit, link_of).await
        })
        .await
    }

    async fn erase_profile_rows(&self, account: AccountId) -> StoreResult<()> {
        self.on_task(move |this| async move {
            let shard = this.account_shard(account);
            let err = |e| db_err(shard.idx, e);
            let mut client = shard.client().await?;
            let tx = client.transaction().await.map_err(err)?;
            for table in ["profiles", "registration_pins", "pending_links"] {
                tx.execute(&format!("DELETE FROM {table} WHERE account = $1"), &[&sql(account)]).await.map_err(err)?;
            }
            tx.commit().await.map_err(err)?;
            Ok(())
        })
        .await
    }
}
