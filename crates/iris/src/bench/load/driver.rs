//! The raw load driver: one task (on its own thread, see `load/mod.rs`) runs every load
//! connection of a run as one event loop. It reads whatever arrives as soon as it arrives (so
//! arrival times are exact), and writes on the 1 ms tick: each connection's due operations —
//! its sends, one cumulative ack of everything received, a ping when idle — as one write. Writes
//! are most of the generator's cost (each one runs the loopback TCP stack), and each costs the
//! server a read, so an ack waits to ride with the connection's next send, for at most the ack
//! delay (`--ack-delay-ms`), unless a full delivery batch is waiting.
//! Under load, more is written per syscall, so the cost per message falls as the rate rises.

use std::future::Future;
use std::io::ErrorKind;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf as _, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use futures_util::FutureExt as _;
use iris_proto::pb;
use iris_proto::FrameDecoder;
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng as _, SeedableRng as _};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::ledger::{Delivered, Ledger};
use super::schedule::{OpenSchedule, LATE_NS};
use super::wire::{self, Incoming, Stamp, To};
use crate::bench::harness::{now_ns, Counters, Tally};
use crate::bench::raw;
use crate::bench::stats::Latencies;

/// How often the driver writes, starts due sends, retries blocked writes and checks heartbeats.
const TICK: Duration = Duration::from_millis(1);
/// Unacked entries on one connection that are acked at once rather than at the next tick
/// (a full delivery batch: the server's window of unacked entries never waits on the tick).
const ACK_AT_ONCE_ENTRIES: u64 = 100;
/// Most sends written and not answered; past it the open loop skips sends (and says so).
pub const OUTSTANDING_MAX: u64 = 200_000;
/// Largest server frame accepted.
const FRAME_MAX: u32 = 16 * 1024 * 1024;
/// Most readable connections handled in one turn before writing.
const READY_PER_TURN_MAX: usize = 4096;
/// How often idle connections are checked for a due ping.
const HEARTBEAT_CHECK_NS: u64 = 100_000_000;

/// What the driver is told to do.
pub enum Command {
    /// Send at `rate` per second for `duration_s` as `from` says;
    /// `done` gets the number of sends scheduled once the last one is due and counted in the
    /// published `outstanding`.
    Open {
        /// Sends per second.
        rate: f64,
        /// Length of the run.
        duration_s: f64,
        /// Who sends and where.
        from: OpenSenders,
        /// Told when every send of the schedule was due.
        done: oneshot::Sender<u64>,
    },
    /// Keep `inflight` sends in flight on each of `senders` (connection indexes) for `duration`.
    Closed {
        /// Sending connections.
        senders: Vec<usize>,
        /// Where they send.
        dest: Dest,
        /// Sends in flight per sender.
        inflight: u32,
        /// Length of the sending phase.
        duration: Duration,
    },
    /// Close every connection and return the outcome.
    Stop,
}

/// Who sends in an open-loop run, and where: each send from a random one of `senders`.
#[derive(Debug, Clone)]
pub struct OpenSenders {
    /// Connection indexes that send.
    pub senders: Vec<usize>,
    /// Where they send.
    pub dest: Dest,
}

/// Where a sender's messages go.
#[derive(Debug, Clone, Copy)]
pub enum Dest {
    /// A random other connection's account, per message.
    RandomOther,
    /// Always here.
    Fixed(To),
}

/// State the driver publishes for the controlling side (counts, backlog, how it keeps up).
#[derive(Default)]
pub struct Shared {
    /// The run's counts and latency window.
    pub counters: Arc<Counters>,
    /// Sends written and not answered, on connections still open.
    pub outstanding: AtomicU64,
    /// Deliveries accepted messages still owe.
    pub owed: AtomicU64,
    /// Open-loop sends not made because [`OUTSTANDING_MAX`] were outstanding.
    pub skipped: AtomicU64,
    /// Open-loop sends written more than [`LATE_NS`] after their scheduled time.
    pub late: AtomicU64,
    /// Connections the server closed.
    pub dropped: AtomicU64,
    /// Linux thread id of the driver thread (0 until known), to read its CPU time.
    pub thread_id: AtomicU32,
    /// Nanoseconds the spinning driver spent in turns with nothing to do.
    pub spin_idle_ns: Arc<AtomicU64>,
    /// The last error code the server sent that answered no send.
    pub last_refusal: Mutex<String>,
}

/// What the driver knows when it stops.
pub struct Outcome {
    /// Latency of every first delivery, from its scheduled time.
    pub latencies: Latencies,
    /// Per message delivered to every recipient: the latency of its last delivery.
    pub all_recipients: Latencies,
    /// Messages delivered to every recipient.
    pub complete: u64,
    /// Deliveries accepted messages still owe (after the drain: lost).
    pub owed: u64,
    /// Accepted messages with a delivery missing.
    pub undelivered_messages: u64,
    /// Sends never answered (their connection closed, or the run ended first).
    pub unanswered: u64,
    /// Deliveries of messages this run never sent.
    pub unknown: u64,
    /// Deliveries each accepted message was expected to have.
    pub deliveries_per_send: u16,
    /// Connections the server closed.
    pub dropped: u64,
    /// The last error code the server sent that answered no send.
    pub last_refusal: String,
}

/// One load connection.
pub struct Conn {
    stream: Rc<TcpStream>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Operations due, written at the end of the turn.
    ops: Vec<pb::ClientOp>,
    /// Highest inbox seq received, and the highest acked.
    top_seq: u64,
    acked_seq: u64,
    /// When the oldest entry not yet acked arrived (0: none waiting).
    unacked_since_ns: u64,
    last_write_ns: u64,
    /// Sends written and not answered.
    unanswered: u64,
    /// Group messages received and not yet marked read (with `read_groups`): (group, id).
    reads: Vec<(u64, u64)>,
    /// Closed loop: this connection sends there, with this many in flight.
    closed_dest: Option<Dest>,
    open: bool,
    /// Already in the list of connections to write this turn.
    queued: bool,
}

impl Conn {
    /// A connection after its handshake; `rbuf` holds what arrived after the `Welcome`.
    pub fn new(stream: TcpStream, rbuf: BytesMut) -> Self {
        Self {
            stream: Rc::new(stream),
            rbuf,
            wbuf: BytesMut::new(),
            ops: Vec::new(),
            top_seq: 0,
            acked_seq: 0,
            unacked_since_ns: 0,
            last_write_ns: now_ns(),
            unanswered: 0,
            reads: Vec::new(),
            closed_dest: None,
            open: true,
            queued: false,
        }
    }
}

type Readable = Pin<Box<dyn Future<Output = usize>>>;

/// The event loop over every connection of a run.
pub struct Driver {
    conns: Vec<Conn>,
    /// Account id of each connection.
    ids: Arc<Vec<u64>>,
    ledger: Ledger,
    deliveries_per_send: u16,
    shared: Arc<Shared>,
    decoder: FrameDecoder,
    readable: FuturesUnordered<Readable>,
    /// Connections with operations to write at the next tick (or at once, see
    /// [`ACK_AT_ONCE_ENTRIES`]).
    to_write: Vec<usize>,
    /// Spare list the writing turn swaps with `to_write` (keeps both allocations).
    waiting: Vec<usize>,
    /// Connections whose socket was full: retried each tick.
    blocked: Vec<usize>,
    /// Closed loop: connections whose last send failed, refilled at the next tick.
    refill: Vec<usize>,
    open_run: Option<(OpenSchedule, OpenSenders, Option<oneshot::Sender<u64>>)>,
    /// The open run's `done` and its count of sends, answered after the next `publish`: told
    /// before, the controller could read the counts of the turn before the last sends, find
    /// nothing outstanding or owed, and stop while they were on their way (false losses).
    open_done: Option<(oneshot::Sender<u64>, u64)>,
    closed_end_ns: Option<u64>,
    heartbeat_ns: u64,
    /// Longest an ack waits for a send to ride with.
    ack_delay_ns: u64,
    /// Poll without sleeping ([`super::RawOptions::spin`]).
    spin: bool,
    /// Mark group messages read with their ack ([`super::RawOptions::read_groups`]).
    read_groups: bool,
    next_heartbeat_check_ns: u64,
    /// Unanswered sends of connections that closed (no longer outstanding).
    abandoned: u64,
    tally: Tally,
    latencies: Latencies,
    all_recipients: Latencies,
    complete: u64,
    unknown: u64,
    scratch: Vec<Incoming>,
    rng: SmallRng,
}

impl Driver {
    /// A driver for connected `conns` (account `ids[i]` on `conns[i]`) whose accepted messages
    /// are each delivered `deliveries_per_send` times.
    pub fn new(
        conns: Vec<Conn>,
        ids: Arc<Vec<u64>>,
        deliveries_per_send: u16,
        heartbeat: Duration,
        options: super::RawOptions,
        shared: Arc<Shared>,
    ) -> Self {
        let n = conns.len();
        Self {
            conns,
            ids,
            ledger: Ledger::new(n, deliveries_per_send),
            deliveries_per_send,
            shared,
            decoder: FrameDecoder::new(FRAME_MAX),
            readable: FuturesUnordered::new(),
            to_write: Vec::with_capacity(n),
            waiting: Vec::with_capacity(n),
            blocked: Vec::new(),
            refill: Vec::new(),
            open_run: None,
            open_done: None,
            closed_end_ns: None,
            heartbeat_ns: heartbeat.as_nanos() as u64,
            ack_delay_ns: options.ack_delay.as_nanos() as u64,
            spin: options.spin,
            read_groups: options.read_groups,
            next_heartbeat_check_ns: 0,
            abandoned: 0,
            tally: Tally::default(),
            latencies: Latencies::new(),
            all_recipients: Latencies::new(),
            complete: 0,
            unknown: 0,
            scratch: Vec::new(),
            rng: SmallRng::seed_from_u64(rand::random()),
        }
    }

    /// Runs until told to stop (or the controlling side is gone).
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) -> Outcome {
        for idx in 0..self.conns.len() {
            self.absorb(idx, now_ns());
            self.arm(idx);
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let spin = self.spin;
        loop {
            let turn_start = if spin { now_ns() } else { 0 };
            let turn = tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(Command::Stop) | None => break,
                    Some(c) => {
                        self.apply(c);
                        Some(true)
                    }
                },
                _ = tick.tick() => {
                    self.on_tick();
                    Some(true)
                }
                Some(idx) = self.readable.next(), if !self.readable.is_empty() => {
                    self.on_readable(idx);
                    for _ in 0..READY_PER_TURN_MAX {
                        match self.readable.next().now_or_never() {
                            Some(Some(idx)) => self.on_readable(idx),
                            _ => break,
                        }
                    }
                    Some(false)
                }
                // Nothing ready: yielding makes the runtime poll its sockets without blocking
                // (epoll with a zero timeout) and come straight back.
                () = tokio::task::yield_now(), if spin => None,
            };
            let Some(tick_turn) = turn else {
                self.shared.spin_idle_ns.fetch_add(now_ns().saturating_sub(turn_start), Relaxed);
                continue;
            };
            self.write_all(tick_turn);
            self.publish();
        }
        self.outcome()
    }

    fn apply(&mut self, command: Command) {
        let now = now_ns();
        match command {
            Command::Open { rate, duration_s, from, done } => {
                self.open_run = Some((OpenSchedule::new(now, rate, duration_s), from, Some(done)));
                self.on_tick();
            }
            Command::Closed { senders, dest, inflight, duration } => {
                self.closed_end_ns = Some(now + duration.as_nanos() as u64);
                for idx in senders {
                    if idx >= self.conns.len() {
                        continue;
                    }
                    self.conns[idx].closed_dest = Some(dest);
                    for _ in 0..inflight {
                        self.send_from(idx, dest, now);
                    }
                }
            }
            Command::Stop => {}
        }
    }

    /// Starts due open-loop sends, refills failed closed-loop sends, retries blocked writes,
    /// pings idle connections.
    fn on_tick(&mut self) {
        let now = now_ns();
        if let Some((mut schedule, who, done)) = self.open_run.take() {
            for k in schedule.due(now) {
                let at = schedule.time_of(k);
                if self.ledger.outstanding() >= OUTSTANDING_MAX {
                    self.shared.skipped.fetch_add(1, Relaxed);
                    continue;
                }
                if now.saturating_sub(at) > LATE_NS {
                    self.shared.late.fetch_add(1, Relaxed);
                }
                let sender = who.senders.choose(&mut self.rng).copied();
                let Some(from) = sender.filter(|&i| self.conns.get(i).is_some_and(|c| c.open)) else {
                    self.shared.skipped.fetch_add(1, Relaxed);
                    continue;
                };
                self.send_from(from, who.dest, at);
            }
            if schedule.done() {
                self.open_done = done.map(|tx| (tx, schedule.total()));
            } else {
                self.open_run = Some((schedule, who, done));
            }
        }
        if self.closed_end_ns.is_some_and(|end| now >= end) {
            self.closed_end_ns = None;
        }
        for idx in std::mem::take(&mut self.refill) {
            if let (Some(dest), true) = (self.conns[idx].closed_dest, self.closed_end_ns.is_some()) {
                self.send_from(idx, dest, now);
            }
        }
        for idx in std::mem::take(&mut self.blocked) {
            self.want_write(idx);
        }
        if now >= self.next_heartbeat_check_ns {
            self.next_heartbeat_check_ns = now + HEARTBEAT_CHECK_NS;
            for idx in 0..self.conns.len() {
                let c = &self.conns[idx];
                if c.open && now.saturating_sub(c.last_write_ns) > self.heartbeat_ns / 2 {
                    self.conns[idx].ops.push(wire::ping_op());
                    self.want_write(idx);
                }
            }
        }
    }

    /// Queues one send from connection `idx`, scheduled at `at_ns`.
    fn send_from(&mut self, idx: usize, dest: Dest, at_ns: u64) {
        let to = match dest {
            Dest::Fixed(to) => to,
            Dest::RandomOther => {
                let n = self.ids.len();
                if n < 2 {
                    return;
                }
                let j = self.rng.random_range(0..n - 1);
                To::Account(self.ids[if j >= idx { j + 1 } else { j }])
            }
        };
        let seq = self.ledger.on_sent(idx);
        let stamp = Stamp { scheduled_ns: at_ns, sender: idx as u32, seq };
        let conn = &mut self.conns[idx];
        conn.ops.push(wire::send_op(to, &stamp));
        conn.unanswered += 1;
        self.tally.sent += 1;
        self.want_write(idx);
    }

    fn want_write(&mut self, idx: usize) {
        let conn = &mut self.conns[idx];
        if !conn.queued {
            conn.queued = true;
            self.to_write.push(idx);
        }
    }

    /// Waits for connection `idx` to become readable again.
    fn arm(&mut self, idx: usize) {
        let stream = self.conns[idx].stream.clone();
        self.readable.push(Box::pin(async move {
            let _ = stream.readable().await;
            idx
        }));
    }

    /// Reads what connection `idx` has, handles it, and waits for more.
    fn on_readable(&mut self, idx: usize) {
        let conn = &mut self.conns[idx];
        if !conn.open {
            return;
        }
        let closed = !raw::read_ready(&conn.stream, &mut conn.rbuf);
        self.absorb(idx, now_ns());
        if closed {
            self.close(idx);
        } else if self.conns[idx].open {
            self.arm(idx);
        }
    }

    /// Handles every complete frame in connection `idx`'s read buffer, as arrived at `now`.
    fn absorb(&mut self, idx: usize, now: u64) {
        let mut incoming = std::mem::take(&mut self.scratch);
        loop {
            match self.decoder.decode(&mut self.conns[idx].rbuf) {
                Ok(Some(body)) => {
                    if let Err(e) = wire::read_frame(&body, |i| incoming.push(i)) {
                        self.refused(format!("undecodable frame: {e}"));
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.refused(format!("bad frame: {e}"));
                    self.close(idx);
                    break;
                }
            }
        }
        for event in incoming.drain(..) {
            self.on_incoming(idx, event, now);
        }
        self.scratch = incoming;
        if self.conns[idx].top_seq > self.conns[idx].acked_seq {
            if self.conns[idx].unacked_since_ns == 0 {
                self.conns[idx].unacked_since_ns = now;
            }
            self.want_write(idx);
        }
    }

    fn on_incoming(&mut self, idx: usize, event: Incoming, now: u64) {
        match event {
            Incoming::Answer { request_id, accepted } => {
                if !self.ledger.on_answer(idx, request_id, accepted) {
                    return;
                }
                let conn = &mut self.conns[idx];
                conn.unanswered = conn.unanswered.saturating_sub(1);
                if accepted {
                    self.tally.accepted += 1;
                } else {
                    self.tally.send_errors += 1;
                }
                let sending = self.closed_end_ns.is_some_and(|end| now < end);
                if let (Some(dest), true) = (conn.closed_dest, sending) {
                    if accepted {
                        self.send_from(idx, dest, now);
                    } else {
                        self.refill.push(idx);
                    }
                }
            }
            Incoming::Message { inbox_seq, stamp, group_msg } => {
                if !self.take_seq(idx, inbox_seq) {
                    self.tally.duplicates += 1;
                    return;
                }
                if let (true, Some(read)) = (self.read_groups, group_msg) {
                    self.conns[idx].reads.push(read);
                }
                let Some(stamp) = stamp else { return };
                let latency = now.saturating_sub(stamp.scheduled_ns);
                match self.ledger.on_delivered(stamp.sender as usize, stamp.seq, latency) {
                    Delivered::New(complete) => {
                        self.tally.delivered += 1;
                        self.tally.latencies_ns.push(latency);
                        self.latencies.record_ns(latency);
                        if let Some(slowest) = complete {
                            self.all_recipients.record_ns(slowest);
                            self.complete += 1;
                        }
                    }
                    Delivered::Repeat => self.tally.duplicates += 1,
                    Delivered::Unknown => self.unknown += 1,
                }
            }
            Incoming::Entry { inbox_seq } => {
                self.take_seq(idx, inbox_seq);
            }
            Incoming::Refused { code, .. } => self.refused(code),
            Incoming::GoAway => self.refused("GOAWAY".into()),
        }
    }

    /// Notes an inbox seq; false when it was seen already (a redelivery).
    fn take_seq(&mut self, idx: usize, seq: u64) -> bool {
        let conn = &mut self.conns[idx];
        if seq <= conn.top_seq {
            return false;
        }
        conn.top_seq = seq;
        true
    }

    fn refused(&self, code: String) {
        *self.shared.last_refusal.lock().expect("refusal lock") = code;
    }

    fn close(&mut self, idx: usize) {
        let conn = &mut self.conns[idx];
        if conn.open {
            conn.open = false;
            conn.ops.clear();
            conn.wbuf.clear();
            self.abandoned += conn.unanswered;
            self.shared.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Writes each queued connection's operations (and its ack) with one write: on a tick, those
    /// with a send or an ack past the ack delay; between ticks, only those with
    /// [`ACK_AT_ONCE_ENTRIES`] to ack. The rest wait.
    fn write_all(&mut self, tick: bool) {
        let now = now_ns();
        let mut list = std::mem::take(&mut self.to_write);
        let mut waiting = std::mem::take(&mut self.waiting);
        for &idx in &list {
            let conn = &mut self.conns[idx];
            let full = conn.top_seq - conn.acked_seq >= ACK_AT_ONCE_ENTRIES;
            let ack_waits = conn.ops.is_empty() && now.saturating_sub(conn.unacked_since_ns) < self.ack_delay_ns;
            if !full && (!tick || ack_waits) {
                waiting.push(idx);
                continue;
            }
            conn.queued = false;
            if !conn.open {
                continue;
            }
            if conn.top_seq > conn.acked_seq {
                conn.ops.push(wire::ack_op(conn.top_seq));
                conn.acked_seq = conn.top_seq;
                conn.unacked_since_ns = 0;
                wire::group_read_ops(&conn.reads, &mut conn.ops);
                conn.reads.clear();
            }
            wire::encode_ops(&mut conn.ops, &mut conn.wbuf);
            let mut failed = false;
            while !conn.wbuf.is_empty() {
                match conn.stream.try_write(&conn.wbuf) {
                    Ok(n) => conn.wbuf.advance(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        self.blocked.push(idx);
                        break;
                    }
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            conn.last_write_ns = now;
            if failed {
                self.close(idx);
            }
        }
        list.clear();
        self.waiting = list;
        self.to_write = waiting;
    }

    /// Publishes this turn's counts; then an open run whose last sends this turn made hears
    /// that it is over (they are in the counts the controller reads next).
    fn publish(&mut self) {
        self.shared.counters.add_tally(&mut self.tally, now_ns());
        self.shared.outstanding.store(self.ledger.outstanding().saturating_sub(self.abandoned), Relaxed);
        self.shared.owed.store(self.ledger.owed(), Relaxed);
        if let Some((done, total)) = self.open_done.take() {
            let _ = done.send(total);
        }
    }

    fn outcome(mut self) -> Outcome {
        self.publish();
        Outcome {
            latencies: std::mem::take(&mut self.latencies),
            all_recipients: std::mem::take(&mut self.all_recipients),
            complete: self.complete,
            owed: self.ledger.owed(),
            undelivered_messages: self.ledger.undelivered_messages(),
            unanswered: self.ledger.outstanding(),
            unknown: self.unknown,
            deliveries_per_send: self.deliveries_per_send,
            dropped: self.shared.dropped.load(Relaxed),
            last_refusal: self.shared.last_refusal.lock().expect("refusal lock").clone(),
        }
    }
}
