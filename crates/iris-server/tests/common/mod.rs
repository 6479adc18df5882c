//! Test kit: boots a real server in-process on ephemeral loopback ports and talks to it the way
//! clients do — raw length-prefixed frames over TCP (`RawConn`) and JSON over HTTP (`reqwest`).
//!
//! Knows nothing of the server's internals beyond `start`, `Config` and `Dependencies`; every
//! assertion goes through the wire. Never sleeps to wait for start-up: `start` returns once both
//! listeners are bound.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iris_proto::frame::{self, FrameDecoder};
use iris_proto::http::{ApiError, CodeRequest, Credentials, VerifyRequest};
use iris_proto::pb::{self, client_op, server_event, ErrorCode};
use iris_server::clock::ManualClock;
use iris_server::config::Config;
use iris_server::{Dependencies, RunningServer};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for an event it expects before failing (never reached when green).
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The one-time code every dev-mode server accepts.
pub const DEV_CODE: &str = "000000";

/// A server running in this process, with its data in a temporary directory.
pub struct TestServer {
    /// The framed TCP listener.
    pub tcp_addr: SocketAddr,
    /// The HTTP listener (auth API, WebSocket, health).
    pub http_addr: SocketAddr,
    clock: Option<Arc<ManualClock>>,
    server: RunningServer,
    http: reqwest::Client,
    /// Kept alive as long as the server; deleted on drop.
    _data_dir: TempDir,
    /// Cluster mode (`IRIS_TEST_ENGINE=cluster`): its databases and Redis namespace.
    _engine: Option<iris_testkit::engine::ClusterEngine>,
}

/// The configuration every test server starts from: loopback ephemeral ports, dev mode, and no
/// rate limits (so a test can log in many devices of one phone); tests that check a limit turn it
/// back on in `start_with`.
pub fn test_config(data_dir: &std::path::Path) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_owned(),
        listen: "127.0.0.1:0".parse().expect("valid literal"),
        http: "127.0.0.1:0".parse().expect("valid literal"),
        dev: true,
        ..Config::default()
    };
    config.rate_limits = iris_server::config::RateLimitConfig::unlimited();
    config
}

impl TestServer {
    /// A server with the test defaults.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server with the test defaults changed by `edit`.
    pub async fn start_with(edit: impl FnOnce(&mut Config)) -> Self {
        Self::boot(edit, None).await
    }

    /// A server whose clock only moves when the test calls [`TestServer::advance_clock_ms`].
    pub async fn start_with_manual_clock(edit: impl FnOnce(&mut Config)) -> Self {
        Self::boot(edit, Some(Arc::new(ManualClock::new()))).await
    }

    async fn boot(edit: impl FnOnce(&mut Config), clock: Option<Arc<ManualClock>>) -> Self {
        let data_dir = tempfile::tempdir().expect("create a temporary data dir");
        let mut config = test_config(data_dir.path());
        let engine = iris_testkit::engine::from_env();
        if let Some(e) = &engine {
            (config.cluster.store_urls, config.cluster.redis_urls) = (e.store_urls(), e.redis_urls());
            config.cluster.namespace = e.namespace().to_owned();
            config.auth.token_key_hex = Some(e.token_key_hex());
        }
        edit(&mut config);
        let mut deps = Dependencies::default();
        if let Some(c) = &clock {
            deps.clock = c.clone();
        }
        let server = iris_server::start(config, deps).await.expect("server starts");
        Self {
            tcp_addr: server.tcp_addr,
            http_addr: server.http_addr,
            clock,
            server,
            http: reqwest::Client::new(),
            _data_dir: data_dir,
            _engine: engine,
        }
    }

    /// Moves the manual clock forward.
    pub fn advance_clock_ms(&self, ms: u64) {
        self.clock.as_ref().expect("server started with start_with_manual_clock").advance_ms(ms);
    }

    /// The server itself (its context, for assertions the wire cannot make).
    pub fn running(&self) -> &RunningServer {
        &self.server
    }

    // ---------------------------------------------------------------------------------------------
    // HTTP
    // ---------------------------------------------------------------------------------------------

    /// `http://<http_addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr)
    }

    /// `GET path`, with a bearer token when given.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Reply::from(req.send().await.expect("HTTP request")).await
    }

    /// `POST path` with a JSON body.
    pub async fn post<B: Serialize>(&self, path: &str, body: &B) -> Reply {
        Reply::from(self.http.post(self.url(path)).json(body).send().await.expect("HTTP request")).await
    }

    /// `POST path` with raw bytes labelled as JSON.
    pub async fn post_raw(&self, path: &str, body: &'static str) -> Reply {
        let req = self.http.post(self.url(path)).header("content-type", "application/json").body(body);
        Reply::from(req.send().await.expect("HTTP request")).await
    }

    /// `DELETE path` with a bearer token.
    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        Reply::from(self.http.delete(self.url(path)).bearer_auth(token).send().await.expect("HTTP request")).await
    }

    /// `POST /v1/auth/request-code`.
    pub async fn request_code(&self, phone: &str) -> Reply {
        self.post("/v1/auth/request-code", &CodeRequest { phone: phone.to_owned() }).await
    }

    /// `POST /v1/auth/verify`.
    pub async fn verify(&self, phone: &str, code: &str, device_name: &str) -> Reply {
        let body =
            VerifyRequest { phone: phone.to_owned(), code: code.to_owned(), device_name: device_name.to_owned() };
        self.post("/v1/auth/verify", &body).await
    }

    /// Registers a new device of `phone` (creating the account on first use) through HTTP.
    pub async fn login(&self, phone: &str, device_name: &str) -> Credentials {
        self.request_code(phone).await.expect_status(200);
        self.verify(phone, DEV_CODE, device_name).await.expect_json(200)
    }

    // ---------------------------------------------------------------------------------------------
    // Framed TCP
    // ---------------------------------------------------------------------------------------------

    /// A raw connection to the framed TCP listener, before any Hello.
    pub async fn connect(&self) -> RawConn {
        RawConn::connect(self.tcp_addr).await
    }

    /// A connection that completed the handshake as `creds`.
    pub async fn connect_as(&self, creds: &Credentials) -> (RawConn, pb::Welcome) {
        let mut conn = self.connect().await;
        let welcome = conn.hello(creds).await;
        (conn, welcome)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.shutdown_token().cancel();
    }
}

/// A finished HTTP exchange.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The raw body.
    pub body: Bytes,
}

impl Reply {
    async fn from(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = resp.bytes().await.expect("HTTP body");
        Self { status, retry_after, body }
    }

    /// Asserts the status.
    pub fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected status; body: {}", String::from_utf8_lossy(&self.body));
        self
    }

    /// Asserts the status and parses the JSON body.
    pub fn expect_json<T: DeserializeOwned>(&self, status: u16) -> T {
        self.expect_status(status);
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not the expected JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts the status and that the body is an `ApiError` with `code`; returns it.
    pub fn expect_error(&self, status: u16, code: ErrorCode) -> ApiError {
        let e: ApiError = self.expect_json(status);
        assert_eq!(e.code, code.as_str_name(), "unexpected error code: {e:?}");
        e
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

// -------------------------------------------------------------------------------------------------
// Raw framed connection
// -------------------------------------------------------------------------------------------------

/// A client connection that speaks frames by hand: it sends exactly the bytes a test wants and
/// exposes every event the server sends, in order.
pub struct RawConn {
    stream: TcpStream,
    read_buf: BytesMut,
    decoder: FrameDecoder,
    pending: VecDeque<pb::ServerEvent>,
    closed: bool,
}

impl RawConn {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect to the TCP listener");
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        Self {
            stream,
            read_buf: BytesMut::new(),
            // The server's frames are never larger than its limit; be generous on this side.
            decoder: FrameDecoder::new(64 * 1024 * 1024),
            pending: VecDeque::new(),
            closed: false,
        }
    }

    /// Sends one frame with `ops`.
    pub async fn send_ops(&mut self, ops: Vec<pb::ClientOp>) {
        self.send_frame(&pb::ClientFrame { ops }).await;
    }

    /// Sends one frame.
    pub async fn send_frame(&mut self, f: &pb::ClientFrame) {
        let mut buf = BytesMut::new();
        frame::encode(f, &mut buf);
        self.send_raw(&buf).await;
    }

    /// Sends bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to the server");
        self.stream.flush().await.expect("flush");
    }

    /// Closes the sending half (the server sees end of stream); reading still works.
    pub async fn shutdown_write(&mut self) {
        self.stream.shutdown().await.expect("shutdown the write half");
    }

    /// The next event, `None` once the server closed the connection. Fails the test if nothing
    /// arrives within `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> Option<pb::ServerEvent> {
        match tokio::time::timeout(wait, self.read_event()).await {
            Ok(e) => e,
            Err(_) => panic!("no event and no close within {wait:?}"),
        }
    }

    async fn read_event(&mut self) -> Option<pb::ServerEvent> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.closed {
                return None;
            }
            if let Some(body) = self.decoder.decode(&mut self.read_buf).expect("server sent a valid frame prefix") {
                let f: pb::ServerFrame = frame::decode_body(&body).expect("server sent a valid ServerFrame");
                assert!(!f.events.is_empty(), "server sent an empty frame");
                self.pending.extend(f.events);
                continue;
            }
            match self.stream.read_buf(&mut self.read_buf).await {
                Ok(0) => {
                    assert!(self.read_buf.is_empty(), "server closed in the middle of a frame");
                    self.closed = true;
                }
                // A reset after the server closed with our bytes unread is a close as well.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => self.closed = true,
                Err(e) => panic!("read from the server failed: {e}"),
                Ok(_) => {}
            }
        }
    }

    /// The next event, which must be there (not a close).
    pub async fn event(&mut self) -> pb::ServerEvent {
        self.next_event(EVENT_TIMEOUT).await.expect("expected an event, the server closed the connection")
    }

    /// The next event that is not a `Delivery` (deliveries may interleave with answers).
    pub async fn answer(&mut self) -> pb::ServerEvent {
        loop {
            let e = self.event().await;
            if !matches!(e.event, Some(server_event::Event::Delivery(_))) {
                return e;
            }
        }
    }

    /// Sends `Hello` for `creds` and returns the `Welcome`.
    pub async fn hello(&mut self, creds: &Credentials) -> pb::Welcome {
        self.send_ops(vec![hello_op(1, &creds.access_token, creds.device_id)]).await;
        match self.event().await {
            pb::ServerEvent { request_id: 1, event: Some(server_event::Event::Welcome(w)) } => w,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// Sends `Hello` for `creds` resuming after `resume_after_seq`; returns the first answer
    /// (a `Welcome`, or the `Error` refusing the Hello).
    pub async fn hello_resuming(&mut self, creds: &Credentials, resume_after_seq: u64) -> pb::ServerEvent {
        let mut op = hello_op(1, &creds.access_token, creds.device_id);
        if let Some(client_op::Op::Hello(h)) = &mut op.op {
            h.resume_after_seq = resume_after_seq;
        }
        self.send_ops(vec![op]).await;
        self.event().await
    }

    /// Expects an `Error` event answering `request_id` with `code`; returns it.
    pub async fn expect_error(&mut self, request_id: u64, code: ErrorCode) -> pb::Error {
        let e = self.answer().await;
        let err =
            as_error(e.clone()).unwrap_or_else(|| panic!("expected {code:?} for request {request_id}, got {e:?}"));
        assert_eq!(err.error_code(), code, "unexpected error: {err:?}");
        assert_eq!(e.request_id, request_id, "error answers the wrong request: {e:?}");
        err
    }

    /// Expects a non-fatal `Error` for `request_id` with `code`; returns it.
    pub async fn expect_request_error(&mut self, request_id: u64, code: ErrorCode) -> pb::Error {
        let err = self.expect_error(request_id, code).await;
        assert!(!err.fatal, "error must not be fatal: {err:?}");
        err
    }

    /// Expects a fatal `Error` with `code` followed by the server closing the connection.
    pub async fn expect_fatal(&mut self, code: ErrorCode) -> pb::Error {
        let e = self.event().await;
        let err = as_error(e.clone()).unwrap_or_else(|| panic!("expected fatal {code:?}, got {e:?}"));
        assert_eq!(err.error_code(), code, "unexpected error: {err:?}");
        assert!(err.fatal, "error must be fatal: {err:?}");
        self.expect_closed().await;
        err
    }

    /// Expects the server to close the connection with nothing more to say.
    pub async fn expect_closed(&mut self) {
        if let Some(e) = self.next_event(EVENT_TIMEOUT).await {
            panic!("expected the connection to be closed, got {e:?}");
        }
    }

    /// Pings with `request_id` and expects the matching `Pong` (proves the connection works).
    pub async fn ping(&mut self, request_id: u64) -> pb::Pong {
        self.send_ops(vec![ping_op(request_id, request_id * 1000)]).await;
        match self.answer().await {
            pb::ServerEvent { request_id: rid, event: Some(server_event::Event::Pong(p)) } if rid == request_id => {
                assert_eq!(p.client_time_ms, request_id * 1000);
                p
            }
            other => panic!("expected Pong for request {request_id}, got {other:?}"),
        }
    }

    /// Sends one message and returns the `SendResult` or `Error` event answering it.
    pub async fn send_message(&mut self, request_id: u64, msg: pb::SendMessage) -> pb::ServerEvent {
        self.send_ops(vec![send_op(request_id, msg)]).await;
        let e = self.answer().await;
        assert_eq!(e.request_id, request_id, "answer to the wrong request: {e:?}");
        e
    }

    /// Sends one message and expects it `ACCEPTED`.
    pub async fn send_accepted(&mut self, request_id: u64, msg: pb::SendMessage) -> pb::SendResult {
        match self.send_message(request_id, msg).await.event {
            Some(server_event::Event::SendResult(r)) => {
                assert_eq!(r.status, pb::SendStatus::Accepted as i32, "{r:?}");
                r
            }
            other => panic!("expected SendResult, got {other:?}"),
        }
    }

    /// The next `Delivery`'s items (skipping nothing: the next event must be a delivery).
    pub async fn expect_delivery(&mut self) -> Vec<pb::InboxItem> {
        match self.event().await.event {
            Some(server_event::Event::Delivery(d)) => d.items,
            other => panic!("expected Delivery, got {other:?}"),
        }
    }
}

/// The error carried by `e`, if it is one.
pub fn as_error(e: pb::ServerEvent) -> Option<pb::Error> {
    match e.event {
        Some(server_event::Event::Error(err)) => Some(err),
        _ => None,
    }
}

/// The message carried by an inbox item, if it is one.
pub fn as_message(item: &pb::InboxItem) -> Option<&pb::Message> {
    match &item.body {
        Some(pb::inbox_item::Body::Message(m)) => Some(m),
        _ => None,
    }
}

// -------------------------------------------------------------------------------------------------
// Operation builders
// -------------------------------------------------------------------------------------------------

/// `Hello` offering the current protocol version.
pub fn hello_op(request_id: u64, token: &str, device_id: u32) -> pb::ClientOp {
    hello_with_versions(request_id, token, device_id, vec![iris_proto::version::CURRENT])
}

/// `Hello` offering `versions`.
pub fn hello_with_versions(
    request_id: u64,
    token: &str,
    device_id: u32,
    versions: Vec<pb::ProtocolVersion>,
) -> pb::ClientOp {
    let hello = pb::Hello { versions, token: token.to_owned(), device_id, capabilities: vec![], resume_after_seq: 0 };
    pb::ClientOp { request_id, op: Some(client_op::Op::Hello(hello)) }
}

/// `Ping`.
pub fn ping_op(request_id: u64, client_time_ms: u64) -> pb::ClientOp {
    pb::ClientOp { request_id, op: Some(client_op::Op::Ping(pb::Ping { client_time_ms })) }
}

/// `Send`.
pub fn send_op(request_id: u64, msg: pb::SendMessage) -> pb::ClientOp {
    pb::ClientOp { request_id, op: Some(client_op::Op::Send(msg)) }
}

/// `Ack`.
pub fn ack_op(request_id: u64, up_to_seq: u64) -> pb::ClientOp {
    pb::ClientOp { request_id, op: Some(client_op::Op::Ack(pb::Ack { up_to_seq })) }
}

/// A message with one payload for every device, to an account id.
pub fn text_to_account(client_msg_id: &str, to_account_id: u64, payload: &[u8]) -> pb::SendMessage {
    pb::SendMessage {
        client_msg_id: client_msg_id.to_owned(),
        to_account_id,
        to_phone: String::new(),
        body: Some(pb::send_message::Body::Payload(Bytes::copy_from_slice(payload))),
        ..Default::default()
    }
}

/// A message with one payload for every device, to a phone number.
pub fn text_to_phone(client_msg_id: &str, to_phone: &str, payload: &[u8]) -> pb::SendMessage {
    pb::SendMessage {
        client_msg_id: client_msg_id.to_owned(),
        to_account_id: 0,
        to_phone: to_phone.to_owned(),
        body: Some(pb::send_message::Body::Payload(Bytes::copy_from_slice(payload))),
        ..Default::default()
    }
}

/// A per-device message to an account id: `(account, device, payload)` triples.
pub fn per_device_to_account(
    client_msg_id: &str,
    to_account_id: u64,
    payloads: &[(u64, u32, &[u8])],
) -> pb::SendMessage {
    let payloads = payloads
        .iter()
        .map(|&(account_id, device_id, p)| pb::DevicePayload {
            account_id,
            device_id,
            payload: Bytes::copy_from_slice(p),
        })
        .collect();
    pb::SendMessage {
        client_msg_id: client_msg_id.to_owned(),
        to_account_id,
        to_phone: String::new(),
        body: Some(pb::send_message::Body::PerDevice(pb::DevicePayloads { payloads })),

        ..Default::default()
    }
}

// -------------------------------------------------------------------------------------------------
// Servers over a store with injected faults
// -------------------------------------------------------------------------------------------------

impl TestServer {
    /// A server with the test defaults changed by `edit`, over `store` instead of the embedded
    /// store it would open in its data directory.
    pub async fn start_with_store(edit: impl FnOnce(&mut Config), store: Arc<dyn iris_store::Store>) -> Self {
        let data_dir = tempfile::tempdir().expect("create a temporary data dir");
        let mut config = test_config(data_dir.path());
        // The given store is the point of these tests: no cluster engine around it.
        edit(&mut config);
        let deps = Dependencies { store: Some(store), ..Dependencies::default() };
        let server = iris_server::start(config, deps).await.expect("server starts");
        Self {
            tcp_addr: server.tcp_addr,
            http_addr: server.http_addr,
            clock: None,
            server,
            http: reqwest::Client::new(),
            _data_dir: data_dir,
            _engine: None,
        }
    }
}

/// What a [`FaultyStore`] does while its switch is on.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// `enqueue_append` fails with `Overloaded { retry_after_ms }`: the committer queue stayed full.
    Overloaded {
        /// The wait the store suggests.
        retry_after_ms: u32,
    },
    /// `enqueue_append` fails with `Unavailable` and `is_healthy()` is false: disk full or an
    /// fsync error.
    Unavailable,
}

/// A real embedded store (fjall, in its own temporary directory) whose appends fail with a chosen
/// [`Fault`] while a shared switch is on. Everything else is delegated unchanged.
pub struct FaultyStore {
    inner: iris_store::embedded::FjallStore,
    fault: Fault,
    failing: Arc<std::sync::atomic::AtomicBool>,
    /// Dropped after `inner` (fields drop in order).
    _dir: TempDir,
}

impl FaultyStore {
    /// Opens the wrapped store; the returned switch turns the fault on (`true`) and off.
    pub fn open(fault: Fault) -> (Arc<Self>, Arc<std::sync::atomic::AtomicBool>) {
        let dir = tempfile::tempdir().expect("create a temporary store dir");
        let inner = iris_store::embedded::FjallStore::open(dir.path(), Default::default()).expect("open fjall");
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        (Arc::new(Self { inner, fault, failing: failing.clone(), _dir: dir }), failing)
    }

    fn failing(&self) -> bool {
        self.failing.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The future type `#[async_trait]` methods return (the store traits are declared with it; these
/// impls are written out by hand because the test crate does not depend on `async-trait`).
type StoreFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = iris_store::StoreResult<T>> + Send + 'a>>;

impl iris_store::AccountStore for FaultyStore {
    fn account_by_phone<'life0, 'life1, 'async_trait>(
        &'life0 self,
        phone: &'life1 str,
    ) -> StoreFuture<'async_trait, Option<iris_store::Account>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.account_by_phone(phone)
    }

    fn account<'life0, 'async_trait>(
        &'life0 self,
        id: iris_store::AccountId,
    ) -> StoreFuture<'async_trait, Option<iris_store::Account>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.account(id)
    }

    fn register_device<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        phone: &'life1 str,
        device_name: &'life2 str,
        now_ms: u64,
        max_devices: u32,
    ) -> StoreFuture<'async_trait, (iris_store::Account, iris_store::Device)>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.register_device(phone, device_name, now_ms, max_devices)
    }

    fn devices<'life0, 'async_trait>(
        &'life0 self,
        account: iris_store::AccountId,
    ) -> StoreFuture<'async_trait, Vec<iris_store::Device>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.devices(account)
    }

    fn device<'life0, 'async_trait>(
        &'life0 self,
        addr: iris_store::DeviceAddr,
    ) -> StoreFuture<'async_trait, Option<iris_store::Device>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.device(addr)
    }

    fn revoke_device<'life0, 'async_trait>(
        &'life0 self,
        addr: iris_store::DeviceAddr,
        now_ms: u64,
    ) -> StoreFuture<'async_trait, bool>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.revoke_device(addr, now_ms)
    }

    fn put_refresh_token<'life0, 'async_trait>(
        &'life0 self,
        token: iris_store::RefreshTokenRecord,
    ) -> StoreFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.put_refresh_token(token)
    }

    fn take_refresh_token<'life0, 'life1, 'async_trait>(
        &'life0 self,
        hash: &'life1 [u8; 32],
    ) -> StoreFuture<'async_trait, Option<iris_store::RefreshTokenRecord>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.take_refresh_token(hash)
    }
}

impl iris_store::InboxStore for FaultyStore {
    fn enqueue_append<'life0, 'async_trait>(
        &'life0 self,
        req: iris_store::AppendRequest,
    ) -> StoreFuture<'async_trait, iris_store::PendingAppend>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        if self.failing() {
            let e = match self.fault {
                Fault::Overloaded { retry_after_ms } => iris_store::StoreError::Overloaded { retry_after_ms },
                Fault::Unavailable => iris_store::StoreError::Unavailable("injected: no space left on device".into()),
            };
            return Box::pin(std::future::ready(Err(e)));
        }
        self.inner.enqueue_append(req)
    }

    fn read<'life0, 'async_trait>(
        &'life0 self,
        device: iris_store::DeviceAddr,
        after_seq: u64,
        limit: usize,
    ) -> StoreFuture<'async_trait, Vec<iris_store::StoredEntry>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.read(device, after_seq, limit)
    }

    fn ack<'life0, 'async_trait>(
        &'life0 self,
        device: iris_store::DeviceAddr,
        up_to_seq: u64,
    ) -> StoreFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.ack(device, up_to_seq)
    }

    fn cursor<'life0, 'async_trait>(
        &'life0 self,
        device: iris_store::DeviceAddr,
    ) -> StoreFuture<'async_trait, iris_store::InboxCursor>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.cursor(device)
    }

    fn purge<'life0, 'async_trait>(&'life0 self, device: iris_store::DeviceAddr) -> StoreFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.purge(device)
    }

    fn expire<'life0, 'async_trait>(
        &'life0 self,
        older_than_ms: u64,
        dedup_older_than_ms: u64,
    ) -> StoreFuture<'async_trait, u64>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.expire(older_than_ms, dedup_older_than_ms)
    }

    fn set_commit_observer(&self, observer: Arc<dyn iris_store::CommitObserver>) {
        self.inner.set_commit_observer(observer);
    }

    fn queue_depth(&self) -> usize {
        self.inner.queue_depth()
    }

    fn is_healthy(&self) -> bool {
        let unavailable = matches!(self.fault, Fault::Unavailable) && self.failing();
        !unavailable && self.inner.is_healthy()
    }

    fn close<'life0, 'async_trait>(&'life0 self) -> StoreFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.close()
    }
}

// -------------------------------------------------------------------------------------------------
// Raw connections: admission answers and slow writers
// -------------------------------------------------------------------------------------------------

impl RawConn {
    /// Expects a `GoAway` (sent before any Hello when the node refuses a connection) followed by
    /// the close; returns it.
    pub async fn expect_go_away(&mut self) -> pb::GoAway {
        let e = self.event().await;
        let Some(server_event::Event::GoAway(g)) = e.event else { panic!("expected GoAway, got {e:?}") };
        self.expect_closed().await;
        g
    }

    /// The first event after connecting: `Some(GoAway)` when the node refused the connection,
    /// `None` when it was admitted (proved by a Hello answered with a Welcome for `creds`).
    pub async fn admitted_or_go_away(&mut self, creds: &Credentials) -> Option<pb::GoAway> {
        self.send_ops(vec![hello_op(1, &creds.access_token, creds.device_id)]).await;
        let e = self.event().await;
        match e.event {
            Some(server_event::Event::Welcome(_)) => None,
            Some(server_event::Event::GoAway(g)) => {
                self.expect_closed().await;
                Some(g)
            }
            _ => panic!("expected Welcome or GoAway, got {e:?}"),
        }
    }
}

// -------------------------------------------------------------------------------------------------
// Prometheus text
// -------------------------------------------------------------------------------------------------

/// The value of the sample `series` (name with its labels exactly as exposed, e.g.
/// `iris_handshakes_total{result="ok"}`) in a Prometheus text exposition; 0 when absent
/// (prometheus-client omits label sets never touched).
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse::<f64>().expect("a numeric sample"))
        })
        .unwrap_or(0.0)
}

/// Groups are delegated unchanged (faults are injected on appends only).
#[async_trait::async_trait]
impl iris_store::GroupStore for FaultyStore {
    async fn create_group(&self, group: iris_store::Group) -> iris_store::StoreResult<iris_store::Group> {
        self.inner.create_group(group).await
    }
    async fn group(&self, id: iris_store::GroupId) -> iris_store::StoreResult<Option<iris_store::Group>> {
        self.inner.group(id).await
    }
    async fn update_group(&self, group: &iris_store::Group) -> iris_store::StoreResult<bool> {
        self.inner.update_group(group).await
    }
    async fn enqueue_group_update(
        &self,
        group: &iris_store::Group,
        events: iris_store::AppendRequest,
    ) -> iris_store::StoreResult<Option<iris_store::PendingAppend>> {
        self.inner.enqueue_group_update(group, events).await
    }
    async fn groups_of(&self, account: iris_store::AccountId) -> iris_store::StoreResult<Vec<iris_store::GroupId>> {
        self.inner.groups_of(account).await
    }
    async fn group_by_invite(&self, token: &str) -> iris_store::StoreResult<Option<iris_store::GroupId>> {
        self.inner.group_by_invite(token).await
    }
    async fn put_group_payload(
        &self,
        group: iris_store::GroupId,
        msg: u64,
        payload: bytes::Bytes,
    ) -> iris_store::StoreResult<()> {
        self.inner.put_group_payload(group, msg, payload).await
    }
    async fn group_payload(
        &self,
        group: iris_store::GroupId,
        msg: u64,
    ) -> iris_store::StoreResult<Option<bytes::Bytes>> {
        self.inner.group_payload(group, msg).await
    }
    async fn start_group_receipts(
        &self,
        group: iris_store::GroupId,
        msg: u64,
        sender: iris_store::AccountId,
        recipients: &[iris_store::AccountId],
    ) -> iris_store::StoreResult<()> {
        self.inner.start_group_receipts(group, msg, sender, recipients).await
    }
    async fn mark_group_receipt(
        &self,
        group: iris_store::GroupId,
        msg: u64,
        account: iris_store::AccountId,
        read: bool,
        now_ms: u64,
    ) -> iris_store::StoreResult<Option<iris_store::ReceiptProgress>> {
        self.inner.mark_group_receipt(group, msg, account, read, now_ms).await
    }
    async fn group_receipts(
        &self,
        group: iris_store::GroupId,
        msg: u64,
    ) -> iris_store::StoreResult<Option<(iris_store::AccountId, Vec<iris_store::GroupReceiptRow>)>> {
        self.inner.group_receipts(group, msg).await
    }
    async fn expire_group_messages(&self, before_msg_id: u64) -> iris_store::StoreResult<u64> {
        self.inner.expire_group_messages(before_msg_id).await
    }
}

/// Blocks are delegated unchanged (faults are injected on appends only).
#[async_trait::async_trait]
impl iris_store::BlockStore for FaultyStore {
    async fn set_blocked(
        &self,
        blocker: iris_store::AccountId,
        blocked: iris_store::AccountId,
        on: bool,
    ) -> iris_store::StoreResult<()> {
        self.inner.set_blocked(blocker, blocked, on).await
    }
    async fn is_blocked(
        &self,
        blocker: iris_store::AccountId,
        blocked: iris_store::AccountId,
    ) -> iris_store::StoreResult<bool> {
        self.inner.is_blocked(blocker, blocked).await
    }
    async fn blocked_by(&self, blocker: iris_store::AccountId) -> iris_store::StoreResult<Vec<iris_store::AccountId>> {
        self.inner.blocked_by(blocker).await
    }
}

/// The message index is delegated unchanged.
#[async_trait::async_trait]
impl iris_store::MessageIndexStore for FaultyStore {
    async fn put_message_ref(&self, server_msg_id: u64, r: iris_store::MessageRef) -> iris_store::StoreResult<()> {
        self.inner.put_message_ref(server_msg_id, r).await
    }
    async fn message_ref(&self, server_msg_id: u64) -> iris_store::StoreResult<Option<iris_store::MessageRef>> {
        self.inner.message_ref(server_msg_id).await
    }
    async fn expire_message_refs(&self, before_msg_id: u64) -> iris_store::StoreResult<u64> {
        self.inner.expire_message_refs(before_msg_id).await
    }
}

/// Contacts are delegated unchanged.
#[async_trait::async_trait]
impl iris_store::ContactStore for FaultyStore {
    async fn set_contacts(
        &self,
        owner: iris_store::AccountId,
        contacts: &[iris_store::AccountId],
        on: bool,
    ) -> iris_store::StoreResult<()> {
        self.inner.set_contacts(owner, contacts, on).await
    }
    async fn contacts(&self, owner: iris_store::AccountId) -> iris_store::StoreResult<Vec<iris_store::AccountId>> {
        self.inner.contacts(owner).await
    }
    async fn is_contact(
        &self,
        owner: iris_store::AccountId,
        contact: iris_store::AccountId,
    ) -> iris_store::StoreResult<bool> {
        self.inner.is_contact(owner, contact).await
    }
    async fn set_presence_privacy(&self, account: iris_store::AccountId, code: u8) -> iris_store::StoreResult<()> {
        self.inner.set_presence_privacy(account, code).await
    }
    async fn presence_privacy(&self, account: iris_store::AccountId) -> iris_store::StoreResult<Option<u8>> {
        self.inner.presence_privacy(account).await
    }
}

/// Media records are delegated unchanged.
#[async_trait::async_trait]
impl iris_store::MediaStore for FaultyStore {
    async fn create_upload(&self, u: iris_store::UploadRecord) -> iris_store::StoreResult<iris_store::UploadRecord> {
        self.inner.create_upload(u).await
    }
    async fn upload(&self, id: iris_store::UploadId) -> iris_store::StoreResult<Option<iris_store::UploadRecord>> {
        self.inner.upload(id).await
    }
    async fn update_upload(
        &self,
        id: iris_store::UploadId,
        offset: u64,
        media: Option<iris_store::MediaId>,
    ) -> iris_store::StoreResult<bool> {
        self.inner.update_upload(id, offset, media).await
    }
    async fn delete_upload(&self, id: iris_store::UploadId) -> iris_store::StoreResult<()> {
        self.inner.delete_upload(id).await
    }
    async fn stale_uploads(&self, before: u64, limit: usize) -> iris_store::StoreResult<Vec<iris_store::UploadRecord>> {
        self.inner.stale_uploads(before, limit).await
    }
    async fn charge_quota(&self, a: iris_store::AccountId, w: u64, b: u64, m: u64) -> iris_store::StoreResult<bool> {
        self.inner.charge_quota(a, w, b, m).await
    }
    async fn put_blob(&self, blob: iris_store::BlobRecord) -> iris_store::StoreResult<bool> {
        self.inner.put_blob(blob).await
    }
    async fn blob(&self, id: iris_store::MediaId) -> iris_store::StoreResult<Option<iris_store::BlobRecord>> {
        self.inner.blob(id).await
    }
    async fn add_media_refs(
        &self,
        msg: u64,
        account: iris_store::AccountId,
        ids: &[iris_store::MediaId],
    ) -> iris_store::StoreResult<Vec<iris_store::MediaId>> {
        self.inner.add_media_refs(msg, account, ids).await
    }
    async fn media_ref_count(&self, id: iris_store::MediaId) -> iris_store::StoreResult<u64> {
        self.inner.media_ref_count(id).await
    }
    async fn expire_media_refs(&self, before_msg_id: u64) -> iris_store::StoreResult<u64> {
        self.inner.expire_media_refs(before_msg_id).await
    }
    async fn release_account_media(&self, account: iris_store::AccountId) -> iris_store::StoreResult<u64> {
        self.inner.release_account_media(account).await
    }
    async fn collectable_blobs(
        &self,
        before: u64,
        limit: usize,
    ) -> iris_store::StoreResult<Vec<iris_store::BlobRecord>> {
        self.inner.collectable_blobs(before, limit).await
    }
    async fn delete_blob(&self, id: iris_store::MediaId, before: u64) -> iris_store::StoreResult<bool> {
        self.inner.delete_blob(id, before).await
    }
}
