//! Keyed token-bucket rate limits (governor), with the wait time clients are told.

use std::hash::Hash;
use std::num::NonZeroU32;
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
}

impl<K: Hash + Eq + Clone> KeyedLimit<K> {
    /// `burst` requests at once, refilled at `burst` per `period`. `burst == 0` disables it.
    /// Refusals are counted in `metrics` under `name`.
    pub fn new(name: &'static str, burst: u32, period: Duration, metrics: &Metrics) -> Option<Self> {
        let burst = NonZeroU32::new(burst)?;
        let quota = Quota::with_period(period / burst.get())?.allow_burst(burst);
        let refusals = metrics.rate_limit_counter(name);
        Some(Self { name, limiter: RateLimiter::keyed(quota), clock: DefaultClock::default(), refusals })
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

/// `Option<KeyedLimit>` where `None` means unlimited.
pub fn check<K: Hash + Eq + Clone>(limit: &Option<KeyedLimit<K>>, key: &K) -> Result<(), ServiceError> {
    limit.as_ref().map_or(Ok(()), |l| l.check(key))
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
