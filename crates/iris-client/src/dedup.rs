//! Drops inbox items the application has already been handed, turning the server's at-least-once
//! delivery into exactly-once for the app.
//!
//! Two checks: an item's `seq` at or below the highest one handed out is a redelivery (seqs only
//! grow per device), and a message whose `server_msg_id` is in a bounded window of recent ids is a
//! duplicate even under a new seq.

use std::collections::{HashSet, VecDeque};

use iris_proto::pb::{inbox_item, InboxItem};

/// Remembers what was handed to the app, in bounded memory.
#[derive(Debug)]
pub struct DedupWindow {
    max_seq: u64,
    ids: HashSet<u64>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl DedupWindow {
    /// A window that treats every `seq <= resume_after_seq` as seen and remembers the last
    /// `capacity` message ids.
    pub fn new(resume_after_seq: u64, capacity: usize) -> Self {
        Self { max_seq: resume_after_seq, ids: HashSet::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// Whether `item` is new; if so it is recorded as handed out.
    pub fn admit(&mut self, item: &InboxItem) -> bool {
        if item.seq <= self.max_seq {
            return false;
        }
        // Receipts are not keyed by id: DELIVERED and READ about one message may share it.
        let is_message = matches!(item.body, Some(inbox_item::Body::Message(_)));
        let fresh = !is_message || item.server_msg_id == 0 || self.remember(item.server_msg_id);
        self.max_seq = item.seq;
        fresh
    }

    /// Highest seq handed out so far.
    pub fn max_seq(&self) -> u64 {
        self.max_seq
    }

    fn remember(&mut self, id: u64) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iris_proto::pb::{Message, Receipt};

    fn msg(seq: u64, id: u64) -> InboxItem {
        InboxItem {
            seq,
            server_msg_id: id,
            server_ts_ms: 0,
            expires_at_ms: 0,
            body: Some(inbox_item::Body::Message(Message::default())),
        }
    }

    fn receipt(seq: u64, id: u64) -> InboxItem {
        InboxItem {
            seq,
            server_msg_id: id,
            server_ts_ms: 0,
            expires_at_ms: 0,
            body: Some(inbox_item::Body::Receipt(Receipt::default())),
        }
    }

    #[test]
    fn redelivered_seqs_and_ids_are_dropped() {
        let mut w = DedupWindow::new(10, 100);
        assert!(!w.admit(&msg(10, 1)), "at or below the resume cursor");
        assert!(w.admit(&msg(11, 1)));
        assert!(!w.admit(&msg(11, 1)), "same seq again after a reconnect");
        assert!(!w.admit(&msg(12, 1)), "same message under a new seq");
        assert!(w.admit(&msg(13, 2)));
        assert_eq!(w.max_seq(), 13);
    }

    #[test]
    fn receipts_sharing_an_id_are_kept() {
        let mut w = DedupWindow::new(0, 100);
        assert!(w.admit(&msg(1, 7)));
        assert!(w.admit(&receipt(2, 7)));
        assert!(w.admit(&receipt(3, 7)));
        assert!(!w.admit(&receipt(3, 7)));
    }

    #[test]
    fn the_window_is_bounded_and_forgets_the_oldest_ids() {
        let mut w = DedupWindow::new(0, 3);
        for (seq, id) in (1..=5).zip(100..) {
            assert!(w.admit(&msg(seq, id)));
        }
        assert_eq!(w.ids.len(), 3);
        assert!(w.admit(&msg(6, 100)), "id 100 fell out of the window");
        assert!(!w.admit(&msg(7, 104)), "id 104 is still remembered");
    }
}
