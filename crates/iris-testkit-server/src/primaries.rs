//! The primaries the test kit logged in, per server URL and phone, so that a later login of the
//! same phone (a companion, which waits for the primary's approval) can be approved the way the
//! person would on the primary. A process-wide map: test servers bind port 0, so two servers
//! never share a URL; a re-registration replaces the entry. A phone logged in on another node
//! of the same cluster (another URL) falls back to the latest primary of that phone (nextest
//! runs each test in a process of its own).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use iris_proto::http::Credentials;

/// (URL, phone) → token, and phone → the latest token.
#[derive(Default)]
struct Primaries {
    by_server: HashMap<(String, String), String>,
    latest: HashMap<String, String>,
}

fn primaries() -> std::sync::MutexGuard<'static, Primaries> {
    static MAP: OnceLock<Mutex<Primaries>> = OnceLock::new();
    MAP.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner)
}

fn key(url: &str, phone: &str) -> (String, String) {
    (url.trim_end_matches('/').to_owned(), phone.to_owned())
}

/// Remembers `creds` as the primary of its phone on the server at `url`.
pub fn remember(url: &str, creds: &Credentials) {
    let mut p = primaries();
    p.by_server.insert(key(url, &creds.phone), creds.access_token.clone());
    p.latest.insert(creds.phone.clone(), creds.access_token.clone());
}

/// The access token of the primary of `phone` on the server at `url`, if this kit logged it in.
pub fn token(url: &str, phone: &str) -> Option<String> {
    let p = primaries();
    p.by_server.get(&key(url, phone)).or_else(|| p.latest.get(phone)).cloned()
}
