//! Group operations other than sends: create, update, members, leave, info, list, invite, join,
//! approve. Each change follows the recipe of the module doc.

use std::collections::BTreeSet;

use iris_proto::pb::{self, group_op, group_result, GroupEventType as Ev, GroupMemberAction};
use iris_store::{
    AccountId, DeviceAddr, Group, GroupId, GroupMember, GroupOrderHold, GroupRole, GroupSettings, PendingJoin,
};

use super::{denied, member_accounts, require_admin, role_of, Change, Groups, DESCRIPTION_CHARS_MAX, NAME_CHARS_MAX};
use crate::error::ServiceError;
use crate::fanout::Fanout;
use crate::ratelimit;

impl Groups {
    /// Runs one non-send group operation for `me`.
    pub(super) async fn handle(&self, me: DeviceAddr, op: group_op::Op) -> Result<group_result::Result, ServiceError> {
        let info = group_result::Result::Info;
        match op {
            group_op::Op::Create(c) => self.create(me, c).await.map(info),
            group_op::Op::Update(u) => self.update(me, u).await.map(info),
            group_op::Op::Members(m) => self.members(me, m).await.map(info),
            group_op::Op::Leave(l) => self.leave(me, l.group_id).await.map(group_result::Result::DoneGroupId),
            group_op::Op::Info(i) => {
                let group = self.load(i.group_id).await?;
                role_of(&group, me.account)?;
                self.info_of(&group, true, me.account).await.map(info)
            }
            group_op::Op::List(_) => {
                let mut groups = Vec::new();
                for id in self.store.groups_of(me.account).await? {
                    if let Some(group) = self.store.group(id).await? {
                        groups.push(self.info_of(&group, true, me.account).await?);
                    }
                }
                Ok(group_result::Result::List(pb::GroupList { groups }))
            }
            group_op::Op::Invite(i) => self.invite(me, i).await.map(group_result::Result::Invite),
            group_op::Op::Join(j) => self.join(me, &j.token).await,
            group_op::Op::Approve(a) => self.approve(me, a).await.map(info),
            group_op::Op::ReceiptDetail(r) => self.receipt_detail(me, r).await.map(group_result::Result::ReceiptDetail),
            group_op::Op::Read(r) => self.read(me, r).await.map(group_result::Result::DoneGroupId),
            group_op::Op::Send(_) => Err(ServiceError::Internal),
        }
    }

    /// Accounts named by id or phone, without repeats, in the order given; unknown ones fail.
    async fn resolve_accounts(&self, ids: &[u64], phones: &[String]) -> Result<Vec<AccountId>, ServiceError> {
        let max = self.members_max as usize;
        if ids.len() + phones.len() > max {
            return Err(ServiceError::GroupFull { max: self.members_max });
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for &id in ids {
            let view = self.directory.by_id(id).await?.ok_or(ServiceError::UnknownRecipient)?;
            if seen.insert(view.id) {
                out.push(view.id);
            }
        }
        for phone in phones {
            let phone = iris_proto::phone::validate(phone).map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
            let view = self.directory.by_phone(&phone).await?.ok_or(ServiceError::UnknownRecipient)?;
            if seen.insert(view.id) {
                out.push(view.id);
            }
        }
        Ok(out)
    }

    async fn create(&self, me: DeviceAddr, c: pb::GroupCreate) -> Result<pb::GroupInfo, ServiceError> {
        check_texts(Some(&c.name), Some(&c.description))?;
        let mut accounts = self.resolve_accounts(&c.member_account_ids, &c.member_phones).await?;
        accounts.retain(|&a| a != me.account);
        let max = self.members_max;
        if accounts.len() + 1 > max as usize {
            return Err(ServiceError::GroupFull { max });
        }
        ratelimit::check_shared(&self.creations, &me.account).await?;
        let now = self.clock.now_ms();
        let s = c.settings.unwrap_or_default();
        let member = |account, role| GroupMember { account, role, joined_at_ms: now, joined_version: 1 };
        let mut members = vec![member(me.account, GroupRole::Creator)];
        members.extend(accounts.iter().map(|&a| member(a, GroupRole::Member)));
        let group = Group {
            id: self.store.reserve_group_id().await?,
            name: c.name,
            description: c.description,
            settings: GroupSettings {
                admins_only_send: s.admins_only_send,
                admins_only_edit: s.admins_only_edit,
                join_approval: s.join_approval,
            },
            created_at_ms: now,
            version: 1,
            members,
            pending: Vec::new(),
            invite_token: None,
        };
        let lock = self.lock(group.id).lock().await;
        let hold = self.store.hold_group_order(group.id).await?;
        let targets = self.directory.devices_of(&member_accounts(&group)).await?;
        let change = Change { kind: Ev::Created, accounts };
        // The record and its CREATED events commit together, as every later change does.
        self.commit_change(&group, me.account, vec![change], targets, lock, hold).await?;
        self.info_of(&group, true, me.account).await
    }

    /// Applies `change` to the group under its lock (and, in cluster mode, its cluster-wide
    /// order until the events are durable): load, `decide` (checks and edits a copy whose
    /// version is already bumped; returns the events and the extra accounts to tell), store,
    /// queue events, unlock, wait for durability. Returns the new group.
    async fn change_group(
        &self,
        me: DeviceAddr,
        group_id: u64,
        decide: impl FnOnce(&mut Group) -> Result<(Vec<Change>, Vec<AccountId>), ServiceError>,
    ) -> Result<Group, ServiceError> {
        let lock = self.lock(group_id).lock().await;
        let hold = self.store.hold_group_order(group_id).await?;
        let old = self.load(group_id).await?;
        let mut group = old.clone();
        group.version += 1;
        let (mut changes, also_tell) = decide(&mut group)?;
        if changes.is_empty()
            && group.members == old.members
            && group.pending == old.pending
            && group.name == old.name
            && group.description == old.description
            && group.settings == old.settings
            && group.invite_token == old.invite_token
        {
            return Ok(old);
        }
        if let Some(promoted) = ensure_admin(&mut group) {
            changes.push(Change { kind: Ev::AdminsPromoted, accounts: vec![promoted] });
        }
        if changes.is_empty() {
            // Nothing to announce: the record alone.
            return if self.store.update_group(&group).await? { Ok(group) } else { Err(version_moved(group_id)) };
        }
        let mut accounts: BTreeSet<AccountId> = group.members.iter().map(|m| m.account).collect();
        accounts.extend(also_tell);
        let targets = self.directory.devices_of(&accounts.into_iter().collect::<Vec<_>>()).await?;
        self.commit_change(&group, me.account, changes, targets, lock, hold).await?;
        Ok(group)
    }

    /// Stores `group` (a new version, or version 1 under a reserved id) and its `changes`'
    /// events for `targets` in one commit: no crash can leave a roster change unannounced.
    /// Releases the local lock once queued (the next operation of the group may queue behind
    /// it) and the cluster-wide hold once durable.
    async fn commit_change(
        &self,
        group: &Group,
        by: AccountId,
        changes: Vec<Change>,
        targets: Vec<DeviceAddr>,
        lock: tokio::sync::MutexGuard<'_, ()>,
        hold: Option<GroupOrderHold>,
    ) -> Result<(), ServiceError> {
        let events = self.build_events(group, by, changes, targets).await?;
        let hints = Fanout::hints(&events);
        let pending = self.store.enqueue_group_update(group, events).await?.ok_or_else(|| version_moved(group.id))?;
        drop(lock);
        self.fanout.queued(pending, hints).holding(hold).durable().await?;
        Ok(())
    }

    async fn update(&self, me: DeviceAddr, u: pb::GroupUpdate) -> Result<pb::GroupInfo, ServiceError> {
        check_texts(u.name.as_deref(), u.description.as_deref())?;
        let group = self
            .change_group(me, u.group_id, |g| {
                let role = role_of(g, me.account)?;
                if !role.is_admin() && (g.settings.admins_only_edit || u.settings.is_some()) {
                    return Err(denied("only admins may edit this group's info"));
                }
                if let Some(name) = u.name {
                    g.name = name;
                }
                if let Some(description) = u.description {
                    g.description = description;
                }
                if let Some(s) = u.settings {
                    g.settings = GroupSettings {
                        admins_only_send: s.admins_only_send,
                        admins_only_edit: s.admins_only_edit,
                        join_approval: s.join_approval,
                    };
                }
                Ok((vec![Change { kind: Ev::InfoChanged, accounts: vec![] }], vec![]))
            })
            .await?;
        self.info_of(&group, true, me.account).await
    }

    async fn members(&self, me: DeviceAddr, m: pb::GroupMembers) -> Result<pb::GroupInfo, ServiceError> {
        let action = GroupMemberAction::try_from(m.action).unwrap_or(GroupMemberAction::Unspecified);
        if action == GroupMemberAction::Unspecified {
            return Err(ServiceError::InvalidArgument("action is required".into()));
        }
        let accounts = self.resolve_accounts(&m.account_ids, &m.phones).await?;
        if accounts.is_empty() {
            return Err(ServiceError::InvalidArgument("name at least one member".into()));
        }
        if action == GroupMemberAction::Add {
            for _ in &accounts {
                ratelimit::check_shared(&self.adds, &me.account).await?;
            }
        }
        let (max, now) = (self.members_max, self.clock.now_ms());
        let group = self
            .change_group(me, m.group_id, |g| {
                require_admin(g, me.account)?;
                let not_creator = |a: AccountId| g.member(a).is_none_or(|m| m.role != GroupRole::Creator);
                if matches!(action, GroupMemberAction::Remove | GroupMemberAction::Demote)
                    && !accounts.iter().all(|&a| not_creator(a) || a == me.account)
                {
                    return Err(denied("the creator cannot be removed or demoted by others"));
                }
                let present: Vec<AccountId> = accounts.iter().copied().filter(|&a| g.member(a).is_some()).collect();
                let (kind, done, also_tell) = match action {
                    GroupMemberAction::Add => (Ev::MembersAdded, add_members(g, &accounts, max, now)?, vec![]),
                    GroupMemberAction::Remove => {
                        g.members.retain(|m| !present.contains(&m.account));
                        (Ev::MembersRemoved, present.clone(), present)
                    }
                    GroupMemberAction::Promote | GroupMemberAction::Demote => {
                        let (from_admin, to) = match action {
                            GroupMemberAction::Promote => (false, GroupRole::Admin),
                            _ => (true, GroupRole::Member),
                        };
                        let mut done = Vec::new();
                        for m in g.members.iter_mut().filter(|m| present.contains(&m.account)) {
                            if m.role.is_admin() == from_admin {
                                m.role = to;
                                done.push(m.account);
                            }
                        }
                        let kind = if from_admin { Ev::AdminsDemoted } else { Ev::AdminsPromoted };
                        (kind, done, vec![])
                    }
                    GroupMemberAction::Unspecified => unreachable!("checked above"),
                };
                let changes = if done.is_empty() { vec![] } else { vec![Change { kind, accounts: done }] };
                Ok((changes, also_tell))
            })
            .await?;
        self.info_of(&group, true, me.account).await
    }

    async fn leave(&self, me: DeviceAddr, group_id: u64) -> Result<u64, ServiceError> {
        self.change_group(me, group_id, |g| {
            role_of(g, me.account)?;
            g.members.retain(|m| m.account != me.account);
            Ok((vec![Change { kind: Ev::MemberLeft, accounts: vec![me.account] }], vec![me.account]))
        })
        .await?;
        Ok(group_id)
    }

    /// Account deletion: `account` leaves `group_id` (a `MemberLeft` event to the group, and
    /// the longest-standing member promoted if it was the last admin) or its join request is
    /// dropped (a `JoinDeclined` event by the account itself). Returns whether the group is left with no members (the caller removes it).
    /// Idempotent: a group that is gone or no longer names the account is left alone.
    pub async fn remove_erased(&self, account: AccountId, group_id: u64) -> Result<bool, ServiceError> {
        let actor = DeviceAddr::new(account, 0);
        let changed = self
            .change_group(actor, group_id, |g| {
                let was_pending = g.pending.iter().any(|p| p.account == account);
                g.pending.retain(|p| p.account != account);
                if g.member(account).is_none() {
                    // A request dropped with its account is announced, as its refusal would be.
                    let declined = Change { kind: Ev::JoinDeclined, accounts: vec![account] };
                    return Ok((if was_pending { vec![declined] } else { vec![] }, vec![]));
                }
                g.members.retain(|m| m.account != account);
                Ok((vec![Change { kind: Ev::MemberLeft, accounts: vec![account] }], vec![]))
            })
            .await;
        match changed {
            Ok(group) => Ok(group.members.is_empty()),
            Err(ServiceError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn invite(&self, me: DeviceAddr, i: pb::GroupInvite) -> Result<pb::GroupInviteLink, ServiceError> {
        let token = (!i.revoke).then(|| hex::encode(rand::random::<[u8; 16]>()));
        let set = token.clone();
        self.change_group(me, i.group_id, |g| {
            require_admin(g, me.account)?;
            g.invite_token = set;
            Ok((vec![], vec![]))
        })
        .await?;
        Ok(pb::GroupInviteLink { group_id: i.group_id, token: token.unwrap_or_default() })
    }

    async fn join(&self, me: DeviceAddr, token: &str) -> Result<group_result::Result, ServiceError> {
        if token.is_empty() {
            return Err(ServiceError::InvalidArgument("token is required".into()));
        }
        ratelimit::check_shared(&self.joins, &me.account).await?;
        let group_id = self.store.group_by_invite(token).await?.ok_or(ServiceError::NotFound("invite link"))?;
        let (max, now) = (self.members_max, self.clock.now_ms());
        let group = self
            .change_group(me, group_id, |g| {
                if g.invite_token.as_deref() != Some(token) {
                    return Err(ServiceError::NotFound("invite link"));
                }
                if g.member(me.account).is_some() {
                    return Ok((vec![], vec![]));
                }
                if g.settings.join_approval {
                    if g.pending.iter().any(|p| p.account == me.account) {
                        return Ok((vec![], vec![]));
                    }
                    if g.pending.len() >= max as usize {
                        return Err(ServiceError::GroupFull { max });
                    }
                    g.pending.push(PendingJoin { account: me.account, requested_at_ms: now });
                    return Ok((
                        vec![Change { kind: Ev::JoinRequested, accounts: vec![me.account] }],
                        vec![me.account],
                    ));
                }
                let added = add_members(g, &[me.account], max, now)?;
                Ok((vec![Change { kind: Ev::MembersAdded, accounts: added }], vec![]))
            })
            .await?;
        if group.member(me.account).is_some() {
            Ok(group_result::Result::Info(self.info_of(&group, true, me.account).await?))
        } else {
            Ok(group_result::Result::DoneGroupId(group.id))
        }
    }

    async fn approve(&self, me: DeviceAddr, a: pb::GroupApprove) -> Result<pb::GroupInfo, ServiceError> {
        if a.account_ids.is_empty() {
            return Err(ServiceError::InvalidArgument("name at least one pending account".into()));
        }
        if !a.reject {
            for _ in &a.account_ids {
                ratelimit::check_shared(&self.adds, &me.account).await?;
            }
        }
        let (max, now) = (self.members_max, self.clock.now_ms());
        let group = self
            .change_group(me, a.group_id, |g| {
                require_admin(g, me.account)?;
                let pending: Vec<AccountId> =
                    a.account_ids.iter().copied().filter(|&x| g.pending.iter().any(|p| p.account == x)).collect();
                if pending.is_empty() {
                    return Err(ServiceError::NotFound("pending join request"));
                }
                if a.reject {
                    // The requesters were told of their request; they are told of its refusal.
                    g.pending.retain(|p| !pending.contains(&p.account));
                    return Ok((vec![Change { kind: Ev::JoinDeclined, accounts: pending.clone() }], pending));
                }
                let added = add_members(g, &pending, max, now)?;
                Ok((vec![Change { kind: Ev::MembersAdded, accounts: added }], vec![]))
            })
            .await?;
        self.info_of(&group, true, me.account).await
    }
}

fn check_texts(name: Option<&str>, description: Option<&str>) -> Result<(), ServiceError> {
    let invalid = |m: &str| Err(ServiceError::InvalidArgument(m.to_owned()));
    if let Some(name) = name {
        if name.trim().is_empty() || name.chars().count() > NAME_CHARS_MAX {
            return invalid("a group name must have 1 to 100 characters");
        }
    }
    if description.is_some_and(|d| d.chars().count() > DESCRIPTION_CHARS_MAX) {
        return invalid("a group description must have at most 512 characters");
    }
    Ok(())
}

/// When no admin is left, the longest-standing member becomes one; returns who.
fn ensure_admin(group: &mut Group) -> Option<AccountId> {
    if group.members.is_empty() || group.members.iter().any(|m| m.role.is_admin()) {
        return None;
    }
    let oldest = group.members.iter_mut().min_by_key(|m| m.joined_version)?;
    oldest.role = GroupRole::Admin;
    Some(oldest.account)
}

/// Adds `accounts` as members (all or none), enforcing the size limit.
fn add_members(g: &mut Group, accounts: &[AccountId], max: u32, now: u64) -> Result<Vec<AccountId>, ServiceError> {
    let new: Vec<AccountId> = accounts.iter().copied().filter(|&a| g.member(a).is_none()).collect();
    if g.members.len() + new.len() > max as usize {
        return Err(ServiceError::GroupFull { max });
    }
    let version = g.version;
    g.pending.retain(|p| !new.contains(&p.account));
    g.members.extend(new.iter().map(|&account| GroupMember {
        account,
        role: GroupRole::Member,
        joined_at_ms: now,
        joined_version: version,
    }));
    Ok(new)
}

/// The stored version was not the one this node read under the group's lock (or a new group's
/// reserved id was taken): another writer broke the order, which is a bug, not a client error.
fn version_moved(group: GroupId) -> ServiceError {
    tracing::error!(group, "group version moved under its lock");
    ServiceError::Internal
}
