//! A real Iris server inside the test process: `iris_server::start` on `127.0.0.1:0` for both
//! listeners (the bound addresses are read back from the running server, never probed for
//! beforehand), a temporary data directory, and the engine `IRIS_TEST_ENGINE` names.
//!
//! Never waits for start-up: `iris_server::start` returns once both listeners are bound.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use iris_server::clock::ManualClock;
use iris_server::config::{AbuseConfig, Config, RateLimitConfig};
use iris_server::context::Ctx;
use iris_server::{Dependencies, RunningServer};
use iris_testkit::engine::ClusterEngine;
use tempfile::TempDir;

/// The one-time code every dev-mode server accepts.
pub const DEV_CODE: &str = "000000";

/// The configuration every test server starts from: loopback port 0 for both listeners, dev
/// mode, no rate limits (so a test can log in many devices from one address) and no abuse rules
/// (so load tests may send to strangers); tests that check a limit or a rule turn it back on in
/// [`TestServer::start_with`].
pub fn test_config(data_dir: &Path) -> Config {
    Config {
        data_dir: data_dir.to_owned(),
        listen: "127.0.0.1:0".parse().expect("valid literal"),
        http: "127.0.0.1:0".parse().expect("valid literal"),
        dev: true,
        rate_limits: RateLimitConfig::unlimited(),
        abuse: AbuseConfig::off(),
        ..Config::default()
    }
}

/// With `IRIS_TEST_ENGINE=cluster`, points `config` at fresh PostgreSQL databases and a Redis
/// namespace of its own (kept alive by the returned value, released when it drops) and a
/// token key of its own; else leaves the embedded store.
pub fn apply_engine(config: &mut Config) -> Option<ClusterEngine> {
    let engine = iris_testkit::engine::from_env()?;
    point_at(config, &engine);
    Some(engine)
}

/// Points `config` at `engine`'s databases, Redis namespace and token key.
fn point_at(config: &mut Config, engine: &ClusterEngine) {
    (config.cluster.store_urls, config.cluster.redis_urls) = (engine.store_urls(), engine.redis_urls());
    config.cluster.namespace = engine.namespace().to_owned();
    config.auth.token_key_hex = Some(engine.token_key_hex());
}

/// What a test server keeps its data in.
enum Backing {
    /// The engine `IRIS_TEST_ENGINE` names (a cluster engine of its own, or the embedded store).
    FromEnv,
    /// A store the test supplied.
    Store(Arc<dyn iris_store::Store>),
    /// A cluster engine the test shares between nodes (the config already points at it).
    Node,
}

/// A server running in this process, with its data in a temporary directory. Dropping it starts
/// the server's shutdown.
pub struct TestServer {
    /// The framed TCP listener, as bound.
    pub tcp_addr: SocketAddr,
    /// The HTTP listener (auth API, WebSocket, health, metrics), as bound.
    pub http_addr: SocketAddr,
    /// The admin listener, as bound, when the test configured `[admin] listen`.
    pub admin_addr: Option<SocketAddr>,
    /// The running server; `None` only inside [`TestServer::restart`].
    server: Option<RunningServer>,
    /// The configuration it runs with, listeners pinned to the bound addresses so a restart
    /// comes back where clients look for it.
    config: Config,
    /// Moves only when the test says so; `None` on the system clock.
    clock: Option<Arc<ManualClock>>,
    /// A store the test supplied (fault injection) instead of the one in the data directory.
    store: Option<Arc<dyn iris_store::Store>>,
    /// One HTTP client for the helpers in [`crate::http`] (keeps connections alive).
    pub(crate) http: reqwest::Client,
    /// Cluster mode: its databases and Redis namespace, kept across restarts. Dropped before
    /// the data directory (fields drop in order).
    _engine: Option<ClusterEngine>,
    /// Deleted when the server is dropped.
    _data_dir: TempDir,
}

impl TestServer {
    /// A server with the test defaults.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server with the test defaults changed by `edit`.
    pub async fn start_with(edit: impl FnOnce(&mut Config)) -> Self {
        Self::boot(edit, None, Backing::FromEnv).await
    }

    /// A server whose clock only moves when the test calls [`TestServer::advance_clock_ms`]
    /// (code expiry, edit windows, group invite expiry: the server's own clock, not tokio's).
    pub async fn start_with_manual_clock(edit: impl FnOnce(&mut Config)) -> Self {
        Self::boot(edit, Some(Arc::new(ManualClock::new())), Backing::FromEnv).await
    }

    /// A server with the test defaults changed by `edit`, over `store` instead of the one it
    /// would open in its data directory; the store is the point of such tests, so no cluster
    /// engine is set up around it.
    pub async fn start_with_store(edit: impl FnOnce(&mut Config), store: Arc<dyn iris_store::Store>) -> Self {
        Self::boot(edit, None, Backing::Store(store)).await
    }

    /// [`TestServer::start_with_store`] with the clock of [`TestServer::start_with_manual_clock`].
    pub async fn start_with_store_and_manual_clock(
        edit: impl FnOnce(&mut Config),
        store: Arc<dyn iris_store::Store>,
    ) -> Self {
        Self::boot(edit, Some(Arc::new(ManualClock::new())), Backing::Store(store)).await
    }

    /// Node `node_id` (1..) of a cluster on `engine`: nodes started on one engine share its
    /// databases, Redis namespace and token key, as the nodes of one deployment do, whatever
    /// `IRIS_TEST_ENGINE` says. The caller keeps `engine` alive longer than its nodes.
    pub async fn start_node(engine: &ClusterEngine, node_id: u16, edit: impl FnOnce(&mut Config)) -> Self {
        Self::boot(
            |c| {
                point_at(c, engine);
                c.node_id = node_id;
                edit(c);
            },
            None,
            Backing::Node,
        )
        .await
    }

    async fn boot(edit: impl FnOnce(&mut Config), clock: Option<Arc<ManualClock>>, backing: Backing) -> Self {
        let data_dir = tempfile::tempdir().expect("create a temporary data dir");
        let mut config = test_config(data_dir.path());
        let (store, engine) = match backing {
            Backing::FromEnv => (None, apply_engine(&mut config)),
            Backing::Store(store) => (Some(store), None),
            Backing::Node => (None, None),
        };
        edit(&mut config);
        let server = launch(config.clone(), clock.clone(), store.clone()).await;
        (config.listen, config.http, config.admin.listen) = (server.tcp_addr, server.http_addr, server.admin_addr);
        Self {
            tcp_addr: server.tcp_addr,
            http_addr: server.http_addr,
            admin_addr: server.admin_addr,
            server: Some(server),
            config,
            clock,
            store,
            http: iris_client::TlsTrust::none().http_builder().build().unwrap(),
            _engine: engine,
            _data_dir: data_dir,
        }
    }

    /// Graceful shutdown (flushes and closes the store), then a fresh start on the same ports,
    /// data, engine and clock: what a deploy does.
    pub async fn restart(&mut self) {
        self.restart_with(|_| {}).await;
    }

    /// Like [`TestServer::restart`], with the configuration changed by `edit` for the new run.
    pub async fn restart_with(&mut self, edit: impl FnOnce(&mut Config)) {
        assert!(self.store.is_none(), "a server over a test's own store cannot be restarted (the store is closed)");
        self.server.take().expect("running").shutdown().await;
        edit(&mut self.config);
        let server = launch(self.config.clone(), self.clock.clone(), None).await;
        assert_eq!((server.tcp_addr, server.http_addr), (self.tcp_addr, self.http_addr), "restarted elsewhere");
        self.server = Some(server);
    }

    /// Moves the manual clock forward.
    pub fn advance_clock_ms(&self, ms: u64) {
        self.clock.as_ref().expect("server started with start_with_manual_clock").advance_ms(ms);
    }

    /// The server itself (its context, for assertions the wire cannot make).
    pub fn running(&self) -> &RunningServer {
        self.server.as_ref().expect("running")
    }

    /// The server's shared state: store, presence hub, router, metrics.
    pub fn ctx(&self) -> &Arc<Ctx> {
        self.running().ctx()
    }

    /// The configuration the server runs with (listeners as bound).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `http://<http_addr>`: what SDK clients and [`crate::sdk`] helpers are given.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// `http://<admin_addr>`: the admin API's base URL (panics unless `[admin] listen` is set).
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr.expect("the test configured [admin] listen"))
    }

    /// `http://<http_addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.shutdown_token().cancel();
        }
    }
}

/// Starts a server from `config` and the test's replacements.
async fn launch(
    config: Config,
    clock: Option<Arc<ManualClock>>,
    store: Option<Arc<dyn iris_store::Store>>,
) -> RunningServer {
    let mut deps = Dependencies { store, ..Dependencies::default() };
    if let Some(c) = clock {
        deps.clock = c;
    }
    iris_server::start(config, deps).await.expect("server starts")
}
