//! How PostgreSQL and pool failures become [`StoreError`]s: every one of them means "the shard
//! is unreachable or refused the write; nothing was stored", except serialization failures and
//! deadlocks, which the committer retries itself.

use tokio_postgres::error::SqlState;

use crate::StoreError;

/// A failed statement or connection on shard `shard`.
pub(super) fn db_err(shard: usize, e: tokio_postgres::Error) -> StoreError {
    let detail = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    };
    StoreError::Unavailable(format!("PostgreSQL shard {shard}: {detail}"))
}

/// No pooled connection could be had for shard `shard`.
pub(super) fn pool_err(shard: usize, e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL shard {shard}: no connection: {e}"))
}

/// A transaction that lost a race and may simply be run again.
pub(super) fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
}
