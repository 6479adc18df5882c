//! One harness, both engines: a test written once against `dyn Store` runs on the embedded
//! fjall engine (a temporary directory) and on PostgreSQL (two real shards from the test kit).
//! `both_engines!(name, …)` turns each `async fn name(engine: Engine)` into the tests
//! `name::fjall` and `name::postgres`.

#![allow(dead_code)] // each test file uses part of the harness

use std::ops::Deref;

use iris_store::embedded::{FjallConfig, FjallStore};
use iris_store::postgres::{PgConfig, PgStore};
use iris_store::{Group, GroupStore, Store};
use iris_testkit::postgres::PgShards;

/// Shards the PostgreSQL runs use: two, so that cross-shard paths are exercised.
pub const PG_SHARDS: usize = 2;

/// Which engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Fjall,
    Postgres,
}

/// The committer knobs both engines share.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    pub batch_ops_max: usize,
    pub batch_wait_us: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Self { batch_ops_max: 1024, batch_wait_us: 1000 }
    }
}

/// Where a test's data lives; outlives the stores opened on it, so reopening finds the data.
pub struct Env {
    pub engine: Engine,
    pub tuning: Tuning,
    dir: tempfile::TempDir,
    pub pg: Option<PgShards>,
}

impl Env {
    /// A fresh, empty place for `engine`'s data.
    pub fn new(engine: Engine) -> Env {
        Self::with_tuning(engine, Tuning::default())
    }

    /// Like [`new`](Self::new) with other committer knobs.
    pub fn with_tuning(engine: Engine, tuning: Tuning) -> Env {
        let pg = (engine == Engine::Postgres).then(|| PgShards::start(PG_SHARDS));
        Env { engine, tuning, dir: tempfile::tempdir().expect("temp dir"), pg }
    }

    /// PostgreSQL on servers of this test's own, even when the run shares servers
    /// (`IRIS_TEST_PG_URLS`): for tests that stop or crash a shard.
    pub fn dedicated_postgres() -> Env {
        let pg = Some(PgShards::start_dedicated(PG_SHARDS));
        Env { engine: Engine::Postgres, tuning: Tuning::default(), dir: tempfile::tempdir().expect("temp dir"), pg }
    }

    /// Shards an append may touch (fjall is one).
    pub fn n_shards(&self) -> u64 {
        match self.engine {
            Engine::Fjall => 1,
            Engine::Postgres => PG_SHARDS as u64,
        }
    }

    /// The PostgreSQL config of this environment.
    pub fn pg_config(&self) -> PgConfig {
        let urls = self.pg.as_ref().expect("a PostgreSQL environment").urls();
        PgConfig {
            shard_urls: urls,
            batch_ops_max: self.tuning.batch_ops_max,
            batch_wait_us: self.tuning.batch_wait_us,
            ..PgConfig::default()
        }
    }

    /// Opens (or reopens) the store on this environment's data.
    pub async fn open(&self) -> Opened {
        match self.engine {
            Engine::Fjall => {
                let config = FjallConfig {
                    batch_max_ops: self.tuning.batch_ops_max,
                    batch_max_wait_us: self.tuning.batch_wait_us,
                    ..FjallConfig::default()
                };
                Opened::Fjall(FjallStore::open(self.dir.path(), config).expect("open fjall store"))
            }
            Engine::Postgres => Opened::Pg(PgStore::connect(self.pg_config()).await.expect("connect to PostgreSQL")),
        }
    }
}

/// An open store of either engine; derefs to `dyn Store`. One per test, so the size difference
/// of the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Opened {
    Fjall(FjallStore),
    Pg(PgStore),
}

/// The counters both engines keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub commits: u64,
    pub appends: u64,
    pub duplicates: u64,
}

impl Opened {
    pub fn stats(&self) -> Stats {
        match self {
            Opened::Fjall(s) => {
                let st = s.stats();
                Stats { commits: st.commits, appends: st.appends, duplicates: st.duplicates }
            }
            Opened::Pg(s) => {
                let st = s.stats();
                Stats { commits: st.commits, appends: st.appends, duplicates: st.duplicates }
            }
        }
    }
}

impl Deref for Opened {
    type Target = dyn Store;

    fn deref(&self) -> &Self::Target {
        match self {
            Opened::Fjall(s) => s,
            Opened::Pg(s) => s,
        }
    }
}

/// `both_engines!(a, b)`: tests `a::fjall`, `a::postgres`, `b::fjall`, `b::postgres`, each
/// calling `async fn a(engine: Engine)` on a multi-threaded runtime.
#[macro_export]
macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn fjall() {
                    super::$name($crate::common::Engine::Fjall).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    super::$name($crate::common::Engine::Postgres).await
                }
            }
        )*
    };
}

/// Creates `group` as the server does, but without events: a reserved id, then the version-1
/// record. Returns it with its id.
pub async fn create_group<S: GroupStore + ?Sized>(store: &S, mut group: Group) -> Group {
    group.id = store.reserve_group_id().await.expect("reserve a group id");
    assert!(store.update_group(&group).await.expect("create the group"), "a fresh id takes version 1");
    group
}
