//! One connection, from its first byte to its close: admission, handshake, then one loop per
//! connection that drives the delivery machine and the client's operations.
//!
//! The files, in the order a connection meets them: `handshake.rs` (the `Hello` and the
//! `Welcome`), `dispatch.rs` (operations to services), `delivery.rs` (what to push, when to read
//! the inbox, which acks to apply: a state machine without I/O). This file is the driver around
//! them: it owns the socket, the operations in flight and the output buffer, feeds the machine
//! its events and carries out its actions. Each wake-up gathers everything that is ready (answers,
//! hints, ephemeral events, a whole frame's operations), lets the machine emit every delivery due,
//! and writes the lot in as few frames as the frame limit allows. A wait polls only the sources
//! that woke the session or have no wake-up arranged (`wakeups.rs`), not every one each time.
//!
//! Sends run concurrently (many in flight per connection); the session stops reading when
//! `max_inflight_sends` are pending (operations, acks and waiting `Sync`s), which pushes back on
//! the client through TCP. Answers are written as operations finish; `sync.rs` says when a
//! `Sync` (the client's barrier) is answered.
//!
//! **Invariant:** a session reaches durable state only through services: [`SessionDeps`] holds
//! no store, so nothing under `session/` can read or write it directly.

// Public so that the server-level simulation (`tests/simulation.rs`) drives the real machine.
pub mod delivery;
mod dispatch;
mod handshake;
mod sync;
mod wakeups;

use std::future::Future as _;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use iris_proto::outgoing::{OutEvent, OutFrame, RawDelivery};
use iris_proto::pb::{self, server_event};
use iris_proto::ErrorCodeExt as _;
use iris_store::{AccountId, DeviceAddr};
use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant, Interval, Sleep};
use tokio_util::sync::CancellationToken;
use tracing::field::Empty;
use tracing::Instrument;

use crate::actions::Actions;
use crate::auth::access::Authenticator;
use crate::blocks::Blocks;
use crate::calls::Calls;
use crate::clock::Clock;
use crate::cluster::{registry, Cluster};
use crate::config::SessionConfig;
use crate::contacts::Contacts;
use crate::error::SessionError;
use crate::forward::Forwards;
use crate::gateway::admission::{Admission, Refusal};
use crate::gateway::transport::Transport;
use crate::groups::Groups;
use crate::inbox::{Inbox, InboxAck};
use crate::messaging::Messaging;
use crate::metrics::Metrics;
use crate::presence::PresenceHub;
use crate::ratelimit::SharedLimit;
use crate::receipts::Receipts;
use crate::router::{Ephemeral, Hint, Kick, Registration, Router};
use crate::typing::Typing;
use crate::visibility::Visibility;
use delivery::{Action, Delivery, DeliveryConfig, READ_RETRY};
use dispatch::{answer, event, Conn, Dispatched, Finished, OpFuture};
use sync::Syncs;
use wakeups::{Source, Wakeups};

/// Room for the frame's and events' own encoding around their contents.
const FRAME_OVERHEAD_BYTES: usize = 64;
/// How long a shutting-down session waits for its in-flight sends to be answered.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Most finished operations, hints or ephemeral events taken in one wake-up before writing.
const READY_MAX: usize = 1024;

/// Everything a session may use: settings, soft state and services. No store: a session reaches
/// durable state only through a service.
pub struct SessionDeps {
    /// Per-connection timing and bounds.
    pub config: SessionConfig,
    /// Protocol limits, as announced in `Welcome`.
    pub limits: iris_proto::Limits,
    /// This node's name in `Welcome`.
    pub node_name: String,
    /// Counters and histograms of this node.
    pub metrics: Arc<Metrics>,
    /// Who may connect.
    pub admission: Arc<Admission>,
    /// Device → session; hints, ephemeral events and kicks come through it.
    pub router: Arc<Router>,
    /// Who is online (soft state).
    pub presence: Arc<PresenceHub>,
    /// Time, for answers (`Welcome`, `Pong`, delivery latency).
    pub clock: Arc<dyn Clock>,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
    /// The link to other nodes (device claims), in cluster mode.
    pub cluster: Option<Arc<Cluster>>,
    /// Access tokens.
    pub auth: Arc<Authenticator>,
    /// The device's inbox: cursor, reads, acks.
    pub inbox: Arc<Inbox>,
    /// 1:1 sends.
    pub messaging: Arc<Messaging>,
    /// Group operations and sends.
    pub groups: Arc<Groups>,
    /// Read receipts.
    pub receipts: Arc<Receipts>,
    /// Edits, deletions, reactions.
    pub actions: Arc<Actions>,
    /// Forwards.
    pub forwards: Arc<Forwards>,
    /// Contact lists and discovery.
    pub contacts: Arc<Contacts>,
    /// Typing indicators.
    pub typing: Arc<Typing>,
    /// Call signaling.
    pub calls: Arc<Calls>,
    /// Block lists.
    pub blocks: Arc<Blocks>,
    /// Presence privacy and subscriptions.
    pub visibility: Arc<Visibility>,
    /// The end-to-end key directory.
    pub keys: Arc<crate::keys::Keys>,
    /// "Device added / removed" notices to an account's devices (used by the HTTP flows).
    pub device_notices: Arc<crate::device_notices::DeviceNotices>,
    /// Profiles and their change notices (used by the HTTP API).
    pub profiles: Arc<crate::profiles::Profiles>,
    /// Sends per account (1:1 sends are checked here, before validation).
    pub send_limit: SharedLimit<AccountId>,
    /// Push notification registrations.
    pub push: Arc<crate::push::Push>,
    /// Abuse rules (checked before sends), reports, suspension; the operator's calls too.
    pub abuse: Arc<crate::abuse::Abuse>,
}

/// Runs a connection from its first byte to its close: admission, handshake, service, in one
/// span (`conn`: the client's address, then its device and connection id once known).
///
/// One span, not one per layer: a span is entered and left on every wake-up of the connection's
/// task, and two nested ones (gateway, session) were ~5 % of the server's instructions per
/// message at a fixed open-loop rate (BENCHMARKS.md).
pub async fn run<T: Transport>(deps: Arc<SessionDeps>, transport: T, peer: IpAddr) {
    let span = tracing::info_span!("conn", client = %peer, device = Empty, conn = Empty);
    serve_connection(deps, transport, peer).instrument(span).await
}

async fn serve_connection<T: Transport>(deps: Arc<SessionDeps>, mut transport: T, peer: IpAddr) {
    deps.metrics.connections_accepted.inc();
    let _admitted = match deps.admission.admit(peer, &deps.metrics) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            deps.metrics.connections_refused.inc();
            let answer = match refusal {
                Refusal::GoAway(go_away) => server_event::Event::GoAway(go_away),
                Refusal::Limited(e) => server_event::Event::Error(SessionError::from(e).to_wire()),
            };
            let _ = timeout(Duration::from_secs(1), transport.send(&frame_of(vec![event(0, answer)]))).await;
            transport.close().await;
            return;
        }
    };
    let handshake = Duration::from_millis(deps.config.handshake_timeout_ms);
    let first = tokio::select! {
        first = timeout(handshake, transport.recv()) => first,
        _ = deps.shutdown.cancelled() => {
            let _ = timeout(Duration::from_secs(1), transport.send(&frame_of(vec![go_away()]))).await;
            transport.close().await;
            return;
        }
    };
    let first = match first {
        Err(_) => Err(SessionError::HelloTimeout),
        Ok(Ok(Some(frame))) => Ok(frame),
        Ok(Ok(None)) => return,
        Ok(Err(e)) => Err(SessionError::from(&e)),
    };
    let outcome = match first {
        Ok(frame) => handshake_then_serve(deps, &mut transport, frame).await,
        Err(e) => Err(e),
    };
    if let Err(error) = outcome {
        let _ = transport.send(&frame_of(vec![event(0, server_event::Event::Error(error.to_wire()))])).await;
    }
    transport.close().await;
}

fn frame_of(events: Vec<pb::ServerEvent>) -> OutFrame {
    OutFrame::of(events.into_iter().map(OutEvent::from).collect())
}

/// The answer to a `Sync`.
fn synced(request_id: u64) -> pb::ServerEvent {
    event(request_id, server_event::Event::Synced(pb::Synced {}))
}

/// `GoAway` with a jittered delay, so a restarting node's clients do not return all at once.
fn go_away() -> pb::ServerEvent {
    let reconnect_after_ms = rand::rng().random_range(500..3000);
    event(0, server_event::Event::GoAway(pb::GoAway { reconnect_after_ms, reason: "server shutting down".into() }))
}

/// Checks the Hello, registers the device and serves it. Errors returned here are fatal.
async fn handshake_then_serve<T: Transport>(
    deps: Arc<SessionDeps>,
    transport: &mut T,
    frame: pb::ClientFrame,
) -> Result<(), SessionError> {
    let checked = handshake::check_hello(&deps, frame).await;
    deps.metrics.handshake(checked.as_ref().map(|_| ()).map_err(SessionError::code));
    let (hello, ops) = checked?;
    let device = hello.device;
    deps.visibility.load_privacy(device.account).await?;
    let registration = deps.router.register_declining(device, hello.unwanted);
    let conn_id = registration.conn_id;
    if let Some(cluster) = &deps.cluster {
        registry::claim(cluster, device).await;
    }
    deps.presence.connected(device, conn_id);
    let served = match Session::start(deps.clone(), device, registration, hello.resume_after_seq).await {
        Ok(mut session) => {
            session.out.push(handshake::welcome(&deps, &hello).into());
            tracing::Span::current().record("device", tracing::field::display(device)).record("conn", conn_id);
            tracing::debug!("session started");
            let served = match session.handle_ops(ops).await {
                Ok(()) => {
                    // The task's polls, counted: `serve` tells from it whether its work slept
                    // (`wakeups.rs`).
                    let polls = AtomicU64::new(0);
                    let mut serving = std::pin::pin!(session.serve(transport, &polls));
                    std::future::poll_fn(|cx| {
                        polls.fetch_add(1, Ordering::Relaxed);
                        serving.as_mut().poll(cx)
                    })
                    .await
                }
                Err(e) => Err(e),
            };
            tracing::debug!(result = ?served.as_ref().map_err(SessionError::code), "session ended");
            served
        }
        Err(e) => Err(e),
    };
    deps.router.unregister(device, conn_id);
    if !deps.router.is_connected(device) {
        // Not replaced by a newer connection: the device leaves the calls it takes part in.
        deps.calls.disconnected(device);
    }
    if let Some(cluster) = &deps.cluster {
        registry::release(cluster, device);
    }
    deps.presence.disconnected(device, conn_id, deps.clock.now_ms());
    served
}

/// The driver of one authenticated connection.
struct Session {
    deps: Arc<SessionDeps>,
    device: DeviceAddr,
    registration: Registration,
    /// What to push, when to read the inbox, which acks to apply.
    delivery: Delivery,
    /// Operations and acks running concurrently.
    inflight: FuturesUnordered<OpFuture>,
    /// Which operations are unanswered, and the `Sync`s waiting for them.
    syncs: Syncs,
    /// Events to write at the next flush.
    out: Vec<OutEvent>,
    /// Receipt hints taken from the registration's held ones, kept to swap buffers with it.
    held: Vec<(Hint, Instant)>,
    /// Hints just taken from the queue (kept, so a turn allocates no buffer).
    hints_taken: Vec<Hint>,
    /// Ephemeral events just taken from the queue.
    events_taken: Vec<Ephemeral>,
    /// An operation was pushed to `inflight` since it was last polled.
    pushed: bool,
    last_heard: Instant,
}

impl Session {
    /// Reads where the device's inbox stands and starts its delivery machine; a resume cursor
    /// beyond the inbox ends the connection here, before anything is acked.
    async fn start(
        deps: Arc<SessionDeps>,
        device: DeviceAddr,
        registration: Registration,
        resume_after: u64,
    ) -> Result<Self, SessionError> {
        let cursor = deps.inbox.cursor(device).await?;
        let config = DeliveryConfig {
            window: u64::from(deps.config.unacked_window),
            window_bytes: deps.config.unacked_bytes_max,
            batch: deps.limits.max_batch_deliveries as usize,
            receipt_hold: Duration::from_millis(deps.config.receipt_hold_ms),
            declined: registration.unwanted,
        };
        let delivery = Delivery::new(config, device.account, cursor, resume_after)?;
        // A resume cursor acks up to it (checked against the inbox by `Delivery::new`).
        registration.backlog.started(delivery.acked());
        Ok(Self {
            deps,
            device,
            registration,
            delivery,
            inflight: FuturesUnordered::new(),
            syncs: Syncs::default(),
            out: Vec::new(),
            held: Vec::new(),
            hints_taken: Vec::new(),
            events_taken: Vec::new(),
            pushed: false,
            last_heard: Instant::now(),
        })
    }

    /// The main loop: until the client leaves, something fatal happens or the server stops.
    ///
    /// Each turn acts on what woke the session (a kick, the heartbeat tick, a frame), lets the
    /// delivery machine act and writes the lot, then waits on every source at once in
    /// [`Session::poll_sources`] (`polls` counts the task's polls, for `Wakeups::due`).
    async fn serve<T: Transport>(&mut self, transport: &mut T, polls: &AtomicU64) -> Result<(), SessionError> {
        let heartbeat = Duration::from_millis(u64::from(self.deps.config.heartbeat_interval_ms));
        let write_timeout = Duration::from_millis(self.deps.config.write_timeout_ms);
        let frame_timeout = Duration::from_millis(self.deps.config.frame_timeout_ms);
        let mut tick = tokio::time::interval((heartbeat / 2).min(frame_timeout / 2));
        let max_inflight = self.deps.limits.max_inflight_sends as usize;
        // Shutdown comes as a kick (`Router::stop_sessions`), to sessions registered when it
        // began; one registered later sees it here.
        if self.deps.shutdown.is_cancelled() {
            self.drain(transport).await;
            return Ok(());
        }
        // The delivery machine's next deadline, as one timer moved when the deadline moves
        // (a new `sleep_until` per turn would enter and leave the timer wheel every time).
        let mut wake = std::pin::pin!(tokio::time::sleep_until(Instant::now()));
        let mut wakeups = Wakeups::default();
        let mut woke = Woke::default();
        let mut deadline = None;
        loop {
            if let Some(kick) = woke.kick.take() {
                return match kick {
                    Ok(Kick::ShuttingDown) => {
                        self.drain(transport).await;
                        Ok(())
                    }
                    Ok(Kick::Replaced) => Err(SessionError::Replaced),
                    Ok(Kick::AccountDeleted) => Err(SessionError::AccountDeleted),
                    Ok(Kick::Revoked) | Err(_) => Err(SessionError::Revoked),
                };
            }
            if woke.tick {
                if self.last_heard.elapsed() > 2 * heartbeat {
                    return Err(SessionError::HeartbeatTimeout);
                }
                if transport.partial_frame_since().is_some_and(|t| t.elapsed() > frame_timeout) {
                    return Err(SessionError::FrameTimeout);
                }
            }
            match woke.frame.take() {
                Some(Ok(Some(frame))) => {
                    self.deps.metrics.frames_in.inc();
                    self.last_heard = Instant::now();
                    self.handle_ops(frame.ops).await?;
                    self.take_buffered_frames(transport, max_inflight).await?;
                }
                Some(Ok(None)) => return Ok(()),
                Some(Err(e)) => return Err(SessionError::from(&e)),
                None => {}
            }
            loop {
                self.drive().await?;
                if self.out.is_empty() {
                    break;
                }
                let more = self.delivery.out_full();
                if !self.flush(transport, write_timeout).await {
                    return Ok(());
                }
                if !more {
                    break;
                }
            }
            let had_deadline = deadline.is_some();
            deadline = self.delivery.deadline().map(Instant::from_std);
            if let Some(at) = deadline.filter(|&at| at != wake.deadline()) {
                wake.as_mut().reset(at);
                wakeups.again(Source::Timer);
            } else if deadline.is_some() && !had_deadline {
                // Not polled while there was no deadline: a mark it left then was dropped.
                wakeups.again(Source::Timer);
            }
            let mut first = true;
            woke = std::future::poll_fn(|cx| {
                let due = wakeups.due(cx, polls.load(Ordering::Relaxed), std::mem::take(&mut first));
                let timer = deadline.is_some().then_some(wake.as_mut());
                let waits = Waits { max_inflight, timer, tick: &mut tick };
                self.poll_sources(transport, &mut wakeups, due, waits)
            })
            .await;
        }
    }

    /// Handles the frames one read already brought (up to [`READY_MAX`], and while sends may
    /// still start), so a client's burst costs one wake-up and one write, not one per frame.
    async fn take_buffered_frames<T: Transport>(
        &mut self,
        transport: &mut T,
        max_inflight: usize,
    ) -> Result<(), SessionError> {
        for _ in 0..READY_MAX {
            if self.inflight.len() >= max_inflight {
                break;
            }
            match transport.try_recv_buffered() {
                Ok(Some(frame)) => {
                    self.deps.metrics.frames_in.inc();
                    self.handle_ops(frame.ops).await?;
                }
                Ok(None) => break,
                Err(e) => return Err(SessionError::from(&e)),
            }
        }
        Ok(())
    }

    /// Carries out the delivery machine's actions until it rests: deliveries into `out`, inbox
    /// reads awaited here (nothing else is pushed meanwhile), acks run among `inflight`. When
    /// `out` has something, receipts the machine holds are released into the same write.
    async fn drive(&mut self) -> Result<(), SessionError> {
        if self.registration.lagged.swap(false, Ordering::AcqRel) {
            self.delivery.on_lagged();
        }
        let now = Instant::now().into_std();
        loop {
            while let Some(action) = self.delivery.poll(now) {
                match action {
                    Action::Write(delivery) => self.push_delivery(delivery),
                    Action::Read { after_seq, limit } => {
                        match self.deps.inbox.read(self.device, after_seq, limit).await {
                            Ok(entries) => self.delivery.on_read(entries),
                            // The store is down or overloaded for a while: the connection stays
                            // (its sends get their own typed errors), and the read is tried again.
                            Err(e) if e.code().is_retryable() => {
                                // Debug, not warn: the store's error is logged where it is mapped,
                                // and every session of a node retries while a store is down.
                                tracing::debug!(device = %self.device, "inbox read failed; tried again in {READ_RETRY:?}");
                                self.delivery.on_read_failed(now);
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Action::Ack(ack) => self.apply_ack(ack),
                }
            }
            // Something goes out anyway: held receipts ride along.
            if self.out.is_empty() || !self.delivery.release_held() {
                // Every ack, the client's and those the machine makes for what it did not show
                // (declined receipts), reaches the backlog here, once per turn.
                self.registration.backlog.acked(self.delivery.acked(), self.deps.config.hot_backlog_max);
                return Ok(());
            }
        }
    }

    /// Applies an ack among the in-flight operations; the machine hears how it went.
    fn apply_ack(&mut self, ack: InboxAck) {
        let (inbox, device) = (self.deps.inbox.clone(), self.device);
        self.inflight.push(Box::pin(async move { Finished::AckApplied(inbox.acknowledge(device, ack).await) }));
        self.pushed = true;
    }

    fn push_delivery(&mut self, delivery: RawDelivery) {
        let metrics = &self.deps.metrics;
        let now_ms = self.deps.clock.now_ms();
        for item in &delivery.items {
            metrics.delivery_latency_seconds.observe(now_ms.saturating_sub(item.server_ts_ms) as f64 / 1000.0);
        }
        metrics.deliveries.inc_by(delivery.items.len() as u64);
        self.out.push(OutEvent::Delivery(delivery));
    }

    fn finished(&mut self, done: Finished) {
        match done {
            Finished::Answer { op, event: answer } => {
                self.out.push(answer.into());
                for request_id in self.syncs.finished(op) {
                    self.out.push(synced(request_id).into());
                }
            }
            Finished::AckApplied(result) => {
                if let Err(e) = &result {
                    tracing::warn!(device = %self.device, error = %e, "ack not applied; retried with its receipts read back");
                }
                self.delivery.on_ack_applied(result.is_ok(), Instant::now().into_std());
            }
        }
    }

    /// Routes a frame's operations, in order.
    async fn handle_ops(&mut self, ops: Vec<pb::ClientOp>) -> Result<(), SessionError> {
        if ops.len() > self.deps.limits.max_ops_per_frame as usize {
            return Err(SessionError::TooManyOps);
        }
        for op in ops {
            let conn = Conn {
                deps: &self.deps,
                device: self.device,
                conn_id: self.registration.conn_id,
                ephemeral_tx: &self.registration.ephemeral_tx,
            };
            match dispatch::dispatch(&conn, op).await? {
                Dispatched::Answer(e) => self.out.push(e.into()),
                Dispatched::Later(op) => {
                    let number = self.syncs.start();
                    self.inflight.push(Box::pin(op.map(move |event| Finished::Answer { op: number, event })));
                    self.pushed = true;
                }
                Dispatched::Sync { request_id } => {
                    for request_id in self.syncs.sync(request_id) {
                        self.out.push(synced(request_id).into());
                    }
                }
                // The backlog hears of it at the next `drive`, with the machine's own acks.
                Dispatched::Ack { request_id, up_to_seq } => {
                    if let Err(e) = self.delivery.on_ack(up_to_seq) {
                        self.out.push(answer(request_id, Err(e)).into());
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes `out` in frames of at most `max_frame_bytes`. False when the connection must end:
    /// the write failed, the client read nothing for `write_timeout`, or the server is stopping
    /// while the client does not read.
    async fn flush<T: Transport>(&mut self, transport: &mut T, write_timeout: Duration) -> bool {
        let max = self.deps.limits.max_frame_bytes as usize - FRAME_OVERHEAD_BYTES;
        let mut events = std::mem::take(&mut self.out).into_iter().peekable();
        self.delivery.on_flushed();
        while events.peek().is_some() {
            let mut frame = OutFrame::default();
            let mut size = 0;
            while let Some(e) = events.next_if(|e| frame.events.is_empty() || size + e.encoded_len() <= max) {
                size += e.encoded_len() + FRAME_OVERHEAD_BYTES;
                frame.events.push(e);
            }
            self.deps.metrics.frames_out.inc();
            // The write alone first: it almost always completes at once, and then no timer is
            // set, no clock read and the shutdown token not looked at (its check takes a lock
            // every session shares).
            let mut send = std::pin::pin!(transport.send(&frame));
            let written = match std::future::poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await {
                Poll::Ready(w) => Ok(w),
                Poll::Pending => tokio::select! {
                    biased;
                    w = timeout(write_timeout, send) => w,
                    _ = self.deps.shutdown.cancelled(), if !self.deps.shutdown.is_cancelled() => return false,
                },
            };
            match written {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return false,
                Err(_) => {
                    tracing::info!(device = %self.device, "closing a connection that stopped reading");
                    return false;
                }
            }
        }
        true
    }

    /// Polls the sources `due` (module `wakeups`), each with its own waker, and takes whatever
    /// they have without waiting: finished operations, held receipts, hints and ephemeral events
    /// go into the session; a kick, a frame and the tick are handed back. `Pending` when nothing
    /// was ready.
    fn poll_sources<T: Transport>(
        &mut self,
        transport: &mut T,
        wakeups: &mut Wakeups,
        due: wakeups::SourceSet,
        waits: Waits<'_, '_>,
    ) -> Poll<Woke> {
        if due.contains(Source::Kick) {
            let mut cx = Context::from_waker(wakeups.waker(Source::Kick));
            if let Poll::Ready(kick) = Pin::new(&mut self.registration.kick).poll(&mut cx) {
                return Poll::Ready(Woke { kick: Some(kick), ..Woke::default() });
            }
        }
        let mut any = false;
        // A pushed operation wakes nothing: polled whenever one was pushed since the last poll.
        if due.contains(Source::Inflight) || std::mem::take(&mut self.pushed) {
            let mut cx = Context::from_waker(wakeups.waker(Source::Inflight));
            let mut taken = 0;
            while let Poll::Ready(Some(done)) = self.inflight.poll_next_unpin(&mut cx) {
                self.finished(done);
                any = true;
                taken += 1;
                if taken == READY_MAX {
                    // More may be ready, and nothing will say so.
                    wakeups.again(Source::Inflight);
                    break;
                }
            }
        }
        // Held receipts wake nobody (`Router::notify_receipt`): taken when something else did.
        // First: hints that came after them are then most likely in order.
        if due != wakeups::SourceSet::default() {
            self.registration.held.take_into(&mut self.held);
            for (hint, at) in self.held.drain(..) {
                self.delivery.on_receipt_hint(hint.seq, hint.item, at.into_std());
                any = true;
            }
        }
        if due.contains(Source::Hints)
            && take_queued(&mut self.registration.hints, wakeups, Source::Hints, &mut self.hints_taken) > 0
        {
            any = true;
            for hint in self.hints_taken.drain(..) {
                self.delivery.on_hint(hint.seq, hint.item);
            }
        }
        if due.contains(Source::Ephemeral)
            && take_queued(&mut self.registration.ephemeral, wakeups, Source::Ephemeral, &mut self.events_taken) > 0
        {
            any = true;
            self.out.extend(self.events_taken.drain(..).map(|e| OutEvent::from(*e)));
        }
        let mut frame = None;
        if due.contains(Source::Transport) {
            if self.inflight.len() + self.syncs.waiting() < waits.max_inflight {
                let mut cx = Context::from_waker(wakeups.waker(Source::Transport));
                if let Poll::Ready(received) = std::pin::pin!(transport.recv()).poll(&mut cx) {
                    frame = Some(received);
                    wakeups.again(Source::Transport);
                }
            } else {
                // Not read while too much is in flight; read when that falls.
                wakeups.again(Source::Transport);
            }
        }
        if due.contains(Source::Timer) {
            // Without a deadline the timer is not polled (`serve` asks again when one comes).
            if let Some(timer) = waits.timer {
                let mut cx = Context::from_waker(wakeups.waker(Source::Timer));
                if timer.poll(&mut cx).is_ready() {
                    any = true;
                    wakeups.again(Source::Timer);
                }
            }
        }
        let mut tick = false;
        if due.contains(Source::Tick) {
            let mut cx = Context::from_waker(wakeups.waker(Source::Tick));
            if waits.tick.poll_tick(&mut cx).is_ready() {
                tick = true;
                wakeups.again(Source::Tick);
            }
        }
        if any || tick || frame.is_some() {
            Poll::Ready(Woke { kick: None, frame, tick })
        } else {
            Poll::Pending
        }
    }

    /// Tells the client to go elsewhere, lets in-flight sends and acks finish (the acks waiting
    /// behind them too) and flushes their answers.
    async fn drain<T: Transport>(&mut self, transport: &mut T) {
        self.out.push(go_away().into());
        let _ = timeout(DRAIN_TIMEOUT, async {
            loop {
                if let Some(ack) = self.delivery.poll_ack(Instant::now().into_std()) {
                    self.apply_ack(ack);
                }
                let Some(done) = self.inflight.next().await else { break };
                self.finished(done);
            }
        })
        .await;
        self.flush(transport, DRAIN_TIMEOUT).await;
    }
}

/// What a wait on the session's sources brought that the loop acts on itself (the rest,
/// [`Session::poll_sources`] takes into the session directly).
#[derive(Default)]
struct Woke {
    /// The session must end.
    kick: Option<Result<Kick, oneshot::error::RecvError>>,
    /// A frame from the client, its clean close, or a transport error.
    frame: Option<Result<Option<pb::ClientFrame>, crate::gateway::transport::TransportError>>,
    /// The heartbeat tick: time to check the client's liveness.
    tick: bool,
}

/// What a wait polls besides the session's own fields, lent by [`Session::serve`].
struct Waits<'w, 't> {
    /// The client's socket is read only below this many operations in flight.
    max_inflight: usize,
    /// The delivery machine's timer, when it has a deadline.
    timer: Option<Pin<&'w mut Sleep>>,
    /// The heartbeat tick.
    tick: &'t mut Interval,
}

/// Takes up to [`READY_MAX`] items from `queue` into `into`, polled as `source`, in as few
/// polls as it can (one when it is empty); how many. Unless it was found empty (and so will
/// wake the task when something comes), `source` is asked to be polled at the next wait.
fn take_queued<T>(queue: &mut mpsc::Receiver<T>, wakeups: &mut Wakeups, source: Source, into: &mut Vec<T>) -> usize {
    let mut cx = Context::from_waker(wakeups.waker(source));
    let mut count = 0;
    while count < READY_MAX {
        match queue.poll_recv_many(&mut cx, into, READY_MAX - count) {
            // Closed: nothing will come, and nothing will wake the task either.
            Poll::Ready(0) => break,
            Poll::Ready(n) => count += n,
            Poll::Pending => return count,
        }
    }
    wakeups.again(source);
    count
}

#[cfg(test)]
mod tests;
