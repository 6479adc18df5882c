//! Test kit for end-to-end tests through the SDK: an in-process server (restartable on the same
//! ports and data directory) or the real `iris` binary (for kill -9), logins and receive helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use iris_client::api::Credentials;
use iris_client::pb::InboxItem;
use iris_client::{Client, ClientConfig, Event, Events, HttpApi};
use iris_server::config::Config;
use iris_testkit::engine::ClusterEngine;
use tempfile::TempDir;

/// How long a test waits for something that should happen quickly.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A server running inside the test process.
pub struct InProcess {
    pub server: Option<iris_server::RunningServer>,
    pub config: Config,
    _dir: TempDir,
    _engine: Option<ClusterEngine>,
}

/// With `IRIS_TEST_ENGINE=cluster`, points `config` at fresh PostgreSQL databases and a Redis
/// namespace of its own (kept alive by the returned value); else leaves the embedded store.
pub fn apply_engine(c: &mut Config) -> Option<ClusterEngine> {
    let engine = iris_testkit::engine::from_env()?;
    (c.cluster.store_urls, c.cluster.redis_urls) = (engine.store_urls(), engine.redis_urls());
    c.cluster.namespace = engine.namespace().to_owned();
    c.auth.token_key_hex = Some(engine.token_key_hex());
    Some(engine)
}

/// A config for tests: dev mode, ephemeral loopback ports, no auth rate limits.
pub fn test_config(data_dir: &Path) -> Config {
    let mut c = Config { dev: true, data_dir: data_dir.to_owned(), ..Config::default() };
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.http = "127.0.0.1:0".parse().unwrap();
    c.rate_limits = iris_server::config::RateLimitConfig::unlimited();
    c
}

impl InProcess {
    /// Starts a server on fresh ports and a fresh data directory.
    pub async fn start() -> Self {
        let dir = TempDir::new().unwrap();
        let mut config = test_config(dir.path());
        let engine = apply_engine(&mut config);
        let server = iris_server::start(config.clone(), Default::default()).await.unwrap();
        // Pin the ports so a restart comes back where clients look for it.
        config.listen = server.tcp_addr;
        config.http = server.http_addr;
        Self { server: Some(server), config, _dir: dir, _engine: engine }
    }

    /// Base URL of the HTTP API.
    pub fn url(&self) -> String {
        format!("http://{}", self.config.http)
    }

    /// Graceful shutdown, then a fresh start on the same ports and data.
    pub async fn restart(&mut self) {
        self.server.take().unwrap().shutdown().await;
        self.server = Some(iris_server::start(self.config.clone(), Default::default()).await.unwrap());
    }
}

/// Registers a device for `phone` with the dev code.
pub async fn login(url: &str, phone: &str, device_name: &str) -> Credentials {
    let http = HttpApi::new(url).unwrap();
    http.request_code(phone).await.unwrap();
    http.verify(phone, "000000", device_name).await.unwrap()
}

/// Connects a device with fast reconnects.
pub async fn connect(url: &str, creds: &Credentials) -> (Client, Events) {
    let mut config = ClientConfig::new(url, creds.clone());
    config.reconnect.initial_delay = Duration::from_millis(20);
    config.reconnect.max_delay = Duration::from_millis(300);
    Client::connect(config).await.unwrap()
}

/// Receives `n` messages (ignoring receipts and connection events), acking each.
pub async fn recv_messages(client: &Client, events: &mut Events, n: usize) -> Vec<InboxItem> {
    let mut got = Vec::new();
    while got.len() < n {
        let event = tokio::time::timeout(PATIENCE, events.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} messages arrived", got.len()))
            .expect("event stream ended");
        if let Event::Message(item) = event {
            client.ack(item.seq);
            got.push(item);
        }
    }
    got
}

/// Receives events until `pred` matches one, acking inbox items on the way.
pub async fn recv_until(client: &Client, events: &mut Events, mut pred: impl FnMut(&Event) -> bool) -> Event {
    loop {
        let event = tokio::time::timeout(PATIENCE, events.next()).await.expect("timed out").expect("stream ended");
        if let Some(seq) = event.seq() {
            client.ack(seq);
        }
        if pred(&event) {
            return event;
        }
    }
}

/// Asserts that no message arrives within `wait`.
pub async fn expect_no_message(events: &mut Events, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.next()).await {
        assert!(!matches!(event, Event::Message(_)), "unexpected message: {event:?}");
    }
}

/// A free loopback port (bound then released; good enough for a test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Config for the binary: no rate limits (tests drive many sends from one loopback IP).
const UNLIMITED_CONFIG: &str = "[rate_limits]
code_requests_per_phone_per_hour = 0
code_requests_per_ip_per_hour = 0
verify_attempts_per_ip_per_minute = 0
sends_per_account_per_minute = 0
connections_per_ip_per_minute = 0
concurrent_connections_per_ip = 0
accepts_per_second = 0
";

/// The real `iris serve --dev` binary, restartable on the same ports and data directory.
pub struct Process {
    child: Option<Child>,
    /// Extra `iris serve` flags (cluster mode: `--store`, `--redis`, `--node-id`, ...).
    pub args: Vec<String>,
    pub data_dir: PathBuf,
    config_file: PathBuf,
    pub tcp: SocketAddr,
    pub http: SocketAddr,
    _dir: TempDir,
}

impl Process {
    /// Starts `iris serve --dev` on free ports and waits until it has bound them.
    pub async fn start() -> Self {
        Self::start_with_config("").await
    }

    /// Base URL of the HTTP API.
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    async fn spawn(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_iris"))
            .args(["serve", "--dev", "--config"])
            .arg(&self.config_file)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen", &self.tcp.to_string(), "--http", &self.http.to_string()])
            .args(&self.args)
            .env("IRIS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // `iris serve` prints its "listening" line once both listeners are bound.
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map(|_| line)
        });
        let line = tokio::time::timeout(PATIENCE, line).await.expect("iris did not start").unwrap().unwrap();
        assert!(line.starts_with("iris listening"), "unexpected first line: {line:?}");
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts the binary again on the same ports and data directory.
    pub async fn restart(&mut self) {
        self.spawn().await;
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        child.wait().unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

// -------------------------------------------------------------------------------------------------
// The binary with extra configuration, signals and memory
// -------------------------------------------------------------------------------------------------

impl Process {
    /// Like [`Process::start`], with `extra_toml` appended to the config file (any table but
    /// `[rate_limits]`, which the kit already writes with every limit off).
    pub async fn start_with_config(extra_toml: &str) -> Self {
        Self::start_with_args(extra_toml, Vec::new()).await
    }

    /// Like [`Process::start_with_config`], with extra `iris serve` flags.
    pub async fn start_with_args(extra_toml: &str, args: Vec<String>) -> Self {
        let tcp = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Self::start_on(extra_toml, args, tcp, http).await
    }

    /// Like [`Process::start_with_args`], on the given listen addresses.
    pub async fn start_on(extra_toml: &str, args: Vec<String>, tcp: SocketAddr, http: SocketAddr) -> Self {
        let dir = TempDir::new().unwrap();
        let config_file = dir.path().join("iris.toml");
        std::fs::write(&config_file, format!("{UNLIMITED_CONFIG}\n{extra_toml}")).unwrap();
        let mut p = Self { child: None, args, config_file, data_dir: dir.path().join("data"), tcp, http, _dir: dir };
        p.spawn().await;
        p
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal by name (`TERM`, `INT`, ...) without waiting.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status().unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, failing the test after `within`; returns its status.
    pub fn wait_exit_within(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "iris did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Resident memory of the server process (`VmRSS` in `/proc/<pid>/status`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        rss_bytes_of(self.pid()).expect("read /proc/<pid>/status")
    }
}

/// `VmRSS` of process `pid` in bytes, `None` if it is gone.
pub fn rss_bytes_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The value of one sample (`name{labels}` exactly as exposed) in a Prometheus text page; 0 when
/// absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse::<f64>().unwrap())
        })
        .unwrap_or(0.0)
}

/// `GET <url>/metrics` as text.
pub async fn scrape_metrics(url: &str) -> String {
    let (status, body) = http_get(url, "/metrics").await;
    assert_eq!(status, 200, "GET /metrics: {body}");
    body
}

/// A minimal `GET` over HTTP/1.0 (the test crate has no HTTP client of its own): status and body.
/// Returns status 0 when the server refuses the connection.
pub async fn http_get(url: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = url.trim_start_matches("http://");
    let Ok(mut stream) = tokio::net::TcpStream::connect(host).await else { return (0, String::new()) };
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut response = Vec::new();
    if stream.read_to_end(&mut response).await.is_err() {
        return (0, String::new());
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

// -------------------------------------------------------------------------------------------------
// A raw device: frames by hand, so a test controls exactly when (and whether) it reads
// -------------------------------------------------------------------------------------------------

/// A device connected over raw framed TCP: it sends `Hello` and then only what the test says;
/// bytes the server sends stay in the socket until the test reads them.
pub struct RawDevice {
    stream: tokio::net::TcpStream,
    read_buf: bytes::BytesMut,
    decoder: iris_proto::FrameDecoder,
    pending: std::collections::VecDeque<iris_client::pb::ServerEvent>,
}

impl RawDevice {
    /// Connects to `tcp` and completes the handshake as `creds`; returns after the `Welcome`
    /// (events that came in the same frame stay queued for [`RawDevice::next_event`]).
    pub async fn connect(tcp: SocketAddr, creds: &Credentials) -> Self {
        use iris_client::pb::{client_op, server_event};
        let stream = tokio::net::TcpStream::connect(tcp).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut device = Self {
            stream,
            read_buf: bytes::BytesMut::new(),
            // Server frames are not bounded by the announced (client) frame limit.
            decoder: iris_proto::FrameDecoder::new(256 << 20),
            pending: Default::default(),
        };
        let hello = iris_client::pb::Hello {
            versions: vec![iris_proto::version::CURRENT],
            token: creds.access_token.clone(),
            device_id: creds.device_id,
            capabilities: vec![],
            resume_after_seq: 0,
        };
        device.send_ops(vec![iris_client::pb::ClientOp { request_id: 1, op: Some(client_op::Op::Hello(hello)) }]).await;
        let first = device.next_event(PATIENCE).await.expect("Welcome");
        assert!(matches!(first.event, Some(server_event::Event::Welcome(_))), "expected Welcome, got {first:?}");
        device
    }

    /// Sends one frame with `ops`.
    pub async fn send_ops(&mut self, ops: Vec<iris_client::pb::ClientOp>) {
        use tokio::io::AsyncWriteExt;
        let bytes = iris_proto::frame::encode_to_bytes(&iris_client::pb::ClientFrame { ops });
        self.stream.write_all(&bytes).await.unwrap();
    }

    /// Sends a cumulative ack.
    pub async fn ack(&mut self, up_to_seq: u64) {
        use iris_client::pb::{client_op, Ack, ClientOp};
        self.send_ops(vec![ClientOp { request_id: 0, op: Some(client_op::Op::Ack(Ack { up_to_seq })) }]).await;
    }

    /// The next event from the server, `None` once it closed the connection (or reset it);
    /// fails the test if nothing arrives within `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> Option<iris_client::pb::ServerEvent> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if let Some(body) = self.decoder.decode(&mut self.read_buf).unwrap() {
                let frame: iris_client::pb::ServerFrame = iris_proto::frame::decode_body(&body).unwrap();
                self.pending.extend(frame.events);
                continue;
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.read_buf))
                .await
                .unwrap_or_else(|_| panic!("no event from the server within {wait:?}"));
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads and acks deliveries until `n` inbox items arrived; returns them in order. Fails on
    /// a repeated or out-of-order seq.
    pub async fn receive_and_ack(&mut self, n: usize) -> Vec<InboxItem> {
        use iris_client::pb::server_event;
        let mut items: Vec<InboxItem> = Vec::with_capacity(n);
        while items.len() < n {
            let event = self.next_event(PATIENCE).await.expect("the server closed the connection");
            let Some(server_event::Event::Delivery(d)) = event.event else { continue };
            for item in d.items {
                let last = items.last().map_or(0, |i| i.seq);
                assert!(item.seq > last, "seq {} after {last}: repeated or out of order", item.seq);
                items.push(item);
            }
            let last = items.last().map_or(0, |i| i.seq);
            self.ack(last).await;
        }
        assert_eq!(items.len(), n, "more items than expected");
        items
    }
}

// -------------------------------------------------------------------------------------------------
// A configurable in-process server and connected devices (groups, presence, contacts, actions)
// -------------------------------------------------------------------------------------------------

/// A server whose config (and, with [`Server::start_with_manual_clock`], clock) the test chooses.
pub struct Server {
    pub server: iris_server::RunningServer,
    /// Moves time for window checks; `None` on the real clock.
    pub clock: Option<std::sync::Arc<iris_server::clock::ManualClock>>,
    _dir: TempDir,
    _engine: Option<ClusterEngine>,
}

impl Server {
    /// Starts with `tweak` applied to [`test_config`].
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::boot(tweak, None).await
    }

    /// Like [`Server::start`], on a clock that only moves when the test advances it.
    pub async fn start_with_manual_clock(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::boot(tweak, Some(std::sync::Arc::new(iris_server::clock::ManualClock::new()))).await
    }

    async fn boot(
        tweak: impl FnOnce(&mut Config),
        clock: Option<std::sync::Arc<iris_server::clock::ManualClock>>,
    ) -> Self {
        let dir = TempDir::new().unwrap();
        let mut config = test_config(dir.path());
        let engine = apply_engine(&mut config);
        tweak(&mut config);
        let mut deps = iris_server::Dependencies::default();
        if let Some(c) = &clock {
            deps.clock = c.clone();
        }
        let server = iris_server::start(config, deps).await.unwrap();
        Self { server, clock, _dir: dir, _engine: engine }
    }

    /// Base URL of the HTTP API.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.http_addr)
    }

    /// Moves the manual clock forward.
    pub fn advance_ms(&self, ms: u64) {
        self.clock.as_ref().expect("started with a manual clock").advance_ms(ms);
    }
}

/// One logged-in, connected device.
pub struct Dev {
    pub creds: Credentials,
    pub client: Client,
    pub events: Events,
}

impl Dev {
    /// Logs in `phone` (a new device) and connects it.
    pub async fn new(url: &str, phone: &str) -> Self {
        let creds = login(url, phone, "d").await;
        let (client, events) = connect(url, &creds).await;
        Self { creds, client, events }
    }

    /// Like [`Dev::new`], but refusals are not retried, so they reach the test at once.
    pub async fn without_retries(url: &str, phone: &str) -> Self {
        let creds = login(url, phone, "d").await;
        Self::without_retries_with(url, creds).await
    }

    /// Connects an already logged-in device whose refusals are not retried.
    pub async fn without_retries_with(url: &str, creds: Credentials) -> Self {
        let mut config = ClientConfig::new(url, creds.clone());
        config.retry.max_attempts = 1;
        let (client, events) = Client::connect(config).await.unwrap();
        Self { creds, client, events }
    }

    /// The device's account id.
    pub fn id(&self) -> u64 {
        self.creds.account_id
    }
}
