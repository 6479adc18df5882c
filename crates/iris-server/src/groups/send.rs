//! Group sends and group receipts.
//!
//! A shared payload is stored once per group message (`put_group_payload`, made durable by the
//! synced commit of the references); each target device's inbox gets a `GroupMessage` with
//! `payload_by_ref` and no payload. Sessions get the full item in their hint (the fast path);
//! a session reading its inbox resolves references through [`resolve`]. Payloads and receipt
//! records expire with the inbox TTL (server message ids start with their time).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use iris_proto::pb::{self, group_send, inbox_item};
use iris_store::{
    AccountId, AppendOutcome, AppendRequest, Conversation, DedupKey, DeviceAddr, GroupId, MessageRef, NewEntry,
};
use prost::Message as _;

use super::{denied, devices_of, load, notify, role_of, READ_IDS_MAX};
use crate::context::Ctx;
use crate::error::ServiceError;
use crate::messaging::{check_send_fields, BodyRef, PendingSend};
use crate::ratelimit;

/// Checks the sender's membership and role, stores the payload once and queues one reference
/// per member device, all under the group's lock.
pub(super) async fn start_send(
    ctx: &Arc<Ctx>,
    sender: DeviceAddr,
    msg: pb::GroupSend,
) -> Result<PendingSend, ServiceError> {
    validate(ctx, &msg)?;
    ratelimit::check(&ctx.send_limit, &sender.account)?;
    let me = ctx.directory.by_id(sender.account).await?.ok_or(ServiceError::DeviceRevoked)?;
    let _order = ctx.groups.lock(msg.group_id).lock().await;
    let group = load(ctx, msg.group_id).await?;
    let role = role_of(&group, sender.account)?;
    if group.settings.admins_only_send && !role.is_admin() {
        return Err(denied("only admins may send to this group"));
    }
    let conversation = Conversation::Group(group.id);
    crate::actions::check_reply(ctx, msg.reply_to_server_msg_id, |r| r.conversation == conversation).await?;
    let mut targets = devices_of(ctx, group.members.iter().map(|m| m.account).collect()).await?;
    targets.retain(|&d| d != sender);
    let now = ctx.clock.now_ms();
    let server_msg_id = ctx.ids.next(now);
    let index = MessageRef { sender: sender.account, conversation, sent_at_ms: now, deleted: false };
    let item = |payload: Bytes, by_ref: bool| -> Bytes {
        pb::InboxItem {
            seq: 0,
            server_msg_id,
            server_ts_ms: now,
            body: Some(inbox_item::Body::GroupMessage(pb::GroupMessage {
                group_id: group.id,
                from_account_id: sender.account,
                from_device_id: sender.device,
                from_phone: me.phone.clone(),
                payload,
                client_msg_id: msg.client_msg_id.clone(),
                payload_by_ref: by_ref,
                reply_to_server_msg_id: msg.reply_to_server_msg_id,
                forwarded: msg.forwarded,
            })),
        }
        .encode_to_vec()
        .into()
    };
    let (entries, hints): (Vec<NewEntry>, Vec<(DeviceAddr, Bytes)>) = match msg.body.expect("validated") {
        group_send::Body::Payload(payload) => {
            ctx.store.put_group_payload(group.id, server_msg_id, payload.clone()).await?;
            ctx.groups.cache_payload((group.id, server_msg_id), payload.clone());
            let (reference, full) = (item(Bytes::new(), true), item(payload, false));
            targets.iter().map(|&device| (NewEntry { device, item: reference.clone() }, (device, full.clone()))).unzip()
        }
        group_send::Body::PerDevice(per_device) => {
            check_devices(&per_device, &targets)?;
            per_device
                .payloads
                .into_iter()
                .map(|p| {
                    let device = DeviceAddr::new(p.account_id, p.device_id);
                    let it = item(p.payload, false);
                    (NewEntry { device, item: it.clone() }, (device, it))
                })
                .unzip()
        }
    };
    let recipients: Vec<AccountId> = group.members.iter().map(|m| m.account).filter(|&a| a != sender.account).collect();
    ctx.store.start_group_receipts(group.id, server_msg_id, sender.account, &recipients).await?;
    ctx.store.put_message_ref(server_msg_id, index).await?;
    let dedup = Some(DedupKey { sender, client_msg_id: msg.client_msg_id.clone() });
    let pending = ctx.store.enqueue_append(AppendRequest { dedup, server_msg_id, server_ts_ms: now, entries }).await?;
    Ok(PendingSend::new(pending, hints, server_msg_id, now, msg.client_msg_id))
}

fn validate(ctx: &Ctx, msg: &pb::GroupSend) -> Result<(), ServiceError> {
    let body = msg.body.as_ref().map(|b| match b {
        group_send::Body::Payload(p) => BodyRef::Payload(p),
        group_send::Body::PerDevice(d) => BodyRef::PerDevice(&d.payloads),
    });
    let most = ctx.limits.max_group_members as usize * ctx.limits.max_devices_per_account as usize;
    check_send_fields(ctx, &msg.client_msg_id, body, most)
}

/// Per-device payloads must name exactly the group's current devices (the sender's excluded).
fn check_devices(per_device: &pb::DevicePayloads, targets: &[DeviceAddr]) -> Result<(), ServiceError> {
    let Some((given, wanted)) = crate::messaging::device_sets(per_device, targets)? else { return Ok(()) };
    let mut mismatches: BTreeMap<AccountId, pb::DeviceMismatch> = BTreeMap::new();
    for d in wanted.difference(&given) {
        mismatches.entry(d.account).or_insert_with(|| mismatch(d.account)).missing_devices.push(d.device);
    }
    for d in given.difference(&wanted) {
        mismatches.entry(d.account).or_insert_with(|| mismatch(d.account)).extra_devices.push(d.device);
    }
    Err(ServiceError::StaleDevices(mismatches.into_values().collect()))
}

fn mismatch(account_id: AccountId) -> pb::DeviceMismatch {
    pb::DeviceMismatch { account_id, ..Default::default() }
}

/// Replaces group message references among inbox entries read from the store by the full item
/// (payload from the cache or the store). Other entries pass through untouched.
pub async fn resolve(ctx: &Ctx, entries: Vec<(u64, Bytes)>) -> Vec<(u64, Bytes)> {
    let mut out = Vec::with_capacity(entries.len());
    for (seq, bytes) in entries {
        let Ok(mut item) = pb::InboxItem::decode(bytes.clone()) else {
            out.push((seq, bytes));
            continue;
        };
        let Some(inbox_item::Body::GroupMessage(m)) = &mut item.body else {
            out.push((seq, bytes));
            continue;
        };
        if !m.payload_by_ref {
            out.push((seq, bytes));
            continue;
        }
        let key = (m.group_id, item.server_msg_id);
        let payload = match ctx.groups.cached_payload(key) {
            Some(p) => Some(p),
            None => ctx.store.group_payload(key.0, key.1).await.ok().flatten(),
        };
        match payload {
            Some(p) => {
                ctx.groups.cache_payload(key, p.clone());
                m.payload = p;
            }
            None => tracing::warn!(group = key.0, msg_id = key.1, "group payload missing (expired?)"),
        }
        m.payload_by_ref = false;
        out.push((seq, item.encode_to_vec().into()));
    }
    out
}

/// The (group, message) a `delivered` receipt is owed for when this device acks `item`.
pub fn delivered_receipt_for(item: &pb::InboxItem, me: AccountId) -> Option<(GroupId, u64)> {
    match &item.body {
        Some(inbox_item::Body::GroupMessage(m)) if m.from_account_id != me => Some((m.group_id, item.server_msg_id)),
        _ => None,
    }
}

/// Records that `device` acked these group messages; tells senders when one is delivered to all.
pub async fn delivered(ctx: &Ctx, device: DeviceAddr, messages: Vec<(GroupId, u64)>) -> Result<(), ServiceError> {
    mark(ctx, device.account, messages, false).await
}

/// Records receipts and sends the aggregated ones that became true.
async fn mark(ctx: &Ctx, account: AccountId, messages: Vec<(GroupId, u64)>, read: bool) -> Result<(), ServiceError> {
    let now = ctx.clock.now_ms();
    // (sender, group, type) → message ids that just became complete.
    let mut complete: BTreeMap<(AccountId, GroupId, i32), Vec<u64>> = BTreeMap::new();
    for (group, msg) in messages {
        let Some(p) = ctx.store.mark_group_receipt(group, msg, account, read, now).await? else { continue };
        if p.all_delivered_now {
            complete.entry((p.sender, group, pb::GroupReceiptType::DeliveredToAll as i32)).or_default().push(msg);
        }
        if p.all_read_now {
            complete.entry((p.sender, group, pb::GroupReceiptType::ReadByAll as i32)).or_default().push(msg);
        }
    }
    for ((sender, group_id, r#type), server_msg_ids) in complete {
        let id = ctx.ids.next(now);
        let item: Bytes = pb::InboxItem {
            seq: 0,
            server_msg_id: id,
            server_ts_ms: now,
            body: Some(inbox_item::Body::GroupReceipt(pb::GroupReceipt { r#type, group_id, server_msg_ids })),
        }
        .encode_to_vec()
        .into();
        let entries: Vec<NewEntry> = devices_of(ctx, vec![sender])
            .await?
            .into_iter()
            .map(|device| NewEntry { device, item: item.clone() })
            .collect();
        let hints: Vec<(DeviceAddr, Bytes)> = entries.iter().map(|e| (e.device, e.item.clone())).collect();
        let req = AppendRequest { dedup: None, server_msg_id: id, server_ts_ms: now, entries };
        if let AppendOutcome::Appended { seqs } = ctx.store.append(req).await? {
            notify(ctx, hints, &seqs);
        }
    }
    Ok(())
}

/// A member read these group messages.
pub(super) async fn read(ctx: &Arc<Ctx>, me: DeviceAddr, r: pb::GroupRead) -> Result<u64, ServiceError> {
    if r.server_msg_ids.is_empty() || r.server_msg_ids.len() > READ_IDS_MAX {
        return Err(ServiceError::InvalidArgument(format!("server_msg_ids must hold 1 to {READ_IDS_MAX} ids")));
    }
    let group = load(ctx, r.group_id).await?;
    role_of(&group, me.account)?;
    mark(ctx, me.account, r.server_msg_ids.iter().map(|&m| (r.group_id, m)).collect(), true).await?;
    Ok(r.group_id)
}

/// Per-member receipts of one of my group messages.
pub(super) async fn receipt_detail(
    ctx: &Arc<Ctx>,
    me: DeviceAddr,
    r: pb::GroupReceiptDetailRequest,
) -> Result<pb::GroupReceiptDetail, ServiceError> {
    let group = load(ctx, r.group_id).await?;
    role_of(&group, me.account)?;
    let (sender, rows) =
        ctx.store.group_receipts(r.group_id, r.server_msg_id).await?.ok_or(ServiceError::NotFound("group message"))?;
    if sender != me.account {
        return Err(denied("only the sender may see a message's receipts"));
    }
    let members = rows
        .into_iter()
        .map(|row| pb::GroupMemberReceipt {
            account_id: row.account,
            delivered_at_ms: row.delivered_at_ms,
            read_at_ms: row.read_at_ms,
        })
        .collect();
    Ok(pb::GroupReceiptDetail { group_id: r.group_id, server_msg_id: r.server_msg_id, members })
}
