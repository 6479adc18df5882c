//! The messaging service: decides what a 1:1 send writes to which inboxes.
//!
//! Path: validate → resolve recipient → check the reply target → check per-device payloads
//! against current devices → drop the blocker's copies → record media references and the message index → queue the
//! append through the send kernel ([`crate::fanout`]), which makes it durable, hints the
//! recipients' sessions and answers the sender.
//!
//! Also sets the disappearing-messages timer of a 1:1 conversation (a `TimerChanged` event to
//! both parties' devices); every send takes the timer in force ([`ChatTimers`]).
//!
//! Knows the kernel, the directory, blocks, the message index and the timers. Knows nothing of
//! sockets, sessions, groups or message actions.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use iris_proto::pb::{self, inbox_item, send_message};
use iris_store::{AppendRequest, Chat, Conversation, DedupKey, DeviceAddr, DeviceId, MessageRef, NewEntry};

use crate::blocks::Blocks;
use crate::chat_timers::ChatTimers;
use crate::clock::Clock;
use crate::directory::{AccountView, Directory};
use crate::error::ServiceError;
use crate::fanout::{encode_expiring_item, encode_item, Fanout, PendingSend};
use crate::ids::IdGenerator;
use crate::media_refs::MediaRefs;
use crate::message_index::{direct_between, MessageIndex};
use crate::send_checks::{check_send_fields, device_sets, BodyRef};
use crate::send_gate::SendGate;

/// Sends 1:1 messages.
pub struct Messaging {
    fanout: Fanout,
    directory: Arc<Directory>,
    blocks: Arc<Blocks>,
    index: Arc<MessageIndex>,
    media: Arc<MediaRefs>,
    ids: Arc<IdGenerator>,
    clock: Arc<dyn Clock>,
    limits: iris_proto::Limits,
    timers: Arc<ChatTimers>,
    gate: SendGate,
}

impl Messaging {
    /// The service over these parts; `limits` are the protocol limits sends obey.
    #[allow(clippy::too_many_arguments)] // one part each; `services.rs` is the one caller
    pub fn new(
        fanout: Fanout,
        directory: Arc<Directory>,
        blocks: Arc<Blocks>,
        index: Arc<MessageIndex>,
        media: Arc<MediaRefs>,
        ids: Arc<IdGenerator>,
        clock: Arc<dyn Clock>,
        limits: iris_proto::Limits,
        timers: Arc<ChatTimers>,
        gate: SendGate,
    ) -> Self {
        Self { fanout, directory, blocks, index, media, ids, clock, limits, timers, gate }
    }

    /// Sets the disappearing-messages timer of `sender`'s 1:1 conversation with
    /// `msg.account_id`; returns once the `TimerChanged` event is durable in both parties'
    /// inboxes. A blocker neither gets the event nor has its conversation's timer changed; the
    /// blocked sender is answered as usual and learns nothing.
    pub async fn set_timer(&self, sender: DeviceAddr, msg: pb::SetTimer) -> Result<pb::TimerResult, ServiceError> {
        ChatTimers::check(msg.seconds)?;
        let peer = self.directory.by_id(msg.account_id).await?.ok_or(ServiceError::UnknownRecipient)?;
        let me = self.directory.by_id(sender.account).await?.ok_or(ServiceError::DeviceRevoked)?;
        let blocked = self.blocks.is_blocked(peer.id, sender.account).await?;
        let now = self.clock.now_ms();
        if !blocked {
            self.timers.set(Chat::direct(me.id, peer.id), msg.seconds, me.id, now).await?;
        }
        let server_msg_id = self.index.next_id(&self.ids, now, sender.account);
        let item = encode_item(
            server_msg_id,
            now,
            inbox_item::Body::TimerChanged(pb::TimerChanged {
                by_account_id: sender.account,
                by_device_id: sender.device,
                by_phone: me.phone.clone(),
                to_account_id: peer.id,
                to_phone: peer.phone.clone(),
                group_id: 0,
                seconds: msg.seconds,
            }),
        );
        let mut targets: BTreeSet<DeviceAddr> = me.addrs().collect();
        if !blocked {
            targets.extend(peer.addrs());
        }
        targets.remove(&sender);
        let entries = crate::fanout::entries_for(targets, &item);
        let req = AppendRequest::event(server_msg_id, now, entries);
        self.fanout.append(req).await?;
        Ok(pb::TimerResult { seconds: msg.seconds, server_msg_id, server_ts_ms: now })
    }

    /// Sends one message from `sender`; returns once it is durable in every target inbox.
    pub async fn send(&self, sender: DeviceAddr, msg: pb::SendMessage) -> Result<pb::SendResult, ServiceError> {
        self.start_send(sender, msg).await?.finish().await
    }

    /// Validates a send and queues it for commit. Sends started one after another by one session
    /// are committed in that order (per-sender order), while their commits overlap. A send
    /// toward a device draining a large backlog waits here first, for a bounded time
    /// ([`SendGate`]).
    pub async fn start_send(&self, sender: DeviceAddr, msg: pb::SendMessage) -> Result<PendingSend, ServiceError> {
        self.validate(&msg)?;
        let recipient = self.resolve_recipient(&msg).await?;
        let me = self.directory.by_id(sender.account).await?.ok_or(ServiceError::DeviceRevoked)?;
        let targets = target_devices(&recipient, &me, sender);
        let (me_id, peer) = (me.id, recipient.id);
        self.index.check_reply(msg.reply_to_server_msg_id, |r| direct_between(r, me_id, peer)).await?;
        let now = self.clock.now_ms();
        let expires_at_ms = self.timers.expires_at(Chat::direct(me_id, peer), now).await?;
        let server_msg_id = self.index.next_id(&self.ids, now, sender.account);
        let item = |payload: Bytes| {
            encode_expiring_item(
                server_msg_id,
                now,
                inbox_item::Body::Message(pb::Message {
                    from_account_id: sender.account,
                    from_device_id: sender.device,
                    from_phone: me.phone.clone(),
                    to_account_id: recipient.id,
                    to_phone: recipient.phone.clone(),
                    payload,
                    client_msg_id: msg.client_msg_id.clone(),
                    reply_to_server_msg_id: msg.reply_to_server_msg_id,
                    forwarded: msg.forwarded,
                    media_ids: msg.media_ids.clone(),
                }),
                expires_at_ms,
            )
        };
        let entries: Vec<NewEntry> = match msg.body.expect("validated") {
            send_message::Body::Payload(payload) => crate::fanout::entries_for(targets.iter().copied(), &item(payload)),
            send_message::Body::PerDevice(per_device) => {
                check_device_lists(&per_device, &targets, &[&recipient, &me])?;
                per_device
                    .payloads
                    .into_iter()
                    .map(|p| NewEntry { device: DeviceAddr::new(p.account_id, p.device_id), item: item(p.payload) })
                    .collect()
            }
        };
        // A blocker's inboxes never get the blocked sender's messages; the send is still ACCEPTED
        // (and checked against the full device lists) so the sender learns nothing from it.
        let entries = if self.blocks.is_blocked(recipient.id, sender.account).await? {
            entries.into_iter().filter(|e| e.device.account != recipient.id).collect()
        } else {
            entries
        };
        // Before anything is staged for the commit: a held send has written nothing yet.
        self.gate.admit(&entries, sender.account).await;
        let index = MessageRef {
            expires_at_ms,
            sender: sender.account,
            conversation: Conversation::Direct(recipient.id),
            sent_at_ms: now,
            deleted: false,
        };
        self.media.record(server_msg_id, sender.account, &msg.media_ids).await?;
        self.index.record(server_msg_id, index).await?;
        let dedup = Some(DedupKey { sender, client_msg_id: msg.client_msg_id.clone() });
        let req = AppendRequest { expires_at_ms, dedup, server_msg_id, server_ts_ms: now, entries };
        let queued = self.fanout.enqueue(req, None).await?;
        Ok(PendingSend::new(queued, server_msg_id, now, msg.client_msg_id))
    }

    fn validate(&self, msg: &pb::SendMessage) -> Result<(), ServiceError> {
        if msg.to_account_id == 0 && msg.to_phone.is_empty() {
            return Err(ServiceError::InvalidArgument("a recipient (to_account_id or to_phone) is required".into()));
        }
        let body = msg.body.as_ref().map(|b| match b {
            send_message::Body::Payload(p) => BodyRef::Payload(p),
            send_message::Body::PerDevice(d) => BodyRef::PerDevice(&d.payloads),
        });
        check_send_fields(&self.limits, &msg.client_msg_id, body, 2 * self.limits.max_devices_per_account as usize)?;
        MediaRefs::check(&msg.media_ids)
    }

    async fn resolve_recipient(&self, msg: &pb::SendMessage) -> Result<Arc<AccountView>, ServiceError> {
        let found = if msg.to_account_id != 0 {
            self.directory.by_id(msg.to_account_id).await?
        } else {
            let phone =
                iris_proto::phone::validate(&msg.to_phone).map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
            self.directory.by_phone(&phone).await?
        };
        found.ok_or(ServiceError::UnknownRecipient)
    }
}

/// Every device of the recipient and every other device of the sender, without repeats.
fn target_devices(recipient: &AccountView, me: &AccountView, sender: DeviceAddr) -> Vec<DeviceAddr> {
    let mut targets: Vec<DeviceAddr> = recipient.addrs().chain(me.addrs()).filter(|&d| d != sender).collect();
    // Sorted and without repeats (a note to self names the same account twice), as a set
    // would give, without a set's allocations on every send.
    targets.sort_unstable();
    targets.dedup();
    targets
}

/// Signal-style check: per-device payloads must name exactly the current target devices.
fn check_device_lists(
    per_device: &pb::DevicePayloads,
    targets: &[DeviceAddr],
    accounts: &[&AccountView],
) -> Result<(), ServiceError> {
    let Some((given, wanted)) = device_sets(per_device, targets)? else { return Ok(()) };
    let mut mismatches = Vec::new();
    let mut accounts_seen = BTreeSet::new();
    for account in accounts.iter().filter(|a| accounts_seen.insert(a.id)) {
        let of = |set: &BTreeSet<DeviceAddr>| -> BTreeSet<DeviceId> {
            set.iter().filter(|d| d.account == account.id).map(|d| d.device).collect()
        };
        let (g, w) = (of(&given), of(&wanted));
        let missing: Vec<DeviceId> = w.difference(&g).copied().collect();
        let extra: Vec<DeviceId> = g.difference(&w).copied().collect();
        if !missing.is_empty() || !extra.is_empty() {
            mismatches.push(pb::DeviceMismatch {
                account_id: account.id,
                missing_devices: missing,
                extra_devices: extra,
            });
        }
    }
    if given.iter().any(|d| !accounts_seen.contains(&d.account)) {
        return Err(ServiceError::InvalidArgument(
            "per_device names a device of an account not in this conversation".into(),
        ));
    }
    Err(ServiceError::StaleDevices(mismatches))
}

#[cfg(test)]
mod tests {
    use iris_store::{InboxStore, MessageIndexStore};
    use prost::Message as _;

    use super::*;
    use crate::testing::Parts;

    fn text(client_msg_id: &str, to: u64, payload: &'static [u8]) -> pb::SendMessage {
        pb::SendMessage {
            client_msg_id: client_msg_id.into(),
            to_account_id: to,
            body: Some(send_message::Body::Payload(Bytes::from_static(payload))),
            ..Default::default()
        }
    }

    async fn inbox(parts: &Parts, device: DeviceAddr) -> Vec<pb::Message> {
        let stored = parts.store.read(device, 0, 100).await.unwrap();
        stored
            .into_iter()
            .map(|e| match pb::InboxItem::decode(e.item).unwrap().body {
                Some(inbox_item::Body::Message(m)) => m,
                other => panic!("expected a message, got {other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_send_reaches_every_recipient_device_and_the_senders_other_devices() {
        // Proves: one send is one durable entry in each of the recipient's devices and the
        // sender's other devices (sent-sync), none in the sending device, recorded in the index
        // and hinted to connected sessions.
        let parts = Parts::new();
        let alice = parts.account("+15550000001", 2).await;
        let bob = parts.account("+15550000002", 2).await;
        let mut bob_phone = parts.router.register(bob[0]);
        let sent = parts.messaging().send(alice[0], text("c1", bob[0].account, b"hi")).await.unwrap();
        assert_eq!(sent.status, pb::SendStatus::Accepted as i32);
        for device in [bob[0], bob[1], alice[1]] {
            let got = inbox(&parts, device).await;
            assert_eq!(got.len(), 1, "{device}");
            assert_eq!((got[0].from_account_id, got[0].payload.as_ref()), (alice[0].account, &b"hi"[..]));
        }
        assert!(inbox(&parts, alice[0]).await.is_empty(), "not echoed to the sending device");
        assert_eq!(bob_phone.hints.try_recv().unwrap().seq, 1);
        let indexed = parts.store.message_ref(sent.server_msg_id).await.unwrap().unwrap();
        assert_eq!(indexed.conversation, Conversation::Direct(bob[0].account));
    }

    #[tokio::test]
    async fn a_retry_is_answered_with_the_original_and_stored_once() {
        let parts = Parts::new();
        let (alice, bob) = (parts.account("+15550000001", 1).await, parts.account("+15550000002", 1).await);
        let messaging = parts.messaging();
        let first = messaging.send(alice[0], text("c1", bob[0].account, b"once")).await.unwrap();
        let retry = messaging.send(alice[0], text("c1", bob[0].account, b"once")).await.unwrap();
        assert!(retry.duplicate);
        assert_eq!((retry.server_msg_id, retry.server_ts_ms), (first.server_msg_id, first.server_ts_ms));
        assert_eq!(inbox(&parts, bob[0]).await.len(), 1);
    }

    #[tokio::test]
    async fn a_blocked_sender_is_accepted_but_only_its_own_devices_get_the_message() {
        let parts = Parts::new();
        let alice = parts.account("+15550000001", 2).await;
        let bob = parts.account("+15550000002", 1).await;
        parts.blocks().set(bob[0], pb::BlockAccount { account_id: alice[0].account, unblock: false }).await.unwrap();
        let sent = parts.messaging().send(alice[0], text("c1", bob[0].account, b"x")).await.unwrap();
        assert_eq!(sent.status, pb::SendStatus::Accepted as i32);
        assert!(inbox(&parts, bob[0]).await.is_empty());
        assert_eq!(inbox(&parts, alice[1]).await.len(), 1);
    }

    #[tokio::test]
    async fn stale_per_device_payloads_list_what_is_missing_and_extra() {
        let parts = Parts::new();
        let alice = parts.account("+15550000001", 1).await;
        let bob = parts.account("+15550000002", 2).await;
        let payload = |d: DeviceAddr| pb::DevicePayload {
            account_id: d.account,
            device_id: d.device,
            payload: Bytes::from_static(b"p"),
        };
        let per_device =
            pb::DevicePayloads { payloads: vec![payload(bob[0]), payload(DeviceAddr::new(bob[0].account, 9))] };
        let msg = pb::SendMessage {
            client_msg_id: "c1".into(),
            to_account_id: bob[0].account,
            body: Some(send_message::Body::PerDevice(per_device)),
            ..Default::default()
        };
        match parts.messaging().send(alice[0], msg).await {
            Err(ServiceError::StaleDevices(m)) => {
                assert_eq!(m.len(), 1);
                assert_eq!((m[0].missing_devices.clone(), m[0].extra_devices.clone()), (vec![bob[1].device], vec![9]));
            }
            other => panic!("expected STALE_DEVICES, got {other:?}"),
        }
        assert!(inbox(&parts, bob[0]).await.is_empty(), "nothing stored");
    }

    #[tokio::test]
    async fn invalid_sends_are_refused_before_anything_is_stored() {
        // Proves: each malformed send is refused with its typed error (one table, one helper).
        let parts = Parts::new();
        let (alice, bob) = (parts.account("+15550000001", 1).await, parts.account("+15550000002", 1).await);
        let to = bob[0].account;
        let big = pb::SendMessage {
            body: Some(send_message::Body::Payload(Bytes::from(vec![0; 70_000]))),
            ..text("c", to, b"")
        };
        let cases: Vec<(pb::SendMessage, pb::ErrorCode)> = vec![
            (text("", to, b"x"), pb::ErrorCode::InvalidArgument),
            (pb::SendMessage { to_account_id: 0, ..text("c", to, b"x") }, pb::ErrorCode::InvalidArgument),
            (pb::SendMessage { body: None, ..text("c", to, b"x") }, pb::ErrorCode::InvalidArgument),
            (big, pb::ErrorCode::PayloadTooLarge),
            (text("c", 999_999, b"x"), pb::ErrorCode::UnknownRecipient),
            (pb::SendMessage { reply_to_server_msg_id: 42, ..text("c", to, b"x") }, pb::ErrorCode::NotFound),
        ];
        let messaging = parts.messaging();
        for (msg, code) in cases {
            let got = messaging.send(alice[0], msg.clone()).await.map(|_| ()).map_err(|e| e.code());
            assert_eq!(got, Err(code), "{msg:?}");
        }
        assert!(inbox(&parts, bob[0]).await.is_empty());
    }
}
