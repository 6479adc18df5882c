//! The background task that owns the connection: batches operations into frames, reads events,
//! sends heartbeats and acks, and reconnects with backoff, resending what was not answered.
//!
//! Knows nothing of the application: it talks to [`Client`](crate::Client) handles through
//! commands and to the app through [`Event`]s.

use std::sync::Arc;
use std::time::Duration;

use iris_proto::pb::{self, client_op, server_event, ErrorCode};
use iris_proto::{ErrorCodeExt, Limits};
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};

use crate::backoff::{self, Backoff};
use crate::config::ClientConfig;
use crate::connection::Connection;
use crate::dedup::DedupWindow;
use crate::error::{local_error, ClientError};
use crate::event::{DisconnectReason, Event};
use crate::handshake::{self, Established, Failure, HELLO_REQUEST_ID};
use crate::inflight::{ErrorOutcome, Inflight, Reply};
use crate::shared::Shared;

/// Heartbeat interval assumed when the server announces none.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

/// Entries acked by the app and not yet told to the server past which the ack is written at
/// once instead of waiting up to [`ClientConfig::ack_delay`] for another write to ride with
/// (the server's window of unacked deliveries is thousands deep, so this never stalls it).
pub const ACK_BATCH_ENTRIES: u64 = 100;

/// Commands taken off the queue in one go before writing, so bursts share a frame.
const COMMANDS_PER_TURN: usize = 256;

/// Room left in a frame for the frame's own encoding overhead.
const FRAME_SLACK_BYTES: usize = 64;

/// What a [`Client`](crate::Client) handle asks of the task.
#[derive(Debug)]
pub(crate) enum Command {
    Send {
        msg: pb::SendMessage,
        reply: oneshot::Sender<Result<pb::SendResult, ClientError>>,
    },
    Receipt {
        receipt: pb::SendReceipt,
        reply: oneshot::Sender<Result<pb::ReceiptResult, ClientError>>,
    },
    Group {
        op: pb::GroupOp,
        reply: oneshot::Sender<Result<pb::GroupResult, ClientError>>,
    },
    /// Any other operation, answered by the event the server sends for it.
    Op {
        op: client_op::Op,
        reply: oneshot::Sender<Result<server_event::Event, ClientError>>,
    },
    Close {
        done: oneshot::Sender<()>,
    },
}

/// A request to stop, with the channel to answer once stopped (none when every handle was
/// dropped).
struct CloseRequest(Option<oneshot::Sender<()>>);

impl CloseRequest {
    fn answer(self) {
        if let Some(done) = self.0 {
            let _ = done.send(());
        }
    }
}

/// How one connection's life ended.
enum End {
    /// The client was closed; everything is already answered.
    Stop,
    /// Reconnect, after `delay` if the server asked for one.
    Lost { reason: DisconnectReason, delay: Option<Duration> },
    /// Stop for good with this error.
    Fatal(pb::Error),
}

/// The task's state; see the module doc.
pub(crate) struct Driver {
    config: ClientConfig,
    shared: Arc<Shared>,
    cmds: mpsc::Receiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    inflight: Inflight,
    dedup: DedupWindow,
    backoff: Backoff,
    next_request_id: u64,
    /// Limits of the current connection (defaults until a `Welcome` says otherwise).
    limits: pb::Limits,
    /// Highest ack the server has been told on the current connection (`Hello` included).
    ack_sent: u64,
    /// Request id of the pending re-subscription to the watched accounts after a reconnect;
    /// its answer goes to the app as presence events, not to a caller.
    resubscribe: Option<u64>,
}

impl Driver {
    pub(crate) fn new(
        config: ClientConfig,
        shared: Arc<Shared>,
        cmds: mpsc::Receiver<Command>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Self {
        Self {
            dedup: DedupWindow::new(config.resume_after_seq, config.dedup_window),
            backoff: Backoff::new(config.reconnect),
            config,
            shared,
            cmds,
            events,
            inflight: Inflight::default(),
            next_request_id: HELLO_REQUEST_ID + 1,
            limits: Limits::default().into(),
            ack_sent: 0,
            resubscribe: None,
        }
    }

    /// Connects once; used for the first connection, whose failure goes back to the caller.
    pub(crate) async fn establish(&self) -> Result<Established, Failure> {
        handshake::establish(&self.config, &self.shared).await
    }

    /// Serves `first` and every reconnection until the client is closed or fails for good.
    pub(crate) async fn run(mut self, first: Established) {
        let mut current = first;
        loop {
            self.on_connected(&current);
            let started = Instant::now();
            let rest = std::mem::take(&mut current.rest);
            let end = self.serve(&mut current.conn, rest).await;
            drop(current);
            self.inflight.on_disconnect();
            let (reason, delay) = match end {
                End::Stop => return,
                End::Fatal(err) => return self.terminate(err),
                End::Lost { reason, delay } => (reason, delay),
            };
            if started.elapsed() >= self.config.reconnect.stable_after {
                self.backoff.reset();
            }
            tracing::info!(?reason, "disconnected, reconnecting");
            self.emit(Event::Disconnected(reason));
            let delay = delay.unwrap_or_else(|| self.backoff.next_delay(&mut rand::rng()));
            match self.reconnect(delay).await {
                Some(next) => current = next,
                None => return,
            }
        }
    }

    fn on_connected(&mut self, est: &Established) {
        self.limits = est.welcome.limits.unwrap_or_else(|| Limits::default().into());
        self.ack_sent = est.resume_after_seq;
        tracing::debug!(account_id = est.welcome.account_id, device_id = est.welcome.device_id, node = %est.welcome.node_id, "connected");
        self.emit(Event::Connected(est.welcome.clone()));
        self.restore_away();
        self.resubscribe_presence();
    }

    /// Sets this device away again if the app had (the server forgot it with the connection);
    /// nobody awaits the answer. A repeat of an app's own pending `SetPresence` is harmless.
    fn restore_away(&mut self) {
        if !self.shared.away() {
            return;
        }
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let (reply, _) = oneshot::channel();
        let op = client_op::Op::SetPresence(pb::SetPresence { away: true, privacy: 0 });
        self.inflight.insert(request_id, op, Reply::Event(reply));
    }

    /// Queues a subscription to every watched account (the server forgot them with the last
    /// connection), unless one is still pending: unanswered operations are resent anyway, and
    /// later subscribe/unsubscribe calls follow it in request-id order.
    fn resubscribe_presence(&mut self) {
        if self.resubscribe.is_some_and(|id| self.inflight.contains(id)) {
            return;
        }
        self.resubscribe = None;
        let account_ids = self.shared.watched();
        if account_ids.is_empty() {
            return;
        }
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        // Nobody awaits the answer: `on_event` hands it to the app before the inflight table
        // drops it into this closed channel.
        let (reply, _) = oneshot::channel();
        let op = client_op::Op::PresenceSubscribe(pb::PresenceSubscribe { account_ids });
        self.inflight.insert(request_id, op, Reply::Event(reply));
        self.resubscribe = Some(request_id);
    }

    /// Runs one connection until it ends.
    async fn serve(&mut self, conn: &mut Connection, rest: Vec<pb::ServerEvent>) -> End {
        let heartbeat = match self.shared.welcome().map_or(0, |w| w.heartbeat_interval_ms) {
            0 => DEFAULT_HEARTBEAT,
            ms => Duration::from_millis(u64::from(ms)),
        };
        let mut last_write = Instant::now();
        let mut last_read = Instant::now();
        let mut ping_due = false;
        // When the oldest ack not yet told must go even with nothing to ride with.
        let mut ack_due: Option<Instant> = None;
        for event in rest {
            if let Some(end) = self.on_event(event) {
                return end;
            }
        }
        loop {
            let acked = self.shared.acked_seq();
            let ack_now = acked > self.ack_sent
                && (self.config.ack_delay.is_zero()
                    || acked - self.ack_sent >= ACK_BATCH_ENTRIES
                    || ack_due.is_some_and(|due| due <= Instant::now()));
            match self.flush(conn, heartbeat * 2, std::mem::take(&mut ping_due), ack_now).await {
                Ok(true) => last_write = Instant::now(),
                Ok(false) => {}
                Err(e) => return lost(e),
            }
            ack_due = match ack_due {
                _ if self.shared.acked_seq() <= self.ack_sent => None,
                Some(due) => Some(due),
                None => Some(Instant::now() + self.config.ack_delay),
            };
            let retry_at = self.inflight.next_timer();
            tokio::select! {
                cmd = self.cmds.recv() => {
                    let mut close = match cmd {
                        Some(cmd) => self.accept(cmd),
                        None => Some(CloseRequest(None)),
                    };
                    for _ in 1..COMMANDS_PER_TURN {
                        if close.is_some() {
                            break;
                        }
                        match self.cmds.try_recv() {
                            Ok(cmd) => close = self.accept(cmd),
                            Err(_) => break,
                        }
                    }
                    if let Some(close) = close {
                        self.close_gracefully(conn, heartbeat * 2).await;
                        close.answer();
                        return End::Stop;
                    }
                }
                () = self.shared.ack_notify.notified() => {}
                () = sleep_until(ack_due.unwrap_or_else(Instant::now)), if ack_due.is_some() => {}
                frame = conn.next_frame() => match frame {
                    None => return End::Lost { reason: DisconnectReason::ServerClosed, delay: None },
                    Some(Err(e)) => return lost(e),
                    Some(Ok(frame)) => {
                        last_read = Instant::now();
                        for event in frame.events {
                            if let Some(end) = self.on_event(event) {
                                return end;
                            }
                        }
                    }
                },
                () = sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                    self.inflight.release_due(Instant::now());
                }
                () = sleep_until(last_write + heartbeat / 2) => ping_due = true,
                () = sleep_until(last_read + heartbeat * 2) => {
                    return End::Lost { reason: DisconnectReason::HeartbeatTimeout, delay: None };
                }
            }
        }
    }

    /// Queues a command's operation; returns the request if the command was to close.
    fn accept(&mut self, cmd: Command) -> Option<CloseRequest> {
        let (op, reply) = match cmd {
            Command::Close { done } => return Some(CloseRequest(Some(done))),
            Command::Send { msg, reply } => (client_op::Op::Send(msg), Reply::Send(reply)),
            Command::Receipt { receipt, reply } => (client_op::Op::Receipt(receipt), Reply::Receipt(reply)),
            Command::Group { op, reply } => (client_op::Op::Group(op), Reply::Group(reply)),
            Command::Op { op, reply } => (op, Reply::Event(reply)),
        };
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let bytes = pb::ClientOp { request_id, op: Some(op.clone()) }.encoded_len();
        let max = (self.limits.max_frame_bytes as usize).saturating_sub(FRAME_SLACK_BYTES);
        if bytes > max {
            reply.fail(ClientError::TooLarge { bytes, max });
            return None;
        }
        self.inflight.insert(request_id, op, reply);
        None
    }

    /// Writes everything that may go now: a due ping and ready operations up to the server's
    /// in-flight window, in frames within its limits, with the ack cursor riding along; the
    /// cursor alone only when `ack_now`. Returns whether it wrote.
    async fn flush(
        &mut self,
        conn: &mut Connection,
        timeout: Duration,
        ping: bool,
        ack_now: bool,
    ) -> Result<bool, ClientError> {
        let max_ops = self.limits.max_ops_per_frame.max(1) as usize;
        let max_bytes = (self.limits.max_frame_bytes as usize).saturating_sub(FRAME_SLACK_BYTES);
        let window = match self.limits.max_inflight_sends {
            0 => Limits::default().max_inflight_sends as usize,
            n => n as usize,
        };
        let mut ping = ping;
        let mut wrote = false;
        loop {
            let mut ops = Vec::new();
            let acked = self.shared.acked_seq();
            let others = ping || (self.inflight.has_ready() && self.inflight.n_sent() < window);
            if acked > self.ack_sent && (ack_now || others) {
                ops.push(self.op(client_op::Op::Ack(pb::Ack { up_to_seq: acked })));
            }
            if std::mem::take(&mut ping) {
                ops.push(self.op(client_op::Op::Ping(pb::Ping { client_time_ms: handshake::now_ms() })));
            }
            let mut bytes: usize = ops.iter().map(|op| op.encoded_len()).sum();
            while ops.len() < max_ops && self.inflight.n_sent() < window {
                let Some(op) = self.inflight.take_ready() else { break };
                let len = op.encoded_len() + 4;
                if !ops.is_empty() && bytes + len > max_bytes {
                    self.inflight.untake(op.request_id);
                    break;
                }
                bytes += len;
                ops.push(op);
            }
            if ops.is_empty() {
                return Ok(wrote);
            }
            conn.write(&pb::ClientFrame { ops }, timeout).await?;
            self.ack_sent = self.ack_sent.max(acked);
            wrote = true;
            if !self.inflight.has_ready() || self.inflight.n_sent() >= window {
                return Ok(true);
            }
        }
    }

    fn op(&mut self, op: client_op::Op) -> pb::ClientOp {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        pb::ClientOp { request_id, op: Some(op) }
    }

    /// Handles one server event; `Some` when it ends the connection.
    fn on_event(&mut self, event: pb::ServerEvent) -> Option<End> {
        match event.event? {
            server_event::Event::SendResult(result) => self.inflight.complete_send(event.request_id, result),
            server_event::Event::ReceiptResult(result) => self.inflight.complete_receipt(event.request_id, result),
            server_event::Event::GroupResult(result) => self.inflight.complete_group(event.request_id, result),
            server_event::Event::Delivery(delivery) => delivery.items.into_iter().for_each(|item| self.deliver(item)),
            server_event::Event::GoAway(g) => {
                let after = Duration::from_millis(u64::from(g.reconnect_after_ms));
                let delay = backoff::after_hint(after, &mut rand::rng());
                let reason = DisconnectReason::GoAway { reconnect_after: after, reason: g.reason };
                return Some(End::Lost { reason, delay: Some(delay) });
            }
            server_event::Event::Error(err) => return self.on_error(event.request_id, err),
            server_event::Event::PresenceState(state) if self.resubscribe == Some(event.request_id) => {
                self.resubscribe = None;
                let answer = server_event::Event::PresenceState(pb::PresenceState::default());
                self.inflight.complete_event(event.request_id, answer);
                state.accounts.into_iter().for_each(|update| self.emit(Event::Presence(update)));
            }
            e @ (server_event::Event::PresenceState(_)
            | server_event::Event::Done(_)
            | server_event::Event::ActionResult(_)
            | server_event::Event::ForwardResult(_)
            | server_event::Event::ContactList(_)
            | server_event::Event::DiscoverResult(_)
            | server_event::Event::KeysResult(_)
            | server_event::Event::TimerResult(_)
            | server_event::Event::PushResult(_)
            | server_event::Event::ReportResult(_)
            | server_event::Event::Synced(_)) => {
                self.inflight.complete_event(event.request_id, e);
            }
            server_event::Event::Presence(p) => self.emit(Event::Presence(p)),
            server_event::Event::Typing(t) => self.emit(Event::Typing(t)),
            // The answer to an offer (`STARTED`); unsolicited call signaling otherwise.
            e @ server_event::Event::Call(_) if event.request_id != 0 => {
                self.inflight.complete_event(event.request_id, e)
            }
            server_event::Event::Call(c) => self.emit(Event::Call(c)),
            server_event::Event::Welcome(_) | server_event::Event::Pong(_) => {}
        }
        None
    }

    fn on_error(&mut self, request_id: u64, err: pb::Error) -> Option<End> {
        let code = err.error_code();
        if err.fatal || code.is_fatal() {
            if ends_the_client(code) {
                return Some(End::Fatal(err));
            }
            let delay = (err.retry_after_ms > 0)
                .then(|| backoff::after_hint(Duration::from_millis(u64::from(err.retry_after_ms)), &mut rand::rng()));
            return Some(End::Lost { reason: DisconnectReason::Error(err), delay });
        }
        let now = Instant::now();
        let policy = self.config.retry;
        match self.inflight.on_error(request_id, err, now, &policy, |d| backoff::after_hint(d, &mut rand::rng())) {
            ErrorOutcome::Retrying(delay) => tracing::debug!(request_id, ?code, ?delay, "retrying refused operation"),
            ErrorOutcome::Failed if self.resubscribe == Some(request_id) => {
                // Nobody to answer; the app still has its last presence events.
                tracing::warn!(request_id, ?code, "re-subscribing to presence failed");
                self.resubscribe = None;
            }
            ErrorOutcome::Failed => {}
            ErrorOutcome::Unknown => tracing::warn!(request_id, ?code, "error for no pending request"),
        }
        None
    }

    /// Hands a new inbox item to the app; redeliveries are dropped.
    fn deliver(&mut self, item: pb::InboxItem) {
        if !self.dedup.admit(&item) {
            return;
        }
        // Disappeared already (the server never sends one past its expiry, but this device's
        // clock may be ahead): not handed to the app; acked with later ones.
        if crate::expiry::is_expired(&item, handshake::now_ms()) {
            return;
        }
        let event = match &item.body {
            Some(pb::inbox_item::Body::Message(_)) => Event::Message(item),
            Some(pb::inbox_item::Body::Receipt(_)) => Event::Receipt(item),
            Some(pb::inbox_item::Body::GroupMessage(_) | pb::inbox_item::Body::MessageAction(_)) => {
                Event::Message(item)
            }
            Some(pb::inbox_item::Body::GroupEvent(_) | pb::inbox_item::Body::GroupReceipt(_)) => Event::Group(item),
            Some(pb::inbox_item::Body::KeysLow(_) | pb::inbox_item::Body::IdentityChange(_)) => Event::Keys(item),
            Some(pb::inbox_item::Body::TimerChanged(_)) => Event::Timer(item),
            Some(pb::inbox_item::Body::DeviceChange(_) | pb::inbox_item::Body::ProfileChange(_)) => {
                Event::Account(item)
            }
            Some(pb::inbox_item::Body::MissedCall(_)) => Event::MissedCall(item),
            None => return, // a kind of entry this build does not know; acked with later ones
        };
        self.emit(event);
    }

    /// Waits `delay` (handling commands meanwhile), then tries to connect until it works.
    /// `None` when the client was closed or failed for good meanwhile.
    async fn reconnect(&mut self, mut delay: Duration) -> Option<Established> {
        loop {
            if !self.wait_offline(delay).await {
                return None;
            }
            let failure = match self.establish().await {
                Ok(est) => return Some(est),
                Err(failure) => failure,
            };
            let (error, min_delay) = match failure {
                Failure::Fatal(err) => {
                    self.terminate(err);
                    return None;
                }
                Failure::Transient { error, min_delay } => (error, min_delay),
            };
            tracing::debug!(attempt = self.backoff.attempt(), %error, "reconnect failed");
            if let Some(max) = self.config.reconnect.max_attempts {
                if self.backoff.attempt() >= max {
                    let msg = format!("gave up reconnecting after {max} attempts: {error}");
                    self.terminate(local_error(ErrorCode::Unavailable, msg));
                    return None;
                }
            }
            delay = self.backoff.next_delay(&mut rand::rng()).max(min_delay.unwrap_or_default());
        }
    }

    /// Sleeps while disconnected, still queueing commands. `false` when the client was closed.
    async fn wait_offline(&mut self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        loop {
            tokio::select! {
                () = sleep_until(deadline) => return true,
                cmd = self.cmds.recv() => {
                    let close = match cmd {
                        Some(cmd) => self.accept(cmd),
                        None => Some(CloseRequest(None)),
                    };
                    if let Some(close) = close {
                        self.inflight.fail_all(|| ClientError::Closed);
                        close.answer();
                        return false;
                    }
                }
            }
        }
    }

    /// Sends the final ack, closes the socket and fails what is still pending.
    async fn close_gracefully(&mut self, conn: &mut Connection, timeout: Duration) {
        let acked = self.shared.acked_seq();
        if acked > self.ack_sent {
            let ack = self.op(client_op::Op::Ack(pb::Ack { up_to_seq: acked }));
            if conn.write(&pb::ClientFrame { ops: vec![ack] }, timeout).await.is_ok() {
                self.ack_sent = acked;
            }
        }
        conn.shutdown().await;
        self.inflight.fail_all(|| ClientError::Closed);
    }

    /// Stops for good: records why, fails what is pending and tells the app.
    fn terminate(&mut self, err: pb::Error) {
        tracing::warn!(error = %err, "client stopped");
        self.shared.set_terminal(err.clone());
        self.inflight.fail_all(|| ClientError::Fatal(err.clone()));
        self.emit(Event::Fatal(err));
    }

    fn emit(&self, event: Event) {
        // An app that dropped its `Events` does not want them.
        let _ = self.events.send(event);
    }
}

/// Fatal errors after which reconnecting would fail again or fight another connection.
fn ends_the_client(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::SessionReplaced
            | ErrorCode::DeviceRevoked
            | ErrorCode::AccountDeleted
            | ErrorCode::UnsupportedVersion
            | ErrorCode::BadFrame
            | ErrorCode::FrameTooLarge
            | ErrorCode::HandshakeRequired
            | ErrorCode::TooManyOps
            | ErrorCode::PermissionDenied
    )
}

fn lost(err: ClientError) -> End {
    let reason = match err {
        ClientError::Io(e) => DisconnectReason::Io(e),
        ClientError::Timeout(_) => DisconnectReason::HeartbeatTimeout,
        other => DisconnectReason::Protocol(other.to_string()),
    };
    End::Lost { reason, delay: None }
}
