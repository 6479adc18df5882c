//! Light devices for `idle`, `storm` and `iris fire`: one raw framed TCP connection and one task
//! per device (no SDK client), so a single generator process can hold ~19,000 authenticated
//! connections. A device answers the heartbeat, acks what it receives, drops repeats by
//! `server_msg_id` (as the SDK does), and drops and reconnects when told to.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::BytesMut;
use iris_client::api::Credentials;
use iris_client::pb::{self, client_op, inbox_item, server_event};
use iris_proto::{frame, version, ErrorCodeExt as _, FrameDecoder};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

use super::harness::{now_ns, sent_ns};
use super::stats::Latencies;

/// Largest server frame accepted.
const FRAME_MAX: u32 = 16 * 1024 * 1024;
/// Free buffer space kept before each non-blocking read of [`read_ready`].
const READ_CHUNK: usize = 16 * 1024;
/// Most bytes [`read_ready`] takes from one connection per call, so one busy connection cannot
/// keep an event loop from its others.
const READ_BYTES_MAX: usize = 256 * 1024;
/// Longest one connect + handshake attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts before a device gives up (each after a refusal or a failed connect).
const ATTEMPTS_MAX: u32 = 30;
/// Longest wait a refusal's `reconnect_after_ms` / `retry_after_ms` is honoured for.
const RETRY_WAIT_MAX: Duration = Duration::from_secs(5);
/// Loopback source addresses connections are spread over (127.0.0.1 ..= 127.0.0.N), so ~19k
/// connections plus a storm's TIME_WAITs never run out of ephemeral ports.
const SOURCE_ADDRS: u8 = 8;

/// Reads what `stream` already has into `buf`, without waiting (the event loops of the raw load
/// driver and of the sink call it when the socket is readable), up to [`READ_BYTES_MAX`]. False
/// when the peer closed the connection or the read failed.
pub fn read_ready(stream: &TcpStream, buf: &mut BytesMut) -> bool {
    let mut total = 0;
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK {
            buf.reserve(READ_CHUNK);
        }
        match stream.try_read_buf(buf) {
            Ok(0) => return false,
            Ok(n) => {
                total += n;
                if total >= READ_BYTES_MAX {
                    return true;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

/// One framed TCP connection speaking the protocol by hand.
pub struct RawConn {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

/// How a handshake ended.
pub enum Handshake {
    /// Authenticated; the events that came in the same frame after the `Welcome` (deliveries
    /// may follow it at once).
    Welcome(pb::Welcome, Vec<pb::ServerEvent>),
    /// Refused; a retry may succeed after the wait (GoAway or a retryable error).
    Retry(Duration, String),
    /// Refused for good (e.g. revoked device).
    Refused(String),
}

impl RawConn {
    /// Connects to `tcp` from loopback source address number `source` (spread over 127.0.0.x).
    pub async fn open(tcp: SocketAddr, source: usize) -> std::io::Result<Self> {
        let socket = TcpSocket::new_v4()?;
        let ip = Ipv4Addr::new(127, 0, 0, 1 + (source % usize::from(SOURCE_ADDRS)) as u8);
        socket.bind(SocketAddr::from((ip, 0)))?;
        let stream = socket.connect(tcp).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, buf: BytesMut::new(), decoder: FrameDecoder::new(FRAME_MAX) })
    }

    /// Sends `Hello` and reads until `Welcome` or a refusal.
    pub async fn hello(&mut self, creds: &Credentials, resume_after_seq: u64) -> anyhow::Result<Handshake> {
        let (token, device_id) = (creds.access_token.clone(), creds.device_id);
        let hello =
            pb::Hello { versions: version::supported(), token, device_id, resume_after_seq, ..Default::default() };
        self.send(client_op::Op::Hello(hello)).await?;
        loop {
            let Some(events) = self.next_events().await? else { bail!("closed during the handshake") };
            let mut events = events.into_iter();
            while let Some(event) = events.next() {
                match event.event {
                    Some(server_event::Event::Welcome(w)) => return Ok(Handshake::Welcome(w, events.collect())),
                    Some(server_event::Event::GoAway(g)) => {
                        return Ok(Handshake::Retry(
                            Duration::from_millis(g.reconnect_after_ms.into()),
                            "GOAWAY".into(),
                        ))
                    }
                    Some(server_event::Event::Error(e)) => {
                        let code = e.error_code().name().to_owned();
                        if e.error_code().is_retryable() {
                            return Ok(Handshake::Retry(Duration::from_millis(e.retry_after_ms.into()), code));
                        }
                        return Ok(Handshake::Refused(code));
                    }
                    _ => {}
                }
            }
        }
    }

    /// Sends one op in one frame (request id 1: nothing here waits for answers by id).
    pub async fn send(&mut self, op: client_op::Op) -> std::io::Result<()> {
        let frame = pb::ClientFrame { ops: vec![pb::ClientOp { request_id: 1, op: Some(op) }] };
        let mut buf = BytesMut::new();
        frame::encode(&frame, &mut buf);
        self.stream.write_all(&buf).await
    }

    /// The socket and the bytes read past the last frame returned, for a caller that drives
    /// the connection itself from here on (the load driver).
    pub fn into_parts(self) -> (TcpStream, BytesMut) {
        (self.stream, self.buf)
    }

    /// The events of the next frame; `None` once the server closed the connection.
    pub async fn next_events(&mut self) -> anyhow::Result<Option<Vec<pb::ServerEvent>>> {
        loop {
            if let Some(body) = self.decoder.decode(&mut self.buf)? {
                let f: pb::ServerFrame = frame::decode_body(&body)?;
                return Ok(Some(f.events));
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
        }
    }
}

/// What every device is told to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Control {
    /// Bumped to make every device drop its connection and reconnect at once.
    pub epoch: u64,
    /// Set to make every device close and end.
    pub stop: bool,
}

/// Counts shared by all devices of a [`Devices`] set.
#[derive(Default)]
pub struct DeviceStats {
    /// Devices connected and authenticated now.
    pub connected: AtomicU64,
    /// Successful handshakes (first connects and reconnects).
    pub handshakes: AtomicU64,
    /// Refusals that were retried (GoAway, RATE_LIMITED, OVERLOADED, failed connects).
    pub retries: AtomicU64,
    /// Devices that gave up (attempts exhausted or refused for good).
    pub failed: AtomicU64,
    /// Connections the server closed on its own.
    pub dropped_by_server: AtomicU64,
    /// Inbox seqs skipped in delivery (a device's seqs are dense, so a jump past the highest
    /// seq seen means entries were never sent; a cumulative ack then deletes them unseen).
    pub seq_gaps: AtomicU64,
    /// Time of the latest handshake, in [`now_ns`] time.
    pub last_handshake_ns: AtomicU64,
    /// Every distinct message received: (recipient account, server msg id, client msg id).
    pub received: Mutex<Vec<(u64, u64, String)>>,
    /// The last refusal code seen (for reports).
    pub last_refusal: Mutex<String>,
    /// Send→delivered latency of the messages received (from the payload's send time).
    pub latencies: Mutex<Latencies>,
}

/// A set of raw devices, each run by its own task.
pub struct Devices {
    /// Their shared counts.
    pub stats: Arc<DeviceStats>,
    control: watch::Sender<Control>,
    tasks: tokio::task::JoinSet<()>,
}

impl Devices {
    /// Connects one device per credentials, at most `concurrency` handshakes at a time, and
    /// returns once every one is connected or has given up.
    pub async fn connect(tcp: SocketAddr, creds: Vec<Credentials>, concurrency: usize) -> Self {
        let stats = Arc::new(DeviceStats::default());
        let (control, _) = watch::channel(Control::default());
        let limit = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        let n = creds.len() as u64;
        for (i, c) in creds.into_iter().enumerate() {
            let device =
                Device { tcp, source: i, creds: c, stats: stats.clone(), control: control.subscribe(), high_seq: 0 };
            let permit = limit.clone().acquire_owned().await.expect("semaphore open");
            tasks.spawn(device.run(Some(permit)));
        }
        let devices = Self { stats, control, tasks };
        devices.wait_settled(n, Duration::from_secs(600)).await;
        devices
    }

    /// Waits until `n` devices are connected or every other one has given up, or `limit`.
    pub async fn wait_settled(&self, n: u64, limit: Duration) -> bool {
        let end = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < end {
            let s = &self.stats;
            if s.connected.load(Relaxed) + s.failed.load(Relaxed) >= n {
                return s.failed.load(Relaxed) == 0;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// Makes every device drop its connection and reconnect at once; returns the time, in
    /// [`now_ns`] time.
    pub fn storm(&self) -> u64 {
        let at = now_ns();
        self.control.send_modify(|c| c.epoch += 1);
        at
    }

    /// Closes every connection and waits for the tasks (bounded).
    pub async fn stop(mut self) {
        self.control.send_modify(|c| c.stop = true);
        let _ =
            tokio::time::timeout(Duration::from_secs(30), async { while self.tasks.join_next().await.is_some() {} })
                .await;
        self.tasks.abort_all();
    }
}

/// One device's task state.
struct Device {
    tcp: SocketAddr,
    source: usize,
    creds: Credentials,
    stats: Arc<DeviceStats>,
    control: watch::Receiver<Control>,
    /// Highest inbox seq seen (across connections).
    high_seq: u64,
}

impl Device {
    /// Connects (the permit bounds concurrent first handshakes), then serves until stopped,
    /// reconnecting after each storm.
    async fn run(mut self, mut permit: Option<tokio::sync::OwnedSemaphorePermit>) {
        let mut seen = HashSet::new();
        let mut acked = 0u64;
        loop {
            let Some((conn, heartbeat, rest)) = self.connect(acked).await else {
                self.stats.failed.fetch_add(1, Relaxed);
                return;
            };
            permit.take();
            self.stats.connected.fetch_add(1, Relaxed);
            let ended = self.serve(conn, heartbeat, rest, &mut seen, &mut acked).await;
            self.stats.connected.fetch_sub(1, Relaxed);
            if ended {
                return;
            }
        }
    }

    /// Connects and authenticates, retrying refusals; `None` after [`ATTEMPTS_MAX`] or a
    /// refusal for good.
    async fn connect(&mut self, acked: u64) -> Option<(RawConn, Duration, Vec<pb::ServerEvent>)> {
        for _ in 0..ATTEMPTS_MAX {
            if self.control.borrow().stop {
                return None;
            }
            let attempt = async {
                let mut conn = RawConn::open(self.tcp, self.source).await.context("connect")?;
                let answer = conn.hello(&self.creds, acked).await?;
                anyhow::Ok((conn, answer))
            };
            let wait = match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
                Ok(Ok((conn, Handshake::Welcome(w, rest)))) => {
                    self.stats.handshakes.fetch_add(1, Relaxed);
                    self.stats.last_handshake_ns.fetch_max(now_ns(), Relaxed);
                    return Some((conn, Duration::from_millis(w.heartbeat_interval_ms.max(1000).into()), rest));
                }
                Ok(Ok((_, Handshake::Retry(wait, code)))) => {
                    *self.stats.last_refusal.lock().expect("lock") = code;
                    wait
                }
                Ok(Ok((_, Handshake::Refused(code)))) => {
                    *self.stats.last_refusal.lock().expect("lock") = code;
                    return None;
                }
                Ok(Err(e)) => {
                    *self.stats.last_refusal.lock().expect("lock") = format!("{e:#}");
                    Duration::from_millis(100)
                }
                Err(_) => Duration::ZERO,
            };
            self.stats.retries.fetch_add(1, Relaxed);
            let jitter = Duration::from_millis(rand::random_range(0..50));
            tokio::time::sleep(wait.min(RETRY_WAIT_MAX) + jitter).await;
        }
        None
    }

    /// Serves one connection: acks deliveries, pings, and returns when told to (true: stop for
    /// good) or when the server closes it (false: reconnect).
    async fn serve(
        &mut self,
        mut conn: RawConn,
        heartbeat: Duration,
        first: Vec<pb::ServerEvent>,
        seen: &mut HashSet<u64>,
        acked: &mut u64,
    ) -> bool {
        let epoch = self.control.borrow().epoch;
        let mut ping = tokio::time::interval(heartbeat / 2);
        ping.tick().await;
        if !self.absorb(&mut conn, first, seen, acked).await {
            return false;
        }
        loop {
            tokio::select! {
                events = conn.next_events() => {
                    let Ok(Some(events)) = events else {
                        self.stats.dropped_by_server.fetch_add(1, Relaxed);
                        return false;
                    };
                    if !self.absorb(&mut conn, events, seen, acked).await {
                        return false;
                    }
                }
                _ = ping.tick() => {
                    if conn.send(client_op::Op::Ping(pb::Ping { client_time_ms: 0 })).await.is_err() {
                        return false;
                    }
                }
                changed = self.control.changed() => {
                    let c = *self.control.borrow();
                    if changed.is_err() || c.stop {
                        return true;
                    }
                    if c.epoch != epoch {
                        return false;
                    }
                }
            }
        }
    }

    /// Records the messages of a frame and acks them; false when the connection failed.
    async fn absorb(
        &mut self,
        conn: &mut RawConn,
        events: Vec<pb::ServerEvent>,
        seen: &mut HashSet<u64>,
        acked: &mut u64,
    ) -> bool {
        match self.take(events, seen) {
            Some(up_to) if up_to > *acked => {
                *acked = up_to;
                conn.send(client_op::Op::Ack(pb::Ack { up_to_seq: up_to })).await.is_ok()
            }
            _ => true,
        }
    }

    /// Records the messages of a frame; returns the highest seq it carried.
    fn take(&mut self, events: Vec<pb::ServerEvent>, seen: &mut HashSet<u64>) -> Option<u64> {
        let mut top = None;
        for event in events {
            let Some(server_event::Event::Delivery(d)) = event.event else { continue };
            for item in d.items {
                if item.seq > self.high_seq + 1 {
                    self.stats.seq_gaps.fetch_add(item.seq - self.high_seq - 1, Relaxed);
                }
                self.high_seq = self.high_seq.max(item.seq);
                top = top.max(Some(item.seq));
                if let Some(inbox_item::Body::Message(m)) = item.body {
                    if seen.insert(item.server_msg_id) {
                        if let Some(sent) = sent_ns(&m.payload) {
                            self.stats.latencies.lock().expect("lock").record_ns(now_ns().saturating_sub(sent));
                        }
                        let mut received = self.stats.received.lock().expect("lock");
                        received.push((self.creds.account_id, item.server_msg_id, m.client_msg_id));
                    }
                }
            }
        }
        top
    }
}
