//! Presence, typing and block operations of [`Client`]. The server ends presence subscriptions
//! with the connection; the client remembers what the app watches and subscribes again after
//! every reconnect, handing the app each account's current state as an
//! [`Event::Presence`](crate::Event::Presence) right after [`Event::Connected`](crate::Event::Connected).
//! A device set away is set away again after a reconnect, for the same reason.

use std::time::Duration;

use iris_proto::pb::{self, client_op, server_event, PresencePrivacy};
use tokio::sync::oneshot;

use crate::client::Client;
use crate::driver::Command;
use crate::error::{unexpected, ClientError};

/// How long a typing indicator stays on without a refresh (the server never sends "stopped").
pub const TYPING_EXPIRES_AFTER: Duration = Duration::from_secs(5);

impl Client {
    /// Watches these accounts (at most 1,000 per connection) and returns their current state;
    /// changes then arrive as [`Event::Presence`](crate::Event::Presence), across reconnects
    /// until [`Client::presence_unsubscribe`]. A refused subscription is not remembered.
    pub async fn presence_subscribe(&self, account_ids: Vec<u64>) -> Result<Vec<pb::PresenceUpdate>, ClientError> {
        // Remembered before it is sent, so a reconnect while it is in flight cannot miss it.
        let added = self.shared.watch(&account_ids);
        let answer = match self.op(client_op::Op::PresenceSubscribe(pb::PresenceSubscribe { account_ids })).await {
            Ok(server_event::Event::PresenceState(s)) => Ok(s.accounts),
            Ok(other) => Err(unexpected(&other)),
            Err(e) => Err(e),
        };
        if answer.is_err() {
            self.shared.unwatch(&added);
        }
        answer
    }

    /// Stops watching these accounts (now and after reconnects).
    pub async fn presence_unsubscribe(&self, account_ids: Vec<u64>) -> Result<(), ClientError> {
        self.shared.unwatch(&account_ids);
        self.done(client_op::Op::PresenceUnsubscribe(pb::PresenceUnsubscribe { account_ids })).await
    }

    /// The accounts this client watches (restored after every reconnect), in id order.
    pub fn presence_watched(&self) -> Vec<u64> {
        self.shared.watched()
    }

    /// Sets this device away (or back) and, when given, the account's presence privacy. Away
    /// lasts across reconnects until set back (the privacy is durable on the server).
    pub async fn set_presence(&self, away: bool, privacy: Option<PresencePrivacy>) -> Result<(), ClientError> {
        // Remembered before it is sent, so a reconnect while it is in flight cannot miss it.
        self.shared.set_away(away);
        let privacy = privacy.unwrap_or(PresencePrivacy::Unspecified) as i32;
        self.done(client_op::Op::SetPresence(pb::SetPresence { away, privacy })).await
    }

    /// Tells the connected devices of `to_account_id` that I am typing (or stopped).
    pub async fn typing(&self, to_account_id: u64, typing: bool) -> Result<(), ClientError> {
        self.done(client_op::Op::Typing(pb::Typing { to_account_id, group_id: 0, typing })).await
    }

    /// Tells the connected devices of a group's members that I am typing (or stopped).
    pub async fn group_typing(&self, group_id: u64, typing: bool) -> Result<(), ClientError> {
        self.done(client_op::Op::Typing(pb::Typing { to_account_id: 0, group_id, typing })).await
    }

    /// Blocks an account: its messages, receipts, presence and typing no longer reach me.
    pub async fn block(&self, account_id: u64) -> Result<(), ClientError> {
        self.done(client_op::Op::Block(pb::BlockAccount { account_id, unblock: false })).await
    }

    /// Lifts a block.
    pub async fn unblock(&self, account_id: u64) -> Result<(), ClientError> {
        self.done(client_op::Op::Block(pb::BlockAccount { account_id, unblock: true })).await
    }

    /// A barrier: returns once the server answered every operation this client wrote before it
    /// on the current connection (`Sync`, PROTOCOL.md section 4). Operations still queued in the
    /// client, or resent after a reconnect, may be written after it.
    pub async fn sync(&self) -> Result<(), ClientError> {
        match self.op(client_op::Op::Sync(pb::Sync {})).await? {
            server_event::Event::Synced(_) => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn done(&self, op: client_op::Op) -> Result<(), ClientError> {
        match self.op(op).await? {
            server_event::Event::Done(_) => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs an operation answered by a plain event (not a send, receipt or group result).
    pub(crate) async fn op(&self, op: client_op::Op) -> Result<server_event::Event, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Op { op, reply }).await?;
        answer.await.map_err(|_| self.stopped())?
    }
}
