//! The Redis Cluster bus: the soft state and messaging Iris nodes share in cluster mode — delivery
//! hints over sharded Pub/Sub (a channel per node plus a broadcast channel), the session registry
//! (device → node, with a TTL), generic soft state with TTLs and rate-limit buckets.
//!
//! **Invariant:** nothing durable goes through here. Redis failover can lose acknowledged writes,
//! so every message is a hint and every entry can vanish; callers fall back to their inbox checks.
//! **Invariant:** a dead or slow Redis never stalls a caller: every call has a deadline
//! (`command_timeout_ms`) and a circuit breaker ([`breaker`]) makes calls fail fast after several
//! consecutive failures, probing again after a short pause.
//!
//! The bus knows nothing of sessions, the router or the wire format of what it carries (bytes).
//! Key and channel names are in [`keys`].
//!
//! ## Why the `redis` crate (redis-rs)
//! It is maintained by the Redis project (1.x, released through 2026, with a 2.0 on the way),
//! and its async cluster connection does sharded Pub/Sub over RESP3 with a subscription tracker
//! that re-subscribes each channel on whichever node owns its slot after a reconnect or a topology
//! change (failover) — the one hard part here. Commands and pushes share one multiplexed
//! connection per node, so there is no second subscriber client to keep in step. `fred` 10 also
//! has cluster support and a re-subscribing subscriber client, but its last release is from early
//! 2025. Features: only `cluster-async` and `tokio-comp` (no TLS, no default command groups);
//! Lua goes through plain `EVAL` ([`scripts`]). The library only re-subscribes once it notices
//! the topology changed, which a connection that merely receives does not (measured: a node
//! channel stayed dead >15 s after its primary was killed), so the bus probes its own
//! subscriptions every `probe_interval_ms` (see [`subscription`]): with probes, messages to a
//! node flow again about 2.5 s after its shard's primary is killed (1 s `cluster-node-timeout`).
//! As a last resort against a client stuck on a stale topology, calls failing through every probe
//! interval for 5 s make the bus replace its connection ([`Bus::reconnect`]).

mod breaker;
mod keys;
mod scripts;
mod subscription;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::try_join_all;
use iris_store::DeviceAddr;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{ErrorKind, FromRedisValue, Pipeline, ProtocolVersion, RedisError, ServerErrorKind};
use tokio::sync::mpsc;

use breaker::Breaker;
use keys::{group_by_slot, Keys};
use subscription::{Channels, Pair, PushSink, SubState};

/// Most keys one round trip carries (one group of per-slot pipelines); larger calls
/// are split into several round trips, each with its own deadline.
const BATCH_MAX: usize = 512;

/// How to reach the cluster and how this node appears on it. Start from `BusConfig::default()`:
/// the knobs below `command_timeout_ms` have good defaults and tests shorten them.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Seed nodes (`redis://127.0.0.1:7000`, or `rediss://` for TLS); the rest of the cluster is
    /// discovered from them and reached the same way.
    pub urls: Vec<String>,
    /// `rediss://` only: PEM root certificates the nodes' certificates must chain to (else the
    /// system's roots). The host name or address of each node is always verified.
    pub ca_pem: Option<Vec<u8>>,
    /// Prefix of every key and channel, so several Iris clusters (or tests) share one Redis Cluster.
    /// Must be non-empty and hold no `{`/`}` (those would change the hash tags).
    pub namespace: String,
    /// This node's id: its channel and the value of the session entries it claims.
    pub node_id: u16,
    /// Deadline of every call (one round trip, or one batch of [`BATCH_MAX`] keys); the default
    /// 250 is far above a healthy cluster's latency and short enough not to stall a send.
    pub command_timeout_ms: u64,
    /// Deadline of the first connection and subscription in [`Bus::connect`].
    pub connect_timeout_ms: u64,
    /// Consecutive failures (errors of the connection or timeouts) that open the circuit.
    pub breaker_failures_max: u32,
    /// How long an open circuit fails calls at once before letting one probe through.
    pub breaker_open_ms: u64,
    /// How often the bus publishes a probe to itself on each subscribed shard; a subscription
    /// silent for three intervals is made again (and `is_healthy` is false meanwhile).
    pub probe_interval_ms: u64,
    /// Capacity of the receiver returned by [`Bus::connect`]; messages beyond it are dropped.
    pub inbox_len_max: usize,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            ca_pem: None,
            namespace: "iris".into(),
            node_id: 0,
            command_timeout_ms: 250,
            connect_timeout_ms: 5_000,
            breaker_failures_max: 5,
            breaker_open_ms: 1_000,
            probe_interval_ms: 500,
            inbox_len_max: 8_192,
        }
    }
}

/// Why a bus call failed. Every variant is safe to treat as "hint not delivered / state unknown":
/// the caller degrades (inbox checks, local-only presence) rather than failing a send.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The configuration or an argument is invalid; retrying does not help.
    #[error("invalid bus configuration or argument: {0}")]
    Config(String),
    /// The cluster could not be reached or is not serving this slot right now (failover).
    #[error("redis cluster unavailable: {0}")]
    Unavailable(String),
    /// Redis did not answer within the command timeout.
    #[error("redis did not answer within the command timeout")]
    Timeout,
    /// Recent calls failed; this one was not attempted (the circuit is open).
    #[error("redis circuit open after repeated failures; not attempted")]
    CircuitOpen,
    /// Redis answered with an error for this command (a bug, not an outage).
    #[error("redis refused the command: {0}")]
    Command(String),
}

/// A connection to the cluster for one node; cheap to clone, all clones share the connection,
/// the circuit breaker and the subscriptions. Dropping the last clone closes the connection and
/// ends the receiver.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("node_id", &self.inner.node_id).field("healthy", &self.is_healthy()).finish()
    }
}

struct Inner {
    /// Multiplexed connections to every primary; cloned per call (a handle, not a socket).
    /// Replaced whole by [`Bus::reconnect`] when failures persist (a std lock: held only to clone).
    conn: RwLock<ClusterConnection>,
    /// Makes replacement connections (same seeds, same push sink).
    client: ClusterClient,
    connect_timeout: Duration,
    /// Outages (failed or refused calls) and rebuilds, for [`Bus::rebuild_if_stuck`].
    trouble: Trouble,
    keys: Keys,
    node_id: u16,
    /// `node_id` as stored in session entries.
    node_value: String,
    channels: Channels,
    timeout: Duration,
    breaker: Breaker,
    subs: Arc<SubState>,
    probe_interval: Duration,
    /// The probe task; aborted when the last clone goes, so it never outlives the bus.
    probe_task: tokio::task::AbortHandle,
}

/// When calls last failed for want of Redis, and the streak the probe task counts from it.
#[derive(Debug, Default)]
struct Trouble {
    /// Last outage (a failed call or one refused by the open circuit), ms on the bus's clock + 1
    /// (0 = never).
    last_outage_ms: AtomicU64,
    /// Consecutive probe intervals that saw an outage.
    streak: AtomicU64,
    /// Last rebuild attempt, ms on the bus's clock.
    last_rebuild_ms: AtomicU64,
}

/// A connection is rebuilt from scratch after outages in every probe interval for this long: the
/// client's own recovery (slot refresh, reconnect) normally needs a fraction of it after a
/// failover, so this only catches a client stuck on a stale topology.
const REBUILD_AFTER_MS: u64 = 5_000;

impl Inner {
    fn conn(&self) -> ClusterConnection {
        self.conn.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn note_outage(&self) {
        self.trouble.last_outage_ms.store(self.subs.now_ms() + 1, Ordering::Release);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.probe_task.abort();
    }
}

impl Bus {
    /// Connects to the cluster and subscribes (sharded Pub/Sub, `SSUBSCRIBE`) to this node's
    /// channel and the broadcast channel; every message published to either arrives on the
    /// receiver. Survives failover and reconnects by itself (re-subscribes); messages published
    /// while a shard is down may be lost (they are hints).
    pub async fn connect(cfg: BusConfig) -> Result<(Bus, mpsc::Receiver<Bytes>), BusError> {
        validate(&cfg)?;
        let keys = Keys::new(&cfg.namespace);
        let channels = Channels {
            node: keys.node_channel(cfg.node_id),
            node_probe: keys.node_probe_channel(cfg.node_id),
            broadcast: keys.broadcast_channel(),
            broadcast_probe: keys.broadcast_probe_channel(cfg.node_id),
        };
        let epoch = Instant::now();
        let subs = Arc::new(SubState::new(epoch));
        let (tx, rx) = mpsc::channel(cfg.inbox_len_max);
        let sink = PushSink { channels: channels.clone(), tx, state: subs.clone() };
        let timeout = Duration::from_millis(cfg.command_timeout_ms);
        let mut builder = ClusterClientBuilder::new(cfg.urls.clone());
        if let Some(ca) = &cfg.ca_pem {
            builder = builder.certs(redis::TlsCertificates { client_tls: None, root_cert: Some(ca.clone()) });
        }
        let client = builder
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(move |info| -> Result<(), std::convert::Infallible> {
                sink.accept(info);
                Ok(())
            })
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(2)
            .min_retry_wait(10)
            .max_retry_wait(100)
            .build()
            .map_err(|e| BusError::Config(e.to_string()))?;
        let connect_timeout = Duration::from_millis(cfg.connect_timeout_ms);
        let conn = tokio::time::timeout(connect_timeout, async {
            let mut conn = client.get_async_connection().await?;
            conn.ssubscribe(&channels.of(Pair::Node)).await?;
            conn.ssubscribe(&channels.of(Pair::Broadcast)).await?;
            Ok::<_, RedisError>(conn)
        })
        .await
        .map_err(|_| BusError::Timeout)?
        .map_err(|e| BusError::Unavailable(e.to_string()))?;
        subs.touch(Pair::Node);
        subs.touch(Pair::Broadcast);

        let probe_interval = Duration::from_millis(cfg.probe_interval_ms);
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let probe_task = tokio::spawn(probe_loop(weak.clone(), subs.clone(), probe_interval)).abort_handle();
            Inner {
                conn: RwLock::new(conn),
                client,
                connect_timeout,
                trouble: Trouble::default(),
                keys,
                node_id: cfg.node_id,
                node_value: cfg.node_id.to_string(),
                channels,
                timeout,
                breaker: Breaker::new(cfg.breaker_failures_max, cfg.breaker_open_ms),
                subs,
                probe_interval,
                probe_task,
            }
        });
        Ok((Bus { inner }, rx))
    }

    /// This node's id, as given in the configuration.
    pub fn node_id(&self) -> u16 {
        self.inner.node_id
    }

    /// Publishes `msg` to node `node`'s channel (`SPUBLISH`); a hint, lost if that node is not
    /// subscribed right now.
    pub async fn publish_to_node(&self, node: u16, msg: Bytes) -> Result<(), BusError> {
        let channel = self.inner.keys.node_channel(node);
        self.spublish(&channel, &msg).await
    }

    /// Publishes `msg` to every node, this one included (one sharded channel all subscribe to).
    pub async fn broadcast(&self, msg: Bytes) -> Result<(), BusError> {
        self.spublish(&self.inner.channels.broadcast, &msg).await
    }

    /// Claims `devices` for this node for `ttl_ms` (`SET … PX … GET`) and returns each one's
    /// previous owner, so the caller can tell that node to drop its session.
    pub async fn claim_devices(&self, devices: &[DeviceAddr], ttl_ms: u64) -> Result<Vec<Option<u16>>, BusError> {
        let mut owners = Vec::with_capacity(devices.len());
        for chunk in devices.chunks(BATCH_MAX) {
            let keys: Vec<String> = chunk.iter().map(|d| self.inner.keys.session(*d)).collect();
            let previous: Vec<Option<String>> = self
                .per_slot(&keys, |pipe, key| {
                    pipe.cmd("SET").arg(key).arg(&self.inner.node_value).arg("PX").arg(ttl_ms).arg("GET");
                })
                .await?;
            owners.extend(previous.iter().map(|v| parse_node(v.as_deref())));
        }
        Ok(owners)
    }

    /// Extends this node's claim on `devices` by `ttl_ms`, re-creating entries a failover lost;
    /// entries another node claimed since are left alone. Pipelined per slot, [`BATCH_MAX`] keys a
    /// round trip.
    pub async fn refresh_devices(&self, devices: &[DeviceAddr], ttl_ms: u64) -> Result<(), BusError> {
        for chunk in devices.chunks(BATCH_MAX) {
            let keys: Vec<String> = chunk.iter().map(|d| self.inner.keys.session(*d)).collect();
            let _: Vec<i64> = self
                .per_slot(&keys, |pipe, key| {
                    pipe.cmd("EVAL").arg(scripts::REFRESH).arg(1).arg(key).arg(&self.inner.node_value).arg(ttl_ms);
                })
                .await?;
        }
        Ok(())
    }

    /// Removes each of `devices`' entries only if it still names this node (atomic
    /// compare-and-delete), so a session closing here never erases a newer claim by another
    /// node. Pipelined per slot, [`BATCH_MAX`] keys a round trip.
    pub async fn release_devices(&self, devices: &[DeviceAddr]) -> Result<(), BusError> {
        for chunk in devices.chunks(BATCH_MAX) {
            let keys: Vec<String> = chunk.iter().map(|d| self.inner.keys.session(*d)).collect();
            let _: Vec<i64> = self
                .per_slot(&keys, |pipe, key| {
                    pipe.cmd("EVAL").arg(scripts::RELEASE).arg(1).arg(key).arg(&self.inner.node_value);
                })
                .await?;
        }
        Ok(())
    }

    /// The node each of `devices` is connected to, if any (pipelined per slot).
    pub async fn lookup_devices(&self, devices: &[DeviceAddr]) -> Result<Vec<Option<u16>>, BusError> {
        let keys: Vec<String> = devices.iter().map(|d| self.inner.keys.session(*d)).collect();
        let values = self.get_each(&keys).await?;
        Ok(values.iter().map(|v| parse_node(v.as_deref().map(|b| std::str::from_utf8(b).unwrap_or("")))).collect())
    }

    /// Sets soft state `key` (under the namespace) to `value` for `ttl_ms`.
    pub async fn set_px(&self, key: &str, value: Bytes, ttl_ms: u64) -> Result<(), BusError> {
        let key = self.inner.keys.kv(key);
        let mut conn = self.inner.conn();
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(value.as_ref()).arg("PX").arg(ttl_ms);
        let _: () = self.run(async move { cmd.query_async(&mut conn).await }).await?;
        Ok(())
    }

    /// Soft state `key`, if present.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, BusError> {
        self.single("GET", &self.inner.keys.kv(key)).await
    }

    /// Soft state for many keys in any slots, in order.
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>, BusError> {
        let keys: Vec<String> = keys.iter().map(|k| self.inner.keys.kv(k)).collect();
        Ok(self.get_each(&keys).await?.into_iter().map(|v| v.map(Bytes::from)).collect())
    }

    /// Reads and deletes `key` in one step (`GETDEL`): one-time codes can be used only once.
    pub async fn take(&self, key: &str) -> Result<Option<Bytes>, BusError> {
        self.single("GETDEL", &self.inner.keys.kv(key)).await
    }

    /// Deletes soft state `key`.
    pub async fn del(&self, key: &str) -> Result<(), BusError> {
        let key = self.inner.keys.kv(key);
        let mut conn = self.inner.conn();
        let _: i64 = self.run(async move { redis::cmd("DEL").arg(&key).query_async(&mut conn).await }).await?;
        Ok(())
    }

    /// Takes one from the rate limit `key` allowing `per_window` takes per `window_ms` (GCRA in
    /// Lua, atomic, on Redis's clock so every node shares it): `Ok(None)` = allowed,
    /// `Ok(Some(retry_after_ms))` = refused.
    pub async fn rate_take(&self, key: &str, per_window: u32, window_ms: u64) -> Result<Option<u64>, BusError> {
        if per_window == 0 || window_ms == 0 {
            return Err(BusError::Config("rate_take needs per_window > 0 and window_ms > 0".into()));
        }
        Ok(self.rate_lease(key, per_window, window_ms, 1).await?.err())
    }

    /// Takes up to `want` at once from the same bucket as [`Bus::rate_take`] (a node's lease of
    /// a high-rate shared limit, so not every take is a round trip): `Ok(Ok(granted))` with
    /// `1 <= granted <= want`, or `Ok(Err(retry_after_ms))` when the bucket is empty.
    pub async fn rate_lease(
        &self,
        key: &str,
        per_window: u32,
        window_ms: u64,
        want: u32,
    ) -> Result<Result<u32, u64>, BusError> {
        if per_window == 0 || window_ms == 0 || want == 0 {
            return Err(BusError::Config("rate_lease needs per_window, window_ms and want > 0".into()));
        }
        let key = self.inner.keys.rate(key);
        let mut conn = self.inner.conn();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(scripts::RATE_LEASE).arg(1).arg(&key).arg(per_window).arg(window_ms).arg(want);
        let (granted, wait_ms): (i64, i64) = self.run(async move { cmd.query_async(&mut conn).await }).await?;
        Ok(match u32::try_from(granted) {
            Ok(g) if g > 0 => Ok(g.min(want)),
            _ => Err(u64::try_from(wait_ms).unwrap_or(1).max(1)),
        })
    }

    /// Adds `n` to the shared counter `key` (under the namespace) and returns its new total; a
    /// counter created by this call expires after `ttl_ms` (the abuse rules' fixed windows).
    pub async fn count_add(&self, key: &str, n: u64, ttl_ms: u64) -> Result<u64, BusError> {
        let key = self.inner.keys.kv(key);
        let mut conn = self.inner.conn();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(scripts::COUNT_ADD).arg(1).arg(&key).arg(n).arg(ttl_ms.max(1));
        let total: i64 = self.run(async move { cmd.query_async(&mut conn).await }).await?;
        Ok(u64::try_from(total).unwrap_or(0))
    }

    /// Adds `member` to the shared set `key` unless it already has `cap` members, and returns
    /// how many it has and whether `member` was one of them before; a set created by this call
    /// expires after `ttl_ms`.
    pub async fn set_add_capped(&self, key: &str, member: u64, cap: u32, ttl_ms: u64) -> Result<(u64, bool), BusError> {
        let key = self.inner.keys.kv(key);
        let mut conn = self.inner.conn();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(scripts::SET_ADD_CAPPED).arg(1).arg(&key).arg(member).arg(cap).arg(ttl_ms.max(1));
        let (n, was_member): (i64, i64) = self.run(async move { cmd.query_async(&mut conn).await }).await?;
        Ok((u64::try_from(n).unwrap_or(0), was_member == 1))
    }

    /// Whether the bus works right now: the circuit is closed and both subscriptions proved
    /// themselves recently. When false, hints may be lost: callers check inboxes instead.
    pub fn is_healthy(&self) -> bool {
        let stale_ms = self.stale_after_ms();
        let subs = &self.inner.subs;
        self.inner.breaker.is_closed()
            && subs.silent_ms(Pair::Node) <= stale_ms
            && subs.silent_ms(Pair::Broadcast) <= stale_ms
    }

    /// Messages dropped because the receiver was full (since connect).
    pub fn dropped_messages(&self) -> u64 {
        self.inner.subs.dropped.load(Ordering::Relaxed)
    }

    fn stale_after_ms(&self) -> u64 {
        u64::try_from(self.inner.probe_interval.as_millis()).unwrap_or(u64::MAX).saturating_mul(3)
    }

    async fn spublish(&self, channel: &str, msg: &[u8]) -> Result<(), BusError> {
        let mut conn = self.inner.conn();
        let mut cmd = redis::cmd("SPUBLISH");
        cmd.arg(channel).arg(msg);
        let _: i64 = self.run(async move { cmd.query_async(&mut conn).await }).await?;
        Ok(())
    }

    async fn single(&self, command: &str, key: &str) -> Result<Option<Bytes>, BusError> {
        let mut conn = self.inner.conn();
        let mut cmd = redis::cmd(command);
        cmd.arg(key);
        let value: Option<Vec<u8>> = self.run(async move { cmd.query_async(&mut conn).await }).await?;
        Ok(value.map(Bytes::from))
    }

    /// `GET` of every key: one pipeline per slot, in rounds of [`BATCH_MAX`] keys. Not a `MGET`
    /// split per slot by the client: after failovers that failed here with an unexpected reply
    /// type, where per-slot pipelines (the path claims take too) kept working.
    async fn get_each(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, BusError> {
        let mut values = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_MAX) {
            values.extend(
                self.per_slot(chunk, |pipe, key| {
                    pipe.cmd("GET").arg(key);
                })
                .await?,
            );
        }
        Ok(values)
    }

    /// One command per key (built by `add`), as one pipeline per slot, all slots concurrently
    /// under one deadline; the replies come back in the order of `keys`.
    async fn per_slot<T>(&self, keys: &[String], add: impl Fn(&mut Pipeline, &str)) -> Result<Vec<T>, BusError>
    where
        T: FromRedisValue + Send + 'static,
    {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let groups = group_by_slot(keys);
        let calls = groups.iter().map(|idxs| {
            let mut pipe = redis::pipe();
            for &idx in idxs {
                add(&mut pipe, &keys[idx]);
            }
            let mut conn = self.inner.conn();
            async move { pipe.query_async::<Vec<T>>(&mut conn).await }
        });
        let replies = self.run(try_join_all(calls)).await?;
        let mut slots: Vec<Option<T>> = std::iter::repeat_with(|| None).take(keys.len()).collect();
        for (idxs, values) in groups.iter().zip(replies) {
            if values.len() != idxs.len() {
                return Err(BusError::Command(format!("pipeline of {} returned {}", idxs.len(), values.len())));
            }
            for (&idx, value) in idxs.iter().zip(values) {
                slots[idx] = Some(value);
            }
        }
        slots.into_iter().map(|v| v.ok_or_else(|| BusError::Command("pipeline reply missing".into()))).collect()
    }

    /// Runs one call under the deadline and the circuit breaker.
    async fn run<T>(&self, call: impl Future<Output = Result<T, RedisError>>) -> Result<T, BusError> {
        let inner = &self.inner;
        let Some(permit) = inner.breaker.admit(inner.subs.now_ms()) else {
            inner.note_outage();
            return Err(BusError::CircuitOpen);
        };
        match tokio::time::timeout(inner.timeout, call).await {
            Err(_) => {
                permit.failed(inner.subs.now_ms());
                inner.note_outage();
                Err(BusError::Timeout)
            }
            Ok(Err(e)) if is_outage(&e) => {
                permit.failed(inner.subs.now_ms());
                inner.note_outage();
                Err(BusError::Unavailable(e.to_string()))
            }
            Ok(Err(e)) => {
                permit.succeeded();
                Err(BusError::Command(e.to_string()))
            }
            Ok(Ok(v)) => {
                permit.succeeded();
                Ok(v)
            }
        }
    }

    /// Publishes this node's probes and subscribes again to any pair whose probes stopped coming
    /// back. Probes go through [`Bus::run`], so an idle node still notices a dead Redis (the circuit
    /// opens, `is_healthy` turns false) and an open circuit gets its probe call.
    async fn probe_once(&self) {
        let stale_ms = self.stale_after_ms();
        for pair in [Pair::Node, Pair::Broadcast] {
            let [channel, probe] = self.inner.channels.of(pair);
            if self.spublish(probe, b"p").await.is_err() {
                continue;
            }
            if self.inner.subs.silent_ms(pair) <= stale_ms {
                continue;
            }
            let mut conn = self.inner.conn();
            let channels = [channel.to_owned(), probe.to_owned()];
            match self.run(async move { conn.ssubscribe(&channels).await }).await {
                Ok(()) => {
                    tracing::info!(node = self.inner.node_id, ?pair, "bus subscription was silent; subscribed again");
                    self.inner.subs.touch(pair);
                }
                Err(e) => tracing::debug!(node = self.inner.node_id, ?pair, error = %e, "bus resubscribe failed"),
            }
        }
    }

    /// Counts probe intervals that saw an outage (since `since_ms`, the previous tick) and, after
    /// [`REBUILD_AFTER_MS`] of them in a row, replaces the connection (at most once per that
    /// period). Harmless when Redis is simply down: the attempt fails within `connect_timeout`,
    /// off the callers' path.
    async fn rebuild_if_stuck(&self, since_ms: u64) {
        let trouble = &self.inner.trouble;
        let now = self.inner.subs.now_ms();
        if trouble.last_outage_ms.load(Ordering::Acquire) > since_ms {
            trouble.streak.fetch_add(1, Ordering::AcqRel);
        } else {
            trouble.streak.store(0, Ordering::Release);
            return;
        }
        let interval_ms = u64::try_from(self.inner.probe_interval.as_millis()).unwrap_or(u64::MAX).max(1);
        let stuck_for_ms = trouble.streak.load(Ordering::Acquire).saturating_mul(interval_ms);
        let last = trouble.last_rebuild_ms.load(Ordering::Acquire);
        if stuck_for_ms < REBUILD_AFTER_MS || (last != 0 && now.saturating_sub(last) < REBUILD_AFTER_MS) {
            return;
        }
        trouble.last_rebuild_ms.store(now.max(1), Ordering::Release);
        match self.reconnect().await {
            Ok(()) => {
                tracing::warn!(node = self.inner.node_id, "bus calls kept failing; replaced the Redis connection")
            }
            Err(e) => tracing::debug!(node = self.inner.node_id, error = %e, "bus reconnect failed"),
        }
    }

    /// Replaces the cluster connection with a new, subscribed one; in-flight calls finish on the
    /// old one, which closes when they drop it. The bus does this by itself when calls keep
    /// failing for [`REBUILD_AFTER_MS`] (a client stuck on a stale topology); public for operators
    /// and tests.
    pub async fn reconnect(&self) -> Result<(), BusError> {
        let inner = &self.inner;
        let fresh = tokio::time::timeout(inner.connect_timeout, async {
            let mut conn = inner.client.get_async_connection().await?;
            conn.ssubscribe(&inner.channels.of(Pair::Node)).await?;
            conn.ssubscribe(&inner.channels.of(Pair::Broadcast)).await?;
            Ok::<_, RedisError>(conn)
        })
        .await
        .map_err(|_| BusError::Timeout)?
        .map_err(|e| BusError::Unavailable(e.to_string()))?;
        *inner.conn.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        inner.subs.touch(Pair::Node);
        inner.subs.touch(Pair::Broadcast);
        Ok(())
    }
}

/// Probes every `interval` (sooner when the connection reports a disconnect) until the bus is
/// dropped.
async fn probe_loop(weak: Weak<Inner>, subs: Arc<SubState>, interval: Duration) {
    let mut tick_ms = subs.now_ms();
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = subs.wake.notified() => tokio::time::sleep(Duration::from_millis(50)).await,
        }
        let Some(inner) = weak.upgrade() else { return };
        let bus = Bus { inner };
        bus.probe_once().await;
        bus.rebuild_if_stuck(tick_ms).await;
        tick_ms = bus.inner.subs.now_ms();
    }
}

/// Whether `e` means Redis is unreachable or not serving (counts against the circuit), as opposed
/// to Redis answering that this command is wrong.
fn is_outage(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(ServerErrorKind::MasterDown)
                | ErrorKind::Server(ServerErrorKind::BusyLoading)
                | ErrorKind::Server(ServerErrorKind::ReadOnly)
        )
}

/// A session entry's node id; entries that do not parse count as absent.
fn parse_node(value: Option<&str>) -> Option<u16> {
    value.and_then(|v| v.parse().ok())
}

fn validate(cfg: &BusConfig) -> Result<(), BusError> {
    let bad = |why: &str| Err(BusError::Config(why.to_owned()));
    if cfg.urls.is_empty() {
        return bad("no Redis URLs");
    }
    if cfg.namespace.is_empty() || cfg.namespace.contains(['{', '}']) {
        return bad("namespace must be non-empty and hold no braces");
    }
    if cfg.command_timeout_ms == 0 || cfg.connect_timeout_ms == 0 || cfg.probe_interval_ms == 0 {
        return bad("timeouts and the probe interval must be positive");
    }
    if cfg.inbox_len_max == 0 {
        return bad("inbox_len_max must be positive");
    }
    if cfg.ca_pem.is_some() && !cfg.urls.iter().all(|u| u.starts_with("rediss://")) {
        return bad("a CA is for TLS: the URLs must be rediss://");
    }
    Ok(())
}
