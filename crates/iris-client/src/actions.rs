//! Message actions of [`Client`]: replies, forwards, edits, deletions for everyone and
//! reactions, plus [`Reactions`], which folds reaction actions into one per account and message.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use iris_proto::pb::{self, client_op, server_event, MessageActionType};

use crate::client::{new_client_msg_id, Client};
use crate::error::unexpected;
use crate::error::ClientError;

impl Client {
    /// Sends `payload` to `to_account_id` as a reply to message `reply_to` of our conversation
    /// (`NOT_FOUND` if it is not one).
    pub async fn reply(
        &self,
        to_account_id: u64,
        reply_to: u64,
        payload: impl Into<Bytes>,
    ) -> Result<pb::SendResult, ClientError> {
        self.send_message(pb::SendMessage {
            client_msg_id: new_client_msg_id(),
            to_account_id,
            body: Some(pb::send_message::Body::Payload(payload.into())),
            reply_to_server_msg_id: reply_to,
            ..Default::default()
        })
        .await
    }

    /// Sends `payload` to a group as a reply to message `reply_to` of that group.
    pub async fn group_reply(
        &self,
        group_id: u64,
        reply_to: u64,
        payload: impl Into<Bytes>,
    ) -> Result<pb::SendResult, ClientError> {
        self.group_send_message(pb::GroupSend {
            group_id,
            client_msg_id: new_client_msg_id(),
            body: Some(pb::group_send::Body::Payload(payload.into())),
            reply_to_server_msg_id: reply_to,
            ..Default::default()
        })
        .await
    }

    /// Forwards `payload` to at most 5 distinct chats (accounts and groups together); one result
    /// per distinct chat, accounts first (a chat listed twice gets one copy).
    pub async fn forward(
        &self,
        payload: impl Into<Bytes>,
        to_account_ids: Vec<u64>,
        group_ids: Vec<u64>,
    ) -> Result<Vec<pb::SendResult>, ClientError> {
        self.forward_of(0, payload, to_account_ids, group_ids).await
    }

    /// [`forward`](Self::forward) naming the message forwarded (`forwarded_from_msg_id`, its
    /// server id as this device received it; 0 for none): how the server recognises one
    /// message forwarded again and again without reading it (`FORWARDING_LIMITED` once it
    /// reached too many chats in a day).
    pub async fn forward_of(
        &self,
        forwarded_from_msg_id: u64,
        payload: impl Into<Bytes>,
        to_account_ids: Vec<u64>,
        group_ids: Vec<u64>,
    ) -> Result<Vec<pb::SendResult>, ClientError> {
        self.forward_media(forwarded_from_msg_id, payload, Vec::new(), to_account_ids, group_ids).await
    }

    /// [`forward_of`](Self::forward_of) for a message with media: `media_ids` are the forwarded
    /// message's (its payload the same `MediaMessage`), and every copy names them, so each holds
    /// references of its own and the blobs outlive the original's expiry.
    pub async fn forward_media(
        &self,
        forwarded_from_msg_id: u64,
        payload: impl Into<Bytes>,
        media_ids: Vec<String>,
        to_account_ids: Vec<u64>,
        group_ids: Vec<u64>,
    ) -> Result<Vec<pb::SendResult>, ClientError> {
        let op = pb::Forward {
            client_msg_id: new_client_msg_id(),
            payload: payload.into(),
            to_account_ids,
            group_ids,
            copies: vec![],
            forwarded_from_msg_id,
            media_ids,
        };
        match self.op(client_op::Op::Forward(op)).await? {
            server_event::Event::ForwardResult(r) => Ok(r.results),
            other => Err(unexpected(&other)),
        }
    }

    /// Replaces the content of my message `target` (within 15 minutes of sending it).
    pub async fn edit(&self, target: u64, payload: impl Into<Bytes>) -> Result<pb::ActionResult, ClientError> {
        self.action(MessageActionType::Edit, target, payload.into(), String::new()).await
    }

    /// Deletes message `target` for everyone (mine within 48 hours; any member's as group admin).
    pub async fn delete_for_everyone(&self, target: u64) -> Result<pb::ActionResult, ClientError> {
        self.action(MessageActionType::Delete, target, Bytes::new(), String::new()).await
    }

    /// Reacts to `target`, replacing my earlier reaction; an empty `emoji` removes it.
    pub async fn react(&self, target: u64, emoji: &str) -> Result<pb::ActionResult, ClientError> {
        self.action(MessageActionType::React, target, Bytes::new(), emoji.to_owned()).await
    }

    async fn action(
        &self,
        kind: MessageActionType,
        target: u64,
        payload: Bytes,
        emoji: String,
    ) -> Result<pb::ActionResult, ClientError> {
        let op = pb::SendAction { r#type: kind as i32, target_server_msg_id: target, payload, emoji, per_device: None };
        match self.op(client_op::Op::Action(op)).await? {
            server_event::Event::ActionResult(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }
}

/// The current reactions to messages, folded from reaction actions in inbox order: one per
/// account and message, a later one replacing the earlier, an empty emoji removing it.
#[derive(Debug, Default)]
pub struct Reactions {
    by_message: HashMap<u64, BTreeMap<u64, String>>,
}

impl Reactions {
    /// Applies an action; anything but a reaction is ignored.
    pub fn apply(&mut self, action: &pb::MessageAction) {
        if action.r#type != MessageActionType::React as i32 {
            return;
        }
        let of_message = self.by_message.entry(action.target_server_msg_id).or_default();
        if action.emoji.is_empty() {
            of_message.remove(&action.from_account_id);
        } else {
            of_message.insert(action.from_account_id, action.emoji.clone());
        }
    }

    /// Account → emoji for one message.
    pub fn of(&self, server_msg_id: u64) -> BTreeMap<u64, String> {
        self.by_message.get(&server_msg_id).cloned().unwrap_or_default()
    }
}
