//! The threads that drive the inbox log (`log/`): the committer, the only writer, which takes
//! whatever requests are queued (an idle committer commits a lone request at once; under load
//! the requests that queue during one fsync, and while it yields the CPU once, form the next
//! batch), commits them with
//! [`InboxLog::commit_then`] and answers every caller; and the checkpointer, which writes the
//! held side writes to fjall (`staged.rs`), retires old segments and relieves memory when the
//! committer asks, and every second regardless.
//!
//! The committer answers a batch from the runtime that opened the store when there is one
//! (a multi-threaded tokio runtime): it hands all the batch's answers to one task there, so
//! the runtime is woken once per batch. Answering each caller from this thread instead would
//! wake a parked runtime worker once per caller, and on a busy core every such wake-up
//! preempts the committer and switches threads (measured: 1.65 eventfd writes and thread
//! switches per message in an open-loop run).

use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, RuntimeFlavor};
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
    /// A cumulative ack.
    Ack { device: DeviceAddr, up_to_seq: u64, reply: oneshot::Sender<StoreResult<()>> },
    /// A cumulative ack with the receipts it produces, as one atomic record.
    AckWithReceipts {
        device: DeviceAddr,
        up_to_seq: u64,
        receipts: AppendRequest,
        reply: oneshot::Sender<StoreResult<AppendOutcome>>,
    },
    /// `InboxStore::purge`.
    Purge { device: DeviceAddr, reply: oneshot::Sender<StoreResult<()>> },
    /// Account erasure: forget a device for good (`log::Op::Forget`).
    Forget { device: DeviceAddr, reply: oneshot::Sender<StoreResult<()>> },
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
            Command::Append { req, .. } | Command::AckWithReceipts { receipts: req, .. } => req.entries.len().max(1),
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
    /// The multi-threaded runtime the store was opened in, which batches are answered from;
    /// `None` answers from this thread (a current-thread runtime runs only while its owner
    /// drives it, so an answer queued there could wait for ever).
    answer_on: Option<Handle>,
}

/// A batch's answers to its callers, sent together by [`Answers::send`] or, should it be
/// dropped unsent (a runtime that shut down drops its queued tasks), by its drop: a caller
/// always gets its answer.
struct Answers(Vec<(Reply, StoreResult<Done>)>);

impl Answers {
    /// Answers every caller.
    fn send(mut self) {
        self.send_all();
    }

    fn send_all(&mut self) {
        for (reply, result) in self.0.drain(..) {
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

impl Drop for Answers {
    fn drop(&mut self) {
        self.send_all();
    }
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
            answer_on: Handle::try_current().ok().filter(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread),
        }
    }

    /// The thread's body: batches until the queue is closed and drained.
    pub(super) fn run(mut self) {
        while let Some(first) = self.rx.blocking_recv() {
            let commands = self.gather(first);
            self.process(commands);
        }
        // Writes staged after the last batch.
        if self.staged.iter().any(|s| s.has_pending()) {
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
    /// `batch_max_wait` for more (by default not at all) and then yielding the CPU once,
    /// stopping at a close.
    fn gather(&mut self, first: Command) -> Vec<Command> {
        let deadline = Instant::now() + self.batch_max_wait;
        let mut ops = first.ops();
        let mut commands = vec![first];
        let mut yielded = false;
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
                        if yielded {
                            break;
                        }
                        // Once, let whatever else is runnable on this core queue its requests
                        // first: on an idle machine the yield returns at once (a lone request
                        // still commits straight away); on a busy one the sessions fill the
                        // batch instead of the committer paying an fsync per handful.
                        yielded = true;
                        std::thread::yield_now();
                        continue;
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
        let mut writes = Vec::new();
        for s in &self.staged {
            s.write_into(&mut writes);
        }
        if !writes.is_empty() {
            ops.push(Op::HeldWrites(writes));
            replies.push(Reply::None);
        }
        for command in commands {
            match command {
                Command::Append { req, side, reply } => {
                    ops.push(Op::Append { req, writes: side, ack: None });
                    replies.push(Reply::Append(reply));
                }
                Command::AckWithReceipts { device, up_to_seq, receipts, reply } => {
                    ops.push(Op::Append { req: receipts, writes: Vec::new(), ack: Some((device, up_to_seq)) });
                    replies.push(Reply::Append(reply));
                }
                Command::Ack { device, up_to_seq, reply } => {
                    ops.push(Op::Ack { device, up_to: up_to_seq });
                    replies.push(Reply::Done(reply));
                }
                Command::Purge { device, reply } => {
                    ops.push(Op::Purge { device });
                    replies.push(Reply::Done(reply));
                }
                Command::Forget { device, reply } => {
                    ops.push(Op::Forget { device });
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
        let stagings = &self.staged;
        let committed = self.log.commit_then(ops, || stagings.iter().for_each(|s| s.logged()));
        if committed.failed {
            stagings.iter().for_each(|s| s.not_logged());
        }
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
        }
        if committed.wants_checkpoint || self.staged.iter().any(|s| s.wants_settle()) {
            let _ = self.checkpoint.try_send(());
        }
        let answers = Answers(
            replies.into_iter().zip(committed.results).filter(|(reply, _)| !matches!(reply, Reply::None)).collect(),
        );
        match &self.answer_on {
            Some(runtime) if answers.0.len() > 1 => {
                runtime.spawn(async move { answers.send() });
            }
            _ => answers.send(),
        }
    }
}

/// The checkpointer thread's body: until `wake` is dropped, when woken and every
/// [`CHECKPOINT_TICK`]: write the held side writes, checkpoint when segments are due (or every
/// [`SWEEP_INTERVAL`]), and relieve memory when it is over budget.
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
        if let Err(e) = log.settle() {
            tracing::error!(error = %e, "writing held side writes failed");
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;

    use crate::embedded::{FjallConfig, FjallStore};
    use crate::{
        AppendOutcome, AppendRequest, Conversation, DedupKey, DeviceAddr, InboxStore, MessageIndexStore, MessageRef,
        NewEntry,
    };

    /// CPU seconds (user + system, all threads) of this process so far.
    fn cpu_s() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
        // Fields 14 and 15 of proc(5), counted after the command name: utime, stime in ticks.
        (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    #[ignore = "a measurement, not a check: cargo test --release -p iris-store --lib committer_cost -- --ignored --nocapture"]
    async fn committer_cost_per_message() {
        // The 1:1 shape at the store: per message an index record, a deduplicated append to one
        // device and, once a round is durable, the device's ack. Prints CPU µs per message.
        const DEVICES: u64 = 200;
        const PER_ROUND: u64 = 2000;
        const ROUNDS: u64 = 100;
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(FjallStore::open(dir.path(), FjallConfig::default()).unwrap());
        let item = Bytes::from(vec![7u8; 200]);
        let (started, cpu0) = (Instant::now(), cpu_s());
        let mut last = vec![0u64; DEVICES as usize];
        for round in 0..ROUNDS {
            let mut pending = Vec::new();
            for i in 0..PER_ROUND {
                let id = round * PER_ROUND + i + 1;
                let (to, from) = (DeviceAddr::new(id % DEVICES + 1, 1), DeviceAddr::new((id + 7) % DEVICES + 1, 1));
                let r = MessageRef {
                    expires_at_ms: None,
                    sender: from.account,
                    conversation: Conversation::Direct(to.account),
                    sent_at_ms: 1,
                    deleted: false,
                };
                store.put_message_ref(id, r).await.unwrap();
                let dedup = Some(DedupKey { sender: from, client_msg_id: format!("c-{id}") });
                let entries = vec![NewEntry { device: to, item: item.clone() }];
                pending.push((
                    to,
                    store
                        .enqueue_append(AppendRequest {
                            expires_at_ms: None,
                            dedup,
                            server_msg_id: id,
                            server_ts_ms: 1,
                            entries,
                        })
                        .await
                        .unwrap(),
                ));
            }
            for (to, p) in pending {
                if let AppendOutcome::Appended { seqs } = p.await.unwrap() {
                    let slot = &mut last[(to.account - 1) as usize];
                    *slot = (*slot).max(seqs[0]);
                }
            }
            let acks: Vec<_> = (0..DEVICES)
                .map(|d| {
                    let store = store.clone();
                    let up_to = last[d as usize];
                    tokio::spawn(async move { store.ack(DeviceAddr::new(d + 1, 1), up_to).await.unwrap() })
                })
                .collect();
            for a in acks {
                a.await.unwrap();
            }
        }
        let n = (ROUNDS * PER_ROUND) as f64;
        let (wall, cpu) = (started.elapsed().as_secs_f64(), cpu_s() - cpu0);
        println!("committer_cost: {n} msgs, {:.0} msgs/s wall, {:.2} µs CPU per msg", n / wall, cpu * 1e6 / n);
    }
}
