//! Builds the services from the parts, once per server: the one place that knows which service
//! is made of which. Read bottom up, it is the layering of ARCHITECTURE.md: the send kernel and
//! the small services first, then receipts, then the inbox and the sending services, then actions
//! and forwards; the session gets them all, and no store.

use std::sync::Arc;

use iris_store::{AccountId, Store};
use tokio_util::sync::CancellationToken;

use crate::abuse::{Abuse, AbuseDeps};
use crate::actions::{Actions, ActionsDeps};
use crate::auth::access::Authenticator;
use crate::blocks::Blocks;
use crate::calls::{Calls, CallsDeps};
use crate::chat_timers::ChatTimers;
use crate::clock::Clock;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::contacts::Contacts;
use crate::device_notices::DeviceNotices;
use crate::directory::Directory;
use crate::fanout::Fanout;
use crate::forward::Forwards;
use crate::gateway::admission::Admission;
use crate::group_payloads::GroupPayloads;
use crate::groups::{Groups, GroupsDeps};
use crate::identity_notices::IdentityNotices;
use crate::ids::IdGenerator;
use crate::inbox::Inbox;
use crate::keys::{Keys, KeysDeps};
use crate::media_refs::MediaRefs;
use crate::message_index::MessageIndex;
use crate::messaging::Messaging;
use crate::metrics::Metrics;
use crate::presence::PresenceHub;
use crate::profiles::{Profiles, ProfilesDeps};
use crate::push::Push;
use crate::ratelimit::{KeyedLimit, SharedLimit};
use crate::receipts::{Receipts, ReceiptsDeps};
use crate::router::Router;
use crate::send_gate::SendGate;
use crate::session::SessionDeps;
use crate::typing::Typing;
use crate::visibility::Visibility;
use std::time::Duration;

/// The parts the services are made of.
pub struct Foundations {
    /// Durable state; each service keeps only the store traits it needs.
    pub store: Arc<dyn Store>,
    /// Accounts and their devices.
    pub directory: Arc<Directory>,
    /// Device → session.
    pub router: Arc<Router>,
    /// Server message ids.
    pub ids: Arc<IdGenerator>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Who is online.
    pub presence: Arc<PresenceHub>,
    /// Metrics of this node.
    pub metrics: Arc<Metrics>,
    /// Who may connect.
    pub admission: Arc<Admission>,
    /// Access tokens.
    pub authenticator: Arc<Authenticator>,
    /// Sends per account, shared by 1:1 and group sends, actions and forwards.
    pub send_limit: SharedLimit<AccountId>,
    /// Typing indicators per account.
    pub typing_limit: Option<KeyedLimit<AccountId>>,
    /// Contact discovery requests per account.
    pub discover_limit: Option<KeyedLimit<AccountId>>,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
    /// The link to other nodes, in cluster mode.
    pub cluster: Option<Arc<Cluster>>,
    /// This node's name.
    pub node_name: String,
    /// Push notifications (registrations; wake-ups run on their own).
    pub push: Arc<Push>,
}

/// Every service, wired, as the sessions get them. Also starts telling the router's sessions
/// when `f.shutdown` is cancelled (the only way they hear it) and releasing their held receipts,
/// so whatever builds sessions' dependencies gets both too. Must run inside a tokio runtime.
pub fn build(config: &Config, f: Foundations) -> SessionDeps {
    tokio::spawn(crate::router::stop_sessions_on(f.router.clone(), f.shutdown.clone()));
    tokio::spawn(crate::router::release_receipts_on(f.router.clone(), f.shutdown.clone()));
    let store = f.store;
    let limits = config.limits.to_proto();
    let fanout = Fanout::new(store.clone(), f.router.clone());
    let index = Arc::new(MessageIndex::new(store.clone(), f.clock.clone()));
    let payloads = Arc::new(GroupPayloads::new(store.clone()));
    let blocks = Arc::new(Blocks::new(store.clone(), f.directory.clone(), f.presence.clone()));
    let receipts = Arc::new(Receipts::new(ReceiptsDeps {
        fanout: fanout.clone(),
        directory: f.directory.clone(),
        blocks: blocks.clone(),
        index: index.clone(),
        router: f.router.clone(),
        groups: store.clone(),
        ids: f.ids.clone(),
        clock: f.clock.clone(),
    }));
    let inbox = Arc::new(Inbox::new(store.clone(), payloads.clone(), receipts.clone(), f.clock.clone()));
    let timers = Arc::new(ChatTimers::new(store.clone()));
    let media = Arc::new(MediaRefs::new(store.clone()));
    let messaging = Arc::new(Messaging::new(
        fanout.clone(),
        f.directory.clone(),
        blocks.clone(),
        index.clone(),
        media.clone(),
        f.ids.clone(),
        f.clock.clone(),
        limits,
        timers.clone(),
        SendGate::new(f.router.clone(), f.metrics.clone(), config.session.hot_backlog_max, config.session.hot_hold()),
    ));
    let groups = Arc::new(Groups::new(
        GroupsDeps {
            store: store.clone(),
            fanout: fanout.clone(),
            directory: f.directory.clone(),
            receipts: receipts.clone(),
            index: index.clone(),
            payloads,
            ids: f.ids.clone(),
            clock: f.clock.clone(),
            send_limit: f.send_limit.clone(),
            media,
            timers,
        },
        config,
        &f.metrics,
        f.cluster.as_ref().map(|c| &c.bus),
    ));
    let actions = Arc::new(Actions::new(ActionsDeps {
        fanout,
        index,
        directory: f.directory.clone(),
        blocks: blocks.clone(),
        groups: groups.clone(),
        ids: f.ids.clone(),
        clock: f.clock.clone(),
        send_limit: f.send_limit.clone(),
        limits,
    }));
    let forwards = Arc::new(Forwards::new(
        messaging.clone(),
        groups.clone(),
        f.send_limit.clone(),
        limits.max_client_msg_id_bytes as usize,
    ));
    let contacts = Arc::new(Contacts::new(
        store.clone(),
        f.directory.clone(),
        blocks.clone(),
        f.presence.clone(),
        f.discover_limit,
    ));
    let calls = Arc::new(build_calls(
        config,
        &f.metrics,
        CallsParts {
            directory: f.directory.clone(),
            blocks: blocks.clone(),
            groups: store.clone(),
            presence: f.presence.clone(),
            fanout: Fanout::new(store.clone(), f.router.clone()),
            router: f.router.clone(),
            ids: f.ids.clone(),
            clock: f.clock.clone(),
            cluster: f.cluster.clone(),
        },
    ));
    let typing =
        Arc::new(Typing::new(store.clone(), f.directory.clone(), blocks.clone(), f.router.clone(), f.typing_limit));
    let visibility = Arc::new(Visibility::new(store.clone(), blocks.clone(), contacts.clone(), f.presence.clone()));
    let keys = Arc::new(build_keys(
        config,
        &f.metrics,
        Fanout::new(store.clone(), f.router.clone()),
        KeysParts { directory: f.directory.clone(), ids: f.ids.clone(), clock: f.clock.clone(), store: store.clone() },
    ));
    let device_notices = Arc::new(DeviceNotices::new(
        Fanout::new(store.clone(), f.router.clone()),
        f.directory.clone(),
        f.ids.clone(),
        f.clock.clone(),
    ));
    let profiles = Arc::new(Profiles::new(ProfilesDeps {
        store: store.clone(),
        directory: f.directory.clone(),
        blocks: blocks.clone(),
        contacts: contacts.clone(),
        fanout: Fanout::new(store.clone(), f.router.clone()),
        ids: f.ids.clone(),
        clock: f.clock.clone(),
        metrics: f.metrics.clone(),
        config: config.profiles.clone(),
    }));
    let abuse = Arc::new(Abuse::new(AbuseDeps {
        store: store.clone(),
        directory: f.directory.clone(),
        ids: f.ids.clone(),
        clock: f.clock.clone(),
        metrics: f.metrics.clone(),
        config: config.abuse.clone(),
        bus: f.cluster.as_ref().map(|c| c.bus.clone()),
    }));
    SessionDeps {
        abuse,
        config: config.session.clone(),
        device_notices,
        profiles,
        limits,
        node_name: f.node_name,
        metrics: f.metrics,
        admission: f.admission,
        router: f.router,
        presence: f.presence,
        clock: f.clock,
        shutdown: f.shutdown,
        cluster: f.cluster,
        auth: f.authenticator,
        inbox,
        messaging,
        groups,
        receipts,
        actions,
        forwards,
        contacts,
        typing,
        calls,
        blocks,
        visibility,
        keys,
        push: f.push,
        send_limit: f.send_limit,
    }
}

/// What the key service shares with the others.
struct KeysParts {
    store: Arc<dyn Store>,
    directory: Arc<Directory>,
    ids: Arc<IdGenerator>,
    clock: Arc<dyn Clock>,
}

/// The key directory service and the identity-change notices it sends.
fn build_keys(config: &Config, metrics: &Metrics, fanout: Fanout, p: KeysParts) -> Keys {
    let k = &config.keys;
    let minute = Duration::from_secs(60);
    let limit = |name, n| SharedLimit::new(KeyedLimit::new(name, n, minute, metrics));
    let ttl_ms = config.retention.inbox_ttl_days * 24 * 3600 * 1000;
    let notices = Arc::new(IdentityNotices::new(
        fanout.clone(),
        p.directory.clone(),
        p.store.clone(),
        p.ids.clone(),
        p.clock.clone(),
        ttl_ms,
    ));
    Keys::new(KeysDeps {
        store: p.store,
        directory: p.directory,
        fanout,
        notices,
        ids: p.ids,
        clock: p.clock,
        config: k.clone(),
        claim_limit: limit("key claims per account", k.claims_per_account_per_minute),
        target_limit: limit("key claims per target account", k.claims_per_target_per_minute),
        query_limit: limit("key queries per account", k.queries_per_account_per_minute),
    })
}

/// What the call service shares with the others.
struct CallsParts {
    directory: Arc<Directory>,
    blocks: Arc<Blocks>,
    groups: Arc<dyn iris_store::GroupStore>,
    presence: Arc<PresenceHub>,
    fanout: Fanout,
    router: Arc<Router>,
    ids: Arc<IdGenerator>,
    clock: Arc<dyn Clock>,
    cluster: Option<Arc<Cluster>>,
}

/// The call signaling service, with its offer rate limit and its metrics.
fn build_calls(config: &Config, metrics: &Metrics, p: CallsParts) -> Calls {
    let c = &config.calls;
    let offer_limit =
        KeyedLimit::new("call offers per account", c.offers_per_account_per_minute, Duration::from_secs(60), metrics);
    let deps = CallsDeps {
        directory: p.directory,
        blocks: p.blocks,
        groups: p.groups,
        presence: p.presence,
        router: p.router,
        fanout: p.fanout,
        ids: p.ids,
        clock: p.clock,
        offer_limit,
        metrics: metrics.calls.clone(),
        cluster: p.cluster,
        payload_bytes_max: config.limits.payload_bytes_max,
    };
    Calls::new(deps, config.node_id, c)
}
