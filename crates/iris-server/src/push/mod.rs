//! Push notifications: wake a device that has no open connection when its inbox changes.
//!
//! The path: `fanout` commits and hints → the router finds no session for the device, here or
//! (cluster mode) in the session registry → [`Push::offline`] (never blocks: a bounded intake,
//! overflow counted) → one task coalesces per device ([`coalesce`]: at most one wake-up per
//! `push.interval_ms`), reads the device's target and its waiting entries (the badge) from the
//! store, and queues a [`Job`] on the provider's [`ShedQueue`] (bounded; a provider that is down
//! sheds its oldest wake-ups, counted) → the provider's senders deliver it, retrying timeouts,
//! connection failures and 5xx with backoff and jitter; an invalid-token answer removes the
//! token. A wake-up carries the badge only: contents are end-to-end encrypted and stay in the
//! inbox, which the app reads over its own connection.
//!
//! In cluster mode only the node that committed the inbox change gets here (its router or its
//! outbound forwarder decides), so exactly one node pushes for a change.
//!
//! Knows the store's push targets and cursors, the router (is the device connected here) and
//! the providers. Knows nothing of sessions or sockets.

pub mod apns;
pub mod coalesce;
pub mod fcm;
pub mod http;
pub mod jwt;
pub mod queue;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use iris_proto::pb::{self, inbox_item, push_op, PushProvider};
use iris_store::{AccountId, DeviceAddr, InboxStore, PushStore, PushTarget};
use prost::Message as _;
use rand::Rng as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::coalesce::Coalescer;
use self::queue::{backoff, ShedQueue};
use crate::clock::Clock;
use crate::config::PushConfig;
use crate::error::ServiceError;
use crate::metrics::Metrics;
use crate::ratelimit::{self, KeyedLimit};
use crate::router::{Offline, Router};

/// Requests sent at once per provider.
const SENDERS_PER_PROVIDER: usize = 8;

/// Why push cannot be set up or a registration is refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PushError {
    /// The provider is unknown or not configured on this server.
    #[error("push provider {0} is not available on this server")]
    ProviderUnavailable(String),
    /// The token does not fit its provider.
    #[error("{0}")]
    Token(String),
    /// The target is an address the server must not post to (a webhook host in its own
    /// network).
    #[error("{0}")]
    Forbidden(String),
    /// A signing key that cannot be used.
    #[error("push key: {0}")]
    Key(String),
    /// A configuration that cannot be used (a file, a URL).
    #[error("push config: {0}")]
    Config(String),
}

impl From<PushError> for ServiceError {
    fn from(e: PushError) -> Self {
        match e {
            PushError::ProviderUnavailable(_) => Self::PushProviderUnavailable(e.to_string()),
            PushError::Token(why) => Self::PushTokenInvalid(why),
            PushError::Forbidden(why) => Self::PushTargetForbidden(why),
            PushError::Key(_) | PushError::Config(_) => {
                tracing::error!(error = %e, "push misconfigured");
                Self::Internal
            }
        }
    }
}

/// What a wake-up says: no content, only how many entries wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wake {
    /// Entries waiting in the device's inbox.
    pub badge: u32,
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted it.
    Sent,
    /// The provider says the token is no longer valid: remove it.
    InvalidToken(String),
    /// A timeout, a connection failure, 429 or 5xx: worth a retry.
    Retry(String),
    /// Refused for another reason: not retried.
    Failed(String),
}

/// One push provider.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Its name in the store and in metrics.
    fn name(&self) -> &'static str;
    /// Whether `token` can be a token of this provider.
    fn check_token(&self, token: &str) -> Result<(), PushError>;
    /// Checks of `token` that need I/O (the webhook resolves its host), after `check_token`.
    async fn check_target(&self, _token: &str) -> Result<(), PushError> {
        Ok(())
    }
    /// One attempt to wake the device of `token`.
    async fn send(&self, token: &str, wake: &Wake) -> Outcome;
}

/// A wake-up waiting for its provider.
#[derive(Debug, Clone)]
pub struct Job {
    /// The target as read when it was queued.
    pub target: PushTarget,
    /// What it says.
    pub wake: Wake,
    /// When it was queued (latency).
    pub queued_at: Instant,
}

struct Lane {
    provider: Arc<dyn Provider>,
    queue: ShedQueue<Job>,
}

/// The push service: registrations from devices, wake-ups for offline ones.
pub struct Push {
    /// Push targets.
    store: Arc<dyn PushStore>,
    /// Cursors, for the badge.
    inbox: Arc<dyn InboxStore>,
    router: Arc<Router>,
    metrics: Arc<Metrics>,
    lanes: HashMap<&'static str, Arc<Lane>>,
    intake: mpsc::Sender<DeviceAddr>,
    /// Taken by [`Push::start`].
    intake_rx: std::sync::Mutex<Option<mpsc::Receiver<DeviceAddr>>>,
    clock: Arc<dyn Clock>,
    config: PushConfig,
    /// Test wake-ups per account (`rate_limits.push_tests_per_account_per_hour`).
    test_limit: Option<KeyedLimit<AccountId>>,
}

/// The provider name of a wire provider.
fn provider_name(p: PushProvider) -> Option<&'static str> {
    match p {
        PushProvider::Webhook => Some("webhook"),
        PushProvider::Fcm => Some("fcm"),
        PushProvider::Apns => Some("apns"),
        PushProvider::Unspecified => None,
    }
}

/// The wire provider of a stored name.
fn provider_of(name: &str) -> PushProvider {
    match name {
        "webhook" => PushProvider::Webhook,
        "fcm" => PushProvider::Fcm,
        "apns" => PushProvider::Apns,
        _ => PushProvider::Unspecified,
    }
}

/// Whether an inbox item is worth waking a phone for: messages, message actions and missed calls, not
/// receipts, key notices or group bookkeeping.
fn wakes(item: &Bytes) -> bool {
    matches!(
        pb::InboxItem::decode(item.as_ref()).ok().and_then(|i| i.body),
        Some(
            inbox_item::Body::Message(_)
                | inbox_item::Body::GroupMessage(_)
                | inbox_item::Body::MessageAction(_)
                | inbox_item::Body::MissedCall(_)
        )
    )
}

impl Push {
    /// The providers `config` enables, built (keys read, TLS roots loaded).
    pub fn providers(config: &PushConfig, clock: Arc<dyn Clock>) -> Result<Vec<Arc<dyn Provider>>, PushError> {
        let wanted =
            config.webhook_enabled || config.fcm_service_account_file.is_some() || config.apns_key_file.is_some();
        if !wanted {
            return Ok(Vec::new());
        }
        let tls = http::tls_config(&config.ca_file)?;
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path).map_err(|e| PushError::Config(format!("{}: {e}", path.display())))
        };
        let mut out: Vec<Arc<dyn Provider>> = Vec::new();
        if config.webhook_enabled {
            let client = http::client(tls.clone(), false, config.webhook_private_hosts_allowed);
            out.push(Arc::new(webhook::Webhook::new(client, timeout, config.webhook_private_hosts_allowed)));
        }
        if let Some(path) = &config.fcm_service_account_file {
            let account: fcm::ServiceAccount = serde_json::from_str(&read(path)?)
                .map_err(|e| PushError::Config(format!("{}: {e}", path.display())))?;
            // FCM's and APNs' endpoints are the operator's configuration, not a client's choice.
            let client = http::client(tls.clone(), false, true);
            let f = fcm::Fcm::new(
                client,
                config.fcm_endpoint.clone(),
                config.fcm_token_uri.clone(),
                account,
                clock.clone(),
                timeout,
            )?;
            out.push(Arc::new(f));
        }
        if let Some(path) = &config.apns_key_file {
            let key = jwt::JwtKey::es256_pem(&read(path)?)?;
            let settings = apns::ApnsSettings {
                endpoint: config.apns_endpoint.clone(),
                topic: config.apns_topic.clone(),
                key_id: config.apns_key_id.clone(),
                team_id: config.apns_team_id.clone(),
            };
            out.push(Arc::new(apns::Apns::new(http::client(tls, true, true), settings, key, clock, timeout)));
        }
        Ok(out)
    }

    /// A service over `providers`; call [`start`](Self::start) to run it.
    pub fn new(
        config: &PushConfig,
        providers: Vec<Arc<dyn Provider>>,
        store: Arc<dyn PushStore>,
        inbox: Arc<dyn InboxStore>,
        router: Arc<Router>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let (intake, rx) = mpsc::channel(config.intake_len_max.max(1));
        let lanes = providers
            .into_iter()
            .map(|p| (p.name(), Arc::new(Lane { provider: p, queue: ShedQueue::new(config.queue_len_max) })))
            .collect();
        Self {
            store,
            inbox,
            router,
            metrics,
            lanes,
            intake,
            intake_rx: std::sync::Mutex::new(Some(rx)),
            clock,
            config: config.clone(),
            test_limit: None,
        }
    }

    /// Limits test wake-ups with `limit` (per account; `None`: unlimited, as built).
    pub fn limiting_tests(mut self, limit: Option<KeyedLimit<AccountId>>) -> Self {
        self.test_limit = limit;
        self
    }

    /// Forgets idle rate-limit buckets; called periodically.
    pub fn sweep(&self) {
        if let Some(l) = &self.test_limit {
            l.sweep();
        }
    }

    /// Starts the coalescer and the senders (once) until `stop`.
    pub fn start(self: &Arc<Self>, stop: CancellationToken) {
        let Some(rx) = self.intake_rx.lock().expect("push intake lock").take() else { return };
        if self.lanes.is_empty() {
            return; // nothing to send with; `offline` finds no lane and drops nothing
        }
        tokio::spawn(self.clone().coalesce(rx, stop.clone()));
        for lane in self.lanes.values() {
            for _ in 0..SENDERS_PER_PROVIDER {
                tokio::spawn(self.clone().send_loop(lane.clone(), stop.clone()));
            }
        }
    }

    /// Answers a device's `PushOp`.
    pub async fn op(&self, device: DeviceAddr, op: pb::PushOp) -> Result<pb::PushResult, ServiceError> {
        match op.op {
            Some(push_op::Op::Register(r)) => self.register(device, r, self.clock.now_ms()).await,
            Some(push_op::Op::Unregister(_)) => {
                self.store.delete_push_target(device, None).await?;
                Ok(pb::PushResult::default())
            }
            Some(push_op::Op::Test(_)) => self.test(device).await,
            None => Err(ServiceError::InvalidArgument("empty push operation".into())),
        }
    }

    /// Removes `device`'s push target; whether it had one. (HTTP: the caller's permission is
    /// checked by the handler.)
    pub async fn unregister(&self, device: DeviceAddr) -> Result<bool, ServiceError> {
        Ok(self.store.delete_push_target(device, None).await?)
    }

    /// Checks and stores a registration.
    async fn register(
        &self,
        device: DeviceAddr,
        r: pb::PushRegister,
        now_ms: u64,
    ) -> Result<pb::PushResult, ServiceError> {
        let provider = r.provider();
        let name = provider_name(provider).ok_or_else(|| PushError::ProviderUnavailable("UNSPECIFIED".into()))?;
        let lane = self.lanes.get(name).ok_or_else(|| PushError::ProviderUnavailable(name.into()))?;
        if r.token.is_empty() || r.token.len() > self.config.token_bytes_max {
            return Err(PushError::Token(format!("a push token is 1 to {} bytes", self.config.token_bytes_max)).into());
        }
        lane.provider.check_token(&r.token)?;
        lane.provider.check_target(&r.token).await?;
        let target = PushTarget { device, provider: name.into(), token: r.token, updated_at_ms: now_ms };
        self.store.set_push_target(target).await?;
        Ok(pb::PushResult { provider: provider as i32, ..Default::default() })
    }

    /// One wake-up now, reported to the caller; `RATE_LIMITED` past the account's tests per
    /// hour.
    async fn test(&self, device: DeviceAddr) -> Result<pb::PushResult, ServiceError> {
        ratelimit::check_shared(&self.test_limit, &device.account).await?;
        let target = self.store.push_target(device).await?.ok_or(ServiceError::NotFound("push target"))?;
        let lane = self
            .lanes
            .get(target.provider.as_str())
            .ok_or_else(|| PushError::ProviderUnavailable(target.provider.clone()))?;
        let wake = Wake { badge: self.badge(device).await? };
        let job = Job { target, wake, queued_at: Instant::now() };
        match self.attempt(lane, &job).await {
            Outcome::Sent => {
                Ok(pb::PushResult { provider: provider_of(lane.provider.name()) as i32, sent: true, badge: wake.badge })
            }
            Outcome::InvalidToken(why) => Err(ServiceError::PushDeliveryFailed(format!(
                "the provider rejected the token ({why}); it was removed"
            ))),
            Outcome::Retry(why) | Outcome::Failed(why) => Err(ServiceError::PushDeliveryFailed(why)),
        }
    }

    /// Entries waiting in `device`'s inbox.
    async fn badge(&self, device: DeviceAddr) -> Result<u32, ServiceError> {
        let c = self.inbox.cursor(device).await?;
        Ok(u32::try_from(c.last.saturating_sub(c.acked)).unwrap_or(u32::MAX))
    }

    /// Waits for devices, coalesces, and queues their wake-ups.
    async fn coalesce(self: Arc<Self>, mut rx: mpsc::Receiver<DeviceAddr>, stop: CancellationToken) {
        let mut coalescer = Coalescer::new(Duration::from_millis(self.config.interval_ms));
        loop {
            let due = coalescer.next_due();
            let woken = tokio::select! {
                _ = stop.cancelled() => return,
                addr = rx.recv() => match addr {
                    None => return,
                    Some(a) => if coalescer.offer(a, Instant::now()) { vec![a] } else { Vec::new() },
                },
                _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    coalescer.take_due(Instant::now())
                }
            };
            for addr in woken {
                if let Err(e) = self.enqueue(addr).await {
                    tracing::debug!(%addr, error = %e, "push: wake-up not queued");
                }
            }
        }
    }

    /// Queues a wake-up for `addr` if it is still offline here and has a target.
    async fn enqueue(&self, addr: DeviceAddr) -> Result<(), ServiceError> {
        if self.router.is_connected(addr) {
            return Ok(());
        }
        let Some(target) = self.store.push_target(addr).await? else { return Ok(()) };
        let Some(lane) = self.lanes.get(target.provider.as_str()) else { return Ok(()) };
        let wake = Wake { badge: self.badge(addr).await? };
        if lane.queue.push(Job { target, wake, queued_at: Instant::now() }).is_some() {
            self.metrics.push_dropped_of(lane.provider.name()).inc();
        }
        Ok(())
    }

    /// One provider's sender: takes jobs and delivers them, retrying.
    async fn send_loop(self: Arc<Self>, lane: Arc<Lane>, stop: CancellationToken) {
        loop {
            let job = tokio::select! {
                _ = stop.cancelled() => return,
                job = lane.queue.pop() => job,
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.deliver(&lane, job) => {}
            }
        }
    }

    /// Delivers one job with up to `attempts_max` attempts.
    async fn deliver(&self, lane: &Lane, job: Job) {
        let (initial, max) =
            (Duration::from_millis(self.config.backoff_initial_ms), Duration::from_millis(self.config.backoff_max_ms));
        for attempt in 1..=self.config.attempts_max {
            match self.attempt(lane, &job).await {
                Outcome::Retry(why) if attempt < self.config.attempts_max => {
                    let delay = backoff(attempt, initial, max, rand::rng().random::<f64>());
                    tracing::debug!(device = %job.target.device, attempt, %why, ?delay, "push: retrying");
                    tokio::time::sleep(delay).await;
                }
                _ => return,
            }
        }
    }

    /// One attempt, counted; an invalid token is removed (unless re-registered meanwhile).
    async fn attempt(&self, lane: &Lane, job: &Job) -> Outcome {
        let name = lane.provider.name();
        let outcome = lane.provider.send(&job.target.token, &job.wake).await;
        match &outcome {
            Outcome::Sent => {
                self.metrics.push_sent_of(name).inc();
                self.metrics.push_latency_of(name).observe(job.queued_at.elapsed().as_secs_f64());
            }
            Outcome::InvalidToken(why) => {
                self.metrics.push_failed_of(name).inc();
                tracing::info!(device = %job.target.device, provider = name, %why, "push token invalid: removed");
                if let Err(e) = self.store.delete_push_target(job.target.device, Some(&job.target.token)).await {
                    tracing::warn!(device = %job.target.device, error = %e, "push: removing an invalid token failed");
                }
            }
            Outcome::Retry(why) | Outcome::Failed(why) => {
                self.metrics.push_failed_of(name).inc();
                tracing::debug!(device = %job.target.device, provider = name, %why, "push attempt failed");
            }
        }
        outcome
    }
}

impl Offline for Push {
    fn offline(&self, addr: DeviceAddr, item: &Bytes) {
        if self.lanes.is_empty() || !wakes(item) {
            return;
        }
        if self.intake.try_send(addr).is_err() {
            self.metrics.push_dropped_of("intake").inc();
        }
    }
}
