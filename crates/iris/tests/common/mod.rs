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
use tempfile::TempDir;

/// How long a test waits for something that should happen quickly.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A server running inside the test process.
pub struct InProcess {
    pub server: Option<iris_server::RunningServer>,
    pub config: Config,
    _dir: TempDir,
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
        let server = iris_server::start(config.clone(), Default::default()).await.unwrap();
        // Pin the ports so a restart comes back where clients look for it.
        config.listen = server.tcp_addr;
        config.http = server.http_addr;
        Self { server: Some(server), config, _dir: dir }
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
    pub data_dir: PathBuf,
    config_file: PathBuf,
    pub tcp: SocketAddr,
    pub http: SocketAddr,
    _dir: TempDir,
}

impl Process {
    /// Starts `iris serve --dev` on free ports and waits until it answers `/readyz`.
    pub async fn start() -> Self {
        let dir = TempDir::new().unwrap();
        let config_file = dir.path().join("iris.toml");
        std::fs::write(&config_file, UNLIMITED_CONFIG).unwrap();
        let mut p = Self {
            child: None,
            config_file,
            data_dir: dir.path().join("data"),
            tcp: SocketAddr::from(([127, 0, 0, 1], free_port())),
            http: SocketAddr::from(([127, 0, 0, 1], free_port())),
            _dir: dir,
        };
        p.spawn().await;
        p
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
