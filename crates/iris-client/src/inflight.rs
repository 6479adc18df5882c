//! Operations waiting for the server's answer, keyed by request id: which to (re)send next, which
//! wait out a `retry_after_ms`, and whose caller to answer.
//!
//! No I/O and no clock of its own (`now` is passed in), so the retry rules are unit-tested.
//! **Invariant:** an operation is answered exactly once, and resent with the same request id and
//! the same `client_msg_id` until then; (re)sends go out in request-id order, which keeps a
//! device's messages in send order.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use iris_proto::pb::{self, client_op};
use iris_proto::ErrorCodeExt;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::config::RetryPolicy;
use crate::error::ClientError;

/// Where to deliver the answer of one operation.
#[derive(Debug)]
pub(crate) enum Reply {
    Send(oneshot::Sender<Result<pb::SendResult, ClientError>>),
    Receipt(oneshot::Sender<Result<pb::ReceiptResult, ClientError>>),
    Group(oneshot::Sender<Result<pb::GroupResult, ClientError>>),
    /// Presence, typing and block operations: the answering event as it came.
    Event(oneshot::Sender<Result<pb::server_event::Event, ClientError>>),
}

impl Reply {
    /// Answers the caller with `err`.
    pub(crate) fn fail(self, err: ClientError) {
        // A caller that stopped waiting is not an error.
        match self {
            Self::Send(tx) => drop(tx.send(Err(err))),
            Self::Receipt(tx) => drop(tx.send(Err(err))),
            Self::Group(tx) => drop(tx.send(Err(err))),
            Self::Event(tx) => drop(tx.send(Err(err))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// To be written at the next opportunity.
    Ready,
    /// Written on the current connection; the answer is awaited.
    Sent,
    /// Refused with a retryable code; ready again at this instant.
    Waiting(Instant),
}

#[derive(Debug)]
struct Pending {
    op: client_op::Op,
    reply: Reply,
    attempts: u32,
    state: State,
}

/// What to do about an error the server returned for one request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ErrorOutcome {
    /// The request id is not pending (already answered, or never ours).
    Unknown,
    /// Scheduled for another attempt after this delay.
    Retrying(Duration),
    /// Answered to the caller with the error.
    Failed,
}

/// The table of pending operations.
#[derive(Debug, Default)]
pub(crate) struct Inflight {
    ops: HashMap<u64, Pending>,
    ready: BTreeSet<u64>,
    timers: BTreeSet<(Instant, u64)>,
    n_sent: usize,
}

impl Inflight {
    /// Adds a new operation, ready to be written.
    pub(crate) fn insert(&mut self, request_id: u64, op: client_op::Op, reply: Reply) {
        self.ops.insert(request_id, Pending { op, reply, attempts: 0, state: State::Ready });
        self.ready.insert(request_id);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether `request_id` still awaits its answer.
    pub(crate) fn contains(&self, request_id: u64) -> bool {
        self.ops.contains_key(&request_id)
    }

    /// Operations written and not yet answered on the current connection.
    pub(crate) fn n_sent(&self) -> usize {
        self.n_sent
    }

    /// The next ready operation (lowest request id) as a `ClientOp`, now counted as sent.
    pub(crate) fn take_ready(&mut self) -> Option<pb::ClientOp> {
        let request_id = self.ready.pop_first()?;
        let pending = self.ops.get_mut(&request_id)?;
        pending.state = State::Sent;
        pending.attempts += 1;
        self.n_sent += 1;
        Some(pb::ClientOp { request_id, op: Some(pending.op.clone()) })
    }

    /// Puts the next ready operation back after `take_ready` if it did not fit in the frame.
    pub(crate) fn untake(&mut self, request_id: u64) {
        if let Some(p) = self.ops.get_mut(&request_id) {
            p.state = State::Ready;
            p.attempts -= 1;
            self.n_sent -= 1;
            self.ready.insert(request_id);
        }
    }

    /// The connection is gone: everything written on it is resent on the next one.
    pub(crate) fn on_disconnect(&mut self) {
        for (id, p) in &mut self.ops {
            if p.state == State::Sent {
                p.state = State::Ready;
                // An unanswered attempt does not count against the retry budget.
                p.attempts -= 1;
                self.ready.insert(*id);
            }
        }
        self.n_sent = 0;
    }

    /// Answers a pending send.
    pub(crate) fn complete_send(&mut self, request_id: u64, result: pb::SendResult) {
        match self.remove(request_id) {
            Some(Reply::Send(tx)) => drop(tx.send(Ok(result))),
            Some(other) => other.fail(ClientError::Protocol("send result for a receipt".into())),
            None => {}
        }
    }

    /// Answers a pending receipt.
    pub(crate) fn complete_receipt(&mut self, request_id: u64, result: pb::ReceiptResult) {
        match self.remove(request_id) {
            Some(Reply::Receipt(tx)) => drop(tx.send(Ok(result))),
            Some(other) => other.fail(ClientError::Protocol("receipt result for a send".into())),
            None => {}
        }
    }

    /// Answers a pending group operation.
    pub(crate) fn complete_group(&mut self, request_id: u64, result: pb::GroupResult) {
        match self.remove(request_id) {
            Some(Reply::Group(tx)) => drop(tx.send(Ok(result))),
            Some(other) => other.fail(ClientError::Protocol("group result for another operation".into())),
            None => {}
        }
    }

    /// Answers a pending presence, typing or block operation.
    pub(crate) fn complete_event(&mut self, request_id: u64, event: pb::server_event::Event) {
        match self.remove(request_id) {
            Some(Reply::Event(tx)) => drop(tx.send(Ok(event))),
            Some(other) => other.fail(ClientError::Protocol("unexpected answer for the operation".into())),
            None => {}
        }
    }

    /// Handles a non-fatal error for `request_id`: schedules a retry for retryable codes while
    /// attempts remain (after `retry_after_ms`, or `policy.default_delay`, plus `jitter`),
    /// otherwise answers the caller.
    pub(crate) fn on_error(
        &mut self,
        request_id: u64,
        err: pb::Error,
        now: Instant,
        policy: &RetryPolicy,
        jitter: impl FnOnce(Duration) -> Duration,
    ) -> ErrorOutcome {
        // Only an operation written on this connection can be answered on it.
        let Some(p) = self.ops.get_mut(&request_id).filter(|p| p.state == State::Sent) else {
            return ErrorOutcome::Unknown;
        };
        self.n_sent -= 1;
        let hint = match err.retry_after_ms {
            0 => policy.default_delay,
            ms => Duration::from_millis(u64::from(ms)),
        };
        if err.error_code().is_retryable() && p.attempts < policy.max_attempts && hint <= policy.max_wait {
            let delay = jitter(hint);
            p.state = State::Waiting(now + delay);
            self.timers.insert((now + delay, request_id));
            return ErrorOutcome::Retrying(delay);
        }
        p.state = State::Ready; // so `remove` does not touch `n_sent` again
        if let Some(reply) = self.remove(request_id) {
            reply.fail(ClientError::Rejected(err));
        }
        ErrorOutcome::Failed
    }

    /// When the earliest waiting retry becomes ready.
    pub(crate) fn next_timer(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Makes every retry whose wait is over ready again.
    pub(crate) fn release_due(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if let Some(p) = self.ops.get_mut(&id) {
                p.state = State::Ready;
                self.ready.insert(id);
            }
        }
    }

    /// Whether an operation can be written now.
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Answers every pending operation with an error produced by `err` (the client stopped).
    pub(crate) fn fail_all(&mut self, err: impl Fn() -> ClientError) {
        for (_, p) in self.ops.drain() {
            p.reply.fail(err());
        }
        self.ready.clear();
        self.timers.clear();
        self.n_sent = 0;
    }

    fn remove(&mut self, request_id: u64) -> Option<Reply> {
        let p = self.ops.remove(&request_id)?;
        match p.state {
            State::Sent => self.n_sent -= 1,
            State::Ready => {
                self.ready.remove(&request_id);
            }
            State::Waiting(at) => {
                self.timers.remove(&(at, request_id));
            }
        }
        Some(p.reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iris_proto::pb::ErrorCode;

    fn send_op(id: &str) -> client_op::Op {
        client_op::Op::Send(pb::SendMessage { client_msg_id: id.into(), ..Default::default() })
    }

    fn add(table: &mut Inflight, request_id: u64) -> oneshot::Receiver<Result<pb::SendResult, ClientError>> {
        let (tx, rx) = oneshot::channel();
        table.insert(request_id, send_op(&format!("m{request_id}")), Reply::Send(tx));
        rx
    }

    fn ids(ops: &[pb::ClientOp]) -> Vec<u64> {
        ops.iter().map(|op| op.request_id).collect()
    }

    fn drain(table: &mut Inflight) -> Vec<pb::ClientOp> {
        std::iter::from_fn(|| table.take_ready()).collect()
    }

    #[test]
    fn unanswered_ops_are_resent_in_order_after_a_reconnect() {
        let mut t = Inflight::default();
        let _rx: Vec<_> = [3, 1, 2].into_iter().map(|id| add(&mut t, id)).collect();
        assert_eq!(ids(&drain(&mut t)), [1, 2, 3]);
        assert_eq!(t.n_sent(), 3);
        t.complete_send(2, pb::SendResult::default());
        t.on_disconnect();
        assert_eq!(t.n_sent(), 0);
        let resent = drain(&mut t);
        assert_eq!(ids(&resent), [1, 3]);
        let Some(client_op::Op::Send(m)) = &resent[0].op else { panic!("not a send") };
        assert_eq!(m.client_msg_id, "m1", "a resend keeps its client_msg_id");
    }

    #[test]
    fn retryable_errors_wait_then_retry_until_attempts_run_out() {
        let policy = RetryPolicy { max_attempts: 2, default_delay: Duration::from_millis(200), ..Default::default() };
        let now = Instant::now();
        let mut t = Inflight::default();
        let mut rx = add(&mut t, 1);
        drain(&mut t);
        let err = pb::Error::new(ErrorCode::Overloaded, "busy").with_retry_after(500);
        assert_eq!(t.on_error(1, err.clone(), now, &policy, |d| d), ErrorOutcome::Retrying(Duration::from_millis(500)));
        assert_eq!(t.n_sent(), 0);
        assert!(!t.has_ready());
        assert_eq!(t.next_timer(), Some(now + Duration::from_millis(500)));
        t.release_due(now + Duration::from_millis(499));
        assert!(!t.has_ready());
        t.release_due(now + Duration::from_millis(500));
        assert_eq!(ids(&drain(&mut t)), [1]);
        assert_eq!(t.on_error(1, err, now, &policy, |d| d), ErrorOutcome::Failed);
        assert_eq!(t.len(), 0);
        assert!(matches!(rx.try_recv(), Ok(Err(ClientError::Rejected(e))) if e.error_code() == ErrorCode::Overloaded));
    }

    #[test]
    fn a_wait_longer_than_the_policy_allows_is_answered_at_once() {
        // A daily limit's refusal asks for hours: the caller hears it now, with the wait.
        let mut t = Inflight::default();
        let mut rx = add(&mut t, 4);
        drain(&mut t);
        let hours = pb::Error::new(ErrorCode::RateLimited, "daily limit").with_retry_after(3_600_000);
        assert_eq!(t.on_error(4, hours, Instant::now(), &RetryPolicy::default(), |d| d), ErrorOutcome::Failed);
        assert_eq!(t.len(), 0);
        assert!(matches!(rx.try_recv(), Ok(Err(e)) if e.retry_after_ms() == Some(3_600_000)));
    }

    #[test]
    fn final_errors_are_answered_at_once() {
        let mut t = Inflight::default();
        let mut rx = add(&mut t, 9);
        drain(&mut t);
        let err = pb::Error::new(ErrorCode::UnknownRecipient, "who?");
        assert_eq!(t.on_error(9, err.clone(), Instant::now(), &RetryPolicy::default(), |d| d), ErrorOutcome::Failed);
        assert_eq!(t.on_error(9, err, Instant::now(), &RetryPolicy::default(), |d| d), ErrorOutcome::Unknown);
        assert_eq!(t.n_sent(), 0);
        assert!(matches!(rx.try_recv(), Ok(Err(ClientError::Rejected(_)))));
    }

    #[test]
    fn untake_and_fail_all_leave_nothing_behind() {
        let mut t = Inflight::default();
        let mut rx1 = add(&mut t, 1);
        let mut rx2 = add(&mut t, 2);
        let op = t.take_ready().map(|op| op.request_id);
        assert_eq!(op, Some(1));
        t.untake(1);
        assert_eq!(t.n_sent(), 0);
        assert_eq!(ids(&drain(&mut t)), [1, 2]);
        t.fail_all(|| ClientError::Closed);
        assert_eq!((t.len(), t.n_sent(), t.has_ready()), (0, 0, false));
        assert!(matches!(rx1.try_recv(), Ok(Err(ClientError::Closed))));
        assert!(matches!(rx2.try_recv(), Ok(Err(ClientError::Closed))));
    }
}
