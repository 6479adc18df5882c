//! Sending end-to-end encrypted: 1:1 texts and replies, group texts and replies, edits,
//! reactions and forwards, each built from the payloads of `payloads.rs` and sent through the
//! [`Client`](crate::Client); sent messages' conversations are remembered for later edits and
//! reactions.

use iris_proto::pb::{self, MessageActionType};

use super::envelope::{Body, Content, VERSION};
use super::payloads::{distinct, nobody};
use super::{Conversation, E2e, E2eError};
use crate::client::new_client_msg_id;
use crate::error::ClientError;

/// Most chats a forward reaches (the server's bound, which it enforces).
const FORWARD_CHATS_MAX: usize = 5;

impl E2e {
    /// Sends `text` to `to_account`, encrypted for each of its devices and my other devices.
    pub async fn send_text(&self, to_account: u64, text: &str) -> Result<pb::SendResult, ClientError> {
        self.send_direct(to_account, Body::Text { text: text.to_owned() }, 0, new_client_msg_id(), Vec::new()).await
    }

    /// Sends media (already uploaded, encrypted with keys of their own) to `to_account`: the
    /// `MediaMessage` with those keys goes inside the ciphertext; `media_ids` (the blobs it
    /// references, for the server's reference counting) stays outside.
    pub async fn send_media(
        &self,
        to_account: u64,
        media: &pb::MediaMessage,
        media_ids: Vec<String>,
    ) -> Result<pb::SendResult, ClientError> {
        let body = media_body(media);
        self.send_direct(to_account, body, 0, new_client_msg_id(), media_ids).await
    }

    /// Like [`send_text`](Self::send_text), as a reply to message `reply_to` of the chat.
    pub async fn reply(&self, to_account: u64, reply_to: u64, text: &str) -> Result<pb::SendResult, ClientError> {
        self.send_direct(to_account, Body::Text { text: text.to_owned() }, reply_to, new_client_msg_id(), Vec::new())
            .await
    }

    async fn send_direct(
        &self,
        to_account: u64,
        body: Body,
        reply_to: u64,
        client_msg_id: String,
        media_ids: Vec<String>,
    ) -> Result<pb::SendResult, ClientError> {
        let content = Content { v: VERSION, sender: self.me, to_account, group: 0, body };
        let result = self
            .retrying_stale(|| async {
                let body = match self.per_device(to_account, &content).await? {
                    payloads if payloads.is_empty() => pb::send_message::Body::Payload(nobody()),
                    payloads => pb::send_message::Body::PerDevice(pb::DevicePayloads { payloads }),
                };
                let msg = pb::SendMessage {
                    client_msg_id: client_msg_id.clone(),
                    to_account_id: to_account,
                    body: Some(body),
                    reply_to_server_msg_id: reply_to,
                    media_ids: media_ids.clone(),
                    ..Default::default()
                };
                self.client.send_message(msg).await
            })
            .await?;
        self.remember(result.server_msg_id, Conversation::Direct(to_account)).await?;
        Ok(result)
    }

    /// Sends `text` to a group: one Megolm ciphertext for every member (the group's session
    /// key is shared pairwise first when the member devices changed).
    pub async fn group_send_text(&self, group: u64, text: &str) -> Result<pb::SendResult, ClientError> {
        self.group_send(group, Body::Text { text: text.to_owned() }, 0).await
    }

    /// Like [`group_send_text`](Self::group_send_text), as a reply to message `reply_to`.
    pub async fn group_reply(&self, group: u64, reply_to: u64, text: &str) -> Result<pb::SendResult, ClientError> {
        self.group_send(group, Body::Text { text: text.to_owned() }, reply_to).await
    }

    async fn group_send(&self, group: u64, body: Body, reply_to: u64) -> Result<pb::SendResult, ClientError> {
        let content = Content { v: VERSION, sender: self.me, to_account: 0, group, body };
        let payload = self.group_payload(group, &content).await?;
        let result = self
            .client
            .group_send_message(pb::GroupSend {
                group_id: group,
                client_msg_id: new_client_msg_id(),
                body: Some(pb::group_send::Body::Payload(payload.into())),
                reply_to_server_msg_id: reply_to,
                ..Default::default()
            })
            .await?;
        self.remember(result.server_msg_id, Conversation::Group(group)).await?;
        Ok(result)
    }

    /// Edits my message `target`, encrypted like a message of its conversation (`conversation`
    /// when given, else the one this device remembers for it).
    pub async fn edit(
        &self,
        target: u64,
        text: &str,
        conversation: Option<Conversation>,
    ) -> Result<pb::ActionResult, ClientError> {
        self.action(MessageActionType::Edit, target, Body::Edit { target, text: text.to_owned() }, conversation).await
    }

    /// Reacts to `target` (an empty `emoji` removes my reaction), encrypted like a message of
    /// its conversation.
    pub async fn react(
        &self,
        target: u64,
        emoji: &str,
        conversation: Option<Conversation>,
    ) -> Result<pb::ActionResult, ClientError> {
        self.action(MessageActionType::React, target, Body::React { target, emoji: emoji.to_owned() }, conversation)
            .await
    }

    async fn action(
        &self,
        kind: MessageActionType,
        target: u64,
        body: Body,
        conversation: Option<Conversation>,
    ) -> Result<pb::ActionResult, ClientError> {
        let conversation = match conversation {
            Some(c) => c,
            None => {
                *self.inner.lock().await.state.conversations.get(&target).ok_or(E2eError::UnknownMessage(target))?
            }
        };
        let send = |op: pb::SendAction| async move {
            match self.client.op(pb::client_op::Op::Action(op)).await? {
                pb::server_event::Event::ActionResult(r) => Ok(r),
                other => Err(crate::error::unexpected(&other)),
            }
        };
        let base = pb::SendAction { r#type: kind as i32, target_server_msg_id: target, ..Default::default() };
        match conversation {
            Conversation::Direct(peer) => {
                let content = Content { v: VERSION, sender: self.me, to_account: peer, group: 0, body };
                self.retrying_stale(|| async {
                    let op = match self.per_device(peer, &content).await? {
                        payloads if payloads.is_empty() => pb::SendAction { payload: nobody(), ..base.clone() },
                        payloads => {
                            pb::SendAction { per_device: Some(pb::DevicePayloads { payloads }), ..base.clone() }
                        }
                    };
                    send(op).await
                })
                .await
            }
            Conversation::Group(group) => {
                let content = Content { v: VERSION, sender: self.me, to_account: 0, group, body };
                let payload = self.group_payload(group, &content).await?;
                send(pb::SendAction { payload: payload.into(), ..base }).await
            }
        }
    }

    /// Forwards `text` to people and groups (at most 5 chats), each copy encrypted for its chat.
    pub async fn forward(
        &self,
        text: &str,
        to_accounts: &[u64],
        groups: &[u64],
    ) -> Result<Vec<pb::SendResult>, ClientError> {
        self.forward_body(Body::Text { text: text.to_owned() }, Vec::new(), to_accounts, groups).await
    }

    /// Forwards media received (or sent) earlier: `media` with its keys goes inside each chat's
    /// ciphertext, `media_ids` (the blobs, as the original message named them) outside, so each
    /// copy holds references of its own.
    pub async fn forward_media(
        &self,
        media: &pb::MediaMessage,
        media_ids: Vec<String>,
        to_accounts: &[u64],
        groups: &[u64],
    ) -> Result<Vec<pb::SendResult>, ClientError> {
        let body = media_body(media);
        self.forward_body(body, media_ids, to_accounts, groups).await
    }

    async fn forward_body(
        &self,
        body: Body,
        media_ids: Vec<String>,
        to_accounts: &[u64],
        groups: &[u64],
    ) -> Result<Vec<pb::SendResult>, ClientError> {
        let client_msg_id = new_client_msg_id();
        let (to_accounts, groups) = (&distinct(to_accounts)[..], &distinct(groups)[..]);
        if to_accounts.len() + groups.len() > FORWARD_CHATS_MAX {
            // Nothing to encrypt for: the server refuses it (INVALID_ARGUMENT) by its own limit.
            let copy = |(a, g): (u64, u64)| pb::ForwardCopy {
                to_account_id: a,
                group_id: g,
                body: Some(pb::forward_copy::Body::Payload(nobody())),
            };
            let copies = to_accounts.iter().map(|&a| (a, 0)).chain(groups.iter().map(|&g| (0, g))).map(copy).collect();
            let op = pb::Forward { client_msg_id, copies, media_ids, ..Default::default() };
            return match self.client.op(pb::client_op::Op::Forward(op)).await? {
                pb::server_event::Event::ForwardResult(r) => Ok(r.results),
                other => Err(crate::error::unexpected(&other)),
            };
        }
        let results = self
            .retrying_stale(|| async {
                let mut copies = Vec::new();
                for &to in to_accounts {
                    let content = Content { v: VERSION, sender: self.me, to_account: to, group: 0, body: body.clone() };
                    let body = Some(match self.per_device(to, &content).await? {
                        payloads if payloads.is_empty() => pb::forward_copy::Body::Payload(nobody()),
                        payloads => pb::forward_copy::Body::PerDevice(pb::DevicePayloads { payloads }),
                    });
                    copies.push(pb::ForwardCopy { to_account_id: to, group_id: 0, body });
                }
                for &group in groups {
                    let content = Content { v: VERSION, sender: self.me, to_account: 0, group, body: body.clone() };
                    let payload = self.group_payload(group, &content).await?;
                    let body = Some(pb::forward_copy::Body::Payload(payload.into()));
                    copies.push(pb::ForwardCopy { to_account_id: 0, group_id: group, body });
                }
                let op = pb::Forward {
                    client_msg_id: client_msg_id.clone(),
                    copies,
                    media_ids: media_ids.clone(),
                    ..Default::default()
                };
                match self.client.op(pb::client_op::Op::Forward(op)).await? {
                    pb::server_event::Event::ForwardResult(r) => Ok(r.results),
                    other => Err(crate::error::unexpected(&other)),
                }
            })
            .await?;
        let chats =
            to_accounts.iter().map(|&a| Conversation::Direct(a)).chain(groups.iter().map(|&g| Conversation::Group(g)));
        for (result, chat) in results.iter().zip(chats) {
            self.remember(result.server_msg_id, chat).await?;
        }
        Ok(results)
    }
}

/// The body of a message with media: `media` (with its keys) as standard base64 of its
/// protobuf bytes.
fn media_body(media: &pb::MediaMessage) -> Body {
    use base64::Engine as _;
    use prost::Message as _;
    Body::Media { media: base64::engine::general_purpose::STANDARD.encode(media.encode_to_vec()) }
}
