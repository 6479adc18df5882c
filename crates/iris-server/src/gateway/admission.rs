//! Who may open a connection now: the node's connection and memory budgets, a global accept
//! rate (reconnect storms), and per-IP rate and concurrency limits.
//!
//! A refused connection is never dropped silently: overload answers `GoAway` with a jittered
//! `reconnect_after_ms` (so a storm spreads out), a per-IP limit answers `RATE_LIMITED` with
//! `retry_after_ms`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use iris_proto::pb;
use rand::Rng;

use crate::config::Config;
use crate::error::ServiceError;
use crate::metrics::Metrics;
use crate::ratelimit::KeyedLimit;

/// Why a connection is turned away.
pub enum Refusal {
    /// The node is over a budget: come back later, elsewhere if possible.
    GoAway(pb::GoAway),
    /// This client IP is over a limit.
    Limited(ServiceError),
}

/// Admission state of one node.
pub struct Admission {
    open: AtomicUsize,
    open_max: usize,
    per_ip_open: Mutex<HashMap<IpAddr, u32>>,
    per_ip_open_max: u32,
    per_ip_rate: Option<KeyedLimit<IpAddr>>,
    accept_rate: Option<DefaultDirectRateLimiter>,
    over_memory: AtomicBool,
}

/// Held while a connection is open; releases its slots when dropped.
pub struct Admitted {
    admission: Arc<Admission>,
    ip: IpAddr,
    metrics: Arc<Metrics>,
}

impl Admission {
    /// Admission rules from `config`.
    pub fn new(config: &Config, metrics: &Metrics) -> Self {
        let r = &config.rate_limits;
        Self {
            open: AtomicUsize::new(0),
            open_max: config.session.connections_max,
            per_ip_open: Mutex::default(),
            per_ip_open_max: r.concurrent_connections_per_ip,
            per_ip_rate: KeyedLimit::new(
                "connections per IP",
                r.connections_per_ip_per_minute,
                Duration::from_secs(60),
                metrics,
            ),
            accept_rate: NonZeroU32::new(r.accepts_per_second).map(|n| RateLimiter::direct(Quota::per_second(n))),
            over_memory: AtomicBool::new(false),
        }
    }

    /// Marks the node as over (or back under) its memory budget.
    pub fn set_over_memory(&self, over: bool) {
        self.over_memory.store(over, Ordering::Relaxed);
    }

    /// Admits a connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, metrics: &Arc<Metrics>) -> Result<Admitted, Refusal> {
        let storm = self.accept_rate.as_ref().is_some_and(|l| l.check().is_err());
        if storm || self.over_memory.load(Ordering::Relaxed) || self.open.load(Ordering::Relaxed) >= self.open_max {
            let reason = if storm { "too many connections at once" } else { "node over capacity" };
            let reconnect_after_ms = rand::rng().random_range(1_000..5_000);
            return Err(Refusal::GoAway(pb::GoAway { reconnect_after_ms, reason: reason.into() }));
        }
        if let Some(limit) = &self.per_ip_rate {
            limit.check(&ip).map_err(Refusal::Limited)?;
        }
        {
            let mut per_ip = self.per_ip_open.lock().expect("admission lock");
            let n = per_ip.entry(ip).or_default();
            if self.per_ip_open_max != 0 && *n >= self.per_ip_open_max {
                return Err(Refusal::Limited(ServiceError::RateLimited {
                    what: "concurrent connections per IP",
                    retry_after_ms: 5_000,
                }));
            }
            *n += 1;
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        metrics.connections_open.inc();
        Ok(Admitted { admission: self.clone(), ip, metrics: metrics.clone() })
    }

    /// Forgets idle per-IP buckets; called periodically.
    pub fn sweep(&self) {
        if let Some(l) = &self.per_ip_rate {
            l.sweep();
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.open.fetch_sub(1, Ordering::Relaxed);
        self.metrics.connections_open.dec();
        let mut per_ip = self.admission.per_ip_open.lock().expect("admission lock");
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Resident set size of this process, from `/proc/self/statm` (Linux), in bytes.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// 80% of physical memory, from `/proc/meminfo`; the default memory budget.
pub fn default_memory_budget() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024 / 10 * 8)
}
