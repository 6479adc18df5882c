//! Reconnect and retry delays: exponential backoff with full jitter, and jittered server hints.
//!
//! Pure arithmetic over a caller-supplied random source, so tests can seed it.

use std::time::Duration;

use rand::Rng;

use crate::config::ReconnectPolicy;

/// The escalating delay between reconnect attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: ReconnectPolicy,
    attempt: u32,
}

impl Backoff {
    /// A backoff at its first attempt.
    pub fn new(policy: ReconnectPolicy) -> Self {
        Self { policy, attempt: 0 }
    }

    /// Consecutive attempts made since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next attempt: uniform in `[0, ceiling]` where the ceiling doubles
    /// with each attempt from `initial_delay` up to `max_delay` ("full jitter").
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        jitter_up_to(ceiling, rng)
    }

    /// Starts over from `initial_delay` (after a connection proved stable).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.policy.initial_delay.saturating_mul(factor).min(self.policy.max_delay)
    }
}

/// A delay the server asked for (`GoAway.reconnect_after_ms`, `retry_after_ms`) plus up to a
/// quarter more, so clients told the same thing at the same moment do not come back together.
pub fn after_hint(hint: Duration, rng: &mut impl Rng) -> Duration {
    hint + jitter_up_to(hint / 4, rng)
}

fn jitter_up_to(ceiling: Duration, rng: &mut impl Rng) -> Duration {
    let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rng.random_range(0..=ceiling_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn policy() -> ReconnectPolicy {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            ..Default::default()
        }
    }

    #[test]
    fn delays_stay_under_a_doubling_ceiling_capped_at_max() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..50 {
            let mut b = Backoff::new(policy());
            for attempt in 0..40u32 {
                let ceiling =
                    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(20))).min(Duration::from_secs(10));
                let d = b.next_delay(&mut rng);
                assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
            }
        }
    }

    #[test]
    fn jitter_spreads_over_the_whole_range_and_reset_starts_over() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut b = Backoff::new(policy());
        for _ in 0..10 {
            b.next_delay(&mut rng);
        }
        let delays: Vec<_> = (0..200).map(|_| b.next_delay(&mut rng)).collect();
        assert!(delays.iter().any(|d| *d < Duration::from_secs(2)), "full jitter reaches low values");
        assert!(delays.iter().any(|d| *d > Duration::from_secs(8)), "full jitter reaches near the cap");
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert!(b.next_delay(&mut rng) <= Duration::from_millis(100));
    }

    #[test]
    fn hinted_delays_wait_at_least_the_hint_and_at_most_a_quarter_more() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..200 {
            let d = after_hint(Duration::from_millis(1000), &mut rng);
            assert!(d >= Duration::from_millis(1000) && d <= Duration::from_millis(1250), "{d:?}");
        }
        assert_eq!(after_hint(Duration::ZERO, &mut rng), Duration::ZERO);
    }
}
