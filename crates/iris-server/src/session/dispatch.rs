//! Client operations to services: each operation becomes an answer now, a future answered
//! later (among the session's in-flight operations), or an ack for the delivery machine.
//!
//! Knows which service serves which operation and how answers look on the wire. Knows nothing
//! of the delivery window, the socket or the store; it never decides an error code (the errors
//! carry their own, see `crate::error`).

use std::future::Future;
use std::sync::Arc;

use futures_util::future::{BoxFuture, FutureExt};
use iris_proto::pb::{self, client_op, server_event};
use iris_store::DeviceAddr;
use tokio::sync::mpsc;

use super::SessionDeps;
use crate::abuse::Outgoing;
use crate::error::{ServiceError, SessionError};
use crate::router::Ephemeral;

/// What a concurrent operation yields when it finishes.
pub(super) enum Finished {
    /// The answer of operation number `op` (see `sync.rs`), to write.
    Answer {
        /// The operation's number, in arrival order.
        op: u64,
        /// Its answer.
        event: pb::ServerEvent,
    },
    /// An ack the delivery machine asked for was applied (or failed).
    AckApplied(Result<(), ServiceError>),
}

/// A concurrent operation or ack, as the session runs it.
pub(super) type OpFuture = BoxFuture<'static, Finished>;

/// A concurrent operation as dispatched: its answer.
pub(super) type AnswerFuture = BoxFuture<'static, pb::ServerEvent>;

/// What one client operation asks of the session.
pub(super) enum Dispatched {
    /// Write this answer now.
    Answer(pb::ServerEvent),
    /// Run this among the in-flight operations; it answers when done.
    Later(AnswerFuture),
    /// A `Sync`: answer it once every earlier operation was answered.
    Sync {
        /// The sync's request id.
        request_id: u64,
    },
    /// A cumulative ack, for the delivery machine (answered only when refused).
    Ack {
        /// The ack's request id.
        request_id: u64,
        /// Everything up to this seq.
        up_to_seq: u64,
    },
}

/// The connection an operation came on.
pub(super) struct Conn<'a> {
    /// What the session may use.
    pub deps: &'a Arc<SessionDeps>,
    /// The authenticated device.
    pub device: DeviceAddr,
    /// This connection's registration id (presence subscriptions are per connection).
    pub conn_id: u64,
    /// Where presence pushes for this connection go.
    pub ephemeral_tx: &'a mpsc::Sender<Ephemeral>,
}

/// Routes one operation to its service. Sends (1:1 and group) are validated and queued here, in
/// arrival order, so one device's messages keep their order; only their commits overlap.
pub(super) async fn dispatch(conn: &Conn<'_>, op: pb::ClientOp) -> Result<Dispatched, SessionError> {
    use client_op::Op;
    use server_event::Event;
    let (rid, deps, device) = (op.request_id, conn.deps, conn.device);
    let Some(op) = op.op else {
        let e = ServiceError::InvalidArgument("unknown or missing operation".into());
        return Ok(Dispatched::Answer(answer(rid, Err(e))));
    };
    Ok(match op {
        Op::Hello(_) => return Err(SessionError::HelloRepeated),
        Op::Send(mut msg) => {
            msg.forwarded = false; // only `Forward` sets it
            start_send(deps, device, rid, msg).await
        }
        Op::Group(g) => {
            if matches!(g.op, Some(pb::group_op::Op::Send(_))) {
                if let Err(e) = deps.abuse.check_send(device.account, Outgoing::Group).await {
                    deps.metrics.send_rejected(e.code());
                    return Ok(Dispatched::Answer(answer(rid, Err(e))));
                }
            }
            let op = deps.groups.start(device, g).await;
            Dispatched::Later(Box::pin(op.map(move |r| answer(rid, r.map(Event::GroupResult)))))
        }
        Op::Ack(ack) => Dispatched::Ack { request_id: rid, up_to_seq: ack.up_to_seq },
        Op::Receipt(r) => {
            later(deps, rid, |d| async move { d.receipts.read(device, r).await.map(Event::ReceiptResult) })
        }
        Op::Action(a) => later(deps, rid, |d| async move {
            d.abuse.check_send(device.account, Outgoing::Action).await?;
            d.actions.act(device, a).await.map(Event::ActionResult)
        }),
        Op::Forward(f) => later(deps, rid, |d| async move {
            check_forward(&d, device, &f).await?;
            d.forwards.forward(device, f).await.map(Event::ForwardResult)
        }),
        Op::Report(r) => later(deps, rid, |d| async move { d.abuse.report(device, r).await.map(Event::ReportResult) }),
        Op::ContactsUpdate(u) => {
            later(deps, rid, |d| async move { d.contacts.update(device, u).await.map(Event::ContactList) })
        }
        Op::ContactsList(_) => {
            later(deps, rid, |d| async move { d.contacts.list(device.account).await.map(Event::ContactList) })
        }
        Op::Discover(q) => {
            later(deps, rid, |d| async move { d.contacts.discover(device, q).await.map(Event::DiscoverResult) })
        }
        Op::Keys(k) => later(deps, rid, |d| async move { d.keys.op(device, k).await.map(Event::KeysResult) }),
        Op::SetTimer(t) => later(deps, rid, |d| async move {
            let result = match (t.account_id, t.group_id) {
                (0, 0) | (1.., 1..) => {
                    Err(ServiceError::InvalidArgument("name exactly one of account_id and group_id".into()))
                }
                (0, _) => d.groups.set_timer(device, t).await,
                (_, 0) => d.messaging.set_timer(device, t).await,
            };
            result.map(Event::TimerResult)
        }),
        Op::Push(p) => later(deps, rid, |d| async move { d.push.op(device, p).await.map(Event::PushResult) }),
        Op::Typing(t) => later(deps, rid, |d| async move { d.typing.send(device, t).await.map(done) }),
        Op::Call(c) => later(deps, rid, |d| async move { d.calls.op(device, c).await }),
        Op::Block(b) => later(deps, rid, |d| async move { d.blocks.set(device, b).await.map(done) }),
        Op::PresenceSubscribe(sub) => {
            let (conn_id, tx) = (conn.conn_id, conn.ephemeral_tx.clone());
            later(deps, rid, move |d| async move {
                d.visibility.subscribe(device.account, conn_id, &tx, &sub.account_ids).await.map(Event::PresenceState)
            })
        }
        Op::PresenceUnsubscribe(unsub) => {
            deps.visibility.unsubscribe(conn.conn_id, &unsub.account_ids);
            Dispatched::Answer(event(rid, done(())))
        }
        Op::SetPresence(set) => {
            let conn_id = conn.conn_id;
            later(deps, rid, move |d| async move {
                d.visibility.set(device, conn_id, set, d.clock.now_ms()).await.map(done)
            })
        }
        Op::Sync(_) => Dispatched::Sync { request_id: rid },
        Op::Ping(p) => {
            let pong = pb::Pong { client_time_ms: p.client_time_ms, server_time_ms: deps.clock.now_ms() };
            Dispatched::Answer(event(rid, Event::Pong(pong)))
        }
    })
}

/// Validates and queues a 1:1 send in arrival order; its commit is awaited among the in-flight
/// operations.
async fn start_send(deps: &Arc<SessionDeps>, device: DeviceAddr, rid: u64, msg: pb::SendMessage) -> Dispatched {
    let started = match deps.send_limit.take(&device.account).await {
        Ok(()) => match deps.abuse.check_send(device.account, outgoing(&msg)).await {
            Ok(()) => deps.messaging.start_send(device, msg).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let metrics = deps.metrics.clone();
    match started {
        Ok(pending) => Dispatched::Later(Box::pin(async move {
            let result = pending.finish().await;
            match &result {
                Ok(r) if r.duplicate => drop(metrics.sends_duplicate.inc()),
                Ok(_) => drop(metrics.sends_accepted.inc()),
                Err(e) => metrics.send_rejected(e.code()),
            }
            match &result {
                Ok(r) => {
                    tracing::debug!(
                        request_id = rid,
                        msg_id = r.server_msg_id,
                        duplicate = r.duplicate,
                        "send accepted"
                    )
                }
                Err(e) => tracing::debug!(request_id = rid, code = e.code().as_str_name(), "send rejected"),
            }
            answer(rid, result.map(server_event::Event::SendResult))
        })),
        Err(e) => {
            metrics.send_rejected(e.code());
            tracing::debug!(request_id = rid, code = e.code().as_str_name(), "send rejected");
            Dispatched::Answer(answer(rid, Err(e)))
        }
    }
}

/// A 1:1 send as the abuse rules see it: its recipient by id, else by phone.
fn outgoing(msg: &pb::SendMessage) -> Outgoing {
    match msg.to_account_id {
        0 => Outgoing::DirectByPhone(msg.to_phone.clone()),
        id => Outgoing::Direct(id),
    }
}

/// The abuse rules of a forward: its chats (accounts, groups; each once, as `Forward`
/// delivers), and which message it is: the forwarded-from id when given, else the digest of a
/// shared payload; per-chat ciphertexts without a reference cannot be recognised.
async fn check_forward(deps: &SessionDeps, device: DeviceAddr, f: &pb::Forward) -> Result<(), ServiceError> {
    let (mut accounts, mut groups) = (Vec::new(), Vec::new());
    if f.copies.is_empty() {
        accounts.extend(f.to_account_ids.iter().copied());
        groups.extend(f.group_ids.iter().copied());
    } else {
        for c in &f.copies {
            if c.group_id != 0 {
                groups.push(c.group_id);
            } else {
                accounts.push(c.to_account_id);
            }
        }
    }
    for list in [&mut accounts, &mut groups] {
        let mut seen = std::collections::HashSet::new();
        list.retain(|id| seen.insert(*id));
    }
    let key = if f.forwarded_from_msg_id != 0 {
        Some(format!("m{}", f.forwarded_from_msg_id))
    } else if !f.payload.is_empty() {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&f.payload);
        Some(format!("p{}", hex::encode(&digest[..16])))
    } else {
        None
    };
    deps.abuse.check_forward(device.account, &accounts, &groups, key.as_deref()).await
}

/// An operation run among the in-flight ones, answered with its result.
fn later<F, Fut>(deps: &Arc<SessionDeps>, rid: u64, op: F) -> Dispatched
where
    F: FnOnce(Arc<SessionDeps>) -> Fut,
    Fut: Future<Output = Result<server_event::Event, ServiceError>> + Send + 'static,
{
    Dispatched::Later(Box::pin(op(deps.clone()).map(move |result| answer(rid, result))))
}

fn done(_: ()) -> server_event::Event {
    server_event::Event::Done(pb::Done {})
}

/// A server event answering `request_id` (0: not an answer).
pub(super) fn event(request_id: u64, e: server_event::Event) -> pb::ServerEvent {
    pb::ServerEvent { request_id, event: Some(e) }
}

/// The answer to request `request_id`: its result, or its error as the error itself says.
pub(super) fn answer(request_id: u64, result: Result<server_event::Event, ServiceError>) -> pb::ServerEvent {
    match result {
        Ok(e) => event(request_id, e),
        Err(e) => event(request_id, server_event::Event::Error(e.to_wire())),
    }
}
