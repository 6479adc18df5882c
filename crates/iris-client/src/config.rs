//! What a [`Client`](crate::Client) needs to connect, and the policies for reconnects and retries.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use iris_proto::http::Credentials;

/// Everything [`Client::connect`](crate::Client::connect) needs. Build with [`ClientConfig::new`]
/// and adjust the public fields.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL of the HTTP API (`http://127.0.0.1:7701`), used to find the TCP address and to
    /// refresh the access token.
    pub http_url: String,
    /// The framed TCP address (`host:port`); `None` asks `GET /v1/info` before each connect, so
    /// a client follows the server (or a cluster's load balancer) to a new address, and speaks
    /// TLS to it when the server says its listener does. An address given here is plain TCP.
    pub tcp_addr: Option<String>,
    /// The CAs trusted for an `https://` URL and a TLS framed listener (whose certificate must
    /// name `http_url`'s host); `None`: the system's (or `SSL_CERT_FILE`'s).
    pub tls: Option<crate::TlsTrust>,
    /// The device's credentials; refreshed ones are reported through `on_credentials`.
    pub credentials: Credentials,
    /// Highest inbox sequence already processed (persisted by the app); delivery resumes after it.
    pub resume_after_seq: u64,
    /// Ack every inbox item as [`Events::next`](crate::Events::next) hands it out, so the app
    /// never calls [`Client::ack`](crate::Client::ack) (at-most-once processing on a crash).
    pub auto_ack: bool,
    /// Longest an ack waits to ride with the next frame the SDK writes anyway (a send, a
    /// receipt, a heartbeat), as a phone batches its radio use; once
    /// [`ACK_BATCH_ENTRIES`](crate::ACK_BATCH_ENTRIES) entries are acked and not yet told, the
    /// ack goes at once. An ack only lets the server forget what it delivered (and send the
    /// sender's `DELIVERED`), so little waits on it, and each one written alone is a frame
    /// through both kernels. Zero writes every ack as soon as the app makes it. Default 20 ms,
    /// as long as the server holds receipts (`session.receipt_hold_ms`).
    pub ack_delay: Duration,
    /// How to reconnect after the connection drops.
    pub reconnect: ReconnectPolicy,
    /// How to retry sends the server refused for a while (rate limit, overload, store down).
    pub retry: RetryPolicy,
    /// Time allowed for the TCP connect plus the `Hello`/`Welcome` handshake.
    pub connect_timeout: Duration,
    /// How many delivered message ids to remember for dropping redeliveries.
    pub dedup_window: usize,
    /// Largest frame accepted from the server, in bytes (protects against garbage prefixes).
    pub max_server_frame_bytes: u32,
    /// Called with the new credentials whenever the SDK refreshed them, so the app can persist
    /// them before the old refresh token (now used up) is needed again.
    pub on_credentials: Option<CredentialsHook>,
    /// Receipt kinds this device does not want in its inbox while connected
    /// (`Hello.receipts_unwanted`): a bot or bridge that shows no ticks sets
    /// `[Delivered, Read]` and saves a window slot and an ack per receipt.
    pub receipts_unwanted: Vec<iris_proto::pb::ReceiptType>,
}

impl ClientConfig {
    /// A config with defaults: address from `GET /v1/info`, resume from 0, manual acks.
    pub fn new(http_url: impl Into<String>, credentials: Credentials) -> Self {
        Self {
            http_url: http_url.into(),
            tcp_addr: None,
            tls: None,
            credentials,
            resume_after_seq: 0,
            auto_ack: false,
            ack_delay: Duration::from_millis(20),
            reconnect: ReconnectPolicy::default(),
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            dedup_window: 10_000,
            max_server_frame_bytes: 16 * 1024 * 1024,
            on_credentials: None,
            receipts_unwanted: Vec::new(),
        }
    }
}

/// When to reconnect: exponential backoff with full jitter (a random delay between 0 and
/// `min(max_delay, initial_delay * 2^attempt)`), so a restarted server is not hit by every
/// client at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Upper bound of the first delay.
    pub initial_delay: Duration,
    /// Upper bound of every delay.
    pub max_delay: Duration,
    /// A connection that lasted this long resets the backoff; a shorter one keeps escalating, so a
    /// server that accepts then drops does not get a reconnect storm.
    pub stable_after: Duration,
    /// Consecutive failed attempts before giving up with a fatal `UNAVAILABLE`; `None` = never.
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            stable_after: Duration::from_secs(5),
            max_attempts: None,
        }
    }
}

/// How sends and receipts refused with a retryable code (RATE_LIMITED, OVERLOADED, UNAVAILABLE)
/// are retried with the same `client_msg_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included; the last refusal is returned to the caller.
    pub max_attempts: u32,
    /// Delay used when the server gave no `retry_after_ms`.
    pub default_delay: Duration,
    /// Longest wait the client takes on itself. A refusal asking for more (a daily discovery
    /// limit answers with hours) goes back to the caller at once, with its `retry_after_ms`,
    /// instead of holding the call that long.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 5, default_delay: Duration::from_millis(200), max_wait: Duration::from_secs(30) }
    }
}

/// A callback that receives refreshed credentials (see [`ClientConfig::on_credentials`]).
#[derive(Clone)]
pub struct CredentialsHook(pub Arc<dyn Fn(&Credentials) + Send + Sync>);

impl CredentialsHook {
    /// Wraps a closure.
    pub fn new(f: impl Fn(&Credentials) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl fmt::Debug for CredentialsHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CredentialsHook(..)")
    }
}
