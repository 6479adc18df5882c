//! The threads that drive the inbox log (`log/`): the committer, the only writer, which takes
//! whatever requests are queued (an idle committer commits a lone request at once; under load
//! the requests that queue during one fsync form the next batch), commits them with
//! [`InboxLog::commit`] and answers every caller; and the checkpointer, which retires old
//! segments and relieves memory when the committer asks, and every second regardless.

use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use super::log::{Done, InboxLog, KvWrite, Op};
use super::staged::Staged;
use super::{FjallConfig, Shared};
use crate::{AppendOutcome, AppendRequest, CommitSample, DeviceAddr, StoreError, StoreResult};

/// Longest sleep while waiting to fill a batch (only with `batch_max_wait_us` > 0).
const POLL_INTERVAL: Duration = Duration::from_micros(50);
/// How often the checkpointer looks for work when nobody asks.
const CHECKPOINT_TICK: Duration = Duration::from_secs(1);
/// How often it writes changed cursors and evicts unused devices when no segment is due.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// A request to the committer, with the channel its answer goes to.
pub(super) enum Command {
    /// `InboxStore::append`, with side writes committed atomically with it.
    Append { req: AppendRequest, side: Vec<KvWrite>, reply: oneshot::Sender<StoreResult<AppendOutcome>> },
    /// A cumulative ack, alone or with the receipts it produces (one atomic record).
    Ack { device: DeviceAddr, up_to_seq: u64, receipts: Option<AppendRequest>, reply: oneshot::Sender<StoreResult<()>> },
    /// `InboxStore::purge`.
    Purge { device: DeviceAddr, reply: oneshot::Sender<StoreResult<()>> },
    /// Side writes as a batch of their own (possibly empty: answered once the staging drained).
    Writes { writes: Vec<KvWrite>, reply: oneshot::Sender<StoreResult<()>> },
    /// Stop accepting requests; answered once everything queued before it is committed.
    Close { reply: oneshot::Sender<()> },
    /// Nothing to apply: wakes an idle committer so staged writes reach the log.
    Flush,
}

impl Command {
    /// Weight of the command against `batch_max_ops`.
    fn ops(&self) -> usize {
        match self {
            Command::Append { req, .. } => req.entries.len().max(1),
            _ => 1,
        }
    }
}

/// A caller's answer channel, held until the batch is committed.
enum Reply {
    Append(oneshot::Sender<StoreResult<AppendOutcome>>),
    Done(oneshot::Sender<StoreResult<()>>),
    /// A command that needs no answer (a flush).
    None,
}

/// The committer's state; lives on its own thread.
pub(super) struct Committer {
    log: Arc<InboxLog>,
    rx: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    batch_max_ops: usize,
    batch_max_wait: Duration,
    /// Callers of close, answered when the queue is drained.
    closers: Vec<oneshot::Sender<()>>,
    /// Side writes of other parts of the engine staged for the next batch (`staged.rs`).
    staged: Vec<Arc<Staged>>,
    /// Wakes the checkpointer.
    checkpoint: std_mpsc::SyncSender<()>,
}

impl Committer {
    pub(super) fn new(
        log: Arc<InboxLog>,
        rx: mpsc::Receiver<Command>,
        config: &FjallConfig,
        shared: Arc<Shared>,
        staged: Vec<Arc<Staged>>,
        checkpoint: std_mpsc::SyncSender<()>,
    ) -> Self {
        Self {
            log,
            rx,
            shared,
            batch_max_ops: config.batch_max_ops.max(1),
            batch_max_wait: Duration::from_micros(config.batch_max_wait_us),
            closers: Vec::new(),
            staged,
            checkpoint,
        }
    }

    /// The thread's body: batches until the queue is closed and drained.
    pub(super) fn run(mut self) {
        while let Some(first) = self.rx.blocking_recv() {
            let commands = self.gather(first);
            self.process(commands);
        }
        // Writes staged after the last batch.
        if self.staged.iter().any(|s| !s.is_empty()) {
            self.process(Vec::new());
        }
        if let Err(e) = self.log.close() {
            tracing::error!(error = %e, "final persist of the store failed");
        }
        for closer in self.closers.drain(..) {
            let _ = closer.send(());
        }
    }

    /// Collects what is queued after `first`, up to `batch_max_ops`, waiting up to
    /// `batch_max_wait` for more (by default not at all), stopping at a close.
    fn gather(&mut self, first: Command) -> Vec<Command> {
        let deadline = Instant::now() + self.batch_max_wait;
        let mut ops = first.ops();
        let mut commands = vec![first];
        while ops < self.batch_max_ops && !matches!(commands.last(), Some(Command::Close { .. })) {
            match self.rx.try_recv() {
                Ok(command) => {
                    ops += command.ops();
                    commands.push(command);
                }
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    std::thread::sleep((deadline - now).min(POLL_INTERVAL));
                }
            }
        }
        commands
    }

    /// Commits `commands` (and whatever is staged) as one batch and answers.
    fn process(&mut self, commands: Vec<Command>) {
        let mut ops = Vec::with_capacity(commands.len() + 1);
        let mut replies = Vec::with_capacity(commands.len() + 1);
        let mut staged = Vec::with_capacity(self.staged.len());
        let mut writes = Vec::new();
        for s in &self.staged {
            staged.push(s.write_into(&mut writes));
        }
        if !writes.is_empty() {
            ops.push(Op::Writes(writes));
            replies.push(Reply::None);
        }
        for command in commands {
            match command {
                Command::Append { req, side, reply } => {
                    ops.push(Op::Append { req, writes: side, ack: None });
                    replies.push(Reply::Append(reply));
                }
                Command::Ack { device, up_to_seq, receipts: Some(req), reply } => {
                    ops.push(Op::Append { req, writes: Vec::new(), ack: Some((device, up_to_seq)) });
                    replies.push(Reply::Done(reply));
                }
                Command::Ack { device, up_to_seq, receipts: None, reply } => {
                    ops.push(Op::Ack { device, up_to: up_to_seq });
                    replies.push(Reply::Done(reply));
                }
                Command::Purge { device, reply } => {
                    ops.push(Op::Purge { device });
                    replies.push(Reply::Done(reply));
                }
                Command::Writes { writes, reply } => {
                    ops.push(Op::Writes(writes));
                    replies.push(Reply::Done(reply));
                }
                Command::Close { reply } => {
                    self.rx.close();
                    self.closers.push(reply);
                }
                Command::Flush => {}
            }
        }
        if ops.is_empty() {
            return;
        }
        let started = Instant::now();
        let committed = self.log.commit(ops);
        if committed.wrote || committed.failed {
            self.shared.record_batch(!committed.failed);
            if let Some(observer) = self.shared.observer.get() {
                observer.committed(CommitSample {
                    appends: committed.appends,
                    duration: started.elapsed(),
                    ok: !committed.failed,
                });
            }
        }
        if !committed.failed {
            self.shared.appends.fetch_add(committed.appends, Ordering::Relaxed);
            self.shared.duplicates.fetch_add(committed.duplicates, Ordering::Relaxed);
            for (staging, written) in self.staged.iter().zip(&staged) {
                staging.forget(written);
            }
        }
        if committed.wants_checkpoint {
            let _ = self.checkpoint.try_send(());
        }
        for (reply, result) in replies.into_iter().zip(committed.results) {
            match reply {
                Reply::Append(tx) => {
                    let _ = tx.send(result.and_then(|done| match done {
                        Done::Append(outcome) => Ok(outcome),
                        Done::Ok => Err(StoreError::Unavailable("append answered without an outcome".into())),
                    }));
                }
                Reply::Done(tx) => {
                    let _ = tx.send(result.map(|_| ()));
                }
                Reply::None => {}
            }
        }
    }
}

/// The checkpointer thread's body: until `wake` is dropped, when woken and every
/// [`CHECKPOINT_TICK`]: checkpoint when segments are due (or every [`SWEEP_INTERVAL`]), and
/// relieve memory when it is over budget.
pub(super) fn run_checkpointer(log: Arc<InboxLog>, wake: std_mpsc::Receiver<()>) {
    let mut swept = Instant::now();
    loop {
        match wake.recv_timeout(CHECKPOINT_TICK) {
            Ok(()) | Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if log.is_poisoned() {
            continue;
        }
        if log.checkpoint_due() || swept.elapsed() >= SWEEP_INTERVAL {
            swept = Instant::now();
            if let Err(e) = log.checkpoint() {
                tracing::error!(error = %e, "inbox log checkpoint failed");
            }
        }
        if let Err(e) = log.relieve() {
            tracing::error!(error = %e, "moving inbox entries out of memory failed");
        }
    }
}
