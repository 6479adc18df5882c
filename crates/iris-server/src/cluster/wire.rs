//! What nodes tell each other over the bus: one [`NodeBatch`] per published message, holding
//! hints, ephemeral events, kicks, directory invalidations and presence, each for one device or
//! account. Encoded with prost like the client protocol; never stored, so it can change with a
//! release as long as every node of a cluster runs the same one (rolling upgrades add fields,
//! never renumber them).

use bytes::Bytes;
use iris_store::DeviceAddr;
use prost::Message as _;

use crate::router::{Hint, Kick};

/// One published message: everything one node has for another at that moment.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeBatch {
    /// The node that sent it.
    #[prost(uint32, tag = "1")]
    pub from_node: u32,
    /// The items, applied in order.
    #[prost(message, repeated, tag = "2")]
    pub items: Vec<NodeItem>,
}

/// One item for one device (or, for account-wide items, one account with device 0).
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeItem {
    /// The account.
    #[prost(uint64, tag = "1")]
    pub account: u64,
    /// The device (0 for account-wide items).
    #[prost(uint32, tag = "2")]
    pub device: u32,
    /// What to do.
    #[prost(oneof = "node_item::Kind", tags = "3, 4, 5, 6, 7, 8, 9")]
    pub kind: Option<node_item::Kind>,
}

/// The kinds of [`NodeItem`].
pub mod node_item {
    /// What a [`super::NodeItem`] carries.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        /// A committed inbox entry: the device's session pushes it.
        #[prost(message, tag = "3")]
        Hint(super::WireHint),
        /// An encoded `iris.v1.ServerEvent` (typing): pushed if there is room, else dropped.
        #[prost(bytes = "bytes", tag = "4")]
        Ephemeral(bytes::Bytes),
        /// End the device's session: 1 revoked, 2 replaced.
        #[prost(uint32, tag = "5")]
        Kick(u32),
        /// The account's devices changed: drop it from the directory cache.
        #[prost(bool, tag = "6")]
        InvalidateAccount(bool),
        /// The account's presence as seen by the sending node.
        #[prost(message, tag = "7")]
        Presence(super::WirePresence),
        /// A call operation of the device, for the node holding the call: run it, answer.
        #[prost(message, tag = "8")]
        CallOp(super::WireCallOp),
        /// The answer to a forwarded call operation (account and device 0).
        #[prost(message, tag = "9")]
        CallReply(super::WireCallReply),
    }
}

/// A hint: the entry's sequence number and its encoded `InboxItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireHint {
    /// Sequence number in the device's inbox.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    /// The encoded `InboxItem` (seq 0).
    #[prost(bytes = "bytes", tag = "2")]
    pub item: Bytes,
}

/// An account's presence on the sending node.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WirePresence {
    /// A device of the account is connected to the sending node and not away.
    #[prost(bool, tag = "1")]
    pub online: bool,
    /// When the account was last online there (0: unknown).
    #[prost(uint64, tag = "2")]
    pub last_seen_ms: u64,
    /// The account's privacy code (`presence::Privacy::code`).
    #[prost(uint32, tag = "3")]
    pub privacy: u32,
}

/// A call operation forwarded to the node holding its call.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireCallOp {
    /// The node waiting for the answer.
    #[prost(uint32, tag = "1")]
    pub reply_to_node: u32,
    /// Matches the answer to the waiting operation.
    #[prost(uint64, tag = "2")]
    pub token: u64,
    /// The encoded `iris.v1.CallOp`.
    #[prost(bytes = "bytes", tag = "3")]
    pub op: Bytes,
}

/// The answer to a [`WireCallOp`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireCallReply {
    /// The forwarded operation's token.
    #[prost(uint64, tag = "1")]
    pub token: u64,
    /// The encoded `iris.v1.ServerEvent` answering it (`Done` or `Error`).
    #[prost(bytes = "bytes", tag = "2")]
    pub answer: Bytes,
}

impl NodeItem {
    /// `addr`'s call operation, forwarded by node `reply_to_node` as `token`.
    pub fn call_op(addr: DeviceAddr, reply_to_node: u16, token: u64, op: Bytes) -> Self {
        Self::for_device(addr, node_item::Kind::CallOp(WireCallOp { reply_to_node: reply_to_node.into(), token, op }))
    }

    /// The answer to forwarded call operation `token`.
    pub fn call_reply(token: u64, answer: Bytes) -> Self {
        Self { account: 0, device: 0, kind: Some(node_item::Kind::CallReply(WireCallReply { token, answer })) }
    }

    /// A hint for `addr`.
    pub fn hint(addr: DeviceAddr, hint: Hint) -> Self {
        Self::for_device(addr, node_item::Kind::Hint(WireHint { seq: hint.seq, item: hint.item }))
    }

    /// An ephemeral event for `addr`.
    pub fn ephemeral(addr: DeviceAddr, event: &iris_proto::pb::ServerEvent) -> Self {
        Self::for_device(addr, node_item::Kind::Ephemeral(event.encode_to_vec().into()))
    }

    /// A kick of `addr`.
    pub fn kick(addr: DeviceAddr, why: Kick) -> Self {
        let code = match why {
            Kick::Revoked => 1,
            Kick::Replaced => 2,
            Kick::AccountDeleted => 3,
            Kick::ShuttingDown => 4,
        };
        Self::for_device(addr, node_item::Kind::Kick(code))
    }

    /// "Forget `account` in your directory cache".
    pub fn invalidate(account: u64) -> Self {
        Self { account, device: 0, kind: Some(node_item::Kind::InvalidateAccount(true)) }
    }

    /// `account`'s presence on this node.
    pub fn presence(account: u64, presence: WirePresence) -> Self {
        Self { account, device: 0, kind: Some(node_item::Kind::Presence(presence)) }
    }

    fn for_device(addr: DeviceAddr, kind: node_item::Kind) -> Self {
        Self { account: addr.account, device: addr.device, kind: Some(kind) }
    }

    /// The device this item is for.
    pub fn addr(&self) -> DeviceAddr {
        DeviceAddr::new(self.account, self.device)
    }
}

/// The kick code of the wire back to a [`Kick`] (unknown codes: replaced, the milder one).
pub fn kick_from_code(code: u32) -> Kick {
    if code == 1 {
        Kick::Revoked
    } else if code == 3 {
        Kick::AccountDeleted
    } else if code == 4 {
        Kick::ShuttingDown
    } else {
        Kick::Replaced
    }
}

/// Encodes a batch for publishing.
pub fn encode(batch: &NodeBatch) -> Bytes {
    batch.encode_to_vec().into()
}

/// Decodes a published batch (`None` if it is not one: logged and dropped by the caller).
pub fn decode(bytes: &[u8]) -> Option<NodeBatch> {
    NodeBatch::decode(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips() {
        let a = DeviceAddr::new(7, 2);
        let batch = NodeBatch {
            from_node: 3,
            items: vec![
                NodeItem::hint(a, Hint { seq: 9, item: Bytes::from_static(b"x") }),
                NodeItem::kick(a, Kick::Revoked),
                NodeItem::invalidate(7),
                NodeItem::presence(7, WirePresence { online: true, last_seen_ms: 0, privacy: 2 }),
                NodeItem::call_op(a, 3, 11, Bytes::from_static(b"op")),
                NodeItem::call_reply(11, Bytes::from_static(b"done")),
            ],
        };
        let back = decode(&encode(&batch)).unwrap();
        assert_eq!(back, batch);
        assert_eq!(back.items[0].addr(), a);
        assert!(decode(b"\xff\xff\xff").is_none());
    }
}
