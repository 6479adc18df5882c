//! The application's handle: send messages and receipts, ack, read credentials, close.
//!
//! Cheap to clone; every clone talks to the same background connection task, so many sends can
//! be in flight at once (they are pipelined and answered by request id).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use iris_proto::http::{AccountInfo, Credentials, DeviceInfo};
use iris_proto::pb::{self, send_message, ErrorCode, ReceiptType};
use tokio::sync::{mpsc, oneshot};

use crate::config::ClientConfig;
use crate::driver::{Command, Driver};
use crate::error::ClientError;
use crate::event::Events;
use crate::http::HttpApi;
use crate::shared::Shared;

/// Commands that may wait for the connection task before callers are slowed down.
const COMMAND_QUEUE: usize = 4096;

/// Who a message is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// An account by its internal id.
    Account(u64),
    /// An account by its E.164 phone number.
    Phone(String),
}

impl From<u64> for Recipient {
    fn from(account_id: u64) -> Self {
        Self::Account(account_id)
    }
}

impl From<&str> for Recipient {
    fn from(phone: &str) -> Self {
        Self::Phone(phone.to_owned())
    }
}

impl From<String> for Recipient {
    fn from(phone: String) -> Self {
        Self::Phone(phone)
    }
}

/// A connected device. See the module doc.
#[derive(Debug, Clone)]
pub struct Client {
    cmds: mpsc::Sender<Command>,
    /// Also read by the operation modules (presence remembers its subscriptions here).
    pub(crate) shared: Arc<Shared>,
}

impl Client {
    /// Connects and authenticates (refreshing an expired access token), then keeps the
    /// connection up in a background task until [`close`](Self::close) or a fatal error.
    /// The first connection attempt is not retried: its failure is returned, so a wrong URL or
    /// revoked device shows at once. Must be called within a tokio runtime.
    pub async fn connect(config: ClientConfig) -> Result<(Client, Events), ClientError> {
        let http = HttpApi::with_trust(&config.http_url, config.tls.as_ref())?;
        let shared = Arc::new(Shared::new(
            http,
            config.credentials.clone(),
            config.resume_after_seq,
            config.on_credentials.clone(),
        ));
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let events = Events::new(event_rx, config.auto_ack.then(|| shared.clone()));
        let driver = Driver::new(config, shared.clone(), cmd_rx, event_tx);
        let first = driver.establish().await.map_err(|f| f.into_error())?;
        tokio::spawn(driver.run(first));
        Ok((Client { cmds: cmd_tx, shared }, events))
    }

    /// Sends `payload` to every device of `to` (and copies to my other devices) under a fresh
    /// random `client_msg_id`. Resolves once the server stored it durably (`ACCEPTED`), retrying
    /// across reconnects and retryable refusals. Dropping the future does not cancel the send.
    pub async fn send(
        &self,
        to: impl Into<Recipient>,
        payload: impl Into<Bytes>,
    ) -> Result<pb::SendResult, ClientError> {
        self.send_with_id(to, new_client_msg_id(), payload).await
    }

    /// [`send`](Self::send) with a caller-chosen `client_msg_id`, so an app that persisted its
    /// outbox can retry after a restart without a duplicate (the server answers `duplicate`).
    pub async fn send_with_id(
        &self,
        to: impl Into<Recipient>,
        client_msg_id: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Result<pb::SendResult, ClientError> {
        let body = send_message::Body::Payload(payload.into());
        self.send_message(message(to.into(), client_msg_id.into(), body)).await
    }

    /// Sends one payload per device (pairwise end-to-end sessions). The list must cover the
    /// recipient's current devices and my other devices, or the send fails with `STALE_DEVICES`
    /// listing the mismatches ([`ClientError::Rejected`]).
    pub async fn send_per_device(
        &self,
        to: impl Into<Recipient>,
        payloads: Vec<pb::DevicePayload>,
    ) -> Result<pb::SendResult, ClientError> {
        let body = send_message::Body::PerDevice(pb::DevicePayloads { payloads });
        self.send_message(message(to.into(), new_client_msg_id(), body)).await
    }

    /// Sends a fully built `SendMessage` (any id, any body); the other send methods end here.
    pub async fn send_message(&self, msg: pb::SendMessage) -> Result<pb::SendResult, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Send { msg, reply }).await?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// Tells `to_account_id` that the person has read these messages of theirs.
    pub async fn send_read_receipt(
        &self,
        to_account_id: u64,
        server_msg_ids: Vec<u64>,
    ) -> Result<pb::ReceiptResult, ClientError> {
        let receipt = pb::SendReceipt { r#type: ReceiptType::Read as i32, to_account_id, server_msg_ids };
        let (reply, answer) = oneshot::channel();
        self.command(Command::Receipt { receipt, reply }).await?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// Marks every inbox item up to `up_to_seq` as processed (cumulative; lower values are
    /// ignored). Sent to the server promptly, and used as the resume cursor on reconnect.
    pub fn ack(&self, up_to_seq: u64) {
        self.shared.ack(up_to_seq);
    }

    /// The resume cursor to persist: the highest seq acked so far (or the configured start).
    pub fn last_acked_seq(&self) -> u64 {
        self.shared.acked_seq()
    }

    /// The current credentials, which change when the SDK refreshes the access token.
    pub fn credentials(&self) -> Credentials {
        self.shared.credentials()
    }

    /// The server's HTTP base URL (for the media API, [`crate::media::MediaApi`]).
    pub fn http_url(&self) -> &str {
        self.shared.http.base_url()
    }

    /// The `Welcome` of the latest connection (account, device, server limits, heartbeat).
    pub fn welcome(&self) -> Option<pb::Welcome> {
        self.shared.welcome()
    }

    /// The HTTP API of the same server, for calls not covered here.
    pub fn http(&self) -> &HttpApi {
        &self.shared.http
    }

    /// The account behind `phone` and its devices, with this device's token (refreshed if the
    /// server says it expired).
    pub async fn account_info(&self, phone: &str) -> Result<AccountInfo, ClientError> {
        self.authed(|token| async move { self.shared.http.account_info(&token, phone).await }).await
    }

    /// The devices of my account.
    pub async fn devices(&self) -> Result<Vec<DeviceInfo>, ClientError> {
        self.authed(|token| async move { self.shared.http.devices(&token).await }).await
    }

    /// Revokes a device of my account (any other one from the primary, or this one).
    pub async fn revoke_device(&self, device_id: u32) -> Result<(), ClientError> {
        self.authed(|token| async move { self.shared.http.revoke_device(&token, device_id).await }).await
    }

    /// Links waiting for this (primary) device's approval.
    pub async fn pending_links(&self) -> Result<Vec<crate::api::PendingLinkInfo>, ClientError> {
        self.authed(|token| async move { self.shared.http.pending_links(&token).await }).await
    }

    /// Approves the link whose code the new device shows (primary only).
    pub async fn approve_link(&self, code: &str) -> Result<DeviceInfo, ClientError> {
        self.authed(|token| async move { self.shared.http.approve_link(&token, code).await }).await
    }

    /// Refuses the link whose code the new device shows (primary only).
    pub async fn refuse_link(&self, code: &str) -> Result<(), ClientError> {
        self.authed(|token| async move { self.shared.http.refuse_link(&token, code).await }).await
    }

    /// Sets (`Some`) or clears the account's registration PIN (primary only).
    pub async fn set_pin(&self, pin: Option<&str>) -> Result<(), ClientError> {
        self.authed(|token| async move {
            match pin {
                Some(pin) => self.shared.http.set_pin(&token, pin).await,
                None => self.shared.http.clear_pin(&token).await,
            }
        })
        .await
    }

    /// Changes my profile's fields given in `update`.
    pub async fn set_profile(
        &self,
        update: &crate::api::ProfileUpdate,
    ) -> Result<crate::api::ProfileView, ClientError> {
        self.authed(|token| async move { self.shared.http.set_profile(&token, update).await }).await
    }

    /// An account's profile as I may see it.
    pub async fn profile(&self, account_id: u64) -> Result<crate::api::ProfileView, ClientError> {
        self.authed(|token| async move { self.shared.http.profile(&token, account_id).await }).await
    }

    /// Sends the last ack, closes the connection and stops the background task. Operations
    /// still pending fail with [`ClientError::Closed`]; the event stream ends.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.cmds.send(Command::Close { done }).await.is_ok() {
            let _ = closed.await;
        }
    }

    pub(crate) async fn command(&self, cmd: Command) -> Result<(), ClientError> {
        self.cmds.send(cmd).await.map_err(|_| self.stopped())
    }

    /// Why the background task is gone.
    pub(crate) fn stopped(&self) -> ClientError {
        self.shared.terminal().map_or(ClientError::Closed, ClientError::Fatal)
    }

    /// Runs an HTTP call with the access token, refreshing it once if the server refuses it.
    async fn authed<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let token = self.shared.credentials().access_token;
        match call(token.clone()).await {
            Err(e) if e.code() == Some(ErrorCode::Unauthenticated) => {
                let fresh = self.shared.refresh(&token).await?;
                call(fresh.access_token).await
            }
            other => other,
        }
    }
}

/// A new random `client_msg_id` (16 random bytes, hex): unique per device without coordination.
pub fn new_client_msg_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn message(to: Recipient, client_msg_id: String, body: send_message::Body) -> pb::SendMessage {
    let (to_account_id, to_phone) = match to {
        Recipient::Account(id) => (id, String::new()),
        Recipient::Phone(phone) => (0, phone),
    };
    pb::SendMessage { client_msg_id, to_account_id, to_phone, body: Some(body), ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_msg_ids_are_random_hex_within_the_wire_limit() {
        let a = new_client_msg_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(a.len() as u32 <= iris_proto::Limits::default().max_client_msg_id_bytes);
        assert_ne!(a, new_client_msg_id());
    }

    #[test]
    fn recipients_fill_exactly_one_address_field() {
        let m = message(Recipient::Account(7), "x".into(), send_message::Body::Payload(Bytes::new()));
        assert_eq!((m.to_account_id, m.to_phone.as_str()), (7, ""));
        let m = message("+14155550123".into(), "x".into(), send_message::Body::Payload(Bytes::new()));
        assert_eq!((m.to_account_id, m.to_phone.as_str()), (0, "+14155550123"));
    }
}
