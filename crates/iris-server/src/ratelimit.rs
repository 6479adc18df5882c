//! Keyed token-bucket rate limits (governor), with the wait time clients are told.
//!
//! In cluster mode the abuse limits that N nodes would otherwise multiply by N (one-time codes,
//! verify attempts, contact discovery) are kept in Redis instead ([`KeyedLimit::shared`],
//! a fixed window per key); if Redis does not answer, the node's own bucket decides. The
//! high-rate limits (sends, typing, connections) stay per node: a Redis round trip per message
//! would cost more than the limit saves, and one device talks to one node at a time.

use std::fmt::Display;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use prometheus_client::metrics::counter::Counter;

use crate::error::ServiceError;
use crate::metrics::Metrics;

/// One named limit over keys of type `K` (phone, IP, account).
pub struct KeyedLimit<K: Hash + Eq + Clone> {
    name: &'static str,
    limiter: DefaultKeyedRateLimiter<K>,
    clock: DefaultClock,
    refusals: Counter,
    burst: u32,
    period_ms: u64,
    /// Cluster mode: the count lives in Redis (`rl:{name}:{key}`), shared by every node.
    shared: Option<crate::cluster::bus::Bus>,
}

impl<K: Hash + Eq + Clone> KeyedLimit<K> {
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
            burst: burst.get(),
            period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
            shared: None,
        })
    }

    /// The same limit kept in Redis when `bus` is given (cluster mode); see the module doc.
    pub fn shared(mut self, bus: Option<&crate::cluster::bus::Bus>) -> Self {
        self.shared = bus.cloned();
        self
    }

    /// Takes one token for `key`, or says how long to wait.
    pub fn check(&self, key: &K) -> Result<(), ServiceError> {
        self.limiter.check_key(key).map_err(|not_until| {
            self.refusals.inc();
            let wait = not_until.wait_time_from(self.clock.now());
            ServiceError::RateLimited { what: self.name, retry_after_ms: wait.as_millis().max(1) as u32 }
        })
    }

    /// Forgets keys whose buckets are full again, bounding memory; called periodically.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

impl<K: Hash + Eq + Clone + Display> KeyedLimit<K> {
    /// Takes one token for `key` from the shared (Redis) count when there is one, else (or when
    /// Redis does not answer) from this node's bucket.
    pub async fn check_shared(&self, key: &K) -> Result<(), ServiceError> {
        let Some(bus) = &self.shared else { return self.check(key) };
        let redis_key = format!("rl:{}:{key}", self.name.replace(' ', "_"));
        match bus.rate_take(&redis_key, self.burst, self.period_ms).await {
            Ok(None) => Ok(()),
            Ok(Some(wait_ms)) => {
                self.refusals.inc();
                let retry_after_ms = u32::try_from(wait_ms).unwrap_or(u32::MAX).max(1);
                Err(ServiceError::RateLimited { what: self.name, retry_after_ms })
            }
            Err(e) => {
                tracing::debug!(limit = self.name, error = %e, "shared rate limit unavailable; local bucket used");
                self.check(key)
            }
        }
    }
}

/// [`KeyedLimit::check_shared`] on an `Option<KeyedLimit>` (`None`: unlimited).
pub async fn check_shared<K: Hash + Eq + Clone + Display>(
    limit: &Option<KeyedLimit<K>>,
    key: &K,
) -> Result<(), ServiceError> {
    match limit {
        Some(l) => l.check_shared(key).await,
        None => Ok(()),
    }
}

/// `Option<KeyedLimit>` where `None` means unlimited.
pub fn check<K: Hash + Eq + Clone>(limit: &Option<KeyedLimit<K>>, key: &K) -> Result<(), ServiceError> {
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

    /// Takes one token for `key`, or says how long to wait.
    pub fn check(&self, key: &K) -> Result<(), ServiceError> {
        self.0.as_ref().map_or(Ok(()), |l| l.check(key))
    }

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
        assert!(KeyedLimit::<u8>::new("off", 0, Duration::from_secs(1), &Metrics::new()).is_none());
    }
}
