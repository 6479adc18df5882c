//! The operations and acks a session has running, kept running while the session awaits
//! something else.
//!
//! Why: an operation may hold a pooled store connection (PostgreSQL lends one to a call until
//! its future is polled to the end). A session that awaited a read, a dispatch or a socket write
//! without polling its other operations would keep their connections from coming back, and with
//! every session doing the same the pool starves (measured before this: 50 clients with 4 sends
//! in flight each fell from ~2,000 to 13 msgs/s with 8 connections per shard). So every await
//! of the session goes through [`Inflight::alongside`], which polls the operations meanwhile and
//! keeps what finishes for the loop to answer.

use std::collections::VecDeque;
use std::future::Future;

use futures_util::future::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::dispatch::{Finished, OpFuture};

/// Running operations, and those that finished while the session awaited something else.
#[derive(Default)]
pub(super) struct Inflight {
    running: FuturesUnordered<OpFuture>,
    finished: VecDeque<Finished>,
}

impl Inflight {
    /// Starts polling `op` with the others.
    pub(super) fn push(&mut self, op: OpFuture) {
        self.running.push(op);
    }

    /// Operations not yet handled by the loop (running, or finished and waiting to be answered).
    pub(super) fn len(&self) -> usize {
        self.running.len() + self.finished.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next finished operation, waiting for one if none has; `None` when there are none.
    pub(super) async fn next(&mut self) -> Option<Finished> {
        match self.finished.pop_front() {
            Some(done) => Some(done),
            None => self.running.next().await,
        }
    }

    /// A finished operation, without waiting.
    pub(super) fn ready(&mut self) -> Option<Finished> {
        self.finished.pop_front().or_else(|| self.running.next().now_or_never().flatten())
    }

    /// Awaits `work` while the operations keep running; those that finish meanwhile wait in
    /// order for [`Inflight::next`] or [`Inflight::ready`].
    pub(super) async fn alongside<F: Future>(&mut self, work: F) -> F::Output {
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                biased;
                out = &mut work => return out,
                Some(done) = self.running.next(), if !self.running.is_empty() => self.finished.push_back(done),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iris_proto::pb;
    use tokio::sync::oneshot;

    fn answer(op: u64) -> Finished {
        Finished::Answer { op, event: pb::ServerEvent::default() }
    }

    #[tokio::test(start_paused = true)]
    async fn operations_finish_while_the_session_awaits_something_else() {
        // Proves: an operation that can only finish if polled (it waits for a signal the awaited
        // work sends after yielding) completes during `alongside`, and is answered afterwards.
        let mut inflight = Inflight::default();
        let (tx, rx) = oneshot::channel::<()>();
        inflight.push(Box::pin(async move {
            rx.await.expect("signal");
            answer(7)
        }));
        let (done_tx, done_rx) = oneshot::channel::<()>();
        inflight.push(Box::pin(async move {
            let _ = done_tx.send(());
            answer(8)
        }));
        let out = inflight
            .alongside(async move {
                tx.send(()).expect("the operation waits");
                let ran = tokio::time::timeout(std::time::Duration::from_secs(1), done_rx).await;
                assert!(matches!(ran, Ok(Ok(()))), "the other operation did not run while this work waited");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                "work done"
            })
            .await;
        assert_eq!(out, "work done");
        assert_eq!(inflight.len(), 2, "both finished, neither answered yet");
        let mut ops: Vec<u64> = std::iter::from_fn(|| inflight.ready())
            .map(|f| match f {
                Finished::Answer { op, .. } => op,
                _ => unreachable!(),
            })
            .collect();
        ops.sort_unstable();
        assert_eq!(ops, vec![7, 8]);
        assert!(inflight.is_empty());
    }
}
