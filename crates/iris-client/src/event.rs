//! What the application receives from a [`Client`](crate::Client): inbox items (each exactly once)
//! and changes of the connection's state.

use std::sync::Arc;
use std::time::Duration;

use iris_proto::pb::{self, inbox_item, InboxItem};
use tokio::sync::mpsc;

use crate::shared::Shared;

/// One thing that happened, in the order it happened.
#[derive(Debug)]
pub enum Event {
    /// A message for this device (`message.from_account_id == own account` means a copy of a
    /// message sent from another of my devices). Ack its `seq` once processed. Edits,
    /// deletions and reactions (`MessageAction`) arrive here too, see [`Event::action`].
    Message(InboxItem),
    /// A DELIVERED or READ receipt. Ack its `seq` like a message.
    Receipt(InboxItem),
    /// A group change (`GroupEvent`) or an aggregated group receipt (`GroupReceipt`). Ack its
    /// `seq` like a message. Group messages themselves arrive as [`Event::Message`].
    Group(InboxItem),
    /// The key directory speaks to this device: `KeysLow` (upload more keys) or
    /// `IdentityChange` (an account I talk to changed its identity keys: "security code
    /// changed"). Ack its `seq` like a message; [`E2e::decrypt`](crate::E2e::decrypt) handles both.
    Keys(InboxItem),
    /// A conversation's disappearing-messages timer changed (`TimerChanged`, set by either
    /// party of a 1:1 or a group member). Ack its `seq` like a message.
    Timer(InboxItem),
    /// The account changed: `DeviceChange` (a device was added to or removed from my own
    /// account: check it was me) or `ProfileChange` (my profile, or a contact's, changed). Ack
    /// its `seq` like a message.
    Account(InboxItem),
    /// A call nobody of my account answered (`MissedCall`). Ack its `seq` like a message.
    MissedCall(InboxItem),
    /// Call signaling (see [`Client::call_offer`](crate::Client::call_offer)): an incoming call,
    /// an answer, an ICE candidate, a hang-up, the end of a call. Ephemeral, nothing to ack; a
    /// device offline meanwhile never gets it (only a missed call is stored).
    Call(pb::CallEvent),
    /// A watched account's presence changed (see [`Client::presence_subscribe`]); not an inbox
    /// item, nothing to ack. Pushes are coalesced by the server and may be dropped under load:
    /// each carries the whole current state.
    ///
    /// [`Client::presence_subscribe`]: crate::Client::presence_subscribe
    Presence(pb::PresenceUpdate),
    /// Someone is typing (or stopped). Ephemeral, nothing to ack; treat the indicator as expired
    /// 5 s ([`TYPING_EXPIRES_AFTER`](crate::TYPING_EXPIRES_AFTER)) after the last `typing = true`.
    Typing(pb::TypingEvent),
    /// The handshake succeeded (first connect and every reconnect).
    Connected(pb::Welcome),
    /// The connection was lost; the client is reconnecting on its own.
    Disconnected(DisconnectReason),
    /// The connection ended for good (session replaced, device revoked, refresh refused,
    /// reconnecting given up); pending operations fail and no more events follow.
    Fatal(pb::Error),
}

impl Event {
    /// The inbox item carried by a message or receipt event.
    pub fn item(&self) -> Option<&InboxItem> {
        match self {
            Self::Message(item)
            | Self::Receipt(item)
            | Self::Group(item)
            | Self::Keys(item)
            | Self::Timer(item)
            | Self::Account(item)
            | Self::MissedCall(item) => Some(item),
            _ => None,
        }
    }

    /// The inbox sequence number to ack, for messages and receipts.
    pub fn seq(&self) -> Option<u64> {
        self.item().map(|item| item.seq)
    }

    /// The message body, for message events.
    pub fn message(&self) -> Option<&pb::Message> {
        match self {
            Self::Message(InboxItem { body: Some(inbox_item::Body::Message(m)), .. }) => Some(m),
            _ => None,
        }
    }

    /// The action body (edit, delete, reaction), for message events that carry one.
    pub fn action(&self) -> Option<&pb::MessageAction> {
        match self {
            Self::Message(InboxItem { body: Some(inbox_item::Body::MessageAction(a)), .. }) => Some(a),
            _ => None,
        }
    }

    /// The group message body, for group message events.
    pub fn group_message(&self) -> Option<&pb::GroupMessage> {
        match self {
            Self::Message(InboxItem { body: Some(inbox_item::Body::GroupMessage(m)), .. }) => Some(m),
            _ => None,
        }
    }

    /// The group change, for group events.
    pub fn group_event(&self) -> Option<&pb::GroupEvent> {
        match self {
            Self::Group(InboxItem { body: Some(inbox_item::Body::GroupEvent(e)), .. }) => Some(e),
            _ => None,
        }
    }

    /// The aggregated group receipt, for group receipt events.
    pub fn group_receipt(&self) -> Option<&pb::GroupReceipt> {
        match self {
            Self::Group(InboxItem { body: Some(inbox_item::Body::GroupReceipt(r)), .. }) => Some(r),
            _ => None,
        }
    }

    /// The missed call, for missed-call events.
    pub fn missed_call(&self) -> Option<&pb::MissedCall> {
        match self {
            Self::MissedCall(InboxItem { body: Some(inbox_item::Body::MissedCall(m)), .. }) => Some(m),
            _ => None,
        }
    }

    /// The receipt body, for receipt events.
    pub fn receipt(&self) -> Option<&pb::Receipt> {
        match self {
            Self::Receipt(InboxItem { body: Some(inbox_item::Body::Receipt(r)), .. }) => Some(r),
            _ => None,
        }
    }
}

/// Why a connection was lost (the client reconnects after each of these).
#[derive(Debug)]
pub enum DisconnectReason {
    /// The server closed the TCP connection.
    ServerClosed,
    /// Reading or writing the socket failed.
    Io(std::io::Error),
    /// The server sent bytes that were not a valid frame, or broke the protocol.
    Protocol(String),
    /// Nothing arrived from the server for twice the heartbeat interval, or a write stalled.
    HeartbeatTimeout,
    /// The server asked clients to go away (shutdown, overload) and come back after a delay.
    GoAway {
        /// The delay the server asked for (the client adds jitter).
        reconnect_after: Duration,
        /// The server's explanation.
        reason: String,
    },
    /// The server closed the connection with an error that a new connection can get past.
    Error(pb::Error),
}

/// The stream of [`Event`]s of one client. Ends (`None`) after a fatal error or `close`.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
    /// Set when the config asked for auto-acks; acks through the same path as `Client::ack`.
    auto_ack: Option<Arc<Shared>>,
}

impl Events {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<Event>, auto_ack: Option<Arc<Shared>>) -> Self {
        Self { rx, auto_ack }
    }

    /// The next event, or `None` once the client has stopped. With auto-ack, a message or
    /// receipt is acked as it is returned.
    pub async fn next(&mut self) -> Option<Event> {
        let event = self.rx.recv().await?;
        self.handed_out(&event);
        Some(event)
    }

    /// The next event if one is already waiting, without blocking.
    pub fn try_next(&mut self) -> Option<Event> {
        let event = self.rx.try_recv().ok()?;
        self.handed_out(&event);
        Some(event)
    }

    fn handed_out(&self, event: &Event) {
        if let (Some(shared), Some(seq)) = (&self.auto_ack, event.seq()) {
            shared.ack(seq);
        }
    }
}
