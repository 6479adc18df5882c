//! A device's inbox as its session sees it: where it stands, what to deliver next, and acks.
//!
//! An ack is applied the same way whatever asked for it (an `Ack` frame, a `Hello` resume
//! cursor, a retry after a failure): the `DELIVERED` receipts it owes and the deletion of the
//! entries are one write (atomic on the embedded engine; elsewhere receipts first, so a crash in
//! between can repeat a receipt but never lose one). When the
//! caller knows what the acked entries owe (it delivered them on this connection) it says so;
//! when it does not (a resume cursor names entries delivered on an earlier connection) they are
//! read back from the inbox and judged by the same [`ReceiptDue::of`].
//!
//! A disappearing message whose expiry has passed is never delivered, even before the sweep
//! deleted it: reads skip it (the session sees a gap in seqs, as after any expiry).
//!
//! Knows the store's inbox, group payloads and the receipts service; nothing of sockets or of
//! the session's delivery window.

use std::sync::Arc;

use bytes::Bytes;
use iris_proto::item_head::InboxItemHead;
use iris_store::{DeviceAddr, InboxCursor, InboxStore};
use prost::Message as _;

use crate::clock::Clock;
use crate::error::ServiceError;
use crate::group_payloads::GroupPayloads;
use crate::receipts::{Owed, ReceiptDue, Receipts};

/// Entries read back per step when the receipts of an ack must come from the inbox (bounds the
/// memory of one resume, however far its cursor jumps).
const RECEIPT_READ_CHUNK: usize = 256;
/// Reads one `read` makes past full batches of expired entries before answering with nothing
/// (the session reads again on its next turn).
const EXPIRED_SKIP_READS_MAX: usize = 8;

/// An ack to apply to a device's inbox: every entry in `(after_seq, up_to_seq]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxAck {
    /// The inbox's acked cursor when this ack was formed: entries at or below it are gone.
    pub after_seq: u64,
    /// The cumulative ack.
    pub up_to_seq: u64,
    /// The receipts the acked entries owe.
    pub owed: OwedReceipts,
}

/// What the acked entries of an [`InboxAck`] owe, as far as the caller knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwedReceipts {
    /// Known from delivering them on this connection.
    Known(Owed),
    /// Unknown (delivered on an earlier connection, or an earlier attempt failed after taking
    /// them): read the entries back from the inbox.
    ReadFromInbox,
}

impl OwedReceipts {
    /// Both together (two acks applied as one); unknown wins, since reading back covers both.
    pub fn merge(&mut self, other: OwedReceipts) {
        match (self, other) {
            (Self::Known(a), Self::Known(b)) => a.merge(b),
            (this, _) => *this = Self::ReadFromInbox,
        }
    }
}

/// Reads and acks device inboxes.
pub struct Inbox {
    store: Arc<dyn InboxStore>,
    payloads: Arc<GroupPayloads>,
    receipts: Arc<Receipts>,
    clock: Arc<dyn Clock>,
}

impl Inbox {
    /// Inboxes in `store`, group references resolved through `payloads`, receipts by `receipts`,
    /// disappearing messages judged by `clock`.
    pub fn new(
        store: Arc<dyn InboxStore>,
        payloads: Arc<GroupPayloads>,
        receipts: Arc<Receipts>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { store, payloads, receipts, clock }
    }

    /// The device's acked cursor and the last seq ever assigned to it.
    pub async fn cursor(&self, device: DeviceAddr) -> Result<InboxCursor, ServiceError> {
        Ok(self.store.cursor(device).await?)
    }

    /// Up to `limit` entries after `after_seq`, ready to deliver (group references resolved).
    pub async fn read(
        &self,
        device: DeviceAddr,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Bytes)>, ServiceError> {
        let now = self.clock.now_ms();
        let mut after = after_seq;
        // Skipping expired entries may empty a read that was full: read on, a bounded number of
        // times (each turn skips `limit` entries the sweep is about to delete anyway).
        for _ in 0..EXPIRED_SKIP_READS_MAX {
            let stored = self.store.read(device, after, limit).await?;
            let full = stored.len() >= limit;
            let Some(last) = stored.last().map(|e| e.seq) else { return Ok(Vec::new()) };
            let live: Vec<(u64, Bytes)> =
                stored.into_iter().filter(|e| !e.is_expired(now)).map(|e| (e.seq, e.item)).collect();
            if !live.is_empty() || !full {
                return Ok(self.payloads.resolve(live).await);
            }
            after = last;
        }
        Ok(Vec::new())
    }

    /// Applies `ack`: its receipts with the deletion. On an error nothing beyond what was
    /// already applied is deleted; the caller retries with [`OwedReceipts::ReadFromInbox`].
    pub async fn acknowledge(&self, device: DeviceAddr, ack: InboxAck) -> Result<(), ServiceError> {
        match ack.owed {
            OwedReceipts::Known(owed) => self.receipts.acknowledge(device, owed, ack.up_to_seq).await,
            OwedReceipts::ReadFromInbox => self.acknowledge_read_back(device, ack.after_seq, ack.up_to_seq).await,
        }
    }

    /// Reads `(after_seq, up_to_seq]` back in chunks; each chunk's receipts with its deletion.
    async fn acknowledge_read_back(
        &self,
        device: DeviceAddr,
        after_seq: u64,
        up_to_seq: u64,
    ) -> Result<(), ServiceError> {
        let mut after = after_seq;
        let now = self.clock.now_ms();
        while after < up_to_seq {
            let entries = self.store.read(device, after, RECEIPT_READ_CHUNK).await?;
            let mut owed = Owed::default();
            let mut last = None;
            for e in entries.iter().take_while(|e| e.seq <= up_to_seq) {
                last = Some(e.seq);
                if e.is_expired(now) {
                    continue; // never delivered: owes no DELIVERED receipt
                }
                match InboxItemHead::decode(&e.item[..]) {
                    Ok(head) => owed.add(ReceiptDue::of(&head, device.account)),
                    Err(_) => tracing::error!(%device, seq = e.seq, "undecodable inbox entry acked without receipt"),
                }
            }
            let Some(last) = last else { break };
            self.receipts.acknowledge(device, owed, last).await?;
            if entries.len() < RECEIPT_READ_CHUNK {
                break;
            }
            after = last;
        }
        // Entries that expired meanwhile owe nothing; the cursor still moves to the ack.
        Ok(self.store.ack(device, up_to_seq).await?)
    }
}

#[cfg(test)]
mod tests {
    use iris_proto::pb::{self, inbox_item, send_message};

    use super::*;
    use crate::testing::Parts;

    /// Sends `n` messages from `from` to `to`'s account; their server ids, in order.
    async fn send(parts: &Parts, from: DeviceAddr, to: DeviceAddr, n: usize) -> Vec<u64> {
        let mut ids = Vec::new();
        for i in 0..n {
            let msg = pb::SendMessage {
                client_msg_id: format!("m{i}"),
                to_account_id: to.account,
                body: Some(send_message::Body::Payload(Bytes::from_static(b"hi"))),
                ..Default::default()
            };
            ids.push(parts.messaging().send(from, msg).await.unwrap().server_msg_id);
        }
        ids
    }

    /// The message ids of the DELIVERED receipts in `device`'s inbox.
    async fn delivered_ids(parts: &Parts, device: DeviceAddr) -> Vec<u64> {
        let mut ids = Vec::new();
        for e in parts.store.read(device, 0, 10_000).await.unwrap() {
            if let Some(inbox_item::Body::Receipt(r)) = pb::InboxItem::decode(e.item).unwrap().body {
                assert_eq!(r.r#type, pb::ReceiptType::Delivered as i32);
                ids.extend(r.server_msg_ids);
            }
        }
        ids
    }

    #[tokio::test]
    async fn an_ack_read_back_from_the_inbox_owes_what_a_known_one_does() {
        // Proves: acking entries this connection never delivered (a resume) writes the same
        // DELIVERED receipts as acking them live, across read chunks, then deletes exactly them.
        let parts = Parts::new();
        let alice = parts.account("+15550000001", 1).await;
        let bob = parts.account("+15550000002", 1).await;
        let n = RECEIPT_READ_CHUNK + 4;
        let ids = send(&parts, alice[0], bob[0], n + 1).await;
        let inbox = &parts.services.inbox;
        let ack = InboxAck { after_seq: 0, up_to_seq: n as u64, owed: OwedReceipts::ReadFromInbox };
        inbox.acknowledge(bob[0], ack).await.unwrap();
        let mut receipted = delivered_ids(&parts, alice[0]).await;
        receipted.sort_unstable();
        assert_eq!(receipted, ids[..n].to_vec());
        assert_eq!(inbox.cursor(bob[0]).await.unwrap().acked, n as u64);
        let left = inbox.read(bob[0], 0, 10).await.unwrap();
        assert_eq!(left.iter().map(|e| e.0).collect::<Vec<_>>(), vec![n as u64 + 1]);
    }

    #[tokio::test]
    async fn a_known_ack_writes_its_receipts_then_deletes() {
        let parts = Parts::new();
        let alice = parts.account("+15550000001", 1).await;
        let bob = parts.account("+15550000002", 1).await;
        let ids = send(&parts, alice[0], bob[0], 2).await;
        let mut owed = Owed::default();
        owed.add(ReceiptDue::Direct { sender: alice[0].account, server_msg_id: ids[0] });
        let inbox = &parts.services.inbox;
        inbox
            .acknowledge(bob[0], InboxAck { after_seq: 0, up_to_seq: 1, owed: OwedReceipts::Known(owed) })
            .await
            .unwrap();
        assert_eq!(delivered_ids(&parts, alice[0]).await, vec![ids[0]]);
        assert_eq!(inbox.cursor(bob[0]).await.unwrap().acked, 1);
    }
}
