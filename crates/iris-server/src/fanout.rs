//! The send kernel: append entries to device inboxes, wait until they are durable, hint the
//! devices' sessions, and answer the sender.
//!
//! Every inbox write of the server goes through here (1:1 messages, group references and events,
//! message actions, receipts), so the order "durable, then hinted, then answered" and the one
//! encoding of `InboxItem` live in one place. The services above decide *what* goes to *which*
//! devices; this module only carries it out.
//!
//! Knows the store's inbox and the router. Knows nothing of accounts, groups, blocks, sessions
//! or sockets.

use std::sync::Arc;

use bytes::Bytes;
use iris_proto::pb::{self, inbox_item};
use iris_store::{
    AccountId, AppendOutcome, AppendRequest, DedupKey, DeviceAddr, GroupOrderHold, InboxStore, NewEntry, PendingAppend,
    StoreError,
};
use prost::Message as _;

use crate::error::ServiceError;
use crate::router::{Hint, Router};

/// Encodes one inbox item. Its `seq` is 0: the store gives each device's copy its own seq, and the
/// session sets it when delivering.
pub fn encode_item(server_msg_id: u64, server_ts_ms: u64, body: inbox_item::Body) -> Bytes {
    encode_expiring_item(server_msg_id, server_ts_ms, body, None)
}

/// [`encode_item`] for a conversation whose disappearing-messages timer is on: the item carries
/// its expiry, so readers and clients know when it is gone.
pub fn encode_expiring_item(
    server_msg_id: u64,
    server_ts_ms: u64,
    body: inbox_item::Body,
    expires_at_ms: Option<u64>,
) -> Bytes {
    let expires_at_ms = expires_at_ms.unwrap_or(0);
    pb::InboxItem { seq: 0, server_msg_id, server_ts_ms, body: Some(body), expires_at_ms }.encode_to_vec().into()
}

/// One item for each of `devices`: the entries of a fan-out whose copies are all alike.
pub fn entries_for(devices: impl IntoIterator<Item = DeviceAddr>, item: &Bytes) -> Vec<NewEntry> {
    devices.into_iter().map(|device| NewEntry { device, item: item.clone() }).collect()
}

/// The dedup key of a notice the server itself sends about `account` (`what` names the change):
/// kept under the account's device 0, which is never a device, so no client's send can take
/// the key; a flow that announces again what a failure may have lost gets the first append.
pub fn server_notice_key(account: AccountId, what: String) -> DedupKey {
    DedupKey { sender: DeviceAddr::new(account, 0), client_msg_id: what }
}

/// Appends to inboxes and hints sessions; cheap to clone into every service that writes.
#[derive(Clone)]
pub struct Fanout {
    inbox: Arc<dyn InboxStore>,
    router: Arc<Router>,
}

impl Fanout {
    /// A kernel writing to `inbox` and hinting through `router`.
    pub fn new(inbox: Arc<dyn InboxStore>, router: Arc<Router>) -> Self {
        Self { inbox, router }
    }

    /// Appends `req` and returns once it is durable and its devices were hinted.
    pub async fn append(&self, req: AppendRequest) -> Result<AppendOutcome, ServiceError> {
        self.enqueue(req, None).await?.durable().await
    }

    /// Queues `req` for commit and returns at once; appends queued one after another are
    /// committed in that order (per-sender order), while their commits overlap. The [`Queued`]
    /// waits for durability and then hints each device with its stored item, or with
    /// `hinted_item` when given (a group send stores a reference but hints the full message).
    pub async fn enqueue(&self, req: AppendRequest, hinted_item: Option<Bytes>) -> Result<Queued, ServiceError> {
        let hints = match hinted_item {
            None => Self::hints(&req),
            Some(item) => Hints(req.entries.iter().map(|e| (e.device, item.clone())).collect()),
        };
        let pending = self.inbox.enqueue_append(req).await?;
        Ok(self.queued(pending, hints))
    }

    /// [`Fanout::append`] for receipts: their sessions are not woken for them
    /// ([`Router::notify_receipt`]), they go out with the sessions' next writes.
    pub async fn append_receipts(&self, req: AppendRequest) -> Result<AppendOutcome, ServiceError> {
        self.enqueue(req, None).await?.receipts().durable().await
    }

    /// A cumulative ack of `device`'s inbox up to `up_to_seq`.
    pub async fn ack(&self, device: DeviceAddr, up_to_seq: u64) -> Result<(), ServiceError> {
        Ok(self.inbox.ack(device, up_to_seq).await?)
    }

    /// The ack and the receipts it produces (`receipts`), committed together where the store
    /// can (one atomic record on the embedded engine); hints the receipts' devices once durable.
    pub async fn ack_with_receipts(
        &self,
        device: DeviceAddr,
        up_to_seq: u64,
        receipts: AppendRequest,
    ) -> Result<AppendOutcome, ServiceError> {
        let hints = Self::hints(&receipts);
        let pending: PendingAppend = {
            let inbox = self.inbox.clone();
            Box::pin(async move { inbox.ack_with_receipts(device, up_to_seq, receipts).await })
        };
        self.queued(pending, hints).receipts().durable().await
    }

    /// What to hint once `req` is durable, taken before `req` goes to a store call that commits
    /// it together with other writes (a group change: its record and its events, atomically).
    pub fn hints(req: &AppendRequest) -> Hints {
        Hints(req.entries.iter().map(|e| (e.device, e.item.clone())).collect())
    }

    /// Follows an append queued by such a store call: [`Queued::durable`] hints `hints`.
    pub fn queued(&self, pending: PendingAppend, hints: Hints) -> Queued {
        Queued { pending, hints: hints.0, router: self.router.clone(), receipts: false }
    }
}

/// What each device's session is told once an append is durable, in the order of its entries.
pub struct Hints(Vec<(DeviceAddr, Bytes)>);

/// An append waiting for its commit.
pub struct Queued {
    pending: PendingAppend,
    /// What each device's session is told once durable, in the order of the request's entries
    /// (the store's seqs come back in that order).
    hints: Vec<(DeviceAddr, Bytes)>,
    router: Arc<Router>,
    /// The entries are receipts: hinted without waking their sessions.
    receipts: bool,
}

impl Queued {
    /// The entries are receipts ([`Router::notify_receipt`]).
    fn receipts(self) -> Self {
        Self { receipts: true, ..self }
    }

    /// Keeps `hold` (a group's cluster-wide order) until the append is durable, then releases
    /// it on a task of its own: the group is free again as soon as the commit is done, however
    /// late the caller polls [`Queued::durable`] (a session polls its pending sends only between
    /// other steps). `None` (embedded) leaves the append as it is.
    pub fn holding(self, hold: Option<GroupOrderHold>) -> Self {
        let Some(hold) = hold else { return self };
        let Queued { pending, hints, router, receipts } = self;
        let (done, outcome) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let result = pending.await;
            drop(hold);
            let _ = done.send(result);
        });
        let pending: PendingAppend = Box::pin(async move {
            outcome.await.unwrap_or_else(|_| Err(StoreError::Unavailable("append task ended without an answer".into())))
        });
        Queued { pending, hints, router, receipts }
    }

    /// Waits until the append is durable, then hints the devices. A duplicate (a retried send)
    /// stored nothing and hints nobody.
    pub async fn durable(self) -> Result<AppendOutcome, ServiceError> {
        let outcome = self.pending.await?;
        if let AppendOutcome::Appended { seqs } = &outcome {
            for ((device, item), &seq) in self.hints.into_iter().zip(seqs) {
                if self.receipts {
                    self.router.notify_receipt(device, Hint { seq, item });
                } else {
                    self.router.notify(device, Hint { seq, item });
                }
            }
        }
        Ok(outcome)
    }
}

/// A queued send (1:1 or group) and what its answer needs.
pub struct PendingSend {
    queued: Queued,
    server_msg_id: u64,
    server_ts_ms: u64,
    client_msg_id: String,
}

impl PendingSend {
    /// A send queued as `queued` under these ids.
    pub fn new(queued: Queued, server_msg_id: u64, server_ts_ms: u64, client_msg_id: String) -> Self {
        Self { queued, server_msg_id, server_ts_ms, client_msg_id }
    }

    /// Waits until the send is durable and hinted, then builds the sender's answer: `ACCEPTED`
    /// with the server id, or the original id and time for a deduplicated retry.
    pub async fn finish(self) -> Result<pb::SendResult, ServiceError> {
        let (server_msg_id, server_ts_ms, duplicate) = match self.queued.durable().await? {
            AppendOutcome::Appended { .. } => (self.server_msg_id, self.server_ts_ms, false),
            AppendOutcome::Duplicate { server_msg_id, server_ts_ms } => (server_msg_id, server_ts_ms, true),
        };
        Ok(pb::SendResult {
            status: pb::SendStatus::Accepted as i32,
            server_msg_id,
            server_ts_ms,
            client_msg_id: self.client_msg_id,
            duplicate,
        })
    }
}

#[cfg(test)]
mod tests {
    use iris_store::DedupKey;

    use super::*;
    use crate::testing::Parts;

    fn receipt_body(n: u64) -> inbox_item::Body {
        inbox_item::Body::Receipt(pb::Receipt { server_msg_ids: vec![n], ..Default::default() })
    }

    #[tokio::test]
    async fn an_append_is_durable_before_its_devices_are_hinted_in_entry_order() {
        // Proves: append returns after the store assigned seqs, and each device's session got
        // the hint for exactly its entry, with that seq.
        let parts = Parts::new();
        let (a, b) = (DeviceAddr::new(1, 1), DeviceAddr::new(2, 1));
        let (mut ra, mut rb) = (parts.router.register(a), parts.router.register(b));
        let item = encode_item(7, 100, receipt_body(1));
        let req = AppendRequest {
            expires_at_ms: None,
            dedup: None,
            server_msg_id: 7,
            server_ts_ms: 100,
            entries: entries_for([a, b], &item),
        };
        let outcome = parts.fanout().append(req).await.unwrap();
        assert_eq!(outcome, AppendOutcome::Appended { seqs: vec![1, 1] });
        for (reg, device) in [(&mut ra, a), (&mut rb, b)] {
            let hint = reg.hints.try_recv().expect("hinted once durable");
            assert_eq!((hint.seq, &hint.item), (1, &item));
            let stored = parts.store.read(device, 0, 10).await.unwrap();
            assert_eq!(stored.len(), 1, "durable in {device}'s inbox");
        }
    }

    #[tokio::test]
    async fn a_duplicate_send_hints_nobody_and_answers_with_the_original_id() {
        // Proves: a retry with the same dedup key stores nothing, wakes no session, and the
        // sender's answer carries the first send's id and time.
        let parts = Parts::new();
        let to = DeviceAddr::new(2, 1);
        let mut reg = parts.router.register(to);
        let send = |id: u64| {
            let item = encode_item(id, id, receipt_body(id));
            let dedup = Some(DedupKey { sender: DeviceAddr::new(1, 1), client_msg_id: "c1".into() });
            AppendRequest {
                expires_at_ms: None,
                dedup,
                server_msg_id: id,
                server_ts_ms: id,
                entries: entries_for([to], &item),
            }
        };
        let fanout = parts.fanout();
        let first = PendingSend::new(fanout.enqueue(send(10), None).await.unwrap(), 10, 10, "c1".into());
        assert!(!first.finish().await.unwrap().duplicate);
        reg.hints.try_recv().expect("the first send is hinted");
        let retry = PendingSend::new(fanout.enqueue(send(11), None).await.unwrap(), 11, 11, "c1".into());
        let answer = retry.finish().await.unwrap();
        assert_eq!((answer.duplicate, answer.server_msg_id, answer.server_ts_ms), (true, 10, 10));
        assert!(reg.hints.try_recv().is_err(), "a duplicate is not hinted");
    }

    #[tokio::test]
    async fn a_hinted_item_replaces_the_stored_one_in_hints_only() {
        // Proves: a group send's inbox holds the reference while sessions are hinted the full
        // item (so the live path never reads the payload back).
        let parts = Parts::new();
        let to = DeviceAddr::new(2, 1);
        let mut reg = parts.router.register(to);
        let (stored, full) = (encode_item(5, 5, receipt_body(1)), encode_item(5, 5, receipt_body(2)));
        let req = AppendRequest {
            expires_at_ms: None,
            dedup: None,
            server_msg_id: 5,
            server_ts_ms: 5,
            entries: entries_for([to], &stored),
        };
        parts.fanout().enqueue(req, Some(full.clone())).await.unwrap().durable().await.unwrap();
        assert_eq!(reg.hints.try_recv().unwrap().item, full);
        assert_eq!(parts.store.read(to, 0, 1).await.unwrap()[0].item, stored);
    }
}
