//! The Iris server: gateway, sessions, services, router and HTTP API.
//!
//! A message's path, file by file: `gateway/tcp.rs` (or `http/ws.rs`) accepts →
//! `session/` decodes, authenticates, validates → `messaging.rs` decides → `fanout.rs` appends
//! (`iris_store` group-commits and fsyncs) and hints through `router.rs` →
//! `session/delivery.rs` pushes to the recipients' connections.
//!
//! **Invariant:** a send is answered `ACCEPTED` only after the store made it durable.
//! **Invariant:** services never touch sockets; sessions never touch the store (their
//! dependencies, `session::SessionDeps`, hold none).

// Read with `cargo doc --document-private-items`: a crate of this workspace only, whose docs
// link the private items that explain a public one.
#![allow(rustdoc::private_intra_doc_links)]

pub mod abuse;
pub mod actions;
pub mod admin;
pub mod auth;
pub mod backlog;
pub mod blocks;
pub mod calls;
pub mod chat_timers;
pub mod client_tls;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod contacts;
pub mod context;
pub mod device_notices;
pub mod directory;
pub mod error;
pub mod fanout;
pub mod forward;
pub mod gateway;
pub mod group_payloads;
pub mod groups;
pub mod held_receipts;
pub mod http;
pub mod identity_notices;
pub mod ids;
pub mod inbox;
pub mod key_signatures;
pub mod keys;
pub mod limit_log;
pub mod media;
pub mod media_refs;
pub mod message_index;
pub mod messaging;
pub mod metrics;
pub mod presence;
pub mod profiles;
pub mod push;
pub mod ratelimit;
pub mod receipts;
pub mod router;
pub mod send_checks;
pub mod send_gate;
pub mod services;
pub mod session;
pub mod start_warnings;
pub mod typing;
pub mod visibility;

#[cfg(test)]
mod testing;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use iris_store::embedded::{FjallConfig, FjallStore};
use iris_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use auth::codes::{CodeSender, LogCodeSender};
use auth::service::AuthService;
use clock::{Clock, SystemClock};
use config::Config;
use context::Ctx;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A listener could not be set up.
    #[error(transparent)]
    Listen(#[from] gateway::listen::ListenError),
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] iris_store::StoreError),
    /// The Redis Cluster bus could not be reached.
    #[error("cannot connect to Redis Cluster: {0}")]
    Bus(#[from] cluster::bus::BusError),
    /// The SMS gateway client could not be built (its CA file, its URL).
    #[error("SMS gateway: {0}")]
    Sms(String),
    /// The media blob store could not be opened.
    #[error("cannot open the media store: {0}")]
    Media(String),
    /// A push provider could not be set up (its key, its CA bundle).
    #[error("cannot set up push notifications: {0}")]
    Push(#[from] push::PushError),
    /// Files in the data directory could not be read or written.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The path.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What a server is built from besides its config; tests swap these.
pub struct Dependencies {
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Where one-time codes go; `None`: the [`LogCodeSender`], which logs codes only in dev mode.
    pub code_sender: Option<Arc<dyn CodeSender>>,
    /// A store to use instead of opening the embedded one in `data_dir`.
    pub store: Option<Arc<dyn Store>>,
}

impl Default for Dependencies {
    fn default() -> Self {
        Self { clock: Arc::new(SystemClock), code_sender: None, store: None }
    }
}

/// A started server.
pub struct RunningServer {
    /// Where the framed TCP listener is bound.
    pub tcp_addr: SocketAddr,
    /// Where the HTTP listener is bound.
    pub http_addr: SocketAddr,
    /// Where the admin listener is bound, when `[admin] listen` is set.
    pub admin_addr: Option<SocketAddr>,
    ctx: Arc<Ctx>,
}

impl RunningServer {
    /// The shared state (for tests and embedding).
    pub fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    /// A token that starts the shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.ctx.shutdown.clone()
    }

    /// Waits until shutdown is requested, then stops gracefully: stop accepting, `GoAway` to
    /// clients, let in-flight sends finish, flush and close the store.
    pub async fn wait(self) {
        self.ctx.shutdown.cancelled().await;
        self.ctx.tasks.close();
        if tokio::time::timeout(Duration::from_secs(15), self.ctx.tasks.wait()).await.is_err() {
            tracing::warn!("some connections did not finish within 15 s");
        }
        if let Err(e) = self.ctx.store.close().await {
            tracing::error!(error = %e, "closing the store failed");
        }
        tracing::info!("server stopped");
    }

    /// The listeners' TLS, for reloading its certificate from elsewhere (a signal handler).
    pub fn tls(&self) -> Option<Arc<gateway::tls::ServerTls>> {
        self.ctx.tls.clone()
    }

    /// Reads the TLS certificate and key files again (what SIGHUP does in `iris serve`): new
    /// handshakes on both listeners use them, open connections are untouched. Without `[tls]`
    /// there is nothing to reload; on error the previous certificate stays in use.
    pub fn reload_tls(&self) -> Result<(), gateway::listen::ListenError> {
        match &self.ctx.tls {
            Some(tls) => tls.reload(),
            None => Ok(()),
        }
    }

    /// Requests shutdown and waits for it to finish.
    pub async fn shutdown(self) {
        self.ctx.shutdown.cancel();
        self.wait().await;
    }
}

/// Opens the store, binds the listeners and starts serving.
pub async fn start(config: Config, deps: Dependencies) -> Result<RunningServer, StartError> {
    config.validate()?;
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| StartError::DataDir { path: data_dir.clone(), source })?;
    let token_key = load_token_key(&config, &data_dir)?;
    let store = match deps.store {
        Some(s) => s,
        None if config.cluster.shared_store() => open_postgres(&config).await?,
        None => open_embedded(&config).await?,
    };
    let metrics = Arc::new(metrics::Metrics::new());
    let cluster = match config.cluster.redis_urls.is_empty() {
        true => None,
        false => Some(cluster::Cluster::connect(&config, &metrics).await?),
    };
    let bus = cluster.as_ref().map(|(c, _)| c.bus.clone());
    let tcp = gateway::listen::bind(config.listen)?;
    let tcp_addr =
        tcp.local_addr().map_err(|source| gateway::listen::ListenError::Bind { addr: config.listen, source })?;
    let http = gateway::listen::bind(config.http)?;
    let http_addr =
        http.local_addr().map_err(|source| gateway::listen::ListenError::Bind { addr: config.http, source })?;
    let admin = match config.admin.listen {
        Some(addr) => Some((gateway::listen::bind(addr)?, config.admin.load_token()?)),
        None => None,
    };
    let tls = config.tls.as_ref().map(gateway::tls::ServerTls::load).transpose()?.map(Arc::new);
    store.set_commit_observer(Arc::new(metrics::CommitMetrics(metrics.clone())));
    let clock = deps.clock;
    let directory = Arc::new(directory::Directory::new(
        store.clone(),
        1_000_000,
        // Other nodes change devices too: their broadcasts may be lost, so entries age out.
        config.cluster.shared_store().then_some(DIRECTORY_MAX_AGE),
    ));
    let router = Arc::new(router::Router::new(
        config.session.signal_queue_len_max,
        Duration::from_millis(config.session.receipt_hold_ms),
    ));
    let push = Arc::new(
        push::Push::new(
            &config.push,
            push::Push::providers(&config.push, clock.clone())?,
            store.clone(),
            store.clone(),
            router.clone(),
            metrics.clone(),
            clock.clone(),
        )
        .limiting_tests(ratelimit::KeyedLimit::new_shared(
            "push tests per account",
            config.rate_limits.push_tests_per_account_per_hour,
            Duration::from_secs(3600),
            &metrics,
            bus.as_ref(),
        )),
    );
    let offline: Arc<dyn router::Offline> = push.clone();
    router.set_offline(&offline);
    let ids = Arc::new(ids::IdGenerator::new(config.node_id));
    let presence = Arc::new(presence::PresenceHub::new());
    let media = Arc::new(open_media(&config, &token_key, store.clone(), clock.clone(), &metrics)?);
    for warning in start_warnings::warnings(&config, deps.code_sender.is_some()) {
        tracing::warn!("{warning}");
    }
    let code_sender = match (deps.code_sender, &config.sms) {
        (Some(sender), _) => sender,
        (None, Some(sms)) => Arc::new(
            auth::sms::HttpSmsSender::new(sms.clone(), metrics.clone()).map_err(|e| StartError::Sms(e.to_string()))?,
        ),
        (None, None) => Arc::new(LogCodeSender::new(config.dev || config.auth.log_codes)),
    };
    let auth = AuthService::new(&config, token_key, code_sender, &metrics, bus.as_ref());
    let authenticator =
        Arc::new(auth::access::Authenticator::new(auth.signer().clone(), directory.clone(), clock.clone()));
    let admission = Arc::new(gateway::admission::Admission::new(&config, &metrics));
    let send_limit = ratelimit::SharedLimit::new(
        ratelimit::KeyedLimit::new(
            "sends per account",
            config.rate_limits.sends_per_account_per_minute,
            Duration::from_secs(60),
            &metrics,
        )
        .map(|l| l.leased(bus.as_ref())),
    );
    let node_name = format!("node-{}", config.node_id);
    let shutdown = CancellationToken::new();
    let sessions = Arc::new(services::build(
        &config,
        services::Foundations {
            store: store.clone(),
            directory: directory.clone(),
            router: router.clone(),
            ids: ids.clone(),
            clock: clock.clone(),
            presence: presence.clone(),
            metrics: metrics.clone(),
            admission: admission.clone(),
            authenticator: authenticator.clone(),
            send_limit: send_limit.clone(),
            typing_limit: ratelimit::KeyedLimit::new(
                "typing per account",
                config.rate_limits.typing_per_account_per_second,
                Duration::from_secs(1),
                &metrics,
            ),
            discover_limit: ratelimit::KeyedLimit::new_shared(
                "contact discovery per account",
                config.rate_limits.discover_requests_per_account_per_day,
                Duration::from_secs(86_400),
                &metrics,
                bus.as_ref(),
            ),
            shutdown: shutdown.clone(),
            cluster: cluster.as_ref().map(|(c, _)| c.clone()),
            node_name: node_name.clone(),
            push: push.clone(),
        },
    ));
    let ctx = Arc::new(Ctx {
        limits: config.limits.to_proto(),
        directory,
        router,
        auth,
        authenticator,
        admission,
        send_limit,
        presence,
        sessions,
        metrics,
        advertised_tcp_addr: config.advertised_tcp_addr.clone().unwrap_or_else(|| tcp_addr.to_string()),
        node_name,
        cluster: cluster.as_ref().map(|(c, _)| c.clone()),
        clock,
        store,
        media,
        shutdown,
        tasks: TaskTracker::new(),
        trusted_proxies: gateway::client_addr::TrustedProxies::new(config.proxy.trusted_networks.clone()),
        tls: tls.clone(),
        config,
    });
    let tcp_tls = tls.as_ref().map(|t| t.acceptor());
    tokio::spawn(gateway::tcp::accept_loop(ctx.clone(), tcp, tcp_tls, ctx.tasks.clone()));
    let http_tls = tls.as_ref().filter(|_| ctx.config.tls.as_ref().is_some_and(|t| t.http)).map(|t| t.acceptor());
    let handshake = Duration::from_millis(ctx.config.session.handshake_timeout_ms);
    let http = gateway::http_listener::HttpListener::new(http, http_tls.clone(), handshake, ctx.shutdown.clone())
        .map_err(|source| gateway::listen::ListenError::Bind { addr: http_addr, source })?;
    let app = http::app(ctx.clone()).into_make_service_with_connect_info::<gateway::http_listener::PeerAddr>();
    let stop = ctx.shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(http, app).with_graceful_shutdown(stop.cancelled_owned()).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    let admin_addr = match admin {
        Some((listener, token)) => Some(serve_admin(&ctx, listener, &token, http_tls, handshake)?),
        None => None,
    };
    push.start(ctx.shutdown.clone());
    tokio::spawn(sweep_loop(ctx.clone()));
    tokio::spawn(disappearing_loop(ctx.clone()));
    tokio::spawn(auth::housekeeping::run(ctx.clone()));
    tokio::spawn(presence_loop(ctx.clone()));
    tokio::spawn(calls::run_timer(ctx.sessions.calls.clone(), ctx.shutdown.clone()));
    if let Some((c, tasks)) = cluster {
        cluster::tasks::spawn(&c, &ctx, tasks);
    }
    if ctx.config.cluster.shared_store() {
        let every = Duration::from_millis(ctx.config.cluster.inbox_poll_interval_ms);
        tokio::spawn(cluster::poll::run(ctx.clone(), every));
    }
    {
        // Deletions a crash interrupted: finished in the background (their marks keep the
        // phones from registering until then).
        let ctx = ctx.clone();
        tokio::spawn(async move { auth::erasure::resume(&ctx).await });
    }
    tracing::info!(%tcp_addr, %http_addr, ?admin_addr, dev = ctx.config.dev, "iris serving");
    Ok(RunningServer { tcp_addr, http_addr, admin_addr, ctx })
}

/// Serves the admin API (`admin/`) on its own listener, with the public listener's TLS when it
/// has any; returns the bound address.
fn serve_admin(
    ctx: &Arc<Ctx>,
    listener: tokio::net::TcpListener,
    token: &str,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handshake: Duration,
) -> Result<SocketAddr, StartError> {
    let addr = listener.local_addr().map_err(|source| gateway::listen::ListenError::Bind {
        addr: ctx.config.admin.listen.unwrap_or(ctx.config.http),
        source,
    })?;
    let listener = gateway::http_listener::HttpListener::new(listener, tls, handshake, ctx.shutdown.clone())
        .map_err(|source| gateway::listen::ListenError::Bind { addr, source })?;
    let app = admin::admin_router(admin::AdminState::new(ctx.clone(), token))
        .into_make_service_with_connect_info::<gateway::http_listener::PeerAddr>();
    let stop = ctx.shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
            tracing::error!(error = %e, "admin HTTP server failed");
        }
    });
    tracing::info!(%addr, "admin API listening");
    Ok(addr)
}

/// How long a cached account may be used in cluster mode before it is read again.
const DIRECTORY_MAX_AGE: Duration = Duration::from_secs(10);

async fn open_postgres(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    let s = &config.store;
    let pg = iris_store::postgres::PgConfig {
        shard_urls: config.cluster.store_urls.clone(),
        pool_size: config.cluster.store_pool_size,
        batch_ops_max: s.batch_ops_max,
        batch_wait_us: s.batch_wait_us,
        queue_len_max: s.queue_len_max,
        enqueue_timeout_ms: s.enqueue_timeout_ms,
    };
    // The engine runs each call on a task of its own, so pooled connections always come back
    // whatever the caller polls (`PgStore::on_task`).
    Ok(Arc::new(iris_store::postgres::PgStore::connect(pg).await?))
}

async fn open_embedded(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    let s = &config.store;
    let fjall = FjallConfig {
        max_memtable_bytes: s.max_memtable_bytes,
        batch_max_ops: s.batch_ops_max,
        batch_max_wait_us: s.batch_wait_us,
        queue_len_max: s.queue_len_max,
        enqueue_timeout_ms: s.enqueue_timeout_ms,
        log_segment_bytes_max: s.log_segment_bytes_max,
        log_segments_live_max: s.log_segments_live_max,
        log_hot_bytes_max: s.log_hot_bytes_max,
        log_spares_max: s.log_spares_max,
    };
    let path = config.data_dir.join("store");
    let store = tokio::task::spawn_blocking(move || FjallStore::open(&path, fjall))
        .await
        .map_err(|e| iris_store::StoreError::Unavailable(e.to_string()))??;
    Ok(Arc::new(store))
}

/// The media service: its blob store (local directory or S3), staging directory and URL key.
fn open_media(
    config: &Config,
    token_key: &[u8; 32],
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: &Arc<metrics::Metrics>,
) -> Result<media::Media, StartError> {
    let m = &config.media;
    let blob_dir = m.dir.clone().unwrap_or_else(|| config.data_dir.join("media"));
    let blobs = media::blobs::Blobs::open(m, &blob_dir).map_err(|e| StartError::Media(e.to_string()))?;
    let staging_dir = m.staging_dir.clone().unwrap_or_else(|| config.data_dir.join("media-uploads"));
    let staging = media::staging::Staging::open(&staging_dir)
        .map_err(|source| StartError::DataDir { path: staging_dir.clone(), source })?;
    let upload_limit = ratelimit::KeyedLimit::new(
        "media uploads per account",
        config.rate_limits.media_uploads_per_account_per_minute,
        Duration::from_secs(60),
        metrics,
    );
    let deps = media::MediaDeps {
        store,
        blobs,
        staging,
        signer: media::signing::UrlSigner::new(token_key),
        clock,
        metrics: metrics.clone(),
        upload_limit,
    };
    Ok(media::Media::new(deps, m.clone()))
}

/// The token-signing key: from config, else `data_dir/token.key`, created on first start.
fn load_token_key(config: &Config, data_dir: &Path) -> Result<[u8; 32], StartError> {
    let parse = |hex_key: &str| -> Result<[u8; 32], config::ConfigError> {
        hex::decode(hex_key.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| config::ConfigError::Invalid("token key must be 64 hex digits".into()))
    };
    if let Some(hex_key) = &config.auth.token_key_hex {
        return Ok(parse(hex_key)?);
    }
    let path = data_dir.join("token.key");
    let io_err = |source| StartError::DataDir { path: path.clone(), source };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(parse(&text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            write_private(&path, &hex::encode(key)).map_err(io_err)?;
            Ok(key)
        }
        Err(e) => Err(io_err(e)),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Pushes an account's first presence change at once and coalesced later ones every
/// `presence.push_interval_ms` (see `presence.rs`).
async fn presence_loop(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(Duration::from_millis(ctx.config.presence.push_interval_ms.max(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tick.tick() => {
                ctx.presence.flush();
            }
            () = ctx.presence.push_due() => {
                ctx.presence.flush_ready();
            }
        }
    }
}

/// The disappearing-messages sweep: every `disappearing.sweep_interval_ms`, deletes the inbox
/// entries and message-index records whose expiry passed (by the injected clock), at most
/// `sweep_batch_max` of each per pass, passes repeated while they come back full, up to
/// `sweep_passes_max` per interval. Reads already skip expired entries; this frees the space.
async fn disappearing_loop(ctx: Arc<Ctx>) {
    let d = &ctx.config.disappearing;
    let mut tick = tokio::time::interval(Duration::from_millis(d.sweep_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        for _ in 0..d.sweep_passes_max {
            let now = ctx.clock.now_ms();
            let entries = ctx.store.expire_due(now, d.sweep_batch_max).await;
            let refs = ctx.store.expire_due_refs(now, d.sweep_batch_max).await;
            match (entries, refs) {
                (Ok(e), Ok(r)) => {
                    ctx.metrics.expiry_entries_deleted.inc_by(e);
                    ctx.metrics.expiry_refs_deleted.inc_by(r);
                    if e > 0 || r > 0 {
                        tracing::debug!(entries = e, refs = r, "deleted disappearing messages");
                    }
                    if (e as usize) < d.sweep_batch_max && (r as usize) < d.sweep_batch_max {
                        break;
                    }
                }
                (e, r) => {
                    ctx.metrics.expiry_sweep_failures.inc();
                    tracing::warn!(entries = ?e.err(), refs = ?r.err(), "disappearing-messages sweep failed");
                    break;
                }
            }
        }
    }
}

/// Periodic housekeeping: expired codes, idle rate-limit buckets, old inbox entries and dedup
/// records.
async fn sweep_loop(ctx: Arc<Ctx>) {
    let r = &ctx.config.retention;
    let mut store_tick = tokio::time::interval(Duration::from_secs(r.sweep_interval_s.max(1)));
    let mut soft_tick = tokio::time::interval(Duration::from_secs(60));
    let mut memory_tick = tokio::time::interval(Duration::from_millis(500));
    let memory_budget = ctx.config.session.memory_budget_bytes.or_else(gateway::admission::default_memory_budget);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = memory_tick.tick() => {
                if let (Some(budget), Some(rss)) = (memory_budget, gateway::admission::rss_bytes()) {
                    ctx.admission.set_over_memory(rss > budget);
                }
            }
            _ = soft_tick.tick() => {
                ctx.auth.sweep(ctx.clock.now_ms());
                ctx.admission.sweep();
                ctx.send_limit.sweep();
                ctx.sessions.groups.sweep();
                ctx.sessions.typing.sweep();
                ctx.sessions.calls.sweep();
                ctx.sessions.contacts.sweep();
                ctx.sessions.abuse.sweep();
                ctx.sessions.push.sweep();
                ctx.metrics.limit_log.sweep(limit_log::now_ms());
            }
            _ = store_tick.tick() => {
                let now = ctx.clock.now_ms();
                let inbox_cutoff = now.saturating_sub(r.inbox_ttl_days * 86_400_000);
                let dedup_cutoff = now.saturating_sub(r.dedup_ttl_hours * 3_600_000);
                match ctx.store.expire(inbox_cutoff, dedup_cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "expired old inbox entries and dedup records"),
                    Err(e) => tracing::warn!(error = %e, "expiry sweep failed"),
                }
                // Group payloads and receipts live as long as the inbox references to them.
                match ctx.store.expire_group_messages(ids::IdGenerator::floor_of(inbox_cutoff)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "expired old group payloads and receipts"),
                    Err(e) => tracing::warn!(error = %e, "group expiry sweep failed"),
                }
                // Media: abandoned uploads, references past the inbox TTL, unreferenced blobs.
                match ctx.media.sweep(r.inbox_ttl_days * 86_400_000).await {
                    Ok(report) if report == media::SweepReport::default() => {}
                    Ok(report) => tracing::info!(?report, "media sweep"),
                    Err(e) => tracing::warn!(error = %e, "media sweep failed"),
                }
                // The recent-message index (message actions) lives as long as the inbox.
                match ctx.store.expire_message_refs(ids::IdGenerator::floor_of(inbox_cutoff)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "expired old message index records"),
                    Err(e) => tracing::warn!(error = %e, "message index expiry sweep failed"),
                }
            }
        }
    }
}
