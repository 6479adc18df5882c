//! Message actions: edits, deletions for everyone and reactions, validated against the index of
//! recent messages ([`crate::message_index`]: sender, conversation, time; written with every send
//! as a buffered write that the send's synced commit makes durable, expired with the inbox TTL).
//! Replies are checked there too, by the sends themselves.
//!
//! An accepted action is one `MessageAction` inbox entry for every device of the conversation
//! but the acting one, appended and hinted like a message. The server keeps no reaction state:
//! one reaction per account and message holds because a client applies an account's reactions
//! to a message in inbox order, each replacing the last (an empty emoji removes it).
//!
//! The server does remember deletions for everyone: once a deletion is durable the index
//! record is re-written with `deleted` set, and every later action on the message (edit,
//! reaction, reply, another delete) is `NOT_FOUND`, as WhatsApp leaves only a tombstone that
//! nothing can act on. A repeated delete is refused the same way rather than re-sent; a client
//! whose first delete's answer was lost reads that `NOT_FOUND` as "already gone".
//!
//! Knows the send kernel, the message index, the directory, blocks and the groups service (for a
//! group message's audience). Knows nothing of sockets, sessions or 1:1 messaging; forwards,
//! which are sends, live in [`crate::forward`].

use std::sync::Arc;

use bytes::Bytes;
use iris_proto::pb::{self, inbox_item, MessageActionType};
use iris_store::{AccountId, AppendRequest, Conversation, DeviceAddr, MessageRef, NewEntry};

use crate::blocks::Blocks;
use crate::clock::Clock;
use crate::directory::Directory;
use crate::error::ServiceError;
use crate::fanout::{encode_item, Fanout};
use crate::groups::Groups;
use crate::ids::IdGenerator;
use crate::message_index::{MessageIndex, DELETED};
use crate::ratelimit::SharedLimit;
use crate::send_checks::device_sets;

/// How long after sending its sender may edit a message.
pub const EDIT_WINDOW_MS: u64 = 15 * 60 * 1000;
/// How long after sending a message may be deleted for everyone.
pub const DELETE_WINDOW_MS: u64 = 48 * 3600 * 1000;
/// Longest reaction, in bytes.
pub const EMOJI_BYTES_MAX: usize = 32;

/// The parts the actions service is built from.
pub struct ActionsDeps {
    /// Appends the action entries, hints sessions.
    pub fanout: Fanout,
    /// What actions are checked against.
    pub index: Arc<MessageIndex>,
    /// 1:1 audiences.
    pub directory: Arc<Directory>,
    /// A blocker never gets the blocked account's actions.
    pub blocks: Arc<Blocks>,
    /// Group audiences and roles.
    pub groups: Arc<Groups>,
    /// Server message ids.
    pub ids: Arc<IdGenerator>,
    /// Time (windows for edits and deletions).
    pub clock: Arc<dyn Clock>,
    /// Actions count against the send limit.
    pub send_limit: SharedLimit<AccountId>,
    /// Protocol limits (edit payloads).
    pub limits: iris_proto::Limits,
}

/// Edits, deletions for everyone and reactions.
pub struct Actions {
    deps: ActionsDeps,
}

impl Actions {
    /// The service over `deps`.
    pub fn new(deps: ActionsDeps) -> Self {
        Self { deps }
    }

    /// Applies one action of `actor` and answers when it is durable in every target inbox.
    pub async fn act(&self, actor: DeviceAddr, op: pb::SendAction) -> Result<pb::ActionResult, ServiceError> {
        let d = &self.deps;
        let kind = MessageActionType::try_from(op.r#type).unwrap_or(MessageActionType::Unspecified);
        self.validate(kind, &op)?;
        d.send_limit.take(&actor.account).await?;
        let target = d
            .index
            .get(op.target_server_msg_id)
            .await?
            .ok_or(ServiceError::NotFound("no such message (or it expired)"))?;
        let now = d.clock.now_ms();
        let age_ms = now.saturating_sub(target.sent_at_ms);
        let is_sender = target.sender == actor.account;
        let (is_admin, peer, devices, blocked_by_peer) = self.audience(actor, &target).await?;
        // Checked after the audience so that outsiders learn nothing, not even that it was deleted.
        if target.deleted {
            return Err(ServiceError::NotFound(DELETED));
        }
        match kind {
            MessageActionType::Edit if !is_sender => return Err(denied("only the sender may edit a message")),
            MessageActionType::Edit if age_ms > EDIT_WINDOW_MS => {
                return Err(denied("a message can be edited only within 15 minutes"));
            }
            MessageActionType::Delete if !is_sender && !is_admin => {
                return Err(denied("only the sender (or a group admin) may delete a message for everyone"));
            }
            MessageActionType::Delete if age_ms > DELETE_WINDOW_MS => {
                return Err(denied("a message can be deleted for everyone only within 48 hours"));
            }
            _ => {}
        }
        let id = d.ids.next(now);
        let group_id = match target.conversation {
            Conversation::Group(g) => g,
            Conversation::Direct(_) => 0,
        };
        // End-to-end encrypted: one payload per device, naming exactly the conversation's devices
        // (checked before a blocking peer's devices are dropped, so the check reveals no block).
        let per_device = match op.per_device.as_ref().filter(|p| !p.payloads.is_empty()) {
            None => None,
            Some(p) => {
                if let Some((given, wanted)) = device_sets(p, &devices)? {
                    return Err(ServiceError::StaleDevices(mismatches(&given, &wanted)));
                }
                let by_device: std::collections::HashMap<DeviceAddr, Bytes> = p
                    .payloads
                    .iter()
                    .map(|p| (DeviceAddr::new(p.account_id, p.device_id), p.payload.clone()))
                    .collect();
                Some(by_device)
            }
        };
        let devices: Vec<DeviceAddr> = match blocked_by_peer {
            true => devices.into_iter().filter(|d| d.account != peer).collect(),
            false => devices,
        };
        let item = |peer_account_id: AccountId, payload: Bytes| -> Bytes {
            encode_item(
                id,
                now,
                inbox_item::Body::MessageAction(pb::MessageAction {
                    r#type: kind as i32,
                    target_server_msg_id: op.target_server_msg_id,
                    from_account_id: actor.account,
                    from_device_id: actor.device,
                    peer_account_id,
                    group_id,
                    payload,
                    emoji: op.emoji.clone(),
                }),
            )
        };
        // 1:1: the peer's devices see the actor as the other side, the actor's own the peer.
        let (to_peer, to_me) = (item(actor.account, op.payload.clone()), item(peer, op.payload.clone()));
        let entries: Vec<NewEntry> = devices
            .into_iter()
            .map(|device| {
                let other_side = if group_id == 0 && device.account == actor.account { peer } else { actor.account };
                let item = match &per_device {
                    Some(by_device) => item(other_side, by_device.get(&device).cloned().unwrap_or_default()),
                    None if other_side == peer => to_me.clone(),
                    None => to_peer.clone(),
                };
                NewEntry { device, item }
            })
            .collect();
        d.fanout.append(AppendRequest::event(id, now, entries)).await?;
        if kind == MessageActionType::Delete {
            // Only once the deletion reached every inbox: marked earlier, a failed append would leave
            // a message nobody saw deleted that its sender could no longer delete. A buffered write,
            // durable with the next synced commit; lost in a crash before it, a late edit is only
            // ignored by clients that already applied the deletion.
            d.index.mark_deleted(op.target_server_msg_id, target).await?;
        }
        Ok(pb::ActionResult { server_msg_id: id, server_ts_ms: now })
    }

    fn validate(&self, kind: MessageActionType, op: &pb::SendAction) -> Result<(), ServiceError> {
        let invalid = |m: &str| Err(ServiceError::InvalidArgument(m.to_owned()));
        let max = self.deps.limits.max_payload_bytes;
        if op.target_server_msg_id == 0 {
            return invalid("target_server_msg_id is required");
        }
        let per_device = op.per_device.as_ref().map_or(&[][..], |p| &p.payloads[..]);
        let devices_max = 2 * self.deps.limits.max_devices_per_account as usize;
        if per_device.len() > devices_max {
            return invalid("per_device names more devices than a conversation has");
        }
        if !per_device.is_empty() && (!op.payload.is_empty() || kind == MessageActionType::Delete) {
            return invalid("per_device replaces payload, and a deletion carries neither");
        }
        let largest = per_device.iter().map(|p| p.payload.len()).chain([op.payload.len()]).max().unwrap_or(0);
        match kind {
            MessageActionType::Unspecified => invalid("type must be EDIT, DELETE or REACT"),
            MessageActionType::Edit if op.payload.is_empty() && per_device.is_empty() => {
                invalid("an edit needs a payload")
            }
            _ if largest > max as usize => Err(ServiceError::PayloadTooLarge { size: largest, max }),
            MessageActionType::React if op.emoji.len() > EMOJI_BYTES_MAX => invalid("a reaction is at most 32 bytes"),
            _ => Ok(()),
        }
    }

    /// Who the action reaches: (actor is a group admin, 1:1 peer or 0, the conversation's devices
    /// but the actor's, whether the 1:1 peer blocked the actor and must not get it). A caller
    /// outside the target's conversation gets `NOT_FOUND` for 1:1 messages (nothing learned) and
    /// `PERMISSION_DENIED` for groups (as every group operation of a non-member).
    async fn audience(
        &self,
        actor: DeviceAddr,
        target: &MessageRef,
    ) -> Result<(bool, AccountId, Vec<DeviceAddr>, bool), ServiceError> {
        match target.conversation {
            Conversation::Group(group_id) => {
                let (is_admin, devices) = self.deps.groups.action_audience(actor, group_id).await?;
                Ok((is_admin, 0, devices, false))
            }
            Conversation::Direct(to) => {
                let peer = if target.sender == actor.account {
                    to
                } else if to == actor.account {
                    target.sender
                } else {
                    return Err(ServiceError::NotFound("no such message (or it expired)"));
                };
                let mut accounts = vec![actor.account];
                if peer != actor.account {
                    accounts.push(peer);
                }
                // A blocker never gets the blocked account's actions (as with its messages).
                let blocked = peer != actor.account && self.deps.blocks.is_blocked(peer, actor.account).await?;
                let mut devices = self.deps.directory.devices_of(&accounts).await?;
                devices.retain(|&d| d != actor);
                Ok((false, peer, devices, blocked))
            }
        }
    }
}

/// What a per-device action got wrong, per account (as a stale per-device send is answered).
fn mismatches(
    given: &std::collections::BTreeSet<DeviceAddr>,
    wanted: &std::collections::BTreeSet<DeviceAddr>,
) -> Vec<pb::DeviceMismatch> {
    let accounts: std::collections::BTreeSet<AccountId> = given.iter().chain(wanted).map(|d| d.account).collect();
    accounts
        .into_iter()
        .filter_map(|account| {
            let of = |set: &std::collections::BTreeSet<DeviceAddr>| {
                set.iter().filter(|d| d.account == account).map(|d| d.device).collect::<std::collections::BTreeSet<_>>()
            };
            let (g, w) = (of(given), of(wanted));
            let missing_devices: Vec<u32> = w.difference(&g).copied().collect();
            let extra_devices: Vec<u32> = g.difference(&w).copied().collect();
            (!missing_devices.is_empty() || !extra_devices.is_empty()).then_some(pb::DeviceMismatch {
                account_id: account,
                missing_devices,
                extra_devices,
            })
        })
        .collect()
}

fn denied(why: &str) -> ServiceError {
    ServiceError::PermissionDenied(why.to_owned())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::testing::Parts;

    fn action(kind: MessageActionType, target: u64) -> pb::SendAction {
        let (payload, emoji) = match kind {
            MessageActionType::Edit => (Bytes::from_static(b"edited"), String::new()),
            MessageActionType::React => (Bytes::new(), "👍".to_owned()),
            _ => (Bytes::new(), String::new()),
        };
        pb::SendAction { r#type: kind as i32, target_server_msg_id: target, payload, emoji, per_device: None }
    }

    #[tokio::test]
    async fn actions_follow_their_windows_and_roles_and_nothing_acts_on_a_deleted_message() {
        // Proves, as one table over the injectable clock: the sender edits within 15 minutes, the
        // peer may not edit; anyone in the chat reacts; outsiders learn nothing; after a deletion
        // for everyone every action is NOT_FOUND.
        use MessageActionType::{Delete, Edit, React};
        let parts = Parts::new();
        let alice = parts.account("+15550000001", 1).await;
        let bob = parts.account("+15550000002", 1).await;
        let carol = parts.account("+15550000003", 1).await;
        let msg = pb::SendMessage {
            client_msg_id: "m1".into(),
            to_account_id: bob[0].account,
            body: Some(pb::send_message::Body::Payload(Bytes::from_static(b"hi"))),
            ..Default::default()
        };
        let target = parts.messaging().send(alice[0], msg).await.unwrap().server_msg_id;
        let actions = &parts.services.actions;
        let code = |r: Result<pb::ActionResult, ServiceError>| r.map(|_| ()).map_err(|e| e.code());
        let table: Vec<(u64, DeviceAddr, MessageActionType, Result<(), pb::ErrorCode>)> = vec![
            (0, alice[0], Edit, Ok(())),
            (0, bob[0], Edit, Err(pb::ErrorCode::PermissionDenied)),
            (0, bob[0], React, Ok(())),
            (0, carol[0], React, Err(pb::ErrorCode::NotFound)),
            (EDIT_WINDOW_MS + 1, alice[0], Edit, Err(pb::ErrorCode::PermissionDenied)),
            (0, alice[0], Delete, Ok(())),
            (0, bob[0], React, Err(pb::ErrorCode::NotFound)),
            (0, alice[0], Delete, Err(pb::ErrorCode::NotFound)),
        ];
        for (advance_ms, actor, kind, expected) in table {
            parts.clock.advance_ms(advance_ms);
            assert_eq!(code(actions.act(actor, action(kind, target)).await), expected, "{kind:?} by {actor}");
        }
    }

    #[tokio::test]
    async fn per_device_actions_are_checked_like_sends_and_each_device_gets_its_own() {
        // Proves: an encrypted edit naming the wrong devices is STALE_DEVICES with the
        // mismatches and stores nothing; naming exactly the conversation's devices (the peer's
        // and my others) stores each device's own payload; a blocking peer's devices pass the
        // check (nothing revealed) but get nothing.
        use iris_store::InboxStore;
        use prost::Message as _;
        let parts = Parts::new();
        let alice = parts.account("+15550000001", 2).await;
        let bob = parts.account("+15550000002", 2).await;
        let msg = pb::SendMessage {
            client_msg_id: "m1".into(),
            to_account_id: bob[0].account,
            body: Some(pb::send_message::Body::Payload(Bytes::from_static(b"hi"))),
            ..Default::default()
        };
        let target = parts.messaging().send(alice[0], msg).await.unwrap().server_msg_id;
        let edit = |devices: &[DeviceAddr]| pb::SendAction {
            r#type: MessageActionType::Edit as i32,
            target_server_msg_id: target,
            per_device: Some(pb::DevicePayloads {
                payloads: devices
                    .iter()
                    .map(|d| pb::DevicePayload {
                        account_id: d.account,
                        device_id: d.device,
                        payload: Bytes::from(format!("for {d}")),
                    })
                    .collect(),
            }),
            ..Default::default()
        };
        let actions = &parts.services.actions;
        match actions.act(alice[0], edit(&[bob[0], alice[1]])).await {
            Err(ServiceError::StaleDevices(m)) => {
                assert_eq!((m[0].account_id, m[0].missing_devices.clone()), (bob[0].account, vec![bob[1].device]))
            }
            other => panic!("expected STALE_DEVICES, got {other:?}"),
        }
        let all = [bob[0], bob[1], alice[1]];
        actions.act(alice[0], edit(&all)).await.unwrap();
        for d in all {
            let items = parts.store.read(d, 0, 10).await.unwrap();
            let last = pb::InboxItem::decode(items.last().unwrap().item.clone()).unwrap();
            let Some(inbox_item::Body::MessageAction(a)) = last.body else { panic!("{last:?}") };
            assert_eq!(a.payload, Bytes::from(format!("for {d}")), "{d} gets its own payload");
        }
        parts.blocks().set(bob[0], pb::BlockAccount { account_id: alice[0].account, unblock: false }).await.unwrap();
        let before = parts.store.read(bob[0], 0, 10).await.unwrap().len();
        actions.act(alice[0], edit(&all)).await.unwrap();
        assert_eq!(parts.store.read(bob[0], 0, 10).await.unwrap().len(), before, "the blocker gets nothing");
    }
}
