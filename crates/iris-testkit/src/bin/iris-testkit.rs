//! `iris-testkit`: starts the servers of a cluster-mode test run once — two PostgreSQL shards
//! and a Redis Cluster — writes the environment that puts the tests in shared mode to the file
//! given as the only argument, and stops the servers when its standard input closes (so a script
//! that dies takes them down with it). Used by `scripts/test.sh`.

use std::io::Read;

use iris_testkit::postgres::{self, PgShards};
use iris_testkit::redis::{self, RedisCluster};

fn main() {
    let Some(env_file) = std::env::args().nth(1) else {
        eprintln!("usage: iris-testkit ENV_FILE  (stops when stdin closes)");
        std::process::exit(2);
    };
    // Start our own servers even if the caller's environment names shared ones.
    std::env::remove_var(postgres::SHARED_URLS_ENV);
    std::env::remove_var(redis::SHARED_URLS_ENV);
    let pg = PgShards::start(2);
    let redis = RedisCluster::start();
    let env = format!(
        "export {}={}\nexport {}={}\n",
        postgres::SHARED_URLS_ENV,
        pg.urls().join(","),
        redis::SHARED_URLS_ENV,
        redis.urls().join(",")
    );
    if let Err(e) = std::fs::write(&env_file, env) {
        eprintln!("cannot write {env_file}: {e}");
        std::process::exit(1);
    }
    eprintln!("iris-testkit: PostgreSQL {:?}, Redis {:?}; stops when stdin closes", pg.urls(), redis.urls());
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(redis);
    drop(pg);
}
