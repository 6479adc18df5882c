//! The delivery machine on its own: table tests through one `check(script, expected log)`
//! helper, and properties over random interleavings of commits, lost hints, acks, failures,
//! flushes and time.

use std::ops::RangeInclusive;

use iris_proto::pb::{self, inbox_item::Body};
use proptest::prelude::*;

use super::*;
use crate::router::UnwantedReceipts;

const ME: AccountId = 1;
const DEFAULTS: DeliveryConfig = DeliveryConfig {
    window: 500,
    window_bytes: u64::MAX,
    batch: 100,
    receipt_hold: Duration::ZERO,
    declined: UnwantedReceipts::NONE,
};

/// The sender of entry `seq`: every fourth is the device's own account (sent-sync, owes nothing).
fn sender_of(seq: u64) -> AccountId {
    if seq.is_multiple_of(4) {
        ME
    } else {
        10 + seq % 3
    }
}

/// Entry `seq` as the inbox holds it: a message of `payload_bytes` bytes, server id 1000 + seq.
fn entry(seq: u64, payload_bytes: usize) -> Bytes {
    let m =
        pb::Message { from_account_id: sender_of(seq), payload: vec![7; payload_bytes].into(), ..Default::default() };
    pb::InboxItem { server_msg_id: 1000 + seq, body: Some(Body::Message(m)), ..Default::default() }
        .encode_to_vec()
        .into()
}

/// What acking `seqs` owes.
fn owed_for(seqs: impl IntoIterator<Item = u64>) -> Owed {
    let mut owed = Owed::default();
    for seq in seqs {
        let head = InboxItemHead::decode(entry(seq, 0)).unwrap();
        owed.add(ReceiptDue::of(&head, ME));
    }
    owed
}

/// One event of a script.
enum Step {
    /// Router hints, in this order.
    Hints(Vec<u64>),
    /// The hint queue overflowed.
    Lagged,
    /// The answer to the read in flight: these seqs.
    Read(RangeInclusive<u64>),
    /// The answer to the read in flight: nothing after it.
    ReadNothing,
    /// A client ack.
    Ack(u64),
    /// The ack in flight succeeded or failed.
    Applied(bool),
    /// Everything handed out was written.
    Flush,
    /// Time passes.
    Wait(u64),
}
use Step::*;

fn hints(seqs: RangeInclusive<u64>) -> Step {
    Hints(seqs.collect())
}

/// Runs a script: after each step, polls until the machine rests and logs every action.
struct Script {
    d: Delivery,
    now: Instant,
    payload_bytes: usize,
    log: Vec<String>,
}

impl Script {
    fn new(config: DeliveryConfig, cursor: InboxCursor, resume_after: u64, payload_bytes: usize) -> Self {
        let d = Delivery::new(config, ME, cursor, resume_after).expect("a valid resume cursor");
        let mut script = Self { d, now: Instant::now(), payload_bytes, log: Vec::new() };
        script.run();
        script
    }

    fn run(&mut self) {
        while let Some(action) = self.d.poll(self.now) {
            self.log.push(describe(&action));
        }
    }

    fn step(&mut self, step: Step) {
        match step {
            Hints(seqs) => seqs.into_iter().for_each(|s| self.d.on_hint(s, entry(s, self.payload_bytes))),
            Lagged => self.d.on_lagged(),
            Read(seqs) => self.d.on_read(seqs.map(|s| (s, entry(s, self.payload_bytes))).collect()),
            ReadNothing => self.d.on_read(Vec::new()),
            Ack(up_to) => {
                if let Err(e) = self.d.on_ack(up_to) {
                    self.log.push(format!("refused: {e}"));
                }
            }
            Applied(ok) => self.d.on_ack_applied(ok, self.now),
            Flush => self.d.on_flushed(),
            Wait(ms) => self.now += Duration::from_millis(ms),
        }
        self.run();
    }
}

fn describe(action: &Action) -> String {
    match action {
        Action::Write(d) => {
            let seqs: Vec<u64> = d.items.iter().map(|i| i.seq).collect();
            match (seqs.first(), seqs.last()) {
                (Some(a), Some(b)) if seqs.len() > 1 => format!("write {a}..={b}"),
                _ => format!("write {}", seqs[0]),
            }
        }
        Action::Read { after_seq, limit } => format!("read after {after_seq} limit {limit}"),
        Action::Ack(InboxAck { after_seq, up_to_seq, owed: OwedReceipts::ReadFromInbox }) => {
            format!("ack {after_seq}..={up_to_seq} read back")
        }
        Action::Ack(InboxAck { after_seq, up_to_seq, owed: OwedReceipts::Known(owed) }) => {
            assert_eq!(owed, &owed_for(after_seq + 1..=*up_to_seq), "receipts owed by {after_seq}..={up_to_seq}");
            format!("ack {after_seq}..={up_to_seq}")
        }
    }
}

/// Runs `steps` on a fresh machine and compares the log of actions with `expected`.
fn check(config: DeliveryConfig, cursor: (u64, u64), resume_after: u64, steps: Vec<Step>, expected: &[&str]) {
    check_sized(config, cursor, resume_after, 8, steps, expected);
}

fn check_sized(
    config: DeliveryConfig,
    (acked, last): (u64, u64),
    resume_after: u64,
    payload_bytes: usize,
    steps: Vec<Step>,
    expected: &[&str],
) {
    let mut script = Script::new(config, InboxCursor { acked, last }, resume_after, payload_bytes);
    for step in steps {
        script.step(step);
    }
    assert_eq!(script.log, expected);
}

#[test]
fn hints_that_continue_the_sequence_are_delivered_at_once() {
    check(DEFAULTS, (0, 0), 0, vec![hints(1..=3), hints(4..=4)], &["write 1..=3", "write 4"]);
}

#[test]
fn an_early_hint_waits_for_the_one_before_it() {
    // Proves: hints of one commit batch may arrive in any order; the reorder buffer holds a
    // later one until the gap fills, and nothing is read from the inbox meanwhile.
    check(DEFAULTS, (0, 0), 0, vec![Hints(vec![2, 3]), Wait(2), Hints(vec![1])], &["write 1..=3"]);
}

#[test]
fn a_gap_that_does_not_fill_in_time_is_read_from_the_inbox() {
    check(
        DEFAULTS,
        (0, 0),
        0,
        vec![Hints(vec![2]), Wait(2), Wait(1), Read(1..=2)],
        &["read after 0 limit 100", "write 1..=2"],
    );
}

#[test]
fn the_window_bounds_unacked_deliveries_and_acks_reopen_it() {
    check(
        DeliveryConfig { window: 3, window_bytes: u64::MAX, batch: 100, ..DEFAULTS },
        (0, 0),
        0,
        vec![hints(1..=3), hints(4..=5), Ack(2)],
        &["write 1..=3", "ack 0..=2", "write 4..=5"],
    );
}

#[test]
fn the_window_in_bytes_bounds_unacked_deliveries_too() {
    // Proves: with room for 500 entries but 2,500 bytes, entries of ~1 KB stop after the batch
    // that crosses the byte bound (batches of 2), and an ack reopens it.
    check_sized(
        DeliveryConfig { window: 500, window_bytes: 2_500, batch: 2, ..DEFAULTS },
        (0, 0),
        0,
        1_000,
        vec![hints(1..=2), hints(3..=4), hints(5..=6), Ack(2)],
        &["write 1..=2", "write 3..=4", "ack 0..=2", "write 5..=6"],
    );
}

#[test]
fn hints_beyond_the_window_in_bytes_are_dropped_and_read_later() {
    // Proves: the reorder buffer is bounded in bytes too: of six ~1 KB hints at once, three fit
    // in 2,500 bytes; the rest are read from the inbox once the window has room.
    check_sized(
        DeliveryConfig { window: 500, window_bytes: 2_500, batch: 2, ..DEFAULTS },
        (0, 0),
        0,
        1_000,
        vec![hints(1..=6), Ack(2), Read(4..=5)],
        &["write 1..=2", "write 3", "ack 0..=2", "read after 3 limit 2", "write 4..=5"],
    );
}

#[test]
fn hints_beyond_the_window_are_dropped_and_read_later() {
    check(
        DeliveryConfig { window: 2, window_bytes: u64::MAX, batch: 100, ..DEFAULTS },
        (0, 0),
        0,
        vec![hints(1..=4), Ack(2), Read(3..=4)],
        &["write 1..=2", "ack 0..=2", "read after 2 limit 2", "write 3..=4"],
    );
}

#[test]
fn a_batch_is_at_most_batch_entries_and_a_delivery_at_most_its_bytes() {
    // 100 KB payloads: two fit in a Delivery event's 256 KiB, a third starts the next event;
    // batches of 4 entries.
    check_sized(
        DeliveryConfig { window: 500, window_bytes: u64::MAX, batch: 4, ..DEFAULTS },
        (0, 0),
        0,
        100_000,
        vec![hints(1..=6)],
        &["write 1..=2", "write 3..=4", "write 5..=6"],
    );
}

#[test]
fn pushing_pauses_past_the_byte_budget_until_flushed() {
    // Proves: a session prepares at most OUT_BYTES_MAX (plus one batch) before it writes: with
    // 200 KB entries and batches of 4, two batches (1.6 MB) then nothing until the flush.
    let mut expected: Vec<String> = (1..=8).map(|s| format!("write {s}")).collect();
    let steps = vec![hints(1..=12)];
    let mut script = Script::new(
        DeliveryConfig { window: 500, window_bytes: u64::MAX, batch: 4, ..DEFAULTS },
        InboxCursor::default(),
        0,
        200_000,
    );
    for step in steps {
        script.step(step);
    }
    assert_eq!(script.log, expected);
    assert!(script.d.out_full());
    script.step(Flush);
    expected.extend((9..=12).map(|s| format!("write {s}")));
    assert_eq!(script.log, expected);
}

#[test]
fn a_resume_cursor_is_an_ack_whose_receipts_are_read_back_then_delivery_continues_after_it() {
    check(DEFAULTS, (2, 5), 4, vec![Read(5..=5)], &["ack 2..=4 read back", "read after 4 limit 100", "write 5"]);
}

#[test]
fn a_resume_cursor_at_or_below_the_acked_one_changes_nothing() {
    check(DEFAULTS, (3, 5), 2, vec![Read(4..=5)], &["read after 3 limit 100", "write 4..=5"]);
    check(DEFAULTS, (3, 3), 3, vec![hints(4..=4)], &["write 4"]);
}

#[test]
fn a_resume_cursor_beyond_the_inbox_is_refused() {
    for resume_after in [4, u64::MAX] {
        match Delivery::new(DEFAULTS, ME, InboxCursor { acked: 1, last: 3 }, resume_after) {
            Err(ServiceError::ResumeBeyondInbox { resume_after: r, last: 3 }) => assert_eq!(r, resume_after),
            other => panic!("expected ResumeBeyondInbox, got {other:?}"),
        }
    }
}

#[test]
fn an_ack_beyond_what_was_delivered_is_refused_and_changes_nothing() {
    check(
        DEFAULTS,
        (0, 0),
        0,
        vec![hints(1..=2), Ack(3), Ack(2)],
        &["write 1..=2", "refused: ack 3 is beyond the last delivered seq 2", "ack 0..=2"],
    );
}

#[test]
fn acks_are_applied_one_at_a_time_and_those_meanwhile_merged() {
    check(
        DEFAULTS,
        (0, 0),
        0,
        vec![hints(1..=4), Ack(1), Ack(2), Ack(3), Applied(true), Applied(true), Ack(3), Ack(4)],
        &["write 1..=4", "ack 0..=1", "ack 1..=3", "ack 3..=4"],
    );
}

#[test]
fn a_failed_ack_is_retried_later_reading_its_receipts_back_with_the_acks_since() {
    // Proves: no later ack can delete entries whose receipts a failed attempt took: the retry
    // starts where the failed one did and reads them back from the inbox.
    check(
        DEFAULTS,
        (0, 0),
        0,
        vec![hints(1..=3), Ack(2), Ack(3), Applied(false), Wait(999), Wait(1), Applied(true)],
        &["write 1..=3", "ack 0..=2", "ack 0..=3 read back"],
    );
}

#[test]
fn a_lagged_hint_queue_reads_the_inbox_until_a_read_comes_back_short() {
    check(
        DeliveryConfig { window: 500, window_bytes: u64::MAX, batch: 2, ..DEFAULTS },
        (0, 0),
        0,
        vec![Lagged, Read(1..=2), Read(3..=3), Lagged, ReadNothing],
        &["read after 0 limit 2", "write 1..=2", "read after 2 limit 2", "write 3", "read after 3 limit 2"],
    );
}

#[test]
fn an_undecodable_entry_is_skipped_but_counted_and_acked() {
    let mut d = Delivery::new(DEFAULTS, ME, InboxCursor::default(), 0).unwrap();
    let now = Instant::now();
    d.on_hint(1, Bytes::from_static(b"\xff\xff not protobuf"));
    d.on_hint(2, entry(2, 1));
    let Some(Action::Write(w)) = d.poll(now) else { panic!("expected a write") };
    assert_eq!(w.items.iter().map(|i| i.seq).collect::<Vec<_>>(), vec![2]);
    // The client never saw it: the machine acks it, owing nothing.
    let Some(Action::Ack(ack)) = d.poll(now) else { panic!("expected an ack") };
    assert_eq!((ack.after_seq, ack.up_to_seq, ack.owed), (0, 1, OwedReceipts::Known(Owed::default())));
    d.on_ack_applied(true, now);
    d.on_ack(2).unwrap();
    let Some(Action::Ack(ack)) = d.poll(now) else { panic!("expected an ack") };
    assert_eq!((ack.after_seq, ack.up_to_seq, ack.owed), (1, 2, OwedReceipts::Known(owed_for([2]))));
}

#[test]
fn declined_receipts_are_not_written_and_are_acked_by_the_machine() {
    // Proves: receipts of a kind the connection declined (stored where nobody knew of the
    // decline: another node, or while the device was offline) are left out of the writes, and
    // acked without the client: those before its ack with it, those after by the machine, so
    // none waits in the inbox.
    let delivered = |seq: u64| {
        let r = pb::Receipt { r#type: pb::ReceiptType::Delivered as i32, ..Default::default() };
        pb::InboxItem { server_msg_id: 5000 + seq, body: Some(Body::Receipt(r)), ..Default::default() }.encode_to_vec()
    };
    let read = {
        let r = pb::Receipt { r#type: pb::ReceiptType::Read as i32, ..Default::default() };
        pb::InboxItem { server_msg_id: 5004, body: Some(Body::Receipt(r)), ..Default::default() }.encode_to_vec()
    };
    let declined = UnwantedReceipts::from_hello(&[pb::ReceiptType::Delivered as i32]);
    let mut d = Delivery::new(DeliveryConfig { declined, ..DEFAULTS }, ME, InboxCursor::default(), 0).unwrap();
    let now = Instant::now();
    d.on_hint(1, delivered(1).into());
    d.on_hint(2, entry(2, 1));
    d.on_hint(3, delivered(3).into());
    d.on_hint(4, read.into());
    assert_eq!(written(d.poll(now)), Some(vec![2, 4]), "the READ is wanted");
    let Some(Action::Ack(ack)) = d.poll(now) else { panic!("the leading one is acked at once") };
    assert_eq!((ack.after_seq, ack.up_to_seq), (0, 1));
    assert_eq!(d.acked(), 1);
    d.on_ack_applied(true, now);
    d.on_ack(4).unwrap();
    let Some(Action::Ack(ack)) = d.poll(now) else { panic!("expected an ack") };
    assert_eq!((ack.after_seq, ack.up_to_seq, ack.owed), (1, 4, OwedReceipts::Known(owed_for([2]))));
    d.on_ack_applied(true, now);
    // One after everything the client saw: nobody else would ever ack it.
    d.on_hint(5, delivered(5).into());
    let Some(Action::Ack(ack)) = d.poll(now) else { panic!("the trailing one is acked, at once") };
    assert_eq!((ack.after_seq, ack.up_to_seq), (4, 5));
    assert_eq!(d.acked(), 5);
    // A client ack of what the machine acked already changes nothing.
    d.on_ack(4).unwrap();
    d.on_ack_applied(true, now);
    assert_eq!(d.poll(now), None);
}

#[test]
fn a_failed_read_waits_then_reads_again_from_where_it_was() {
    // Proves: a failed inbox read (the store unavailable) changes nothing but when the next
    // read is: none before READ_RETRY (the deadline says when), hints that continue what was
    // sent still go out meanwhile, and the read retried after them starts after them.
    let mut d = Delivery::new(DEFAULTS, ME, InboxCursor { acked: 0, last: 0 }, 0).unwrap();
    let t0 = Instant::now();
    d.on_lagged();
    assert_eq!(d.poll(t0), Some(Action::Read { after_seq: 0, limit: 100 }));
    d.on_read_failed(t0);
    assert_eq!(d.poll(t0), None);
    assert_eq!(d.deadline(), Some(t0 + READ_RETRY));
    d.on_hint(1, entry(1, 10));
    assert_eq!(written(d.poll(t0)), Some(vec![1]));
    assert_eq!(d.poll(t0 + READ_RETRY - Duration::from_millis(1)), None);
    assert_eq!(d.poll(t0 + READ_RETRY), Some(Action::Read { after_seq: 1, limit: 100 }));
    d.on_read(vec![(2, entry(2, 10)), (3, entry(3, 10))]);
    assert_eq!(written(d.poll(t0 + READ_RETRY)), Some(vec![2, 3]));
    assert_eq!(d.deadline(), None);

    // A retry whose wait is over while the window is full leaves no deadline behind (one
    // already past would wake the session in a loop); the read comes when an ack frees room.
    let config = DeliveryConfig { window: 1, ..DEFAULTS };
    let mut d = Delivery::new(config, ME, InboxCursor { acked: 0, last: 0 }, 0).unwrap();
    d.on_hint(1, entry(1, 10));
    assert_eq!(written(d.poll(t0)), Some(vec![1]));
    d.on_lagged();
    d.on_read_failed(t0);
    assert_eq!(d.poll(t0 + READ_RETRY), None, "the window is full");
    assert_eq!(d.deadline(), None);
    d.on_ack(1).unwrap();
    assert!(matches!(d.poll(t0 + READ_RETRY), Some(Action::Ack(_))));
    d.on_ack_applied(true, t0 + READ_RETRY);
    assert_eq!(d.poll(t0 + READ_RETRY), Some(Action::Read { after_seq: 1, limit: 1 }));
}

#[test]
fn the_deadline_is_the_gap_wait_or_the_ack_retry() {
    let mut d = Delivery::new(DEFAULTS, ME, InboxCursor::default(), 0).unwrap();
    let now = Instant::now();
    assert_eq!(d.deadline(), None);
    d.on_hint(2, entry(2, 1));
    assert!(d.poll(now).is_none());
    assert_eq!(d.deadline(), Some(now + GAP_WAIT));
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// One random event against the model inbox.
#[derive(Debug, Clone)]
enum Event {
    /// `n` entries are committed; their hints arrive in `order` (a permutation seed), and are
    /// lost when `lost` (the queue was full: the session is marked lagged).
    Commit { n: u64, shuffle: u64, lost: bool },
    /// The client acks `fraction`/8 of the way from `acked` to `sent` (9: one beyond `sent`).
    Ack { fraction: u64 },
    /// The ack in flight settles.
    Applied { ok: bool },
    /// Everything handed out was written.
    Flush,
    /// Time passes.
    Wait { ms: u64 },
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (1..20u64, any::<u64>(), prop::bool::weighted(0.15)).prop_map(|(n, shuffle, lost)| Event::Commit { n, shuffle, lost }),
        3 => (0..=9u64).prop_map(|fraction| Event::Ack { fraction }),
        2 => prop::bool::weighted(0.8).prop_map(|ok| Event::Applied { ok }),
        2 => Just(Event::Flush),
        1 => (0..5u64).prop_map(|ms| Event::Wait { ms }),
    ]
}

/// The machine driven against a model inbox, checking every action as it comes.
struct Model {
    d: Delivery,
    now: Instant,
    window: u64,
    /// Entries 1..=committed exist.
    committed: u64,
    /// The last seq written, in order.
    written: u64,
    /// The end of the last applied ack (the inbox's cursor).
    applied: u64,
    /// The ack in flight.
    applying: Option<InboxAck>,
    /// The start of the last failed ack, which the next one must start from.
    failed_from: Option<u64>,
}

impl Model {
    fn new(window: u64, window_bytes: u64, batch: usize, initial: u64) -> Self {
        let config = DeliveryConfig { window, window_bytes, batch, ..DEFAULTS };
        let d = Delivery::new(config, ME, InboxCursor { acked: 0, last: initial }, 0).unwrap();
        Self {
            d,
            now: Instant::now(),
            window,
            committed: initial,
            written: 0,
            applied: 0,
            applying: None,
            failed_from: None,
        }
    }

    fn apply(&mut self, e: &Event) {
        match *e {
            Event::Commit { n, shuffle, lost } => {
                let mut seqs: Vec<u64> = (self.committed + 1..=self.committed + n).collect();
                self.committed += n;
                if lost {
                    self.d.on_lagged();
                } else {
                    let len = seqs.len();
                    seqs.rotate_left((shuffle % len as u64) as usize);
                    seqs.into_iter().for_each(|s| self.d.on_hint(s, entry(s, 3)));
                }
            }
            Event::Ack { fraction } => {
                let (acked, sent) = (self.d.acked, self.d.sent);
                let up_to = if fraction == 9 { sent + 1 } else { acked + (sent - acked) * fraction / 8 };
                let result = self.d.on_ack(up_to);
                assert_eq!(result.is_err(), up_to > sent, "ack {up_to} with {sent} sent");
            }
            Event::Applied { ok } => self.settle(ok),
            Event::Flush => self.d.on_flushed(),
            Event::Wait { ms } => self.now += Duration::from_millis(ms),
        }
        self.run();
    }

    fn settle(&mut self, ok: bool) {
        if let Some(ack) = self.applying.take() {
            if ok {
                self.applied = ack.up_to_seq;
            } else {
                self.failed_from = Some(ack.after_seq);
            }
            self.d.on_ack_applied(ok, self.now);
        }
    }

    /// Polls until the machine rests, answering reads from the model inbox and checking actions.
    fn run(&mut self) {
        while let Some(action) = self.d.poll(self.now) {
            match action {
                Action::Write(delivery) => {
                    for item in &delivery.items {
                        assert_eq!(item.seq, self.written + 1, "deliveries are contiguous, in order, once");
                        assert_eq!(item.to_pb().unwrap().server_msg_id, 1000 + item.seq);
                        self.written = item.seq;
                    }
                }
                Action::Read { after_seq, limit } => {
                    assert_eq!(after_seq, self.d.sent, "reads continue after what was handed out");
                    let end = self.committed.min(after_seq + limit as u64);
                    self.d.on_read((after_seq + 1..=end).map(|s| (s, entry(s, 3))).collect());
                }
                Action::Ack(ack) => {
                    assert!(self.applying.is_none(), "one ack at a time");
                    let from = self.failed_from.take().unwrap_or(self.applied);
                    assert_eq!(ack.after_seq, from, "acks start where the inbox stands");
                    assert!(ack.up_to_seq > ack.after_seq && ack.up_to_seq <= self.written);
                    if let OwedReceipts::Known(owed) = &ack.owed {
                        assert_eq!(owed, &owed_for(ack.after_seq + 1..=ack.up_to_seq), "receipts owed");
                    }
                    self.applying = Some(ack);
                }
            }
            assert!(self.d.sent - self.d.acked <= self.window, "the window holds");
            assert!(self.d.acked <= self.d.sent && self.d.sent <= self.d.known_last, "acked ≤ sent ≤ known_last");
        }
    }

    /// Lets time pass, writes, acks everything and applies every ack until all is delivered and
    /// acked: nothing committed is left behind.
    fn drain(&mut self) {
        for _ in 0..10_000 {
            if self.written == self.committed && self.applied == self.committed && self.applying.is_none() {
                return;
            }
            self.settle(true);
            self.d.on_flushed();
            let _ = self.d.on_ack(self.d.sent);
            self.now += ACK_RETRY;
            self.run();
        }
        panic!("not drained: written {} applied {} of {}", self.written, self.applied, self.committed);
    }
}

/// Entry `seq` as a DELIVERED receipt for message 1000 + seq.
fn receipt_entry(seq: u64) -> Bytes {
    let r = pb::Receipt { server_msg_ids: vec![1000 + seq], ..Default::default() };
    pb::InboxItem { server_msg_id: 5000 + seq, body: Some(Body::Receipt(r)), ..Default::default() }
        .encode_to_vec()
        .into()
}

/// The seqs of a write, or `None` for any other answer of `poll`.
fn written(action: Option<Action>) -> Option<Vec<u64>> {
    match action {
        Some(Action::Write(d)) => Some(d.items.iter().map(|i| i.seq).collect()),
        _ => None,
    }
}

#[test]
fn receipts_wait_for_another_write_or_for_the_hold() {
    let hold = Duration::from_millis(20);
    let config = DeliveryConfig { receipt_hold: hold, ..DEFAULTS };
    let mut d = Delivery::new(config, ME, InboxCursor { acked: 0, last: 0 }, 0).unwrap();
    let t0 = Instant::now();

    // Alone, a receipt waits out the hold, then goes by itself.
    d.on_hint(1, receipt_entry(1));
    assert_eq!(d.poll(t0), None);
    assert_eq!(d.deadline(), Some(t0 + hold));
    assert_eq!(d.poll(t0 + hold - Duration::from_millis(1)), None);
    assert_eq!(written(d.poll(t0 + hold)), Some(vec![1]));
    assert_eq!(d.deadline(), None);

    // Something else is written: the held receipts go with it, at once; a release is one-off.
    let t1 = t0 + 2 * hold;
    d.on_hint(2, receipt_entry(2));
    d.on_hint(3, receipt_entry(3));
    assert_eq!(d.poll(t1), None);
    assert!(d.release_held());
    assert!(!d.release_held());
    assert_eq!(written(d.poll(t1)), Some(vec![2, 3]));
    assert!(!d.release_held(), "nothing is held any more");

    // A message after receipts ends the hold: the run goes whole, in order.
    d.on_hint(4, receipt_entry(4));
    d.on_hint(5, entry(5, 10));
    assert_eq!(written(d.poll(t1)), Some(vec![4, 5]));

    // Group receipts wait too.
    let group = pb::GroupReceipt { group_id: 9, server_msg_ids: vec![1], ..Default::default() };
    let item = pb::InboxItem { body: Some(Body::GroupReceipt(group)), ..Default::default() };
    d.on_hint(6, item.encode_to_vec().into());
    assert_eq!(d.poll(t1), None);
    assert!(d.release_held());
    assert_eq!(written(d.poll(t1)), Some(vec![6]));

    // A message hinted while receipts are held (already checked) ends the hold too.
    d.on_hint(7, receipt_entry(7));
    d.on_hint(8, receipt_entry(8));
    assert_eq!(d.poll(t1), None);
    d.on_hint(9, entry(9, 10));
    assert_eq!(written(d.poll(t1)), Some(vec![7, 8, 9]));
}

#[test]
fn a_receipt_hinted_without_a_wake_up_is_held_from_when_it_came() {
    let hold = Duration::from_millis(20);
    let config = DeliveryConfig { receipt_hold: hold, ..DEFAULTS };
    let mut d = Delivery::new(config, ME, InboxCursor { acked: 0, last: 0 }, 0).unwrap();
    let t0 = Instant::now();

    // Taken 15 ms after it came: it waits 5 ms more, not 20.
    d.on_receipt_hint(1, receipt_entry(1), t0);
    let taken = t0 + Duration::from_millis(15);
    assert_eq!(d.poll(taken), None);
    assert_eq!(d.deadline(), Some(t0 + hold));
    assert_eq!(written(d.poll(t0 + hold)), Some(vec![1]));

    // Taken after its hold is over (the release woke the session): it goes at once.
    let t1 = t0 + 2 * hold;
    d.on_receipt_hint(2, receipt_entry(2), t1);
    d.on_receipt_hint(3, receipt_entry(3), t1 + Duration::from_millis(4));
    assert_eq!(written(d.poll(t1 + hold)), Some(vec![2, 3]), "the oldest one's hold counts");
    assert_eq!(d.deadline(), None);

    // Behind a gap it holds no deadline of its own (the gap's wait does), and a window that is
    // full makes it wait for room without a deadline that has passed.
    let t2 = t1 + 3 * hold;
    d.on_receipt_hint(5, receipt_entry(5), t2);
    assert_eq!(d.poll(t2), None);
    assert_eq!(d.deadline(), Some(t2 + GAP_WAIT));
    let full = DeliveryConfig { window: 1, receipt_hold: hold, ..DEFAULTS };
    let mut d = Delivery::new(full, ME, InboxCursor { acked: 0, last: 0 }, 0).unwrap();
    d.on_hint(1, entry(1, 10));
    assert_eq!(written(d.poll(t0)), Some(vec![1]));
    d.on_receipt_hint(2, receipt_entry(2), t0);
    assert_eq!(d.poll(t0 + 2 * hold), None, "the window is full");
    assert_eq!(d.deadline(), None);
    d.on_ack(1).unwrap();
    assert!(matches!(d.poll(t0 + 2 * hold), Some(Action::Ack(_))));
    assert_eq!(written(d.poll(t0 + 2 * hold)), Some(vec![2]), "its hold is long over");
}

#[test]
fn without_a_hold_receipts_go_at_once() {
    let mut d = Delivery::new(DEFAULTS, ME, InboxCursor { acked: 0, last: 0 }, 0).unwrap();
    d.on_hint(1, receipt_entry(1));
    assert_eq!(written(d.poll(Instant::now())), Some(vec![1]));
    assert!(!d.release_held());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_committed_entry_is_delivered_once_in_order_and_acked_with_its_receipts(
        window in 1..40u64,
        window_bytes in prop_oneof![Just(u64::MAX), 1..300u64],
        batch in 1..16usize,
        initial in 0..30u64,
        events in prop::collection::vec(event(), 0..80),
    ) {
        // Proves, for any interleaving: deliveries are contiguous and in order with no repeat;
        // the window holds; reads continue where delivery stands; acks are applied one at a
        // time from where the inbox stands, owing exactly the receipts of their entries (or
        // reading them back after a failure); and once things settle, everything committed was
        // delivered and acked.
        let mut model = Model::new(window, window_bytes, batch, initial);
        model.run();
        for e in &events {
            model.apply(e);
        }
        model.drain();
    }

    #[test]
    fn a_resume_cursor_is_accepted_exactly_up_to_the_inbox(acked in 0..50u64, extra in 0..50u64, resume in any::<u64>()) {
        let cursor = InboxCursor { acked, last: acked + extra };
        let resume = resume % (cursor.last + 3);
        match Delivery::new(DEFAULTS, ME, cursor, resume) {
            Ok(mut d) => {
                prop_assert!(resume <= cursor.last);
                let first = d.poll(Instant::now());
                if resume > acked {
                    let expected = InboxAck { after_seq: acked, up_to_seq: resume, owed: OwedReceipts::ReadFromInbox };
                    prop_assert_eq!(first, Some(Action::Ack(expected)));
                    prop_assert_eq!(d.sent, resume);
                } else {
                    prop_assert!(!matches!(first, Some(Action::Ack(_))));
                    prop_assert_eq!(d.sent, acked);
                }
            }
            Err(e) => {
                prop_assert!(resume > cursor.last);
                prop_assert!(matches!(e, ServiceError::ResumeBeyondInbox { .. }), "{:?}", e);
            }
        }
    }
}
