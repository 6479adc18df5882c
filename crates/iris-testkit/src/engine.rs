//! Which engine the server-level tests run on: `IRIS_TEST_ENGINE=cluster` puts every test server
//! in cluster mode on PostgreSQL (two shards) and Redis Cluster, normally the shared servers that
//! `scripts/test.sh` started once (`IRIS_TEST_PG_URLS`, `IRIS_TEST_REDIS_URLS`); unset or
//! `embedded`, the tests use the embedded store. One suite, both engines.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::postgres::PgShards;
use crate::redis::RedisCluster;

/// The environment variable that picks the engine.
pub const ENGINE_ENV: &str = "IRIS_TEST_ENGINE";

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The cluster-mode backing of one test server: fresh databases and a Redis namespace of its
/// own, released when dropped.
pub struct ClusterEngine {
    pg: PgShards,
    redis: RedisCluster,
    namespace: String,
}

impl ClusterEngine {
    /// Fresh databases and a namespace of their own on the PostgreSQL and Redis servers (the
    /// shared ones when `scripts/test.sh` started them, else servers of this test's own),
    /// whatever `IRIS_TEST_ENGINE` says: for tests of several nodes, which only exist in
    /// cluster mode.
    pub fn start() -> ClusterEngine {
        let namespace = format!("t{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        ClusterEngine { pg: PgShards::start(2), redis: RedisCluster::start(), namespace }
    }

    /// PostgreSQL shard URLs (fresh databases).
    pub fn store_urls(&self) -> Vec<String> {
        self.pg.urls()
    }

    /// Redis Cluster seed URLs.
    pub fn redis_urls(&self) -> Vec<String> {
        self.redis.urls()
    }

    /// A Redis key prefix no other test uses.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A token-signing key of this test's own (64 hex digits, derived from the namespace), so
    /// two test servers never accept each other's tokens, as two real deployments would not.
    pub fn token_key_hex(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        (0..4)
            .map(|round| {
                for b in self.namespace.bytes().chain([round]) {
                    h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                }
                format!("{h:016x}")
            })
            .collect()
    }
}

/// The cluster engine when `IRIS_TEST_ENGINE=cluster`, else `None` (embedded store). Panics on an
/// unknown engine name, so a typo cannot silently test the wrong thing.
pub fn from_env() -> Option<ClusterEngine> {
    match std::env::var(ENGINE_ENV).as_deref() {
        Err(_) | Ok("") | Ok("embedded") => None,
        Ok("cluster") => Some(ClusterEngine::start()),
        Ok(other) => panic!("{ENGINE_ENV}={other}: expected `embedded` or `cluster`"),
    }
}

/// Whether the tests run in cluster mode (for the few tests that only make sense on one engine).
pub fn is_cluster() -> bool {
    std::env::var(ENGINE_ENV).is_ok_and(|e| e == "cluster")
}
