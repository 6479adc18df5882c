//! Voice and video call signaling: offers, answers, ICE candidates, hang-ups and rejections as
//! ephemeral events between the devices of a call; a missed call as a durable inbox item.
//!
//! The rules live in `machine.rs` (no I/O, unit-tested); this file is its driver: it checks an
//! operation (rate limit, sizes, who the callees are, blocks), feeds the table under one mutex,
//! and carries out what comes out: call events through the router's ephemeral path (as typing),
//! missed calls through the send kernel (durable, then hinted), TURN credentials from `turn.rs`
//! added to the events that need them. [`run_timer`] fires ring timeouts.
//!
//! **Where a call lives:** in the memory of the node that took the offer. Its id is a server
//! message id, whose low bits name that node ([`IdGenerator::node_of`]); in cluster mode an
//! operation on a call held elsewhere is forwarded to that node over the bus and its answer
//! comes back the same way ([`Calls::apply_forwarded`], [`Calls::on_reply`]). The events go to
//! devices wherever they are connected, like typing. SDP and candidates are opaque bytes.
//!
//! **A device on another node than its call's** leaves the call when its connection there
//! ends, as a local one does: the node it is connected to remembers the calls its devices
//! joined through it (a forwarded answer that succeeded) and, when such a device's last
//! connection ends, forwards a hang-up for each to the call's node, the same `CallOp` item an
//! app's hang-up travels in (fire and forget: a call that already ended answers
//! `CALL_NOT_FOUND`, which nobody waits for).
//!
//! Knows the directory, blocks, group rosters, presence, the router and the send kernel; nothing
//! of sessions or sockets.

pub mod machine;
pub mod turn;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use iris_proto::pb::{self, call_op, inbox_item, server_event, CallEventType};
use iris_store::{AccountId, AppendRequest, DeviceAddr, GroupStore};
use prost::Message as _;
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::blocks::Blocks;
use crate::clock::Clock;
use crate::cluster::wire::NodeItem;
use crate::cluster::Cluster;
use crate::config::CallsConfig;
use crate::directory::Directory;
use crate::error::ServiceError;
use crate::fanout::{encode_item, entries_for, Fanout};
use crate::ids::IdGenerator;
use crate::metrics::CallMetrics;
use crate::presence::PresenceHub;
use crate::ratelimit::{self, KeyedLimit};
use crate::router::Router;
use machine::{CallError, CallLimits, CallTable, Callee, Offer, Out};
use turn::TurnIssuer;

/// How long a forwarded operation waits for the answer of the node holding its call.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// Forwarded operations waiting for an answer at once (OVERLOADED beyond).
const FORWARDS_PENDING_MAX: usize = 10_000;
/// Calls held elsewhere remembered per device connected here; the oldest is forgotten beyond
/// (a device is rarely in more than one call; the home node bounds each node's share).
const REMOTE_CALLS_PER_DEVICE_MAX: usize = 8;

/// What the call service is made of.
pub struct CallsDeps {
    /// Callees and their devices.
    pub directory: Arc<Directory>,
    /// Whether a callee blocked the caller.
    pub blocks: Arc<Blocks>,
    /// Group rosters, for calls to a group.
    pub groups: Arc<dyn GroupStore>,
    /// Whether a callee is reachable ("ringing").
    pub presence: Arc<PresenceHub>,
    /// Where call events go.
    pub router: Arc<Router>,
    /// Missed calls into inboxes.
    pub fanout: Fanout,
    /// Call ids (server message ids: they name this node).
    pub ids: Arc<IdGenerator>,
    /// Wall-clock time (ids, TURN expiry, missed calls).
    pub clock: Arc<dyn Clock>,
    /// Offers per account.
    pub offer_limit: Option<KeyedLimit<AccountId>>,
    /// `iris_calls_*`.
    pub metrics: CallMetrics,
    /// The link to other nodes, in cluster mode.
    pub cluster: Option<Arc<Cluster>>,
    /// SDP and candidate size bound (`limits.payload_bytes_max`).
    pub payload_bytes_max: u32,
}

/// The calls of this node.
pub struct Calls {
    deps: CallsDeps,
    node_id: u16,
    turn: Option<TurnIssuer>,
    table: Mutex<CallTable>,
    /// Wakes [`run_timer`] when a call (and so maybe an earlier deadline) was added.
    deadline_changed: Notify,
    /// Forwarded operations waiting for their answer, by token.
    pending: Mutex<HashMap<u64, oneshot::Sender<pb::ServerEvent>>>,
    next_token: AtomicU64,
    /// Cluster mode: calls held by other nodes that devices connected here joined, oldest
    /// first, so that their node hears when such a device's connection ends here.
    remote_joined: Mutex<HashMap<DeviceAddr, Vec<u64>>>,
}

impl Calls {
    /// A service for node `node_id` with the bounds and TURN settings of `config`.
    pub fn new(deps: CallsDeps, node_id: u16, config: &CallsConfig) -> Self {
        let limits = CallLimits {
            ring_timeout: Duration::from_millis(config.ring_timeout_ms),
            duration_max: Duration::from_secs(config.duration_max_s),
            participants_max: config.participants_max as usize,
            calls_per_device_max: config.calls_per_device_max as usize,
            calls_per_account_max: config.calls_per_account_max as usize,
            calls_max: config.calls_max as usize,
        };
        Self {
            deps,
            node_id,
            turn: TurnIssuer::new(config.turn_secret.as_deref(), config.turn_ttl_s, &config.turn_uris),
            table: Mutex::new(CallTable::new(limits)),
            deadline_changed: Notify::new(),
            pending: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            remote_joined: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets idle rate-limit buckets; called periodically.
    pub fn sweep(&self) {
        if let Some(l) = &self.deps.offer_limit {
            l.sweep();
        }
    }

    fn table(&self) -> MutexGuard<'_, CallTable> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs one call operation of `device`: an offer is answered by `STARTED`, the rest by
    /// `Done`. An operation on a call held by another node is forwarded there.
    pub async fn op(&self, device: DeviceAddr, op: pb::CallOp) -> Result<server_event::Event, ServiceError> {
        let op = op.op.ok_or_else(|| ServiceError::InvalidArgument("empty call operation".into()))?;
        if let call_op::Op::Offer(offer) = op {
            return self.offer(device, offer).await.map(server_event::Event::Call);
        }
        let home = IdGenerator::node_of(call_id_of(&op));
        match &self.deps.cluster {
            Some(cluster) if home != self.node_id => self.forward(cluster, home, device, op).await,
            _ => self.local(device, op).await.map(|()| server_event::Event::Done(pb::Done {})),
        }
    }

    async fn offer(&self, caller: DeviceAddr, offer: pb::CallOffer) -> Result<pb::CallEvent, ServiceError> {
        self.check_size(offer.sdp.len())?;
        ratelimit::check(&self.deps.offer_limit, &caller.account)?;
        let accounts = self.callees_of(caller, &offer).await?;
        let mut callees = Vec::with_capacity(accounts.len());
        for account in accounts {
            let view = self.deps.directory.by_id(account).await?.ok_or(ServiceError::UnknownRecipient)?;
            let reachable =
                self.deps.presence.is_reachable(account) || view.addrs().any(|d| self.deps.router.is_connected(d));
            let blocked = self.deps.blocks.is_blocked(account, caller.account).await?;
            callees.push(Callee { account, devices: view.devices.clone(), reachable, blocked });
        }
        let now_ms = self.deps.clock.now_ms();
        let call_id = self.deps.ids.next(now_ms);
        let new =
            Offer { call_id, caller, video: offer.video, group_id: offer.group_id, sdp: offer.sdp, started_ms: now_ms };
        let (outs, participants) = {
            let mut table = self.table();
            let outs = table.offer(now(), new, callees).map_err(service_error)?;
            let participants = table.participants(call_id);
            self.deps.metrics.active.set(table.len() as i64);
            (outs, participants)
        };
        self.deps.metrics.offers.inc();
        self.deadline_changed.notify_one();
        self.carry_out(outs).await;
        Ok(pb::CallEvent {
            r#type: CallEventType::Started as i32,
            call_id,
            from_account_id: caller.account,
            from_device_id: caller.device,
            video: offer.video,
            group_id: offer.group_id,
            participant_account_ids: participants,
            turn: self.turn.as_ref().map(|t| t.credentials(caller.account, now_ms)),
            ..Default::default()
        })
    }

    /// The accounts an offer calls: distinct, not the caller's, at most the bound.
    async fn callees_of(&self, caller: DeviceAddr, offer: &pb::CallOffer) -> Result<Vec<AccountId>, ServiceError> {
        let max = self.table().participants_max();
        let too_many = |n: usize| ServiceError::CallTooManyParticipants { n: n + 1, max };
        let mut accounts = match (offer.to_account_ids.is_empty(), offer.group_id) {
            (false, 0) => {
                if offer.to_account_ids.len() >= max {
                    return Err(too_many(offer.to_account_ids.len()));
                }
                offer.to_account_ids.clone()
            }
            (true, g) if g != 0 => {
                let group = self.deps.groups.group(g).await?.ok_or(ServiceError::NotFound("group"))?;
                if group.member(caller.account).is_none() {
                    return Err(ServiceError::NotFound("group"));
                }
                group.members.iter().map(|m| m.account).filter(|&a| a != caller.account).collect()
            }
            _ => {
                return Err(ServiceError::InvalidArgument(
                    "exactly one of to_account_ids and group_id is required".into(),
                ))
            }
        };
        if accounts.contains(&caller.account) {
            return Err(ServiceError::InvalidArgument("a call cannot include the caller's own account".into()));
        }
        accounts.sort_unstable();
        accounts.dedup();
        if accounts.is_empty() {
            return Err(ServiceError::InvalidArgument("a call needs another participant".into()));
        }
        if accounts.len() >= max {
            return Err(too_many(accounts.len()));
        }
        Ok(accounts)
    }

    /// An operation on a call held here.
    async fn local(&self, device: DeviceAddr, op: call_op::Op) -> Result<(), ServiceError> {
        let outs = {
            let mut table = self.table();
            let outs = match op {
                call_op::Op::Offer(_) => unreachable!("offers are always local"),
                call_op::Op::Answer(a) => {
                    self.check_size(a.sdp.len())?;
                    table.answer(device, a.call_id, a.sdp)
                }
                call_op::Op::Ice(i) => {
                    self.check_size(i.candidate.len())?;
                    let to = (i.to_account_id != 0).then(|| DeviceAddr::new(i.to_account_id, i.to_device_id));
                    table.ice(device, i.call_id, i.candidate, to)
                }
                call_op::Op::Hangup(h) => table.hangup(device, h.call_id),
                call_op::Op::Reject(r) => table.reject(device, r.call_id),
            }
            .map_err(service_error)?;
            self.deps.metrics.active.set(table.len() as i64);
            outs
        };
        self.carry_out(outs).await;
        Ok(())
    }

    /// The device's last connection on this node ended: it leaves the calls held here, and
    /// (cluster mode) those it joined on other nodes, which are sent a hang-up for it.
    pub fn disconnected(self: &Arc<Self>, device: DeviceAddr) {
        let outs = {
            let mut table = self.table();
            let outs = table.disconnected(device);
            self.deps.metrics.active.set(table.len() as i64);
            outs
        };
        if !outs.is_empty() {
            let this = self.clone();
            tokio::spawn(async move { this.carry_out(outs).await });
        }
        let joined = self.remote_joined().remove(&device).unwrap_or_default();
        if let Some(cluster) = &self.deps.cluster {
            for call_id in joined {
                let hangup = pb::CallOp { op: Some(call_op::Op::Hangup(pb::CallHangup { call_id })) };
                // Token 0 is never pending: the answer is dropped.
                let item = NodeItem::call_op(device, self.node_id, 0, hangup.encode_to_vec().into());
                cluster.outbound.to_node(IdGenerator::node_of(call_id), item);
                self.deps.metrics.forwarded.inc();
            }
        }
    }

    fn remote_joined(&self) -> MutexGuard<'_, HashMap<DeviceAddr, Vec<u64>>> {
        self.remote_joined.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A forwarded operation of `device` on the call `call_id` succeeded: an answer joined it
    /// (remembered), a hang-up or rejection left it (forgotten).
    fn forwarded_done(&self, device: DeviceAddr, call_id: u64, joined: bool) {
        let mut all = self.remote_joined();
        if joined {
            let calls = all.entry(device).or_default();
            if calls.len() >= REMOTE_CALLS_PER_DEVICE_MAX {
                calls.remove(0);
            }
            calls.push(call_id);
        } else if let Some(calls) = all.get_mut(&device) {
            calls.retain(|&c| c != call_id);
            if calls.is_empty() {
                all.remove(&device);
            }
        }
    }

    /// Cluster mode: a call event from another node for `device`, connected here. An end
    /// forgets the call (nothing to leave any more).
    pub fn on_remote_event(&self, device: DeviceAddr, event: &pb::ServerEvent) {
        if let Some(server_event::Event::Call(e)) = &event.event {
            if e.r#type == CallEventType::Ended as i32 {
                self.forwarded_done(device, e.call_id, false);
            }
        }
    }

    /// Ring timeouts and ends of life due now.
    async fn on_timeout(&self) {
        let outs = {
            let mut table = self.table();
            let outs = table.on_timeout(now());
            self.deps.metrics.active.set(table.len() as i64);
            outs
        };
        self.carry_out(outs).await;
    }

    /// Offers the events (ephemeral) and stores the missed calls (durable; a failure is logged:
    /// the call is over either way).
    async fn carry_out(&self, outs: Vec<Out>) {
        let now_ms = self.deps.clock.now_ms();
        for out in outs {
            match out {
                Out::Event { to, mut event } => {
                    if event.r#type == CallEventType::Incoming as i32 {
                        event.turn = self.turn.as_ref().map(|t| t.credentials(to.account, now_ms));
                    }
                    let event = pb::ServerEvent { request_id: 0, event: Some(server_event::Event::Call(event)) };
                    self.deps.router.notify_ephemeral(to, event);
                }
                Out::Missed { account, missed } => {
                    if let Err(e) = self.store_missed(account, missed, now_ms).await {
                        tracing::warn!(account, error = %e, "missed call not stored");
                    }
                }
            }
        }
    }

    /// One `MissedCall` item in every device inbox of `account`, with the call's id as its
    /// server id (a device sees each missed call once).
    async fn store_missed(&self, account: AccountId, missed: pb::MissedCall, now_ms: u64) -> Result<(), ServiceError> {
        let id = missed.call_id;
        let devices = self.deps.directory.devices_of(&[account]).await?;
        let item = encode_item(id, now_ms, inbox_item::Body::MissedCall(missed));
        let entries = entries_for(devices, &item);
        self.deps.fanout.append(AppendRequest::event(id, now_ms, entries)).await?;
        self.deps.metrics.missed.inc();
        Ok(())
    }

    fn check_size(&self, size: usize) -> Result<(), ServiceError> {
        let max = self.deps.payload_bytes_max;
        if size > max as usize {
            return Err(ServiceError::PayloadTooLarge { size, max });
        }
        Ok(())
    }

    /// Sends an operation to the node holding its call and waits for that node's answer.
    async fn forward(
        &self,
        cluster: &Cluster,
        home: u16,
        device: DeviceAddr,
        op: call_op::Op,
    ) -> Result<server_event::Event, ServiceError> {
        let (call_id, joins) = (call_id_of(&op), matches!(op, call_op::Op::Answer(_)));
        let leaves = matches!(op, call_op::Op::Hangup(_) | call_op::Op::Reject(_));
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.len() >= FORWARDS_PENDING_MAX {
                return Err(ServiceError::Overloaded { retry_after_ms: 1000 });
            }
            pending.insert(token, tx);
        }
        let op = pb::CallOp { op: Some(op) }.encode_to_vec().into();
        cluster.outbound.to_node(home, NodeItem::call_op(device, self.node_id, token, op));
        self.deps.metrics.forwarded.inc();
        let answer = tokio::time::timeout(FORWARD_TIMEOUT, rx).await;
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&token);
        match answer {
            Ok(Ok(pb::ServerEvent { event: Some(server_event::Event::Error(e)), .. })) => {
                Err(remote_error(e, self.table().limits().calls_per_device_max))
            }
            Ok(Ok(pb::ServerEvent { event: Some(e), .. })) => {
                if joins || leaves {
                    self.forwarded_done(device, call_id, joins);
                }
                Ok(e)
            }
            _ => Err(ServiceError::Unavailable),
        }
    }

    /// Cluster mode: runs an operation another node forwarded (its call is held here) and sends
    /// that node the answer.
    pub async fn apply_forwarded(&self, from_node: u16, device: DeviceAddr, token: u64, op: bytes::Bytes) {
        let result = match pb::CallOp::decode(op) {
            Ok(pb::CallOp {
                op:
                    Some(
                        op @ (call_op::Op::Answer(_)
                        | call_op::Op::Ice(_)
                        | call_op::Op::Hangup(_)
                        | call_op::Op::Reject(_)),
                    ),
            }) => self.local(device, op).await.map(|()| server_event::Event::Done(pb::Done {})),
            _ => Err(ServiceError::InvalidArgument("not a forwardable call operation".into())),
        };
        let event = match result {
            Ok(e) => e,
            Err(e) => server_event::Event::Error(e.to_wire()),
        };
        if let Some(cluster) = &self.deps.cluster {
            let answer = pb::ServerEvent { request_id: 0, event: Some(event) }.encode_to_vec().into();
            cluster.outbound.to_node(from_node, NodeItem::call_reply(token, answer));
        }
    }

    /// Cluster mode: the answer to an operation this node forwarded.
    pub fn on_reply(&self, token: u64, answer: bytes::Bytes) {
        let tx = self.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&token);
        if let (Some(tx), Ok(event)) = (tx, pb::ServerEvent::decode(answer)) {
            let _ = tx.send(event);
        }
    }
}

/// Fires ring timeouts and ends of life until the server stops.
pub async fn run_timer(calls: Arc<Calls>, stop: CancellationToken) {
    loop {
        let deadline = calls.table().next_deadline();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = calls.deadline_changed.notified() => {}
            _ = sleep => calls.on_timeout().await,
        }
    }
}

/// Now, on tokio's clock (paused in tests).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

fn call_id_of(op: &call_op::Op) -> u64 {
    match op {
        call_op::Op::Offer(_) => 0,
        call_op::Op::Answer(a) => a.call_id,
        call_op::Op::Ice(i) => i.call_id,
        call_op::Op::Hangup(h) => h.call_id,
        call_op::Op::Reject(r) => r.call_id,
    }
}

fn service_error(e: CallError) -> ServiceError {
    match e {
        CallError::NotFound => ServiceError::CallNotFound,
        CallError::TooManyParticipants { n, max } => ServiceError::CallTooManyParticipants { n, max },
        CallError::Limit { what, max } => ServiceError::CallLimit { what, max },
        CallError::AnsweredElsewhere => ServiceError::CallAnsweredElsewhere,
    }
}

/// The error another node answered, as this node's (same code; the message is the other's).
fn remote_error(e: pb::Error, calls_per_device_max: usize) -> ServiceError {
    use pb::ErrorCode as C;
    match e.error_code() {
        C::CallNotFound => ServiceError::CallNotFound,
        C::CallAnsweredElsewhere => ServiceError::CallAnsweredElsewhere,
        // Answering is the one forwarded operation with a bound: the device's (the same on every node).
        C::CallLimit => ServiceError::CallLimit { what: "this device", max: calls_per_device_max },
        C::PayloadTooLarge => ServiceError::InvalidArgument(e.message),
        C::InvalidArgument => ServiceError::InvalidArgument(e.message),
        _ => ServiceError::Unavailable,
    }
}
