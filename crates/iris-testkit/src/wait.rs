//! Waiting for an event instead of sleeping: [`wait_until`] polls an observable condition (a
//! metric, a store cursor, a counter the test keeps) and returns as soon as it holds, so a test
//! waits exactly as long as the event takes, and fails with a message naming what never happened.
//!
//! Knows nothing of Iris: any crate's tests can use it.

use std::future::Future;
use std::time::Duration;

/// How often [`wait_until`] checks its condition again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// What a condition answers: `bool` (reached or not) or `Option<T>` (reached with a value the
/// caller wants, e.g. the first successful answer).
pub trait Reached {
    /// What [`wait_until`] returns once the condition holds.
    type Value;
    /// `Some` once the condition holds.
    fn reached(self) -> Option<Self::Value>;
}

impl Reached for bool {
    type Value = ();
    fn reached(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Reached for Option<T> {
    type Value = T;
    fn reached(self) -> Option<T> {
        self
    }
}

/// Polls `condition` every [`POLL_INTERVAL`] until it holds and returns its value; panics naming
/// `what` once `timeout` passed without it (a bound never reached when the test is green).
///
/// Time is tokio's, so under paused time the polls cost nothing; poll only conditions that tasks
/// of the same runtime make true then (not another thread or process), or the bound passes in an
/// instant of real time.
pub async fn wait_until<R, F, Fut>(what: &str, timeout: Duration, mut condition: F) -> R::Value
where
    R: Reached,
    F: FnMut() -> Fut,
    Fut: Future<Output = R>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = condition().await.reached() {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not reached within {timeout:?}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn returns_as_soon_as_the_condition_holds() {
        // Proves: the wait ends at the first poll that sees the condition, not at the bound.
        let started = tokio::time::Instant::now();
        let n = Arc::new(AtomicU32::new(0));
        let bump = n.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(35)).await;
            bump.store(7, Ordering::SeqCst);
        });
        let seen = wait_until("n is set", Duration::from_secs(5), || async {
            let v = n.load(Ordering::SeqCst);
            (v != 0).then_some(v)
        })
        .await;
        assert_eq!(seen, 7);
        assert!(started.elapsed() < Duration::from_millis(35) + 2 * POLL_INTERVAL, "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "never: not reached within 1s")]
    async fn fails_naming_the_event_after_the_bound() {
        // Proves: a condition that never holds fails the test after the bound, with its name.
        wait_until("never", Duration::from_secs(1), || async { false }).await;
    }
}
