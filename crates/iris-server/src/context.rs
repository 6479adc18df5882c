//! The state one server instance passes down to its edges (listeners, HTTP handlers, cluster
//! tasks): built once in `start`, never global, so two servers can run in one test process.
//!
//! The top of the layering: it holds the parts and the wired services, and no service takes it.
//! Sessions get [`SessionDeps`] instead, which has no store.

use std::sync::Arc;

use iris_store::{AccountId, Store};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::access::Authenticator;
use crate::auth::service::AuthService;
use crate::clock::Clock;
use crate::config::Config;
use crate::directory::Directory;
use crate::gateway::admission::Admission;
use crate::metrics::Metrics;
use crate::presence::PresenceHub;
use crate::ratelimit::SharedLimit;
use crate::router::Router;
use crate::session::SessionDeps;

/// Everything a listener, an HTTP handler or a cluster task needs.
pub struct Ctx {
    /// The validated configuration.
    pub config: Config,
    /// Protocol limits, as announced in `Welcome`.
    pub limits: iris_proto::Limits,
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Media uploads, downloads and their sweep.
    pub media: Arc<crate::media::Media>,
    /// Cached accounts and device lists.
    pub directory: Arc<Directory>,
    /// Device → session on this node.
    pub router: Arc<Router>,
    /// Time (injectable for tests).
    pub clock: Arc<dyn Clock>,
    /// Codes, tokens, auth rate limits.
    pub auth: AuthService,
    /// Checks access tokens (HTTP and sessions).
    pub authenticator: Arc<Authenticator>,
    /// Who may connect (budgets, storms, per-IP limits).
    pub admission: Arc<Admission>,
    /// Sends per account (token bucket).
    pub send_limit: SharedLimit<AccountId>,
    /// Who is online on this node and who watches them (soft state).
    pub presence: Arc<PresenceHub>,
    /// What sessions use: the services, wired (see `services.rs`).
    pub sessions: Arc<SessionDeps>,
    /// Prometheus metrics of this node.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// This node's name in `Welcome` and `/v1/info`.
    pub node_name: String,
    /// The TCP address clients are told to use.
    pub advertised_tcp_addr: String,
    /// The link to the other nodes, in cluster mode with Redis.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The listeners' TLS certificate (reloadable), when `[tls]` is set.
    pub tls: Option<Arc<crate::gateway::tls::ServerTls>>,
    /// Who may name a client's address (`[proxy] trusted_networks`).
    pub trusted_proxies: crate::gateway::client_addr::TrustedProxies,
}

impl Ctx {
    /// An account's devices changed (linked, revoked): forget it here and, in cluster mode, on
    /// every other node.
    pub fn account_changed(&self, id: AccountId) {
        self.directory.invalidate(id);
        if let Some(cluster) = &self.cluster {
            cluster.invalidate_account(id);
        }
    }
}
