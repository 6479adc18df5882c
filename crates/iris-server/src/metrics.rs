//! Prometheus metrics of one node, served at `/metrics` (text exposition format).
//!
//! One [`Metrics`] lives in the `Ctx` (no global registry, so two servers in one test keep
//! separate numbers). Hot-path metrics are plain atomic counters and histograms; gauges that
//! other parts already know (sessions, committer queue) are read at scrape time.

use std::sync::Arc;

use iris_proto::pb::ErrorCode;
use iris_store::{CommitObserver, CommitSample, WriterEvent};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of a metric split by one dimension (`code`, `limit`, `result`).
pub type Labels = Vec<(&'static str, &'static str)>;

/// Every metric the node exports.
pub struct Metrics {
    registry: Registry,
    /// Connections accepted by the TCP listener or upgraded to WebSocket.
    pub connections_accepted: Counter,
    /// Connections refused because the node was over its connection budget.
    pub connections_refused: Counter,
    /// Connections open right now.
    pub connections_open: Gauge,
    /// Handshakes by result (`ok` or an error code).
    pub handshakes: Family<Labels, Counter>,
    /// Frames read from clients.
    pub frames_in: Counter,
    /// Frames written to clients.
    pub frames_out: Counter,
    /// Sends stored.
    pub sends_accepted: Counter,
    /// Sends answered from the dedup record (retries).
    pub sends_duplicate: Counter,
    /// 1:1 sends held toward a hot device (`send_gate.rs`).
    pub sends_held: Counter,
    /// Held sends that went through at the hold limit, the device still over its bound.
    pub send_holds_expired: Counter,
    /// Sends refused, by error code.
    pub sends_rejected: Family<Labels, Counter>,
    /// Inbox entries written to connections.
    pub deliveries: Counter,
    /// Time from a message's commit to its delivery on a connection.
    pub delivery_latency_seconds: Histogram,
    /// Appends per group commit.
    pub commit_batch_appends: Histogram,
    /// Duration of a group commit's write and fsync.
    pub commit_seconds: Histogram,
    /// Failed commits (disk full, fsync error).
    pub commit_failures: Counter,
    /// Cluster mode: times a PostgreSQL shard's writable host changed (a failover to its
    /// standby seen by this node).
    pub store_failovers: Counter,
    /// Cluster mode: bounded searches for a shard's writable host that found none (the shard's
    /// callers got `UNAVAILABLE`).
    pub store_writer_not_found: Counter,
    /// Requests refused by a rate limit, by limit.
    pub rate_limited: Family<Labels, Counter>,
    /// Whom the rate limits refused lately (not exported: read by the admin account lookup).
    pub limit_log: std::sync::Arc<crate::limit_log::LimitLog>,
    /// Cluster mode: items (hints, kicks, typing, presence, invalidations) published to other
    /// nodes.
    pub cluster_items_out: Counter,
    /// Cluster mode: items not forwarded (queue full, registry or Redis unavailable); hints among
    /// them arrive through the inbox check.
    pub cluster_items_dropped: Counter,
    /// Cluster mode: items received from other nodes.
    pub cluster_items_in: Counter,
    /// Cluster mode: sessions woken by the inbox check (entries whose hint did not come).
    pub inbox_check_wakeups: Counter,
    /// Cluster mode: 1 while the Redis bus answers, 0 while its circuit is open.
    pub cluster_bus_up: Gauge,
    /// Media bytes received in upload bodies.
    pub media_bytes_in: Counter,
    /// Media bytes sent in downloads.
    pub media_bytes_out: Counter,
    /// Upload bodies being received right now.
    pub media_uploads_in_progress: Gauge,
    /// Bytes of blobs in the media store (recounted by every media sweep, kept up to date by
    /// this node's own stores and deletions in between).
    pub media_stored_bytes: Gauge,
    /// Framed TCP connections refused by the PROXY protocol rules, by `reason` (`untrusted`:
    /// not from a trusted proxy under `required`; `bad_header`: a trusted proxy sent none or a
    /// malformed one).
    pub proxy_refused: Family<Labels, Counter>,
    /// SMS gateway requests, by `result` (`ok`, `retried`: a failed attempt that was retried,
    /// `failed`: the last attempt failed and the client got CODE_DELIVERY_FAILED).
    pub sms_requests: Family<Labels, Counter>,
    /// Disappearing messages: inbox entries deleted by the expiry sweep.
    pub expiry_entries_deleted: Counter,
    /// Disappearing messages: message-index records deleted by the expiry sweep.
    pub expiry_refs_deleted: Counter,
    /// Disappearing messages: sweep passes that failed (the next interval retries).
    pub expiry_sweep_failures: Counter,
    /// Push wake-ups accepted by a provider, by provider.
    pub push_sent: Family<Labels, Counter>,
    /// Push attempts that failed (including invalid tokens and retried ones), by provider.
    pub push_failed: Family<Labels, Counter>,
    /// Push wake-ups shed from a full provider queue, by provider (`intake`: devices dropped
    /// before the coalescer).
    pub push_dropped: Family<Labels, Counter>,
    /// Queueing to the provider's acceptance of a wake-up, by provider.
    pub push_latency_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// Device links by outcome (`requested`, `approved`, `refused`, `expired`, `limit`,
    /// `uncollected`: approved, never collected, its device revoked).
    pub devices_links: Family<Labels, Counter>,
    /// Registration PIN checks by result (`right`, `wrong`, `locked`, `missing`).
    pub devices_pin_checks: Family<Labels, Counter>,
    /// Re-registrations (a new primary replaced the account's devices).
    pub devices_reregistrations: Counter,
    /// Revocations whose follow-ups a crash or a failure cut short, finished by the devices'
    /// housekeeping.
    pub devices_revocations_resumed: Counter,
    /// Profile updates stored.
    pub profiles_updates: Counter,
    /// Profile updates refused (a field over its bound, a bad photo).
    pub profiles_rejected: Counter,
    /// Call signaling (`iris_calls_*`).
    pub calls: CallMetrics,
    /// Account deletions whose code checked out (the durable mark was set).
    pub account_deletions_started: Counter,
    /// Account deletions finished (everything erased, the mark removed).
    pub account_deletions_finished: Counter,
    /// Abuse rules that fired, by rule (`message_rate`, `new_recipients`, `forwards`,
    /// `reports`).
    pub abuse_rule_hits: Family<Labels, Counter>,
    /// Operations refused by an abuse decision, by code (`ACCOUNT_SUSPENDED`,
    /// `SENDING_RESTRICTED`, `FORWARDING_LIMITED`).
    pub abuse_refusals: Family<Labels, Counter>,
    /// Reports stored, by whether the reporter had reported the account before in the window
    /// (`first`, `repeated`).
    pub abuse_reports: Family<Labels, Counter>,
    /// Suspensions and lifts by operators (`suspend`, `unsuspend`).
    pub abuse_operator_actions: Family<Labels, Counter>,
    /// Admin API requests refused for a missing or wrong token.
    pub admin_refused: Counter,
    /// Devices revoked by an operator through the admin API.
    pub admin_revocations: Counter,
    /// Sessions registered in the router (read at scrape).
    sessions: Gauge,
    /// Appends and acks waiting for the committer (read at scrape).
    committer_queue: Gauge,
}

impl Metrics {
    /// Creates and registers every metric under the `iris_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("iris");
        let m = Self {
            connections_accepted: Counter::default(),
            connections_refused: Counter::default(),
            connections_open: Gauge::default(),
            handshakes: Family::default(),
            frames_in: Counter::default(),
            frames_out: Counter::default(),
            sends_accepted: Counter::default(),
            sends_duplicate: Counter::default(),
            sends_held: Counter::default(),
            send_holds_expired: Counter::default(),
            sends_rejected: Family::default(),
            deliveries: Counter::default(),
            delivery_latency_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            commit_batch_appends: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            commit_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            commit_failures: Counter::default(),
            store_failovers: Counter::default(),
            store_writer_not_found: Counter::default(),
            rate_limited: Family::default(),
            limit_log: std::sync::Arc::default(),
            cluster_items_out: Counter::default(),
            cluster_items_dropped: Counter::default(),
            cluster_items_in: Counter::default(),
            inbox_check_wakeups: Counter::default(),
            cluster_bus_up: Gauge::default(),
            media_bytes_in: Counter::default(),
            media_bytes_out: Counter::default(),
            media_uploads_in_progress: Gauge::default(),
            media_stored_bytes: Gauge::default(),
            proxy_refused: Family::default(),
            sms_requests: Family::default(),
            expiry_entries_deleted: Counter::default(),
            expiry_refs_deleted: Counter::default(),
            expiry_sweep_failures: Counter::default(),
            push_sent: Family::default(),
            push_failed: Family::default(),
            push_dropped: Family::default(),
            push_latency_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 14))),
            devices_links: Family::default(),
            abuse_rule_hits: Family::default(),
            abuse_refusals: Family::default(),
            abuse_reports: Family::default(),
            abuse_operator_actions: Family::default(),
            devices_pin_checks: Family::default(),
            devices_reregistrations: Counter::default(),
            devices_revocations_resumed: Counter::default(),
            profiles_updates: Counter::default(),
            profiles_rejected: Counter::default(),
            account_deletions_started: Counter::default(),
            account_deletions_finished: Counter::default(),
            admin_refused: Counter::default(),
            admin_revocations: Counter::default(),
            sessions: Gauge::default(),
            committer_queue: Gauge::default(),
            calls: CallMetrics::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "account_deletions_started",
            "Account deletions started (code checked, mark set)",
            m.account_deletions_started.clone(),
        );
        r.register(
            "account_deletions_finished",
            "Account deletions finished (everything erased)",
            m.account_deletions_finished.clone(),
        );
        r.register("connections_accepted", "Connections accepted", m.connections_accepted.clone());
        r.register("connections_refused", "Connections refused over the budget", m.connections_refused.clone());
        r.register("connections_open", "Connections open now", m.connections_open.clone());
        r.register("handshakes", "Handshakes by result", m.handshakes.clone());
        r.register("frames_in", "Frames read from clients", m.frames_in.clone());
        r.register("frames_out", "Frames written to clients", m.frames_out.clone());
        r.register("sends_accepted", "Sends durably stored", m.sends_accepted.clone());
        r.register("sends_duplicate", "Retried sends answered from dedup", m.sends_duplicate.clone());
        r.register("sends_held", "1:1 sends held toward a device draining a large backlog", m.sends_held.clone());
        r.register(
            "send_holds_expired",
            "Held sends let through at the hold limit, the device still over its bound",
            m.send_holds_expired.clone(),
        );
        r.register("sends_rejected", "Sends refused, by error code", m.sends_rejected.clone());
        r.register("deliveries", "Inbox entries written to connections", m.deliveries.clone());
        r.register(
            "delivery_latency_seconds",
            "Commit to delivery on a connection",
            m.delivery_latency_seconds.clone(),
        );
        r.register("commit_batch_appends", "Appends per group commit", m.commit_batch_appends.clone());
        r.register("commit_seconds", "Group commit write and fsync time", m.commit_seconds.clone());
        r.register("commit_failures", "Failed commits", m.commit_failures.clone());
        r.register("store_failovers", "Changes of a PostgreSQL shard's writable host", m.store_failovers.clone());
        r.register(
            "store_writer_not_found",
            "Searches for a PostgreSQL shard's writable host that found none",
            m.store_writer_not_found.clone(),
        );
        r.register("rate_limited", "Requests refused by a rate limit", m.rate_limited.clone());
        r.register("cluster_items_out", "Items published to other nodes", m.cluster_items_out.clone());
        r.register("cluster_items_dropped", "Items not forwarded to other nodes", m.cluster_items_dropped.clone());
        r.register("cluster_items_in", "Items received from other nodes", m.cluster_items_in.clone());
        r.register("inbox_check_wakeups", "Sessions woken by the inbox check", m.inbox_check_wakeups.clone());
        r.register("cluster_bus_up", "Whether the Redis bus answers (cluster mode)", m.cluster_bus_up.clone());
        r.register("proxy_refused", "TCP connections refused by the PROXY protocol rules", m.proxy_refused.clone());
        r.register("sms_requests", "SMS gateway requests by result", m.sms_requests.clone());
        r.register("devices_links", "Device links by outcome", m.devices_links.clone());
        r.register("abuse_rule_hits", "Abuse rules that fired, by rule", m.abuse_rule_hits.clone());
        r.register("abuse_refusals", "Operations refused by an abuse decision, by code", m.abuse_refusals.clone());
        r.register("abuse_reports", "User reports stored, first or repeated", m.abuse_reports.clone());
        r.register("abuse_operator_actions", "Operator suspensions and lifts", m.abuse_operator_actions.clone());
        r.register("devices_pin_checks", "Registration PIN checks by result", m.devices_pin_checks.clone());
        r.register(
            "devices_reregistrations",
            "New primaries replacing an account's devices",
            m.devices_reregistrations.clone(),
        );
        r.register(
            "devices_revocations_resumed",
            "Revocations cut short by a crash or a failure, finished later",
            m.devices_revocations_resumed.clone(),
        );
        r.register("profiles_updates", "Profile updates stored", m.profiles_updates.clone());
        r.register("profiles_rejected", "Profile updates refused", m.profiles_rejected.clone());
        r.register("media_bytes_in", "Media bytes received in uploads", m.media_bytes_in.clone());
        r.register(
            "expiry_entries_deleted",
            "Disappearing inbox entries deleted by the sweep",
            m.expiry_entries_deleted.clone(),
        );
        r.register(
            "expiry_refs_deleted",
            "Disappearing message-index records deleted by the sweep",
            m.expiry_refs_deleted.clone(),
        );
        r.register(
            "expiry_sweep_failures",
            "Failed disappearing-messages sweep passes",
            m.expiry_sweep_failures.clone(),
        );
        r.register("media_bytes_out", "Media bytes sent in downloads", m.media_bytes_out.clone());
        r.register("media_uploads_in_progress", "Upload bodies being received", m.media_uploads_in_progress.clone());
        r.register("media_stored_bytes", "Bytes of blobs in the media store", m.media_stored_bytes.clone());
        r.register("push_sent", "Push wake-ups accepted by the provider", m.push_sent.clone());
        r.register("push_failed", "Push attempts that failed", m.push_failed.clone());
        r.register("push_dropped", "Push wake-ups shed or dropped before sending", m.push_dropped.clone());
        r.register("push_latency_seconds", "Push wake-up queued to accepted", m.push_latency_seconds.clone());
        r.register("admin_refused", "Admin API requests without the right token", m.admin_refused.clone());
        r.register("admin_revocations", "Devices revoked by an operator", m.admin_revocations.clone());
        r.register("sessions", "Authenticated sessions on this node", m.sessions.clone());
        r.register("committer_queue_depth", "Operations waiting for the committer", m.committer_queue.clone());
        let c = r.sub_registry_with_prefix("calls");
        c.register("offers", "Call offers accepted", m.calls.offers.clone());
        c.register("missed", "Missed calls put into inboxes (per callee account)", m.calls.missed.clone());
        c.register("active", "Calls held by this node", m.calls.active.clone());
        c.register("forwarded", "Call operations forwarded to the node holding the call", m.calls.forwarded.clone());
        Self { registry, ..m }
    }

    /// Counts a refused send.
    pub fn send_rejected(&self, code: ErrorCode) {
        self.sends_rejected.get_or_create(&vec![("code", code.as_str_name())]).inc();
    }

    /// Counts a handshake by its result.
    pub fn handshake(&self, result: Result<(), ErrorCode>) {
        let label = result.err().map_or("ok", |c| c.as_str_name());
        self.handshakes.get_or_create(&vec![("result", label)]).inc();
    }

    /// The push counter `push_sent` of `provider`.
    pub fn push_sent_of(&self, provider: &'static str) -> Counter {
        self.push_sent.get_or_create(&vec![("provider", provider)]).clone()
    }

    /// The push counter `push_failed` of `provider`.
    pub fn push_failed_of(&self, provider: &'static str) -> Counter {
        self.push_failed.get_or_create(&vec![("provider", provider)]).clone()
    }

    /// The push counter `push_dropped` of `provider`.
    pub fn push_dropped_of(&self, provider: &'static str) -> Counter {
        self.push_dropped.get_or_create(&vec![("provider", provider)]).clone()
    }

    /// The push latency histogram of `provider`.
    pub fn push_latency_of(&self, provider: &'static str) -> Histogram {
        self.push_latency_seconds.get_or_create(&vec![("provider", provider)]).clone()
    }

    /// The counter of refusals of one named limit.
    pub fn rate_limit_counter(&self, limit: &'static str) -> Counter {
        self.rate_limited.get_or_create(&vec![("limit", limit)]).clone()
    }

    /// The text exposition, after refreshing the gauges read at scrape time.
    pub fn render(&self, sessions: usize, committer_queue: usize) -> String {
        self.sessions.set(sessions as i64);
        self.committer_queue.set(committer_queue as i64);
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The call signaling counters (`iris_calls_*`), kept together so the calls service takes only them.
#[derive(Clone, Default)]
pub struct CallMetrics {
    /// Offers accepted.
    pub offers: Counter,
    /// Missed calls stored, one per callee account.
    pub missed: Counter,
    /// Calls held by this node now.
    pub active: Gauge,
    /// Operations forwarded to another node (cluster mode).
    pub forwarded: Counter,
}

/// Feeds the store's commit samples into the histograms.
pub struct CommitMetrics(pub Arc<Metrics>);

impl CommitObserver for CommitMetrics {
    fn committed(&self, sample: CommitSample) {
        if sample.ok {
            self.0.commit_batch_appends.observe(sample.appends as f64);
            self.0.commit_seconds.observe(sample.duration.as_secs_f64());
        } else {
            self.0.commit_failures.inc();
        }
    }

    fn writer_event(&self, event: WriterEvent) {
        match event {
            WriterEvent::Changed { .. } => self.0.store_failovers.inc(),
            WriterEvent::NotFound { .. } => self.0.store_writer_not_found.inc(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_the_prefix() {
        let m = Metrics::new();
        m.sends_accepted.inc();
        m.send_rejected(ErrorCode::PayloadTooLarge);
        let text = m.render(3, 7);
        assert!(text.contains("iris_sends_accepted_total 1"), "{text}");
        assert!(text.contains("iris_sends_rejected_total{code=\"ERROR_CODE_PAYLOAD_TOO_LARGE\"} 1"), "{text}");
        assert!(text.contains("iris_sessions 3"), "{text}");
        assert!(text.contains("iris_committer_queue_depth 7"), "{text}");
    }
}
