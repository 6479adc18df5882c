//! A real S3 API for tests: a single-node Garage (`garage`, installed from crates.io by
//! `scripts/test.sh`) in a temporary directory on free loopback ports, with
//! `replication_factor = 1`, its layout applied, one bucket and one key allowed on it, all made
//! with Garage's own CLI.
//!
//! Only the process started here is ever signalled, by the PID this module holds; dropping the
//! server kills it and removes the directory.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bucket every test server has.
pub const BUCKET: &str = "iris-media";
/// Garage's S3 region name (its default).
pub const REGION: &str = "garage";
/// Bound on every wait (start-up, layout, CLI calls).
const WAIT_MAX: Duration = Duration::from_secs(30);

/// A running Garage node with a bucket and a key.
#[derive(Debug)]
pub struct Garage {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:port` of the S3 API.
    pub endpoint: String,
    /// Access key id allowed on [`BUCKET`].
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
}

impl Garage {
    /// Starts a node and makes the bucket and the key.
    ///
    /// # Panics
    /// When `garage` is missing (the message says how to install it) or does not come up.
    pub fn start() -> Garage {
        let binary = binary();
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start(&binary) {
                Ok(g) => return g,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start Garage: {last_error}");
    }

    fn try_start(binary: &Path) -> Result<Garage, String> {
        let dir = tempfile::Builder::new().prefix("iris-garage-").tempdir().map_err(|e| e.to_string())?;
        let [rpc, s3, admin] = free_ports()?;
        let secret: String = (0..32).map(|_| format!("{:02x}", rand_byte())).collect();
        let config = format!(
            "metadata_dir = \"{meta}\"\ndata_dir = \"{data}\"\ndb_engine = \"sqlite\"\nreplication_factor = 1\n\
             rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
             [s3_api]\ns3_region = \"{REGION}\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
             root_domain = \".s3.garage.localhost\"\n[admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
            meta = dir.path().join("meta").display(),
            data = dir.path().join("data").display(),
        );
        let config_path = dir.path().join("garage.toml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.path().join("garage.log")).map_err(|e| e.to_string())?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config_path)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        let mut garage = Garage {
            child: Some(child),
            endpoint: format!("http://127.0.0.1:{s3}"),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            dir,
        };
        let cli = |args: &[&str]| cli(binary, &config_path, args);
        wait_until(|| TcpStream::connect(("127.0.0.1", s3)).is_ok() && cli(&["status"]).is_ok())
            .map_err(|_| format!("garage did not start: {}", garage.log()))?;
        let node = cli(&["node", "id", "-q"])?;
        let node_id = node.trim().split('@').next().unwrap_or_default().to_owned();
        cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node_id])?;
        cli(&["layout", "apply", "--version", "1"])?;
        // The layout takes effect asynchronously: retry the bucket until it is accepted.
        wait_until(|| cli(&["bucket", "create", BUCKET]).is_ok()).map_err(|_| "bucket create never succeeded")?;
        let key = cli(&["key", "create", "iris-test"])?;
        let field = |name: &str| {
            key.lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
                .ok_or_else(|| format!("no {name} in: {key}"))
        };
        garage.access_key_id = field("Key ID:")?;
        garage.secret_access_key = field("Secret key:")?;
        cli(&["bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "iris-test"])?;
        Ok(garage)
    }

    /// The end of the node's log, for failure messages.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default();
        text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `garage` binary: on `PATH` or where `cargo install` puts it.
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("garage")).find(|c| c.is_file()))
        .unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    on_path.or_else(|| cargo_home.map(|c| c.join("bin/garage")).filter(|c| c.is_file())).unwrap_or_else(|| {
        panic!("`garage` not found: install it with `cargo install garage --locked` (scripts/test.sh does)")
    })
}

fn cli(binary: &Path, config: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(binary)
        .arg("-c")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("garage {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)))
    }
}

/// Three distinct free loopback ports (bound then released, as the other servers here do).
fn free_ports() -> Result<[u16; 3], String> {
    let listeners: Vec<TcpListener> =
        (0..3).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    Ok([ports[0], ports[1], ports[2]])
}

fn wait_until(mut ready: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + WAIT_MAX;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(())
}

/// A random byte from the OS (the RPC secret; no RNG crate needed here).
fn rand_byte() -> u8 {
    use std::io::Read;
    let mut b = [0u8; 1];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).expect("/dev/urandom");
    b[0]
}
