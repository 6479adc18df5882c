//! Receipts: `DELIVERED` when a recipient device acks, `READ` when a client says so, for 1:1 and
//! group messages (`DELIVERED_TO_ALL` / `READ_BY_ALL` once every member did). Each is a durable
//! inbox entry of the sender's devices, written through the send kernel.
//!
//! What an acked entry owes is decided here once ([`ReceiptDue::of`]), for the live path (the
//! session remembers it per delivered entry) and for the resume path (the inbox service reads the
//! entries below a resume cursor back), so both produce the same receipts.
//!
//! A client's `READ` is checked against the message index: only ids of messages the peer sent
//! to the reader's account are passed on ([`Receipts::read`]), so nobody can tell an account its
//! messages were read when they were not even sent to the reader.
//!
//! Knows the kernel, the directory, blocks, the message index and the store's group receipt
//! rows; nothing of sessions, acks or inbox cursors.

use std::collections::BTreeMap;
use std::sync::Arc;

use iris_proto::item_head::InboxItemHead;
use iris_proto::pb::{self, inbox_item};
use iris_store::{AccountId, AppendRequest, DeviceAddr, GroupId, GroupStore};

use crate::blocks::Blocks;
use crate::clock::Clock;
use crate::directory::Directory;
use crate::error::ServiceError;
use crate::fanout::{encode_item, entries_for, Fanout};
use crate::ids::IdGenerator;
use crate::message_index::MessageIndex;
use crate::router::Router;

/// Most message ids in one read receipt.
pub const RECEIPT_IDS_MAX: usize = 1000;

/// The receipt one inbox entry owes once the device holding it acks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptDue {
    /// Nothing: a receipt, an event, or the account's own message from another device.
    None,
    /// A `DELIVERED` receipt to the sender of a 1:1 message.
    Direct {
        /// The sending account.
        sender: AccountId,
        /// The message.
        server_msg_id: u64,
    },
    /// A delivery mark on a group message (and `DELIVERED_TO_ALL` when it was the last).
    Group {
        /// The group.
        group: GroupId,
        /// The message.
        server_msg_id: u64,
    },
}

impl ReceiptDue {
    /// What acking an item owes when the device acking it belongs to `me`, from the item's
    /// head (decoded without its payload: the session does this for every delivered entry).
    pub fn of(item: &InboxItemHead, me: AccountId) -> Self {
        match (item.message, item.group_message) {
            (Some(m), _) if m.from_account_id != me => {
                Self::Direct { sender: m.from_account_id, server_msg_id: item.server_msg_id }
            }
            (None, Some(m)) if m.from_account_id != me => {
                Self::Group { group: m.group_id, server_msg_id: item.server_msg_id }
            }
            _ => Self::None,
        }
    }
}

/// The receipts one ack owes: 1:1 message ids per sender, and group messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owed {
    by_sender: BTreeMap<AccountId, Vec<u64>>,
    group: Vec<(GroupId, u64)>,
}

impl Owed {
    /// Adds what one acked entry owes.
    pub fn add(&mut self, due: ReceiptDue) {
        match due {
            ReceiptDue::None => {}
            ReceiptDue::Direct { sender, server_msg_id } => {
                self.by_sender.entry(sender).or_default().push(server_msg_id)
            }
            ReceiptDue::Group { group, server_msg_id } => self.group.push((group, server_msg_id)),
        }
    }

    /// Adds everything `other` owes (two acks applied as one).
    pub fn merge(&mut self, other: Owed) {
        for (sender, ids) in other.by_sender {
            self.by_sender.entry(sender).or_default().extend(ids);
        }
        self.group.extend(other.group);
    }

    /// Whether no receipt is owed.
    pub fn is_empty(&self) -> bool {
        self.by_sender.is_empty() && self.group.is_empty()
    }

    /// The 1:1 message ids owed to `sender`, in ack order.
    pub fn to_sender(&self, sender: AccountId) -> &[u64] {
        self.by_sender.get(&sender).map_or(&[], Vec::as_slice)
    }

    /// The group messages owed a delivery mark, in ack order.
    pub fn group_messages(&self) -> &[(GroupId, u64)] {
        &self.group
    }
}

/// What the receipts service needs.
pub struct ReceiptsDeps {
    /// Every receipt is an inbox write through the kernel.
    pub fanout: Fanout,
    /// Accounts and their devices.
    pub directory: Arc<Directory>,
    /// A blocked account's receipts never reach the blocker.
    pub blocks: Arc<Blocks>,
    /// Recent messages: what a `READ` may name.
    pub index: Arc<MessageIndex>,
    /// Which connected devices declined which receipt kinds.
    pub router: Arc<Router>,
    /// Group receipt rows.
    pub groups: Arc<dyn GroupStore>,
    /// Server ids of receipts.
    pub ids: Arc<IdGenerator>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

/// Produces receipts.
pub struct Receipts {
    fanout: Fanout,
    directory: Arc<Directory>,
    blocks: Arc<Blocks>,
    index: Arc<MessageIndex>,
    router: Arc<Router>,
    groups: Arc<dyn GroupStore>,
    ids: Arc<IdGenerator>,
    clock: Arc<dyn Clock>,
}

impl Receipts {
    /// Receipts written through `deps.fanout`, group receipt rows kept in `deps.groups`.
    pub fn new(deps: ReceiptsDeps) -> Self {
        let ReceiptsDeps { fanout, directory, blocks, index, router, groups, ids, clock } = deps;
        Self { fanout, directory, blocks, index, router, groups, ids, clock }
    }

    /// The entries putting `item`, a receipt of `kind`, into the inboxes of `devices` that did
    /// not decline the kind (`Hello.receipts_unwanted` of their current connection).
    fn receipt_entries(
        &self,
        devices: impl IntoIterator<Item = DeviceAddr>,
        kind: pb::ReceiptType,
        item: &bytes::Bytes,
    ) -> Vec<iris_store::NewEntry> {
        let wanted: Vec<DeviceAddr> = devices.into_iter().filter(|&d| self.router.wants_receipt(d, kind)).collect();
        entries_for(wanted, item)
    }

    /// Acks `recipient`'s inbox up to `up_to_seq` together with the `DELIVERED` receipts the
    /// acked entries owe: one receipt per sender (an ack usually covers messages of many
    /// senders), all in the same atomic write as the ack where the store can (a crash then
    /// leaves both or neither: never a receipt lost, never one repeated by a redelivery).
    /// Group messages are marked first (marks are idempotent).
    pub async fn acknowledge(&self, recipient: DeviceAddr, owed: Owed, up_to_seq: u64) -> Result<(), ServiceError> {
        if !owed.group.is_empty() {
            self.mark_group(recipient.account, owed.group, false).await?;
        }
        let now = self.clock.now_ms();
        let mut entries = Vec::new();
        let mut first_id = None;
        for (sender, ids) in owed.by_sender {
            let Some(view) = self.directory.by_id(sender).await? else { continue };
            if self.blocks.is_blocked(sender, recipient.account).await? {
                continue;
            }
            let id = self.ids.next(now);
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
            entries.extend(self.receipt_entries(view.addrs(), pb::ReceiptType::Delivered, &item));
        }
        // Every sender's devices may have declined DELIVERED: then the ack goes alone.
        match first_id.filter(|_| !entries.is_empty()) {
            // `server_msg_id` only answers duplicates, and receipts are never deduplicated.
            Some(server_msg_id) => {
                let receipts = AppendRequest::event(server_msg_id, now, entries);
                self.fanout.ack_with_receipts(recipient, up_to_seq, receipts).await?;
            }
            None => self.fanout.ack(recipient, up_to_seq).await?,
        }
        Ok(())
    }

    /// Records that `reader` read messages it received from `r.to_account_id`: a durable receipt
    /// for the sender's devices and a read-sync for the reader's other devices.
    ///
    /// Only ids of indexed 1:1 messages that `r.to_account_id` sent to the reader's account pass
    /// (others are dropped, in the order given, repeats once); when none pass, nothing is stored
    /// and the answer is `NOT_FOUND`. The index keeps messages for the inbox TTL, as long as any
    /// of them can still be waiting in an inbox.
    pub async fn read(&self, reader: DeviceAddr, r: pb::SendReceipt) -> Result<pb::ReceiptResult, ServiceError> {
        if r.r#type != pb::ReceiptType::Read as i32 {
            return Err(ServiceError::InvalidArgument("clients may only send READ receipts".into()));
        }
        if r.server_msg_ids.is_empty() || r.server_msg_ids.len() > RECEIPT_IDS_MAX {
            return Err(ServiceError::InvalidArgument(format!("server_msg_ids must hold 1 to {RECEIPT_IDS_MAX} ids")));
        }
        let sender = self.directory.by_id(r.to_account_id).await?.ok_or(ServiceError::UnknownRecipient)?;
        let me = self.directory.by_id(reader.account).await?.ok_or(ServiceError::DeviceRevoked)?;
        let server_msg_ids = self.received_from(sender.id, reader.account, &r.server_msg_ids).await?;
        if server_msg_ids.is_empty() {
            return Err(ServiceError::NotFound("no message of these ids was sent to you by that account"));
        }
        let r = pb::SendReceipt { server_msg_ids, ..r };
        let now = self.clock.now_ms();
        let id = self.ids.next(now);
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
        let read = pb::ReceiptType::Read;
        let mut entries = Vec::new();
        if sender.id != me.id && !self.blocks.is_blocked(sender.id, me.id).await? {
            entries.extend(self.receipt_entries(sender.addrs(), read, &receipt(reader.account)));
        }
        entries.extend(self.receipt_entries(me.addrs().filter(|&d| d != reader), read, &receipt(sender.id)));
        if !entries.is_empty() {
            self.fanout.append_receipts(AppendRequest::event(id, now, entries)).await?;
        }
        Ok(pb::ReceiptResult { server_ts_ms: now })
    }

    /// The ids among `ids` of indexed 1:1 messages `sender` sent to `reader`, each once.
    async fn received_from(&self, sender: AccountId, reader: AccountId, ids: &[u64]) -> Result<Vec<u64>, ServiceError> {
        let mut passed: Vec<u64> = Vec::with_capacity(ids.len());
        for &id in ids {
            if passed.contains(&id) {
                continue;
            }
            let sent = self
                .index
                .get(id)
                .await?
                .is_some_and(|m| m.sender == sender && m.conversation == iris_store::Conversation::Direct(reader));
            if sent {
                passed.push(id);
            }
        }
        Ok(passed)
    }

    /// Records that `account` read these group messages (membership already checked; the
    /// store marks only messages of that group whose recipients include `account`, and the
    /// aggregated `READ_BY_ALL` counts only those).
    pub async fn group_read(&self, account: AccountId, messages: Vec<(GroupId, u64)>) -> Result<(), ServiceError> {
        self.mark_group(account, messages, true).await
    }

    /// Records group receipt rows and sends the aggregated receipts that became true.
    async fn mark_group(
        &self,
        account: AccountId,
        messages: Vec<(GroupId, u64)>,
        read: bool,
    ) -> Result<(), ServiceError> {
        let now = self.clock.now_ms();
        // (sender, group, type) → message ids that just became complete.
        let mut complete: BTreeMap<(AccountId, GroupId, i32), Vec<u64>> = BTreeMap::new();
        let marked = self.groups.mark_group_receipts(account, &messages, read, now).await?;
        for ((group, msg), progress) in messages.into_iter().zip(marked) {
            let Some(p) = progress else { continue };
            if p.all_delivered_now {
                complete.entry((p.sender, group, pb::GroupReceiptType::DeliveredToAll as i32)).or_default().push(msg);
            }
            if p.all_read_now {
                complete.entry((p.sender, group, pb::GroupReceiptType::ReadByAll as i32)).or_default().push(msg);
            }
        }
        for ((sender, group_id, r#type), server_msg_ids) in complete {
            let id = self.ids.next(now);
            let item = encode_item(
                id,
                now,
                inbox_item::Body::GroupReceipt(pb::GroupReceipt { r#type, group_id, server_msg_ids }),
            );
            let kind = if r#type == pb::GroupReceiptType::ReadByAll as i32 {
                pb::ReceiptType::Read
            } else {
                pb::ReceiptType::Delivered
            };
            let entries = self.receipt_entries(self.directory.devices_of(&[sender]).await?, kind, &item);
            if entries.is_empty() {
                continue;
            }
            self.fanout.append_receipts(AppendRequest::event(id, now, entries)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    fn message(from: AccountId, id: u64) -> pb::InboxItem {
        let m = pb::Message { from_account_id: from, ..Default::default() };
        pb::InboxItem { server_msg_id: id, body: Some(inbox_item::Body::Message(m)), ..Default::default() }
    }

    fn group_message(from: AccountId, group_id: GroupId, id: u64) -> pb::InboxItem {
        let m = pb::GroupMessage { from_account_id: from, group_id, ..Default::default() };
        pb::InboxItem { server_msg_id: id, body: Some(inbox_item::Body::GroupMessage(m)), ..Default::default() }
    }

    #[test]
    fn only_other_accounts_messages_owe_a_receipt() {
        // Proves: a message from another account owes DELIVERED, a group message a delivery
        // mark; the account's own messages (sent-sync), receipts and events owe nothing.
        let me = 1;
        let receipt =
            pb::InboxItem { body: Some(inbox_item::Body::Receipt(pb::Receipt::default())), ..Default::default() };
        let cases = [
            (message(2, 10), ReceiptDue::Direct { sender: 2, server_msg_id: 10 }),
            (message(me, 11), ReceiptDue::None),
            (group_message(3, 7, 12), ReceiptDue::Group { group: 7, server_msg_id: 12 }),
            (group_message(me, 7, 13), ReceiptDue::None),
            (receipt, ReceiptDue::None),
            (pb::InboxItem::default(), ReceiptDue::None),
        ];
        for (item, due) in cases {
            let head = InboxItemHead::decode(&item.encode_to_vec()[..]).unwrap();
            assert_eq!(ReceiptDue::of(&head, me), due, "{item:?}");
        }
    }

    #[test]
    fn owed_receipts_group_by_sender_and_merge_in_ack_order() {
        let mut first = Owed::default();
        first.add(ReceiptDue::Direct { sender: 2, server_msg_id: 10 });
        first.add(ReceiptDue::None);
        first.add(ReceiptDue::Group { group: 7, server_msg_id: 11 });
        let mut second = Owed::default();
        second.add(ReceiptDue::Direct { sender: 2, server_msg_id: 12 });
        second.add(ReceiptDue::Direct { sender: 3, server_msg_id: 13 });
        first.merge(second);
        assert_eq!(first.to_sender(2), &[10, 12]);
        assert_eq!(first.to_sender(3), &[13]);
        assert_eq!(first.group_messages(), &[(7, 11)]);
        assert!(Owed::default().is_empty() && !first.is_empty());
    }
}
