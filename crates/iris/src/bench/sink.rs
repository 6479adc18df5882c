//! `iris bench sink`: a stand-in server that only acks, for measuring what the generator alone
//! can offer. It speaks just enough of the framed protocol: `Hello` → `Welcome` (the token
//! `sink:ACCOUNT` names the account), every 1:1 send → `SendResult` ACCEPTED and, unless
//! `--ack-only`, the message echoed at once as a `Delivery` to its recipient's connection (so the
//! load's receiving half — decode, latency, ack — runs too), `Ping` → `Pong`; acks are read and
//! ignored, groups are refused. It stores nothing (a message to an account with no connection
//! is dropped, and the bench will count it lost), runs every connection in one event loop on
//! one thread, and exits after `--lifetime-s`.

use std::collections::HashMap;
use std::future::Future;
use std::io::{ErrorKind, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::{Buf as _, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use futures_util::FutureExt as _;
use iris_proto::pb::{self, client_op, server_event, ErrorCode};
use iris_proto::{frame, version, FrameDecoder, Limits};
use tokio::net::{TcpListener, TcpStream};

use super::raw;

/// `Welcome.node_id` of a sink that echoes deliveries.
pub const ECHO_NODE_ID: &str = "bench-sink";
/// `Welcome.node_id` of a sink started with `--ack-only`: the bench then expects no deliveries.
pub const ACK_ONLY_NODE_ID: &str = "bench-sink/ack-only";
/// The first line the sink prints, followed by its address.
pub const LISTENING: &str = "iris bench sink listening on ";
/// Prefix of the `Hello.token` that names the account (`sink:42`).
pub const TOKEN_PREFIX: &str = "sink:";

/// Heartbeat announced in `Welcome` (the sink never closes a silent connection).
const HEARTBEAT_MS: u32 = 30_000;
/// Largest client frame accepted.
const FRAME_MAX: u32 = 1024 * 1024;
/// Most readable connections handled per turn before writing.
const READY_PER_TURN_MAX: usize = 4096;
/// Events per frame written (each `Delivery` holds at most `max_batch_deliveries` items).
const EVENTS_PER_FRAME_MAX: usize = 64;
/// Bytes waiting for one slow reader past which the sink stops reading from everyone (TCP
/// backpressure on the senders) until it catches up.
const UNWRITTEN_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Connections held at most; more are closed at once.
const PEERS_MAX: usize = 100_000;
/// How often the sink writes what is waiting, retries blocked writes and paused reads.
const TICK: Duration = Duration::from_millis(1);

/// Flags of `iris bench sink`.
#[derive(clap::Args, Debug, Clone)]
pub struct SinkArgs {
    /// Loopback address to listen on (port 0: a free port; the first line of stdout says which).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Answer sends without echoing them as deliveries (the offered-load half alone).
    #[arg(long)]
    pub ack_only: bool,
    /// Exit after this many seconds.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub lifetime_s: u64,
}

/// Listens, prints the address, serves until the lifetime ends.
pub async fn run(args: SinkArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        bail!("the bench sink listens only on loopback (127.0.0.0/8), not {}", args.listen.ip());
    }
    let listener = std::net::TcpListener::bind(args.listen).with_context(|| format!("bind {}", args.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    println!("{LISTENING}{addr}");
    std::io::stdout().flush()?;
    let thread = std::thread::Builder::new().name("bench-sink".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener)?;
            Sink::new(!args.ack_only).serve(listener, Duration::from_secs(args.lifetime_s)).await;
            anyhow::Ok(())
        })
    })?;
    tokio::task::spawn_blocking(move || thread.join()).await?.map_err(|_| anyhow::anyhow!("sink thread panicked"))?
}

/// One client connection.
struct Peer {
    stream: Rc<TcpStream>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    account: Option<u64>,
    device: u32,
    /// Seq of the next delivery to this connection.
    next_seq: u64,
    /// Events to write at the end of the turn, and deliveries to wrap into them.
    events: Vec<pb::ServerEvent>,
    items: Vec<pb::InboxItem>,
    queued: bool,
    /// Tells this connection from an earlier one in the same slot (a stale readiness wakeup).
    generation: u64,
    /// Waiting for readiness (at most one wait per connection).
    armed: bool,
}

/// Resolves with (slot, generation) when that connection is readable.
type Readable = Pin<Box<dyn Future<Output = (usize, u64)>>>;

/// Every connection, in one event loop.
struct Sink {
    echo: bool,
    peers: Vec<Option<Peer>>,
    free: Vec<usize>,
    by_account: HashMap<u64, usize>,
    readable: FuturesUnordered<Readable>,
    to_write: Vec<usize>,
    blocked: Vec<usize>,
    /// Connections not read while some reader is too far behind.
    paused: Vec<usize>,
    decoder: FrameDecoder,
    next_msg_id: u64,
    generations: u64,
}

impl Sink {
    fn new(echo: bool) -> Self {
        Self {
            echo,
            peers: Vec::new(),
            free: Vec::new(),
            by_account: HashMap::new(),
            readable: FuturesUnordered::new(),
            to_write: Vec::new(),
            blocked: Vec::new(),
            paused: Vec::new(),
            decoder: FrameDecoder::new(FRAME_MAX),
            next_msg_id: 1,
            generations: 0,
        }
    }

    async fn serve(mut self, listener: TcpListener, lifetime: Duration) {
        let end = tokio::time::sleep(lifetime);
        tokio::pin!(end);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let tick_turn = tokio::select! {
                biased;
                _ = &mut end => break,
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        self.add(stream);
                    }
                    true
                }
                _ = tick.tick() => {
                    for idx in std::mem::take(&mut self.blocked) {
                        self.want_write(idx);
                    }
                    if !self.behind() {
                        for idx in std::mem::take(&mut self.paused) {
                            self.arm(idx);
                        }
                    }
                    true
                }
                Some(ready) = self.readable.next(), if !self.readable.is_empty() => {
                    self.on_readable(ready);
                    for _ in 0..READY_PER_TURN_MAX {
                        match self.readable.next().now_or_never() {
                            Some(Some(ready)) => self.on_readable(ready),
                            _ => break,
                        }
                    }
                    false
                }
            };
            self.write_all(tick_turn);
        }
    }

    fn add(&mut self, stream: TcpStream) {
        let live = self.peers.len() - self.free.len();
        if live >= PEERS_MAX || stream.set_nodelay(true).is_err() {
            return;
        }
        let peer = Peer {
            stream: Rc::new(stream),
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            account: None,
            device: 0,
            next_seq: 1,
            events: Vec::new(),
            items: Vec::new(),
            queued: false,
            generation: self.generations,
            armed: false,
        };
        self.generations += 1;
        let idx = match self.free.pop() {
            Some(idx) => {
                self.peers[idx] = Some(peer);
                idx
            }
            None => {
                self.peers.push(Some(peer));
                self.peers.len() - 1
            }
        };
        self.arm(idx);
    }

    fn arm(&mut self, idx: usize) {
        let Some(peer) = self.peers[idx].as_mut() else { return };
        if peer.armed {
            return;
        }
        peer.armed = true;
        let (stream, generation) = (peer.stream.clone(), peer.generation);
        self.readable.push(Box::pin(async move {
            let _ = stream.readable().await;
            (idx, generation)
        }));
    }

    /// Whether some connection has more unwritten bytes than the sink will hold for it.
    fn behind(&self) -> bool {
        self.blocked.iter().any(|&i| self.peers[i].as_ref().is_some_and(|p| p.wbuf.len() > UNWRITTEN_BYTES_MAX))
    }

    fn on_readable(&mut self, (idx, generation): (usize, u64)) {
        let Some(peer) = self.peers[idx].as_mut().filter(|p| p.generation == generation) else { return };
        peer.armed = false;
        if self.behind() {
            self.paused.push(idx);
            return;
        }
        let Some(peer) = self.peers[idx].as_mut() else { return };
        let mut closed = !raw::read_ready(&peer.stream, &mut peer.rbuf);
        loop {
            let Some(peer) = self.peers[idx].as_mut() else { return };
            match self.decoder.decode(&mut peer.rbuf) {
                Ok(Some(body)) => match frame::decode_body::<pb::ClientFrame>(&body) {
                    Ok(f) => self.handle(idx, f),
                    Err(_) => closed = true,
                },
                Ok(None) => break,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
            if closed {
                break;
            }
        }
        if closed {
            self.remove(idx);
        } else {
            self.arm(idx);
        }
    }

    /// Answers one client frame.
    fn handle(&mut self, idx: usize, frame: pb::ClientFrame) {
        for op in frame.ops {
            let rid = op.request_id;
            let answer = match op.op {
                Some(client_op::Op::Hello(h)) => self.hello(idx, h),
                Some(client_op::Op::Send(m)) => self.send(idx, m),
                Some(client_op::Op::Ack(_)) => None,
                Some(client_op::Op::Ping(p)) => {
                    Some(server_event::Event::Pong(pb::Pong { client_time_ms: p.client_time_ms, server_time_ms: 0 }))
                }
                Some(client_op::Op::Group(_)) => {
                    Some(error(ErrorCode::Unavailable, "the bench sink has no groups (use a real server for fanout)"))
                }
                _ => Some(error(ErrorCode::InvalidArgument, "not supported by the bench sink")),
            };
            if let (Some(e), Some(peer)) = (answer, self.peers[idx].as_mut()) {
                peer.events.push(pb::ServerEvent { request_id: rid, event: Some(e) });
            }
        }
        self.want_write(idx);
    }

    fn hello(&mut self, idx: usize, h: pb::Hello) -> Option<server_event::Event> {
        let Some(account) = h.token.strip_prefix(TOKEN_PREFIX).and_then(|a| a.parse::<u64>().ok()) else {
            return Some(error(ErrorCode::Unauthenticated, "a bench sink token is `sink:ACCOUNT`"));
        };
        let peer = self.peers[idx].as_mut()?;
        peer.account = Some(account);
        peer.device = h.device_id;
        self.by_account.insert(account, idx);
        let node_id = if self.echo { ECHO_NODE_ID } else { ACK_ONLY_NODE_ID };
        Some(server_event::Event::Welcome(pb::Welcome {
            version: version::negotiate(&h.versions).or(Some(version::CURRENT)),
            heartbeat_interval_ms: HEARTBEAT_MS,
            limits: Some(Limits::default().into()),
            account_id: account,
            device_id: h.device_id,
            node_id: node_id.into(),
            ..Default::default()
        }))
    }

    fn send(&mut self, idx: usize, m: pb::SendMessage) -> Option<server_event::Event> {
        let (from, device) = self.peers[idx].as_ref().map(|p| (p.account, p.device))?;
        let Some(from) = from else { return Some(error(ErrorCode::HandshakeRequired, "Hello first")) };
        let server_msg_id = self.next_msg_id;
        self.next_msg_id += 1;
        let result = pb::SendResult {
            status: pb::SendStatus::Accepted as i32,
            server_msg_id,
            client_msg_id: m.client_msg_id.clone(),
            ..Default::default()
        };
        let to = self.by_account.get(&m.to_account_id).copied();
        if let (true, Some(to), Some(pb::send_message::Body::Payload(payload))) = (self.echo, to, m.body) {
            if let Some(peer) = self.peers[to].as_mut() {
                let message = pb::Message {
                    from_account_id: from,
                    from_device_id: device,
                    to_account_id: m.to_account_id,
                    payload,
                    client_msg_id: m.client_msg_id,
                    ..Default::default()
                };
                let seq = peer.next_seq;
                peer.next_seq += 1;
                peer.items.push(pb::InboxItem {
                    seq,
                    server_msg_id,
                    body: Some(pb::inbox_item::Body::Message(message)),
                    ..Default::default()
                });
                self.want_write(to);
            }
        }
        Some(server_event::Event::SendResult(result))
    }

    fn want_write(&mut self, idx: usize) {
        if let Some(peer) = self.peers[idx].as_mut() {
            if !peer.queued {
                peer.queued = true;
                self.to_write.push(idx);
            }
        }
    }

    /// Encodes each queued connection's events and deliveries and writes them with one write:
    /// all of them on a tick (writes are the sink's main cost, as the generator's), else only
    /// those with a full batch waiting.
    fn write_all(&mut self, tick: bool) {
        let batch = Limits::default().max_batch_deliveries as usize;
        let mut failed = Vec::new();
        let mut waiting = Vec::new();
        for idx in std::mem::take(&mut self.to_write) {
            let Some(peer) = self.peers[idx].as_mut() else { continue };
            if !tick && peer.items.len() < batch && peer.events.len() < EVENTS_PER_FRAME_MAX {
                waiting.push(idx);
                continue;
            }
            peer.queued = false;
            let items = std::mem::take(&mut peer.items);
            let mut items = items.into_iter().peekable();
            while items.peek().is_some() {
                let chunk: Vec<_> = items.by_ref().take(batch).collect();
                let delivery = pb::Delivery { items: chunk };
                peer.events
                    .push(pb::ServerEvent { request_id: 0, event: Some(server_event::Event::Delivery(delivery)) });
            }
            let mut events = std::mem::take(&mut peer.events).into_iter().peekable();
            while events.peek().is_some() {
                let chunk: Vec<_> = events.by_ref().take(EVENTS_PER_FRAME_MAX).collect();
                frame::encode(&pb::ServerFrame { events: chunk }, &mut peer.wbuf);
            }
            while !peer.wbuf.is_empty() {
                match peer.stream.try_write(&peer.wbuf) {
                    Ok(n) => peer.wbuf.advance(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        self.blocked.push(idx);
                        break;
                    }
                    Err(_) => {
                        failed.push(idx);
                        break;
                    }
                }
            }
        }
        self.to_write = waiting;
        for idx in failed {
            self.remove(idx);
        }
    }

    fn remove(&mut self, idx: usize) {
        if let Some(peer) = self.peers[idx].take() {
            if let Some(account) = peer.account {
                if self.by_account.get(&account) == Some(&idx) {
                    self.by_account.remove(&account);
                }
            }
            self.free.push(idx);
        }
    }
}

fn error(code: ErrorCode, message: &str) -> server_event::Event {
    server_event::Event::Error(pb::Error::new(code, message))
}
