//! The server under test: a loopback URL given with `--server`, or a child `iris serve --dev`
//! started with `--spawn` (optionally pinned to CPU 0 with `taskset`). `iris fire` uses the same
//! [`ServerProcess`] to kill -9 and restart a server on the same ports and data.

use std::io::BufRead as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tempfile::TempDir;

use super::CommonArgs;

/// Where `taskset` is looked for.
const TASKSET: &str = "/usr/bin/taskset";
/// Linux clock ticks per second for `/proc/PID/stat` times.
const CLK_TCK: f64 = 100.0;
/// Longest a spawned server may take to print its "iris listening" line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a `--phase-cmd` may take (reading a few servers' counters takes well under a second).
const PHASE_CMD_TIMEOUT: Duration = Duration::from_secs(120);
/// Server config for spawned servers: no rate limits, so thousands of logins succeed, and no
/// abuse rules, so generated accounts may send thousands of messages to strangers.
const SPAWN_CONFIG: &str = "[rate_limits]\ncode_requests_per_phone_per_hour = 0\n\
code_requests_per_ip_per_hour = 0\nverify_attempts_per_ip_per_minute = 0\n\
registrations_per_ip_per_day = 0\n\
sends_per_account_per_minute = 0\nconnections_per_ip_per_minute = 0\n\
concurrent_connections_per_ip = 0\naccepts_per_second = 0\n\
[abuse]\nmessages_per_account_per_hour = 0\nnew_recipients_per_day = 0\n\
forward_chats_per_message_per_day = 0\nreports_to_suspend = 0\nreports_per_account_per_day = 0\n";

/// The server a bench talks to: an Iris server (by its HTTP URL), or a bench sink (by its TCP
/// address; it has no HTTP API, so only the raw-client scenarios can use it).
pub struct Target {
    /// Base URL of its HTTP API (empty for a sink).
    pub url: String,
    /// A sink's framed TCP address.
    pub sink: Option<SocketAddr>,
    spawned: Mutex<Option<Spawned>>,
    /// `--phase-cmd`: run at the edges of a measured phase, so a script can read the store's
    /// and Redis's counters around exactly the messages (or connects) of a run.
    phase_cmd: Option<String>,
}

/// A child process the bench started and must stop.
enum Spawned {
    Server(ServerProcess),
    Sink(Child),
}

impl Spawned {
    fn pid(&self) -> Option<u32> {
        match self {
            Self::Server(s) => s.pid(),
            Self::Sink(c) => Some(c.id()),
        }
    }
}

impl Target {
    /// Opens the target the flags ask for (spawning it if `--spawn` or `--spawn-sink`); pins
    /// this process to CPU 1 when `--pin`.
    pub async fn open(args: &CommonArgs) -> anyhow::Result<Self> {
        if args.spawn_sink {
            let (child, addr) = spawn_sink(args.pin).await?;
            if args.pin {
                pin_self(1);
            }
            return Ok(Self {
                url: String::new(),
                sink: Some(addr),
                spawned: Mutex::new(Some(Spawned::Sink(child))),
                phase_cmd: None,
            });
        }
        if let Some(addr) = args.sink {
            if !addr.ip().is_loopback() {
                bail!("iris bench only targets loopback (127.0.0.0/8), not {}", addr.ip());
            }
            return Ok(Self { url: String::new(), sink: Some(addr), spawned: Mutex::new(None), phase_cmd: None });
        }
        if args.spawn {
            let server = ServerProcess::start(SpawnOptions { pin: args.pin, ..SpawnOptions::default() }).await?;
            if args.pin {
                pin_self(1);
            }
            return Ok(Self {
                url: server.url(),
                sink: None,
                spawned: Mutex::new(Some(Spawned::Server(server))),
                phase_cmd: args.phase_cmd.clone(),
            });
        }
        let url = args.server.clone().unwrap_or_else(|| "http://127.0.0.1:7701".into());
        for node in super::harness::server_urls(&url) {
            check_loopback(node)?;
        }
        Ok(Self { url, sink: None, spawned: Mutex::new(None), phase_cmd: args.phase_cmd.clone() })
    }

    /// Runs `--phase-cmd` (through `sh -c`, with `IRIS_BENCH_PHASE=name`) and waits for it, at
    /// most [`PHASE_CMD_TIMEOUT`]; the load is quiet meanwhile. A failure is reported on stderr
    /// and the run goes on: the command only observes.
    pub async fn phase(&self, name: &str) {
        let Some(cmd) = &self.phase_cmd else { return };
        let spawned = Command::new("sh").arg("-c").arg(cmd).env("IRIS_BENCH_PHASE", name).stdout(Stdio::null()).spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                eprintln!("--phase-cmd could not start at phase {name}: {e}");
                return;
            }
        };
        let deadline = std::time::Instant::now() + PHASE_CMD_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return,
                Ok(Some(status)) => return eprintln!("--phase-cmd at phase {name}: {status}"),
                Ok(None) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return eprintln!("--phase-cmd at phase {name}: no exit within {PHASE_CMD_TIMEOUT:?}, killed");
                }
                Err(e) => return eprintln!("--phase-cmd at phase {name}: {e}"),
            }
        }
    }

    /// Refuses a sink for scenarios that need a real server (logins, groups, the SDK).
    pub fn require_server(&self, what: &str) -> anyhow::Result<()> {
        if self.sink.is_some() {
            bail!("{what} needs an Iris server (--spawn or --server), not a bench sink");
        }
        Ok(())
    }

    /// The spawned process's resident memory (bytes) and CPU time (s) so far.
    pub fn usage(&self) -> Option<(u64, f64)> {
        let guard = self.spawned.lock().ok()?;
        let pid = guard.as_ref()?.pid()?;
        Some((rss_bytes(pid)?, cpu_seconds(pid)?))
    }

    /// The spawned process's CPU time (s) so far.
    pub fn cpu_s(&self) -> Option<f64> {
        self.usage().map(|(_, cpu)| cpu)
    }

    /// SIGKILLs the spawned server and starts it again on the same ports and data; returns how
    /// long the new process took until it listened (recovery included).
    pub async fn kill9_and_restart(&self) -> anyhow::Result<Duration> {
        let taken = self.spawned.lock().ok().and_then(|mut g| g.take());
        let Some(Spawned::Server(mut server)) = taken else {
            bail!("only a server started with --spawn can be killed and restarted");
        };
        server.kill9();
        let started = std::time::Instant::now();
        let restarted = server.restart().await;
        let took = started.elapsed();
        if let Ok(mut g) = self.spawned.lock() {
            *g = Some(Spawned::Server(server));
        }
        restarted.map(|()| took)
    }

    /// Kills the spawned process, if any.
    pub fn stop(&self) {
        match self.spawned.lock().ok().and_then(|mut g| g.take()) {
            Some(Spawned::Server(mut s)) => s.kill9(),
            Some(Spawned::Sink(mut c)) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            None => {}
        }
    }
}

/// Starts `iris bench sink` (this executable) on a free loopback port, under `taskset -c 0`
/// when pinning; returns it and its address.
async fn spawn_sink(pin: bool) -> anyhow::Result<(Child, SocketAddr)> {
    let mut cmd = server_command(pin)?;
    cmd.args(["bench", "sink", "--listen", "127.0.0.1:0"]).stdin(Stdio::null()).stdout(Stdio::piped());
    let mut child = cmd.spawn().context("starting iris bench sink")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let read = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let addr = line.trim().strip_prefix(super::sink::LISTENING).context("unexpected first line")?;
        addr.parse::<SocketAddr>().context("sink address")
    });
    match tokio::time::timeout(START_TIMEOUT, read).await {
        Ok(Ok(Ok(addr))) => Ok((child, addr)),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("spawned sink did not start: {other:?}")
        }
    }
}

/// How to start a server process.
#[derive(Default, Clone)]
pub struct SpawnOptions {
    /// Run it under `taskset -c 0`.
    pub pin: bool,
    /// TOML appended to the spawn config (sections other than `[rate_limits]` and `[abuse]`).
    pub extra_config: String,
    /// Data directory (default: inside the process's own temporary directory), e.g. on a tmpfs.
    pub data_dir: Option<PathBuf>,
    /// Write the server's log to `server.log` in its temporary directory instead of this
    /// process's stderr.
    pub log_to_file: bool,
}

/// A child `iris serve --dev` that can be killed and restarted on the same ports and data.
pub struct ServerProcess {
    child: Option<(Child, ChildStdout)>,
    opts: SpawnOptions,
    dir: TempDir,
    /// The HTTP API address.
    pub http: SocketAddr,
    /// The framed TCP address.
    pub tcp: SocketAddr,
}

impl ServerProcess {
    /// Writes the config, picks free loopback ports and starts the server.
    pub async fn start(opts: SpawnOptions) -> anyhow::Result<Self> {
        let dir = TempDir::new()?;
        std::fs::write(dir.path().join("iris.toml"), format!("{SPAWN_CONFIG}{}", opts.extra_config))?;
        let http = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let tcp = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let mut server = Self { child: None, opts, dir, http, tcp };
        server.restart().await?;
        Ok(server)
    }

    /// Base URL of the HTTP API.
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.opts.data_dir.clone().unwrap_or_else(|| self.dir.path().join("data"))
    }

    /// Where the log goes with `log_to_file`.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|(c, _)| c.id())
    }

    /// Resident memory of the running server, in bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_bytes(self.pid()?)
    }

    /// Whether the process has exited on its own.
    pub fn exited(&mut self) -> bool {
        self.child.as_mut().is_some_and(|(c, _)| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// SIGKILL, then reap; nothing of the server gets to run after this.
    pub fn kill9(&mut self) {
        if let Some((mut child, _)) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same ports, config and data, and waits until it listens.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        let mut cmd = server_command(self.opts.pin)?;
        cmd.args(["serve", "--dev", "--config"])
            .arg(self.dir.path().join("iris.toml"))
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--listen", &self.tcp.to_string(), "--http", &self.http.to_string()])
            .env("IRIS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        if self.opts.log_to_file {
            cmd.stderr(std::fs::OpenOptions::new().create(true).append(true).open(self.log_path())?);
        } else {
            cmd.stderr(Stdio::inherit());
        }
        let mut child = cmd.spawn().context("starting iris serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let waited = tokio::task::spawn_blocking(move || read_listening(stdout));
        match tokio::time::timeout(START_TIMEOUT, waited).await {
            Ok(Ok(Ok(stdout))) => {
                self.child = Some((child, stdout));
                Ok(())
            }
            other => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("spawned server did not start: {other:?}")
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Refuses any server that is not on the loopback interface.
fn check_loopback(url: &str) -> anyhow::Result<()> {
    let rest = url.strip_prefix("http://").context("--server must be an http:// URL")?;
    let host = rest.split(['/', ':']).next().unwrap_or("");
    if host != "127.0.0.1" && host != "localhost" {
        bail!("iris bench only targets 127.0.0.1 or localhost, not {host:?}");
    }
    Ok(())
}

/// A free loopback port (bound then released).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// Names another `iris` executable for `--spawn` to start instead of this one, so a before/after
/// comparison drives two server builds with the same generator (BENCHMARKS.md). The other build
/// must accept `serve --dev --config --data-dir --listen --http` and the rate-limit config above.
pub const SERVER_EXE_ENV: &str = "IRIS_BENCH_SERVER_EXE";

/// The command that runs the server executable (this one, or [`SERVER_EXE_ENV`]'s), under
/// `taskset -c 0` when pinning is asked for and available.
fn server_command(pin: bool) -> anyhow::Result<Command> {
    let exe = match std::env::var_os(SERVER_EXE_ENV) {
        Some(other) => PathBuf::from(other),
        None => std::env::current_exe()?,
    };
    if pin && Path::new(TASKSET).exists() {
        let mut cmd = Command::new(TASKSET);
        cmd.args(["-c", "0"]).arg(exe);
        return Ok(cmd);
    }
    if pin {
        eprintln!("note: {TASKSET} not found; --pin ignored");
    }
    Ok(Command::new(exe))
}

/// Reads the first stdout line and checks that it is the "iris listening" line.
fn read_listening(stdout: ChildStdout) -> anyhow::Result<ChildStdout> {
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if !line.starts_with("iris listening") {
        bail!("unexpected first line from iris serve: {line:?}");
    }
    Ok(reader.into_inner())
}

/// Pins every thread of this process to `cpu` with `taskset -a -p` (new threads inherit it).
fn pin_self(cpu: usize) {
    let pid = std::process::id().to_string();
    let ok = Command::new(TASKSET)
        .args(["-a", "-c", "-p", &cpu.to_string(), &pid])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("note: could not pin the bench to CPU {cpu}");
    }
}

/// `VmRSS` of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User plus system CPU time of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// User plus system CPU time from a `/proc/…/stat` file (of a process or of one thread).
pub fn stat_cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the `(comm)`: state is field 3, utime 14 and stime 15 of the whole line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLK_TCK)
}

/// The soft limit on open files of this process (`/proc/self/limits`), if readable.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_servers_are_accepted() {
        assert!(check_loopback("http://127.0.0.1:7701").is_ok());
        assert!(check_loopback("http://localhost:7701/").is_ok());
        assert!(check_loopback("http://10.0.0.1:7701").is_err());
        assert!(check_loopback("https://127.0.0.1").is_err());
    }

    #[test]
    fn own_process_usage_is_readable() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 0);
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(open_files_limit().unwrap() > 0);
    }
}
