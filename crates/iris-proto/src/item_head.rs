//! The few fields of a stored `InboxItem` the server needs in order to deliver it, decoded
//! without its payload, strings or lists: when it was accepted, its message id, and who sent it
//! (1:1 or group), which decides the receipt its ack owes. A full [`crate::pb::InboxItem`]
//! decode per delivered entry cost more than everything else a delivery does.
//!
//! The field numbers are those of `iris.proto`'s `InboxItem`, `Message` and `GroupMessage`;
//! prost skips every other field. The tests check the head against a full decode.

/// The head of an encoded `InboxItem`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct InboxItemHead {
    /// `InboxItem.server_msg_id`.
    #[prost(uint64, tag = "2")]
    pub server_msg_id: u64,
    /// `InboxItem.server_ts_ms`.
    #[prost(uint64, tag = "3")]
    pub server_ts_ms: u64,
    /// Set when the body is a 1:1 `Message` (`InboxItem.message`).
    #[prost(message, optional, tag = "4")]
    pub message: Option<MessageHead>,
    /// Set when the body is a `GroupMessage` (`InboxItem.group_message`).
    #[prost(message, optional, tag = "6")]
    pub group_message: Option<GroupMessageHead>,
    /// Set when the body is a 1:1 `Receipt` (`InboxItem.receipt`).
    #[prost(message, optional, tag = "5")]
    pub receipt: Option<ReceiptHead>,
    /// Set when the body is a `GroupReceipt` (`InboxItem.group_receipt`).
    #[prost(message, optional, tag = "8")]
    pub group_receipt: Option<ReceiptHead>,
}

impl InboxItemHead {
    /// Whether the item is a receipt (1:1 or group): news about a message already delivered,
    /// which may wait a little to share a write with something else (`session.receipt_hold_ms`).
    pub fn is_receipt(&self) -> bool {
        self.receipt.is_some() || self.group_receipt.is_some()
    }

    /// The kind of a receipt (1:1 or group), as a `ReceiptType`: a group's `DELIVERED_TO_ALL`
    /// is `DELIVERED` and its `READ_BY_ALL` is `READ`, the kinds a connection may decline.
    pub fn receipt_kind(&self) -> Option<crate::pb::ReceiptType> {
        let head = self.receipt.or(self.group_receipt)?;
        // The two enums number their kinds alike (1 delivered, 2 read).
        crate::pb::ReceiptType::try_from(head.r#type).ok()
    }
}

/// The kind of a `Receipt` or a `GroupReceipt`; every other field is skipped.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct ReceiptHead {
    /// `Receipt.type` (a `ReceiptType`) or `GroupReceipt.type` (a `GroupReceiptType`).
    #[prost(int32, tag = "1")]
    pub r#type: i32,
}

/// The sender of a 1:1 `Message`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct MessageHead {
    /// `Message.from_account_id`.
    #[prost(uint64, tag = "1")]
    pub from_account_id: u64,
}

/// The group and sender of a `GroupMessage`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct GroupMessageHead {
    /// `GroupMessage.group_id`.
    #[prost(uint64, tag = "1")]
    pub group_id: u64,
    /// `GroupMessage.from_account_id`.
    #[prost(uint64, tag = "2")]
    pub from_account_id: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::{self, inbox_item};
    use prost::Message as _;

    fn head_of(item: &pb::InboxItem) -> InboxItemHead {
        InboxItemHead::decode(&item.encode_to_vec()[..]).unwrap()
    }

    #[test]
    fn the_head_has_the_fields_of_a_full_decode() {
        let message = pb::Message {
            from_account_id: 42,
            from_device_id: 3,
            to_account_id: 7,
            payload: vec![1; 500].into(),
            client_msg_id: "c1".into(),
            media_ids: vec!["m".into()],
            ..Default::default()
        };
        let item = pb::InboxItem {
            seq: 9,
            server_msg_id: 1001,
            server_ts_ms: 1_700_000_000_123,
            body: Some(inbox_item::Body::Message(message)),
            expires_at_ms: 5,
        };
        assert_eq!(
            head_of(&item),
            InboxItemHead {
                server_msg_id: 1001,
                server_ts_ms: 1_700_000_000_123,
                message: Some(MessageHead { from_account_id: 42 }),
                ..Default::default()
            }
        );
        let group = pb::InboxItem {
            server_msg_id: 1002,
            body: Some(inbox_item::Body::GroupMessage(pb::GroupMessage {
                group_id: 77,
                from_account_id: 43,
                payload: vec![2; 40].into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let head = head_of(&group);
        assert_eq!(head.group_message, Some(GroupMessageHead { group_id: 77, from_account_id: 43 }));
        assert_eq!(head.message, None);
        let receipt = pb::InboxItem {
            server_msg_id: 1003,
            body: Some(inbox_item::Body::Receipt(pb::Receipt {
                r#type: pb::ReceiptType::Read as i32,
                server_msg_ids: vec![1, 2],
                ..Default::default()
            })),
            ..Default::default()
        };
        let head = head_of(&receipt);
        let read = ReceiptHead { r#type: pb::ReceiptType::Read as i32 };
        assert_eq!(head, InboxItemHead { server_msg_id: 1003, receipt: Some(read), ..Default::default() });
        assert!(head.is_receipt());
        assert_eq!(head.receipt_kind(), Some(pb::ReceiptType::Read));
        let group_receipt = pb::InboxItem {
            body: Some(inbox_item::Body::GroupReceipt(pb::GroupReceipt {
                r#type: pb::GroupReceiptType::DeliveredToAll as i32,
                group_id: 77,
                ..Default::default()
            })),
            ..Default::default()
        };
        assert!(head_of(&group_receipt).is_receipt());
        assert_eq!(head_of(&group_receipt).receipt_kind(), Some(pb::ReceiptType::Delivered));
        let read_by_all = pb::GroupReceipt { r#type: pb::GroupReceiptType::ReadByAll as i32, ..Default::default() };
        let read_by_all =
            pb::InboxItem { body: Some(inbox_item::Body::GroupReceipt(read_by_all)), ..Default::default() };
        assert_eq!(head_of(&read_by_all).receipt_kind(), Some(pb::ReceiptType::Read));
        assert_eq!(head_of(&group).receipt_kind(), None);
        assert!(!head_of(&group).is_receipt() && !head_of(&item).is_receipt());
    }
}
