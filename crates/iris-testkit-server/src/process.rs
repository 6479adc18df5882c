//! The `iris` binary as a child process (`iris serve --dev`), for what only another process can
//! show: kill -9, signals, exit status, resident memory. It binds `127.0.0.1:0` and prints the
//! addresses it bound on its first line; the kit reads them back (no port is probed for
//! beforehand) and pins them, so a restart comes back on the same ports and data directory.
//!
//! Which binary: cargo tells a test crate where its package's binaries are
//! (`CARGO_BIN_EXE_<name>`) and nobody else, so the test crate names it through [`Binary`].

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

use crate::PATIENCE;

/// The `iris` executable a test crate runs: `impl Binary for X { const EXE: &str =
/// env!("CARGO_BIN_EXE_iris"); }`, then `type Process = iris_testkit_server::Process<X>;`.
pub trait Binary {
    /// Path of the executable.
    const EXE: &'static str;
}

/// Config for the binary: no rate limits (tests drive many sends from one loopback IP) and no
/// abuse rules (load tests send to strangers).
const UNLIMITED_CONFIG: &str = "[rate_limits]
code_requests_per_phone_per_hour = 0
code_requests_per_ip_per_hour = 0
verify_attempts_per_ip_per_minute = 0
registrations_per_ip_per_day = 0
sends_per_account_per_minute = 0
connections_per_ip_per_minute = 0
concurrent_connections_per_ip = 0
accepts_per_second = 0

[abuse]
messages_per_account_per_hour = 0
new_recipients_per_day = 0
forward_chats_per_message_per_day = 0
reports_to_suspend = 0
reports_per_account_per_day = 0
";

/// The config file for `extra_toml`: the kit's unlimited `[rate_limits]` with the test's own
/// keys of that table over them, then the rest of `extra_toml`.
fn config_text(extra_toml: &str) -> String {
    let mut config: toml::Table = UNLIMITED_CONFIG.parse().expect("the kit's config parses");
    let extra: toml::Table = extra_toml.parse().expect("the test's extra config is TOML");
    for (table, value) in extra {
        match (config.get_mut(&table), value) {
            (Some(toml::Value::Table(ours)), toml::Value::Table(theirs)) => ours.extend(theirs),
            (_, value) => drop(config.insert(table, value)),
        }
    }
    toml::to_string(&config).expect("a table serialises")
}

/// Both listeners on a port the kernel picks.
const ANY_PORT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// The real `iris serve --dev` binary, restartable on the same ports and data directory; killed
/// (SIGKILL) when dropped.
pub struct Process<B: Binary> {
    child: Option<Child>,
    /// Extra `iris serve` flags (cluster mode: `--store`, `--redis`, `--node-id`, ...).
    pub args: Vec<String>,
    /// The data directory (`--data-dir`).
    pub data_dir: PathBuf,
    config_file: PathBuf,
    /// The framed TCP listener, as bound (port 0 until the first start has read it back).
    pub tcp: SocketAddr,
    /// The HTTP listener, as bound.
    pub http: SocketAddr,
    _dir: TempDir,
    _binary: PhantomData<B>,
}

impl<B: Binary> Process<B> {
    /// Starts `iris serve --dev` on ports of its own and waits until it has bound them.
    pub async fn start() -> Self {
        Self::start_with_config("").await
    }

    /// Like [`Process::start`], with `extra_toml` in the config file; its `[rate_limits]` keys,
    /// if any, replace the kit's (which turn every limit off).
    pub async fn start_with_config(extra_toml: &str) -> Self {
        Self::start_with_args(extra_toml, Vec::new()).await
    }

    /// Like [`Process::start_with_config`], with extra `iris serve` flags.
    pub async fn start_with_args(extra_toml: &str, args: Vec<String>) -> Self {
        Self::start_on(extra_toml, args, ANY_PORT, ANY_PORT).await
    }

    /// Like [`Process::start_with_args`], on the given listen addresses (port 0: any).
    pub async fn start_on(extra_toml: &str, args: Vec<String>, tcp: SocketAddr, http: SocketAddr) -> Self {
        let dir = TempDir::new().expect("a temporary directory");
        let config_file = dir.path().join("iris.toml");
        std::fs::write(&config_file, config_text(extra_toml)).expect("write the config");
        let data_dir = dir.path().join("data");
        let mut p = Self { child: None, args, config_file, data_dir, tcp, http, _dir: dir, _binary: PhantomData };
        p.spawn().await;
        p
    }

    /// Base URL of the HTTP API.
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Starts the binary and reads the addresses it bound from its "iris listening" line (it
    /// prints it once both listeners are bound); pins them for restarts.
    async fn spawn(&mut self) {
        let mut child = Command::new(B::EXE)
            .args(["serve", "--dev", "--config"])
            .arg(&self.config_file)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen", &self.tcp.to_string(), "--http", &self.http.to_string()])
            .args(&self.args)
            // `IRIS_TEST_SERVER_LOG` (a filter such as `iris_server=debug`) to see more.
            .env("IRIS_LOG", std::env::var("IRIS_TEST_SERVER_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the iris binary");
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map(|_| line)
        });
        let line = tokio::time::timeout(PATIENCE, line).await.expect("iris did not start").unwrap().unwrap();
        let (tcp, http) = parse_listening(&line);
        assert!(self.tcp.port() == 0 || self.tcp == tcp, "asked for tcp {}, bound {tcp}", self.tcp);
        assert!(self.http.port() == 0 || self.http == http, "asked for http {}, bound {http}", self.http);
        (self.tcp, self.http) = (tcp, http);
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
        }
    }

    /// Starts the binary again on the same ports and data directory.
    pub async fn restart(&mut self) {
        self.spawn().await;
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
        child.wait().expect("reap")
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal by name (`TERM`, `INT`, ...) without waiting.
    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, failing the test after `within`; returns its status.
    /// Blocking (call it from `spawn_blocking`): a helper thread reaps the child, so the exit
    /// is seen the moment it happens.
    pub fn wait_exit_within(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        let reaper = std::thread::spawn(move || tx.send(child.wait()));
        match rx.recv_timeout(within) {
            Ok(status) => {
                let _ = reaper.join();
                status.expect("reap")
            }
            Err(_) => {
                // Still running: kill it (the reaper then returns) before failing the test.
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                let _ = reaper.join();
                panic!("iris did not exit within {within:?}");
            }
        }
    }

    /// Resident memory of the server process (`VmRSS` in `/proc/<pid>/status`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        rss_bytes_of(self.pid()).expect("read /proc/<pid>/status")
    }
}

impl<B: Binary> Drop for Process<B> {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `iris listening: tcp=ADDR http=http://ADDR` (or `https://`) → the two addresses.
fn parse_listening(line: &str) -> (SocketAddr, SocketAddr) {
    let rest =
        line.trim().strip_prefix("iris listening: tcp=").unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
    let (tcp, http) = rest.split_once(" http=").unwrap_or_else(|| panic!("no http address in {line:?}"));
    let http = http.trim_start_matches("https://").trim_start_matches("http://");
    let parse = |a: &str| a.parse().unwrap_or_else(|e| panic!("bad address {a:?} in {line:?}: {e}"));
    (parse(tcp), parse(http))
}

/// `VmRSS` of process `pid` in bytes, `None` if it is gone.
pub fn rss_bytes_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_gives_both_bound_addresses() {
        // Proves: the addresses are read back from what `iris serve` prints, not guessed.
        let (tcp, http) = parse_listening("iris listening: tcp=127.0.0.1:41234 http=http://127.0.0.1:41235\n");
        assert_eq!((tcp.port(), http.port()), (41234, 41235));
    }
}
