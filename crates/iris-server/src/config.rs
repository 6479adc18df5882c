//! Server configuration: one struct, loaded from a TOML file, then overridden by the caller
//! (environment and flags are applied by the binary), then validated.
//!
//! Every field has a default, so `iris serve` with no file works: data in `./iris-data`,
//! loopback ports. Units are the last word of each name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`Config`] (unknown keys are errors).
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: toml::de::Error,
    },
    /// A value is out of range or values contradict each other.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Everything `iris serve` can be told.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded store keeps its files.
    pub data_dir: PathBuf,
    /// Framed TCP listener (the native protocol).
    pub listen: SocketAddr,
    /// HTTP listener: auth API, WebSocket, metrics, health.
    pub http: SocketAddr,
    /// TCP address clients are told to connect to (`GET /v1/info`); defaults to `listen`.
    pub advertised_tcp_addr: Option<String>,
    /// Number of this node (0–1023); part of every server message id.
    pub node_id: u16,
    /// Dev mode: every one-time code is `000000`; refuses to bind non-loopback addresses.
    pub dev: bool,
    /// TLS on the TCP listener, when set.
    pub tls: Option<TlsConfig>,
    /// Protocol limits announced to clients and enforced.
    pub limits: LimitsConfig,
    /// Per-connection behaviour.
    pub session: SessionConfig,
    /// Tokens and one-time codes.
    pub auth: AuthConfig,
    /// Token-bucket rate limits.
    pub rate_limits: RateLimitConfig,
    /// Embedded store tuning.
    pub store: StoreConfig,
    /// How long undelivered data is kept.
    pub retention: RetentionConfig,
    /// Presence pushes.
    pub presence: PresenceConfig,
    /// Cluster mode: shared PostgreSQL store and Redis Cluster bus.
    pub cluster: ClusterConfig,
    /// The end-to-end key directory: pool bounds and its rate limits.
    pub keys: KeysConfig,
    /// Media uploads and downloads (HTTP media API, blob store, limits).
    pub media: MediaConfig,
    /// Account deletion (`POST /v1/account/delete`).
    pub account: AccountConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("iris-data"),
            listen: "127.0.0.1:7700".parse().expect("valid literal"),
            http: "127.0.0.1:7701".parse().expect("valid literal"),
            advertised_tcp_addr: None,
            node_id: 0,
            dev: false,
            tls: None,
            limits: LimitsConfig::default(),
            session: SessionConfig::default(),
            auth: AuthConfig::default(),
            rate_limits: RateLimitConfig::default(),
            store: StoreConfig::default(),
            retention: RetentionConfig::default(),
            presence: PresenceConfig::default(),
            cluster: ClusterConfig::default(),
            keys: KeysConfig::default(),
            account: AccountConfig::default(),
            media: MediaConfig::default(),
        }
    }
}

/// Media (see ARCHITECTURE.md "Media"): where blobs live, how large each kind may be, how long
/// things are kept. Blobs go to the local filesystem under `data_dir/media` unless
/// `s3_bucket` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Local blob directory; default `data_dir/media`. Ignored when `s3_bucket` is set.
    pub dir: Option<PathBuf>,
    /// S3-compatible bucket for blobs (cluster mode: every node must see the same blobs).
    pub s3_bucket: Option<String>,
    /// S3 endpoint URL (`http://127.0.0.1:3900` for a Garage node); empty: AWS.
    pub s3_endpoint: String,
    /// S3 region (Garage's default is `garage`).
    pub s3_region: String,
    /// S3 access key id.
    pub s3_access_key_id: String,
    /// S3 secret access key.
    pub s3_secret_access_key: String,
    /// Where partial uploads are staged on this node; default `data_dir/media-uploads`.
    pub staging_dir: Option<PathBuf>,
    /// Largest image.
    pub image_bytes_max: u64,
    /// Largest voice note.
    pub voice_bytes_max: u64,
    /// Largest video.
    pub video_bytes_max: u64,
    /// Largest document.
    pub document_bytes_max: u64,
    /// Largest client-made thumbnail.
    pub thumbnail_bytes_max: u64,
    /// Bytes one account may upload per hour (declared sizes, counted when an upload starts).
    pub quota_per_account_per_hour_mb: u64,
    /// Upload bodies received at once on this node; more are refused with OVERLOADED.
    pub uploads_in_progress_max: usize,
    /// How long a signed download URL works.
    pub url_ttl_s: u64,
    /// An upload not finished within this is deleted with its partial bytes; a finished one is
    /// remembered this long for its idempotency key.
    pub upload_ttl_hours: u64,
    /// A blob no message references is deleted once it was not uploaded again for this long
    /// (references themselves expire with the inbox TTL).
    pub gc_grace_hours: u64,
    /// Plaintext images: widest and tallest image decoded, in pixels.
    pub image_dimension_px_max: u32,
    /// Plaintext images: most memory one decode may allocate (decompression bombs stop here).
    pub image_decode_bytes_max: u64,
    /// Plaintext images: longest one decode, re-encode and thumbnail may take.
    pub image_decode_timeout_ms: u64,
    /// Longest side of a server-made thumbnail.
    pub thumbnail_dimension_px_max: u32,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            dir: None,
            s3_bucket: None,
            s3_endpoint: String::new(),
            s3_region: "garage".into(),
            s3_access_key_id: String::new(),
            s3_secret_access_key: String::new(),
            staging_dir: None,
            image_bytes_max: 16 << 20,
            voice_bytes_max: 16 << 20,
            video_bytes_max: 100 << 20,
            document_bytes_max: 2 << 30,
            thumbnail_bytes_max: 256 << 10,
            quota_per_account_per_hour_mb: 4096,
            uploads_in_progress_max: 256,
            url_ttl_s: 900,
            upload_ttl_hours: 24,
            gc_grace_hours: 24,
            image_dimension_px_max: 10_000,
            image_decode_bytes_max: 192 << 20,
            image_decode_timeout_ms: 5_000,
            thumbnail_dimension_px_max: 320,
        }
    }
}

/// Cluster mode (see ARCHITECTURE.md "Cluster mode"): several nodes share a sharded PostgreSQL
/// store and talk over Redis Cluster. Empty lists: a single node on the embedded store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// PostgreSQL URLs, one per shard (`postgres://user@host:port/db`). The order is part of the
    /// data layout: every node must list the same shards in the same order. Empty: embedded store.
    pub store_urls: Vec<String>,
    /// Redis Cluster seed URLs (`redis://127.0.0.1:7000`). Empty: no bus; with a shared store,
    /// messages between nodes then arrive through the inbox check only.
    pub redis_urls: Vec<String>,
    /// Prefix of every Redis key and channel, so several clusters can share one Redis.
    pub namespace: String,
    /// How long a device's session registration lives without a refresh (a dead node's devices
    /// are forgotten after this).
    pub registry_ttl_ms: u64,
    /// How often a node checks the inboxes of its connected devices for entries whose hint was
    /// lost.
    pub inbox_poll_interval_ms: u64,
    /// Timeout of one Redis command.
    pub redis_timeout_ms: u64,
    /// PostgreSQL connections per shard for reads and low-rate writes (the committer has its own).
    pub store_pool_size: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            store_urls: Vec::new(),
            redis_urls: Vec::new(),
            namespace: "iris".into(),
            registry_ttl_ms: 30_000,
            inbox_poll_interval_ms: 1_000,
            redis_timeout_ms: 250,
            store_pool_size: 8,
        }
    }
}

impl ClusterConfig {
    /// Whether the store is shared with other nodes (PostgreSQL).
    pub fn shared_store(&self) -> bool {
        !self.store_urls.is_empty()
    }
}

/// Certificate and key for TLS on the TCP listener (PEM files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_path: PathBuf,
    /// PEM private key.
    pub key_path: PathBuf,
}

/// Protocol limits (DESIGN.md defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest frame in bytes.
    pub frame_bytes_max: u32,
    /// Largest message payload in bytes.
    pub payload_bytes_max: u32,
    /// Most entries per `Delivery` (and per offline-sync batch).
    pub batch_deliveries_max: u32,
    /// Most operations per client frame.
    pub ops_per_frame_max: u32,
    /// Devices per account (primary + linked).
    pub devices_per_account_max: u32,
    /// Members per group.
    pub group_members_max: u32,
    /// Sends one connection may have awaiting commit before the server stops reading it.
    pub inflight_sends_max: u32,
    /// Largest HTTP request body in bytes; larger is `413 BODY_TOO_LARGE`. The API's bodies are
    /// a few hundred bytes (media, when it comes, gets its own bound).
    pub http_body_bytes_max: usize,
    /// Most bytes of HTTP request headers (names, values and their separators); more is
    /// `431 HEADERS_TOO_LARGE`. At most 256 KiB: past ~400 KiB hyper refuses a head by itself,
    /// with a bare 431.
    pub http_header_bytes_max: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = iris_proto::Limits::default();
        Self {
            frame_bytes_max: l.max_frame_bytes,
            payload_bytes_max: l.max_payload_bytes,
            batch_deliveries_max: l.max_batch_deliveries,
            ops_per_frame_max: l.max_ops_per_frame,
            devices_per_account_max: l.max_devices_per_account,
            group_members_max: l.max_group_members,
            inflight_sends_max: l.max_inflight_sends,
            http_body_bytes_max: 64 * 1024,
            http_header_bytes_max: 16 * 1024,
        }
    }
}

impl LimitsConfig {
    /// The protocol view of these limits.
    pub fn to_proto(&self) -> iris_proto::Limits {
        iris_proto::Limits {
            max_frame_bytes: self.frame_bytes_max,
            max_payload_bytes: self.payload_bytes_max,
            max_batch_deliveries: self.batch_deliveries_max,
            max_ops_per_frame: self.ops_per_frame_max,
            max_devices_per_account: self.devices_per_account_max,
            max_group_members: self.group_members_max,
            max_inflight_sends: self.inflight_sends_max,
            max_client_msg_id_bytes: iris_proto::Limits::default().max_client_msg_id_bytes,
        }
    }
}

/// Per-connection timing and bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Announced heartbeat interval; a connection silent for twice this is closed.
    pub heartbeat_interval_ms: u32,
    /// Time allowed from connect to a valid `Hello` (slowloris guard).
    pub handshake_timeout_ms: u64,
    /// Deliveries sent but not yet acked, per device; more flow as acks arrive.
    pub unacked_window: u32,
    /// Hints queued for one session; past this the session catches up from the inbox.
    pub signal_queue_len_max: usize,
    /// A write to a client that reads nothing fails after this, and the connection is closed.
    pub write_timeout_ms: u64,
    /// Most simultaneous connections this node accepts; past it, new ones get `GoAway`.
    pub connections_max: usize,
    /// A frame whose first bytes arrived must be complete within this (slowloris guard).
    pub frame_timeout_ms: u64,
    /// Resident memory above which new connections get `GoAway`; default 80% of RAM.
    pub memory_budget_bytes: Option<u64>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 30_000,
            handshake_timeout_ms: 10_000,
            unacked_window: 500,
            signal_queue_len_max: 1024,
            write_timeout_ms: 30_000,
            connections_max: 100_000,
            frame_timeout_ms: 15_000,
            memory_budget_bytes: None,
        }
    }
}

/// Tokens and one-time codes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Lifetime of an access token.
    pub access_token_ttl_s: u64,
    /// Lifetime of a refresh token.
    pub refresh_token_ttl_s: u64,
    /// Lifetime of a one-time code.
    pub code_ttl_s: u64,
    /// Wrong guesses allowed per code.
    pub code_attempts_max: u32,
    /// Pending codes kept at once (bounds memory under a flood of requests).
    pub pending_codes_max: usize,
    /// Outside dev mode, write one-time codes to the log anyway: for one operator running a
    /// private server with no SMS gateway, who reads each code from the log. Whoever can read
    /// the log can then take over any account, so it is off by default and warned about at start.
    pub log_codes: bool,
    /// Hex key (32 bytes) that signs access tokens. When absent, one is generated and kept in
    /// `data_dir/token.key`, so tokens survive restarts. Cluster nodes must share one.
    pub token_key_hex: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            access_token_ttl_s: 3600,
            refresh_token_ttl_s: 90 * 24 * 3600,
            code_ttl_s: 300,
            code_attempts_max: 5,
            pending_codes_max: 100_000,
            log_codes: false,
            token_key_hex: None,
        }
    }
}

/// Token-bucket limits: `*_per_*` is the sustained rate, bursts allow that many at once.
/// 0 disables a limit (benchmarks and tests on loopback do).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// One-time code requests per phone number per hour (seed 001: 3).
    pub code_requests_per_phone_per_hour: u32,
    /// One-time code requests per client IP per hour.
    pub code_requests_per_ip_per_hour: u32,
    /// Code verification attempts per client IP per minute (each code also allows only
    /// `auth.code_attempts_max` wrong guesses).
    pub verify_attempts_per_ip_per_minute: u32,
    /// New accounts (first verified login of a phone) per client IP per day (seed 001: 10).
    /// Linking a device to an existing account does not count.
    pub registrations_per_ip_per_day: u32,
    /// Messages (sends) per account per minute (seed 001: 100/min).
    pub sends_per_account_per_minute: u32,
    /// New connections per client IP per minute (generous: carrier NAT puts many behind one IP).
    pub connections_per_ip_per_minute: u32,
    /// Connections open at once from one client IP.
    pub concurrent_connections_per_ip: u32,
    /// New connections per second on the whole node; past it, `GoAway` with jitter (storms).
    pub accepts_per_second: u32,
    /// Groups one account may create per hour (seed 001: 10).
    pub group_creations_per_account_per_hour: u32,
    /// Members one account may add to groups per minute (bursts of adds, invites included).
    pub group_member_adds_per_account_per_minute: u32,
    /// Typing indicators one account may send per second (burst; excess is RATE_LIMITED).
    pub typing_per_account_per_second: u32,
    /// Contact discovery requests (of up to 1,000 numbers each) per account per day.
    pub discover_requests_per_account_per_day: u32,
    /// Invite-link joins (right or wrong token) one account may try per hour: tokens are 128
    /// bits, so guessing never succeeds, but each guess costs a store lookup.
    pub group_join_attempts_per_account_per_hour: u32,
    /// Media uploads one account may start per minute (the byte quota is
    /// `media.quota_per_account_per_hour_mb`).
    pub media_uploads_per_account_per_minute: u32,
}

impl RateLimitConfig {
    /// Every limit off: for benchmarks and tests that drive many clients from loopback.
    pub fn unlimited() -> Self {
        Self {
            code_requests_per_phone_per_hour: 0,
            code_requests_per_ip_per_hour: 0,
            verify_attempts_per_ip_per_minute: 0,
            registrations_per_ip_per_day: 0,
            sends_per_account_per_minute: 0,
            connections_per_ip_per_minute: 0,
            concurrent_connections_per_ip: 0,
            accepts_per_second: 0,
            group_creations_per_account_per_hour: 0,
            group_member_adds_per_account_per_minute: 0,
            typing_per_account_per_second: 0,
            discover_requests_per_account_per_day: 0,
            group_join_attempts_per_account_per_hour: 0,
            media_uploads_per_account_per_minute: 0,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            code_requests_per_phone_per_hour: 3,
            code_requests_per_ip_per_hour: 60,
            verify_attempts_per_ip_per_minute: 30,
            registrations_per_ip_per_day: 10,
            sends_per_account_per_minute: 100,
            connections_per_ip_per_minute: 600,
            concurrent_connections_per_ip: 1000,
            accepts_per_second: 10_000,
            group_creations_per_account_per_hour: 10,
            group_member_adds_per_account_per_minute: 100,
            typing_per_account_per_second: 10,
            discover_requests_per_account_per_day: 100,
            group_join_attempts_per_account_per_hour: 60,
            media_uploads_per_account_per_minute: 60,
        }
    }
}

/// Embedded store tuning (see `iris_store::embedded::FjallConfig`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Size at which a memtable is flushed to disk.
    pub max_memtable_bytes: u64,
    /// Most appends committed with one fsync.
    pub batch_ops_max: usize,
    /// How long the committer waits to fill a batch. 0: it takes whatever queued during the
    /// previous commit (a lone message pays one fsync; under load batches grow by themselves).
    pub batch_wait_us: u64,
    /// Appends waiting for the committer; producers wait when it is full.
    pub queue_len_max: usize,
    /// How long a producer waits for queue space before the send fails with OVERLOADED.
    pub enqueue_timeout_ms: u64,
    /// Embedded: size at which an inbox log segment is closed and the next started.
    pub log_segment_bytes_max: u64,
    /// Embedded: log segments kept before the oldest are retired to the LSM (bounds recovery).
    pub log_segments_live_max: u64,
    /// Embedded: bytes of undelivered entries kept in memory; past it the largest backlogs
    /// move to disk.
    pub log_hot_bytes_max: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_memtable_bytes: 16 * 1024 * 1024,
            batch_ops_max: 1024,
            batch_wait_us: 0,
            queue_len_max: 16_384,
            enqueue_timeout_ms: 2000,
            log_segment_bytes_max: 64 << 20,
            log_segments_live_max: 4,
            log_hot_bytes_max: 256 << 20,
        }
    }
}

/// Retention of undelivered data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Undelivered inbox entries older than this are deleted.
    pub inbox_ttl_days: u64,
    /// Send dedup records are kept this long (at least 24 h).
    pub dedup_ttl_hours: u64,
    /// How often expiry runs.
    pub sweep_interval_s: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { inbox_ttl_days: 30, dedup_ttl_hours: 48, sweep_interval_s: 3600 }
    }
}

/// Presence (soft state, see `presence.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// Pushes to one subscriber are coalesced to at most one batch per this interval.
    pub push_interval_ms: u64,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self { push_interval_ms: 1000 }
    }
}

/// Account deletion (see ARCHITECTURE.md "Account deletion").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountConfig {
    /// Deletion codes one account may request per hour (RATE_LIMITED beyond; 0 turns the
    /// limit off): each one is a message to the phone, so it is bounded like login codes.
    pub deletion_codes_per_account_per_hour: u32,
}

impl Default for AccountConfig {
    fn default() -> Self {
        Self { deletion_codes_per_account_per_hour: 5 }
    }
}

/// The end-to-end key directory (see `keys.rs` and ARCHITECTURE.md "End-to-end encryption").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// One-time keys one device may keep in the directory (KEY_POOL_FULL beyond).
    pub one_time_keys_max: u32,
    /// One-time keys one upload may carry (INVALID_ARGUMENT beyond).
    pub upload_keys_max: u32,
    /// Below this many one-time keys left, the device gets a `KeysLow` inbox item (once per
    /// crossing).
    pub low_watermark: u32,
    /// Key claims (each of up to 32 accounts) one account may make per minute (0 turns it off).
    pub claims_per_account_per_minute: u32,
    /// Times one account's keys may be claimed per minute, by anyone: slows down the draining
    /// of its pool (0 turns it off).
    pub claims_per_target_per_minute: u32,
    /// Key queries (identity keys of up to 32 accounts) one account may make per minute (0
    /// turns it off): they list devices, so they are limited against enumeration.
    pub queries_per_account_per_minute: u32,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            one_time_keys_max: 200,
            upload_keys_max: 100,
            low_watermark: 10,
            claims_per_account_per_minute: 60,
            claims_per_target_per_minute: 60,
            queries_per_account_per_minute: 300,
        }
    }
}

impl Config {
    /// Reads a TOML file; missing keys take their defaults, unknown keys are errors.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_owned(), source })
    }

    /// Checks ranges and the dev-mode loopback rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.dev && !(self.listen.ip().is_loopback() && self.http.ip().is_loopback()) {
            return invalid("dev mode (fixed one-time code) only binds loopback addresses");
        }
        if self.node_id > 1023 {
            return invalid("node_id must be 0..=1023");
        }
        let l = &self.limits;
        if l.payload_bytes_max + 4096 > l.frame_bytes_max {
            return invalid("limits.frame_bytes_max must exceed payload_bytes_max by at least 4096");
        }
        if l.frame_bytes_max >= (1 << 31) {
            return invalid("limits.frame_bytes_max must be below 2 GiB");
        }
        if l.batch_deliveries_max == 0 || l.ops_per_frame_max == 0 || l.inflight_sends_max == 0 {
            return invalid("limits must be positive");
        }
        if !(1024..=256 * 1024).contains(&l.http_header_bytes_max) || l.http_body_bytes_max < 1024 {
            return invalid("limits.http_header_bytes_max must be 1 KiB..=256 KiB and http_body_bytes_max >= 1 KiB");
        }
        if !(2..=65_536).contains(&l.group_members_max) {
            return invalid("limits.group_members_max must be 2..=65536");
        }
        if !(1..=16).contains(&l.devices_per_account_max) {
            return invalid("limits.devices_per_account_max must be 1..=16");
        }
        let k = &self.keys;
        if k.upload_keys_max == 0 || k.upload_keys_max > k.one_time_keys_max || k.low_watermark > k.one_time_keys_max {
            return invalid(
                "keys: upload_keys_max must be 1..=one_time_keys_max and low_watermark <= one_time_keys_max",
            );
        }
        if self.session.heartbeat_interval_ms < 100 || self.session.unacked_window == 0 {
            return invalid("session.heartbeat_interval_ms must be >= 100 and unacked_window > 0");
        }
        if self.retention.dedup_ttl_hours < 24 {
            return invalid("retention.dedup_ttl_hours must be at least 24");
        }
        if self.auth.code_attempts_max == 0 {
            return invalid("auth.code_attempts_max must be positive");
        }
        let c = &self.cluster;
        if !c.redis_urls.is_empty() && !c.shared_store() {
            return invalid("cluster.redis_urls needs cluster.store_urls: nodes must share a PostgreSQL store");
        }
        if c.shared_store() && self.auth.token_key_hex.is_none() {
            return invalid("cluster mode needs auth.token_key_hex (IRIS_TOKEN_KEY), the same on every node");
        }
        if c.store_urls.iter().any(|u| !(u.starts_with("postgres://") || u.starts_with("postgresql://"))) {
            return invalid("cluster.store_urls must be postgres:// URLs");
        }
        if c.redis_urls.iter().any(|u| !u.starts_with("redis://")) {
            return invalid("cluster.redis_urls must be redis:// URLs");
        }
        if c.namespace.is_empty() || c.namespace.contains(['{', '}']) {
            return invalid("cluster.namespace must be non-empty and without braces");
        }
        let m = &self.media;
        if m.image_dimension_px_max == 0 || m.thumbnail_dimension_px_max == 0 || m.uploads_in_progress_max == 0 {
            return invalid("media dimensions and uploads_in_progress_max must be positive");
        }
        if m.s3_bucket.as_ref().is_some_and(|b| b.is_empty()) {
            return invalid("media.s3_bucket must not be empty when set");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default_and_unknown_keys_are_rejected() {
        let c: Config = toml::from_str("").unwrap();
        c.validate().unwrap();
        assert_eq!(c.listen.port(), 7700);
        assert!(toml::from_str::<Config>("listn = \"1.2.3.4:5\"").is_err());
        let c: Config = toml::from_str("[session]\nheartbeat_interval_ms = 500").unwrap();
        assert_eq!(c.session.heartbeat_interval_ms, 500);
    }

    #[test]
    fn dev_mode_refuses_public_addresses() {
        let c = Config { dev: true, http: "0.0.0.0:7701".parse().unwrap(), ..Config::default() };
        assert!(c.validate().is_err());
    }
}

#[cfg(test)]
mod example_file {
    /// The example config in the repository root parses and validates.
    #[test]
    fn example_config_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../iris.example.toml");
        super::Config::from_file(&path).unwrap().validate().unwrap();
    }
}
