//! One-time codes in the server's log: the default (log) code sender writes a code to the log
//! only in dev mode; outside it the log shows that a code was issued and the phone's last two
//! digits, never the code (whoever reads the logs could otherwise take over any account).
//!
//! Its own test binary because it installs the process-wide tracing subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use iris_proto::http::CodeRequested;

/// Everything the server logs, as text.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The longest run of ASCII digits in `text`.
fn longest_digit_run(text: &str) -> usize {
    text.split(|c: char| !c.is_ascii_digit()).map(str::len).max().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_are_logged_in_dev_mode_only() {
    // Proves: outside dev mode requesting a code logs neither the code nor the full phone (only its last two digits), and the start warns that codes reach nobody without [sms]; in dev mode, or with auth.log_codes (which warns at start), the code is logged.
    let log = LogBuffer::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .with_max_level(tracing::Level::INFO)
        .init();
    let phone = "+15550000042";

    let server = TestServer::start_with(|c| c.dev = false).await;
    let start = log.take();
    assert!(start.contains("WARN") && start.contains("one-time codes reach nobody"), "no start warning: {start}");
    let _: CodeRequested = server.request_code(phone).await.expect_json(200);
    let text = log.take();
    assert!(text.contains("one-time code issued") && text.contains("…42"), "no trace of the code being sent: {text}");
    assert!(!text.contains(phone), "the full phone number is logged: {text}");
    assert!(longest_digit_run(&text) < 6, "something code-like is logged outside dev mode: {text}");
    drop(server);

    let server = TestServer::start().await;
    assert!(!log.take().contains("reach nobody"), "dev mode needs no SMS gateway");
    let _: CodeRequested = server.request_code(phone).await.expect_json(200);
    let text = log.take();
    assert!(text.contains(DEV_CODE) && text.contains(phone), "dev mode logs the code: {text}");
    drop(server);

    // An operator's explicit `auth.log_codes` logs the (random) code outside dev mode too.
    let server = TestServer::start_with(|c| {
        c.dev = false;
        c.auth.log_codes = true;
    })
    .await;
    let start = log.take();
    assert!(start.contains("auth.log_codes: one-time codes go to the log"), "no start warning: {start}");
    let _: CodeRequested = server.request_code(phone).await.expect_json(200);
    let text = log.take();
    assert!(longest_digit_run(&text) >= 6 && text.contains(phone), "log_codes logs the code: {text}");
}
