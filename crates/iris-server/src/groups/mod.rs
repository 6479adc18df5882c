//! The groups service: lifecycle, membership, invites, group sends and group reads.
//!
//! Every change of one group runs under that group's lock: load the record, check the caller's
//! role, compute the new record (version + 1), store it (the store refuses a version that does
//! not follow), queue the change's `GroupEvent` for every device of every member (and of the
//! members it removed), release the lock, wait until the event is durable, hint the sessions.
//! Group sends take the same lock while they read the roster and queue their inbox references,
//! so a send and a membership change are ordered the same way in every inbox: a removed member
//! gets nothing sent after its removal, a new member nothing sent before it joined.
//!
//! The lock is this process's; where several nodes share the store (cluster mode) each of these
//! operations also takes the group's cluster-wide order from the store
//! ([`GroupStore::hold_group_order`]) right after the lock and keeps it until its inbox entries
//! are durable ([`Queued::holding`](crate::fanout::Queued::holding)), so the same holds across nodes. Embedded, the store has no
//! such hold and nothing changes.
//!
//! Knows the send kernel, the directory, receipts, the message index, group payloads and the
//! store's group records. Knows nothing of sockets, sessions, 1:1 messaging or message actions:
//! the session calls [`Groups::start`] and writes the answer.

mod ops;
mod send;
mod timer;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use iris_proto::pb::{self, group_op};
use iris_store::{AccountId, AppendRequest, DeviceAddr, Group, GroupId, GroupRole, GroupStore};

use crate::chat_timers::ChatTimers;
use crate::clock::Clock;
use crate::config::Config;
use crate::directory::Directory;
use crate::error::ServiceError;
use crate::fanout::{encode_item, entries_for, Fanout, PendingSend};
use crate::group_payloads::GroupPayloads;
use crate::ids::IdGenerator;
use crate::media_refs::MediaRefs;
use crate::message_index::MessageIndex;
use crate::metrics::Metrics;
use crate::ratelimit::{KeyedLimit, SharedLimit};
use crate::receipts::Receipts;

/// Group locks: a group maps to one of these by id (sharing a lock only costs concurrency).
const LOCK_SHARDS: usize = 256;
/// Longest group name, in characters.
pub const NAME_CHARS_MAX: usize = 100;
/// Longest group description, in characters.
pub const DESCRIPTION_CHARS_MAX: usize = 512;
/// Most message ids in one group read receipt.
pub const READ_IDS_MAX: usize = 1000;

/// The parts the groups service is built from.
pub struct GroupsDeps {
    /// Group records, receipt rows.
    pub store: Arc<dyn GroupStore>,
    /// Appends events and references, hints sessions.
    pub fanout: Fanout,
    /// Members' devices and phones.
    pub directory: Arc<Directory>,
    /// Group read marks.
    pub receipts: Arc<Receipts>,
    /// Reply checks and the index record of each group message.
    pub index: Arc<MessageIndex>,
    /// Shared payloads of group sends.
    pub payloads: Arc<GroupPayloads>,
    /// Server message ids.
    pub ids: Arc<IdGenerator>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Sends per account (shared with 1:1 sends and actions).
    pub send_limit: SharedLimit<AccountId>,
    /// Media references of group sends.
    pub media: Arc<MediaRefs>,
    /// Disappearing-messages timers: each send's expiry, and the group's timer setting.
    pub timers: Arc<ChatTimers>,
}

/// The groups service and the group state that lives in the server, not the store.
pub struct Groups {
    store: Arc<dyn GroupStore>,
    fanout: Fanout,
    directory: Arc<Directory>,
    receipts: Arc<Receipts>,
    index: Arc<MessageIndex>,
    payloads: Arc<GroupPayloads>,
    media: Arc<MediaRefs>,
    timers: Arc<ChatTimers>,
    ids: Arc<IdGenerator>,
    clock: Arc<dyn Clock>,
    send_limit: SharedLimit<AccountId>,
    limits: iris_proto::Limits,
    /// Serialise the changes and sends of one group (tokio mutexes: held across store awaits).
    locks: Vec<tokio::sync::Mutex<()>>,
    /// Group creations per account.
    creations: Option<KeyedLimit<AccountId>>,
    /// Members added per account (direct adds, approvals).
    adds: Option<KeyedLimit<AccountId>>,
    /// Invite-link joins per account, right or wrong token (bounds guessing; shared in cluster
    /// mode like the other abuse limits).
    joins: Option<KeyedLimit<AccountId>>,
    /// Members per group.
    members_max: u32,
}

impl Groups {
    /// Built once per server from its parts and config; `bus` (cluster mode) shares the join
    /// limit.
    pub fn new(deps: GroupsDeps, config: &Config, metrics: &Metrics, bus: Option<&crate::cluster::bus::Bus>) -> Self {
        let r = &config.rate_limits;
        Self {
            store: deps.store,
            fanout: deps.fanout,
            directory: deps.directory,
            receipts: deps.receipts,
            index: deps.index,
            payloads: deps.payloads,
            media: deps.media,
            timers: deps.timers,
            ids: deps.ids,
            clock: deps.clock,
            send_limit: deps.send_limit,
            limits: config.limits.to_proto(),
            locks: (0..LOCK_SHARDS).map(|_| tokio::sync::Mutex::new(())).collect(),
            creations: KeyedLimit::new_shared(
                "group creations per account",
                r.group_creations_per_account_per_hour,
                Duration::from_secs(3600),
                metrics,
                bus,
            ),
            adds: KeyedLimit::new_shared(
                "group member adds per account",
                r.group_member_adds_per_account_per_minute,
                Duration::from_secs(60),
                metrics,
                bus,
            ),
            joins: KeyedLimit::new_shared(
                "group join attempts per account",
                r.group_join_attempts_per_account_per_hour,
                Duration::from_secs(3600),
                metrics,
                bus,
            ),
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

    /// Starts one group operation from `me`. A send is validated and queued here, in the order
    /// the session calls this (so one device's group sends keep their order); the returned
    /// future waits for durability. Other operations run entirely in the returned future.
    pub async fn start(
        self: &Arc<Self>,
        me: DeviceAddr,
        op: pb::GroupOp,
    ) -> BoxFuture<'static, Result<pb::GroupResult, ServiceError>> {
        let result = |r| pb::GroupResult { result: Some(r) };
        match op.op {
            Some(group_op::Op::Send(mut s)) => {
                s.forwarded = false; // only `Forward` sets it
                match self.start_send(me, s).await {
                    Ok(pending) => Box::pin(async move {
                        let sent = pending.finish().await?;
                        Ok(result(pb::group_result::Result::Sent(sent)))
                    }),
                    Err(e) => Box::pin(std::future::ready(Err(e))),
                }
            }
            Some(op) => {
                let this = self.clone();
                Box::pin(async move { this.handle(me, op).await.map(result) })
            }
            None => Box::pin(std::future::ready(Err(ServiceError::InvalidArgument("missing group operation".into())))),
        }
    }

    /// A group send made by the server on a member's behalf (`Forward`), `forwarded` kept.
    pub async fn start_forward(&self, me: DeviceAddr, msg: pb::GroupSend) -> Result<PendingSend, ServiceError> {
        self.start_send(me, msg).await
    }

    /// For an action in `group_id` by `actor`: whether the actor is an admin, and every member
    /// device but the acting one. Non-members get `PERMISSION_DENIED`. Read without the group's
    /// lock: an action racing a membership change may reach the roster just before or after it.
    pub async fn action_audience(
        &self,
        actor: DeviceAddr,
        group_id: GroupId,
    ) -> Result<(bool, Vec<DeviceAddr>), ServiceError> {
        let group = self.load(group_id).await?;
        let is_admin = role_of(&group, actor.account)?.is_admin();
        let mut devices = self.directory.devices_of(&member_accounts(&group)).await?;
        devices.retain(|&d| d != actor);
        Ok((is_admin, devices))
    }

    async fn load(&self, id: GroupId) -> Result<Group, ServiceError> {
        self.store.group(id).await?.ok_or(ServiceError::NotFound("group"))
    }

    /// The group as a client sees it; `roster` adds members (with phones) and, for admins,
    /// pending requests.
    async fn info_of(&self, group: &Group, roster: bool, viewer: AccountId) -> Result<pb::GroupInfo, ServiceError> {
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
                let phone = self.directory.by_id(m.account).await?.map(|v| v.phone.clone()).unwrap_or_default();
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

    /// The inbox entries announcing `changes` to `targets`.
    async fn build_events(
        &self,
        group: &Group,
        by: AccountId,
        changes: Vec<Change>,
        targets: Vec<DeviceAddr>,
    ) -> Result<AppendRequest, ServiceError> {
        let now = self.clock.now_ms();
        let info = self.info_of(group, false, by).await?;
        let mut entries = Vec::with_capacity(targets.len() * changes.len());
        let mut server_msg_id = 0;
        for change in changes {
            server_msg_id = self.ids.next(now);
            let item = encode_item(
                server_msg_id,
                now,
                pb::inbox_item::Body::GroupEvent(pb::GroupEvent {
                    r#type: change.kind as i32,
                    group_id: group.id,
                    by_account_id: by,
                    account_ids: change.accounts,
                    info: Some(info.clone()),
                }),
            );
            entries.extend(entries_for(targets.iter().copied(), &item));
        }
        Ok(AppendRequest::event(server_msg_id, now, entries))
    }
}

/// The accounts of a group's members.
fn member_accounts(group: &Group) -> Vec<AccountId> {
    group.members.iter().map(|m| m.account).collect()
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

/// One change to announce: its type and the accounts it is about.
struct Change {
    kind: pb::GroupEventType,
    accounts: Vec<AccountId>,
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use iris_proto::pb::{group_result, inbox_item};
    use iris_store::InboxStore;
    use prost::Message as _;

    use super::*;
    use crate::testing::Parts;

    async fn run(groups: &Arc<Groups>, me: DeviceAddr, op: group_op::Op) -> Result<group_result::Result, ServiceError> {
        let started = groups.start(me, pb::GroupOp { op: Some(op) }).await;
        started.await.map(|r| r.result.expect("a result"))
    }

    fn send(group_id: GroupId, client_msg_id: &str) -> group_op::Op {
        group_op::Op::Send(pb::GroupSend {
            group_id,
            client_msg_id: client_msg_id.into(),
            body: Some(pb::group_send::Body::Payload(Bytes::from_static(b"to all"))),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn a_group_send_stores_a_reference_per_member_device_and_hints_the_full_message() {
        // Proves: the payload is stored once and each member device (the sender's other devices
        // too, the sending one not) gets a reference, while connected sessions are hinted the
        // full message; a non-member is refused and nothing is stored for it.
        let parts = Parts::new();
        let alice = parts.account("+15550000001", 2).await;
        let bob = parts.account("+15550000002", 1).await;
        let carol = parts.account("+15550000003", 1).await;
        let groups = parts.services.groups.clone();
        let create =
            pb::GroupCreate { name: "g".into(), member_account_ids: vec![bob[0].account], ..Default::default() };
        let Ok(group_result::Result::Info(info)) = run(&groups, alice[0], group_op::Op::Create(create)).await else {
            panic!("group not created")
        };
        let mut bob_session = parts.router.register(bob[0]);
        let before = parts.store.cursor(bob[0]).await.unwrap().last;
        let Ok(group_result::Result::Sent(sent)) = run(&groups, alice[0], send(info.group_id, "g1")).await else {
            panic!("group send refused")
        };
        for device in [bob[0], alice[1]] {
            let stored = parts.store.read(device, before, 10).await.unwrap();
            let item = pb::InboxItem::decode(stored.last().expect("an entry").item.clone()).unwrap();
            let Some(inbox_item::Body::GroupMessage(m)) = item.body else { panic!("expected a group message") };
            assert!(m.payload_by_ref && m.payload.is_empty(), "{device}: a reference");
            assert_eq!(item.server_msg_id, sent.server_msg_id);
        }
        assert!(parts.store.read(alice[0], 0, 10).await.unwrap().iter().all(|e| {
            !matches!(pb::InboxItem::decode(e.item.clone()).unwrap().body, Some(inbox_item::Body::GroupMessage(_)))
        }));
        let hint = std::iter::from_fn(|| bob_session.hints.try_recv().ok()).last().expect("hinted");
        let Some(inbox_item::Body::GroupMessage(m)) = pb::InboxItem::decode(hint.item).unwrap().body else {
            panic!("expected a group message")
        };
        assert_eq!((m.payload_by_ref, m.payload.as_ref()), (false, &b"to all"[..]));
        let refused = run(&groups, carol[0], send(info.group_id, "c1")).await;
        assert!(matches!(refused, Err(ServiceError::PermissionDenied(_))), "{refused:?}");
    }
}
