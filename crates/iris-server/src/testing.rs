//! Parts for unit tests of services and sessions: a real embedded store in a temporary directory
//! and the in-memory parts around it, wired by the same `services::build` as a server, so a
//! service is tested without a listener, a socket or a session, and a session over an in-memory
//! stream instead of a socket.

use std::sync::Arc;

use iris_store::embedded::FjallStore;
use iris_store::{AccountStore, DeviceAddr};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::auth::access::Authenticator;
use crate::auth::token::{TokenClaims, TokenSigner};
use crate::blocks::Blocks;
use crate::clock::{Clock, ManualClock};
use crate::config::{Config, RateLimitConfig};
use crate::directory::Directory;
use crate::fanout::Fanout;
use crate::gateway::admission::Admission;
use crate::ids::IdGenerator;
use crate::messaging::Messaging;
use crate::metrics::Metrics;
use crate::presence::PresenceHub;
use crate::ratelimit::SharedLimit;
use crate::router::Router;
use crate::services::{self, Foundations};
use crate::session::SessionDeps;

/// The token-signing key of the parts' authenticator.
const TOKEN_KEY: [u8; 32] = [7; 32];

/// One server's parts and services, without listeners.
pub(crate) struct Parts {
    /// The store, as its engine (tests read it directly).
    pub store: Arc<FjallStore>,
    /// Device → session (tests register devices to see hints).
    pub router: Arc<Router>,
    /// Time, moved by hand.
    pub clock: Arc<ManualClock>,
    /// Every service, wired, as a session gets them.
    pub services: Arc<SessionDeps>,
    _dir: TempDir,
}

impl Parts {
    /// Fresh parts over an empty store, with the default config and no rate limits.
    pub fn new() -> Self {
        Self::with_config(|_| {})
    }

    /// Like [`Parts::new`], with the config changed by `edit` (session timeouts, limits).
    pub fn with_config(edit: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("a temporary store dir");
        let store = Arc::new(FjallStore::open(dir.path(), Default::default()).expect("open the store"));
        let mut config = Config { rate_limits: RateLimitConfig::unlimited(), ..Config::default() };
        edit(&mut config);
        let metrics = Arc::new(Metrics::new());
        let clock = Arc::new(ManualClock::new());
        let directory = Arc::new(Directory::new(store.clone(), 1000, None));
        let router = Arc::new(Router::new(16, std::time::Duration::ZERO));
        let push = Arc::new(crate::push::Push::new(
            &config.push,
            Vec::new(),
            store.clone(),
            store.clone(),
            router.clone(),
            metrics.clone(),
            clock.clone(),
        ));
        let foundations = Foundations {
            store: store.clone(),
            directory: directory.clone(),
            router: router.clone(),
            ids: Arc::new(IdGenerator::new(1)),
            clock: clock.clone(),
            presence: Arc::new(PresenceHub::new()),
            admission: Arc::new(Admission::new(&config, &metrics)),
            metrics,
            authenticator: Arc::new(Authenticator::new(TokenSigner::new(TOKEN_KEY), directory, clock.clone())),
            send_limit: SharedLimit::new(None),
            typing_limit: None,
            discover_limit: None,
            shutdown: CancellationToken::new(),
            cluster: None,
            node_name: "test".into(),
            push,
        };
        let services = Arc::new(services::build(&config, foundations));
        Self { store, router, clock, services, _dir: dir }
    }

    /// An access token for `device`, valid for an hour on the parts' clock (what a login gives).
    pub fn access_token(&self, device: DeviceAddr) -> String {
        let claims = TokenClaims { device, expires_at_ms: self.clock.now_ms() + 3_600_000 };
        TokenSigner::new(TOKEN_KEY).sign(claims)
    }

    /// The send kernel over these parts.
    pub fn fanout(&self) -> Fanout {
        Fanout::new(self.store.clone(), self.router.clone())
    }

    /// The messaging service.
    pub fn messaging(&self) -> Arc<Messaging> {
        self.services.messaging.clone()
    }

    /// The blocks service.
    pub fn blocks(&self) -> Arc<Blocks> {
        self.services.blocks.clone()
    }

    /// Registers `n_devices` devices of the account of `phone` (created with the first).
    pub async fn account(&self, phone: &str, n_devices: u32) -> Vec<DeviceAddr> {
        let mut devices = Vec::new();
        for i in 0..n_devices {
            let (_, device) = self.store.register_device(phone, &format!("device {i}"), 1, 5).await.expect("register");
            devices.push(device.addr);
        }
        devices
    }
}
