//! Group sends, group reads and receipt details.
//!
//! A shared payload is stored once per group message ([`GroupPayloads::put`], made durable by the
//! synced commit of the references); each target device's inbox gets a `GroupMessage` with
//! `payload_by_ref` and no payload. Sessions get the full item in their hint (the fast path);
//! a session reading its inbox has references resolved by the inbox service. Payloads and
//! receipt records expire with the inbox TTL (server message ids start with their time).

use std::collections::BTreeMap;

use bytes::Bytes;
use iris_proto::pb::{self, group_send, inbox_item};
use iris_store::{AccountId, AppendRequest, Chat, Conversation, DedupKey, DeviceAddr, MessageRef, NewEntry};

use super::{denied, member_accounts, role_of, Groups, READ_IDS_MAX};
use crate::error::ServiceError;
use crate::fanout::{encode_expiring_item, entries_for, PendingSend};
use crate::send_checks::{check_send_fields, device_sets, BodyRef};

impl Groups {
    /// Checks the sender's membership and role, stores the payload once and queues one
    /// reference per member device, all under the group's lock (and, in cluster mode, its
    /// cluster-wide order until the references are durable).
    pub(super) async fn start_send(&self, sender: DeviceAddr, msg: pb::GroupSend) -> Result<PendingSend, ServiceError> {
        self.validate_send(&msg)?;
        self.send_limit.take(&sender.account).await?;
        let me = self.directory.by_id(sender.account).await?.ok_or(ServiceError::DeviceRevoked)?;
        let _order = self.lock(msg.group_id).lock().await;
        let hold = self.store.hold_group_order(msg.group_id).await?;
        let group = self.load(msg.group_id).await?;
        let role = role_of(&group, sender.account)?;
        if group.settings.admins_only_send && !role.is_admin() {
            return Err(denied("only admins may send to this group"));
        }
        let conversation = Conversation::Group(group.id);
        self.index.check_reply(msg.reply_to_server_msg_id, |r| r.conversation == conversation).await?;
        let mut targets = self.directory.devices_of(&member_accounts(&group)).await?;
        targets.retain(|&d| d != sender);
        let now = self.clock.now_ms();
        let expires_at_ms = self.timers.expires_at(Chat::Group(group.id), now).await?;
        let server_msg_id = self.index.next_id(&self.ids, now, sender.account);
        let item = |payload: Bytes, by_ref: bool| -> Bytes {
            encode_expiring_item(
                server_msg_id,
                now,
                inbox_item::Body::GroupMessage(pb::GroupMessage {
                    group_id: group.id,
                    from_account_id: sender.account,
                    from_device_id: sender.device,
                    from_phone: me.phone.clone(),
                    payload,
                    client_msg_id: msg.client_msg_id.clone(),
                    payload_by_ref: by_ref,
                    reply_to_server_msg_id: msg.reply_to_server_msg_id,
                    forwarded: msg.forwarded,
                    media_ids: msg.media_ids.clone(),
                }),
                expires_at_ms,
            )
        };
        let (entries, hinted_item): (Vec<NewEntry>, Option<Bytes>) = match msg.body.expect("validated") {
            group_send::Body::Payload(payload) => {
                self.payloads.put(group.id, server_msg_id, payload.clone()).await?;
                let (reference, full) = (item(Bytes::new(), true), item(payload, false));
                (entries_for(targets.iter().copied(), &reference), Some(full))
            }
            group_send::Body::PerDevice(per_device) => {
                check_devices(&per_device, &targets)?;
                let entries = per_device
                    .payloads
                    .into_iter()
                    .map(|p| NewEntry {
                        device: DeviceAddr::new(p.account_id, p.device_id),
                        item: item(p.payload, false),
                    })
                    .collect();
                (entries, None)
            }
        };
        let recipients: Vec<AccountId> =
            group.members.iter().map(|m| m.account).filter(|&a| a != sender.account).collect();
        self.store.start_group_receipts(group.id, server_msg_id, sender.account, &recipients).await?;
        let index = MessageRef { expires_at_ms, sender: sender.account, conversation, sent_at_ms: now, deleted: false };
        self.media.record(server_msg_id, sender.account, &msg.media_ids).await?;
        self.index.record(server_msg_id, index).await?;
        let dedup = Some(DedupKey { sender, client_msg_id: msg.client_msg_id.clone() });
        let req = AppendRequest { expires_at_ms, dedup, server_msg_id, server_ts_ms: now, entries };
        let queued = self.fanout.enqueue(req, hinted_item).await?.holding(hold);
        Ok(PendingSend::new(queued, server_msg_id, now, msg.client_msg_id))
    }

    fn validate_send(&self, msg: &pb::GroupSend) -> Result<(), ServiceError> {
        let body = msg.body.as_ref().map(|b| match b {
            group_send::Body::Payload(p) => BodyRef::Payload(p),
            group_send::Body::PerDevice(d) => BodyRef::PerDevice(&d.payloads),
        });
        let most = self.limits.max_group_members as usize * self.limits.max_devices_per_account as usize;
        check_send_fields(&self.limits, &msg.client_msg_id, body, most)?;
        crate::media_refs::MediaRefs::check(&msg.media_ids)
    }

    /// A member read these group messages.
    pub(super) async fn read(&self, me: DeviceAddr, r: pb::GroupRead) -> Result<u64, ServiceError> {
        if r.server_msg_ids.is_empty() || r.server_msg_ids.len() > READ_IDS_MAX {
            return Err(ServiceError::InvalidArgument(format!("server_msg_ids must hold 1 to {READ_IDS_MAX} ids")));
        }
        // Every member reads every message: a lookup in the member index, not the whole group
        // (the group is read only to say why a read is refused).
        if !self.store.is_group_member(r.group_id, me.account).await? {
            let group = self.load(r.group_id).await?;
            role_of(&group, me.account)?;
        }
        self.receipts.group_read(me.account, r.server_msg_ids.iter().map(|&m| (r.group_id, m)).collect()).await?;
        Ok(r.group_id)
    }

    /// Per-member receipts of one of my group messages.
    pub(super) async fn receipt_detail(
        &self,
        me: DeviceAddr,
        r: pb::GroupReceiptDetailRequest,
    ) -> Result<pb::GroupReceiptDetail, ServiceError> {
        let group = self.load(r.group_id).await?;
        role_of(&group, me.account)?;
        let (sender, rows) = self
            .store
            .group_receipts(r.group_id, r.server_msg_id)
            .await?
            .ok_or(ServiceError::NotFound("group message"))?;
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
}

/// Per-device payloads must name exactly the group's current devices (the sender's excluded).
fn check_devices(per_device: &pb::DevicePayloads, targets: &[DeviceAddr]) -> Result<(), ServiceError> {
    let Some((given, wanted)) = device_sets(per_device, targets)? else { return Ok(()) };
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
