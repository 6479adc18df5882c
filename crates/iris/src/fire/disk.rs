//! disk pressure: the server's data directory on a small tmpfs that a filler file then nearly
//! fills. Sends must fail cleanly (a typed error, no hang) once the disk is full, and no ACCEPTED
//! message may be lost — delivered at once, or after the space is freed and the server restarted
//! (fjall refuses writes after a failed write until the process restarts). SKIP when tmpfs
//! cannot be mounted here.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iris_client::pb::SendStatus;
use iris_client::{ClientConfig, Recipient, RetryPolicy};
use tempfile::TempDir;
use tokio::time::Instant;

use super::kit::{self, Received};
use super::{Line, Outcome, Sizes};
use crate::bench::server::{ServerProcess, SpawnOptions};
use crate::bench::{harness, storm};

/// Size of the tmpfs.
const TMPFS_MIB: u64 = 64;
/// Space left free by the filler.
const HEADROOM_MIB: u64 = 4;
/// Payload of each send (fills the headroom in about a thousand sends).
const PAYLOAD_BYTES: usize = 4096;
/// Longest one send may take before it counts as a hang.
const SEND_LIMIT: Duration = Duration::from_secs(15);
/// Longest the filling phase may take, and the most failures it waits for.
const FILL_LIMIT: Duration = Duration::from_secs(60);
const FAILURES_WANTED: u64 = 50;

/// A mounted tmpfs, unmounted on drop.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn mount() -> Result<Self, String> {
        let dir = TempDir::new().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_MIB}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount -t tmpfs failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Runs the test.
pub async fn run(_sizes: Sizes) -> anyhow::Result<Line> {
    let fs = match Tmpfs::mount() {
        Ok(fs) => fs,
        Err(why) => return Ok(Line { name: "disk-pressure", outcome: Outcome::Skip, figure: why }),
    };
    let opts = SpawnOptions { data_dir: Some(fs.path().join("data")), log_to_file: true, ..Default::default() };
    let mut server = ServerProcess::start(opts).await?;
    let result = fill_and_check(&mut server, fs.path()).await;
    drop(server);
    drop(fs);
    result
}

async fn fill_and_check(server: &mut ServerProcess, mount: &Path) -> anyhow::Result<Line> {
    let creds = harness::login_all(&server.url(), 0, 2).await?;
    let received = Arc::new(Received::default());
    let (rc, re) = kit::connect(server, creds[0].clone()).await?;
    let collector = kit::collect(rc.clone(), re, received.clone());
    let mut config = ClientConfig::new(server.url(), creds[1].clone());
    config.tcp_addr = Some(server.tcp.to_string());
    config.retry = RetryPolicy { max_attempts: 1, default_delay: Duration::from_millis(10), ..Default::default() };
    let (sender, _se) = iris_client::Client::connect(config).await?;
    let filler = fill(mount)?;

    let accepted: Mutex<HashMap<String, (u64, u64)>> = Mutex::default();
    let (mut failures, mut hangs, mut codes) = (0u64, 0u64, HashMap::<String, u64>::new());
    let end = Instant::now() + FILL_LIMIT;
    let mut i = 0u64;
    while failures < FAILURES_WANTED && hangs == 0 && Instant::now() < end {
        let id = format!("d{i}");
        i += 1;
        let send = sender.send_with_id(Recipient::Account(creds[0].account_id), id.clone(), vec![7u8; PAYLOAD_BYTES]);
        match kit::within(SEND_LIMIT, send).await {
            Some(Ok(r)) if r.status == SendStatus::Accepted as i32 => {
                accepted.lock().expect("lock").insert(id, (creds[0].account_id, r.server_msg_id));
            }
            Some(Ok(_)) => failures += 1,
            Some(Err(e)) => {
                failures += 1;
                *codes.entry(e.code_name().to_owned()).or_default() += 1;
            }
            None => hangs += 1,
        }
    }
    let crashed = server.exited();
    let accepted = accepted.into_inner().expect("lock");
    let n = accepted.len();
    let at_once = kit::wait_until(Duration::from_secs(10), || received.len() >= n).await;
    let mut recovered = true;
    if !at_once {
        std::fs::remove_file(&filler)?;
        server.restart().await?;
        recovered = kit::wait_until(Duration::from_secs(60), || received.len() >= n).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    collector.abort();
    harness::close_all(&[rc, sender]).await;
    let (lost, duplicates, delivered) = storm::check(&accepted, &received.messages.lock().expect("lock"));
    let repeats = received.repeats.load(Relaxed);
    let ok = failures > 0 && hangs == 0 && !crashed && lost == 0 && duplicates == 0 && repeats == 0;
    let mut codes: Vec<_> = codes.into_iter().map(|(c, k)| format!("{c}×{k}")).collect();
    codes.sort();
    let figure = format!(
        "{TMPFS_MIB} MiB tmpfs, {HEADROOM_MIB} MiB left: {n} accepted then {failures} failed ({}){}{}; \
         {delivered}/{n} delivered {} ({lost} lost, {} repeated)",
        if codes.is_empty() { "no error code".into() } else { codes.join(", ") },
        if hangs > 0 { format!(", {hangs} send(s) hung > {} s", SEND_LIMIT.as_secs()) } else { String::new() },
        if crashed { ", server process exited" } else { "" },
        if at_once {
            "at once"
        } else if recovered {
            "after freeing space and a restart"
        } else {
            "even after a restart"
        },
        duplicates + repeats
    );
    Ok(Line::check("disk-pressure", ok, figure))
}

/// Fills the tmpfs with a file, then gives back [`HEADROOM_MIB`]; returns the file's path.
fn fill(mount: &Path) -> anyhow::Result<PathBuf> {
    let path = mount.join("filler");
    let mut f = std::fs::File::create(&path)?;
    let chunk = vec![0u8; 1024 * 1024];
    let mut written = 0u64;
    for _ in 0..TMPFS_MIB {
        if f.write_all(&chunk).is_err() {
            break;
        }
        written += chunk.len() as u64;
    }
    f.set_len(written.saturating_sub(HEADROOM_MIB * 1024 * 1024))?;
    Ok(path)
}
