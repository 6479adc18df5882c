//! Message actions: replies (checked only), forwards, edits, deletions for everyone and
//! reactions, validated against the store's index of recent messages
//! ([`iris_store::MessageIndexStore`]: sender, conversation, time; written with every send as a
//! buffered write that the send's synced commit makes durable, expired with the inbox TTL).
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

use std::sync::Arc;

use bytes::Bytes;
use iris_proto::pb::{self, inbox_item, MessageActionType};
use iris_store::{AccountId, AppendRequest, Conversation, DeviceAddr, MessageRef, NewEntry};

use crate::blocks;
use crate::context::Ctx;
use crate::error::ServiceError;
use crate::groups;
use crate::messaging;

/// Why an action on a message deleted for everyone fails (shown as "… not found").
pub const DELETED: &str = "message (deleted for everyone)";

/// How long after sending its sender may edit a message.
pub const EDIT_WINDOW_MS: u64 = 15 * 60 * 1000;
/// How long after sending a message may be deleted for everyone.
pub const DELETE_WINDOW_MS: u64 = 48 * 3600 * 1000;
/// Longest reaction, in bytes.
pub const EMOJI_BYTES_MAX: usize = 32;
/// Most chats one `Forward` reaches.
pub const FORWARD_CHATS_MAX: usize = 5;
/// What a forward appends to its client_msg_id for each copy: `/` and one digit.
pub const FORWARD_SUFFIX_BYTES: usize = 2;
const _: () = assert!(FORWARD_CHATS_MAX <= 10, "copy numbers must stay one digit");

/// Whether `r` is a 1:1 message between `a` and `b` (either direction; `a == b` is a note to
/// self).
pub fn direct_between(r: &MessageRef, a: AccountId, b: AccountId) -> bool {
    match r.conversation {
        Conversation::Direct(to) => (r.sender == a && to == b) || (r.sender == b && to == a),
        Conversation::Group(_) => false,
    }
}

/// Checks a reply's target: 0 (no reply) passes; otherwise it must be indexed, `in_chat` and
/// not deleted for everyone.
pub async fn check_reply(
    ctx: &Ctx,
    reply_to: u64,
    in_chat: impl FnOnce(&MessageRef) -> bool,
) -> Result<(), ServiceError> {
    if reply_to == 0 {
        return Ok(());
    }
    // Outsiders learn nothing, not even that the message was deleted.
    match ctx.store.message_ref(reply_to).await?.filter(|r| in_chat(r)) {
        Some(r) if r.deleted => Err(ServiceError::NotFound(DELETED)),
        Some(_) => Ok(()),
        None => Err(ServiceError::NotFound("the message replied to is not in this conversation")),
    }
}

/// Applies one action of `actor` and answers when it is durable in every target inbox.
pub async fn act(ctx: &Ctx, actor: DeviceAddr, op: pb::SendAction) -> Result<pb::ActionResult, ServiceError> {
    let kind = MessageActionType::try_from(op.r#type).unwrap_or(MessageActionType::Unspecified);
    validate(ctx, kind, &op)?;
    crate::ratelimit::check(&ctx.send_limit, &actor.account)?;
    let target = ctx
        .store
        .message_ref(op.target_server_msg_id)
        .await?
        .ok_or(ServiceError::NotFound("no such message (or it expired)"))?;
    let now = ctx.clock.now_ms();
    let age_ms = now.saturating_sub(target.sent_at_ms);
    let is_sender = target.sender == actor.account;
    let (is_admin, peer, devices) = audience(ctx, actor, &target).await?;
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
    let id = ctx.ids.next(now);
    let group_id = match target.conversation {
        Conversation::Group(g) => g,
        Conversation::Direct(_) => 0,
    };
    let item = |peer_account_id: AccountId| -> Bytes {
        messaging::encode_item(
            id,
            now,
            inbox_item::Body::MessageAction(pb::MessageAction {
                r#type: kind as i32,
                target_server_msg_id: op.target_server_msg_id,
                from_account_id: actor.account,
                from_device_id: actor.device,
                peer_account_id,
                group_id,
                payload: op.payload.clone(),
                emoji: op.emoji.clone(),
            }),
        )
    };
    // 1:1: the peer's devices see the actor as the other side, the actor's own the peer.
    let (to_peer, to_me) = (item(actor.account), item(peer));
    let entries: Vec<NewEntry> = devices
        .into_iter()
        .map(|device| {
            let item = if group_id == 0 && device.account == actor.account { &to_me } else { &to_peer };
            NewEntry { device, item: item.clone() }
        })
        .collect();
    let req = AppendRequest { dedup: None, server_msg_id: id, server_ts_ms: now, entries };
    messaging::append_and_notify(ctx, req).await?;
    if kind == MessageActionType::Delete {
        // Only once the deletion reached every inbox: marked earlier, a failed append would leave
        // a message nobody saw deleted that its sender could no longer delete. A buffered write,
        // durable with the next synced commit; lost in a crash before it, a late edit is only
        // ignored by clients that already applied the deletion.
        ctx.store.put_message_ref(op.target_server_msg_id, MessageRef { deleted: true, ..target }).await?;
    }
    Ok(pb::ActionResult { server_msg_id: id, server_ts_ms: now })
}

fn validate(ctx: &Ctx, kind: MessageActionType, op: &pb::SendAction) -> Result<(), ServiceError> {
    let invalid = |m: &str| Err(ServiceError::InvalidArgument(m.to_owned()));
    if op.target_server_msg_id == 0 {
        return invalid("target_server_msg_id is required");
    }
    match kind {
        MessageActionType::Unspecified => invalid("type must be EDIT, DELETE or REACT"),
        MessageActionType::Edit if op.payload.is_empty() => invalid("an edit needs a payload"),
        MessageActionType::Edit if op.payload.len() > ctx.limits.max_payload_bytes as usize => {
            Err(ServiceError::PayloadTooLarge { size: op.payload.len(), max: ctx.limits.max_payload_bytes })
        }
        MessageActionType::React if op.emoji.len() > EMOJI_BYTES_MAX => invalid("a reaction is at most 32 bytes"),
        _ => Ok(()),
    }
}

/// Who the action reaches: (actor is a group admin, 1:1 peer or 0, target devices). A caller
/// outside the target's conversation gets `NOT_FOUND` for 1:1 messages (nothing learned) and
/// `PERMISSION_DENIED` for groups (as every group operation of a non-member).
async fn audience(
    ctx: &Ctx,
    actor: DeviceAddr,
    target: &MessageRef,
) -> Result<(bool, AccountId, Vec<DeviceAddr>), ServiceError> {
    match target.conversation {
        Conversation::Group(group_id) => {
            let (is_admin, devices) = groups::action_audience(ctx, actor, group_id).await?;
            Ok((is_admin, 0, devices))
        }
        Conversation::Direct(to) => {
            let peer = if target.sender == actor.account {
                to
            } else if to == actor.account {
                target.sender
            } else {
                return Err(ServiceError::NotFound("no such message (or it expired)"));
            };
            let mut devices = Vec::new();
            let mut accounts = vec![actor.account];
            // A blocker never gets the blocked account's actions (as with its messages).
            if peer != actor.account && !blocks::is_blocked(ctx, peer, actor.account).await? {
                accounts.push(peer);
            }
            for account in accounts {
                if let Some(view) = ctx.directory.by_id(account).await? {
                    devices.extend(view.devices.iter().map(|&d| DeviceAddr::new(account, d)));
                }
            }
            devices.retain(|&d| d != actor);
            Ok((false, peer, devices))
        }
    }
}

/// Sends one payload as a forward to at most [`FORWARD_CHATS_MAX`] distinct chats, one after
/// another; a chat listed twice is sent once (answered once, in first-listed order). Stops at
/// the first failure (earlier copies stay sent, a retry with the same client_msg_id is
/// deduplicated per copy). Copy `i` is sent as `<client_msg_id>/<i>`, which is why the id may
/// take only [`FORWARD_SUFFIX_BYTES`] less than a send's.
pub async fn forward(ctx: &Arc<Ctx>, sender: DeviceAddr, op: pb::Forward) -> Result<pb::ForwardResult, ServiceError> {
    let (to_account_ids, group_ids) = (distinct(&op.to_account_ids), distinct(&op.group_ids));
    let n_chats = to_account_ids.len() + group_ids.len();
    if n_chats == 0 || n_chats > FORWARD_CHATS_MAX {
        return Err(ServiceError::InvalidArgument(format!(
            "a forward reaches 1 to {FORWARD_CHATS_MAX} chats, not {n_chats}"
        )));
    }
    if op.client_msg_id.is_empty() {
        return Err(ServiceError::InvalidArgument("client_msg_id is required".into()));
    }
    let id_bytes_max = (ctx.limits.max_client_msg_id_bytes as usize).saturating_sub(FORWARD_SUFFIX_BYTES);
    if op.client_msg_id.len() > id_bytes_max {
        return Err(ServiceError::InvalidArgument(format!(
            "a forward's client_msg_id is at most {id_bytes_max} bytes: each copy is sent as <client_msg_id>/<i>"
        )));
    }
    let copy_id = |i: usize| format!("{}/{i}", op.client_msg_id);
    let mut results = Vec::with_capacity(n_chats);
    for (i, &to) in to_account_ids.iter().enumerate() {
        crate::ratelimit::check(&ctx.send_limit, &sender.account)?;
        let msg = pb::SendMessage {
            client_msg_id: copy_id(i),
            to_account_id: to,
            body: Some(pb::send_message::Body::Payload(op.payload.clone())),
            forwarded: true,
            ..Default::default()
        };
        results.push(messaging::start_send(ctx, sender, msg).await?.finish(ctx).await?);
    }
    for (i, &group_id) in group_ids.iter().enumerate() {
        let msg = pb::GroupSend {
            group_id,
            client_msg_id: copy_id(to_account_ids.len() + i),
            body: Some(pb::group_send::Body::Payload(op.payload.clone())),
            forwarded: true,
            ..Default::default()
        };
        results.push(groups::start_forward(ctx, sender, msg).await?.finish(ctx).await?);
    }
    Ok(pb::ForwardResult { results })
}

/// `ids` without repeats, in first-seen order. Stops past [`FORWARD_CHATS_MAX`] distinct ids
/// (the caller refuses that), so a long list costs little.
fn distinct(ids: &[u64]) -> Vec<u64> {
    let mut seen = Vec::with_capacity(FORWARD_CHATS_MAX + 1);
    for &id in ids {
        if !seen.contains(&id) {
            seen.push(id);
            if seen.len() > FORWARD_CHATS_MAX {
                break;
            }
        }
    }
    seen
}

fn denied(why: &str) -> ServiceError {
    ServiceError::PermissionDenied(why.to_owned())
}
