//! The groups service: lifecycle, membership, invites, group sends and group receipts.
//!
//! Every change of one group runs under that group's lock: load the record, check the caller's
//! role, compute the new record (version + 1), store it (the store refuses a version that does
//! not follow), queue the change's `GroupEvent` for every device of every member (and of the
//! members it removed), release the lock, wait until the event is durable, hint the sessions.
//! Group sends take the same lock while they read the roster and queue their inbox references,
//! so a send and a membership change are ordered the same way in every inbox: a removed member
//! gets nothing sent after its removal, a new member nothing sent before it joined.
//!
//! Knows nothing of sockets: the session calls [`start`] and writes the answer.

mod ops;
mod send;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use iris_proto::pb::{self, group_op};
use iris_store::{
    AccountId, AppendOutcome, AppendRequest, DeviceAddr, Group, GroupId, GroupRole, NewEntry, PendingAppend,
};
use prost::Message as _;

use crate::config::Config;
use crate::context::Ctx;
use crate::error::ServiceError;
use crate::messaging::PendingSend;
use crate::metrics::Metrics;
use crate::ratelimit::KeyedLimit;
use crate::router::Hint;

pub use send::{delivered, delivered_receipt_for, resolve};

/// Group locks: a group maps to one of these by id (sharing a lock only costs concurrency).
const LOCK_SHARDS: usize = 256;
/// Group payloads kept in memory for sessions catching up from their inbox.
const PAYLOAD_CACHE_LEN_MAX: usize = 4096;
/// Longest group name, in characters.
pub const NAME_CHARS_MAX: usize = 100;
/// Longest group description, in characters.
pub const DESCRIPTION_CHARS_MAX: usize = 512;
/// Most message ids in one group read receipt.
pub const READ_IDS_MAX: usize = 1000;

/// Group state that lives in the server, not the store.
pub struct GroupService {
    /// Serialise the changes and sends of one group (tokio mutexes: held across store awaits).
    locks: Vec<tokio::sync::Mutex<()>>,
    /// Group creations per account.
    creations: Option<KeyedLimit<AccountId>>,
    /// Members added per account (direct adds, approvals).
    adds: Option<KeyedLimit<AccountId>>,
    /// Invite-link joins per account, right or wrong token (bounds guessing; shared in cluster
    /// mode like the other abuse limits).
    joins: Option<KeyedLimit<AccountId>>,
    /// Recently sent payloads by (group, server msg id); cleared when full.
    payloads: Mutex<HashMap<(GroupId, u64), Bytes>>,
    /// Members per group.
    members_max: u32,
}

impl GroupService {
    /// Built once per server from its config; `bus` (cluster mode) shares the join limit.
    pub fn new(config: &Config, metrics: &Metrics, bus: Option<&crate::cluster::bus::Bus>) -> Self {
        let r = &config.rate_limits;
        Self {
            locks: (0..LOCK_SHARDS).map(|_| tokio::sync::Mutex::new(())).collect(),
            creations: KeyedLimit::new(
                "group creations per account",
                r.group_creations_per_account_per_hour,
                Duration::from_secs(3600),
                metrics,
            ),
            adds: KeyedLimit::new(
                "group member adds per account",
                r.group_member_adds_per_account_per_minute,
                Duration::from_secs(60),
                metrics,
            ),
            joins: KeyedLimit::new(
                "group join attempts per account",
                r.group_join_attempts_per_account_per_hour,
                Duration::from_secs(3600),
                metrics,
            )
            .map(|l| l.shared(bus)),
            payloads: Mutex::default(),
            members_max: config.limits.group_members_max,
        }
    }

    /// Forgets idle rate-limit buckets; called periodically.
    pub fn sweep(&self) {
        for limit in [&self.creations, &self.adds, &self.joins].into_iter().flatten() {
            limit.sweep();
        }
    }

    fn lock(&self, group: GroupId) -> &tokio::sync::Mutex<()> {
        &self.locks[(group % LOCK_SHARDS as u64) as usize]
    }

    fn cache_payload(&self, key: (GroupId, u64), payload: Bytes) {
        let mut cache = self.payloads.lock().expect("payload cache lock");
        if cache.len() >= PAYLOAD_CACHE_LEN_MAX {
            cache.clear();
        }
        cache.insert(key, payload);
    }

    fn cached_payload(&self, key: (GroupId, u64)) -> Option<Bytes> {
        self.payloads.lock().expect("payload cache lock").get(&key).cloned()
    }
}

/// Starts one group operation from `me`. A send is validated and queued here, in the order the
/// session calls this (so one device's group sends keep their order); the returned future
/// waits for durability. Other operations run entirely in the returned future.
pub async fn start(
    ctx: Arc<Ctx>,
    me: DeviceAddr,
    op: pb::GroupOp,
) -> BoxFuture<'static, Result<pb::GroupResult, ServiceError>> {
    let result = |r| pb::GroupResult { result: Some(r) };
    match op.op {
        Some(group_op::Op::Send(mut s)) => match send::start_send(&ctx, me, {
            s.forwarded = false; // only `Forward` sets it
            s
        })
        .await
        {
            Ok(pending) => Box::pin(async move {
                let sent = pending.finish(&ctx).await?;
                Ok(result(pb::group_result::Result::Sent(sent)))
            }),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        },
        Some(op) => Box::pin(async move { ops::handle(&ctx, me, op).await.map(result) }),
        None => Box::pin(std::future::ready(Err(ServiceError::InvalidArgument("missing group operation".into())))),
    }
}

/// A group send made by the server on a member's behalf (`Forward`), `forwarded` kept.
pub async fn start_forward(ctx: &Arc<Ctx>, me: DeviceAddr, msg: pb::GroupSend) -> Result<PendingSend, ServiceError> {
    send::start_send(ctx, me, msg).await
}

/// For an action in `group_id` by `actor`: whether the actor is an admin, and every member
/// device but the acting one. Non-members get `PERMISSION_DENIED`. Read without the group's
/// lock: an action racing a membership change may reach the roster just before or after it.
pub async fn action_audience(
    ctx: &Ctx,
    actor: DeviceAddr,
    group_id: GroupId,
) -> Result<(bool, Vec<DeviceAddr>), ServiceError> {
    let group = load(ctx, group_id).await?;
    let is_admin = role_of(&group, actor.account)?.is_admin();
    let mut devices = devices_of(ctx, group.members.iter().map(|m| m.account).collect()).await?;
    devices.retain(|&d| d != actor);
    Ok((is_admin, devices))
}

/// The caller's role in `group`, or `PERMISSION_DENIED` for non-members.
fn role_of(group: &Group, account: AccountId) -> Result<GroupRole, ServiceError> {
    group.member(account).map(|m| m.role).ok_or_else(|| denied("not a member of this group"))
}

/// `PERMISSION_DENIED` unless the caller is an admin.
fn require_admin(group: &Group, account: AccountId) -> Result<GroupRole, ServiceError> {
    let role = role_of(group, account)?;
    if role.is_admin() {
        Ok(role)
    } else {
        Err(denied("only admins may do this"))
    }
}

fn denied(why: &str) -> ServiceError {
    ServiceError::PermissionDenied(why.to_owned())
}

async fn load(ctx: &Ctx, id: GroupId) -> Result<Group, ServiceError> {
    ctx.store.group(id).await?.ok_or(ServiceError::NotFound("group"))
}

/// Every active device of these accounts (unknown accounts contribute none).
async fn devices_of(ctx: &Ctx, accounts: Vec<AccountId>) -> Result<Vec<DeviceAddr>, ServiceError> {
    let mut out = Vec::new();
    for account in accounts {
        if let Some(view) = ctx.directory.by_id(account).await? {
            out.extend(view.devices.iter().map(|&d| DeviceAddr::new(account, d)));
        }
    }
    Ok(out)
}

fn role_to_wire(role: GroupRole) -> pb::GroupRole {
    match role {
        GroupRole::Member => pb::GroupRole::Member,
        GroupRole::Admin => pb::GroupRole::Admin,
        GroupRole::Creator => pb::GroupRole::Creator,
    }
}

fn settings_to_wire(s: iris_store::GroupSettings) -> pb::GroupSettings {
    pb::GroupSettings {
        admins_only_send: s.admins_only_send,
        admins_only_edit: s.admins_only_edit,
        join_approval: s.join_approval,
    }
}

/// The group as a client sees it; `roster` adds members (with phones) and, for admins, pending
/// requests.
async fn info_of(ctx: &Ctx, group: &Group, roster: bool, viewer: AccountId) -> Result<pb::GroupInfo, ServiceError> {
    let mut info = pb::GroupInfo {
        group_id: group.id,
        name: group.name.clone(),
        description: group.description.clone(),
        settings: Some(settings_to_wire(group.settings)),
        version: group.version,
        members: Vec::new(),
        pending_account_ids: Vec::new(),
        created_at_ms: group.created_at_ms,
    };
    if roster {
        for m in &group.members {
            let phone = ctx.directory.by_id(m.account).await?.map(|v| v.phone.clone()).unwrap_or_default();
            info.members.push(pb::GroupMember {
                account_id: m.account,
                phone,
                role: role_to_wire(m.role) as i32,
                joined_at_ms: m.joined_at_ms,
                joined_version: m.joined_version,
            });
        }
        if group.member(viewer).is_some_and(|m| m.role.is_admin()) {
            info.pending_account_ids = group.pending.iter().map(|p| p.account).collect();
        }
    }
    Ok(info)
}

/// One change to announce: its type and the accounts it is about.
struct Change {
    kind: pb::GroupEventType,
    accounts: Vec<AccountId>,
}

/// The inbox entries announcing `changes` to `targets`, and the hints to send once durable.
async fn build_events(
    ctx: &Arc<Ctx>,
    group: &Group,
    by: AccountId,
    changes: Vec<Change>,
    targets: Vec<DeviceAddr>,
) -> Result<(AppendRequest, Vec<(DeviceAddr, Bytes)>), ServiceError> {
    let now = ctx.clock.now_ms();
    let info = info_of(ctx, group, false, by).await?;
    let mut entries = Vec::with_capacity(targets.len() * changes.len());
    let mut server_msg_id = 0;
    for change in changes {
        server_msg_id = ctx.ids.next(now);
        let item: Bytes = pb::InboxItem {
            seq: 0,
            server_msg_id,
            server_ts_ms: now,
            body: Some(pb::inbox_item::Body::GroupEvent(pb::GroupEvent {
                r#type: change.kind as i32,
                group_id: group.id,
                by_account_id: by,
                account_ids: change.accounts,
                info: Some(info.clone()),
            })),
        }
        .encode_to_vec()
        .into();
        entries.extend(targets.iter().map(|&device| NewEntry { device, item: item.clone() }));
    }
    let hints: Vec<(DeviceAddr, Bytes)> = entries.iter().map(|e| (e.device, e.item.clone())).collect();
    Ok((AppendRequest { dedup: None, server_msg_id, server_ts_ms: now, entries }, hints))
}

/// Queues the inbox events of `changes` for `targets`; the returned future waits until they are
/// durable and hints the sessions.
async fn queue_events(
    ctx: &Arc<Ctx>,
    group: &Group,
    by: AccountId,
    changes: Vec<Change>,
    targets: Vec<DeviceAddr>,
) -> Result<impl std::future::Future<Output = Result<(), ServiceError>> + Send + 'static, ServiceError> {
    let (req, hints) = build_events(ctx, group, by, changes, targets).await?;
    let pending = ctx.store.enqueue_append(req).await?;
    Ok(settle_events(ctx.clone(), pending, hints))
}

/// Waits for queued events to be durable, then hints the sessions.
async fn settle_events(
    ctx: Arc<Ctx>,
    pending: PendingAppend,
    hints: Vec<(DeviceAddr, Bytes)>,
) -> Result<(), ServiceError> {
    if let AppendOutcome::Appended { seqs } = pending.await? {
        notify(&ctx, hints, &seqs);
    }
    Ok(())
}

/// Hints the sessions of just-committed entries.
fn notify(ctx: &Ctx, entries: Vec<(DeviceAddr, Bytes)>, seqs: &[u64]) {
    for ((device, item), &seq) in entries.into_iter().zip(seqs) {
        ctx.router.notify(device, Hint { seq, item });
    }
}
