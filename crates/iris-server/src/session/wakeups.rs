//! Which of a session's wake-up sources woke it, so a turn polls only those.
//!
//! A session sleeps on several sources at once: its kick, the operations in flight, its hints
//! and ephemeral events, the client's socket, the delivery machine's timer and the heartbeat
//! tick. Polling every one on every wake-up (about ten wake-ups per 1:1 message) took 28.7
//! queue polls per message, the largest piece of a session's own machinery. So each source is
//! polled with a waker of its own, which marks the source before it wakes the task, and a wait
//! polls only the marked sources and those that have no wake-up arranged (they answered
//! something last time, were never polled, or changed).
//!
//! A source that answered `Pending` has arranged its wake-up (a channel's or a socket's waker
//! slot, a timer entry), and the arrangement holds after the future that polled it is dropped.
//! It can be lost one way: replaced by another poll of the same thing with another waker that
//! answered `Pending` too (a TLS read blocked on a write, then the session's own write). That
//! happens only where the task sleeps or yields, so a wait polls every source when the turn's
//! work slept or yielded since the last wait ([`Wakeups::due`]'s `poll`), and when the task was
//! woken by something that marked no source.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use futures_util::task::AtomicWaker;

/// One of the things a session sleeps on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `Registration::kick`.
    Kick,
    /// The operations and acks in flight.
    Inflight,
    /// The hint queue.
    Hints,
    /// The ephemeral event queue.
    Ephemeral,
    /// The client's socket.
    Transport,
    /// The delivery machine's timer.
    Timer,
    /// The heartbeat tick.
    Tick,
}

const SOURCES: [Source; 7] =
    [Source::Kick, Source::Inflight, Source::Hints, Source::Ephemeral, Source::Transport, Source::Timer, Source::Tick];

/// A set of [`Source`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceSet(u8);

impl SourceSet {
    /// Every source.
    pub const ALL: Self = Self((1 << SOURCES.len()) - 1);

    /// Whether `source` is in the set.
    pub fn contains(self, source: Source) -> bool {
        self.0 & bit(source) != 0
    }

    /// Adds `source`.
    pub fn insert(&mut self, source: Source) {
        self.0 |= bit(source);
    }
}

fn bit(source: Source) -> u8 {
    1 << source as u8
}

/// What the sources' wakers share with the session.
#[derive(Default)]
struct Shared {
    /// The sources that woke the task since the session last looked (bits of [`Source`]).
    woke: AtomicU8,
    /// The task's own waker.
    task: AtomicWaker,
}

/// The waker a source is polled with: marks the source, then wakes the task.
struct SourceWaker {
    bit: u8,
    shared: Arc<Shared>,
}

impl Wake for SourceWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.woke.fetch_or(self.bit, Ordering::AcqRel);
        self.shared.task.wake();
    }
}

/// A waker per source, and which sources must be polled at the next wait.
pub struct Wakeups {
    shared: Arc<Shared>,
    wakers: [Waker; SOURCES.len()],
    /// Polled at the next wait whatever woke the task: no wake-up of theirs is arranged.
    again: SourceSet,
    /// The task's poll (its count) of the last [`Wakeups::due`].
    last_poll: u64,
}

impl Default for Wakeups {
    fn default() -> Self {
        let shared = Arc::new(Shared::default());
        let wakers =
            SOURCES.map(|source| Waker::from(Arc::new(SourceWaker { bit: bit(source), shared: shared.clone() })));
        Self { shared, wakers, again: SourceSet::ALL, last_poll: 0 }
    }
}

impl Wakeups {
    /// The waker to poll `source` with.
    pub fn waker(&self, source: Source) -> &Waker {
        &self.wakers[source as usize]
    }

    /// The sources to poll now, in the task's poll number `poll` (`cx` is the task's context).
    /// `first` is the wait's first poll, right after the turn's work: every source when that
    /// work slept or yielded; later polls follow a wake-up: every source when none was marked.
    pub fn due(&mut self, cx: &Context<'_>, poll: u64, first: bool) -> SourceSet {
        // Registered before the marks are taken: a source that fires after the swap wakes it.
        self.shared.task.register(cx.waker());
        let woke = SourceSet(self.shared.woke.swap(0, Ordering::AcqRel));
        let every = if first { poll != self.last_poll } else { woke == SourceSet::default() };
        self.last_poll = poll;
        let again = std::mem::take(&mut self.again);
        if every {
            SourceSet::ALL
        } else {
            SourceSet(woke.0 | again.0)
        }
    }

    /// `source` has no wake-up arranged (it answered something, or was not polled): poll it at
    /// the next wait.
    pub fn again(&mut self, source: Source) {
        self.again.insert(source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context_of(waker: &Waker) -> Context<'_> {
        Context::from_waker(waker)
    }

    #[test]
    fn a_wait_polls_the_sources_that_woke_and_those_without_a_wake_up() {
        // Proves: the first wait polls everything; after that only marked sources and those
        // asked again; a wake-up that marks nothing, or work that slept, polls everything.
        let task = Waker::noop();
        let cx = context_of(task);
        let mut wakeups = Wakeups::default();
        assert_eq!(wakeups.due(&cx, 1, true), SourceSet::ALL, "never polled");
        assert_eq!(wakeups.due(&cx, 1, true), SourceSet::default(), "same poll, nothing woke");
        wakeups.waker(Source::Hints).wake_by_ref();
        wakeups.again(Source::Transport);
        let due = wakeups.due(&cx, 2, false);
        assert!(due.contains(Source::Hints) && due.contains(Source::Transport));
        assert!(!due.contains(Source::Kick) && !due.contains(Source::Timer));
        assert_eq!(wakeups.due(&cx, 3, false), SourceSet::ALL, "woken, no source marked");
        assert_eq!(wakeups.due(&cx, 3, true), SourceSet::default());
        assert_eq!(wakeups.due(&cx, 5, true), SourceSet::ALL, "the turn's work slept");
    }

    #[test]
    fn a_source_wakes_the_task_it_was_polled_for() {
        // Proves: a source's waker reaches the task's own waker, registered at the last wait.
        struct Count(std::sync::atomic::AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(Default::default()));
        let task = Waker::from(count.clone());
        let mut wakeups = Wakeups::default();
        wakeups.due(&context_of(&task), 1, true);
        wakeups.waker(Source::Kick).wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(wakeups.due(&context_of(&task), 2, false).contains(Source::Kick));
    }
}
