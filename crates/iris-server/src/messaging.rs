//! The messaging service: decides what a send or a receipt writes to which inboxes.
//!
//! Path: validate → resolve recipient → check per-device payloads against current devices →
//! append (durable, deduplicated, group-committed by the store) → hint the router → answer.
//! A service never touches a socket; the session calls it and writes the answer.

use std::collections::BTreeSet;

use bytes::Bytes;
use iris_proto::pb::{self, inbox_item, send_message};
use iris_store::{
    AccountId, AppendOutcome, AppendRequest, Conversation, DedupKey, DeviceAddr, DeviceId, MessageRef, NewEntry,
    PendingAppend,
};
use prost::Message as _;

use crate::blocks;
use crate::context::Ctx;
use crate::directory::AccountView;
use crate::error::ServiceError;
use crate::router::Hint;

/// Most message ids in one read receipt.
pub const RECEIPT_IDS_MAX: usize = 1000;

/// A send that is queued for commit; [`PendingSend::finish`] waits until it is durable.
pub struct PendingSend {
    pending: PendingAppend,
    entries: Vec<(DeviceAddr, Bytes)>,
    server_msg_id: u64,
    server_ts_ms: u64,
    client_msg_id: String,
}

/// Sends one message from `sender`; returns once it is durable in every target inbox.
pub async fn send(ctx: &Ctx, sender: DeviceAddr, msg: pb::SendMessage) -> Result<pb::SendResult, ServiceError> {
    start_send(ctx, sender, msg).await?.finish(ctx).await
}

/// Validates a send and queues it for commit. Sends started one after another by one session
/// are committed in that order (per-sender order), while their commits overlap.
pub async fn start_send(ctx: &Ctx, sender: DeviceAddr, msg: pb::SendMessage) -> Result<PendingSend, ServiceError> {
    validate_send(ctx, &msg)?;
    let recipient = resolve_recipient(ctx, &msg).await?;
    let me = ctx.directory.by_id(sender.account).await?.ok_or(ServiceError::DeviceRevoked)?;
    let targets = target_devices(&recipient, &me, sender);
    let (me_id, peer) = (me.id, recipient.id);
    crate::actions::check_reply(ctx, msg.reply_to_server_msg_id, |r| crate::actions::direct_between(r, me_id, peer))
        .await?;
    let now = ctx.clock.now_ms();
    let server_msg_id = ctx.ids.next(now);
    let item = |payload: Bytes| {
        encode_item(
            server_msg_id,
            now,
            inbox_item::Body::Message(pb::Message {
                from_account_id: sender.account,
                from_device_id: sender.device,
                from_phone: me.phone.clone(),
                to_account_id: recipient.id,
                to_phone: recipient.phone.clone(),
                payload,
                client_msg_id: msg.client_msg_id.clone(),
                reply_to_server_msg_id: msg.reply_to_server_msg_id,
                forwarded: msg.forwarded,
            }),
        )
    };
    let entries: Vec<NewEntry> = match msg.body.expect("validated") {
        send_message::Body::Payload(payload) => {
            let shared = item(payload);
            targets.iter().map(|&device| NewEntry { device, item: shared.clone() }).collect()
        }
        send_message::Body::PerDevice(per_device) => {
            check_device_lists(&per_device, &targets, &[&recipient, &me])?;
            per_device
                .payloads
                .into_iter()
                .map(|p| NewEntry { device: DeviceAddr::new(p.account_id, p.device_id), item: item(p.payload) })
                .collect()
        }
    };
    // A blocker's inboxes never get the blocked sender's messages; the send is still ACCEPTED
    // (and checked against the full device lists) so the sender learns nothing from it.
    let entries = if blocks::is_blocked(ctx, recipient.id, sender.account).await? {
        entries.into_iter().filter(|e| e.device.account != recipient.id).collect()
    } else {
        entries
    };
    let index = MessageRef {
        sender: sender.account,
        conversation: Conversation::Direct(recipient.id),
        sent_at_ms: now,
        deleted: false,
    };
    ctx.store.put_message_ref(server_msg_id, index).await?;
    let dedup = Some(DedupKey { sender, client_msg_id: msg.client_msg_id.clone() });
    let hints: Vec<(DeviceAddr, Bytes)> = entries.iter().map(|e| (e.device, e.item.clone())).collect();
    let pending = ctx.store.enqueue_append(AppendRequest { dedup, server_msg_id, server_ts_ms: now, entries }).await?;
    Ok(PendingSend { pending, entries: hints, server_msg_id, server_ts_ms: now, client_msg_id: msg.client_msg_id })
}

impl PendingSend {
    /// A queued send: `entries` are the (device, item) pairs to hint once it is durable.
    pub(crate) fn new(
        pending: PendingAppend,
        entries: Vec<(DeviceAddr, Bytes)>,
        server_msg_id: u64,
        server_ts_ms: u64,
        client_msg_id: String,
    ) -> Self {
        Self { pending, entries, server_msg_id, server_ts_ms, client_msg_id }
    }

    /// Waits until the send is durable, hints the recipients' sessions and builds the answer.
    pub async fn finish(self, ctx: &Ctx) -> Result<pb::SendResult, ServiceError> {
        let outcome = self.pending.await?;
        let (server_msg_id, server_ts_ms, duplicate) = match outcome {
            AppendOutcome::Appended { seqs } => {
                notify(ctx, self.entries, &seqs);
                (self.server_msg_id, self.server_ts_ms, false)
            }
            AppendOutcome::Duplicate { server_msg_id, server_ts_ms } => (server_msg_id, server_ts_ms, true),
        };
        Ok(pb::SendResult {
            status: pb::SendStatus::Accepted as i32,
            server_msg_id,
            server_ts_ms,
            client_msg_id: self.client_msg_id,
            duplicate,
        })
    }
}

fn validate_send(ctx: &Ctx, msg: &pb::SendMessage) -> Result<(), ServiceError> {
    if msg.to_account_id == 0 && msg.to_phone.is_empty() {
        return Err(ServiceError::InvalidArgument("a recipient (to_account_id or to_phone) is required".into()));
    }
    let body = msg.body.as_ref().map(|b| match b {
        send_message::Body::Payload(p) => BodyRef::Payload(p),
        send_message::Body::PerDevice(d) => BodyRef::PerDevice(&d.payloads),
    });
    check_send_fields(ctx, &msg.client_msg_id, body, 2 * ctx.limits.max_devices_per_account as usize)
}

/// A send's body, whichever operation (1:1 or group) carries it.
pub(crate) enum BodyRef<'a> {
    /// One payload for every device.
    Payload(&'a [u8]),
    /// One payload per device.
    PerDevice(&'a [pb::DevicePayload]),
}

/// The limits every send obeys: a client_msg_id within `max_client_msg_id_bytes`, a body, and
/// each payload within `max_payload_bytes` (per-device: 1 to `max_payloads` of them).
pub(crate) fn check_send_fields(
    ctx: &Ctx,
    client_msg_id: &str,
    body: Option<BodyRef<'_>>,
    max_payloads: usize,
) -> Result<(), ServiceError> {
    let invalid = |m: String| Err(ServiceError::InvalidArgument(m));
    if client_msg_id.is_empty() {
        return invalid("client_msg_id is required".into());
    }
    if client_msg_id.len() > ctx.limits.max_client_msg_id_bytes as usize {
        return invalid("client_msg_id is longer than the limit".into());
    }
    let max = ctx.limits.max_payload_bytes;
    let too_large = |size: usize| (size > max as usize).then_some(ServiceError::PayloadTooLarge { size, max });
    match body {
        None => invalid("a payload is required".into()),
        Some(BodyRef::Payload(p)) => too_large(p.len()).map_or(Ok(()), Err),
        Some(BodyRef::PerDevice(payloads)) => {
            if payloads.is_empty() || payloads.len() > max_payloads {
                return invalid(format!("per_device must list between 1 and {max_payloads} payloads"));
            }
            payloads.iter().find_map(|p| too_large(p.payload.len())).map_or(Ok(()), Err)
        }
    }
}

async fn resolve_recipient(ctx: &Ctx, msg: &pb::SendMessage) -> Result<std::sync::Arc<AccountView>, ServiceError> {
    let found = if msg.to_account_id != 0 {
        ctx.directory.by_id(msg.to_account_id).await?
    } else {
        let phone =
            iris_proto::phone::validate(&msg.to_phone).map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
        ctx.directory.by_phone(&phone).await?
    };
    found.ok_or(ServiceError::UnknownRecipient)
}

/// Every device of the recipient and every other device of the sender, without repeats.
fn target_devices(recipient: &AccountView, me: &AccountView, sender: DeviceAddr) -> Vec<DeviceAddr> {
    let mut targets: BTreeSet<DeviceAddr> =
        recipient.devices.iter().map(|&d| DeviceAddr::new(recipient.id, d)).collect();
    targets.extend(me.devices.iter().map(|&d| DeviceAddr::new(me.id, d)));
    targets.remove(&sender);
    targets.into_iter().collect()
}

/// The devices per-device payloads name, and the devices they must name.
pub(crate) type DeviceSets = (BTreeSet<DeviceAddr>, BTreeSet<DeviceAddr>);

/// Both sets, or `None` when they are the same (1:1 and group sends share this); naming a device
/// twice is invalid.
pub(crate) fn device_sets(
    per_device: &pb::DevicePayloads,
    targets: &[DeviceAddr],
) -> Result<Option<DeviceSets>, ServiceError> {
    let given: BTreeSet<DeviceAddr> =
        per_device.payloads.iter().map(|p| DeviceAddr::new(p.account_id, p.device_id)).collect();
    if given.len() != per_device.payloads.len() {
        return Err(ServiceError::InvalidArgument("per_device names a device twice".into()));
    }
    let wanted: BTreeSet<DeviceAddr> = targets.iter().copied().collect();
    Ok((given != wanted).then_some((given, wanted)))
}

/// Signal-style check: per-device payloads must name exactly the current target devices.
fn check_device_lists(
    per_device: &pb::DevicePayloads,
    targets: &[DeviceAddr],
    accounts: &[&AccountView],
) -> Result<(), ServiceError> {
    let Some((given, wanted)) = device_sets(per_device, targets)? else { return Ok(()) };
    let mut mismatches = Vec::new();
    let mut accounts_seen = BTreeSet::new();
    for account in accounts.iter().filter(|a| accounts_seen.insert(a.id)) {
        let of = |set: &BTreeSet<DeviceAddr>| -> BTreeSet<DeviceId> {
            set.iter().filter(|d| d.account == account.id).map(|d| d.device).collect()
        };
        let (g, w) = (of(&given), of(&wanted));
        let missing: Vec<DeviceId> = w.difference(&g).copied().collect();
        let extra: Vec<DeviceId> = g.difference(&w).copied().collect();
        if !missing.is_empty() || !extra.is_empty() {
            mismatches.push(pb::DeviceMismatch {
                account_id: account.id,
                missing_devices: missing,
                extra_devices: extra,
            });
        }
    }
    if given.iter().any(|d| !accounts_seen.contains(&d.account)) {
        return Err(ServiceError::InvalidArgument(
            "per_device names a device of an account not in this conversation".into(),
        ));
    }
    Err(ServiceError::StaleDevices(mismatches))
}

/// Records that `reader` read messages it received from `msg.to_account_id`: a durable receipt
/// for the sender's devices and a read-sync for the reader's other devices.
pub async fn read_receipt(
    ctx: &Ctx,
    reader: DeviceAddr,
    r: pb::SendReceipt,
) -> Result<pb::ReceiptResult, ServiceError> {
    if r.r#type != pb::ReceiptType::Read as i32 {
        return Err(ServiceError::InvalidArgument("clients may only send READ receipts".into()));
    }
    if r.server_msg_ids.is_empty() || r.server_msg_ids.len() > RECEIPT_IDS_MAX {
        return Err(ServiceError::InvalidArgument(format!("server_msg_ids must hold 1 to {RECEIPT_IDS_MAX} ids")));
    }
    let sender = ctx.directory.by_id(r.to_account_id).await?.ok_or(ServiceError::UnknownRecipient)?;
    let me = ctx.directory.by_id(reader.account).await?.ok_or(ServiceError::DeviceRevoked)?;
    let now = ctx.clock.now_ms();
    let id = ctx.ids.next(now);
    let receipt = |peer: AccountId| {
        encode_item(
            id,
            now,
            inbox_item::Body::Receipt(pb::Receipt {
                r#type: pb::ReceiptType::Read as i32,
                from_account_id: reader.account,
                from_device_id: reader.device,
                peer_account_id: peer,
                server_msg_ids: r.server_msg_ids.clone(),
            }),
        )
    };
    let to_sender = receipt(reader.account);
    let to_me = receipt(sender.id);
    let mut entries: Vec<NewEntry> = Vec::new();
    if sender.id != me.id && !blocks::is_blocked(ctx, sender.id, me.id).await? {
        entries.extend(
            sender.devices.iter().map(|&d| NewEntry { device: DeviceAddr::new(sender.id, d), item: to_sender.clone() }),
        );
    }
    entries.extend(
        me.devices
            .iter()
            .filter(|&&d| d != reader.device)
            .map(|&d| NewEntry { device: DeviceAddr::new(me.id, d), item: to_me.clone() }),
    );
    append_and_notify(ctx, AppendRequest { dedup: None, server_msg_id: id, server_ts_ms: now, entries }).await?;
    Ok(pb::ReceiptResult { server_ts_ms: now })
}

/// Tells each sender's devices that `recipient` acked their messages (`by_sender`: sender
/// account → message ids). One receipt per sender, all in one append: an ack usually covers
/// messages of many senders, and one append per sender cost a committer round trip each (and
/// as many commit waits in a row before the ack itself could be applied).
pub async fn delivered_receipts(
    ctx: &Ctx,
    recipient: DeviceAddr,
    by_sender: Vec<(AccountId, Vec<u64>)>,
) -> Result<(), ServiceError> {
    let now = ctx.clock.now_ms();
    let mut entries: Vec<NewEntry> = Vec::new();
    let mut first_id = None;
    for (sender, ids) in by_sender {
        let Some(view) = ctx.directory.by_id(sender).await? else { continue };
        if blocks::is_blocked(ctx, sender, recipient.account).await? {
            continue;
        }
        let id = ctx.ids.next(now);
        first_id.get_or_insert(id);
        let item = encode_item(
            id,
            now,
            inbox_item::Body::Receipt(pb::Receipt {
                r#type: pb::ReceiptType::Delivered as i32,
                from_account_id: recipient.account,
                from_device_id: recipient.device,
                peer_account_id: recipient.account,
                server_msg_ids: ids,
            }),
        );
        entries
            .extend(view.devices.iter().map(|&d| NewEntry { device: DeviceAddr::new(sender, d), item: item.clone() }));
    }
    if let Some(server_msg_id) = first_id {
        // `server_msg_id` only answers duplicates, and receipts are never deduplicated.
        append_and_notify(ctx, AppendRequest { dedup: None, server_msg_id, server_ts_ms: now, entries }).await?;
    }
    Ok(())
}

pub(crate) async fn append_and_notify(ctx: &Ctx, req: AppendRequest) -> Result<AppendOutcome, ServiceError> {
    let entries: Vec<(DeviceAddr, Bytes)> = req.entries.iter().map(|e| (e.device, e.item.clone())).collect();
    let outcome = ctx.store.append(req).await?;
    if let AppendOutcome::Appended { seqs } = &outcome {
        notify(ctx, entries, seqs);
    }
    Ok(outcome)
}

fn notify(ctx: &Ctx, entries: Vec<(DeviceAddr, Bytes)>, seqs: &[u64]) {
    for ((device, item), &seq) in entries.into_iter().zip(seqs) {
        ctx.router.notify(device, Hint { seq, item });
    }
}

pub(crate) fn encode_item(server_msg_id: u64, server_ts_ms: u64, body: inbox_item::Body) -> Bytes {
    pb::InboxItem { seq: 0, server_msg_id, server_ts_ms, body: Some(body) }.encode_to_vec().into()
}
