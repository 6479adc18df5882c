//! A real Redis Cluster for tests: 3 primaries and 3 replicas of Debian's `redis-server` in a
//! temporary directory on free loopback ports, joined with `redis-cli --cluster create`, with a
//! short `cluster-node-timeout` so a replica takes over a killed primary within seconds.
//!
//! **Shared mode:** when `IRIS_TEST_REDIS_URLS` is set (comma-separated `redis://host:port`), the
//! tests use that running cluster instead and isolate themselves by namespace;
//! [`RedisCluster::start_private`] still starts one of its own for tests that kill nodes.
//!
//! Only the processes started here are ever signalled, by the PIDs this module holds; dropping the
//! cluster kills them and removes the directory.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable naming a running cluster to share instead of starting one.
pub const SHARED_URLS_ENV: &str = "IRIS_TEST_REDIS_URLS";

/// Nodes in a cluster this module starts: [`SHARDS`] primaries, each with one replica.
const NODES: usize = 6;
/// Shards (slot ranges, each with a primary) of a cluster this module starts.
const SHARDS: usize = 3;
/// Slots in a Redis Cluster.
const SLOTS: usize = 16_384;
/// How long a primary may be unreachable before its replica is promoted.
const NODE_TIMEOUT_MS: u64 = 1_000;
/// Bound on every wait (start-up, cluster formation, failover).
const WAIT_MAX: Duration = Duration::from_secs(30);
/// Lowest port tried. A node's cluster-bus port is its port + 10000 (and a TLS node's TLS port
/// its port + 1): with [`PORT_SPAN`], all of them stay below Linux's ephemeral range (32768 and
/// up by default), so no outgoing connection and no other test's `bind(0)` can take a node's
/// port while the node is down for a restart (seen: "did not restart" after a kill, its port
/// taken as a client's source port).
const PORT_MIN: u16 = 10_000;
/// Ports tried above [`PORT_MIN`].
const PORT_SPAN: u16 = 12_000;

/// A Redis Cluster for one test (or a shared one).
#[derive(Debug)]
pub struct RedisCluster {
    /// Nodes this process started; empty in shared mode.
    nodes: Vec<Node>,
    /// URLs of a shared cluster (shared mode only).
    shared: Vec<String>,
    /// The temporary directory holding configs, logs and node files (own clusters only).
    dir: Option<tempfile::TempDir>,
    /// TLS clusters: the files every node serves (in `dir`).
    tls: Option<TlsFiles>,
}

/// A TLS node's certificate, key and CA files.
#[derive(Debug, Clone)]
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

#[derive(Debug)]
struct Node {
    port: u16,
    /// TLS clusters: the node's TLS port (its plaintext `port` stays open, on loopback, for
    /// this module's own health checks).
    tls_port: Option<u16>,
    /// `None` once killed.
    child: Option<Child>,
}

impl RedisCluster {
    /// The cluster named by `IRIS_TEST_REDIS_URLS`, or a new one of this process's own.
    ///
    /// # Panics
    /// When `redis-server`/`redis-cli` are missing (the message names the Debian package) or the
    /// cluster does not form in time.
    pub fn start() -> RedisCluster {
        match std::env::var(SHARED_URLS_ENV) {
            Ok(urls) if !urls.trim().is_empty() => RedisCluster {
                nodes: Vec::new(),
                shared: urls.split(',').map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).collect(),
                dir: None,
                tls: None,
            },
            _ => Self::start_private(),
        }
    }

    /// A new cluster of this process's own, whatever the environment says: for tests that kill
    /// nodes.
    ///
    /// # Panics
    /// As [`RedisCluster::start`].
    pub fn start_private() -> RedisCluster {
        Self::start_own(None)
    }

    /// A new cluster of this process's own whose nodes also speak TLS (`tls-port`, with a
    /// certificate of `ca` for `localhost`/`127.0.0.1`; `tls-cluster` and `tls-replication`
    /// on): [`RedisCluster::urls`] are then `rediss://` URLs of the TLS ports, and a client
    /// reaching a node over TLS is told the other nodes' TLS ports.
    ///
    /// # Panics
    /// As [`RedisCluster::start`].
    pub fn start_tls(ca: &crate::tls::TestCa) -> RedisCluster {
        Self::start_own(Some(ca))
    }

    fn start_own(ca: Option<&crate::tls::TestCa>) -> RedisCluster {
        check_binaries();
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start(ca) {
                Ok(cluster) => return cluster,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start a Redis Cluster: {last_error}");
    }

    fn try_start(ca: Option<&crate::tls::TestCa>) -> Result<RedisCluster, String> {
        let dir = tempfile::Builder::new().prefix("iris-redis-").tempdir().map_err(|e| e.to_string())?;
        let tls = ca.map(|ca| {
            let cert = ca.issue();
            let files = TlsFiles {
                cert: dir.path().join("tls.crt"),
                key: dir.path().join("tls.key"),
                ca: dir.path().join("ca.crt"),
            };
            std::fs::write(&files.cert, &cert.cert_pem).map_err(|e| e.to_string())?;
            crate::tls::write_private(&files.key, &cert.key_pem);
            std::fs::write(&files.ca, ca.ca_pem()).map_err(|e| e.to_string())?;
            Ok::<_, String>(files)
        });
        let tls = tls.transpose()?;
        let ports = free_ports(NODES, tls.is_some())?;
        let mut cluster = RedisCluster { nodes: Vec::new(), shared: Vec::new(), dir: None, tls };
        for &port in &ports {
            let tls_port = cluster.tls.as_ref().map(|_| port + 1);
            let child = spawn_node(dir.path(), port, tls_port.zip(cluster.tls.as_ref()))?;
            cluster.nodes.push(Node { port, tls_port, child: Some(child) });
        }
        cluster.dir = Some(dir);
        for node in &mut cluster.nodes {
            wait_until(|| node_alive(node) && command(node.port, &["PING"]).is_ok_and(|r| r == "PONG"))
                .map_err(|_| format!("redis-server on port {} did not start", node.port))?;
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for &port in &ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run redis-cli: {e}"))?;
        if !out.status.success() {
            return Err(format!("redis-cli --cluster create failed: {}", String::from_utf8_lossy(&out.stdout)));
        }
        cluster.wait_ok().map_err(|_| "the cluster did not reach cluster_state:ok".to_owned())?;
        Ok(cluster)
    }

    /// Seed URLs (`redis://127.0.0.1:port`) of every node (alive or not, for own clusters).
    pub fn urls(&self) -> Vec<String> {
        if !self.shared.is_empty() {
            return self.shared.clone();
        }
        self.nodes
            .iter()
            .map(|n| match n.tls_port {
                Some(tls_port) => format!("rediss://127.0.0.1:{tls_port}"),
                None => format!("redis://127.0.0.1:{}", n.port),
            })
            .collect()
    }

    /// Whether this is a shared cluster (`IRIS_TEST_REDIS_URLS`), which must not be killed.
    pub fn is_shared(&self) -> bool {
        !self.shared.is_empty()
    }

    /// URLs of the live primaries right now, shard by shard (a shard whose primary is dead and
    /// not yet replaced is left out). Own clusters only.
    pub fn primaries(&self) -> Vec<String> {
        (0..SHARDS)
            .filter_map(|shard| self.primary_port(shard))
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    /// Kills (SIGKILL, by the PID started here) the current primary of shard `shard` (0..3, in
    /// slot order) and returns its URL; its replica takes over after `cluster-node-timeout` (see
    /// [`RedisCluster::wait_until_healthy`]). Shard numbers stay put while others are killed, so
    /// `for i in 0..3 { kill_primary(i) }` kills one primary per shard.
    ///
    /// # Panics
    /// On a shared cluster (use [`RedisCluster::start_private`]), or when that shard has no live
    /// primary right now.
    pub fn kill_primary(&mut self, shard: usize) -> String {
        assert!(!self.is_shared(), "cannot kill nodes of a shared cluster; use RedisCluster::start_private");
        let port = self.primary_port(shard).unwrap_or_else(|| panic!("shard {shard} has no live primary"));
        let node = self.nodes.iter_mut().find(|n| n.port == port).expect("a node we started");
        kill(node);
        format!("redis://127.0.0.1:{port}")
    }

    /// The shard (0..3, as [`RedisCluster::kill_primary`] counts) serving `key` (a key or a
    /// sharded channel name), so a test can kill the node under a given channel.
    ///
    /// # Panics
    /// On a shared cluster, or when no live node answers.
    pub fn shard_of(&self, key: &str) -> usize {
        assert!(!self.is_shared(), "a shared cluster's topology is not inspected");
        let slot = self
            .live_ports()
            .into_iter()
            .find_map(|port| command(port, &["CLUSTER", "KEYSLOT", key]).ok()?.parse::<u16>().ok())
            .expect("CLUSTER KEYSLOT answered");
        (0..SHARDS).rev().find(|&shard| slot >= shard_first_slot(shard)).unwrap_or(0)
    }

    /// Kills every node this process started (SIGKILL): Redis gone altogether.
    pub fn kill_all(&mut self) {
        assert!(!self.is_shared(), "cannot kill nodes of a shared cluster; use RedisCluster::start_private");
        self.nodes.iter_mut().for_each(kill);
    }

    /// Starts again every node killed so far, on its port with its cluster state (`nodes.conf`; the
    /// data is gone, as after a crash without persistence), and waits until the cluster is whole
    /// (`cluster_state:ok` everywhere and every shard served).
    ///
    /// # Panics
    /// On a shared cluster, or when a node does not come back within 30 s.
    pub fn restart_killed(&mut self) {
        assert!(!self.is_shared(), "cannot restart nodes of a shared cluster");
        let dir = self.dir.as_ref().expect("own clusters have a directory").path().to_owned();
        let tls = self.tls.clone();
        for node in self.nodes.iter_mut().filter(|n| n.child.is_none()) {
            let tls = node.tls_port.zip(tls.as_ref());
            node.child = Some(spawn_node(&dir, node.port, tls).unwrap_or_else(|e| panic!("{e}")));
            wait_until(|| node_alive(node) && command(node.port, &["PING"]).is_ok_and(|r| r == "PONG"))
                .unwrap_or_else(|()| panic!("redis-server on port {} did not restart", node.port));
        }
        self.wait_until_healthy();
    }

    /// Waits until every shard has a live primary again (a replica took over each killed one)
    /// and every live node reports `cluster_state:ok`. Returns at once for a shared cluster.
    ///
    /// # Panics
    /// When that does not happen within 30 s.
    pub fn wait_until_healthy(&self) {
        let all_served = || (0..SHARDS).all(|shard| self.primary_port(shard).is_some());
        wait_until(all_served).expect("a replica did not take over within 30 s");
        self.wait_ok().expect("the cluster did not return to cluster_state:ok within 30 s");
    }

    /// The live node that serves shard `shard` as a primary, by its own account (`myself,master`
    /// in `CLUSTER NODES`).
    fn primary_port(&self, shard: usize) -> Option<u16> {
        let slot = shard_first_slot(shard);
        debug_assert!(shard < SHARDS);
        self.live_ports().into_iter().find(|&port| {
            command(port, &["CLUSTER", "NODES"])
                .is_ok_and(|nodes| nodes.lines().any(|l| l.contains("myself,master") && serves(l, slot)))
        })
    }

    /// Waits until every live node reports `cluster_state:ok` (shared clusters: returns at once).
    fn wait_ok(&self) -> Result<(), ()> {
        wait_until(|| {
            self.live_ports()
                .into_iter()
                .all(|port| command(port, &["CLUSTER", "INFO"]).is_ok_and(|info| info.contains("cluster_state:ok")))
        })
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes.iter().filter(|n| n.child.is_some()).map(|n| n.port).collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.iter_mut().for_each(kill);
    }
}

fn kill(node: &mut Node) {
    if let Some(mut child) = node.child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn node_alive(node: &mut Node) -> bool {
    node.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
}

fn check_binaries() {
    for (bin, package) in [("redis-server", "redis-server"), ("redis-cli", "redis-tools")] {
        let found = Command::new(bin).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        if !found.is_ok_and(|s| s.success()) {
            panic!("`{bin}` not found: install the Debian package `{package}` (scripts/test.sh does)");
        }
    }
}

fn spawn_node(dir: &Path, port: u16, tls: Option<(u16, &TlsFiles)>) -> Result<Child, String> {
    let node_dir: PathBuf = dir.join(format!("node-{port}"));
    std::fs::create_dir_all(&node_dir).map_err(|e| e.to_string())?;
    let mut config = format!(
        "port {port}\nbind 127.0.0.1\nprotected-mode yes\ndaemonize no\ncluster-enabled yes\n\
         cluster-config-file nodes.conf\ncluster-node-timeout {NODE_TIMEOUT_MS}\n\
         cluster-replica-validity-factor 0\nappendonly no\nsave \"\"\ndir {}\nlogfile redis.log\n",
        node_dir.display()
    );
    if let Some((tls_port, files)) = tls {
        config.push_str(&format!(
            "tls-port {tls_port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
             tls-auth-clients no\ntls-cluster yes\ntls-replication yes\ncluster-port {}\n",
            files.cert.display(),
            files.key.display(),
            files.ca.display(),
            // The bus would otherwise follow the TLS port; keep it where `free_ports` checked.
            port + 10_000
        ));
    }
    let config_path = node_dir.join("redis.conf");
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    Command::new("redis-server")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run redis-server: {e}"))
}

/// `n` ports whose cluster-bus ports (+10000) are free too (and, `with_tls`, the next port,
/// the node's TLS port), picked at random so parallel tests rarely collide (a collision makes
/// start-up retry with new ports).
fn free_ports(n: usize, with_tls: bool) -> Result<Vec<u16>, String> {
    let mut ports = Vec::with_capacity(n);
    let mut seed = random_seed();
    for _ in 0..1_000 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let port = PORT_MIN + u16::try_from((seed >> 33) % u64::from(PORT_SPAN)).unwrap_or(0);
        let taken = |p: u16| ports.iter().any(|&q| q == p || (with_tls && q + 1 == p));
        if taken(port)
            || taken(port + 1)
            || !bindable(port)
            || !bindable(port + 10_000)
            || (with_tls && !bindable(port + 1))
        {
            continue;
        }
        ports.push(port);
        if ports.len() == n {
            return Ok(ports);
        }
    }
    Err("no free loopback ports".into())
}

fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish()
}

/// Polls `ready` every 50 ms for at most [`WAIT_MAX`].
fn wait_until(mut ready: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + WAIT_MAX;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(())
}

/// The first slot of shard `shard`, as `redis-cli --cluster create` splits the slots (0, 5461,
/// 10923 for three shards: each range ends at the rounded multiple of 16384 / shards, minus one).
fn shard_first_slot(shard: usize) -> u16 {
    if shard == 0 {
        return 0;
    }
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let previous_last = (shard as f64 * SLOTS as f64 / SHARDS as f64 - 1.0).round() as u16;
    previous_last + 1
}

/// Whether a `CLUSTER NODES` line lists `slot` among its ranges (`0-5460`, `42`).
fn serves(line: &str, slot: u16) -> bool {
    line.split_whitespace().skip(8).any(|range| {
        let mut ends = range.splitn(2, '-').map(|n| n.parse::<u16>());
        match (ends.next(), ends.next()) {
            (Some(Ok(a)), Some(Ok(b))) => (a..=b).contains(&slot),
            (Some(Ok(a)), None) => a == slot,
            _ => false,
        }
    })
}

/// Sends one command and returns its reply as text (simple strings, errors and bulk strings; a
/// tiny RESP2 reader, enough for PING, INFO and the CLUSTER commands used here).
fn command(port: u16, args: &[&str]) -> Result<String, String> {
    let timeout = Some(Duration::from_millis(500));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(timeout).map_err(|e| e.to_string())?;
    stream.set_write_timeout(timeout).map_err(|e| e.to_string())?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end();
    let reply = match line.split_at_checked(1) {
        Some(("+", rest)) | Some((":", rest)) => Ok(rest.to_owned()),
        Some(("-", rest)) => Err(rest.to_owned()),
        Some(("$", len)) => {
            let len: usize = len.parse().map_err(|_| format!("bad bulk length {len}"))?;
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body).map_err(|e| e.to_string())?;
            body.truncate(len);
            String::from_utf8(body).map_err(|e| e.to_string())
        }
        _ => Err(format!("unexpected reply {line:?}")),
    };
    let _ = stream.shutdown(Shutdown::Both);
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_start_where_redis_cli_splits_the_slots() {
        // Proves: the shard boundaries match `redis-cli --cluster create` with three primaries.
        assert_eq!((0..SHARDS).map(shard_first_slot).collect::<Vec<_>>(), vec![0, 5461, 10923]);
        assert!(serves("id 127.0.0.1:1@2 myself,master - 0 0 1 connected 0-5460", 5460));
        assert!(!serves("id 127.0.0.1:1@2 myself,master - 0 0 1 connected 0-5460", 5461));
        assert!(serves("id 127.0.0.1:1@2 master - 0 0 1 connected 12 100-200", 12));
    }
}
