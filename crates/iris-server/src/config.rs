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
    /// TLS on both listeners (framed TCP, and HTTP/WebSocket unless `tls.http = false`), when
    /// set. The certificate is read again on SIGHUP.
    pub tls: Option<TlsConfig>,
    /// Load balancers in front of this node: whose word about a client's address is believed.
    pub proxy: ProxyConfig,
    /// The HTTP SMS gateway that delivers one-time codes (unset: codes are only logged, in dev
    /// mode or with `auth.log_codes`).
    pub sms: Option<SmsConfig>,
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
    /// Disappearing messages: the expiry sweep.
    pub disappearing: DisappearingConfig,
    /// Presence pushes.
    pub presence: PresenceConfig,
    /// Cluster mode: shared PostgreSQL store and Redis Cluster bus.
    pub cluster: ClusterConfig,
    /// The end-to-end key directory: pool bounds and its rate limits.
    pub keys: KeysConfig,
    /// Media uploads and downloads (HTTP media API, blob store, limits).
    pub media: MediaConfig,
    /// Push notifications: wake-ups of devices without an open connection (`push/`).
    pub push: PushConfig,
    /// Device linking (the primary's approval) and the registration PIN.
    pub devices: DevicesConfig,
    /// Profiles: field bounds.
    pub profiles: ProfilesConfig,
    /// Voice/video call signaling: ring timeout, bounds, rate limit, TURN credentials.
    pub calls: CallsConfig,
    /// Account deletion (`POST /v1/account/delete`).
    pub account: AccountConfig,
    /// Abuse rules (seed 001 "Automated Ban Triggers", "User Reports"): thresholds and
    /// durations; the defaults are the seed's.
    pub abuse: AbuseConfig,
    /// The operators' admin API on a listener of its own (off unless `admin.listen` is set).
    pub admin: AdminConfig,
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
            proxy: ProxyConfig::default(),
            sms: None,
            limits: LimitsConfig::default(),
            session: SessionConfig::default(),
            auth: AuthConfig::default(),
            rate_limits: RateLimitConfig::default(),
            store: StoreConfig::default(),
            retention: RetentionConfig::default(),
            disappearing: DisappearingConfig::default(),
            presence: PresenceConfig::default(),
            cluster: ClusterConfig::default(),
            keys: KeysConfig::default(),
            account: AccountConfig::default(),
            abuse: AbuseConfig::default(),
            media: MediaConfig::default(),
            push: PushConfig::default(),
            devices: DevicesConfig::default(),
            profiles: ProfilesConfig::default(),
            calls: CallsConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

/// The operators' admin API (`admin/`, ARCHITECTURE.md "Operator tools"): account lookup,
/// device revocation and `/metrics`, on a listener of its own, never on the public HTTP port.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Where the admin listener binds (`127.0.0.1:7702`, or a private network's address); unset:
    /// no admin API at all.
    pub listen: Option<SocketAddr>,
    /// The bearer token every admin request must carry (at least 16 characters). Prefer
    /// `token_file` (or `IRIS_ADMIN_TOKEN`) to keep it out of the config file.
    pub token: Option<String>,
    /// A file holding the token (surrounding whitespace ignored), read at start.
    pub token_file: Option<PathBuf>,
    /// Keep serving `/metrics` on the public HTTP port although the admin listener serves it.
    /// Without an admin listener `/metrics` is always on the public port.
    pub metrics_on_public_port: bool,
}

/// The shortest admin token accepted (a guessable token would open every account's devices).
pub const ADMIN_TOKEN_CHARS_MIN: usize = 16;

impl AdminConfig {
    /// Whether the public HTTP port serves `/metrics`.
    pub fn metrics_on_public_port(&self) -> bool {
        self.listen.is_none() || self.metrics_on_public_port
    }

    /// The token: `token`, else the contents of `token_file` (trimmed).
    pub fn load_token(&self) -> Result<String, ConfigError> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), None) => t.trim().to_owned(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.clone(), source })?
                .trim()
                .to_owned(),
            _ => return Err(ConfigError::Invalid("admin.listen needs one of admin.token and admin.token_file".into())),
        };
        if token.chars().count() < ADMIN_TOKEN_CHARS_MIN {
            return Err(ConfigError::Invalid(format!(
                "admin token must be at least {ADMIN_TOKEN_CHARS_MIN} characters"
            )));
        }
        Ok(token)
    }

    fn validate(&self, dev: bool) -> Result<(), ConfigError> {
        let Some(listen) = self.listen else { return Ok(()) };
        if dev && !listen.ip().is_loopback() {
            return Err(ConfigError::Invalid("dev mode only binds loopback addresses (admin.listen too)".into()));
        }
        if self.token.is_some() == self.token_file.is_some() {
            return Err(ConfigError::Invalid(
                "admin.listen needs exactly one of admin.token and admin.token_file".into(),
            ));
        }
        if let Some(t) = &self.token {
            if t.trim().chars().count() < ADMIN_TOKEN_CHARS_MIN {
                return Err(ConfigError::Invalid(format!(
                    "admin.token must be at least {ADMIN_TOKEN_CHARS_MIN} characters"
                )));
            }
        }
        Ok(())
    }
}

/// Device linking and the registration PIN (ARCHITECTURE.md "Device linking and profiles").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevicesConfig {
    /// How long a link code waits for the primary's approval, and how long an approved link
    /// waits for the new device to collect its credentials (LINK_EXPIRED after, and the device
    /// is revoked); also the period of the devices' housekeeping (`auth/housekeeping.rs`).
    pub link_code_ttl_s: u64,
    /// Links one account may have waiting at once (LINK_LIMIT beyond).
    pub pending_links_max: u32,
    /// Wrong registration PINs in a row before the PIN locks (PIN_LOCKED).
    pub pin_attempts_max: u32,
    /// How long a locked PIN refuses attempts.
    pub pin_lockout_s: u64,
}

impl Default for DevicesConfig {
    fn default() -> Self {
        Self { link_code_ttl_s: 60, pending_links_max: 3, pin_attempts_max: 5, pin_lockout_s: 3600 }
    }
}

/// The abuse rules (see ARCHITECTURE.md "Abuse rules and reports"). Counted cluster-wide in
/// cluster mode (Redis), per node otherwise. A threshold of 0 turns its rule off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AbuseConfig {
    /// Messages (1:1 and group sends, forward copies) per account in one clock hour at which
    /// the account is suspended pending review. Seed: 1,000.
    pub messages_per_account_per_hour: u32,
    /// Distinct recipients that are not contacts, per account in one UTC day, at which sending
    /// to non-contacts is restricted. Seed: 50.
    pub new_recipients_per_day: u32,
    /// How long that restriction lasts. Seed: 7 days.
    pub sending_restriction_s: u64,
    /// Distinct chats one forwarded message may reach per day; forwarding it to more limits
    /// the account's forwarding. Seed: 20 ("more than 20 chats").
    pub forward_chats_per_message_per_day: u32,
    /// How long forwarding stays limited. Iris: 1 day.
    pub forwarding_limit_s: u64,
    /// Reports from distinct accounts within `report_window_s` that suspend the account
    /// pending review. Seed: 10.
    pub reports_to_suspend: u32,
    /// The window reports are counted in. Seed: 24 h.
    pub report_window_s: u64,
    /// Reports one account may file per day (REPORT_INVALID is not used for this: it is
    /// RATE_LIMITED), so reports cannot flood the store.
    pub reports_per_account_per_day: u32,
    /// Messages a report may disclose.
    pub report_messages_max: usize,
    /// Bytes of disclosed content per report, all messages together.
    pub report_bytes_max: usize,
    /// How long a node trusts its cached copy of an account's abuse state before reading the
    /// store again: a suspension made on another node takes effect here within this time.
    pub state_cache_ms: u64,
}

impl AbuseConfig {
    /// Every rule off (thresholds 0), the other values as the defaults: for load tests and
    /// benchmarks, whose generated accounts send thousands of messages to strangers.
    pub fn off() -> Self {
        Self {
            messages_per_account_per_hour: 0,
            new_recipients_per_day: 0,
            forward_chats_per_message_per_day: 0,
            reports_to_suspend: 0,
            reports_per_account_per_day: 0,
            ..Self::default()
        }
    }
}

impl Default for AbuseConfig {
    fn default() -> Self {
        Self {
            messages_per_account_per_hour: 1_000,
            new_recipients_per_day: 50,
            sending_restriction_s: 7 * 24 * 3600,
            forward_chats_per_message_per_day: 20,
            forwarding_limit_s: 24 * 3600,
            reports_to_suspend: 10,
            report_window_s: 24 * 3600,
            reports_per_account_per_day: 50,
            report_messages_max: 10,
            report_bytes_max: 64 * 1024,
            state_cache_ms: 1_000,
        }
    }
}

/// Profile field bounds (PROFILE_INVALID beyond).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfilesConfig {
    /// Display name, in characters.
    pub display_name_chars_max: usize,
    /// About text, in characters.
    pub about_chars_max: usize,
}

impl Default for ProfilesConfig {
    fn default() -> Self {
        Self { display_name_chars_max: 64, about_chars_max: 140 }
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
    /// PEM certificates to trust for an `https://` S3 endpoint instead of the system's roots (a
    /// private CA in front of a Garage or MinIO).
    pub s3_ca_file: Option<PathBuf>,
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
            s3_ca_file: None,
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
    /// TLS as libpq: `?sslmode=disable|prefer|require|verify-ca|verify-full` (default `prefer`)
    /// and `sslrootcert=/path/ca.pem`. A shard with a standby lists its hosts in libpq's
    /// multi-host form (`postgres://iris@db1:5432,db1b:5432/iris`): the node writes to whichever
    /// accepts writes and follows a failover by itself.
    pub store_urls: Vec<String>,
    /// Redis Cluster seed URLs (`redis://127.0.0.1:7000`; `rediss://` for TLS, the node's name
    /// or address verified against its certificate). Empty: no bus; with a shared store,
    /// messages between nodes then arrive through the inbox check only.
    pub redis_urls: Vec<String>,
    /// `rediss://` only: PEM CA certificates the Redis nodes' certificates must chain to; unset:
    /// the system's roots.
    pub redis_ca_path: Option<PathBuf>,
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
            redis_ca_path: None,
            namespace: "iris".into(),
            registry_ttl_ms: 30_000,
            inbox_poll_interval_ms: 1_000,
            redis_timeout_ms: 250,
            store_pool_size: 8,
        }
    }
}

/// Shard URLs from a comma-separated list (`--store`, `IRIS_STORE`) put back together: a
/// piece that does not start a URL (`db2:5432/iris` after `postgres://iris@db1:5432`) is the
/// next host of a multi-host URL, not a shard of its own.
pub fn store_urls_from_pieces(pieces: Vec<String>) -> Vec<String> {
    let mut urls: Vec<String> = Vec::new();
    for piece in pieces {
        let starts_url = piece.starts_with("postgres://") || piece.starts_with("postgresql://");
        match urls.last_mut() {
            Some(last) if !starts_url => {
                last.push(',');
                last.push_str(&piece);
            }
            _ => urls.push(piece),
        }
    }
    urls
}

impl ClusterConfig {
    /// Whether the store is shared with other nodes (PostgreSQL).
    pub fn shared_store(&self) -> bool {
        !self.store_urls.is_empty()
    }
}

/// Certificate and key for TLS on the listeners (PEM files), re-read on SIGHUP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_path: PathBuf,
    /// PEM private key.
    pub key_path: PathBuf,
    /// TLS on the HTTP/WebSocket listener too (HTTPS, WSS). Turn it off only when a proxy that
    /// terminates TLS sits in front of the HTTP port: codes and tokens travel there.
    #[serde(default = "yes")]
    pub http: bool,
}

impl TlsConfig {
    /// TLS on both listeners from these files.
    pub fn new(cert_path: PathBuf, key_path: PathBuf) -> Self {
        Self { cert_path, key_path, http: true }
    }
}

fn yes() -> bool {
    true
}

/// Where a client's address comes from behind a load balancer (see ARCHITECTURE.md "Edge").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Networks (CIDR, `10.0.0.0/8`, `2001:db8::/32`; a single host is `/32` or `/128`) of the
    /// load balancers and proxies in front of this node. Only these may name a client's address
    /// (PROXY header on TCP, `Forwarded` / `X-Forwarded-For` on HTTP); from anyone else such
    /// headers are ignored (HTTP) and the peer's own address is the client's.
    pub trusted_networks: Vec<ipnet::IpNet>,
    /// The PROXY protocol (v1 and v2) on the framed TCP listener.
    pub tcp_proxy_protocol: ProxyProtocolMode,
}

/// Whether framed TCP connections start with a PROXY header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyProtocolMode {
    /// No PROXY header is read; every peer is its own client.
    #[default]
    Off,
    /// Connections from trusted networks must start with a PROXY header (refused without one);
    /// other peers connect directly, as their own client.
    Optional,
    /// Like `optional`, and connections from outside the trusted networks are refused: every
    /// client must come through the load balancer.
    Required,
}

/// An HTTP SMS gateway (see `auth/sms.rs`): one request per code, retried on 5xx and timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    /// The gateway's endpoint (`https://...`); each code is one request to it.
    pub url: String,
    /// HTTP method: `POST` (default) or `PUT`.
    #[serde(default = "post")]
    pub method: String,
    /// The request body; `{phone}` and `{code}` are replaced (JSON-escaped when `content_type`
    /// is JSON, form-encoded when it is `application/x-www-form-urlencoded`).
    pub body_template: String,
    /// `Content-Type` of the body.
    #[serde(default = "json_type")]
    pub content_type: String,
    /// HTTP basic auth user (with `basic_password`).
    pub basic_user: Option<String>,
    /// HTTP basic auth password.
    pub basic_password: Option<String>,
    /// Bearer token (`Authorization: Bearer ...`); exclusive with basic auth.
    pub bearer_token: Option<String>,
    /// PEM CA certificates to trust for the gateway instead of the system's roots.
    pub ca_path: Option<PathBuf>,
    /// One attempt's timeout (connect to last byte).
    #[serde(default = "sms_timeout")]
    pub timeout_ms: u64,
    /// Attempts in all (the first and its retries) on 5xx, 429, timeouts and connection errors.
    #[serde(default = "sms_attempts")]
    pub attempts_max: u32,
    /// Wait before the first retry; doubled for each later one (with jitter).
    #[serde(default = "sms_backoff")]
    pub backoff_initial_ms: u64,
    /// Longest wait between two attempts.
    #[serde(default = "sms_backoff_max")]
    pub backoff_max_ms: u64,
}

fn post() -> String {
    "POST".into()
}
fn json_type() -> String {
    "application/json".into()
}
fn sms_timeout() -> u64 {
    5_000
}
fn sms_attempts() -> u32 {
    3
}
fn sms_backoff() -> u64 {
    200
}
fn sms_backoff_max() -> u64 {
    2_000
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
    /// Bytes of deliveries sent but not yet acked, per device: with `unacked_window`, whichever
    /// is reached first (a window of small messages stays deep, one of large ones stays small).
    pub unacked_bytes_max: u64,
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
    /// Un-acked entries above which an online device that is draining them holds 1:1 sends
    /// toward it (`send_gate.rs`); 0 never holds.
    pub hot_backlog_max: u64,
    /// Longest a send is held toward a hot device; also how recently a device must have acked
    /// to count as draining. At most 10 s; in effect at most half the heartbeat interval
    /// ([`SessionConfig::hot_hold`]).
    pub hot_hold_ms: u64,
    /// Longest a receipt (1:1 or group) waits to share a write with something else going to
    /// the same device (an answer, a message), so that under load it costs no write of its own;
    /// 0 sends each at once. At most 1000. A receipt that goes alone waits up to a quarter of it
    /// more (the node releases held receipts in steps, `held_receipts.rs`).
    pub receipt_hold_ms: u64,
}

impl SessionConfig {
    /// The hold in effect: `hot_hold_ms`, but at most half the heartbeat interval, since a held
    /// sender's pings wait with its send.
    pub fn hot_hold(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.hot_hold_ms.min(u64::from(self.heartbeat_interval_ms) / 2))
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 30_000,
            handshake_timeout_ms: 10_000,
            unacked_window: 5_000,
            unacked_bytes_max: 2 * 1024 * 1024,
            signal_queue_len_max: 1024,
            write_timeout_ms: 30_000,
            connections_max: 100_000,
            frame_timeout_ms: 15_000,
            memory_budget_bytes: None,
            hot_backlog_max: 1_000,
            hot_hold_ms: 1_000,
            receipt_hold_ms: 20,
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
    /// Test wake-ups (`PushOp.test`) one account may ask for per hour: each is a request to a
    /// push provider on the operator's credentials, so a client must not loop on it.
    pub push_tests_per_account_per_hour: u32,
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
            push_tests_per_account_per_hour: 0,
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
            push_tests_per_account_per_hour: 10,
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
    /// Embedded: retired log segment files kept to be recycled as new ones, so a batch's
    /// fdatasync does not grow the file (0: deleted at once; each costs a segment of disk).
    pub log_spares_max: u64,
}

impl StoreConfig {
    /// Refuses settings the committer or the inbox log cannot work with: an empty batch or
    /// queue, a batch wait that every lone message would pay past a second, segments so small
    /// that every batch starts a file or so large that recovery reads gigabytes of one into
    /// memory, and files kept beyond any use.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.batch_ops_max == 0 || self.queue_len_max == 0 {
            return invalid("store.batch_ops_max and store.queue_len_max must be positive");
        }
        if self.batch_wait_us > 1_000_000 {
            return invalid("store.batch_wait_us must be at most 1000000 (1 s)");
        }
        if !(64 << 10..=1 << 30).contains(&self.log_segment_bytes_max) {
            return invalid("store.log_segment_bytes_max must be 65536..=1073741824 (64 KiB to 1 GiB)");
        }
        if !(1..=1024).contains(&self.log_segments_live_max) {
            return invalid("store.log_segments_live_max must be 1..=1024");
        }
        if self.log_spares_max > 64 {
            return invalid("store.log_spares_max must be at most 64");
        }
        Ok(())
    }
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
            log_spares_max: 2,
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

/// Disappearing messages (`chat_timers.rs`): the sweep that deletes entries and message-index
/// records once their conversation's timer has run out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisappearingConfig {
    /// How often the sweep runs. Expired entries are never delivered even before it runs; this
    /// bounds how long they stay on disk after their expiry.
    pub sweep_interval_ms: u64,
    /// Most inbox entries (and, separately, message-index records) deleted per pass, so one
    /// pass stays short; a pass that hits the bound is followed at once by another.
    pub sweep_batch_max: usize,
    /// Most passes in a row before waiting for the next interval (bounds one sweep's work).
    pub sweep_passes_max: u32,
}

impl Default for DisappearingConfig {
    fn default() -> Self {
        Self { sweep_interval_ms: 60_000, sweep_batch_max: 10_000, sweep_passes_max: 10 }
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

/// Push notifications (see `push/` and ARCHITECTURE.md "Push notifications"). A provider is
/// offered to devices only when configured: `webhook` with `webhook_enabled`, `fcm` with a
/// service account file, `apns` with a key file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// At most one wake-up per device per this interval; later inbox changes within it are
    /// coalesced into one wake-up at its end.
    pub interval_ms: u64,
    /// Wake-ups queued per provider; when full (a provider is down), the oldest is shed.
    pub queue_len_max: usize,
    /// Devices waiting to be considered for a wake-up; more are dropped (counted).
    pub intake_len_max: usize,
    /// Attempts per wake-up (the first included) on timeouts, connection failures and 5xx.
    pub attempts_max: u32,
    /// First retry delay; doubled per attempt, with full jitter.
    pub backoff_initial_ms: u64,
    /// Cap of the retry delay.
    pub backoff_max_ms: u64,
    /// One provider request (connect, TLS, answer) must finish within this.
    pub request_timeout_ms: u64,
    /// Longest push token accepted (a webhook URL counts as its token).
    pub token_bytes_max: usize,
    /// PEM bundle of the CAs that provider endpoints are checked against.
    pub ca_file: PathBuf,
    /// Offer the generic webhook / UnifiedPush provider (the token is an `https://` URL the
    /// server POSTs to).
    pub webhook_enabled: bool,
    /// Let webhook URLs name, or resolve to, loopback, private or link-local addresses (tests,
    /// private deployments). Off by default: clients choose these URLs, so such a URL is refused
    /// (`PUSH_TARGET_FORBIDDEN`) and such addresses are never connected to.
    pub webhook_private_hosts_allowed: bool,
    /// FCM: the service account JSON key file (`project_id`, `client_email`, `private_key`,
    /// `token_uri`).
    pub fcm_service_account_file: Option<PathBuf>,
    /// FCM HTTP v1 base URL.
    pub fcm_endpoint: String,
    /// OAuth2 token URI; overrides the service account's `token_uri` when set.
    pub fcm_token_uri: Option<String>,
    /// APNs: the token-auth signing key (`.p8`, PKCS#8 PEM of a P-256 key).
    pub apns_key_file: Option<PathBuf>,
    /// APNs key id (the `kid` of the JWT).
    pub apns_key_id: String,
    /// Apple developer team id (the `iss` of the JWT).
    pub apns_team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub apns_topic: String,
    /// APNs base URL (`https://api.sandbox.push.apple.com` for development builds).
    pub apns_endpoint: String,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            interval_ms: 10_000,
            queue_len_max: 10_000,
            intake_len_max: 65_536,
            attempts_max: 4,
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            request_timeout_ms: 10_000,
            token_bytes_max: 4096,
            ca_file: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            webhook_enabled: false,
            webhook_private_hosts_allowed: false,
            fcm_service_account_file: None,
            fcm_endpoint: "https://fcm.googleapis.com".into(),
            fcm_token_uri: None,
            apns_key_file: None,
            apns_key_id: String::new(),
            apns_team_id: String::new(),
            apns_topic: String::new(),
            apns_endpoint: "https://api.push.apple.com".into(),
        }
    }
}

/// Call signaling (see `calls/` and ARCHITECTURE.md "Calls"). Calls are soft state in the
/// memory of the node where they were offered; these bound it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsConfig {
    /// How long callees ring before the call is missed.
    pub ring_timeout_ms: u64,
    /// How long a call may last at most; then it ends for everybody (frees state a lost
    /// hang-up would keep).
    pub duration_max_s: u64,
    /// Accounts per call, the caller included (2..=32; CALL_TOO_MANY_PARTICIPANTS beyond).
    pub participants_max: u32,
    /// Calls one device takes part in at once (CALL_LIMIT beyond).
    pub calls_per_device_max: u32,
    /// Calls one account takes part in or rings for at once: CALL_LIMIT for its own offers, and
    /// a callee beyond it is busy (not rung, told BUSY, a missed call).
    pub calls_per_account_max: u32,
    /// Calls this node holds at once (CALL_LIMIT beyond).
    pub calls_max: u32,
    /// Call offers one account may make per minute (0 turns it off; RATE_LIMITED beyond).
    pub offers_per_account_per_minute: u32,
    /// The secret shared with coturn (`static-auth-secret`); no TURN credentials without it.
    pub turn_secret: Option<String>,
    /// TURN URIs handed out with the credentials, e.g. `turn:turn.example.com:3478`.
    pub turn_uris: Vec<String>,
    /// How long issued TURN credentials are valid.
    pub turn_ttl_s: u32,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            ring_timeout_ms: 45_000,
            duration_max_s: 24 * 3600,
            participants_max: 32,
            calls_per_device_max: 2,
            calls_per_account_max: 8,
            calls_max: 100_000,
            offers_per_account_per_minute: 20,
            turn_secret: None,
            turn_uris: Vec::new(),
            turn_ttl_s: 24 * 3600,
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
        let p = &self.push;
        if p.queue_len_max == 0 || p.intake_len_max == 0 || p.attempts_max == 0 || p.request_timeout_ms == 0 {
            return invalid(
                "push: queue_len_max, intake_len_max, attempts_max and request_timeout_ms must be positive",
            );
        }
        if p.apns_key_file.is_some()
            && (p.apns_key_id.is_empty() || p.apns_team_id.is_empty() || p.apns_topic.is_empty())
        {
            return invalid("push: apns_key_file needs apns_key_id, apns_team_id and apns_topic");
        }
        let d = &self.devices;
        if !(10..=3600).contains(&d.link_code_ttl_s) || d.pending_links_max == 0 || d.pin_attempts_max == 0 {
            return invalid(
                "devices: link_code_ttl_s must be 10..=3600, pending_links_max and pin_attempts_max positive",
            );
        }
        let a = &self.abuse;
        if a.report_window_s == 0 || a.report_messages_max > 100 || a.report_bytes_max > 1024 * 1024 {
            return invalid(
                "abuse: report_window_s must be positive, report_messages_max <= 100, report_bytes_max <= 1 MiB",
            );
        }
        let p = &self.profiles;
        if !(1..=1024).contains(&p.display_name_chars_max) || p.about_chars_max > 4096 {
            return invalid("profiles: display_name_chars_max must be 1..=1024, about_chars_max <= 4096");
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
        if self.session.receipt_hold_ms > 1_000 {
            return invalid("session.receipt_hold_ms must be at most 1000");
        }
        if self.session.unacked_bytes_max == 0 {
            return invalid("session.unacked_bytes_max must be positive");
        }
        if self.session.hot_hold_ms > 10_000 {
            return invalid("session.hot_hold_ms must be <= 10000");
        }
        if self.disappearing.sweep_interval_ms == 0 {
            return invalid("disappearing.sweep_interval_ms must be positive");
        }
        if self.disappearing.sweep_batch_max == 0 || self.disappearing.sweep_passes_max == 0 {
            return invalid("disappearing.sweep_batch_max and sweep_passes_max must be positive");
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
        if c.redis_urls.iter().any(|u| !(u.starts_with("redis://") || u.starts_with("rediss://"))) {
            return invalid("cluster.redis_urls must be redis:// (or rediss://, TLS) URLs");
        }
        if c.redis_urls.iter().any(|u| u.starts_with("rediss://"))
            && !c.redis_urls.iter().all(|u| u.starts_with("rediss://"))
        {
            return invalid("cluster.redis_urls must all use TLS (rediss://) or none");
        }
        if c.redis_ca_path.is_some() && !c.redis_urls.iter().all(|u| u.starts_with("rediss://")) {
            return invalid("cluster.redis_ca_path is for TLS: cluster.redis_urls must be rediss:// URLs");
        }
        if self.proxy.tcp_proxy_protocol != ProxyProtocolMode::Off && self.proxy.trusted_networks.is_empty() {
            return invalid("proxy.tcp_proxy_protocol needs proxy.trusted_networks (who may send PROXY headers)");
        }
        if let Some(sms) = &self.sms {
            sms.validate()?;
        }
        self.admin.validate(self.dev)?;
        self.store.validate()?;
        if c.namespace.is_empty() || c.namespace.contains(['{', '}']) {
            return invalid("cluster.namespace must be non-empty and without braces");
        }
        let calls = &self.calls;
        if !(2..=32).contains(&calls.participants_max) {
            return invalid("calls.participants_max must be 2..=32");
        }
        if calls.ring_timeout_ms < 100 || calls.duration_max_s == 0 || calls.turn_ttl_s == 0 {
            return invalid("calls.ring_timeout_ms must be >= 100, duration_max_s and turn_ttl_s positive");
        }
        if calls.calls_per_device_max == 0 || calls.calls_per_account_max == 0 || calls.calls_max == 0 {
            return invalid("calls: calls_per_device_max, calls_per_account_max and calls_max must be positive");
        }
        if calls.turn_secret.as_ref().is_some_and(|s| s.is_empty() || calls.turn_uris.is_empty()) {
            return invalid("calls.turn_secret must be non-empty and needs calls.turn_uris");
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

impl SmsConfig {
    /// Checks the URL, method, credentials and retry bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(format!("sms: {m}")));
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return invalid("url must be an http:// or https:// URL");
        }
        if !["POST", "PUT"].contains(&self.method.as_str()) {
            return invalid("method must be POST or PUT");
        }
        if !self.body_template.contains("{code}") {
            return invalid("body_template must contain {code}");
        }
        if self.basic_user.is_some() != self.basic_password.is_some() {
            return invalid("basic_user and basic_password go together");
        }
        if self.basic_user.is_some() && self.bearer_token.is_some() {
            return invalid("use basic auth or a bearer token, not both");
        }
        if !(1..=10).contains(&self.attempts_max) || self.timeout_ms == 0 {
            return invalid("attempts_max must be 1..=10 and timeout_ms positive");
        }
        if self.backoff_initial_ms > self.backoff_max_ms {
            return invalid("backoff_initial_ms must not exceed backoff_max_ms");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_host_store_urls_survive_the_comma_separated_flag() {
        // Proves `--store a,b` still means two shards, while a shard listing its primary and
        // standby (`postgres://u@h1:1,h2:2/db`) stays one URL.
        let pieces = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(store_urls_from_pieces(pieces("postgres://u@a/db,postgresql://u@b/db")).len(), 2);
        assert_eq!(
            store_urls_from_pieces(pieces(
                "postgres://u@h1:1,h2:2/db?target_session_attrs=read-write,postgres://u@h3/db"
            )),
            ["postgres://u@h1:1,h2:2/db?target_session_attrs=read-write", "postgres://u@h3/db"]
        );
    }

    #[test]
    fn store_settings_outside_their_ranges_are_refused() {
        // Proves the `[store]` bounds hold at start: each setting at its limit is taken, one
        // step past it is refused with a message naming the setting.
        let with = |toml: &str| toml::from_str::<Config>(&format!("[store]\n{toml}")).unwrap().validate();
        for ok in [
            "batch_ops_max = 1\nqueue_len_max = 1",
            "batch_wait_us = 1000000",
            "log_segment_bytes_max = 65536",
            "log_segment_bytes_max = 1073741824",
            "log_segments_live_max = 1024",
            "log_spares_max = 0",
            "log_spares_max = 64",
        ] {
            with(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, names) in [
            ("batch_ops_max = 0", "store.batch_ops_max"),
            ("queue_len_max = 0", "store.queue_len_max"),
            ("batch_wait_us = 1000001", "store.batch_wait_us"),
            ("log_segment_bytes_max = 65535", "store.log_segment_bytes_max"),
            ("log_segment_bytes_max = 1073741825", "store.log_segment_bytes_max"),
            ("log_segments_live_max = 0", "store.log_segments_live_max"),
            ("log_segments_live_max = 1025", "store.log_segments_live_max"),
            ("log_spares_max = 65", "store.log_spares_max"),
        ] {
            let e = with(bad).expect_err(bad).to_string();
            assert!(e.contains(names), "{bad}: {e}");
        }
    }

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
    fn edge_settings_parse_and_contradictions_are_refused() {
        // Proves: [proxy] and [sms] parse from TOML with their defaults, and settings that
        // cannot work (PROXY with nobody trusted, an SMS template without {code}, two kinds of
        // credentials, a CA for plaintext Redis) are refused at start.
        let c: Config = toml::from_str(
            "[proxy]\ntrusted_networks = [\"10.0.0.0/8\", \"fd00::/8\"]\ntcp_proxy_protocol = \"required\"\n\
             [sms]\nurl = \"https://sms.example.com/send\"\nbody_template = \"{phone}:{code}\"\nbearer_token = \"t\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.proxy.tcp_proxy_protocol, ProxyProtocolMode::Required);
        assert_eq!(c.sms.as_ref().map(|s| (s.attempts_max, s.method.as_str())), Some((3, "POST")));
        assert!(toml::from_str::<Config>("[proxy]\ntrusted_networks = [\"10.0.0.1\"]").is_err(), "CIDR needed");

        let invalid = |edit: fn(&mut Config)| {
            let mut c = c.clone();
            edit(&mut c);
            assert!(c.validate().is_err());
        };
        invalid(|c| c.proxy.trusted_networks.clear());
        invalid(|c| c.sms.as_mut().unwrap().body_template = "{phone}".into());
        invalid(|c| c.sms.as_mut().unwrap().basic_user = Some("u".into()));
        invalid(|c| c.sms.as_mut().unwrap().attempts_max = 0);
        let mut cluster = c.clone();
        cluster.auth.token_key_hex = Some("00".repeat(32));
        cluster.cluster.store_urls = vec!["postgres://iris@db1/iris?sslmode=verify-full".into()];
        cluster.cluster.redis_urls = vec!["rediss://10.0.0.5:7000".into()];
        cluster.cluster.redis_ca_path = Some("ca.pem".into());
        cluster.validate().unwrap();
        cluster.cluster.redis_urls.push("redis://10.0.0.6:7000".into());
        assert!(cluster.validate().is_err(), "TLS for some Redis nodes only");
        cluster.cluster.redis_urls = vec!["redis://10.0.0.6:7000".into()];
        assert!(cluster.validate().is_err(), "a CA for plaintext Redis");
    }

    #[test]
    fn the_admin_listener_needs_one_long_enough_token() {
        // Proves: [admin] parses; a listener without a token, with both kinds, or with a short
        // token is refused; metrics stay on the public port unless the admin listener takes them.
        let c: Config = toml::from_str("[admin]\nlisten = \"127.0.0.1:7702\"\ntoken = \"0123456789abcdef\"").unwrap();
        c.validate().unwrap();
        assert_eq!(c.admin.load_token().unwrap(), "0123456789abcdef");
        assert!(!c.admin.metrics_on_public_port());
        assert!(Config::default().admin.metrics_on_public_port());
        let invalid = |edit: fn(&mut Config)| {
            let mut c = c.clone();
            edit(&mut c);
            assert!(c.validate().is_err());
        };
        invalid(|c| c.admin.token = None);
        invalid(|c| c.admin.token = Some("short".into()));
        invalid(|c| c.admin.token_file = Some("t".into()));
        invalid(|c| (c.dev, c.admin.listen) = (true, Some("0.0.0.0:7702".parse().unwrap())));
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
