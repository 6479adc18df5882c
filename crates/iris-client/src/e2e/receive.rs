//! Receiving: opening inbox items into [`Opened`], with every check a received ciphertext must
//! pass (the sender key is the directory's identity of the sending device, the content names
//! that device and the item's conversation), group keys kept, `KeysLow` answered by uploading
//! keys, and identity changes applied to the pinned identities.

use iris_proto::pb::{self, inbox_item, IdentityChangeType, InboxItem, MessageActionType};

use super::envelope::{Addr, Body, Content, Envelope, MEGOLM, NONE, OLM};
use super::store::Pinned;
use super::{Conversation, E2e, E2eError, Opened};
use crate::error::ClientError;

impl E2e {
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
                if let Some(media) = plaintext_media(&m.payload, crate::media::media_of(m)) {
                    return Ok(media);
                }
                self.open_payload(&m.payload, from, peer, 0, None).await
            }
            Some(B::GroupMessage(m)) => {
                let from = Addr { account: m.from_account_id, device: m.from_device_id };
                self.remember(item.server_msg_id, Conversation::Group(m.group_id)).await?;
                if let Some(media) = plaintext_media(&m.payload, crate::media::group_media_of(m)) {
                    return Ok(media);
                }
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
            (Body::Media { media }, true) => {
                use base64::Engine as _;
                use prost::Message as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(media)
                    .map_err(|_| E2eError::Decrypt("media content is not base64".into()))?;
                let media = pb::MediaMessage::decode(bytes.as_slice())
                    .map_err(|_| E2eError::Decrypt("media content is not a MediaMessage".into()))?;
                Opened::Media { media, encrypted: true }
            }
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
    async fn pinned(&self, device: Addr) -> Result<Pinned, ClientError> {
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
}

/// A message sent with media but without end-to-end encryption (`--plaintext`): its payload is
/// the `MediaMessage` itself, not an envelope.
fn plaintext_media(payload: &[u8], media: Option<pb::MediaMessage>) -> Option<Opened> {
    match (Envelope::parse(payload), media) {
        (None, Some(media)) => Some(Opened::Media { media, encrypted: false }),
        _ => None,
    }
}
