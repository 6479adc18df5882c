//! Receipt hints that wait for their session's next wake-up instead of causing one.
//!
//! A receipt is not urgent: a session holds the receipts next in line for
//! `session.receipt_hold_ms`, so that they go out in a write made for something else
//! (`session/delivery.rs`). Hinted down the session's channel like a message, a receipt woke its
//! session only for the session to start that hold, and the hold's end woke it again: two
//! wake-ups for a receipt that nothing else carried, one for a receipt that something did.
//! Below saturation that was one of the eight or so task wake-ups a 1:1 message costs.
//!
//! Here a receipt's hint waits in its registration's [`HeldHints`], stamped with when it came.
//! The session takes them whenever anything else wakes it, and counts the hold from that stamp.
//! One task for the whole node ([`Releases::run`]) wakes the sessions whose oldest held hint
//! has waited the hold and that nothing woke meanwhile: one wake-up for a receipt that goes out
//! alone, none for one that rides with other traffic. Its steps are at least
//! [`Releases::step`] apart, so a receipt may wait up to the hold plus one step, and the task
//! runs at most 1 / step times a second however many receipts go out.
//!
//! Generic over the hint (`T`), whose `Default` is the wake-up itself: the router's hint of
//! seq 0, which a session never buffers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The shortest interval between two steps of [`Releases::run`].
pub const STEP_MIN: Duration = Duration::from_millis(1);

/// A registration's held receipt hints, each with when it came; shared by the router (which
/// adds) and the session (which takes them on each wake-up).
#[derive(Debug)]
pub struct HeldHints<T> {
    held: Mutex<Vec<(T, Instant)>>,
}

impl<T> Default for HeldHints<T> {
    fn default() -> Self {
        Self { held: Mutex::new(Vec::new()) }
    }
}

/// What [`HeldHints::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Held, and the first: nothing was waiting, so the release must be scheduled.
    First,
    /// Held behind others, whose release is scheduled.
    Behind,
    /// Not held: `max` hints wait already (the session must read its inbox instead).
    Full,
}

impl<T> HeldHints<T> {
    /// Holds `hint`, which came `at`, unless `max` wait already.
    pub fn push(&self, hint: T, at: Instant, max: usize) -> Held {
        let mut held = self.held.lock().expect("held hints lock");
        if held.len() >= max {
            return Held::Full;
        }
        held.push((hint, at));
        if held.len() == 1 {
            Held::First
        } else {
            Held::Behind
        }
    }

    /// Moves every held hint into `into` (emptied by the caller), oldest first. Swaps the
    /// buffers, so neither side allocates once both have grown.
    pub fn take_into(&self, into: &mut Vec<(T, Instant)>) {
        let mut held = self.held.lock().expect("held hints lock");
        if !held.is_empty() {
            std::mem::swap(&mut *held, into);
        }
    }

    /// When the oldest hint held came, if any is.
    fn oldest(&self) -> Option<Instant> {
        self.held.lock().expect("held hints lock").first().map(|(_, at)| *at)
    }
}

/// A session to wake once `at` passes, if its hints still wait then.
struct Due<T> {
    at: Instant,
    held: Arc<HeldHints<T>>,
    wake: mpsc::Sender<T>,
}

/// The node's schedule of held receipts to release: one per router.
pub struct Releases<T> {
    hold: Duration,
    /// Ascending in `at` (every entry is pushed at its hint's time plus the same hold).
    due: Mutex<VecDeque<Due<T>>>,
    /// Woken when `due` stops being empty.
    added: Notify,
}

impl<T: Default> Releases<T> {
    /// Releases after `hold` (zero: nothing is held, see [`Releases::holds`]).
    pub fn new(hold: Duration) -> Self {
        Self { hold, due: Mutex::new(VecDeque::new()), added: Notify::new() }
    }

    /// Whether hints are held at all (`session.receipt_hold_ms` above zero).
    pub fn holds(&self) -> bool {
        !self.hold.is_zero()
    }

    /// How far apart [`Releases::run`]'s steps are at least: a quarter of the hold, and
    /// [`STEP_MIN`] or more.
    pub fn step(&self) -> Duration {
        (self.hold / 4).max(STEP_MIN)
    }

    /// `held` got its first hint at `at`: its session is woken through `wake` once the hold is
    /// over, unless it took its hints by then.
    pub fn schedule(&self, at: Instant, held: Arc<HeldHints<T>>, wake: mpsc::Sender<T>) {
        let was_empty = {
            let mut due = self.due.lock().expect("releases lock");
            due.push_back(Due { at: at + self.hold, held, wake });
            due.len() == 1
        };
        if was_empty {
            self.added.notify_one();
        }
    }

    /// Wakes the sessions whose held hints are due, step by step, until `shutdown` (a stopping
    /// session takes nothing more from its inbox anyway).
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut last = Instant::now();
        loop {
            let next = self.due.lock().expect("releases lock").front().map(|d| d.at);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = self.added.notified(), if next.is_none() => continue,
                () = tokio::time::sleep_until(next.unwrap_or(last).max(last + self.step())), if next.is_some() => {}
            }
            last = Instant::now();
            self.release_due(last);
        }
    }

    /// Wakes the sessions due at `now` whose oldest hint still waits and has waited the hold (a
    /// session that took its hints and got new ones has a later entry of its own).
    fn release_due(&self, now: Instant) {
        let due: Vec<Due<T>> = {
            let mut due = self.due.lock().expect("releases lock");
            let ready = due.partition_point(|d| d.at <= now);
            due.drain(..ready).collect()
        };
        for d in due {
            if d.held.oldest().is_some_and(|at| at + self.hold <= now) {
                // Full: the session has a wake-up waiting already. Closed: it ended.
                let _ = d.wake.try_send(T::default());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Releases after 20 ms, running until the token is cancelled.
    fn running() -> (Arc<Releases<u64>>, CancellationToken, tokio::task::JoinHandle<()>) {
        let releases = Arc::new(Releases::new(Duration::from_millis(20)));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (releases, stop) = (releases.clone(), stop.clone());
            async move { releases.run(stop).await }
        });
        (releases, stop, task)
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_hint_wakes_its_session_once_the_hold_is_over() {
        let (releases, stop, task) = running();
        let held = Arc::new(HeldHints::default());
        let (wake, mut woken) = mpsc::channel(4);
        let start = Instant::now();
        assert_eq!(held.push(7, start, 8), Held::First);
        releases.schedule(start, held.clone(), wake.clone());
        assert_eq!(held.push(8, start, 8), Held::Behind);
        assert_eq!(woken.recv().await, Some(0), "the wake-up is the default hint");
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(20) && waited <= Duration::from_millis(26), "{waited:?}");
        let mut taken = Vec::new();
        held.take_into(&mut taken);
        assert_eq!(taken.iter().map(|(h, _)| *h).collect::<Vec<_>>(), vec![7, 8]);
        assert!(woken.try_recv().is_err(), "one wake-up");
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_that_took_its_hints_is_not_woken() {
        let (releases, stop, task) = running();
        let held = Arc::new(HeldHints::default());
        let (wake, mut woken) = mpsc::channel(4);
        let start = Instant::now();
        held.push(1, start, 8);
        releases.schedule(start, held.clone(), wake.clone());
        // Something else woke the session after 5 ms: it took the hint, and a new one came.
        tokio::time::sleep(Duration::from_millis(5)).await;
        held.take_into(&mut Vec::new());
        let later = Instant::now();
        assert_eq!(held.push(2, later, 8), Held::First);
        releases.schedule(later, held.clone(), wake.clone());
        assert_eq!(woken.recv().await, Some(0));
        assert!(later.elapsed() >= Duration::from_millis(20), "woken for the second hint's hold, not the first's");
        assert!(woken.try_recv().is_err());
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn at_most_max_hints_are_held() {
        let held = HeldHints::default();
        let now = Instant::now();
        assert_eq!(held.push(1u64, now, 2), Held::First);
        assert_eq!(held.push(2, now, 2), Held::Behind);
        assert_eq!(held.push(3, now, 2), Held::Full);
    }
}
