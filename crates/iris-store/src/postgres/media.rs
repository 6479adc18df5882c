//! [`MediaStore`] on PostgreSQL (tables of `migrations/0003_media.sql`), with synced commits.
//!
//! Blobs and their references live on the shard of the blob's id, so "unreferenced" and "add a
//! reference only to a stored blob" are single-shard statements; uploads and quota windows on
//! their account's shard (an upload id starts with its account). Expiry, account release and
//! collection ask every shard.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::error::db_err;
use super::shards::{fnv1a64, sql, sql_msg, unsql, Shard};
use super::{query, PgStore};
use crate::{
    upload_account, AccountId, BlobRecord, MediaId, MediaStore, StoreError, StoreResult, UploadId, UploadRecord,
};

const BLOB_COLUMNS: &str =
    "id, size_bytes, kind, encrypted, mime, width, height, thumbnail, owner, created_at_ms, touched_at_ms";
const UPLOAD_COLUMNS: &str = "id, account, idempotency_key, kind, size_bytes, sha256, encrypted, mime, \"offset\", \
                              created_at_ms, media_id";

impl PgStore {
    fn media_shard(&self, id: &MediaId) -> &Shard {
        self.inner.shard((fnv1a64(id) % self.inner.n_shards() as u64) as usize)
    }

    fn upload_shard(&self, id: &UploadId) -> &Shard {
        self.account_shard(upload_account(id))
    }

    /// Runs `statement` on every shard; the sum of rows affected.
    async fn execute_everywhere(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> StoreResult<u64> {
        let mut n = 0;
        for shard in &self.inner.shards {
            let client = shard.client().await?;
            n += client.execute(statement, params).await.map_err(|e| db_err(shard.idx, e))?;
        }
        Ok(n)
    }
}

fn media_id(bytes: &[u8]) -> StoreResult<MediaId> {
    bytes.try_into().map_err(|_| StoreError::Corrupt(format!("media id of {} bytes", bytes.len())))
}

fn blob_of(row: &Row) -> StoreResult<BlobRecord> {
    Ok(BlobRecord {
        id: media_id(row.get(0))?,
        size_bytes: unsql(row.get(1)),
        kind: row.get::<_, i16>(2) as u8,
        encrypted: row.get(3),
        mime: row.get(4),
        width: row.get::<_, i32>(5) as u32,
        height: row.get::<_, i32>(6) as u32,
        thumbnail: row.get::<_, Option<&[u8]>>(7).map(media_id).transpose()?,
        owner: unsql(row.get(8)),
        created_at_ms: unsql(row.get(9)),
        touched_at_ms: unsql(row.get(10)),
    })
}

fn upload_of(row: &Row) -> StoreResult<UploadRecord> {
    let id: &[u8] = row.get(0);
    Ok(UploadRecord {
        id: id.try_into().map_err(|_| StoreError::Corrupt("upload id".into()))?,
        account: unsql(row.get(1)),
        idempotency_key: row.get(2),
        kind: row.get::<_, i16>(3) as u8,
        size_bytes: unsql(row.get(4)),
        sha256: media_id(row.get(5))?,
        encrypted: row.get(6),
        mime: row.get(7),
        offset: unsql(row.get(8)),
        created_at_ms: unsql(row.get(9)),
        media: row.get::<_, Option<&[u8]>>(10).map(media_id).transpose()?,
    })
}

#[async_trait]
impl MediaStore for PgStore {
    async fn create_upload(&self, u: UploadRecord) -> StoreResult<UploadRecord> {
        self.on_task(move |this| async move {
            let shard = this.upload_shard(&u.id);
            let inserted = query(
                shard,
                &format!(
                    "INSERT INTO media_uploads ({UPLOAD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)
                     ON CONFLICT (account, idempotency_key) DO NOTHING RETURNING {UPLOAD_COLUMNS}"
                ),
                &[
                    &&u.id[..],
                    &sql(u.account),
                    &u.idempotency_key,
                    &i16::from(u.kind),
                    &sql(u.size_bytes),
                    &&u.sha256[..],
                    &u.encrypted,
                    &u.mime,
                    &sql(u.offset),
                    &sql(u.created_at_ms),
                ],
            )
            .await?;
            if let Some(row) = inserted.first() {
                return upload_of(row);
            }
            let rows = query(
                shard,
                &format!("SELECT {UPLOAD_COLUMNS} FROM media_uploads WHERE account = $1 AND idempotency_key = $2"),
                &[&sql(u.account), &u.idempotency_key],
            )
            .await?;
            rows.first().map(upload_of).transpose()?.ok_or_else(|| StoreError::Unavailable("upload vanished".into()))
        })
        .await
    }

    async fn upload(&self, id: UploadId) -> StoreResult<Option<UploadRecord>> {
        self.on_task(move |this| async move {
            let rows = query(
                this.upload_shard(&id),
                &format!("SELECT {UPLOAD_COLUMNS} FROM media_uploads WHERE id = $1"),
                &[&&id[..]],
            )
            .await?;
            rows.first().map(upload_of).transpose()
        })
        .await
    }

    async fn update_upload(&self, id: UploadId, offset: u64, media: Option<MediaId>) -> StoreResult<bool> {
        self.on_task(move |this| async move {
            let media = media.map(|m| m.to_vec());
            let rows = query(
                this.upload_shard(&id),
                "UPDATE media_uploads SET \"offset\" = $2, media_id = COALESCE($3, media_id) WHERE id = $1 RETURNING 1",
                &[&&id[..], &sql(offset), &media],
            )
            .await?;
            Ok(!rows.is_empty())
        })
        .await
    }

    async fn delete_upload(&self, id: UploadId) -> StoreResult<()> {
        self.on_task(move |this| async move {
            query(this.upload_shard(&id), "DELETE FROM media_uploads WHERE id = $1", &[&&id[..]]).await?;
            Ok(())
        })
        .await
    }

    async fn stale_uploads(&self, created_before_ms: u64, limit: usize) -> StoreResult<Vec<UploadRecord>> {
        self.on_task(move |this| async move {
            let mut out = Vec::new();
            for shard in &this.inner.shards {
                let rows = query(
                    shard,
                    &format!("SELECT {UPLOAD_COLUMNS} FROM media_uploads WHERE created_at_ms < $1 LIMIT $2"),
                    &[&sql(created_before_ms), &(limit as i64)],
                )
                .await?;
                for row in &rows {
                    out.push(upload_of(row)?);
                }
            }
            out.truncate(limit);
            Ok(out)
        })
        .await
    }

    async fn charge_quota(
        &self,
        account: AccountId,
        window_start_ms: u64,
        bytes: u64,
        max_bytes: u64,
    ) -> StoreResult<bool> {
        self.on_task(move |this| async move {
            let shard = this.account_shard(account);
            let err = |e| db_err(shard.idx, e);
            let mut client = shard.client().await?;
            let tx = client.transaction().await.map_err(err)?;
            let (a, w) = (sql(account), sql(window_start_ms));
            tx.execute("DELETE FROM media_quota WHERE account = $1 AND window_start_ms < $2", &[&a, &w])
                .await
                .map_err(err)?;
            // The row lock taken by the upsert serialises concurrent charges of one account.
            let row = tx
                .query_one(
                    "INSERT INTO media_quota (account, window_start_ms, bytes) VALUES ($1, $2, $3)
                     ON CONFLICT (account, window_start_ms) DO UPDATE SET bytes = media_quota.bytes + excluded.bytes
                     RETURNING bytes",
                    &[&a, &w, &sql(bytes)],
                )
                .await
                .map_err(err)?;
            if unsql(row.get(0)) > max_bytes {
                tx.rollback().await.map_err(err)?;
                return Ok(false);
            }
            tx.commit().await.map_err(err)?;
            Ok(true)
        })
        .await
    }

    async fn put_blob(&self, b: BlobRecord) -> StoreResult<bool> {
        self.on_task(move |this| async move {
            let thumbnail = b.thumbnail.map(|t| t.to_vec());
            let rows = query(
                this.media_shard(&b.id),
                &format!(
                    "INSERT INTO media_blobs ({BLOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                     ON CONFLICT (id) DO UPDATE SET touched_at_ms = GREATEST(media_blobs.touched_at_ms, excluded.touched_at_ms)
                     RETURNING (xmax = 0)"
                ),
                &[
                    &&b.id[..],
                    &sql(b.size_bytes),
                    &i16::from(b.kind),
                    &b.encrypted,
                    &b.mime,
                    &(b.width as i32),
                    &(b.height as i32),
                    &thumbnail,
                    &sql(b.owner),
                    &sql(b.created_at_ms),
                    &sql(b.touched_at_ms),
                ],
            )
            .await?;
            Ok(rows.first().is_some_and(|r| r.get::<_, bool>(0)))
        })
        .await
    }

    async fn blob(&self, id: MediaId) -> StoreResult<Option<BlobRecord>> {
        self.on_task(move |this| async move {
            let rows = query(
                this.media_shard(&id),
                &format!("SELECT {BLOB_COLUMNS} FROM media_blobs WHERE id = $1"),
                &[&&id[..]],
            )
            .await?;
            rows.first().map(blob_of).transpose()
        })
        .await
    }

    async fn add_media_refs(
        &self,
        server_msg_id: u64,
        account: AccountId,
        ids: &[MediaId],
    ) -> StoreResult<Vec<MediaId>> {
        let ids = ids.to_owned();
        self.on_task(move |this| async move {
            let ids: &[MediaId] = &ids;
            // Check first (no writes when any is missing), then insert only where the blob row
            // exists: a blob collected in between is reported missing, never referenced.
            let mut missing = Vec::new();
            for id in ids {
                if this.blob(*id).await?.is_none() {
                    missing.push(*id);
                }
            }
            if !missing.is_empty() {
                return Ok(missing);
            }
            for id in ids {
                let rows = query(
                    this.media_shard(id),
                    "INSERT INTO media_refs (media_id, server_msg_id, account)
                     SELECT id, $2, $3 FROM media_blobs WHERE id = $1
                     ON CONFLICT DO NOTHING RETURNING 1",
                    &[&&id[..], &sql_msg(server_msg_id), &sql(account)],
                )
                .await?;
                if rows.is_empty() && this.blob(*id).await?.is_none() {
                    missing.push(*id);
                }
            }
            Ok(missing)
        })
        .await
    }

    async fn remove_media_refs(&self, server_msg_id: u64, account: AccountId, ids: &[MediaId]) -> StoreResult<u64> {
        let ids = ids.to_owned();
        self.on_task(move |this| async move {
            let mut n = 0;
            for id in &ids {
                n += query(
                    this.media_shard(id),
                    "DELETE FROM media_refs WHERE media_id = $1 AND server_msg_id = $2 AND account = $3 RETURNING 1",
                    &[&&id[..], &sql_msg(server_msg_id), &sql(account)],
                )
                .await?
                .len() as u64;
            }
            Ok(n)
        })
        .await
    }

    async fn media_ref_count(&self, id: MediaId) -> StoreResult<u64> {
        self.on_task(move |this| async move {
            let rows = query(this.media_shard(&id), "SELECT count(*) FROM media_refs WHERE media_id = $1", &[&&id[..]])
                .await?;
            Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0) as u64))
        })
        .await
    }

    async fn expire_media_refs(&self, before_msg_id: u64) -> StoreResult<u64> {
        self.on_task(move |this| async move {
            this.execute_everywhere("DELETE FROM media_refs WHERE server_msg_id < $1", &[&sql_msg(before_msg_id)]).await
        })
        .await
    }

    async fn release_account_media(&self, account: AccountId) -> StoreResult<u64> {
        self.on_task(move |this| async move {
            this.execute_everywhere("DELETE FROM media_refs WHERE account = $1", &[&sql(account)]).await
        })
        .await
    }

    async fn collectable_blobs(&self, touched_before_ms: u64, limit: usize) -> StoreResult<Vec<BlobRecord>> {
        self.on_task(move |this| async move {
            let mut out = Vec::new();
            for shard in &this.inner.shards {
                let rows = query(
                    shard,
                    &format!(
                        "SELECT {BLOB_COLUMNS} FROM media_blobs b WHERE touched_at_ms < $1
                         AND NOT EXISTS (SELECT 1 FROM media_refs r WHERE r.media_id = b.id) LIMIT $2"
                    ),
                    &[&sql(touched_before_ms), &(limit as i64)],
                )
                .await?;
                for row in &rows {
                    out.push(blob_of(row)?);
                }
            }
            out.truncate(limit);
            Ok(out)
        })
        .await
    }

    async fn delete_blob(&self, id: MediaId, touched_before_ms: u64) -> StoreResult<bool> {
        self.on_task(move |this| async move {
            let shard = this.media_shard(&id);
            let client = shard.client().await?;
            let deleted = client
                .query(
                    "DELETE FROM media_blobs b WHERE id = $1 AND touched_at_ms < $2
                     AND NOT EXISTS (SELECT 1 FROM media_refs r WHERE r.media_id = b.id) RETURNING 1",
                    &[&&id[..], &sql(touched_before_ms)],
                )
                .await;
            match deleted {
                Ok(rows) => Ok(!rows.is_empty()),
                // A reference committed meanwhile: the blob stays.
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => Ok(false),
                Err(e) => Err(db_err(shard.idx, e)),
            }
        })
        .await
    }
}
