//! The payloads every send is made of: one Olm ciphertext per device (sessions started from
//! claimed keys where missing; a placeholder for devices without keys), or one Megolm
//! ciphertext for a group (its session key shared pairwise first when the member devices
//! changed); and the retry of a send refused with `STALE_DEVICES`.

use std::collections::BTreeSet;

use iris_proto::pb::{self, ErrorCode};

use super::envelope::{Addr, Body, Content, Envelope, VERSION};
use super::store::State;
use super::{Conversation, E2e, E2eError, STALE_RETRIES};
use crate::client::new_client_msg_id;
use crate::error::ClientError;

/// Accounts per key query (the server's bound).
const ACCOUNTS_PER_QUERY: usize = 32;

/// Runs `attempt` until it is not refused with `STALE_DEVICES`, at most [`STALE_RETRIES`] more
/// times (then that refusal is the answer).
pub(super) async fn retry_stale<T, F, Fut>(attempt: F) -> Result<T, ClientError>
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
pub(super) fn nobody() -> bytes::Bytes {
    Envelope::none().to_bytes().into()
}

/// `ids` without repeats, in first-seen order.
pub(super) fn distinct(ids: &[u64]) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::with_capacity(ids.len());
    for &id in ids {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

impl E2e {
    /// One payload per device of `to_account` and my other devices: sessions made where
    /// missing, `content` encrypted for each, a placeholder for devices without keys.
    pub(super) async fn per_device(
        &self,
        to_account: u64,
        content: &Content,
    ) -> Result<Vec<pb::DevicePayload>, ClientError> {
        let accounts: Vec<u64> = BTreeSet::from([to_account, self.me.account]).into_iter().collect();
        let devices = self.devices_of(&accounts).await?;
        if to_account != self.me.account && !devices.iter().any(|d| d.account_id == to_account && d.identity.is_some())
        {
            return Err(E2eError::NoKeys(to_account).into());
        }
        self.encrypt_for(&devices, &content.to_bytes()).await
    }

    /// Every device (and identity) of `accounts` but mine.
    pub(super) async fn devices_of(&self, accounts: &[u64]) -> Result<Vec<pb::DeviceKeys>, ClientError> {
        let mut out = Vec::new();
        for chunk in accounts.chunks(ACCOUNTS_PER_QUERY) {
            out.extend(self.client.keys_query(chunk.to_vec()).await?);
        }
        out.retain(|d| (d.account_id, d.device_id) != (self.me.account, self.me.device));
        Ok(out)
    }

    /// Encrypts `plaintext` for each of `devices` (claiming keys for new sessions first).
    pub(super) async fn encrypt_for(
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
    pub(super) async fn group_payload(&self, group: u64, content: &Content) -> Result<Vec<u8>, ClientError> {
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
    pub(super) async fn retrying_stale<T, F, Fut>(&self, attempt: F) -> Result<T, ClientError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        retry_stale(attempt).await
    }

    pub(super) async fn remember(&self, server_msg_id: u64, conversation: Conversation) -> Result<(), ClientError> {
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
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn stale() -> ClientError {
        ClientError::Rejected(pb::Error::new(ErrorCode::StaleDevices, "device list is stale"))
    }

    #[tokio::test]
    pub(super) async fn stale_device_answers_are_retried_then_given_up() {
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
