//! One authenticated connection: handshake, operations, deliveries, acks and flow control.
//!
//! The session owns the delivery cursor of its device: `acked` ≤ `sent` ≤ `known_last`. It pushes
//! inbox entries while fewer than `unacked_window` are unacknowledged, from router hints when they
//! are contiguous, otherwise from the store. Sends run concurrently (many in flight per
//! connection); the session stops reading when `max_inflight_sends` are pending, which pushes
//! back on the client through TCP. It never touches the store's write path directly: it calls
//! services, which do.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{FuturesUnordered, StreamExt};
use iris_proto::pb::{self, client_op, inbox_item, server_event, ErrorCode};
use iris_proto::version;
use iris_store::{AccountId, DeviceAddr};
use prost::Message as _;
use rand::Rng;
use tokio::time::{timeout, Instant};
use tracing::Instrument;

use crate::actions;
use crate::auth;
use crate::blocks;
use crate::contacts;
use crate::context::Ctx;
use crate::error::ServiceError;
use crate::gateway::admission::Refusal;
use crate::gateway::transport::{Transport, TransportError};
use crate::groups;
use crate::messaging;
use crate::presence;
use crate::ratelimit;
use crate::router::{Hint, Kick, Registration};
use crate::typing;

/// Delivery bytes a session prepares before writing them (bounds memory per connection).
const OUT_BYTES_MAX: usize = 1 << 20;
/// Payload bytes per `Delivery` event, so one event stays well inside a frame.
const DELIVERY_BYTES_MAX: usize = 256 * 1024;
/// Room for the frame's and events' own encoding around their contents.
const FRAME_OVERHEAD_BYTES: usize = 64;

/// How long a gap in hinted seqs may wait for its hint before the session reads the store.
const GAP_WAIT: Duration = Duration::from_millis(3);

/// How long a shutting-down session waits for its in-flight sends to be answered.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs a connection from its first byte to its close: admission, handshake, service.
pub async fn run<T: Transport>(ctx: Arc<Ctx>, mut transport: T, peer: IpAddr) {
    ctx.metrics.connections_accepted.inc();
    let _admitted = match ctx.admission.admit(peer, &ctx.metrics) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            ctx.metrics.connections_refused.inc();
            let answer = match refusal {
                Refusal::GoAway(go_away) => server_event::Event::GoAway(go_away),
                Refusal::Limited(e) => server_event::Event::Error(with_fatal(e.to_wire())),
            };
            let _ = timeout(Duration::from_secs(1), transport.send(&frame_of(vec![event(0, answer)]))).await;
            transport.close().await;
            return;
        }
    };
    let handshake = Duration::from_millis(ctx.config.session.handshake_timeout_ms);
    let first = tokio::select! {
        first = timeout(handshake, transport.recv()) => first,
        _ = ctx.shutdown.cancelled() => {
            let go_away = pb::GoAway { reconnect_after_ms: rand::rng().random_range(500..3000), reason: "server shutting down".into() };
            let _ = timeout(Duration::from_secs(1), transport.send(&frame_of(vec![event(0, server_event::Event::GoAway(go_away))]))).await;
            transport.close().await;
            return;
        }
    };
    let first = match first {
        Err(_) => Err(fatal(ErrorCode::Timeout, "no Hello in time")),
        Ok(Ok(Some(frame))) => Ok(frame),
        Ok(Ok(None)) => return,
        Ok(Err(e)) => Err(transport_error(&e)),
    };
    let outcome = match first {
        Ok(frame) => handshake_then_serve(ctx, &mut transport, frame).await,
        Err(e) => Err(e),
    };
    if let Err(error) = outcome {
        let _ = transport.send(&frame_of(vec![event(0, server_event::Event::Error(error))])).await;
    }
    transport.close().await;
}

fn fatal(code: ErrorCode, message: &str) -> pb::Error {
    let mut e = pb::Error::new(code, message);
    e.fatal = true;
    e
}

fn transport_error(e: &TransportError) -> pb::Error {
    match e {
        TransportError::Frame(iris_proto::FrameError::TooLarge { len, max }) => {
            fatal(ErrorCode::FrameTooLarge, &format!("frame of {len} bytes exceeds the limit of {max} bytes"))
        }
        TransportError::TooLarge => fatal(ErrorCode::FrameTooLarge, "frame exceeds the size limit"),
        other => fatal(ErrorCode::BadFrame, &other.to_string()),
    }
}

fn event(request_id: u64, e: server_event::Event) -> pb::ServerEvent {
    pb::ServerEvent { request_id, event: Some(e) }
}

fn frame_of(events: Vec<pb::ServerEvent>) -> pb::ServerFrame {
    pb::ServerFrame { events }
}

/// What a valid Hello established.
struct Handshake {
    device: DeviceAddr,
    version: pb::ProtocolVersion,
    request_id: u64,
    resume_after_seq: u64,
}

/// Checks the first frame's Hello: version, token, device.
async fn handshake(
    ctx: &Ctx,
    ops: &mut impl Iterator<Item = pb::ClientOp>,
    n_ops: usize,
) -> Result<Handshake, pb::Error> {
    if n_ops > ctx.limits.max_ops_per_frame as usize {
        return Err(fatal(ErrorCode::TooManyOps, "too many operations in one frame"));
    }
    let Some(pb::ClientOp { request_id, op: Some(client_op::Op::Hello(hello)) }) = ops.next() else {
        return Err(fatal(ErrorCode::HandshakeRequired, "the first operation must be Hello"));
    };
    let Some(version) = version::negotiate(&hello.versions) else {
        let mut e = fatal(ErrorCode::UnsupportedVersion, "no common protocol version");
        e.supported_versions = version::supported();
        return Err(e);
    };
    let device = auth::authenticate(ctx, &hello.token).await.map_err(|e| with_fatal(e.to_wire()))?;
    if hello.device_id != device.device {
        return Err(fatal(ErrorCode::Unauthenticated, "device_id does not match the token"));
    }
    Ok(Handshake { device, version, request_id, resume_after_seq: hello.resume_after_seq })
}

/// Checks the Hello, registers the device and serves it. Errors returned here are fatal.
async fn handshake_then_serve<T: Transport>(
    ctx: Arc<Ctx>,
    transport: &mut T,
    frame: pb::ClientFrame,
) -> Result<(), pb::Error> {
    let n_ops = frame.ops.len();
    let mut ops = frame.ops.into_iter();
    let hello = handshake(&ctx, &mut ops, n_ops).await;
    ctx.metrics.handshake(hello.as_ref().map(|_| ()).map_err(|e| e.error_code()));
    let Handshake { device, version, request_id, resume_after_seq } = hello?;
    let privacy =
        ctx.store.presence_privacy(device.account).await.map_err(|e| with_fatal(ServiceError::from(e).to_wire()))?;
    ctx.presence
        .load_privacy(device.account, privacy.map_or(presence::Privacy::Everyone, presence::Privacy::from_code));
    let registration = ctx.router.register(device);
    let conn_id = registration.conn_id;
    if let Some(cluster) = &ctx.cluster {
        crate::cluster::registry::claim(cluster, device).await;
    }
    ctx.presence.connected(device, conn_id);
    let served = match Session::start(ctx.clone(), device, registration, resume_after_seq).await {
        Ok(mut session) => {
            let welcome = pb::Welcome {
                version: Some(version),
                heartbeat_interval_ms: ctx.config.session.heartbeat_interval_ms,
                limits: Some(ctx.limits.into()),
                server_time_ms: ctx.clock.now_ms(),
                account_id: device.account,
                device_id: device.device,
                capabilities: vec![],
                node_id: ctx.node_name.clone(),
            };
            session.out.push(event(request_id, server_event::Event::Welcome(welcome)));
            let span = tracing::info_span!("session", device = %device, conn = conn_id);
            async {
                tracing::debug!("session started");
                session.handle_ops(ops.collect()).await?;
                let served = session.serve(transport).await;
                tracing::debug!(result = ?served.as_ref().map_err(|e| e.error_code()), "session ended");
                served
            }
            .instrument(span)
            .await
        }
        Err(e) => Err(with_fatal(e.to_wire())),
    };
    ctx.router.unregister(device, conn_id);
    if let Some(cluster) = &ctx.cluster {
        crate::cluster::registry::release(&ctx, cluster, device);
    }
    ctx.presence.disconnected(device, conn_id, ctx.clock.now_ms());
    served
}

fn with_fatal(mut e: pb::Error) -> pb::Error {
    e.fatal = true;
    e
}

/// What the session must remember about a delivered, unacked entry.
struct Unacked {
    seq: u64,
    /// Sender and message id, for the `delivered` receipt, when the entry is someone's message.
    receipt_to: Option<(AccountId, u64)>,
    /// Group and message id, when the entry is someone's group message (group receipts).
    group_receipt: Option<(u64, u64)>,
}

/// The output of a concurrent operation: an event to send, if any.
type OpFuture = BoxFuture<'static, Option<pb::ServerEvent>>;

struct Session {
    ctx: Arc<Ctx>,
    device: DeviceAddr,
    registration: Registration,
    /// Highest seq acked by the client.
    acked: u64,
    /// Highest seq written to the client.
    sent: u64,
    /// Highest seq known to exist in the inbox.
    known_last: u64,
    /// Hinted entries contiguous after `sent`, waiting for window room.
    buffered: BTreeMap<u64, bytes::Bytes>,
    /// Since when a gap before buffered hints has been waiting (see `GAP_WAIT`).
    gap_since: Option<Instant>,
    unacked: VecDeque<Unacked>,
    inflight: FuturesUnordered<OpFuture>,
    out: Vec<pb::ServerEvent>,
    /// Payload bytes of the deliveries in `out`; pumping pauses past `OUT_BYTES_MAX`.
    out_bytes: usize,
    last_heard: Instant,
    window: u64,
    batch: usize,
}

impl Session {
    async fn start(
        ctx: Arc<Ctx>,
        device: DeviceAddr,
        registration: Registration,
        resume_after: u64,
    ) -> Result<Self, ServiceError> {
        let mut cursor = ctx.store.cursor(device).await?;
        if resume_after > cursor.acked {
            let up_to = resume_after.min(cursor.last);
            ctx.store.ack(device, up_to).await?;
            cursor.acked = up_to;
        }
        let window = u64::from(ctx.config.session.unacked_window);
        let batch = ctx.limits.max_batch_deliveries as usize;
        Ok(Self {
            ctx,
            device,
            registration,
            acked: cursor.acked,
            sent: cursor.acked,
            known_last: cursor.last,
            buffered: BTreeMap::new(),
            gap_since: None,
            unacked: VecDeque::new(),
            inflight: FuturesUnordered::new(),
            out: Vec::new(),
            out_bytes: 0,
            last_heard: Instant::now(),
            window,
            batch,
        })
    }

    /// The main loop: until the client leaves, something fatal happens or the server stops.
    async fn serve<T: Transport>(&mut self, transport: &mut T) -> Result<(), pb::Error> {
        let heartbeat = Duration::from_millis(u64::from(self.ctx.config.session.heartbeat_interval_ms));
        let write_timeout = Duration::from_millis(self.ctx.config.session.write_timeout_ms);
        let frame_timeout = Duration::from_millis(self.ctx.config.session.frame_timeout_ms);
        let mut tick = tokio::time::interval((heartbeat / 2).min(frame_timeout / 2));
        let max_inflight = self.ctx.limits.max_inflight_sends as usize;
        let shutdown = self.ctx.shutdown.clone();
        loop {
            self.collect_ready();
            loop {
                self.pump().await.map_err(|e| with_fatal(e.to_wire()))?;
                if self.out.is_empty() {
                    break;
                }
                let more = self.out_bytes >= OUT_BYTES_MAX;
                if !self.flush(transport, write_timeout).await {
                    return Ok(());
                }
                if !more {
                    break;
                }
            }
            let gap_deadline = self.gap_deadline();
            tokio::select! {
                biased;
                kick = &mut self.registration.kick => {
                    return Err(match kick {
                        Ok(Kick::Replaced) => fatal(ErrorCode::SessionReplaced, "another connection took over this device"),
                        Ok(Kick::Revoked) | Err(_) => fatal(ErrorCode::DeviceRevoked, "this device was revoked"),
                    });
                }
                _ = shutdown.cancelled() => {
                    self.drain(transport).await;
                    return Ok(());
                }
                Some(done) = self.inflight.next(), if !self.inflight.is_empty() => {
                    self.out.extend(done);
                }
                hint = self.registration.hints.recv() => {
                    if let Some(hint) = hint {
                        self.on_hint(hint);
                    }
                }
                Some(e) = self.registration.ephemeral.recv() => self.out.push(*e),
                received = transport.recv(), if self.inflight.len() < max_inflight => {
                    match received {
                        Ok(Some(frame)) => {
                            self.ctx.metrics.frames_in.inc();
                            self.last_heard = Instant::now();
                            self.handle_ops(frame.ops).await?;
                        }
                        Ok(None) => return Ok(()),
                        Err(e) => return Err(transport_error(&e)),
                    }
                }
                _ = tokio::time::sleep_until(gap_deadline.unwrap_or_else(Instant::now)), if gap_deadline.is_some() => {}
                _ = tick.tick() => {
                    if self.last_heard.elapsed() > 2 * heartbeat {
                        return Err(fatal(ErrorCode::HeartbeatTimeout, "nothing received for twice the heartbeat interval"));
                    }
                    if transport.partial_frame_since().is_some_and(|t| t.elapsed() > frame_timeout) {
                        return Err(fatal(ErrorCode::Timeout, "a frame was not completed in time"));
                    }
                }
            }
        }
    }

    /// Writes `out` in frames of at most `max_frame_bytes`. False when the connection must end:
    /// the write failed, the client read nothing for `write_timeout`, or the server is stopping
    /// while the client does not read.
    async fn flush<T: Transport>(&mut self, transport: &mut T, write_timeout: Duration) -> bool {
        let max = self.ctx.limits.max_frame_bytes as usize - FRAME_OVERHEAD_BYTES;
        let mut events = std::mem::take(&mut self.out).into_iter().peekable();
        self.out_bytes = 0;
        while events.peek().is_some() {
            let mut frame = frame_of(Vec::new());
            let mut size = 0;
            while let Some(e) = events.next_if(|e| frame.events.is_empty() || size + e.encoded_len() <= max) {
                size += e.encoded_len() + FRAME_OVERHEAD_BYTES;
                frame.events.push(e);
            }
            self.ctx.metrics.frames_out.inc();
            let written = tokio::select! {
                w = timeout(write_timeout, transport.send(&frame)) => w,
                _ = self.ctx.shutdown.cancelled(), if !self.ctx.shutdown.is_cancelled() => return false,
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

    /// Takes whatever finished or arrived meanwhile without waiting, so one write carries it all.
    fn collect_ready(&mut self) {
        const READY_MAX: usize = 1024;
        for _ in 0..READY_MAX {
            match self.inflight.next().now_or_never() {
                Some(Some(done)) => self.out.extend(done),
                _ => break,
            }
        }
        for _ in 0..READY_MAX {
            match self.registration.hints.try_recv() {
                Ok(hint) => self.on_hint(hint),
                Err(_) => break,
            }
        }
        for _ in 0..READY_MAX {
            match self.registration.ephemeral.try_recv() {
                Ok(e) => self.out.push(*e),
                Err(_) => break,
            }
        }
    }

    /// Tells the client to go elsewhere, lets in-flight sends finish and flushes their answers.
    async fn drain<T: Transport>(&mut self, transport: &mut T) {
        let reconnect_after_ms = rand::rng().random_range(500..3000);
        let go_away = pb::GoAway { reconnect_after_ms, reason: "server shutting down".into() };
        self.out.push(event(0, server_event::Event::GoAway(go_away)));
        let _ = timeout(DRAIN_TIMEOUT, async {
            while let Some(done) = self.inflight.next().await {
                self.out.extend(done);
            }
        })
        .await;
        self.flush(transport, DRAIN_TIMEOUT).await;
    }

    async fn handle_ops(&mut self, ops: Vec<pb::ClientOp>) -> Result<(), pb::Error> {
        if ops.len() > self.ctx.limits.max_ops_per_frame as usize {
            return Err(fatal(ErrorCode::TooManyOps, "too many operations in one frame"));
        }
        for op in ops {
            let rid = op.request_id;
            match op.op {
                Some(client_op::Op::Hello(_)) => {
                    return Err(fatal(ErrorCode::HandshakeRequired, "Hello was already received on this connection"));
                }
                Some(client_op::Op::Send(mut msg)) => {
                    msg.forwarded = false; // only `Forward` sets it
                    self.start_send(rid, msg).await;
                }
                Some(client_op::Op::Action(a)) => {
                    let (ctx, device) = (self.ctx.clone(), self.device);
                    self.inflight.push(Box::pin(async move {
                        let result = actions::act(&ctx, device, a).await;
                        Some(answer(rid, result.map(server_event::Event::ActionResult)))
                    }));
                }
                Some(client_op::Op::ContactsUpdate(u)) => {
                    let (ctx, device) = (self.ctx.clone(), self.device);
                    self.inflight.push(Box::pin(async move {
                        let result = contacts::update(&ctx, device, u).await;
                        Some(answer(rid, result.map(server_event::Event::ContactList)))
                    }));
                }
                Some(client_op::Op::ContactsList(_)) => {
                    let (ctx, device) = (self.ctx.clone(), self.device);
                    self.inflight.push(Box::pin(async move {
                        let result = contacts::list(&ctx, device.account).await;
                        Some(answer(rid, result.map(server_event::Event::ContactList)))
                    }));
                }
                Some(client_op::Op::Discover(d)) => {
                    let (ctx, device) = (self.ctx.clone(), self.device);
                    self.inflight.push(Box::pin(async move {
                        let result = contacts::discover(&ctx, device, d).await;
                        Some(answer(rid, result.map(server_event::Event::DiscoverResult)))
                    }));
                }
                Some(client_op::Op::Forward(f)) => {
                    let (ctx, device) = (self.ctx.clone(), self.device);
                    self.inflight.push(Box::pin(async move {
                        let result = actions::forward(&ctx, device, f).await;
                        Some(answer(rid, result.map(server_event::Event::ForwardResult)))
                    }));
                }
                Some(client_op::Op::Receipt(r)) => {
                    let (ctx, device) = (self.ctx.clone(), self.device);
                    self.inflight.push(Box::pin(async move {
                        let result = messaging::read_receipt(&ctx, device, r).await;
                        Some(answer(rid, result.map(server_event::Event::ReceiptResult)))
                    }));
                }
                Some(client_op::Op::Ack(ack)) => {
                    if let Err(e) = self.on_ack(ack.up_to_seq) {
                        self.out.push(answer(rid, Err(e)));
                    }
                }
                Some(client_op::Op::Group(g)) => {
                    let op = groups::start(self.ctx.clone(), self.device, g).await;
                    let result = op.map(move |r| Some(answer(rid, r.map(server_event::Event::GroupResult))));
                    self.inflight.push(Box::pin(result));
                }
                Some(client_op::Op::PresenceSubscribe(sub)) => {
                    let (ctx, viewer) = (self.ctx.clone(), self.device.account);
                    let (conn, tx) = (self.registration.conn_id, self.registration.ephemeral_tx.clone());
                    self.inflight.push(Box::pin(async move {
                        let result = presence_subscribe(&ctx, viewer, conn, &tx, &sub.account_ids).await;
                        Some(answer(rid, result.map(server_event::Event::PresenceState)))
                    }));
                }
                Some(client_op::Op::PresenceUnsubscribe(unsub)) => {
                    self.ctx.presence.unsubscribe(self.registration.conn_id, &unsub.account_ids);
                    self.out.push(event(rid, server_event::Event::Done(pb::Done {})));
                }
                Some(client_op::Op::SetPresence(set)) => {
                    let privacy = match pb::PresencePrivacy::try_from(set.privacy) {
                        Ok(pb::PresencePrivacy::Everyone) => Some(presence::Privacy::Everyone),
                        Ok(pb::PresencePrivacy::Nobody) => Some(presence::Privacy::Nobody),
                        Ok(pb::PresencePrivacy::Contacts) => Some(presence::Privacy::Contacts),
                        _ => None,
                    };
                    let (ctx, device, conn) = (self.ctx.clone(), self.device, self.registration.conn_id);
                    self.inflight.push(Box::pin(async move {
                        // Durable first, so a restart never shows more than the person chose.
                        if let Some(p) = privacy {
                            if let Err(e) = ctx.store.set_presence_privacy(device.account, p.code()).await {
                                return Some(answer(rid, Err(e.into())));
                            }
                        }
                        ctx.presence.set(device, conn, set.away, privacy, ctx.clock.now_ms());
                        Some(event(rid, server_event::Event::Done(pb::Done {})))
                    }));
                }
                Some(client_op::Op::Typing(t)) => {
                    let (ctx, device) = (self.ctx.clone(), self.device);
                    self.inflight.push(Box::pin(async move {
                        let result = typing::send(&ctx, device, t).await;
                        Some(answer(rid, result.map(|()| server_event::Event::Done(pb::Done {}))))
                    }));
                }
                Some(client_op::Op::Block(b)) => {
                    let (ctx, device) = (self.ctx.clone(), self.device);
                    self.inflight.push(Box::pin(async move {
                        let result = blocks::set(&ctx, device, b).await;
                        Some(answer(rid, result.map(|()| server_event::Event::Done(pb::Done {}))))
                    }));
                }
                Some(client_op::Op::Ping(p)) => {
                    let pong = pb::Pong { client_time_ms: p.client_time_ms, server_time_ms: self.ctx.clock.now_ms() };
                    self.out.push(event(rid, server_event::Event::Pong(pong)));
                }
                None => {
                    let e = ServiceError::InvalidArgument("unknown or missing operation".into());
                    self.out.push(answer(rid, Err(e)));
                }
            }
        }
        Ok(())
    }

    /// Validates and queues a send in arrival order; its commit is awaited among `inflight`.
    async fn start_send(&mut self, rid: u64, msg: pb::SendMessage) {
        let started = match ratelimit::check(&self.ctx.send_limit, &self.device.account) {
            Ok(()) => messaging::start_send(&self.ctx, self.device, msg).await,
            Err(e) => Err(e),
        };
        let ctx = self.ctx.clone();
        match started {
            Ok(pending) => self.inflight.push(Box::pin(async move {
                let result = pending.finish(&ctx).await;
                match &result {
                    Ok(r) if r.duplicate => drop(ctx.metrics.sends_duplicate.inc()),
                    Ok(_) => drop(ctx.metrics.sends_accepted.inc()),
                    Err(e) => ctx.metrics.send_rejected(e.code()),
                }
                match &result {
                    Ok(r) => tracing::debug!(
                        request_id = rid,
                        msg_id = r.server_msg_id,
                        duplicate = r.duplicate,
                        "send accepted"
                    ),
                    Err(e) => tracing::debug!(request_id = rid, code = e.code().as_str_name(), "send rejected"),
                }
                Some(answer(rid, result.map(server_event::Event::SendResult)))
            })),
            Err(e) => {
                ctx.metrics.send_rejected(e.code());
                tracing::debug!(request_id = rid, code = e.code().as_str_name(), "send rejected");
                self.out.push(answer(rid, Err(e)));
            }
        }
    }

    /// Cumulative ack: produce `delivered` receipts, then delete from the inbox.
    fn on_ack(&mut self, up_to: u64) -> Result<(), ServiceError> {
        if up_to <= self.acked {
            return Ok(());
        }
        if up_to > self.sent {
            return Err(ServiceError::InvalidArgument(format!(
                "ack {up_to} is beyond the last delivered seq {}",
                self.sent
            )));
        }
        let mut by_sender: BTreeMap<AccountId, Vec<u64>> = BTreeMap::new();
        let mut group_receipts = Vec::new();
        while self.unacked.front().is_some_and(|u| u.seq <= up_to) {
            let u = self.unacked.pop_front().expect("checked non-empty");
            group_receipts.extend(u.group_receipt);
            if let Some((sender, id)) = u.receipt_to {
                by_sender.entry(sender).or_default().push(id);
            }
        }
        self.acked = up_to;
        let (ctx, device) = (self.ctx.clone(), self.device);
        self.inflight.push(Box::pin(async move {
            let mut receipts = messaging::delivered_receipts(&ctx, device, by_sender.into_iter().collect()).await;
            if receipts.is_ok() && !group_receipts.is_empty() {
                receipts = groups::delivered(&ctx, device, group_receipts).await;
            }
            let acked = match receipts {
                Ok(()) => ctx.store.ack(device, up_to).await.map_err(ServiceError::from),
                Err(e) => Err(e),
            };
            if let Err(e) = acked {
                tracing::warn!(%device, error = %e, "ack not applied; entries will be redelivered");
            }
            None
        }));
        Ok(())
    }

    /// Keeps a hinted entry for delivery. Hints from different senders' commits can arrive out
    /// of order by microseconds, so they wait in a small reorder buffer (bounded by the window).
    fn on_hint(&mut self, hint: Hint) {
        self.known_last = self.known_last.max(hint.seq);
        if hint.seq > self.sent && (self.buffered.len() as u64) < self.window {
            self.buffered.insert(hint.seq, hint.item);
        }
    }

    /// Delivers what the window allows: buffered hints when they continue the sequence, else the
    /// store. A gap with later hints already buffered is given `GAP_WAIT` to fill by itself.
    async fn pump(&mut self) -> Result<(), ServiceError> {
        if self.registration.lagged.swap(false, Ordering::AcqRel) {
            let cursor = self.ctx.store.cursor(self.device).await?;
            self.known_last = self.known_last.max(cursor.last);
        }
        while self.sent - self.acked < self.window && self.out_bytes < OUT_BYTES_MAX {
            let room = ((self.window - (self.sent - self.acked)) as usize).min(self.batch);
            let mut entries: Vec<(u64, bytes::Bytes)> = Vec::with_capacity(room);
            while entries.len() < room {
                let next = self.sent + entries.len() as u64 + 1;
                match self.buffered.remove(&next) {
                    Some(item) => entries.push((next, item)),
                    None => break,
                }
            }
            if entries.is_empty() && self.known_last > self.sent {
                let now = Instant::now();
                let gap_since = *self.gap_since.get_or_insert(now);
                if !self.buffered.is_empty() && now.duration_since(gap_since) < GAP_WAIT {
                    return Ok(());
                }
                let stored = self.ctx.store.read(self.device, self.sent, room).await?;
                if stored.is_empty() {
                    self.known_last = self.sent;
                }
                entries = stored.into_iter().map(|e| (e.seq, e.item)).collect();
                entries = groups::resolve(&self.ctx, entries).await;
            }
            self.gap_since = None;
            if entries.is_empty() {
                return Ok(());
            }
            let last = entries.last().map_or(0, |e| e.0);
            self.buffered = self.buffered.split_off(&(last + 1));
            self.deliver(entries);
        }
        Ok(())
    }

    /// When a waiting gap must be given up on and read from the store.
    fn gap_deadline(&self) -> Option<Instant> {
        self.gap_since.map(|t| t + GAP_WAIT)
    }

    fn deliver(&mut self, entries: Vec<(u64, bytes::Bytes)>) {
        let mut items = Vec::with_capacity(entries.len());
        let mut items_bytes = 0;
        for (seq, bytes) in entries {
            if items_bytes + bytes.len() > DELIVERY_BYTES_MAX && !items.is_empty() {
                self.push_delivery(std::mem::take(&mut items), items_bytes);
                items_bytes = 0;
            }
            items_bytes += bytes.len();
            self.sent = seq;
            self.known_last = self.known_last.max(seq);
            let Ok(mut item) = pb::InboxItem::decode(bytes) else {
                tracing::error!(device = %self.device, seq, "undecodable inbox entry skipped");
                self.unacked.push_back(Unacked { seq, receipt_to: None, group_receipt: None });
                continue;
            };
            item.seq = seq;
            let age_ms = self.ctx.clock.now_ms().saturating_sub(item.server_ts_ms);
            self.ctx.metrics.delivery_latency_seconds.observe(age_ms as f64 / 1000.0);
            let receipt_to = match &item.body {
                Some(inbox_item::Body::Message(m)) if m.from_account_id != self.device.account => {
                    Some((m.from_account_id, item.server_msg_id))
                }
                _ => None,
            };
            let group_receipt = groups::delivered_receipt_for(&item, self.device.account);
            self.unacked.push_back(Unacked { seq, receipt_to, group_receipt });
            items.push(item);
        }
        self.push_delivery(items, items_bytes);
    }

    fn push_delivery(&mut self, items: Vec<pb::InboxItem>, items_bytes: usize) {
        if !items.is_empty() {
            self.ctx.metrics.deliveries.inc_by(items.len() as u64);
            self.out_bytes += items_bytes;
            self.out.push(event(0, server_event::Event::Delivery(pb::Delivery { items })));
        }
    }
}

/// Loads the blocks that hide some of `accounts` from `viewer`, then subscribes.
async fn presence_subscribe(
    ctx: &Ctx,
    viewer: AccountId,
    conn_id: u64,
    tx: &tokio::sync::mpsc::Sender<crate::router::Ephemeral>,
    accounts: &[AccountId],
) -> Result<pb::PresenceState, ServiceError> {
    if accounts.len() > presence::SUBSCRIPTIONS_MAX {
        return Err(too_many_subscriptions(accounts.len()));
    }
    blocks::load_for_presence(ctx, viewer, accounts).await?;
    contacts::load_for_presence(ctx, viewer, accounts).await?;
    ctx.presence.subscribe(viewer, conn_id, tx, accounts).map_err(too_many_subscriptions)
}

fn too_many_subscriptions(n: usize) -> ServiceError {
    ServiceError::InvalidArgument(format!(
        "{n} presence subscriptions exceed the limit of {} per connection",
        presence::SUBSCRIPTIONS_MAX
    ))
}

fn answer(request_id: u64, result: Result<server_event::Event, ServiceError>) -> pb::ServerEvent {
    match result {
        Ok(e) => event(request_id, e),
        Err(e) => event(request_id, server_event::Event::Error(e.to_wire())),
    }
}
