//! The state one server instance passes down to every part: built once in `start`, never global,
//! so two servers can run in one test process.

use std::sync::Arc;

use iris_store::{AccountId, Store};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::AuthService;
use crate::clock::Clock;
use crate::config::Config;
use crate::directory::Directory;
use crate::gateway::admission::Admission;
use crate::ids::IdGenerator;
use crate::metrics::Metrics;
use crate::ratelimit::KeyedLimit;
use crate::router::Router;

/// Everything a session, a service or an HTTP handler needs.
pub struct Ctx {
    /// The validated configuration.
    pub config: Config,
    /// Protocol limits, as announced in `Welcome`.
    pub limits: iris_proto::Limits,
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Cached accounts and device lists.
    pub directory: Directory,
    /// Device → session on this node.
    pub router: Router,
    /// Server message ids.
    pub ids: IdGenerator,
    /// Time (injectable for tests).
    pub clock: Arc<dyn Clock>,
    /// Codes, tokens, auth rate limits.
    pub auth: AuthService,
    /// Who may connect (budgets, storms, per-IP limits).
    pub admission: Arc<Admission>,
    /// Sends per account (token bucket).
    pub send_limit: Option<KeyedLimit<AccountId>>,
    /// Typing indicators per account (token bucket).
    pub typing_limit: Option<KeyedLimit<AccountId>>,
    /// Contact discovery requests per account (token bucket over a day).
    pub discover_limit: Option<KeyedLimit<AccountId>>,
    /// Who is online on this node and who watches them (soft state).
    pub presence: crate::presence::PresenceHub,
    /// Group state that is not in the store: per-group locks, rate limits, a payload cache.
    pub groups: crate::groups::GroupService,
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
