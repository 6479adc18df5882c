//! The delivery state machine of one session, with no I/O: which inbox entries to push to the
//! client and when, when to read the inbox instead, and which acks to apply in which order.
//!
//! Events go in: a router hint ([`Delivery::on_hint`]), a lagged hint queue
//! ([`Delivery::on_lagged`]), entries read from the inbox ([`Delivery::on_read`]), a client ack
//! ([`Delivery::on_ack`]), an applied or failed ack ([`Delivery::on_ack_applied`]), a flush
//! ([`Delivery::on_flushed`]), and the resume cursor of the `Hello` ([`Delivery::new`]). Actions
//! come out of [`Delivery::poll`], which takes the current time as an argument: write this
//! delivery, read the inbox after this seq, apply this ack. The session's driver
//! (`session/mod.rs`) carries them out. Here there is no `.await`, no store, no socket and no
//! clock, so every rule below is unit- and property-tested on its own.
//!
//! The cursors: `acked ≤ sent ≤ known_last`. `acked` is what the client acknowledged, `sent` the
//! last seq handed out for writing, `known_last` the last seq known to exist. At most `window`
//! entries are unacked; entries are pushed from router hints when they continue `sent`, and
//! hints that arrive out of order (commits of one batch wake their senders in any order) wait in
//! a reorder buffer. A gap that does not fill within [`GAP_WAIT`], a lagged hint queue, or a
//! reconnect makes the machine read the inbox instead. Pushing pauses while [`OUT_BYTES_MAX`]
//! bytes wait to be written.
//!
//! Receipts are not urgent: when the entries next in line are all receipts (1:1 or group), they
//! wait up to `receipt_hold` for something else to be written — an answer, a message, an event —
//! and go out in that write ([`Delivery::release_held`]), or alone when the hold is over. Under
//! load a receipt then costs no write of its own. Order is kept: a later entry that is not a
//! receipt ends the hold, since the run is delivered whole.
//!
//! Acks are applied one at a time, in order: receipts first, then the deletion (by the inbox
//! service). Acks that come while one is applied are merged into the next. A resume cursor is an
//! ack like any other, except that this connection never delivered its entries and so does not
//! know their receipts: it asks for them to be read back ([`OwedReceipts::ReadFromInbox`]). A
//! failed ack is retried after [`ACK_RETRY`], reading its entries back (their receipts were
//! taken by the failed attempt), so no later ack can delete them without their receipts. A
//! failed inbox read (the store unavailable for a while) is tried again after [`READ_RETRY`]:
//! the connection stays, and so do the sends and hints that need no read.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use iris_proto::item_head::InboxItemHead;
use iris_proto::outgoing::{RawDelivery, RawItem};
use iris_store::{AccountId, InboxCursor};
use prost::Message as _;

use crate::error::ServiceError;
use crate::inbox::{InboxAck, OwedReceipts};
use crate::receipts::{Owed, ReceiptDue};
use crate::router::UnwantedReceipts;

/// Delivery bytes prepared but not yet written; pushing pauses beyond it (memory per connection).
pub const OUT_BYTES_MAX: usize = 1 << 20;
/// Payload bytes per `Delivery` event, so one event stays well inside a frame.
pub const DELIVERY_BYTES_MAX: usize = 256 * 1024;
/// How long a gap in hinted seqs may wait for its hint before the inbox is read.
pub const GAP_WAIT: Duration = Duration::from_millis(3);
/// How long a failed ack waits before it is tried again.
pub const ACK_RETRY: Duration = Duration::from_secs(1);
/// How long the next inbox read waits after one failed.
pub const READ_RETRY: Duration = Duration::from_secs(1);

/// The bounds of one session's deliveries.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryConfig {
    /// Most delivered entries awaiting the client's ack (`session.unacked_window`).
    pub window: u64,
    /// Most bytes of delivered entries awaiting the client's ack (`session.unacked_bytes_max`):
    /// with `window`, whichever is reached first. Checked before each batch, so a batch may pass
    /// it by at most one batch.
    pub window_bytes: u64,
    /// Most entries per inbox read and per delivery batch (`limits.batch_deliveries_max`).
    pub batch: usize,
    /// Longest receipts next in line wait for another write to share (`session.receipt_hold_ms`;
    /// zero: never).
    pub receipt_hold: Duration,
    /// The receipt kinds this connection declined in its `Hello`: such receipts are not
    /// written, and acked by the machine itself (they may have been stored on another node, or
    /// while the device was offline, where nobody knew of the decline).
    pub declined: UnwantedReceipts,
}

/// What the driver must do next.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Write this `Delivery` event to the client (its items as stored, with their seqs).
    Write(RawDelivery),
    /// Read at most `limit` inbox entries after `after_seq` and give them to
    /// [`Delivery::on_read`]; nothing more is pushed until then.
    Read {
        /// Entries after this seq.
        after_seq: u64,
        /// At most this many.
        limit: usize,
    },
    /// Apply this ack (receipts, then deletion) and report with [`Delivery::on_ack_applied`].
    Ack(InboxAck),
}

/// An entry to deliver: its stored bytes and their head, decoded once (a hinted entry's head
/// is looked at before it is delivered too, to hold receipts).
#[derive(Debug)]
struct Entry {
    seq: u64,
    bytes: Bytes,
    /// `None`: the bytes do not decode (the entry is skipped, and logged, when delivered).
    head: Option<InboxItemHead>,
}

impl Entry {
    fn new(seq: u64, bytes: Bytes) -> Self {
        let head = InboxItemHead::decode(&bytes[..]).ok();
        Self { seq, bytes, head }
    }
}

/// What the machine remembers about a delivered, unacked entry.
#[derive(Debug)]
struct Unacked {
    seq: u64,
    due: ReceiptDue,
    /// Its stored size, counted in `unacked_bytes`.
    bytes: u64,
    /// Written to the client; an entry that was not (undecodable, or a declined receipt) is
    /// acked by the machine once everything before it is acked.
    shown: bool,
}

/// One session's delivery state.
#[derive(Debug)]
pub struct Delivery {
    me: AccountId,
    config: DeliveryConfig,
    /// Highest seq acked by the client.
    acked: u64,
    /// Highest seq handed out for writing.
    sent: u64,
    /// Highest seq known to exist in the inbox.
    known_last: u64,
    /// Hints were lost, or a read came back full: the inbox may hold more than `known_last`
    /// says, so the machine reads until a read comes back short.
    must_read: bool,
    /// Hinted entries after `sent`, waiting for window room or for the gap before them; each
    /// with its head, decoded once when it came.
    buffered: BTreeMap<u64, Entry>,
    /// Their bytes, summed (bounded by `config.window_bytes`, as their count by the window).
    buffered_bytes: u64,
    /// Since when a gap before buffered hints has been waiting (see [`GAP_WAIT`]).
    gap_since: Option<Instant>,
    /// Since when the receipts next in line have been held (see [`DeliveryConfig::receipt_hold`]).
    held_since: Option<Instant>,
    /// When the oldest receipt hinted without a wake-up and not yet delivered came: a hold
    /// that starts counts from then.
    receipt_hinted_at: Option<Instant>,
    /// The driver has something else to write: held receipts go with it.
    release: bool,
    /// Delivered entries the client has not acked, in seq order.
    unacked: VecDeque<Unacked>,
    /// Their stored bytes, summed (bounded by `config.window_bytes`).
    unacked_bytes: u64,
    /// Deliveries built and not yet handed to the driver.
    ready: VecDeque<RawDelivery>,
    /// Payload bytes handed out since the last flush.
    out_bytes: usize,
    /// The limit of the inbox read in flight, if one is.
    reading: Option<usize>,
    /// The inbox's acked cursor as far as this session applied it.
    applied: u64,
    /// `(after_seq, up_to_seq)` of the ack being applied, if one is.
    applying: Option<(u64, u64)>,
    /// The next ack to apply: every ack that came since the one being applied, merged.
    waiting: Option<InboxAck>,
    /// A failed ack waits until then.
    retry_at: Option<Instant>,
    /// After a failed inbox read, the next waits until then.
    read_retry_at: Option<Instant>,
}

impl Delivery {
    /// The machine of a device of `me` whose inbox stands at `cursor`, for a client that resumes
    /// after `resume_after` (its `Hello.resume_after_seq`). A cursor beyond the last seq the inbox
    /// ever held is refused: nobody can have processed it, and trusting it would delete what
    /// waits and fake receipts for it. A cursor at or below the acked one changes nothing.
    pub fn new(
        config: DeliveryConfig,
        me: AccountId,
        cursor: InboxCursor,
        resume_after: u64,
    ) -> Result<Self, ServiceError> {
        if resume_after > cursor.last {
            return Err(ServiceError::ResumeBeyondInbox { resume_after, last: cursor.last });
        }
        let mut d = Self {
            me,
            config: DeliveryConfig {
                window: config.window.max(1),
                window_bytes: config.window_bytes.max(1),
                batch: config.batch.max(1),
                receipt_hold: config.receipt_hold,
                declined: config.declined,
            },
            acked: cursor.acked,
            sent: cursor.acked,
            known_last: cursor.last,
            must_read: false,
            buffered: BTreeMap::new(),
            buffered_bytes: 0,
            gap_since: None,
            held_since: None,
            receipt_hinted_at: None,
            release: false,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            ready: VecDeque::new(),
            out_bytes: 0,
            reading: None,
            applied: cursor.acked,
            applying: None,
            waiting: None,
            retry_at: None,
            read_retry_at: None,
        };
        if resume_after > d.acked {
            // Delivered on an earlier connection: acked now, receipts read back from the inbox.
            d.acked = resume_after;
            d.sent = resume_after;
            d.queue_ack(resume_after, OwedReceipts::ReadFromInbox);
        }
        Ok(d)
    }

    /// The highest seq the client has acked, its resume cursor included: what the device's
    /// backlog counts from.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// A committed entry hinted by the router. Hints wait in the reorder buffer until they
    /// continue `sent` and the window has room (bounded like the window, in entries and bytes;
    /// beyond it they are dropped and read from the inbox later).
    pub fn on_hint(&mut self, seq: u64, item: Bytes) {
        self.known_last = self.known_last.max(seq);
        let full = self.buffered.len() as u64 >= self.config.window || self.buffered_bytes >= self.config.window_bytes;
        if seq > self.sent && !full {
            let size = item.len() as u64;
            if let Some(old) = self.buffered.insert(seq, Entry::new(seq, item)) {
                self.buffered_bytes -= old.bytes.len() as u64;
            }
            self.buffered_bytes += size;
        }
    }

    /// A receipt hinted at `hinted_at` without waking the session (`held_receipts.rs`): a hint
    /// like any other, whose hold counts from when it came, not from when the session took it.
    pub fn on_receipt_hint(&mut self, seq: u64, item: Bytes, hinted_at: Instant) {
        if seq > self.sent {
            self.receipt_hinted_at = Some(self.receipt_hinted_at.map_or(hinted_at, |at| at.min(hinted_at)));
        }
        self.on_hint(seq, item);
    }

    /// Hints were dropped (the session's queue was full, or an inbox check found entries): the
    /// inbox may hold more than the machine knows, so it reads before it rests.
    pub fn on_lagged(&mut self) {
        self.must_read = true;
    }

    /// The entries of the [`Action::Read`] in flight, ascending (group references resolved).
    pub fn on_read(&mut self, entries: Vec<(u64, Bytes)>) {
        let limit = self.reading.take().unwrap_or(usize::MAX);
        self.gap_since = None;
        // A full read: the inbox may hold more than the hints said.
        self.must_read = entries.len() >= limit;
        let Some(&(last, _)) = entries.last() else {
            self.known_last = self.sent;
            return;
        };
        let kept = self.buffered.split_off(&(last + 1));
        let read_instead = std::mem::replace(&mut self.buffered, kept);
        self.buffered_bytes -= read_instead.values().map(|e| e.bytes.len() as u64).sum::<u64>();
        self.deliver(entries.into_iter().map(|(seq, bytes)| Entry::new(seq, bytes)).collect());
    }

    /// The [`Action::Read`] in flight failed (the store is unavailable for a while): nothing
    /// changes but that the inbox is read again after [`READ_RETRY`].
    pub fn on_read_failed(&mut self, now: Instant) {
        self.reading = None;
        self.must_read = true;
        self.gap_since = None;
        self.read_retry_at = Some(now + READ_RETRY);
    }

    /// A cumulative ack from the client. Acking what was already acked is a no-op; beyond what
    /// was delivered is refused (and changes nothing).
    pub fn on_ack(&mut self, up_to: u64) -> Result<(), ServiceError> {
        if up_to <= self.acked {
            return Ok(());
        }
        if up_to > self.sent {
            return Err(ServiceError::AckBeyondDelivered { up_to, delivered: self.sent });
        }
        let mut owed = Owed::default();
        while self.unacked.front().is_some_and(|u| u.seq <= up_to) {
            let acked = self.unacked.pop_front().expect("checked non-empty");
            self.unacked_bytes -= acked.bytes;
            owed.add(acked.due);
        }
        self.acked = up_to;
        self.take_unshown(&mut owed);
        self.queue_ack(self.acked, OwedReceipts::Known(owed));
        Ok(())
    }

    /// Counts as acked the unshown entries that come next, adding what they owe to `owed`: the
    /// client cannot ack what it never saw, and they would wait in the inbox until it acked
    /// something after them. Whether there were any.
    fn take_unshown(&mut self, owed: &mut Owed) -> bool {
        let before = self.acked;
        while self.unacked.front().is_some_and(|u| !u.shown) {
            let skipped = self.unacked.pop_front().expect("checked non-empty");
            self.unacked_bytes -= skipped.bytes;
            owed.add(skipped.due);
            self.acked = skipped.seq;
        }
        self.acked > before
    }

    /// The [`Action::Ack`] in flight was applied (`ok`) or failed at `now`.
    pub fn on_ack_applied(&mut self, ok: bool, now: Instant) {
        let Some((after_seq, up_to_seq)) = self.applying.take() else { return };
        if ok {
            self.applied = self.applied.max(up_to_seq);
            return;
        }
        // Its receipts went with the failed attempt, its entries are still in the inbox (nothing
        // is deleted before its receipts are durable): read them back, with every later ack.
        let up_to_seq = self.waiting.take().map_or(up_to_seq, |w| w.up_to_seq.max(up_to_seq));
        self.waiting = Some(InboxAck { after_seq, up_to_seq, owed: OwedReceipts::ReadFromInbox });
        self.retry_at = Some(now + ACK_RETRY);
    }

    /// Everything handed out was written (or taken for writing): the byte budget is free again.
    pub fn on_flushed(&mut self) {
        self.out_bytes = 0;
    }

    /// Whether pushing paused because [`OUT_BYTES_MAX`] bytes wait to be written.
    pub fn out_full(&self) -> bool {
        self.out_bytes >= OUT_BYTES_MAX
    }

    /// The driver is about to write something else: receipts held now go with it. True when
    /// some were held (poll again to have them); false when none were, or already released.
    pub fn release_held(&mut self) -> bool {
        let newly = self.held_since.is_some() && !self.release;
        self.release |= newly;
        newly
    }

    /// When [`Delivery::poll`] has something to do without any other event: a gap given up on,
    /// held receipts sent alone, or a failed ack retried.
    pub fn deadline(&self) -> Option<Instant> {
        let gap = self.gap_since.map(|t| t + GAP_WAIT);
        let held = self.held_since.map(|t| t + self.config.receipt_hold);
        let retry = self.retry_at.filter(|_| self.applying.is_none());
        [gap, held, retry, self.read_retry_at].into_iter().flatten().min()
    }

    /// The next action at `now`, or `None` until another event (or the [`Delivery::deadline`]).
    /// Acks come first (they free the window and tell senders), then built deliveries, then more
    /// deliveries from hints or an inbox read.
    pub fn poll(&mut self, now: Instant) -> Option<Action> {
        // A failed read's wait is over (kept, it would be a deadline already past).
        if self.read_retry_at.is_some_and(|t| now >= t) {
            self.read_retry_at = None;
        }
        if let Some(ack) = self.poll_ack(now) {
            return Some(Action::Ack(ack));
        }
        if let Some(d) = self.ready.pop_front() {
            return Some(Action::Write(d));
        }
        if self.reading.is_some() {
            return None;
        }
        self.pump(now)
    }

    /// The next ack to apply at `now`, if one waits and none is being applied: what
    /// [`Delivery::poll`] gives first, and all a draining session still asks for.
    pub fn poll_ack(&mut self, now: Instant) -> Option<InboxAck> {
        if self.applying.is_some() || self.retry_at.is_some_and(|t| now < t) {
            return None;
        }
        let ack = self.waiting.take()?;
        self.retry_at = None;
        self.applying = Some((ack.after_seq, ack.up_to_seq));
        Some(ack)
    }

    /// Builds the next deliveries the window and the byte budget allow: buffered hints when they
    /// continue `sent`, else an inbox read (after [`GAP_WAIT`] when later hints are buffered).
    fn pump(&mut self, now: Instant) -> Option<Action> {
        let unacked = self.sent - self.acked;
        if unacked >= self.config.window || self.unacked_bytes >= self.config.window_bytes || self.out_full() {
            return None;
        }
        let room = ((self.config.window - unacked) as usize).min(self.config.batch);
        if self.buffered.first_key_value().is_some_and(|(&seq, _)| seq == self.sent + 1) {
            if self.holds_receipts(room, now) {
                return None;
            }
            let mut entries = Vec::with_capacity(room.min(self.buffered.len()));
            while entries.len() < room {
                let next = self.sent + entries.len() as u64 + 1;
                match self.buffered.remove(&next) {
                    Some(entry) => {
                        self.buffered_bytes -= entry.bytes.len() as u64;
                        entries.push(entry);
                    }
                    None => break,
                }
            }
            self.gap_since = None;
            self.deliver(entries);
            // Nothing to write when every entry was unshown: their ack is then what to do.
            return self.ready.pop_front().map(Action::Write).or_else(|| self.poll_ack(now).map(Action::Ack));
        }
        if self.known_last <= self.sent && !self.must_read {
            return None;
        }
        if self.read_retry_at.is_some() {
            return None;
        }
        let gap_since = *self.gap_since.get_or_insert(now);
        if !self.buffered.is_empty() && now.saturating_duration_since(gap_since) < GAP_WAIT {
            return None;
        }
        self.reading = Some(room);
        Some(Action::Read { after_seq: self.sent, limit: room })
    }

    /// Whether the run of buffered entries after `sent` (at most `room`) is receipts only, to be
    /// held at `now`: unless released, or held for `receipt_hold` already.
    fn holds_receipts(&mut self, room: usize, now: Instant) -> bool {
        if self.config.receipt_hold.is_zero() || self.release {
            return false;
        }
        // The contiguous run of at most `room` entries after `sent` (heads decoded when buffered).
        let first = self.sent + 1;
        let run = self.buffered.range(first..first + room as u64);
        for (next, (&seq, entry)) in (first..).zip(run) {
            if seq != next {
                break;
            }
            if !entry.head.is_some_and(|h| h.is_receipt()) {
                return false;
            }
        }
        let since = *self.held_since.get_or_insert(self.receipt_hinted_at.map_or(now, |at| at.min(now)));
        now.saturating_duration_since(since) < self.config.receipt_hold
    }

    /// Turns entries after `sent` into `Delivery` events of at most [`DELIVERY_BYTES_MAX`]
    /// payload bytes each, remembering what each owes when acked. Items go out as stored; only
    /// their head was decoded (what the ack owes, when they were accepted).
    fn deliver(&mut self, entries: Vec<Entry>) {
        self.held_since = None;
        self.receipt_hinted_at = None;
        self.release = false;
        let mut items = Vec::with_capacity(entries.len());
        let mut items_bytes = 0;
        for Entry { seq, bytes, head } in entries {
            if seq <= self.sent {
                continue;
            }
            if items_bytes + bytes.len() > DELIVERY_BYTES_MAX && !items.is_empty() {
                self.push_delivery(std::mem::take(&mut items), items_bytes);
                items_bytes = 0;
            }
            items_bytes += bytes.len();
            self.sent = seq;
            self.known_last = self.known_last.max(seq);
            let size = bytes.len() as u64;
            self.unacked_bytes += size;
            let Some(head) = head else {
                tracing::error!(account = self.me, seq, "undecodable inbox entry skipped");
                self.unacked.push_back(Unacked { seq, due: ReceiptDue::None, bytes: size, shown: false });
                continue;
            };
            let shown = !head.receipt_kind().is_some_and(|kind| self.config.declined.contains(kind));
            self.unacked.push_back(Unacked { seq, due: ReceiptDue::of(&head, self.me), bytes: size, shown });
            if shown {
                items.push(RawItem { seq, server_ts_ms: head.server_ts_ms, bytes });
            }
        }
        self.push_delivery(items, items_bytes);
        let mut owed = Owed::default();
        if self.take_unshown(&mut owed) {
            self.queue_ack(self.acked, OwedReceipts::Known(owed));
        }
    }

    fn push_delivery(&mut self, items: Vec<RawItem>, items_bytes: usize) {
        if !items.is_empty() {
            self.out_bytes += items_bytes;
            self.ready.push_back(RawDelivery { items });
        }
    }

    /// Queues an ack of everything up to `up_to` (merged into the waiting one, if any).
    fn queue_ack(&mut self, up_to: u64, owed: OwedReceipts) {
        match &mut self.waiting {
            Some(w) => {
                w.up_to_seq = up_to;
                w.owed.merge(owed);
            }
            None => {
                let after_seq = self.applying.map_or(self.applied, |(_, up)| up);
                self.waiting = Some(InboxAck { after_seq, up_to_seq: up_to, owed });
            }
        }
    }
}

#[cfg(test)]
mod tests;
