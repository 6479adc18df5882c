//! Stopping the real binary while clients send: SIGTERM drains and exits 0, a second SIGTERM exits
//! at once; either way every message the server ACCEPTED is delivered after a restart.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use iris_client::pb::inbox_item;
use iris_client::{Client, Event};

const ALICE: &str = "+14155550301";
const BOB: &str = "+14155550302";
const SENDERS: usize = 8;

/// `client_msg_id` → `server_msg_id` of every send the server ACCEPTED.
type Accepted = Arc<Mutex<HashMap<String, u64>>>;

/// Eight pipelines sending to Bob until `stop`; a send that fails for good ends its pipeline
/// (the server is going away), the ACCEPTED ones are recorded.
fn start_senders(a: &Client, accepted: &Accepted, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..SENDERS)
        .map(|s| {
            let (a, accepted, stop) = (a.clone(), accepted.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("s{s}-{i}");
                    match a.send_with_id(BOB, id.clone(), id.clone()).await {
                        Ok(r) => drop(accepted.lock().unwrap().insert(id, r.server_msg_id)),
                        Err(_) => return,
                    }
                    i += 1;
                }
            })
        })
        .collect()
}

/// Stops the senders (they finish or give up within PATIENCE).
async fn stop_senders(senders: Vec<tokio::task::JoinHandle<()>>, stop: &AtomicBool) {
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        tokio::time::timeout(PATIENCE, s).await.expect("senders stop").unwrap();
    }
}

/// Bob connects and must receive every ACCEPTED message, each exactly once.
async fn expect_all_delivered(url: &str, bob: &iris_client::api::Credentials, accepted: &HashMap<String, u64>) {
    let (b, mut be) = connect(url, bob).await;
    let mut got: HashMap<String, u64> = HashMap::new();
    while !accepted.keys().all(|id| got.contains_key(id)) {
        let event = tokio::time::timeout(PATIENCE, be.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {} ACCEPTED messages arrived", got.len(), accepted.len()))
            .expect("event stream ended");
        if let Event::Message(item) = event {
            b.ack(item.seq);
            let Some(inbox_item::Body::Message(m)) = item.body else { continue };
            if let Some(other) = got.insert(m.client_msg_id.clone(), item.server_msg_id) {
                panic!("{} delivered twice (server ids {other} and {})", m.client_msg_id, item.server_msg_id);
            }
        }
    }
    for (id, server_id) in accepted {
        assert_eq!(got.get(id), Some(server_id), "ACCEPTED message {id} came back under another id");
    }
}

/// A server with Alice's eight pipelines sending to Bob, 300 messages ACCEPTED already.
struct Sending {
    /// `None` only while `terminate` waits for it off the runtime.
    server: Option<Process>,
    url: String,
    bob: iris_client::api::Credentials,
    _alice: (Client, iris_client::Events),
    accepted: Accepted,
    stop: Arc<AtomicBool>,
    senders: Vec<tokio::task::JoinHandle<()>>,
}

impl Sending {
    async fn start() -> Self {
        let server = Process::start().await;
        let url = server.url();
        let (alice, bob) = (login(&url, ALICE, "a").await, login(&url, BOB, "b").await);
        let (a, ae) = connect(&url, &alice).await;
        let accepted: Accepted = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let senders = start_senders(&a, &accepted, &stop);
        wait_until("300 accepted", PATIENCE, || async { accepted.lock().unwrap().len() >= 300 }).await;
        Self { server: Some(server), url, bob, _alice: (a, ae), accepted, stop, senders }
    }

    /// Sends `signals` SIGTERMs and waits (off the runtime) for the process to end within `within`;
    /// the exit status and how long it took.
    async fn terminate(&mut self, signals: usize, within: Duration) -> (std::process::ExitStatus, Duration) {
        let mut server = self.server.take().expect("running");
        let signalled = Instant::now();
        for _ in 0..signals {
            server.signal("TERM");
        }
        let (server, status) = tokio::task::spawn_blocking(move || {
            let status = server.wait_exit_within(within);
            (server, status)
        })
        .await
        .unwrap();
        self.server = Some(server);
        (status, signalled.elapsed())
    }

    /// Restarts the server and checks that Bob receives every ACCEPTED message exactly once;
    /// how many there were.
    async fn restart_and_expect_all_delivered(mut self) -> usize {
        self.server.as_mut().expect("stopped, not gone").restart().await;
        stop_senders(self.senders, &self.stop).await;
        let accepted = self.accepted.lock().unwrap().clone();
        expect_all_delivered(&self.url, &self.bob, &accepted).await;
        accepted.len()
    }

    fn accepted(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_clients_send_exits_0_and_loses_nothing_accepted() {
    // Proves: SIGTERM while 8 pipelines send makes the binary drain and exit with status 0 within seconds, and after a restart every ACCEPTED message is delivered exactly once.
    let mut sending = Sending::start().await;
    let (status, took) = sending.terminate(1, Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "graceful shutdown must exit 0: {status:?}");
    eprintln!("SIGTERM: exited 0 after {took:?} with {} accepted", sending.accepted());
    let delivered = sending.restart_and_expect_all_delivered().await;
    eprintln!("SIGTERM: all {delivered} ACCEPTED messages delivered after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sigterms_in_a_row_exit_promptly_and_lose_nothing_accepted() {
    // Proves: two SIGTERMs back to back (the second may land during the graceful shutdown, which
    // exits at once with 130, or after it, which finished with 0) end the process within 3 s,
    // and every message ACCEPTED before them is delivered after a restart. (Graceful shutdown now
    // takes milliseconds, so no test can reliably land the second signal inside it.)
    let mut sending = Sending::start().await;
    let (status, took) = sending.terminate(2, Duration::from_secs(3)).await;
    assert!(
        matches!(status.code(), Some(0 | 130)) || std::os::unix::process::ExitStatusExt::signal(&status).is_some(),
        "two signals end the process with 0 or 130: {status:?}"
    );
    eprintln!("two SIGTERMs: exited {status:?} after {took:?} with {} accepted", sending.accepted());
    let delivered = sending.restart_and_expect_all_delivered().await;
    eprintln!("second SIGTERM: all {delivered} ACCEPTED messages delivered after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_promptly_even_with_a_silent_connection() {
    // Proves: a connection that never sends Hello does not hold up a graceful shutdown: SIGTERM exits 0 within 3 s.
    let mut server = Process::start().await;
    let _idle = tokio::net::TcpStream::connect(server.tcp).await.unwrap();
    // The connection is accepted (and its session task tracked) once the server counts it.
    wait_until("the idle connection is accepted", PATIENCE, || async {
        metric_value(&scrape_metrics(&server.url()).await, "iris_connections_open") >= 1.0
    })
    .await;
    server.signal("TERM");
    let status = tokio::task::spawn_blocking(move || server.wait_exit_within(Duration::from_secs(3))).await.unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}
