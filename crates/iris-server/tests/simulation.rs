//! A seeded simulation of the message path, in the style of TigerBeetle's VOPR: the real delivery
//! machine (`session::delivery`) of every device, over the real inbox log on the simulated disk
//! and cold store of `iris-store`'s `sim` feature, driven by one seeded scheduler.
//!
//! Each step does one random thing: a committer batch (new sends, retries, and the acks sessions
//! asked for, each ack atomic with its DELIVERED receipts, as `receipts.rs` writes them), router
//! hints fed to a session in any order (some dropped, which makes the session lag), an inbox read
//! completed, a delivery reaching its client, a client ack, time passing, a disconnect, a
//! reconnect with or without a resume cursor, a checkpoint or memory relief, an armed disk
//! failure, or a crash of the store (unsynced bytes dropped or torn, then recovery).
//!
//! Checked after every step: each connection writes seqs that continue where it started (the
//! store's acked cursor or the resume cursor, whichever is higher) with no gap, no repeat and the
//! item the store accepted at that seq; the window is never exceeded; the log's cursors are what
//! the committed batches said. At every recovery: nothing accepted is lost and what a failed
//! batch left behind is one of its own ops. At the end, with the disk healed and every device
//! connected until nothing moves: every device received every seq of its inbox, everything is
//! acked, and every acked 1:1 message produced exactly one DELIVERED receipt per recipient device,
//! on every device of its sender.
//!
//! The services between the session and the log (`Inbox::acknowledge`, `Receipts`, `Fanout`)
//! are async and need a whole store; here they are mirrored in a few lines (`ack_op`, `send_op`).
//!
//! `IRIS_SIM_SEEDS=N` runs N histories (default 1000); `IRIS_SIM_SEED=S` replays one. A failure
//! prints its seed, its step and the command that replays it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use iris_proto::item_head::InboxItemHead;
use iris_proto::pb::{self, inbox_item};
use iris_server::fanout::{encode_item, entries_for};
use iris_server::inbox::{InboxAck, OwedReceipts};
use iris_server::receipts::{Owed, ReceiptDue};
use iris_server::router::UnwantedReceipts;
use iris_server::session::delivery::{Action, Delivery, DeliveryConfig, ACK_RETRY};
use iris_store::embedded::log::sim::{SimCold, SimFs};
use iris_store::embedded::log::{Done, InboxLog, LogConfig, Op};
use iris_store::{AccountId, AppendOutcome, AppendRequest, DedupKey, DeviceAddr, NewEntry};
use prost::Message as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const ACCOUNTS: u64 = 3;
const DEVICES_PER_ACCOUNT: u32 = 2;
const STEPS: usize = 200;
/// Small, so that the window and batch bounds are hit all the time.
const CONFIG: DeliveryConfig = DeliveryConfig {
    window: 4,
    window_bytes: u64::MAX,
    batch: 3,
    receipt_hold: Duration::from_millis(4),
    declined: UnwantedReceipts::NONE,
};
/// A session's hint queue; beyond it hints are dropped and the session lags.
const HINTS_MAX: usize = 6;
/// Rounds of the final drain before the history is declared stuck.
const SETTLE_ROUNDS: usize = 500;

fn devices_of(account: AccountId) -> Vec<DeviceAddr> {
    (1..=DEVICES_PER_ACCOUNT).map(|d| DeviceAddr::new(account, d)).collect()
}

fn log_config() -> LogConfig {
    // Tiny bounds so that segments roll, checkpoints retire them and memory relief spills.
    LogConfig { segment_bytes_max: 1500, segments_live_max: 2, hot_bytes_max: 1500, spares_max: 1 }
}

/// One connection of a device: the real machine, and what its driver holds for it.
struct Conn {
    machine: Delivery,
    /// Router hints not yet given to the machine (bounded by [`HINTS_MAX`]).
    hints: Vec<(u64, Bytes)>,
    /// Hints were dropped: the machine is told before it next runs.
    lagged: bool,
    /// The inbox read in flight: `(after_seq, limit)`.
    read: Option<(u64, usize)>,
    /// The ack the machine asked to apply, not yet committed.
    ack: Option<InboxAck>,
    /// Deliveries written, not yet read by the client.
    wire: VecDeque<pb::Delivery>,
    /// Highest seq written on this connection (starts where delivery must resume).
    written: u64,
    /// Highest seq the client received on this connection.
    received: u64,
    /// Highest seq the client acked on this connection (starts like `written`).
    acked: u64,
}

/// A device: its client's view, its inbox as the committed batches described it, its connection.
#[derive(Default)]
struct Device {
    /// Every seq the client received → the message id it carried.
    got: BTreeMap<u64, u64>,
    /// DELIVERED receipts received, by inbox seq (a redelivery lands on the same key).
    receipts: BTreeMap<u64, (DeviceAddr, Vec<u64>)>,
    /// Highest seq the client acked (a resume cursor counts).
    client_acked: u64,
    /// The inbox: seq → message id of every entry known to be stored.
    items: BTreeMap<u64, u64>,
    last: u64,
    /// Highest ack known to be durable.
    acked: u64,
    /// Highest ack of a failed batch (it may have landed).
    acked_maybe: u64,
    conn: Option<Conn>,
}

impl Device {
    fn high(&self) -> u64 {
        self.got.keys().next_back().copied().unwrap_or(0)
    }
}

/// A send the client has not seen ACCEPTED yet; it retries with the same key.
#[derive(Clone)]
struct Pending {
    key: DedupKey,
    to: AccountId,
}

/// One op of a committer batch, to check its answer.
enum Sent {
    Message { pending: Pending, id: u64, entries: Vec<NewEntry> },
    Ack { device: DeviceAddr, up_to: u64, receipts: Vec<NewEntry>, receipt_ids: Vec<u64> },
}

struct Sim {
    seed: u64,
    step: usize,
    rng: StdRng,
    now: Instant,
    fs: SimFs,
    cold: SimCold,
    log: InboxLog,
    devices: BTreeMap<DeviceAddr, Device>,
    next_id: u64,
    /// Sends not yet answered ACCEPTED (or a duplicate of an accepted one).
    outbox: Vec<Pending>,
    /// Accepted 1:1 messages: id → (sender device, recipient account).
    messages: BTreeMap<u64, (DeviceAddr, AccountId)>,
    /// Accepted sends: dedup key → message id.
    accepted: HashMap<DedupKey, u64>,
    /// Items of a failed batch that may have landed: id → its send (`None` for a receipt).
    maybe: HashMap<u64, Option<Pending>>,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let fs = SimFs::new(seed ^ 0x5eed);
        let cold = SimCold::default();
        let log = InboxLog::open(Arc::new(fs.clone()), Arc::new(cold.clone()), log_config()).expect("open empty");
        let devices = (1..=ACCOUNTS).flat_map(devices_of).map(|d| (d, Device::default())).collect();
        Self {
            seed,
            step: 0,
            rng: StdRng::seed_from_u64(seed),
            now: Instant::now(),
            fs,
            cold,
            log,
            devices,
            next_id: 0,
            outbox: Vec::new(),
            messages: BTreeMap::new(),
            accepted: HashMap::new(),
            maybe: HashMap::new(),
        }
    }

    fn fail(&self, what: String) -> ! {
        panic!("simulation seed {} step {}: {what}", self.seed, self.step);
    }

    fn run(&mut self) {
        for step in 0..STEPS {
            self.step = step;
            let d = self.pick_device();
            match self.rng.random_range(0..100) {
                0..=21 => self.commit(true),
                22..=43 => self.pump(d),
                44..=53 => self.complete_read(d),
                54..=68 => self.receive(d),
                69..=78 => self.client_ack(d, false),
                79..=84 => self.tick(),
                85..=87 => self.dev(d).conn = None,
                88..=93 => self.connect(d),
                94 => self.housekeeping(),
                95 | 96 => self.fs.fail_after(self.rng.random_range(1..8)),
                _ => self.crash(),
            }
            if self.log.is_poisoned() || self.fs.is_dead() {
                self.crash();
            }
            self.check_cursors();
        }
        self.settle();
        self.check_end();
    }

    fn pick_device(&mut self) -> DeviceAddr {
        let all: Vec<DeviceAddr> = self.devices.keys().copied().collect();
        all[self.rng.random_range(0..all.len())]
    }

    fn dev(&mut self, d: DeviceAddr) -> &mut Device {
        self.devices.get_mut(&d).expect("a simulated device")
    }

    /// One committer batch: new sends (if `new_sends`), retries, and the acks sessions asked for.
    fn commit(&mut self, new_sends: bool) {
        let mut pendings = Vec::new();
        if new_sends {
            for _ in 0..self.rng.random_range(0..4) {
                if !self.outbox.is_empty() && self.rng.random_bool(0.3) {
                    pendings.push(self.outbox[self.rng.random_range(0..self.outbox.len())].clone());
                    continue;
                }
                let from = self.pick_device();
                let to = (from.account + self.rng.random_range(0..ACCOUNTS - 1)) % ACCOUNTS + 1;
                self.next_id += 1;
                let p = Pending { key: DedupKey { sender: from, client_msg_id: format!("c{}", self.next_id) }, to };
                self.outbox.push(p.clone());
                pendings.push(p);
            }
        } else {
            pendings = self.outbox.clone();
        }
        let mut ops = Vec::new();
        let mut sent = Vec::new();
        for pending in pendings {
            let (op, id, entries) = self.send_op(&pending);
            ops.push(op);
            sent.push(Sent::Message { pending, id, entries });
        }
        let asking: Vec<DeviceAddr> = (self.devices.iter())
            .filter(|(_, v)| v.conn.as_ref().is_some_and(|c| c.ack.is_some()))
            .map(|(d, _)| *d)
            .collect();
        for d in asking {
            if self.rng.random_bool(0.3) {
                continue; // Not in this batch.
            }
            let (now, overloaded) = (self.now, self.rng.random_bool(0.05));
            let conn = self.dev(d).conn.as_mut().expect("connected");
            let ack = conn.ack.take().expect("an ack asked for");
            if overloaded {
                // The receipts could not be staged (OVERLOADED): nothing reached the store.
                conn.machine.on_ack_applied(false, now);
                continue;
            }
            let (op, receipts, receipt_ids) = self.ack_op(d, &ack);
            ops.push(op);
            sent.push(Sent::Ack { device: d, up_to: ack.up_to_seq, receipts, receipt_ids });
        }
        if ops.is_empty() {
            return;
        }
        let committed = self.log.commit(ops);
        if committed.failed {
            self.uncertain(sent);
            self.crash();
            return;
        }
        let mut hints = Vec::new();
        for (s, result) in sent.into_iter().zip(committed.results) {
            let done = result.unwrap_or_else(|e| self.fail(format!("an op of a durable batch failed: {e}")));
            match (s, done) {
                (Sent::Message { pending, id, entries }, Done::Append(outcome)) => {
                    self.outbox.retain(|p| p.key != pending.key);
                    self.accepted(pending, id, &entries, outcome, &mut hints);
                }
                (Sent::Ack { device, up_to, receipts, .. }, done) => {
                    if let Done::Append(AppendOutcome::Appended { seqs }) = done {
                        self.stored(&receipts, &seqs, &mut hints);
                    }
                    let now = self.now;
                    let dev = self.dev(device);
                    dev.acked = dev.acked.max(up_to);
                    dev.conn.as_mut().expect("connected").machine.on_ack_applied(true, now);
                }
                (_, done) => self.fail(format!("a send answered {done:?}")),
            }
        }
        self.hint(hints);
    }

    /// A failed batch: any prefix of its ops may have reached the disk.
    fn uncertain(&mut self, sent: Vec<Sent>) {
        for s in sent {
            match s {
                Sent::Message { pending, id, .. } => {
                    self.maybe.insert(id, Some(pending));
                }
                Sent::Ack { device, up_to, receipt_ids, .. } => {
                    let dev = self.dev(device);
                    dev.acked_maybe = dev.acked_maybe.max(up_to);
                    self.maybe.extend(receipt_ids.into_iter().map(|id| (id, None)));
                }
            }
        }
    }

    /// A 1:1 send as `messaging.rs` builds it: the recipient's devices and the sender's others.
    fn send_op(&mut self, p: &Pending) -> (Op, u64, Vec<NewEntry>) {
        self.next_id += 1;
        let id = self.next_id;
        let from = p.key.sender;
        let message = pb::Message { from_account_id: from.account, from_device_id: from.device, ..Default::default() };
        let item = encode_item(id, 1, inbox_item::Body::Message(message));
        let mine = devices_of(from.account).into_iter().filter(|d| *d != from);
        let entries = entries_for(devices_of(p.to).into_iter().chain(mine), &item);
        let req = AppendRequest {
            expires_at_ms: None,
            dedup: Some(p.key.clone()),
            server_msg_id: id,
            server_ts_ms: 1,
            entries: entries.clone(),
        };
        (Op::Append { req, writes: Vec::new(), ack: None }, id, entries)
    }

    /// An ack as `Inbox::acknowledge` and `Receipts::acknowledge` write it: one DELIVERED receipt
    /// per sender to all of its devices, atomic with the ack. Unknown receipts are read back.
    fn ack_op(&mut self, d: DeviceAddr, ack: &InboxAck) -> (Op, Vec<NewEntry>, Vec<u64>) {
        let owed = match &ack.owed {
            OwedReceipts::Known(owed) => owed.clone(),
            OwedReceipts::ReadFromInbox => {
                let n = ack.up_to_seq.saturating_sub(ack.after_seq) as usize;
                let read = self.log.read(d, ack.after_seq, n).unwrap_or_else(|e| self.fail(format!("read back: {e}")));
                let mut owed = Owed::default();
                for e in read.into_iter().filter(|e| e.seq <= ack.up_to_seq) {
                    owed.add(ReceiptDue::of(&InboxItemHead::decode(e.item).expect("an item"), d.account));
                }
                owed
            }
        };
        let (mut entries, mut ids) = (Vec::new(), Vec::new());
        for sender in 1..=ACCOUNTS {
            let msg_ids = owed.to_sender(sender);
            if msg_ids.is_empty() {
                continue;
            }
            self.next_id += 1;
            ids.push(self.next_id);
            let receipt = pb::Receipt {
                r#type: pb::ReceiptType::Delivered as i32,
                from_account_id: d.account,
                from_device_id: d.device,
                peer_account_id: d.account,
                server_msg_ids: msg_ids.to_vec(),
            };
            entries.extend(entries_for(
                devices_of(sender),
                &encode_item(self.next_id, 1, inbox_item::Body::Receipt(receipt)),
            ));
        }
        let op = match ids.first() {
            None => Op::Ack { device: d, up_to: ack.up_to_seq },
            Some(&id) => {
                let req = AppendRequest {
                    expires_at_ms: None,
                    dedup: None,
                    server_msg_id: id,
                    server_ts_ms: 1,
                    entries: entries.clone(),
                };
                Op::Append { req, writes: Vec::new(), ack: Some((d, ack.up_to_seq)) }
            }
        };
        (op, entries, ids)
    }

    /// A send's answer: stored once, or a duplicate of the accepted original.
    fn accepted(
        &mut self,
        p: Pending,
        id: u64,
        entries: &[NewEntry],
        outcome: AppendOutcome,
        hints: &mut Vec<(DeviceAddr, u64, Bytes)>,
    ) {
        match (outcome, self.accepted.get(&p.key)) {
            (AppendOutcome::Appended { seqs }, None) => {
                self.accepted.insert(p.key.clone(), id);
                self.messages.insert(id, (p.key.sender, p.to));
                self.stored(entries, &seqs, hints);
            }
            (AppendOutcome::Duplicate { server_msg_id, .. }, Some(&original)) if server_msg_id == original => {}
            (outcome, original) => {
                self.fail(format!("{:?} answered {outcome:?}, accepted before as {original:?}", p.key))
            }
        }
    }

    /// Durable entries: each the next seq of its inbox; hinted to its device's session.
    fn stored(&mut self, entries: &[NewEntry], seqs: &[u64], hints: &mut Vec<(DeviceAddr, u64, Bytes)>) {
        for (e, &seq) in entries.iter().zip(seqs) {
            let id = pb::InboxItem::decode(e.item.clone()).expect("an item").server_msg_id;
            let dev = self.dev(e.device);
            if seq != dev.last + 1 {
                let last = dev.last;
                self.fail(format!("{} got seq {seq} after {last}", e.device));
            }
            dev.last = seq;
            dev.items.insert(seq, id);
            hints.push((e.device, seq, e.item.clone()));
        }
    }

    /// The router: hints reach connected sessions in any order; a full queue drops them (lag).
    fn hint(&mut self, mut hints: Vec<(DeviceAddr, u64, Bytes)>) {
        hints.shuffle(&mut self.rng);
        for (d, seq, item) in hints {
            let drop = self.rng.random_bool(0.05);
            let Some(conn) = self.dev(d).conn.as_mut() else { continue };
            if drop || conn.hints.len() >= HINTS_MAX {
                conn.lagged = true;
            } else {
                conn.hints.push((seq, item));
            }
        }
    }

    /// The session's driver wakes: some hints in any order, then every action due.
    fn pump(&mut self, d: DeviceAddr) {
        let Some(mut conn) = self.dev(d).conn.take() else { return };
        for _ in 0..self.rng.random_range(0..=conn.hints.len()) {
            let (seq, item) = conn.hints.swap_remove(self.rng.random_range(0..conn.hints.len()));
            // Receipts come as the router hints them, held without a wake-up for a while.
            let receipt = InboxItemHead::decode(&item[..]).is_ok_and(|h| h.is_receipt());
            if receipt && self.rng.random_bool(0.5) {
                let waited = Duration::from_millis(self.rng.random_range(0..=30));
                conn.machine.on_receipt_hint(seq, item, self.now.checked_sub(waited).unwrap_or(self.now));
            } else {
                conn.machine.on_hint(seq, item);
            }
        }
        if std::mem::take(&mut conn.lagged) {
            conn.machine.on_lagged();
        }
        loop {
            while let Some(action) = conn.machine.poll(self.now) {
                match action {
                    Action::Write(raw) => {
                        // What the client reads: the stored items with their seqs, decoded.
                        let items = raw.items.iter().map(|i| i.to_pb().expect("a stored item")).collect();
                        let delivery = pb::Delivery { items };
                        self.check_written(d, &mut conn, &delivery);
                        conn.wire.push_back(delivery);
                    }
                    Action::Read { after_seq, limit } if conn.read.is_none() => conn.read = Some((after_seq, limit)),
                    Action::Ack(ack) if conn.ack.is_none() => conn.ack = Some(ack),
                    action => self.fail(format!("{d}: {action:?} while one is in flight")),
                }
            }
            // Sometimes the driver writes something else (an answer): held receipts go with it.
            if !self.rng.random_bool(0.3) || !conn.machine.release_held() {
                break;
            }
        }
        conn.machine.on_flushed();
        self.dev(d).conn = Some(conn);
    }

    /// A written delivery continues the connection's seqs with the stored items, in the window.
    fn check_written(&self, d: DeviceAddr, conn: &mut Conn, delivery: &pb::Delivery) {
        for item in &delivery.items {
            if item.seq != conn.written + 1 {
                self.fail(format!("{d} wrote seq {} after {}", item.seq, conn.written));
            }
            let stored = self.devices[&d].items.get(&item.seq);
            if stored != Some(&item.server_msg_id) {
                self.fail(format!(
                    "{d} wrote message {} at seq {}, the store has {stored:?}",
                    item.server_msg_id, item.seq
                ));
            }
            conn.written = item.seq;
        }
        if conn.written - conn.acked > CONFIG.window {
            self.fail(format!("{d}: {} unacked beyond the window of {}", conn.written - conn.acked, CONFIG.window));
        }
    }

    fn complete_read(&mut self, d: DeviceAddr) {
        let Some(conn) = self.devices.get(&d).and_then(|v| v.conn.as_ref()) else { return };
        let Some((after_seq, limit)) = conn.read else { return };
        let read = self.log.read(d, after_seq, limit).unwrap_or_else(|e| self.fail(format!("read: {e}")));
        if read.len() > limit {
            self.fail(format!("{d}: read {} entries for a limit of {limit}", read.len()));
        }
        let conn = self.dev(d).conn.as_mut().expect("connected");
        conn.read = None;
        conn.machine.on_read(read.into_iter().map(|e| (e.seq, e.item)).collect());
    }

    /// The client reads one delivery: no gap in what it has, receipts only for acked messages.
    fn receive(&mut self, d: DeviceAddr) {
        let Some(delivery) = self.dev(d).conn.as_mut().and_then(|c| c.wire.pop_front()) else { return };
        for item in delivery.items {
            let high = self.devices[&d].high();
            if item.seq > high + 1 {
                self.fail(format!("{d} received seq {} with {high} the highest before: a gap", item.seq));
            }
            if let Some(inbox_item::Body::Receipt(r)) = &item.body {
                let from = DeviceAddr::new(r.from_account_id, r.from_device_id);
                for m in &r.server_msg_ids {
                    let acker = &self.devices[&from];
                    if !acker.items.iter().any(|(&seq, id)| id == m && seq <= acker.acked) {
                        self.fail(format!("{d} received a DELIVERED receipt of {m} from {from}, which did not ack it"));
                    }
                }
                self.dev(d).receipts.insert(item.seq, (from, r.server_msg_ids.clone()));
            }
            let dev = self.dev(d);
            dev.got.insert(item.seq, item.server_msg_id);
            let conn = dev.conn.as_mut().expect("connected");
            conn.received = conn.received.max(item.seq);
        }
    }

    /// The client acks what it received on this connection (up to all of it with `all`).
    fn client_ack(&mut self, d: DeviceAddr, all: bool) {
        let Some(conn) = self.devices.get(&d).and_then(|v| v.conn.as_ref()) else { return };
        if conn.received <= conn.acked {
            return;
        }
        let (from, to) = (conn.acked + 1, conn.received);
        let up_to = if all || self.rng.random_bool(0.6) { to } else { self.rng.random_range(from..=to) };
        let dev = self.dev(d);
        let conn = dev.conn.as_mut().expect("connected");
        let refused = conn.machine.on_ack(up_to).err();
        conn.acked = up_to;
        dev.client_acked = dev.client_acked.max(up_to);
        if let Some(e) = refused {
            self.fail(format!("{d}: ack of {up_to} refused: {e}"));
        }
    }

    /// Time passes: a little (gap deadlines), or a failed ack's retry delay.
    fn tick(&mut self) {
        self.now +=
            if self.rng.random_bool(0.8) { Duration::from_millis(self.rng.random_range(0..5)) } else { ACK_RETRY };
    }

    /// A (re)connection: resumes after nothing, after its acks, or after all it received.
    fn connect(&mut self, d: DeviceAddr) {
        let dev = &self.devices[&d];
        let resume = match self.rng.random_range(0..4) {
            0 => 0,
            1 => dev.client_acked,
            _ => dev.high(),
        };
        let cursor = self.log.cursor(d).unwrap_or_else(|e| self.fail(format!("cursor: {e}")));
        let machine = Delivery::new(CONFIG, d.account, cursor, resume)
            .unwrap_or_else(|e| self.fail(format!("{d} resuming after {resume} refused: {e}")));
        let start = cursor.acked.max(resume);
        let dev = self.dev(d);
        dev.client_acked = dev.client_acked.max(resume);
        dev.conn = Some(Conn {
            machine,
            hints: Vec::new(),
            lagged: false,
            read: None,
            ack: None,
            wire: VecDeque::new(),
            written: start,
            received: start,
            acked: start,
        });
    }

    /// The checkpointer: retire segments, or move entries out of memory.
    fn housekeeping(&mut self) {
        let _ = if self.rng.random_bool(0.5) { self.log.checkpoint().map(|_| ()) } else { self.log.relieve() };
    }

    /// The power goes out: sessions end, unsynced bytes are dropped or torn, the log recovers.
    fn crash(&mut self) {
        for dev in self.devices.values_mut() {
            dev.conn = None;
        }
        self.fs.crash();
        self.cold.crash(self.rng.random());
        let placeholder =
            InboxLog::open(Arc::new(SimFs::new(0)), Arc::new(SimCold::default()), log_config()).expect("open");
        drop(std::mem::replace(&mut self.log, placeholder));
        self.log = InboxLog::open(Arc::new(self.fs.clone()), Arc::new(self.cold.clone()), log_config())
            .unwrap_or_else(|e| self.fail(format!("recovery failed: {e}")));
        let all: Vec<DeviceAddr> = self.devices.keys().copied().collect();
        for d in all {
            self.recovered(d);
        }
        self.maybe.clear();
    }

    /// After recovery: every accepted entry is there; anything new is an op of the failed batch.
    fn recovered(&mut self, d: DeviceAddr) {
        let cursor = self.log.cursor(d).unwrap_or_else(|e| self.fail(format!("cursor: {e}")));
        let dev = &self.devices[&d];
        let last = dev.last;
        if cursor.last < dev.last || cursor.acked < dev.acked || cursor.acked > dev.acked.max(dev.acked_maybe) {
            self.fail(format!(
                "{d} recovered {cursor:?}; acked {} (maybe {}), last {}",
                dev.acked, dev.acked_maybe, dev.last
            ));
        }
        let mut entries = Vec::new();
        loop {
            let after = entries.last().map_or(cursor.acked, |(seq, _)| *seq);
            let page = self.log.read(d, after, 64).unwrap_or_else(|e| self.fail(format!("read: {e}")));
            if page.is_empty() {
                break;
            }
            entries.extend(
                page.into_iter().map(|e| (e.seq, pb::InboxItem::decode(e.item).expect("an item").server_msg_id)),
            );
        }
        let seqs: Vec<u64> = entries.iter().map(|(seq, _)| *seq).collect();
        if seqs != (cursor.acked + 1..=cursor.last).collect::<Vec<_>>() {
            self.fail(format!("{d} recovered {cursor:?} with entries {seqs:?}"));
        }
        for (seq, id) in entries {
            if seq <= last {
                let accepted = self.devices[&d].items.get(&seq);
                if accepted != Some(&id) {
                    self.fail(format!("{d} recovered {id} at seq {seq}, accepted was {accepted:?}"));
                }
                continue;
            }
            match self.maybe.get(&id).cloned() {
                None => self.fail(format!("{d} recovered {id} at seq {seq}, which no failed batch held")),
                Some(Some(p)) => {
                    self.accepted.insert(p.key.clone(), id);
                    self.messages.insert(id, (p.key.sender, p.to));
                }
                Some(None) => {}
            }
            self.dev(d).items.insert(seq, id);
        }
        let dev = self.dev(d);
        (dev.last, dev.acked, dev.acked_maybe) = (cursor.last, cursor.acked, 0);
    }

    /// The log's cursors are what the committed batches said.
    fn check_cursors(&self) {
        for (d, dev) in &self.devices {
            let cursor = self.log.cursor(*d).unwrap_or_else(|e| self.fail(format!("cursor: {e}")));
            if (cursor.acked, cursor.last) != (dev.acked, dev.last) {
                self.fail(format!(
                    "{d}: the log says {cursor:?}, the batches said acked {} last {}",
                    dev.acked, dev.last
                ));
            }
        }
    }

    /// The disk heals (a last crash clears any armed failure); every device connects and the
    /// system runs until nothing moves.
    fn settle(&mut self) {
        self.step = STEPS;
        self.crash();
        let all: Vec<DeviceAddr> = self.devices.keys().copied().collect();
        for &d in &all {
            self.connect(d);
        }
        for _ in 0..SETTLE_ROUNDS {
            if self.outbox.is_empty() && self.devices.values().all(Device::settled) {
                return;
            }
            self.now += ACK_RETRY;
            for &d in &all {
                self.pump(d);
                self.complete_read(d);
                while self.devices[&d].conn.as_ref().is_some_and(|c| !c.wire.is_empty()) {
                    self.receive(d);
                }
                self.client_ack(d, true);
            }
            self.commit(false);
        }
        self.fail(format!("the history did not settle in {SETTLE_ROUNDS} rounds"));
    }

    /// At-least-once delivery of everything, and exactly one DELIVERED receipt per acked message
    /// and recipient device, on every device of its sender.
    fn check_end(&self) {
        for (d, dev) in &self.devices {
            if let Some(seq) = (1..=dev.last).find(|seq| dev.got.get(seq) != dev.items.get(seq)) {
                self.fail(format!("{d} never received seq {seq} ({:?})", dev.items.get(&seq)));
            }
        }
        let mut seen: BTreeMap<(DeviceAddr, DeviceAddr, u64), usize> = BTreeMap::new();
        for (d, dev) in &self.devices {
            for (from, ids) in dev.receipts.values() {
                for &m in ids {
                    *seen.entry((*d, *from, m)).or_default() += 1;
                }
            }
        }
        for (&m, &(sender, to)) in &self.messages {
            for on in devices_of(sender.account) {
                for from in devices_of(to) {
                    match seen.remove(&(on, from, m)) {
                        Some(1) => {}
                        n => self.fail(format!("{on} has {n:?} DELIVERED receipts of {m} from {from}, not one")),
                    }
                }
            }
        }
        if let Some(((on, from, m), n)) = seen.into_iter().next() {
            self.fail(format!("{on} has {n} DELIVERED receipts of {m} from {from}, which was never sent to it"));
        }
    }
}

impl Device {
    /// Connected, idle, and everything received and acked.
    fn settled(&self) -> bool {
        self.conn
            .as_ref()
            .is_some_and(|c| c.hints.is_empty() && c.read.is_none() && c.ack.is_none() && c.wire.is_empty())
            && self.acked == self.last
            && self.high() == self.last
    }
}

#[test]
fn simulated_histories_lose_nothing_and_deliver_in_order() {
    // Proves, over seeded histories of sends, retries, hints in any order or dropped, reads,
    // acks, reconnects with and without resume cursors, checkpoints, disk failures and crashes:
    // nothing accepted is lost, each connection delivers its inbox in seq order from where it
    // must resume with no gap and within its window, and every acked message produces exactly
    // one DELIVERED receipt.
    let seeds: Vec<u64> = match std::env::var("IRIS_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("IRIS_SIM_SEED is a number")],
        Err(_) => {
            let n =
                std::env::var("IRIS_SIM_SEEDS").ok().map_or(1000, |n| n.parse().expect("IRIS_SIM_SEEDS is a number"));
            (0..n).collect()
        }
    };
    for seed in seeds {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Sim::new(seed).run())).is_err() {
            panic!("simulation seed {seed} failed (above)\nreplay: IRIS_SIM_SEED={seed} cargo test -p iris-server --test simulation");
        }
    }
}
