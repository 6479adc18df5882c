//! The server under test: a loopback URL given with `--server`, or a child `iris serve --dev`
//! started with `--spawn` (optionally pinned to CPU 0 with `taskset`).

use std::io::BufRead as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
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
/// Server config for spawned servers: no auth rate limits, so hundreds of logins succeed.
const SPAWN_CONFIG: &str = "[rate_limits]\ncode_requests_per_phone_per_hour = 0\n\
code_requests_per_ip_per_hour = 0\nverify_attempts_per_ip_per_minute = 0\n\
sends_per_account_per_minute = 0\nconnections_per_ip_per_minute = 0\n\
concurrent_connections_per_ip = 0\naccepts_per_second = 0\n";

/// The server a bench talks to.
pub struct Target {
    /// Base URL of its HTTP API.
    pub url: String,
    spawned: Mutex<Option<Spawned>>,
}

/// A child server process and what must live as long as it.
struct Spawned {
    child: Child,
    _stdout: ChildStdout,
    _dir: TempDir,
}

impl Target {
    /// Opens the target the flags ask for (spawning it if `--spawn`); pins this process to CPU 1
    /// when `--pin`.
    pub async fn open(args: &CommonArgs) -> anyhow::Result<Self> {
        if args.spawn {
            let (url, spawned) = spawn(args.pin).await?;
            if args.pin {
                pin_self(1);
            }
            return Ok(Self { url, spawned: Mutex::new(Some(spawned)) });
        }
        let url = args.server.clone().unwrap_or_else(|| "http://127.0.0.1:7701".into());
        check_loopback(&url)?;
        Ok(Self { url, spawned: Mutex::new(None) })
    }

    /// The spawned server's resident memory (bytes) and CPU time (s) so far.
    pub fn usage(&self) -> Option<(u64, f64)> {
        let guard = self.spawned.lock().ok()?;
        let pid = guard.as_ref()?.child.id();
        Some((rss_bytes(pid)?, cpu_seconds(pid)?))
    }

    /// Kills the spawned server, if any.
    pub fn stop(&self) {
        if let Some(mut s) = self.spawned.lock().ok().and_then(|mut g| g.take()) {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
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

/// Starts `iris serve --dev` from this executable and waits for its "iris listening" line.
async fn spawn(pin: bool) -> anyhow::Result<(String, Spawned)> {
    let dir = TempDir::new()?;
    let config = dir.path().join("iris.toml");
    std::fs::write(&config, SPAWN_CONFIG)?;
    let http = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let tcp = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let mut cmd = server_command(pin)?;
    cmd.args(["serve", "--dev", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", &tcp.to_string(), "--http", &http.to_string()])
        .env("IRIS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().context("starting iris serve")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let waited = tokio::task::spawn_blocking(move || read_listening(stdout));
    match tokio::time::timeout(Duration::from_secs(30), waited).await {
        Ok(Ok(Ok(stdout))) => Ok((format!("http://{http}"), Spawned { child, _stdout: stdout, _dir: dir })),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("spawned server did not start: {other:?}")
        }
    }
}

/// The command that runs this executable, under `taskset -c 0` when pinning is asked for and
/// available.
fn server_command(pin: bool) -> anyhow::Result<Command> {
    let exe = std::env::current_exe()?;
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
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User plus system CPU time of a process, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`: state is field 3, utime 14 and stime 15 of the whole line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLK_TCK)
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
    }
}
