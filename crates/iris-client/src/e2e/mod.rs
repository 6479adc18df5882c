//! End-to-end encryption for a [`Client`]: Olm sessions pairwise per device, Megolm for groups,
//! all from vodozemac (libolm's formats), the keys kept in an encrypted local store.
//!
//! ```no_run
//! # async fn demo(client: iris_client::Client) -> Result<(), iris_client::ClientError> {
//! use iris_client::E2e;
//! let e2e = E2e::open(client, "alice.keys".as_ref(), b"a secret kept elsewhere").await?;
//! e2e.send_text(1002, "hello").await?; // one ciphertext per device of 1002 and of my others
//! # Ok(()) }
//! ```
//!
//! - **Sending 1:1**: the devices of the peer and my other devices come from the key directory
//!   (identities pinned the first time they are seen); devices without a session get one from a
//!   claimed key (its signature checked); the message is encrypted once per device and sent as
//!   per-device payloads. `STALE_DEVICES` (a device linked or revoked meanwhile) makes it ask
//!   again and retry, up to [`STALE_RETRIES`] times.
//! - **Groups**: my Megolm session of the group, shared pairwise (a per-device group send) with
//!   every member device, and replaced when the member devices change; messages are then one
//!   shared payload.
//! - **Receiving**: [`E2e::decrypt`] turns an inbox item into [`Opened`]: the sender's identity key
//!   must be the one the directory has for the sending device, the decrypted content must name
//!   that device and conversation; anything else is [`Opened::Undecryptable`] with the reason.
//!
//! Knows the [`Client`] and vodozemac; the formats are `envelope.rs`'s.

pub mod envelope;
mod megolm;
mod olm;
mod safety;
mod store;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use iris_proto::e2e as signed;
use iris_proto::pb::{self, inbox_item, ErrorCode, IdentityChangeType, InboxItem, MessageActionType};
use tokio::sync::Mutex;

use crate::client::{new_client_msg_id, Client};
use crate::error::ClientError;
use envelope::{Addr, Body, Content, Envelope, MEGOLM, NONE, OLM, VERSION};
pub use safety::{fingerprint, safety_number};
pub use store::{pickle_key, Conversation};
use store::{State, StoreFile};

/// Times a send is encrypted again after `STALE_DEVICES` before the error is returned.
pub const STALE_RETRIES: usize = 3;
/// One-time keys kept published (the server's pool may hold more).
pub const ONE_TIME_KEYS_TARGET: u32 = 50;
/// Most chats a forward reaches (the server's bound, which it enforces).
const FORWARD_CHATS_MAX: usize = 5;
/// Accounts per key query (the server's bound).
const ACCOUNTS_PER_QUERY: usize = 32;

/// Runs `attempt` until it is not refused with `STALE_DEVICES`, at most [`STALE_RETRIES`] more
/// times (then that refusal is the answer).
async fn retry_stale<T, F, Fut>(attempt: F) -> Result<T, ClientError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(e) if e.code() == Some(ErrorCode::StaleDevices) && tries < STALE_RETRIES => {
                tracing::debug!(error = %e, "device list changed; encrypting again");
                tries += 1;
            }
            other => return other,
        }
    }
}

/// The payload of a message that reaches no device (a note to myself with no other device):
/// the placeholder, so nothing readable is stored.
fn nobody() -> bytes::Bytes {
    Envelope::none().to_bytes().into()
}

/// `ids` without repeats, in first-seen order.
fn distinct(ids: &[u64]) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::with_capacity(ids.len());
    for &id in ids {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// Why end-to-end encryption could not do something.
#[derive(Debug, Clone, thiserror::Error)]
pub enum E2eError {
    /// The local key store could not be read or written (or the secret is wrong).
    #[error("key store: {0}")]
    Store(String),
    /// A device's keys cannot be trusted: a bad signature, or keys other than those pinned.
    #[error("untrusted keys of device {account}.{device}: {why}")]
    UntrustedKey {
        /// The account.
        account: u64,
        /// The device.
        device: u32,
        /// What is wrong.
        why: String,
    },
    /// Encryption failed (no session could be made).
    #[error("cannot encrypt: {0}")]
    Encrypt(String),
    /// A ciphertext could not be decrypted or failed a check.
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
    /// A message id whose conversation this device does not know (edits and reactions).
    #[error("message {0} is not one this device has seen; name its conversation")]
    UnknownMessage(u64),
    /// No device of the account published keys: nothing it could read can be sent encrypted.
    #[error("account {0} has no device with end-to-end keys (it can only be sent plaintext)")]
    NoKeys(u64),
}

/// What an inbox item turned out to be, once opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// A message's text (1:1 or group); `encrypted` is false for a plaintext message.
    Text {
        /// The text.
        text: String,
        /// Whether it came end-to-end encrypted.
        encrypted: bool,
    },
    /// An edit's new text.
    Edit {
        /// The text.
        text: String,
        /// Whether it came end-to-end encrypted.
        encrypted: bool,
    },
    /// A reaction (empty: removed).
    React {
        /// The emoji.
        emoji: String,
        /// Whether it came end-to-end encrypted.
        encrypted: bool,
    },
    /// A deletion for everyone (it has no content).
    Delete,
    /// Something only this SDK needed (a group's session key): nothing to show; ack it.
    Control,
    /// The server asked for more keys; they were uploaded.
    KeysLow(pb::KeysLow),
    /// An account I talk to changed its identity keys ("security code changed").
    IdentityChange(pb::IdentityChange),
    /// A receipt or group notice: not content, see the item itself.
    Other,
    /// It could not be decrypted or failed a check; `reason` says why. Never a crash.
    Undecryptable {
        /// Why.
        reason: String,
    },
}

/// The state and its file, held together under one lock.
struct Inner {
    file: StoreFile,
    state: State,
}

impl Inner {
    fn save(&self) -> Result<(), E2eError> {
        self.file.save(&self.state)
    }
}

/// A client that encrypts; cheap to clone. See the module doc.
#[derive(Clone)]
pub struct E2e {
    client: Client,
    me: Addr,
    /// One lock for every change of the state: ratchets must not fork.
    inner: Arc<Mutex<Inner>>,
}

impl E2e {
    /// Opens the key store at `path` (creating a new identity when there is none) with the
    /// pickle key derived from `secret`, and makes sure this device's keys are published.
    pub async fn open(client: Client, path: &Path, secret: &[u8]) -> Result<Self, ClientError> {
        let (path, secret) = (path.to_owned(), secret.to_vec());
        let (file, state) = tokio::task::spawn_blocking(move || StoreFile::open(&path, &secret))
            .await
            .map_err(|e| E2eError::Store(e.to_string()))??;
        let creds = client.credentials();
        let me = Addr { account: creds.account_id, device: creds.device_id };
        let e2e = Self { client, me, inner: Arc::new(Mutex::new(Inner { file, state })) };
        e2e.publish(false).await?;
        Ok(e2e)
    }

    /// The client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// This device's identity keys (Curve25519, Ed25519), unpadded base64.
    pub async fn identity_keys(&self) -> (String, String) {
        let inner = self.inner.lock().await;
        let keys = inner.state.account.identity_keys();
        (keys.curve25519.to_base64(), keys.ed25519.to_base64())
    }

    /// Uploads what the directory lacks: the identity, one-time keys up to
    /// [`ONE_TIME_KEYS_TARGET`], a fallback key (a new one when `rotate_fallback`). Private keys
    /// are saved before their public halves leave, so a crash never loses a published key.
    pub async fn publish(&self, rotate_fallback: bool) -> Result<pb::KeysCount, ClientError> {
        let count = self.client.keys_count().await?;
        let mut inner = self.inner.lock().await;
        let state = &mut inner.state;
        let mut upload = pb::KeysUpload::default();
        if !count.identity {
            let keys = state.account.identity_keys();
            let (curve25519, ed25519) = (keys.curve25519.to_base64(), keys.ed25519.to_base64());
            let signature = state.account.sign(signed::identity_message(&curve25519, &ed25519)).to_base64();
            upload.identity = Some(pb::IdentityKeys { curve25519, ed25519, signature });
        }
        let target = ONE_TIME_KEYS_TARGET.min(count.one_time_keys_max.max(1));
        let unpublished = state.account.one_time_keys().len() as u32;
        if count.one_time_keys + unpublished < target {
            state.account.generate_one_time_keys((target - count.one_time_keys - unpublished) as usize);
        }
        if !count.fallback_key || rotate_fallback {
            state.account.generate_fallback_key();
        }
        let (account, device) = (self.me.account, self.me.device);
        for (key_id, key) in state.account.one_time_keys() {
            let (key_id, key) = (key_id.to_base64(), key.to_base64());
            let signature =
                state.account.sign(signed::one_time_key_message(account, device, &key_id, &key)).to_base64();
            upload.one_time_keys.push(pb::SignedKey { key_id, key, signature });
        }
        if let Some((key_id, key)) = state.account.fallback_key().into_iter().next() {
            let (key_id, key) = (key_id.to_base64(), key.to_base64());
            let signature =
                state.account.sign(signed::fallback_key_message(account, device, &key_id, &key)).to_base64();
            upload.fallback_key = Some(pb::SignedKey { key_id, key, signature });
        }
        if upload.identity.is_none() && upload.one_time_keys.is_empty() && upload.fallback_key.is_none() {
            return Ok(count);
        }
        inner.save()?;
        let count = self.client.keys_upload(upload).await?;
        inner.state.account.mark_keys_as_published();
        inner.save()?;
        Ok(count)
    }

    /// Sends `text` to `to_account`, encrypted for each of its devices and my other devices.
    pub async fn send_text(&self, to_account: u64, text: &str) -> Result<pb::SendResult, ClientError> {
        self.send_direct(to_account, Body::Text { text: text.to_owned() }, 0, new_client_msg_id()).await
    }

    /// Like [`send_text`](Self::send_text), as a reply to message `reply_to` of the chat.
    pub async fn reply(&self, to_account: u64, reply_to: u64, text: &str) -> Result<pb::SendResult, ClientError> {
        self.send_direct(to_account, Body::Text { text: text.to_owned() }, reply_to, new_client_msg_id()).await
    }

    async fn send_direct(
        &self,
        to_account: u64,
        body: Body,
        reply_to: u64,
        client_msg_id: String,
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
                other => Err(crate::presence::unexpected(&other)),
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
        let client_msg_id = new_client_msg_id();
        let body = Body::Text { text: text.to_owned() };
        let (to_accounts, groups) = (&distinct(to_accounts)[..], &distinct(groups)[..]);
        if to_accounts.len() + groups.len() > FORWARD_CHATS_MAX {
            // Nothing to encrypt for: the server refuses it (INVALID_ARGUMENT) by its own limit.
            let copy = |(a, g): (u64, u64)| pb::ForwardCopy {
                to_account_id: a,
                group_id: g,
                body: Some(pb::forward_copy::Body::Payload(nobody())),
            };
            let copies = to_accounts.iter().map(|&a| (a, 0)).chain(groups.iter().map(|&g| (0, g))).map(copy).collect();
            let op = pb::Forward { client_msg_id, copies, ..Default::default() };
            return match self.client.op(pb::client_op::Op::Forward(op)).await? {
                pb::server_event::Event::ForwardResult(r) => Ok(r.results),
                other => Err(crate::presence::unexpected(&other)),
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
                let op = pb::Forward { client_msg_id: client_msg_id.clone(), copies, ..Default::default() };
                match self.client.op(pb::client_op::Op::Forward(op)).await? {
                    pb::server_event::Event::ForwardResult(r) => Ok(r.results),
                    other => Err(crate::presence::unexpected(&other)),
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

    /// Opens an inbox item: decrypts and checks its content, keeps group keys, uploads keys on
    /// `KeysLow`, and applies identity changes. Never fails: what cannot be opened is
    /// [`Opened::Undecryptable`] with the reason. Save-before-ack: the state is on disk when
    /// this returns, so the caller may ack the item.
    pub async fn decrypt(&self, item: &InboxItem) -> Opened {
        match self.decrypt_item(item).await {
            Ok(opened) => opened,
            Err(e) => Opened::Undecryptable { reason: e.to_string() },
        }
    }

    async fn decrypt_item(&self, item: &InboxItem) -> Result<Opened, ClientError> {
        use inbox_item::Body as B;
        match &item.body {
            Some(B::Message(m)) => {
                let from = Addr { account: m.from_account_id, device: m.from_device_id };
                let peer = if from.account == self.me.account { m.to_account_id } else { from.account };
                self.remember(item.server_msg_id, Conversation::Direct(peer)).await?;
                self.open_payload(&m.payload, from, peer, 0, None).await
            }
            Some(B::GroupMessage(m)) => {
                let from = Addr { account: m.from_account_id, device: m.from_device_id };
                self.remember(item.server_msg_id, Conversation::Group(m.group_id)).await?;
                self.open_payload(&m.payload, from, 0, m.group_id, None).await
            }
            Some(B::MessageAction(a)) => self.open_action(a).await,
            Some(B::KeysLow(low)) => {
                self.publish(low.fallback_key_used).await?;
                Ok(Opened::KeysLow(*low))
            }
            Some(B::IdentityChange(change)) => {
                self.apply_identity_change(change).await?;
                Ok(Opened::IdentityChange(change.clone()))
            }
            _ => Ok(Opened::Other),
        }
    }

    async fn open_action(&self, a: &pb::MessageAction) -> Result<Opened, ClientError> {
        let kind = MessageActionType::try_from(a.r#type).unwrap_or(MessageActionType::Unspecified);
        if a.payload.is_empty() {
            let text = String::new();
            return Ok(match kind {
                MessageActionType::Delete => Opened::Delete,
                MessageActionType::React => Opened::React { emoji: a.emoji.clone(), encrypted: false },
                _ => Opened::Edit { text, encrypted: false },
            });
        }
        let from = Addr { account: a.from_account_id, device: a.from_device_id };
        let peer = if a.group_id != 0 { 0 } else { a.peer_account_id };
        let opened = self.open_payload(&a.payload, from, peer, a.group_id, Some(a.target_server_msg_id)).await?;
        Ok(match (kind, opened) {
            (MessageActionType::Edit, Opened::Text { text, encrypted: false }) => {
                Opened::Edit { text, encrypted: false }
            }
            (_, opened) => opened,
        })
    }

    /// Decrypts and checks one payload that `from` sent in the conversation (`peer` from my
    /// side, or `group`): a message (texts and room keys), or with `action` the action on that
    /// message (edits and reactions, which must name it).
    async fn open_payload(
        &self,
        payload: &[u8],
        from: Addr,
        peer: u64,
        group: u64,
        action: Option<u64>,
    ) -> Result<Opened, ClientError> {
        let (message, action_target) = (action.is_none(), action.unwrap_or(0));
        let Some(envelope) = Envelope::parse(payload) else {
            return Ok(Opened::Text { text: String::from_utf8_lossy(payload).into_owned(), encrypted: false });
        };
        let plaintext = match envelope.alg.as_str() {
            OLM => {
                let pinned = self.pinned(from).await?;
                if pinned.curve25519 != envelope.sender_key {
                    return Err(
                        E2eError::Decrypt("the sender key is not the sending device's identity key".into()).into()
                    );
                }
                let mut inner = self.inner.lock().await;
                let plaintext = inner.state.decrypt_olm(&envelope);
                inner.save()?;
                plaintext?
            }
            MEGOLM => {
                let pinned = self.pinned(from).await?;
                if pinned.curve25519 != envelope.sender_key {
                    return Err(
                        E2eError::Decrypt("the sender key is not the sending device's identity key".into()).into()
                    );
                }
                let mut inner = self.inner.lock().await;
                let plaintext = inner.state.decrypt_megolm(&envelope, from, group);
                inner.save()?;
                plaintext?
            }
            NONE => return Err(E2eError::Decrypt("sent to this device as a device without keys".into()).into()),
            other => return Err(E2eError::Decrypt(format!("unknown algorithm {other}")).into()),
        };
        let content = Content::parse(&plaintext).ok_or_else(|| E2eError::Decrypt("not a content".into()))?;
        // The content must be what the routing says: this sender, this conversation.
        let my_side_peer =
            if content.sender.account == self.me.account { content.to_account } else { content.sender.account };
        let conversation_ok = match group {
            0 => content.group == 0 && (peer == 0 || my_side_peer == peer),
            g => content.group == g,
        };
        if content.sender != from || !conversation_ok {
            return Err(E2eError::Decrypt("the content names another sender or conversation".into()).into());
        }
        Ok(match (content.body, message) {
            (Body::Text { text }, true) => Opened::Text { text, encrypted: true },
            (Body::RoomKey { session_id, session_key }, true) if group != 0 => {
                let mut inner = self.inner.lock().await;
                inner.state.add_inbound(&envelope.sender_key, from, group, &session_key)?;
                if inner.state.inbound.keys().all(|(_, id)| *id != session_id) {
                    return Err(E2eError::Decrypt("the room key does not match its session id".into()).into());
                }
                inner.save()?;
                Opened::Control
            }
            (Body::Edit { target, text }, false) if target == action_target => Opened::Edit { text, encrypted: true },
            (Body::React { target, emoji }, false) if target == action_target => {
                Opened::React { emoji, encrypted: true }
            }
            _ => return Err(E2eError::Decrypt("content of the wrong kind for this item".into()).into()),
        })
    }

    /// The pinned identity of `device`, asking the directory (and pinning) the first time.
    async fn pinned(&self, device: Addr) -> Result<store::Pinned, ClientError> {
        if let Some(p) = self.inner.lock().await.state.devices.get(&device) {
            return Ok(p.clone());
        }
        let devices = self.client.keys_query(vec![device.account]).await?;
        let found = devices.iter().find(|d| d.device_id == device.device).and_then(|d| d.identity.as_ref());
        let identity = found.ok_or_else(|| E2eError::UntrustedKey {
            account: device.account,
            device: device.device,
            why: "the directory has no identity keys for it".into(),
        })?;
        let mut inner = self.inner.lock().await;
        let pinned = inner.state.pin(device, identity)?;
        inner.save()?;
        Ok(pinned)
    }

    async fn apply_identity_change(&self, change: &pb::IdentityChange) -> Result<(), ClientError> {
        let addr = Addr { account: change.account_id, device: change.device_id };
        let mut inner = self.inner.lock().await;
        match IdentityChangeType::try_from(change.r#type) {
            Ok(IdentityChangeType::DeviceAdded) => {
                if let Some(identity) = &change.identity {
                    inner.state.pin(addr, identity)?;
                }
            }
            Ok(IdentityChangeType::DeviceRemoved) => {
                if let Some(pinned) = inner.state.devices.remove(&addr) {
                    inner.state.sessions.remove(&pinned.curve25519);
                }
            }
            _ => {}
        }
        inner.save()?;
        Ok(())
    }

    /// One payload per device of `to_account` and my other devices: sessions made where
    /// missing, `content` encrypted for each, a placeholder for devices without keys.
    async fn per_device(&self, to_account: u64, content: &Content) -> Result<Vec<pb::DevicePayload>, ClientError> {
        let accounts: Vec<u64> = BTreeSet::from([to_account, self.me.account]).into_iter().collect();
        let devices = self.devices_of(&accounts).await?;
        if to_account != self.me.account && !devices.iter().any(|d| d.account_id == to_account && d.identity.is_some())
        {
            return Err(E2eError::NoKeys(to_account).into());
        }
        self.encrypt_for(&devices, &content.to_bytes()).await
    }

    /// Every device (and identity) of `accounts` but mine.
    async fn devices_of(&self, accounts: &[u64]) -> Result<Vec<pb::DeviceKeys>, ClientError> {
        let mut out = Vec::new();
        for chunk in accounts.chunks(ACCOUNTS_PER_QUERY) {
            out.extend(self.client.keys_query(chunk.to_vec()).await?);
        }
        out.retain(|d| (d.account_id, d.device_id) != (self.me.account, self.me.device));
        Ok(out)
    }

    /// Encrypts `plaintext` for each of `devices` (claiming keys for new sessions first).
    async fn encrypt_for(
        &self,
        devices: &[pb::DeviceKeys],
        plaintext: &[u8],
    ) -> Result<Vec<pb::DevicePayload>, ClientError> {
        let addr = |d: &pb::DeviceKeys| Addr { account: d.account_id, device: d.device_id };
        let mut need = Vec::new();
        {
            let mut inner = self.inner.lock().await;
            for d in devices {
                if let Some(identity) = &d.identity {
                    let pinned = inner.state.pin(addr(d), identity)?;
                    if !inner.state.has_session(&pinned.curve25519) {
                        need.push(pb::DeviceRef { account_id: d.account_id, device_id: d.device_id });
                    }
                }
            }
        }
        if !need.is_empty() {
            let bundles = self.client.keys_claim(vec![], need).await?;
            let mut inner = self.inner.lock().await;
            for b in bundles {
                let (Some(identity), Some(key)) = (&b.identity, &b.key) else { continue };
                let a = Addr { account: b.account_id, device: b.device_id };
                let pinned = inner.state.pin(a, identity)?;
                inner.state.start_session(a, &pinned, key, b.fallback)?;
            }
        }
        let mut inner = self.inner.lock().await;
        let mut payloads = Vec::with_capacity(devices.len());
        for d in devices {
            let envelope = match &d.identity {
                Some(identity) if inner.state.has_session(&identity.curve25519) => {
                    inner.state.encrypt_olm(&identity.curve25519, plaintext)?
                }
                _ => Envelope::none(),
            };
            payloads.push(pb::DevicePayload {
                account_id: d.account_id,
                device_id: d.device_id,
                payload: envelope.to_bytes().into(),
            });
        }
        // Ratchets moved: on disk before anything leaves.
        inner.save()?;
        Ok(payloads)
    }

    /// The Megolm envelope of `content` for `group`, sharing a new session key first when the
    /// member devices are not those the current one went to.
    async fn group_payload(&self, group: u64, content: &Content) -> Result<Vec<u8>, ClientError> {
        self.retrying_stale(|| async {
            let info = self.client.group_info(group).await?;
            let accounts: Vec<u64> = info.members.iter().map(|m| m.account_id).collect();
            let devices = self.devices_of(&accounts).await?;
            let members: BTreeSet<Addr> =
                devices.iter().map(|d| Addr { account: d.account_id, device: d.device_id }).collect();
            if !self.inner.lock().await.state.usable_outbound(group, &members) {
                let session = State::new_group_session();
                let key = Content {
                    v: VERSION,
                    sender: self.me,
                    to_account: 0,
                    group,
                    body: Body::RoomKey {
                        session_id: session.session_id(),
                        session_key: session.session_key().to_base64(),
                    },
                };
                let payloads = self.encrypt_for(&devices, &key.to_bytes()).await?;
                self.client
                    .group_send_message(pb::GroupSend {
                        group_id: group,
                        client_msg_id: new_client_msg_id(),
                        body: Some(pb::group_send::Body::PerDevice(pb::DevicePayloads { payloads })),
                        ..Default::default()
                    })
                    .await?;
                let mut inner = self.inner.lock().await;
                inner.state.set_outbound(group, session, members);
                inner.save()?;
            }
            let mut inner = self.inner.lock().await;
            let envelope = inner.state.encrypt_megolm(group, &content.to_bytes())?;
            inner.save()?;
            Ok(envelope.to_bytes())
        })
        .await
    }

    /// Runs `attempt` again while the server answers `STALE_DEVICES` (each attempt asks the
    /// directory afresh and makes the missing sessions), at most [`STALE_RETRIES`] more times.
    async fn retrying_stale<T, F, Fut>(&self, attempt: F) -> Result<T, ClientError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        retry_stale(attempt).await
    }

    async fn remember(&self, server_msg_id: u64, conversation: Conversation) -> Result<(), ClientError> {
        if server_msg_id == 0 {
            return Ok(());
        }
        let mut inner = self.inner.lock().await;
        if inner.state.conversations.get(&server_msg_id) != Some(&conversation) {
            inner.state.remember(server_msg_id, conversation);
            inner.save()?;
        }
        Ok(())
    }

    /// This device's fingerprint: 30 digits from its Ed25519 key, to read out and compare.
    pub async fn fingerprint(&self) -> String {
        let (_, ed25519) = self.identity_keys().await;
        fingerprint(&ed25519)
    }

    /// The safety number of my conversation with `peer`: 60 digits from both accounts' device
    /// keys (the directory's, checked against those pinned), the same on both sides.
    pub async fn safety_number(&self, peer: u64) -> Result<String, ClientError> {
        let accounts: Vec<u64> = BTreeSet::from([peer, self.me.account]).into_iter().collect();
        let mut devices = self.client.keys_query(accounts).await?;
        devices.retain(|d| d.identity.is_some());
        let mut keyed = Vec::new();
        let mut inner = self.inner.lock().await;
        for d in &devices {
            let a = Addr { account: d.account_id, device: d.device_id };
            let pinned = inner.state.pin(a, d.identity.as_ref().expect("kept only those with keys"))?;
            keyed.push((a.account, a.device, pinned.ed25519));
        }
        inner.save()?;
        Ok(safety_number(self.me.account, peer, &keyed))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn stale() -> ClientError {
        ClientError::Rejected(pb::Error::new(ErrorCode::StaleDevices, "device list is stale"))
    }

    #[tokio::test]
    async fn stale_device_answers_are_retried_then_given_up() {
        // Proves: a send refused with STALE_DEVICES is attempted again (each attempt queries the
        // directory and encrypts afresh) until it passes, and after STALE_RETRIES more refusals
        // the refusal is returned; other errors are returned at once.
        let calls = AtomicUsize::new(0);
        let passes_third = retry_stale(|| async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(stale()),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(passes_third.unwrap(), 2);
        calls.store(0, Ordering::SeqCst);
        let never: Result<(), _> = retry_stale(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(stale())
        })
        .await;
        assert_eq!(never.unwrap_err().code(), Some(ErrorCode::StaleDevices));
        assert_eq!(calls.load(Ordering::SeqCst), STALE_RETRIES + 1);
        calls.store(0, Ordering::SeqCst);
        let other: Result<(), _> = retry_stale(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ClientError::Closed)
        })
        .await;
        assert!(matches!(other, Err(ClientError::Closed)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
