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
mod payloads;
mod receive;
mod safety;
mod send;
mod store;

use std::path::Path;
use std::sync::Arc;

use iris_proto::e2e as signed;
use iris_proto::pb;
use tokio::sync::Mutex;

use crate::client::Client;
use crate::error::ClientError;
pub use crate::error::E2eError;
use envelope::Addr;
pub use safety::{fingerprint, safety_number};
pub use store::{pickle_key, Conversation};
use store::{State, StoreFile};

/// Times a send is encrypted again after `STALE_DEVICES` before the error is returned.
pub const STALE_RETRIES: usize = 3;
/// One-time keys kept published (the server's pool may hold more).
pub const ONE_TIME_KEYS_TARGET: u32 = 50;

/// What an inbox item turned out to be, once opened.
#[derive(Debug, Clone, PartialEq)]
pub enum Opened {
    /// A message's text (1:1 or group); `encrypted` is false for a plaintext message.
    Text {
        /// The text.
        text: String,
        /// Whether it came end-to-end encrypted.
        encrypted: bool,
    },
    /// A message with media (photos, video, voice notes, documents) and its caption; fetch the
    /// blobs with [`MediaApi`](crate::media::MediaApi).
    Media {
        /// The media and caption.
        media: pb::MediaMessage,
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
}
