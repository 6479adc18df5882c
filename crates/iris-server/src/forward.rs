//! Forwards: one payload to at most [`FORWARD_CHATS_MAX`] distinct chats (accounts and groups),
//! sent as ordinary sends with `forwarded` set and client_msg_ids `<id>/<i>`.
//!
//! A chat listed twice is sent once (answered once, in first-listed order). Copies are sent one
//! after another and a failure stops the rest (earlier copies stay sent; a retry with the same
//! client_msg_id is deduplicated per copy). Copy `i` is sent as `<client_msg_id>/<i>`, which is
//! why a forward's id may take only [`FORWARD_SUFFIX_BYTES`] less than a send's. Every copy names
//! the forward's `media_ids` and so holds its own references. Built on the messaging and groups
//! services; knows nothing of sockets or sessions.

use std::sync::Arc;

use iris_proto::pb;
use iris_store::{AccountId, DeviceAddr};

use crate::error::ServiceError;
use crate::groups::Groups;
use crate::media_refs::MediaRefs;
use crate::messaging::Messaging;
use crate::ratelimit::SharedLimit;

/// Most chats one `Forward` reaches.
pub const FORWARD_CHATS_MAX: usize = 5;
/// What a forward appends to its client_msg_id for each copy: `/` and one digit.
pub const FORWARD_SUFFIX_BYTES: usize = 2;
const _: () = assert!(FORWARD_CHATS_MAX <= 10, "copy numbers must stay one digit");

/// Sends forwards.
pub struct Forwards {
    messaging: Arc<Messaging>,
    groups: Arc<Groups>,
    send_limit: SharedLimit<AccountId>,
    /// Longest client_msg_id of a send (a forward's must leave room for the copy suffix).
    client_msg_id_bytes_max: usize,
}

impl Forwards {
    /// Forwards sent through `messaging` and `groups`, each copy counted against `send_limit`;
    /// sends take client_msg_ids of at most `client_msg_id_bytes_max`.
    pub fn new(
        messaging: Arc<Messaging>,
        groups: Arc<Groups>,
        send_limit: SharedLimit<AccountId>,
        client_msg_id_bytes_max: usize,
    ) -> Self {
        Self { messaging, groups, send_limit, client_msg_id_bytes_max }
    }

    /// Sends `op`'s payload to each of its chats in turn; answers once all copies are durable.
    pub async fn forward(&self, sender: DeviceAddr, op: pb::Forward) -> Result<pb::ForwardResult, ServiceError> {
        let copies = Copies::of(&op)?;
        let (to_account_ids, group_ids) = (&copies.accounts, &copies.groups);
        let n_chats = to_account_ids.len() + group_ids.len();
        if n_chats == 0 || n_chats > FORWARD_CHATS_MAX {
            return Err(ServiceError::InvalidArgument(format!(
                "a forward reaches 1 to {FORWARD_CHATS_MAX} chats, not {n_chats}"
            )));
        }
        if op.client_msg_id.is_empty() {
            return Err(ServiceError::InvalidArgument("client_msg_id is required".into()));
        }
        let id_bytes_max = self.client_msg_id_bytes_max.saturating_sub(FORWARD_SUFFIX_BYTES);
        if op.client_msg_id.len() > id_bytes_max {
            return Err(ServiceError::InvalidArgument(format!(
                "a forward's client_msg_id is at most {id_bytes_max} bytes: each copy is sent as <client_msg_id>/<i>"
            )));
        }
        // Checked here too, so a bad list is refused before the first copy rather than by it.
        MediaRefs::check(&op.media_ids)?;
        let copy_id = |i: usize| format!("{}/{i}", op.client_msg_id);
        let mut results = Vec::with_capacity(n_chats);
        for (i, &to) in to_account_ids.iter().enumerate() {
            self.send_limit.take(&sender.account).await?;
            let body = match copies.body_of(to, true) {
                Some(pb::forward_copy::Body::PerDevice(d)) => pb::send_message::Body::PerDevice(d),
                Some(pb::forward_copy::Body::Payload(p)) => pb::send_message::Body::Payload(p),
                None => pb::send_message::Body::Payload(op.payload.clone()),
            };
            let msg = pb::SendMessage {
                client_msg_id: copy_id(i),
                to_account_id: to,
                body: Some(body),
                forwarded: true,
                media_ids: op.media_ids.clone(),
                ..Default::default()
            };
            results.push(self.messaging.send(sender, msg).await?);
        }
        for (i, &group_id) in group_ids.iter().enumerate() {
            let body = match copies.body_of(group_id, false) {
                Some(pb::forward_copy::Body::PerDevice(d)) => pb::group_send::Body::PerDevice(d),
                Some(pb::forward_copy::Body::Payload(p)) => pb::group_send::Body::Payload(p),
                None => pb::group_send::Body::Payload(op.payload.clone()),
            };
            let msg = pb::GroupSend {
                group_id,
                client_msg_id: copy_id(to_account_ids.len() + i),
                body: Some(body),
                forwarded: true,
                media_ids: op.media_ids.clone(),
                ..Default::default()
            };
            results.push(self.groups.start_forward(sender, msg).await?.finish().await?);
        }
        Ok(pb::ForwardResult { results })
    }
}

/// A forward's chats, accounts then groups, and (for an end-to-end encrypted forward) each
/// chat's own body.
struct Copies {
    accounts: Vec<u64>,
    groups: Vec<u64>,
    /// (is an account, chat id, body), first listed wins; empty for a plain forward.
    bodies: Vec<(bool, u64, Option<pb::forward_copy::Body>)>,
}

impl Copies {
    fn of(op: &pb::Forward) -> Result<Self, ServiceError> {
        if op.copies.is_empty() {
            let bodies = Vec::new();
            return Ok(Self { accounts: distinct(&op.to_account_ids), groups: distinct(&op.group_ids), bodies });
        }
        if !op.payload.is_empty() || !op.to_account_ids.is_empty() || !op.group_ids.is_empty() {
            return Err(ServiceError::InvalidArgument(
                "copies replace payload, to_account_ids and group_ids, which must be empty".into(),
            ));
        }
        let mut bodies = Vec::new();
        for c in op.copies.iter().take(FORWARD_CHATS_MAX * 4) {
            let chat = match (c.to_account_id, c.group_id) {
                (a, 0) if a != 0 => (true, a),
                (0, g) if g != 0 => (false, g),
                _ => {
                    return Err(ServiceError::InvalidArgument(
                        "each copy names exactly one of to_account_id and group_id".into(),
                    ))
                }
            };
            if c.body.is_none() {
                return Err(ServiceError::InvalidArgument("each copy needs a payload or per_device".into()));
            }
            if !bodies.iter().any(|(a, id, _)| (*a, *id) == chat) {
                bodies.push((chat.0, chat.1, c.body.clone()));
            }
        }
        let ids = |account: bool| bodies.iter().filter(|b| b.0 == account).map(|b| b.1).collect::<Vec<_>>();
        Ok(Self { accounts: ids(true), groups: ids(false), bodies })
    }

    /// The body of chat `id` (an account when `account`), if the forward gave one.
    fn body_of(&self, id: u64, account: bool) -> Option<pb::forward_copy::Body> {
        self.bodies.iter().find(|b| b.0 == account && b.1 == id).and_then(|b| b.2.clone())
    }
}

/// `ids` without repeats, in first-seen order. Stops past [`FORWARD_CHATS_MAX`] distinct ids
/// (the caller refuses that), so a long list costs little.
fn distinct(ids: &[u64]) -> Vec<u64> {
    let mut seen = Vec::with_capacity(FORWARD_CHATS_MAX + 1);
    for &id in ids {
        if !seen.contains(&id) {
            seen.push(id);
            if seen.len() > FORWARD_CHATS_MAX {
                break;
            }
        }
    }
    seen
}
