//! Keyed token-bucket rate limits (governor), with the wait time clients are told.
//!
//! In cluster mode the abuse limits that N nodes would otherwise multiply by N (one-time codes,
//! verify attempts, contact discovery) are kept in Redis instead ([`KeyedLimit::shared`],
//! GCRA in Lua per key); if Redis does not answer, the node's own bucket decides. Sends per
//! account are shared too, but leased ([`KeyedLimit::leased`]): a node takes a few tokens from
//! Redis at once and spends them locally for at most [`LEASE_TTL`], so most sends cost no round
//! trip, and an account whose devices sit on several nodes still gets its quota once, not once per
//! node (unspent leases lapse: a node can only under-admit). Typing and connections stay per node.

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use prometheus_client::metrics::counter::Counter;

use crate::error::ServiceError;
use crate::limit_log::{self, LimitLog, LimitSubject};
use crate::metrics::Metrics;

/// One named limit over keys of type `K` (phone, IP, account).
pub struct KeyedLimit<K: Hash + Eq + Clone> {
    name: &'static str,
    limiter: DefaultKeyedRateLimiter<K>,
    clock: DefaultClock,
    refusals: Counter,
    /// Whom it refused lately (for operators, `admin/`).
    log: Arc<LimitLog>,
    burst: u32,
    period_ms: u64,
    /// Cluster mode: the count lives in Redis (`rl:{name}:{key}`), shared by every node.
    shared: Option<crate::cluster::bus::Bus>,
    /// With `shared`: tokens this node took from Redis ahead of use ([`KeyedLimit::leased`]).
    leases: Option<Leases<K>>,
}

/// How long a node may hold tokens leased from a shared limit before they lapse unspent. Short,
/// so a lease cannot be saved up into a burst above the quota.
pub const LEASE_TTL: Duration = Duration::from_secs(1);

/// Tokens of a shared limit this node holds, per key.
struct Leases<K> {
    /// Tokens asked of Redis at once.
    batch: u32,
    held: Mutex<HashMap<K, Lease>>,
}

/// Tokens left for one key, and when they lapse.
struct Lease {
    left: u32,
    until: Instant,
}

impl<K: Hash + Eq + Clone> Leases<K> {
    /// Spends one held token for `key` if there is one that has not lapsed.
    fn spend(&self, key: &K, now: Instant) -> bool {
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match held.get_mut(key) {
            Some(lease) if lease.left > 0 && lease.until > now => {
                lease.left -= 1;
                true
            }
            _ => false,
        }
    }

    /// Keeps `left` tokens for `key` until [`LEASE_TTL`] from `now` (replacing an older lease,
    /// which has run out or lapsed to get here).
    fn keep(&self, key: &K, left: u32, now: Instant) {
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if left == 0 {
            held.remove(key);
        } else {
            held.insert(key.clone(), Lease { left, until: now + LEASE_TTL });
        }
    }

    /// Drops lapsed leases, bounding memory to the keys active in the last [`LEASE_TTL`].
    fn sweep(&self, now: Instant) {
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        held.retain(|_, lease| lease.left > 0 && lease.until > now);
        held.shrink_to_fit();
    }
}

impl<K: Hash + Eq + Clone + LimitSubject> KeyedLimit<K> {
    /// `burst` requests at once, refilled at `burst` per `period`. `burst == 0` disables it.
    /// Refusals are counted in `metrics` under `name`.
    pub fn new(name: &'static str, burst: u32, period: Duration, metrics: &Metrics) -> Option<Self> {
        let burst = NonZeroU32::new(burst)?;
        let quota = Quota::with_period(period / burst.get())?.allow_burst(burst);
        let refusals = metrics.rate_limit_counter(name);
        Some(Self {
            name,
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            refusals,
            log: metrics.limit_log.clone(),
            burst: burst.get(),
            period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
            shared: None,
            leases: None,
        })
    }

    /// [`KeyedLimit::new`], kept in Redis when `bus` is given (cluster mode), so the limit
    /// holds for the cluster rather than per node; see the module doc.
    pub fn new_shared(
        name: &'static str,
        burst: u32,
        period: Duration,
        metrics: &Metrics,
        bus: Option<&crate::cluster::bus::Bus>,
    ) -> Option<Self> {
        Self::new(name, burst, period, metrics).map(|mut l| {
            l.shared = bus.cloned();
            l
        })
    }

    /// Like [`KeyedLimit::new_shared`], for a limit taken often (sends): the node leases up to a
    /// sixteenth of the burst (at most 32) per round trip to Redis; see the module doc.
    pub fn leased(mut self, bus: Option<&crate::cluster::bus::Bus>) -> Self {
        self.shared = bus.cloned();
        if self.shared.is_some() {
            self.leases = Some(Leases { batch: (self.burst / 16).clamp(1, 32), held: Mutex::default() });
        }
        self
    }

    /// Takes one token for `key`, or says how long to wait.
    pub fn check(&self, key: &K) -> Result<(), ServiceError> {
        self.limiter.check_key(key).map_err(|not_until| {
            self.note_refusal(key);
            let wait = not_until.wait_time_from(self.clock.now());
            ServiceError::RateLimited { what: self.name, retry_after_ms: wait.as_millis().max(1) as u32 }
        })
    }

    /// Counts a refusal of `key` and records whom it refused.
    fn note_refusal(&self, key: &K) {
        self.refusals.inc();
        if let Some(subject) = key.subject() {
            self.log.record(self.name, subject, limit_log::now_ms());
        }
    }

    /// Forgets keys whose buckets are full again and lapsed leases, bounding memory; called
    /// periodically.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        if let Some(leases) = &self.leases {
            leases.sweep(Instant::now());
        }
    }

    fn refused(&self, key: &K, wait_ms: u64) -> ServiceError {
        self.note_refusal(key);
        let retry_after_ms = u32::try_from(wait_ms).unwrap_or(u32::MAX).max(1);
        ServiceError::RateLimited { what: self.name, retry_after_ms }
    }
}

impl<K: Hash + Eq + Clone + Display + LimitSubject> KeyedLimit<K> {
    /// Takes one token for `key` from the shared (Redis) count when there is one, else (or when
    /// Redis does not answer) from this node's bucket.
    pub async fn check_shared(&self, key: &K) -> Result<(), ServiceError> {
        let Some(bus) = &self.shared else { return self.check(key) };
        let redis_key = format!("rl:{}:{key}", self.name.replace(' ', "_"));
        if let Some(leases) = &self.leases {
            let now = Instant::now();
            if leases.spend(key, now) {
                return Ok(());
            }
            return match bus.rate_lease(&redis_key, self.burst, self.period_ms, leases.batch).await {
                Ok(Ok(granted)) => {
                    leases.keep(key, granted - 1, now);
                    Ok(())
                }
                Ok(Err(wait_ms)) => Err(self.refused(key, wait_ms)),
                Err(e) => {
                    tracing::debug!(limit = self.name, error = %e, "shared rate limit unavailable; local bucket used");
                    self.check(key)
                }
            };
        }
        match bus.rate_take(&redis_key, self.burst, self.period_ms).await {
            Ok(None) => Ok(()),
            Ok(Some(wait_ms)) => Err(self.refused(key, wait_ms)),
            Err(e) => {
                tracing::debug!(limit = self.name, error = %e, "shared rate limit unavailable; local bucket used");
                self.check(key)
            }
        }
    }
}

/// [`KeyedLimit::check_shared`] on an `Option<KeyedLimit>` (`None`: unlimited).
pub async fn check_shared<K: Hash + Eq + Clone + Display + LimitSubject>(
    limit: &Option<KeyedLimit<K>>,
    key: &K,
) -> Result<(), ServiceError> {
    match limit {
        Some(l) => l.check_shared(key).await,
        None => Ok(()),
    }
}

/// `Option<KeyedLimit>` where `None` means unlimited.
pub fn check<K: Hash + Eq + Clone + LimitSubject>(limit: &Option<KeyedLimit<K>>, key: &K) -> Result<(), ServiceError> {
    limit.as_ref().map_or(Ok(()), |l| l.check(key))
}

/// One limit counted by several services (sends: 1:1, group, actions, forwards), cheap to
/// clone into each; empty means unlimited.
pub struct SharedLimit<K: Hash + Eq + Clone>(Option<Arc<KeyedLimit<K>>>);

impl<K: Hash + Eq + Clone> SharedLimit<K> {
    /// Shares `limit` (`None`: unlimited).
    pub fn new(limit: Option<KeyedLimit<K>>) -> Self {
        Self(limit.map(Arc::new))
    }
}

impl<K: Hash + Eq + Clone + Display + LimitSubject> SharedLimit<K> {
    /// Takes one token for `key` (from this node's lease of the cluster-wide count when the
    /// limit is [`KeyedLimit::leased`]), or says how long to wait.
    pub async fn take(&self, key: &K) -> Result<(), ServiceError> {
        match &self.0 {
            Some(l) => l.check_shared(key).await,
            None => Ok(()),
        }
    }
}

impl<K: Hash + Eq + Clone + LimitSubject> SharedLimit<K> {
    /// Forgets idle buckets; called periodically.
    pub fn sweep(&self) {
        if let Some(l) = &self.0 {
            l.sweep();
        }
    }
}

impl<K: Hash + Eq + Clone> Clone for SharedLimit<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_with_a_wait_time() {
        let limit = KeyedLimit::new("test", 2, Duration::from_secs(3600), &Metrics::new()).unwrap();
        limit.check(&"a").unwrap();
        limit.check(&"a").unwrap();
        match limit.check(&"a") {
            Err(ServiceError::RateLimited { retry_after_ms, .. }) => assert!(retry_after_ms > 1_000_000),
            other => panic!("expected RateLimited, got {other:?}"),
        }
        limit.check(&"b").unwrap();
        assert!(KeyedLimit::<u64>::new("off", 0, Duration::from_secs(1), &Metrics::new()).is_none());
    }
}
