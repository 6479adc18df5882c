//! Real servers for Iris's tests, started from the machine's Debian packages into temporary
//! directories on free loopback ports, and stopped (by their own PIDs) when dropped.
//!
//! - [`postgres`]: PostgreSQL primaries (`initdb` + `pg_ctl`), one per shard.
//! - [`redis`]: a Redis Cluster of 3 primaries and 3 replicas (`redis-server` +
//!   `redis-cli --cluster create`).
//! - [`garage`]: a single-node Garage S3 server with a bucket and a key (`garage`, from
//!   crates.io).
//! - [`images`]: hand-made image files (a PNG that claims huge dimensions).
//! - [`tls`]: a test CA (rcgen) issuing server certificates, for Iris and for PostgreSQL and
//!   Redis started with TLS ([`postgres::PgShards::start_tls`], [`redis::RedisCluster::start_tls`]).
//!
//! Tests that need them call [`postgres::PgShards::start`] / [`redis::RedisCluster::start`];
//! when the binaries are missing the start fails with a message naming the package to install
//! (`scripts/test.sh` installs them). [`engine`] picks the engine of the server-level tests.
//! [`wait`] waits for an event (a condition polled with a bound) instead of sleeping.
//!
//! **Invariant:** this crate depends on no Iris crate, so the store's tests can use it; the
//! in-process server, clients and binaries of the server-level tests live in
//! `iris-testkit-server`, which builds on this one.

pub mod engine;
pub mod garage;
pub mod images;
pub mod postgres;
pub mod redis;
pub mod tls;
pub mod wait;
