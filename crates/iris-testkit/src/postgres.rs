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
//! Replicated shards ([`PgShards::start_replicated`]): each shard a primary and a synchronous
//! streaming standby (`pg_basebackup -R`, `synchronous_standby_names` on the primary), its URL
//! listing both hosts; [`PgShards::kill_primary`] and [`PgShards::promote_standby`] stage a
//! failover.
//!
//! This module only ever stops servers it started itself, by `pg_ctl` on its own data
//! directories (or, for [`PgShards::kill_primary`], by the PIDs in its own `postmaster.pid`).
//! It knows nothing of Iris's schema: the store runs its own migrations.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// The `application_name` a test standby streams under, and what its primary's
/// `synchronous_standby_names` names: commits wait for this standby's flush.
pub const STANDBY_NAME: &str = "iris_standby";
/// How long a new standby may take to catch up and report as synchronous.
const SYNC_WAIT: Duration = Duration::from_secs(60);

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
    /// Replicated shards: the synchronous standby of `server`.
    standby: Option<Server>,
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
            Ok(PgShards { shards: vec![Shard { url, server: Some(server), shared: None, standby: None }] })
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
                    standby: None,
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
            shards.shards.push(Shard { url, server: Some(server), shared: None, standby: None });
        }
        Ok(shards)
    }

    /// Starts `n` shards of their own (whatever the environment says), each a primary with a
    /// synchronous streaming standby: a commit on the primary returns only once the standby has
    /// flushed it (`synchronous_standby_names` = [`STANDBY_NAME`], `synchronous_commit = on`).
    /// Each URL lists the primary, then the standby, with `target_session_attrs=read-write`
    /// (`postgres://postgres@127.0.0.1:P,127.0.0.1:S/db?…`), as an operator would write it.
    pub fn start_replicated(n: usize) -> PgShards {
        let run = || -> Result<PgShards, String> {
            let bin = bin_dir()?;
            let mut shards = PgShards { shards: Vec::new() };
            for _ in 0..n {
                let primary = Server::start_with_tls(&bin, None)?;
                let admin = format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", primary.port);
                let db = unique_db_name();
                psql(&bin, &admin, &format!("CREATE DATABASE {db}"))?;
                // Taken after the database exists, so the standby has it too; the primary turns
                // synchronous only once the standby streams (else this very commit would wait).
                let standby = Server::start_standby(&bin, &primary)?;
                psql(&bin, &admin, &format!("ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'"))?;
                psql(&bin, &admin, "SELECT pg_reload_conf()")?;
                wait_synchronous(&bin, &admin)?;
                let url = format!(
                    "postgres://{SUPERUSER}@127.0.0.1:{},127.0.0.1:{}/{db}?target_session_attrs=read-write",
                    primary.port, standby.port
                );
                shards.shards.push(Shard { url, server: Some(primary), shared: None, standby: Some(standby) });
            }
            Ok(shards)
        };
        run().unwrap_or_else(|e| panic!("cannot start replicated PostgreSQL test shards: {e}"))
    }

    /// Kills shard `idx`'s primary with SIGKILL, the postmaster and every process it started,
    /// as when its machine dies: no shutdown, no checkpoint, connections cut. Its data is left
    /// as it was; the standby keeps what it had flushed. Panics unless the shard was started
    /// by [`start_replicated`](Self::start_replicated) or [`start_dedicated`](Self::start_dedicated).
    pub fn kill_primary(&mut self, idx: usize) {
        let server = self.own_server(idx);
        if let Err(e) = server.kill9() {
            panic!("cannot kill shard {idx}'s primary: {e}");
        }
    }

    /// Promotes shard `idx`'s standby (`pg_ctl promote -w`): it leaves recovery and accepts
    /// writes. It runs without a synchronous standby of its own (none is configured on it), so
    /// its commits wait for its own disk only until an operator adds one.
    pub fn promote_standby(&mut self, idx: usize) {
        let standby = match self.shards.get_mut(idx).and_then(|s| s.standby.as_mut()) {
            Some(standby) => standby,
            None => panic!("shard {idx} has no standby (start it with start_replicated)"),
        };
        if let Err(e) = standby.promote() {
            panic!("cannot promote shard {idx}'s standby: {e}");
        }
    }

    /// Shard `idx`'s primary's admin URL (its `postgres` database), for checks by SQL.
    pub fn primary_admin_url(&self, idx: usize) -> String {
        self.server_admin_url(idx, false)
    }

    /// Shard `idx`'s standby's admin URL (its `postgres` database), for checks by SQL.
    pub fn standby_admin_url(&self, idx: usize) -> String {
        self.server_admin_url(idx, true)
    }

    fn server_admin_url(&self, idx: usize, standby: bool) -> String {
        let shard = &self.shards[idx];
        let server = if standby { shard.standby.as_ref() } else { shard.server.as_ref() };
        match server {
            Some(s) => format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", s.port),
            None => panic!("shard {idx} has no such server of its own"),
        }
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
        let server = Server { dir, port: 0, bin: bin.to_owned(), as_os_user, running: false, tls };
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
        server.start_on_a_free_port("PostgreSQL")
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

    /// A streaming standby of `primary`: `pg_basebackup -R` (which writes `standby.signal` and
    /// `primary_conninfo`) into a fresh directory, `application_name` set to [`STANDBY_NAME`]
    /// so the primary can name it synchronous, then started on a port of its own.
    fn start_standby(bin: &Path, primary: &Server) -> Result<Server, String> {
        let dir =
            tempfile::Builder::new().prefix("iris-pg-standby-").tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let as_os_user = is_root();
        if as_os_user {
            chown_to_os_user(dir.path())?;
        }
        let server = Server { dir, port: 0, bin: bin.to_owned(), as_os_user, running: false, tls: None };
        let data = server.data_dir();
        let conninfo = format!("host=127.0.0.1 port={} user={SUPERUSER} application_name={STANDBY_NAME}", primary.port);
        let out = server.run(
            "pg_basebackup",
            &["-D", path_str(&data)?, "-d", &conninfo, "-X", "stream", "-R", "--no-sync", "-c", "fast"],
        )?;
        check("pg_basebackup", &out)?;
        // `-R` keeps only some of the connection's parameters: say the whole conninfo again
        // (the last setting in the file wins).
        let auto_conf = data.join("postgresql.auto.conf");
        let mut text = std::fs::read_to_string(&auto_conf).map_err(|e| format!("read {}: {e}", auto_conf.display()))?;
        text.push_str(&format!("primary_conninfo = '{conninfo}'\n"));
        std::fs::write(&auto_conf, text).map_err(|e| format!("write {}: {e}", auto_conf.display()))?;
        server.start_on_a_free_port("the standby")
    }

    /// Starts the server on a free port, trying again on another one when the port was taken
    /// between probing and binding (up to [`START_ATTEMPTS_MAX`] times).
    fn start_on_a_free_port(mut self, what: &str) -> Result<Self, String> {
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS_MAX {
            self.port = free_port()?;
            match self.pg_ctl_start() {
                Ok(()) => return Ok(self),
                Err(e) => last_error = e,
            }
        }
        Err(format!("no attempt to start {what} succeeded; last: {last_error}"))
    }

    /// `pg_ctl promote -w`: out of recovery, writable.
    fn promote(&mut self) -> Result<(), String> {
        let data = self.data_dir();
        let timeout = PG_CTL_TIMEOUT_S.to_string();
        let out = self.run("pg_ctl", &["-D", path_str(&data)?, "-w", "-t", &timeout, "promote"])?;
        check("pg_ctl promote", &out)
    }

    /// SIGKILL to the postmaster (its PID from `postmaster.pid`) and to every child of it.
    fn kill9(&mut self) -> Result<(), String> {
        if !self.running {
            return Err("the server is not running".into());
        }
        let pid_file = self.data_dir().join("postmaster.pid");
        let text = std::fs::read_to_string(&pid_file).map_err(|e| format!("read {}: {e}", pid_file.display()))?;
        let pid: u32 = text.lines().next().and_then(|l| l.trim().parse().ok()).ok_or("no PID in postmaster.pid")?;
        let children = Command::new("ps")
            .args(["-o", "pid=", "--ppid", &pid.to_string()])
            .output()
            .map_err(|e| format!("cannot run ps: {e}"))?;
        let mut pids = vec![pid.to_string()];
        pids.extend(String::from_utf8_lossy(&children.stdout).split_whitespace().map(str::to_owned));
        // The postmaster first, so it cannot restart children that die.
        let out =
            Command::new("kill").arg("-KILL").args(&pids).output().map_err(|e| format!("cannot run kill: {e}"))?;
        check("kill -KILL", &out)?;
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

/// Runs one query with `psql` and returns its output, unaligned, without headers.
fn psql_value(bin: &Path, url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(bin.join("psql"))
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    check(&format!("psql `{sql}`"), &out)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Waits (bounded by [`SYNC_WAIT`]) until the primary at `admin` reports [`STANDBY_NAME`] as a
/// synchronous standby: from then on its commits wait for the standby's flush.
fn wait_synchronous(bin: &Path, admin: &str) -> Result<(), String> {
    let deadline = Instant::now() + SYNC_WAIT;
    let sql = format!("SELECT sync_state FROM pg_stat_replication WHERE application_name = '{STANDBY_NAME}'");
    loop {
        let state = psql_value(bin, admin, &sql)?;
        if state == "sync" {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the standby did not become synchronous within {SYNC_WAIT:?} (state {state:?})"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
    fn a_replicated_shard_commits_on_both_and_survives_its_primary() {
        // Proves the standby is synchronous (the primary names it so, and a committed row is on
        // the standby), and that after kill -9 of the primary and a promotion the standby has
        // every committed row and accepts writes.
        let mut shards = PgShards::start_replicated(1);
        let bin = bin_dir().unwrap();
        let (primary, standby) = (shards.primary_admin_url(0), shards.standby_admin_url(0));
        let sync = "SELECT sync_state FROM pg_stat_replication";
        assert_eq!(psql_value(&bin, &primary, sync).unwrap(), "sync");
        assert_eq!(psql_value(&bin, &standby, "SELECT pg_is_in_recovery()").unwrap(), "t");
        psql(&bin, &primary, "CREATE TABLE t (x int)").unwrap();
        psql(&bin, &primary, "INSERT INTO t SELECT generate_series(1, 1000)").unwrap();
        shards.kill_primary(0);
        assert!(psql(&bin, &primary, "SELECT 1").is_err(), "the primary is gone");
        shards.promote_standby(0);
        assert_eq!(psql_value(&bin, &standby, "SELECT pg_is_in_recovery()").unwrap(), "f");
        assert_eq!(psql_value(&bin, &standby, "SELECT count(*) FROM t").unwrap(), "1000");
        psql(&bin, &standby, "INSERT INTO t VALUES (0)").unwrap();
        assert!(shards.urls()[0].contains(",127.0.0.1:"), "the URL lists both hosts");
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
