//! Schema migrations, run by [`super::PgStore::connect`] on every shard: versioned SQL files
//! embedded in the binary, each applied once in its own transaction and recorded in
//! `iris_migrations`. A session-level advisory lock serialises nodes that start at once, so
//! running them again (or concurrently) is harmless.
//!
//! After migrating, the shard's identity (its index and the number of shards) is recorded on
//! first use and checked on every later start: a reordered or resized shard list would route
//! accounts to the wrong database, so it is refused instead.

use super::error::db_err;
use super::shards::Shard;
use crate::{StoreError, StoreResult};

/// The migrations, in order: (version, name, SQL). Append only; never edit a released one.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("migrations/0001_init.sql")),
    (2, "key_directory", include_str!("migrations/0002_key_directory.sql")),
    (3, "media", include_str!("migrations/0003_media.sql")),
    (4, "disappearing", include_str!("migrations/0004_disappearing.sql")),
    (5, "push", include_str!("migrations/0005_push.sql")),
    (6, "devices_profiles", include_str!("migrations/0006_devices_profiles.sql")),
    (7, "account_deletion", include_str!("migrations/0007_account_deletion.sql")),
    (8, "abuse", include_str!("migrations/0008_abuse.sql")),
    (9, "abuse_review", include_str!("migrations/0009_abuse_review.sql")),
    (10, "link_expiry", include_str!("migrations/0010_link_expiry.sql")),
    (11, "device_revocations", include_str!("migrations/0011_device_revocations.sql")),
];

/// Key of the advisory lock held while migrating (any fixed number; "iris" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x6972_6973;

/// Migrates shard `shard` (index `idx` of `n_shards`) and checks its identity.
pub(super) async fn run(shard: &Shard, n_shards: usize) -> StoreResult<()> {
    let idx = shard.idx;
    let mut client = shard.client().await?;
    let err = |e| db_err(idx, e);
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY]).await.map_err(err)?;
    let result = migrate(&mut client, idx, n_shards).await;
    // Unlock even after a failure; a lost connection releases the lock by itself.
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY]).await;
    result?;
    unlocked.map_err(err)?;
    Ok(())
}

async fn migrate(client: &mut deadpool_postgres::Object, idx: usize, n_shards: usize) -> StoreResult<()> {
    let err = |e| db_err(idx, e);
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS iris_migrations (
                 version    integer     PRIMARY KEY,
                 name       text        NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );
             CREATE TABLE IF NOT EXISTS iris_shard (
                 singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                 shard_idx integer NOT NULL,
                 n_shards  integer NOT NULL
             );",
        )
        .await
        .map_err(err)?;
    let applied: Vec<i32> =
        client.query("SELECT version FROM iris_migrations", &[]).await.map_err(err)?.iter().map(|r| r.get(0)).collect();
    for &(version, name, sql) in MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        let tx = client.transaction().await.map_err(err)?;
        tx.batch_execute(sql).await.map_err(err)?;
        tx.execute("INSERT INTO iris_migrations (version, name) VALUES ($1, $2)", &[&version, &name])
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        tracing::info!(shard = idx, version, name, "applied migration");
    }
    let (want_idx, want_n) = (idx as i32, n_shards as i32);
    client
        .execute(
            "INSERT INTO iris_shard (shard_idx, n_shards) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&want_idx, &want_n],
        )
        .await
        .map_err(err)?;
    let row = client.query_one("SELECT shard_idx, n_shards FROM iris_shard", &[]).await.map_err(err)?;
    let (got_idx, got_n): (i32, i32) = (row.get(0), row.get(1));
    if (got_idx, got_n) != (want_idx, want_n) {
        return Err(StoreError::Unavailable(format!(
            "database at shard position {idx} of {n_shards} is shard {got_idx} of {got_n}: the shard list must keep \
             its order and length"
        )));
    }
    Ok(())
}
