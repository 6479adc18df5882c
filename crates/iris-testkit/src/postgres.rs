//! PostgreSQL shards for tests: one real server per shard, started from Debian's binaries
//! (`/usr/lib/postgresql/*/bin/{initdb,pg_ctl}`) into a temporary directory, listening on a free
//! loopback port with its unix socket inside that directory, `fsync=on` (durability is what the
//! tests check) and small buffers. Each shard gets a freshly created database.
//!
//! Shared mode: when `IRIS_TEST_PG_URLS` holds comma-separated admin URLs of servers that are
//! already running (one per shard, e.g. `postgres://postgres@127.0.0.1:5432/postgres`), no
//! server is started; each [`PgShards`] creates uniquely named databases on them instead (and
//! drops them when dropped), so a test run can start its servers once.
//!
//! This module only ever stops servers it started itself, by `pg_ctl` on its own data
//! directories. It knows nothing of Iris's schema: the store runs its own migrations.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Environment variable naming already-running servers (shared mode).
pub const SHARED_URLS_ENV: &str = "IRIS_TEST_PG_URLS";
/// The Debian package holding the binaries, named in errors.
const PACKAGE: &str = "postgresql";
/// The superuser every started server gets (initdb `-U`), reached with `trust` auth.
const SUPERUSER: &str = "postgres";
/// The OS user that runs the servers when tests run as root (initdb refuses root).
const OS_USER: &str = "postgres";
/// Attempts at finding a free port and starting a server on it (another process may take the
/// port between our probe and the server's bind).
const START_ATTEMPTS_MAX: usize = 5;
/// How long `pg_ctl` waits for a start or stop, in seconds.
const PG_CTL_TIMEOUT_S: u32 = 60;

/// Databases created by this process, to keep names unique.
static NEXT_DB: AtomicU64 = AtomicU64::new(0);

/// A set of PostgreSQL shards for one test. Dropping it stops the servers it started (or drops
/// the databases it created on shared servers).
pub struct PgShards {
    shards: Vec<Shard>,
}

/// One shard: its database URL, and the server when this process started it.
struct Shard {
    url: String,
    server: Option<Server>,
    /// In shared mode: the admin URL and the database to drop at the end.
    shared: Option<(String, String)>,
}

/// A server this process started: its directory (removed on drop), port and binaries.
struct Server {
    /// Holds `data/`, the unix socket and `log`; deleted after the server stops.
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    /// Whether commands run as [`OS_USER`] (we are root).
    as_os_user: bool,
    running: bool,
    /// TLS: the server's certificate and key files (in `dir`); then only TLS connections are
    /// accepted over TCP (`hostssl`).
    tls: Option<(PathBuf, PathBuf)>,
}

impl PgShards {
    /// Starts `n` shards (or, in shared mode, creates `n` fresh databases). Panics with a
    /// message naming the package to install when the binaries are missing: tests must not skip
    /// silently.
    pub fn start(n: usize) -> PgShards {
        match Self::try_start(n) {
            Ok(shards) => shards,
            Err(e) => panic!("cannot start PostgreSQL test shards: {e}"),
        }
    }

    /// Starts `n` servers of its own even in shared mode: for tests that stop or crash a shard
    /// ([`stop_shard`](Self::stop_shard), [`crash_shard`](Self::crash_shard)), which must never
    /// touch servers other tests share.
    pub fn start_dedicated(n: usize) -> PgShards {
        match Self::start_servers(n) {
            Ok(shards) => shards,
            Err(e) => panic!("cannot start PostgreSQL test shards: {e}"),
        }
    }

    /// One server of its own (whatever the environment says) that accepts TCP connections over
    /// TLS only, with a certificate of `ca` for `localhost`/`127.0.0.1`; its URL asks for
    /// `sslmode=verify-full` with `sslrootcert` naming the CA's file.
    pub fn start_tls(ca: &crate::tls::TestCa) -> PgShards {
        let run = || -> Result<PgShards, String> {
            let bin = bin_dir()?;
            let server = Server::start_with_tls(&bin, Some(ca.issue()))?;
            let admin = format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres?sslmode=require", server.port);
            let db = unique_db_name();
            psql(&bin, &admin, &format!("CREATE DATABASE {db}"))?;
            let ca_path = ca.ca_path();
            let url = format!(
                "postgres://{SUPERUSER}@127.0.0.1:{}/{db}?sslmode=verify-full&sslrootcert={}",
                server.port,
                path_str(&ca_path)?
            );
            Ok(PgShards { shards: vec![Shard { url, server: Some(server), shared: None }] })
        };
        run().unwrap_or_else(|e| panic!("cannot start a TLS PostgreSQL: {e}"))
    }

    /// [`start`](Self::start), returning the error instead of panicking.
    pub fn try_start(n: usize) -> Result<PgShards, String> {
        if let Ok(urls) = std::env::var(SHARED_URLS_ENV) {
            let admins: Vec<&str> = urls.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
            if admins.len() < n {
                return Err(format!("{SHARED_URLS_ENV} names {} servers, {n} needed", admins.len()));
            }
            let mut shards = PgShards { shards: Vec::new() };
            for admin in admins.into_iter().take(n) {
                let db = unique_db_name();
                psql(&bin_dir()?, admin, &format!("CREATE DATABASE {db}"))?;
                shards.shards.push(Shard {
                    url: with_database(admin, &db),
                    server: None,
                    shared: Some((admin.to_owned(), db)),
                });
            }
            return Ok(shards);
        }
        Self::start_servers(n)
    }

    /// Starts `n` servers, each with a fresh database.
    fn start_servers(n: usize) -> Result<PgShards, String> {
        let bin = bin_dir()?;
        let mut shards = PgShards { shards: Vec::new() };
        for _ in 0..n {
            let server = Server::start_with_tls(&bin, None)?;
            let admin = format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", server.port);
            let db = unique_db_name();
            psql(&bin, &admin, &format!("CREATE DATABASE {db}"))?;
            let url = format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", server.port);
            shards.shards.push(Shard { url, server: Some(server), shared: None });
        }
        Ok(shards)
    }

    /// Connection URLs of the shards' databases, in shard order.
    pub fn urls(&self) -> Vec<String> {
        self.shards.iter().map(|s| s.url.clone()).collect()
    }

    /// Stops shard `idx`'s server (`pg_ctl stop -m fast`: connections are cut, data is kept),
    /// for failure tests. Panics unless this set started its servers (see
    /// [`start_dedicated`](Self::start_dedicated)).
    pub fn stop_shard(&mut self, idx: usize) {
        let server = self.own_server(idx);
        if let Err(e) = server.stop("fast") {
            panic!("cannot stop shard {idx}: {e}");
        }
    }

    /// Crashes shard `idx`'s server (`pg_ctl stop -m immediate`: no shutdown checkpoint, WAL
    /// not yet flushed is lost, as after a power cut), for durability tests.
    pub fn crash_shard(&mut self, idx: usize) {
        let server = self.own_server(idx);
        if let Err(e) = server.stop("immediate") {
            panic!("cannot crash shard {idx}: {e}");
        }
    }

    /// Starts shard `idx`'s server again on the same port and data after
    /// [`stop_shard`](Self::stop_shard) or [`crash_shard`](Self::crash_shard).
    pub fn start_shard(&mut self, idx: usize) {
        let server = self.own_server(idx);
        if let Err(e) = server.pg_ctl_start() {
            panic!("cannot restart shard {idx}: {e}");
        }
    }

    fn own_server(&mut self, idx: usize) -> &mut Server {
        match self.shards.get_mut(idx).and_then(|s| s.server.as_mut()) {
            Some(server) => server,
            None => panic!("shard {idx} was not started by this test kit (shared mode?)"),
        }
    }
}

impl Drop for PgShards {
    fn drop(&mut self) {
        // Servers stop when their `Server` drops; shared databases are dropped here.
        for shard in &mut self.shards {
            if let Some((admin, db)) = &shard.shared {
                if let Ok(bin) = bin_dir() {
                    let _ = psql(&bin, admin, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
                }
            }
        }
    }
}

impl Drop for Server {
    /// Stops the server (`pg_ctl stop -m immediate`) before its directory is removed, also when
    /// a start fails half-way (e.g. the database could not be created).
    fn drop(&mut self) {
        if let Err(e) = self.stop("immediate") {
            eprintln!("warning: could not stop test PostgreSQL on port {}: {e}", self.port);
        }
    }
}

impl Server {
    /// initdb into a fresh temporary directory, then start on a free loopback port (with
    /// `cert`: TLS only, see [`Server::tls`]).
    fn start_with_tls(bin: &Path, cert: Option<crate::tls::IssuedCert>) -> Result<Server, String> {
        let dir = tempfile::Builder::new().prefix("iris-pg-").tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let as_os_user = is_root();
        if as_os_user {
            chown_to_os_user(dir.path())?;
        }
        let mut tls = None;
        if let Some(cert) = cert {
            let (cert_path, key_path) = (dir.path().join("server.crt"), dir.path().join("server.key"));
            std::fs::write(&cert_path, &cert.cert_pem).map_err(|e| format!("write {}: {e}", cert_path.display()))?;
            crate::tls::write_private(&key_path, &cert.key_pem);
            if as_os_user {
                // PostgreSQL reads its key only when the server's own user owns it.
                chown_to_os_user(&cert_path)?;
                chown_to_os_user(&key_path)?;
            }
            tls = Some((cert_path, key_path));
        }
        let mut server = Server { dir, port: 0, bin: bin.to_owned(), as_os_user, running: false, tls };
        let data = server.data_dir();
        let initdb = server.run(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                // Skips fsyncing the freshly created files (the server itself runs with fsync=on).
                "--no-sync",
            ],
        )?;
        check("initdb", &initdb)?;
        if server.tls.is_some() {
            // TCP only over TLS: a plaintext client is refused, so a passing test used TLS.
            let hba = "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n";
            std::fs::write(data.join("pg_hba.conf"), hba).map_err(|e| format!("write pg_hba.conf: {e}"))?;
        }
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS_MAX {
            server.port = free_port()?;
            match server.pg_ctl_start() {
                Ok(()) => return Ok(server),
                Err(e) => last_error = e,
            }
        }
        Err(format!("no attempt to start PostgreSQL succeeded; last: {last_error}"))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl_start(&mut self) -> Result<(), String> {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on \
             -c shared_buffers=16MB -c max_connections=300 -c max_wal_size=256MB -c log_min_messages=warning",
            self.port,
            path_str(self.dir.path())?,
        );
        if let Some((cert, key)) = &self.tls {
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                path_str(cert)?,
                path_str(key)?
            ));
        }
        let data = self.data_dir();
        let log = self.dir.path().join("log");
        let timeout = PG_CTL_TIMEOUT_S.to_string();
        let out = self.run(
            "pg_ctl",
            &["-D", path_str(&data)?, "-l", path_str(&log)?, "-o", &options, "-w", "-t", &timeout, "start"],
        )?;
        if !out.status.success() {
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: String = log_text.lines().rev().take(10).collect::<Vec<_>>().join(" | ");
            return Err(format!("pg_ctl start failed: {} (log: {tail})", describe(&out)));
        }
        self.running = true;
        Ok(())
    }

    fn stop(&mut self, mode: &str) -> Result<(), String> {
        if !self.running {
            return Ok(());
        }
        let data = self.data_dir();
        let timeout = PG_CTL_TIMEOUT_S.to_string();
        let out = self.run("pg_ctl", &["-D", path_str(&data)?, "-m", mode, "-w", "-t", &timeout, "stop"])?;
        check("pg_ctl stop", &out)?;
        self.running = false;
        Ok(())
    }

    /// Runs a PostgreSQL binary, as [`OS_USER`] when we are root.
    fn run(&self, name: &str, args: &[&str]) -> Result<Output, String> {
        let program = self.bin.join(name);
        let mut cmd = if self.as_os_user {
            let mut c = Command::new("runuser");
            c.args(["-u", OS_USER, "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        cmd.args(args).current_dir(self.dir.path());
        cmd.output().map_err(|e| format!("cannot run {}: {e}", program.display()))
    }
}

/// The directory of the newest installed PostgreSQL's binaries.
fn bin_dir() -> Result<PathBuf, String> {
    let missing = || {
        format!("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin: install the Debian package `{PACKAGE}`")
    };
    let versions = std::fs::read_dir("/usr/lib/postgresql").map_err(|_| missing())?;
    let mut candidates: Vec<(u32, PathBuf)> = versions
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, bin)| bin).ok_or_else(missing)
}

/// Runs one SQL command with `psql` against `url` (which must allow trust auth).
fn psql(bin: &Path, url: &str, sql: &str) -> Result<(), String> {
    let out = Command::new(bin.join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    check(&format!("psql `{sql}`"), &out)
}

/// A database name no other test (in this or another process) uses.
fn unique_db_name() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("iris_test_{}_{}_{nanos}", std::process::id(), NEXT_DB.fetch_add(1, Ordering::Relaxed))
}

/// `url` with its database (path) replaced by `db`, query string kept.
fn with_database(url: &str, db: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let host_end = base[after_scheme..].find('/').map_or(base.len(), |i| after_scheme + i);
    format!("{}/{db}{query}", &base[..host_end])
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot probe a free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("cannot probe a free port: {e}"))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// Gives the temporary directory to [`OS_USER`], so the server (run as that user) can use it.
fn chown_to_os_user(dir: &Path) -> Result<(), String> {
    let spec = format!("{OS_USER}:{OS_USER}");
    let out = Command::new("chown").arg(&spec).arg(dir).output().map_err(|e| format!("cannot run chown: {e}"))?;
    check(&format!("chown {spec} (does the `{OS_USER}` user exist? it comes with `{PACKAGE}`)"), &out)
}

fn path_str(p: &Path) -> Result<&str, String> {
    p.to_str().ok_or_else(|| format!("path is not UTF-8: {}", p.display()))
}

fn check(what: &str, out: &Output) -> Result<(), String> {
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed: {}", describe(out)))
    }
}

fn describe(out: &Output) -> String {
    format!(
        "{} {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_rewritten() {
        // Proves shared-mode URLs keep host, user and options and only change the database.
        assert_eq!(with_database("postgres://u@h:5/postgres", "x"), "postgres://u@h:5/x");
        assert_eq!(with_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
        assert_eq!(with_database("postgres://u@h:5/p?sslmode=disable", "x"), "postgres://u@h:5/x?sslmode=disable");
    }

    #[test]
    fn shards_start_stop_and_restart() {
        // Proves a shard starts, accepts SQL, and comes back on the same port after a stop.
        let mut shards = PgShards::start_dedicated(1);
        let bin = bin_dir().unwrap();
        let url = shards.urls()[0].clone();
        psql(&bin, &url, "CREATE TABLE t (x int)").unwrap();
        shards.stop_shard(0);
        assert!(psql(&bin, &url, "SELECT 1").is_err());
        shards.start_shard(0);
        psql(&bin, &url, "INSERT INTO t VALUES (1)").unwrap();
    }
}
