//! The server-level test kit: everything a test of the server or the binary needs to boot Iris
//! and talk to it, so no test crate grows start-up code of its own.
//!
//! - [`server`]: [`TestServer`], a real server in this process on `127.0.0.1:0` (TCP and HTTP,
//!   the bound addresses read back from the running server), on a temporary data directory,
//!   on the embedded store or, with `IRIS_TEST_ENGINE=cluster`, on PostgreSQL and Redis from
//!   `iris-testkit`; optionally on a manual clock; restartable on the same ports and data.
//! - [`http`]: JSON over HTTP to a [`TestServer`] (`reqwest`), answers as [`Reply`].
//! - [`raw`]: [`RawConn`], frames by hand, and the operation builders.
//! - [`raw_device`]: [`RawDevice`], a device that reads only when the test says so.
//! - [`sdk`]: logins, connected SDK clients and receive helpers.
//! - [`process`]: the `iris` binary as a child process on port 0 (kill -9, signals, memory).
//! - [`metrics`]: Prometheus text and a minimal HTTP GET.
//! - [`faults`]: a real store whose appends fail on demand.
//! - [`wait_until`] (from `iris-testkit`): wait for an event, never sleep.
//!
//! Tests write `use iris_testkit_server::*;` (or keep their `mod common;` that re-exports it).
//!
//! **Invariant:** the kit knows the server through its public API only (`start`, `Config`,
//! `Dependencies`, `RunningServer`); every assertion it offers goes through the wire or the
//! server's context, never through private state.
//!
//! Why a crate of its own: `iris-testkit` (databases, waiting) is a dev-dependency of
//! `iris-store`, so it must not depend on `iris-server`; this crate does, and only server-level
//! tests (`iris-server`, `iris`) use it. Dependencies stay one-way: store ← server ← this kit.

pub mod faults;
pub mod http;
pub mod metrics;
pub mod primaries;
pub mod process;
pub mod raw;
pub mod raw_device;
pub mod sdk;
pub mod server;

pub use faults::{faulty_store, AppendFault, FaultSwitch};
pub use http::Reply;
pub use iris_testkit::engine::is_cluster;
pub use iris_testkit::wait::{wait_until, POLL_INTERVAL};
pub use metrics::{http_get, metric_value, scrape_metrics};
pub use process::{rss_bytes_of, Binary, Process};
pub use raw::*;
pub use raw_device::RawDevice;
pub use sdk::*;
pub use server::{test_config, TestServer, DEV_CODE};

use std::time::Duration;

/// How long a raw-protocol test waits for an event it expects before failing (never reached
/// when green): the server answers on loopback within milliseconds.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Pauses tokio's clock for the rest of the test (`tokio::time::pause`: timers then fire as soon
/// as the runtime has nothing else to do, in no real time), unless the test runs in cluster
/// mode: there the server waits on PostgreSQL and Redis in other processes, and a clock that
/// jumps whenever the runtime waits would fire their timeouts. Call it first thing in a
/// current-thread test whose server does no appends while a deadline is pending (the embedded
/// store commits on a thread of its own, which the paused clock does not wait for either).
pub fn pause_time_unless_cluster() {
    if !is_cluster() {
        tokio::time::pause();
    }
}

/// How long an SDK test waits for something that should happen quickly (reconnects and
/// redeliveries included), before failing.
pub const PATIENCE: Duration = Duration::from_secs(20);
