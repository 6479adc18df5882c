//! Where each record lives: the routing functions of the PostgreSQL engine, and the shard
//! handles (a connection pool per shard). Routing is a pure function of the key and the number
//! of shards, written down here so every Iris node agrees on it (never std's randomized hasher).
//!
//! - Accounts and groups carry their shard in their id: ids are `(sequence << 8) | shard`, so
//!   [`shard_of_id`] is `(id & 0xff) % n`. Everything keyed by an account (devices, tokens,
//!   inboxes, cursors, dedup records of its devices, blocks, contacts, privacy) or by a group
//!   (record, member index, invite, outbox) lives on that shard.
//! - A phone number lives on [`shard_of_phone`] (FNV-1a of its bytes), and the account created
//!   for it takes that shard's index in its low bits: phone index and account are one row.
//! - Records keyed by a server message id (message index, group payloads and receipts) live on
//!   [`shard_of_msg`] (FNV-1a of the id); every append takes part on that shard too, so its
//!   synced commit makes those earlier, unsynced writes durable.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use super::error::pool_err;
use super::tls::{self, PgTls};
use super::writer::{self, PoolConnect, Writer, CONNECT_TIMEOUT};
use super::Shared;
use crate::{AccountId, StoreError, StoreResult};

/// Most shards the id layout can name (8 low bits).
pub const SHARDS_MAX: usize = 256;
/// Bits of an account or group id that name its shard.
pub(super) const SHARD_BITS: u32 = 8;
/// How long a caller waits for a free pooled connection.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(5);

/// FNV-1a, 64 bits: stable across processes, versions and platforms.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The shard of an account or group id (its low bits; see the module doc).
pub fn shard_of_id(id: AccountId, n_shards: usize) -> usize {
    (id & ((1 << SHARD_BITS) - 1)) as usize % n_shards
}

/// The shard of a phone number's account.
pub fn shard_of_phone(phone: &str, n_shards: usize) -> usize {
    (fnv1a64(phone.as_bytes()) % n_shards as u64) as usize
}

/// The shard of records keyed by a server message id.
pub fn shard_of_msg(server_msg_id: u64, n_shards: usize) -> usize {
    (fnv1a64(&server_msg_id.to_be_bytes()) % n_shards as u64) as usize
}

/// An id allocated on `shard` from its sequence value `seq`.
pub(super) fn compose_id(seq: i64, shard: usize) -> StoreResult<u64> {
    let seq = u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("negative id sequence {seq}")))?;
    if seq >> (64 - SHARD_BITS) != 0 {
        return Err(StoreError::Corrupt(format!("id sequence {seq} ran out of bits")));
    }
    Ok(seq << SHARD_BITS | shard as u64)
}

/// `u64` values (ids, seqs, times) as PostgreSQL `bigint`: a bit-for-bit reinterpretation.
pub(super) fn sql(v: u64) -> i64 {
    v as i64
}

/// The inverse of [`sql`].
pub(super) fn unsql(v: i64) -> u64 {
    v as u64
}

/// Server message ids as `bigint` keeping their order (the top bit flipped): expiry compares
/// them, and ids reach the top bit in 2039.
pub(super) fn sql_msg(id: u64) -> i64 {
    (id ^ (1 << 63)) as i64
}

/// The inverse of [`sql_msg`].
pub(super) fn unsql_msg(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

/// One shard: its index, its [`Writer`] (which host takes writes; also the committer's way in)
/// and two pools: one for everything that must be durable when it returns, one whose sessions
/// do not wait for the WAL flush, for the buffered writes that a later synced commit on the
/// same shard makes durable (message index, group payloads and receipts).
pub(super) struct Shard {
    pub idx: usize,
    pub writer: Arc<Writer>,
    pool: Pool,
    unsynced: Pool,
    /// Connections that hold group orders (`group_order.rs`): a pool of their own, because a
    /// holder waits on the other pools while its connection sits in a transaction, so holders
    /// and waiters for holds must never exhaust the connections the holder needs.
    order: Pool,
}

impl Shard {
    /// A shard handle; opens no connection yet. `url` may list several hosts (a primary and
    /// its standbys, see `writer.rs`).
    pub(super) fn new(idx: usize, url: &str, pool_size: usize, shared: Arc<Shared>) -> StoreResult<Self> {
        let mut hosts = Vec::new();
        let mut unsynced_hosts = Vec::new();
        let mut tls = None;
        for (label, host_url) in writer::split_hosts(url)? {
            let (config, host_tls) = pg_config(&host_url)?;
            let mut unsynced_config = config.clone();
            add_option(&mut unsynced_config, "-c synchronous_commit=off");
            hosts.push((label.clone(), config));
            unsynced_hosts.push((label, unsynced_config));
            tls.get_or_insert(host_tls);
        }
        let tls = tls.ok_or_else(|| StoreError::Unavailable(format!("shard {idx}: no host in its URL")))?;
        let writer = Arc::new(Writer::new(idx, hosts, tls, shared));
        // The same hosts with the unsynced session options, and the same writable host.
        let unsynced_writer = Arc::new(writer.sibling(unsynced_hosts));
        Ok(Self {
            idx,
            pool: build_pool(idx, &writer, pool_size)?,
            unsynced: build_pool(idx, &unsynced_writer, pool_size.div_ceil(2))?,
            order: build_pool(idx, &writer, pool_size)?,
            writer,
        })
    }

    /// A pooled connection whose commits are durable when they return.
    pub(super) async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| pool_err(self.idx, e))
    }

    /// A pooled connection whose commits do not wait for the WAL flush (`synchronous_commit =
    /// off` for the whole session): only for writes that a later synced commit on this shard
    /// makes durable before anyone is told they are.
    pub(super) async fn unsynced_client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.unsynced.get().await.map_err(|e| pool_err(self.idx, e))
    }

    /// A pooled connection for holding a group's order (see the field `order`).
    pub(super) async fn order_client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.order.get().await.map_err(|e| pool_err(self.idx, e))
    }
}

/// A pool whose connections come from `writer` (the config handed to deadpool is only its
/// fallback and is never dialled: [`PoolConnect`] ignores it).
fn build_pool(idx: usize, writer: &Arc<Writer>, size: usize) -> StoreResult<Pool> {
    let manager = Manager::from_connect(
        tokio_postgres::Config::new(),
        PoolConnect(Arc::clone(writer)),
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT_TIMEOUT))
        .create_timeout(Some(writer.search_timeout()))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| StoreError::Unavailable(format!("shard {idx}: cannot build pool: {e}")))
}

/// Parses a one-host shard URL (its TLS parameters by `tls.rs`) and pins what durability
/// depends on: `synchronous_commit = on` for every session, whatever the server's default
/// (with a synchronous standby, `on` waits for the standby's flush: see ARCHITECTURE.md
/// "Synchronous standbys"), a writable session, and bounded connect time.
fn pg_config(url: &str) -> StoreResult<(tokio_postgres::Config, PgTls)> {
    let (mut config, tls) = tls::parse_url(url)?;
    writer::require_writable(&mut config);
    add_option(&mut config, "-c synchronous_commit=on");
    config.connect_timeout(CONNECT_TIMEOUT);
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    config.application_name("iris");
    Ok((config, tls))
}

/// Appends a server option to the URL's own `options` (the last setting of a name wins).
fn add_option(config: &mut tokio_postgres::Config, option: &str) {
    let options = match config.get_options() {
        Some(given) if !given.trim().is_empty() => format!("{given} {option}"),
        _ => option.to_owned(),
    };
    config.options(&options);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_is_stable_and_ids_name_their_shard() {
        // Proves routing never changes between builds (fixed hash values) and that an id
        // composed on a shard routes back to it.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(shard_of_phone("+15550001", 3), shard_of_phone("+15550001", 3));
        for shard in 0..5 {
            let id = compose_id(42, shard).unwrap();
            assert_eq!(shard_of_id(id, 5), shard);
        }
        assert!(compose_id(-1, 0).is_err());
        for id in [0, 1, u64::MAX, 1 << 63, (1 << 63) - 1] {
            assert_eq!(unsql_msg(sql_msg(id)), id);
            assert_eq!(unsql(sql(id)), id);
        }
        assert!(sql_msg(1 << 63) > sql_msg((1 << 63) - 1), "message ids keep their order");
    }
}
