//! `iris serve`: load the configuration (file → environment → flags), start the server, and
//! stop gracefully on SIGTERM/SIGINT (a second signal exits at once).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use iris_server::config::Config;

/// Log output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of `iris serve`; each also reads an `IRIS_*` environment variable.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// TOML config file (see iris.example.toml); flags and environment override it.
    #[arg(long, env = "IRIS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory of the embedded store [default: ./iris-data].
    #[arg(long, env = "IRIS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Framed TCP listener [default: 127.0.0.1:7700].
    #[arg(long, env = "IRIS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// HTTP listener: auth API, WebSocket, health [default: 127.0.0.1:7701].
    #[arg(long, env = "IRIS_HTTP")]
    pub http: Option<SocketAddr>,
    /// Dev mode: every one-time code is 000000; only loopback addresses may be bound.
    #[arg(long, env = "IRIS_DEV")]
    pub dev: bool,
    /// Cluster mode: PostgreSQL URLs, one per shard, comma-separated, the same list in the same
    /// order on every node (`postgres://iris@127.0.0.1:5432/iris,postgres://…`); a shard with a
    /// standby lists both hosts (`postgres://iris@db1:5432,db1b:5432/iris`). Without it the
    /// embedded store in the data directory is used.
    #[arg(long, env = "IRIS_STORE", value_delimiter = ',')]
    pub store: Vec<String>,
    /// Cluster mode: Redis Cluster seed URLs, comma-separated (`redis://127.0.0.1:7000,…`).
    #[arg(long, env = "IRIS_REDIS", value_delimiter = ',')]
    pub redis: Vec<String>,
    /// This node's number, unique in the cluster (0–1023) [default: 0].
    #[arg(long, env = "IRIS_NODE_ID")]
    pub node_id: Option<u16>,
    /// TCP address clients are told to connect to (`GET /v1/info`) [default: the listen address].
    #[arg(long, env = "IRIS_ADVERTISE")]
    pub advertise: Option<String>,
    /// Token-signing key, 64 hex digits; in cluster mode the same on every node
    /// [default: data_dir/token.key, created on first start].
    #[arg(long, env = "IRIS_TOKEN_KEY", hide_env_values = true)]
    pub token_key: Option<String>,
    /// The operators' admin API listener (`iris admin`), e.g. 127.0.0.1:7702 [default: off].
    #[arg(long, env = "IRIS_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// The admin API's bearer token (at least 16 characters); replaces `[admin] token` and
    /// `token_file`.
    #[arg(long, env = "IRIS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Log format.
    #[arg(long, env = "IRIS_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl ServeArgs {
    /// The file's config with the flags (and environment) applied on top.
    fn into_config(self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(d) = self.data_dir {
            config.data_dir = d;
        }
        if let Some(a) = self.listen {
            config.listen = a;
        }
        if let Some(a) = self.http {
            config.http = a;
        }
        config.dev |= self.dev;
        if !self.store.is_empty() {
            config.cluster.store_urls = iris_server::config::store_urls_from_pieces(self.store);
        }
        if !self.redis.is_empty() {
            config.cluster.redis_urls = self.redis;
        }
        if let Some(n) = self.node_id {
            config.node_id = n;
        }
        if let Some(a) = self.advertise {
            config.advertised_tcp_addr = Some(a);
        }
        if let Some(k) = self.token_key {
            config.auth.token_key_hex = Some(k);
        }
        if let Some(a) = self.admin_listen {
            config.admin.listen = Some(a);
        }
        if let Some(t) = self.admin_token {
            (config.admin.token, config.admin.token_file) = (Some(t), None);
        }
        Ok(config)
    }
}

/// Runs the server until a signal stops it.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let config = args.into_config()?;
    let server =
        iris_server::start(config, iris_server::Dependencies::default()).await.context("starting the server")?;
    // SIGHUP: read the certificate files again (renewals); open connections keep theirs. Its
    // handler (like SIGTERM's and SIGINT's) is installed before the listening line is printed:
    // a signal sent by whoever waited for that line must not meet the default action, which
    // ends the process.
    // Without TLS there is nothing to reload, but the signal is still caught: a SIGHUP sent
    // out of habit (log rotation, a reload script) must not end the server.
    #[cfg(unix)]
    {
        let tls = server.tls();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match &tls {
                    Some(tls) => {
                        if let Err(e) = tls.reload() {
                            tracing::error!(error = %e, "SIGHUP: TLS reload failed; the previous certificate stays");
                        }
                    }
                    None => tracing::info!("SIGHUP: no TLS configured, nothing to reload"),
                }
            }
        });
    }
    let mut signals = Signals::new()?;
    let https = server.ctx().config.tls.as_ref().is_some_and(|t| t.http);
    let scheme = if https { "https" } else { "http" };
    println!("iris listening: tcp={} http={scheme}://{}", server.tcp_addr, server.http_addr);
    if let Some(admin) = server.admin_addr {
        println!("iris admin listening: {scheme}://{admin}");
    }
    let stop = server.shutdown_token();
    tokio::spawn(async move {
        signals.next().await;
        tracing::info!("signal received: shutting down (a second signal exits at once)");
        stop.cancel();
        signals.next().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
    server.wait().await;
    Ok(())
}

/// SIGTERM and SIGINT, listened to from start-up so no signal is missed between two waits.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IRIS_LOG")
        .unwrap_or_else(|_| "info,fjall=warn,lsm_tree=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
