//! Forwards: one payload to at most [`FORWARD_CHATS_MAX`] chats (accounts and groups), sent as
//! ordinary sends with `forwarded` set and client_msg_ids `<id>/<i>`.
//!
//! Copies are sent one after another and a failure stops the rest (earlier copies stay sent; a
//! retry with the same client_msg_id is deduplicated per copy). Built on the messaging and groups
//! services; knows nothing of sockets or sessions.

use std::sync::Arc;

use iris_proto::pb;
use iris_store::{AccountId, DeviceAddr};

use crate::error::ServiceError;
use crate::groups::Groups;
use crate::messaging::Messaging;
use crate::ratelimit::SharedLimit;

/// Most chats one `Forward` reaches.
pub const FORWARD_CHATS_MAX: usize = 5;

/// Sends forwards.
pub struct Forwards {
    messaging: Arc<Messaging>,
    groups: Arc<Groups>,
    send_limit: SharedLimit<AccountId>,
}

impl Forwards {
    /// Forwards sent through `messaging` and `groups`, each copy counted against `send_limit`.
    pub fn new(messaging: Arc<Messaging>, groups: Arc<Groups>, send_limit: SharedLimit<AccountId>) -> Self {
        Self { messaging, groups, send_limit }
    }

    /// Sends `op`'s payload to each of its chats in turn; answers once all copies are durable.
    pub async fn forward(&self, sender: DeviceAddr, op: pb::Forward) -> Result<pb::ForwardResult, ServiceError> {
        let n_chats = op.to_account_ids.len() + op.group_ids.len();
        if n_chats == 0 || n_chats > FORWARD_CHATS_MAX {
            return Err(ServiceError::InvalidArgument(format!(
                "a forward reaches 1 to {FORWARD_CHATS_MAX} chats, not {n_chats}"
            )));
        }
        if op.client_msg_id.is_empty() {
            return Err(ServiceError::InvalidArgument("client_msg_id is required".into()));
        }
        let copy_id = |i: usize| format!("{}/{i}", op.client_msg_id);
        let mut results = Vec::with_capacity(n_chats);
        for (i, &to) in op.to_account_ids.iter().enumerate() {
            self.send_limit.check(&sender.account)?;
            let msg = pb::SendMessage {
                client_msg_id: copy_id(i),
                to_account_id: to,
                body: Some(pb::send_message::Body::Payload(op.payload.clone())),
                forwarded: true,
                ..Default::default()
            };
            results.push(self.messaging.send(sender, msg).await?);
        }
        for (i, &group_id) in op.group_ids.iter().enumerate() {
            let msg = pb::GroupSend {
                group_id,
                client_msg_id: copy_id(op.to_account_ids.len() + i),
                body: Some(pb::group_send::Body::Payload(op.payload.clone())),
                forwarded: true,
                ..Default::default()
            };
            results.push(self.groups.start_forward(sender, msg).await?.finish().await?);
        }
        Ok(pb::ForwardResult { results })
    }
}
