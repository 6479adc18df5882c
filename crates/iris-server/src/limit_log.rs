//! Whom the rate limits refused lately: a small bounded record per node, kept next to the
//! refusal counters (`metrics.rs` says how often a limit refused; this says whom), so an
//! operator's account lookup (`admin/`) can show the limits an account or its phone hit.
//!
//! Soft state of one node, never stored: in cluster mode each node knows the refusals it made
//! itself, and a restart forgets them. Knows nothing of the limits themselves (`ratelimit.rs`
//! records into it) nor of who reads it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use iris_store::AccountId;

/// Who a refusal is recorded under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// An account (sends, typing, discovery, key claims, media, groups, calls, deletion codes).
    Account(AccountId),
    /// A phone number (one-time code requests, before any account exists).
    Phone(String),
}

/// A limit key that may name a [`Subject`]; keys that name nobody an operator looks up (client
/// addresses) are not recorded.
pub trait LimitSubject {
    /// The subject this key stands for, if any.
    fn subject(&self) -> Option<Subject>;
}

impl LimitSubject for AccountId {
    fn subject(&self) -> Option<Subject> {
        Some(Subject::Account(*self))
    }
}

/// The only limits keyed by a string are per phone number (E.164, validated before the limit).
impl LimitSubject for String {
    fn subject(&self) -> Option<Subject> {
        Some(Subject::Phone(self.clone()))
    }
}

impl LimitSubject for IpAddr {
    fn subject(&self) -> Option<Subject> {
        None
    }
}

impl LimitSubject for &str {
    fn subject(&self) -> Option<Subject> {
        None
    }
}

/// One limit's refusals of one subject within the kept window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitHit {
    /// The limit's name, as in the `iris_rate_limited{limit=…}` counter.
    pub limit: &'static str,
    /// Refusals since `first_at_ms`.
    pub refusals: u64,
    /// The first refusal kept, ms since the Unix epoch.
    pub first_at_ms: u64,
    /// The latest refusal, ms since the Unix epoch.
    pub last_at_ms: u64,
}

/// The record: subject → the limits that refused it, bounded in subjects and in age.
pub struct LimitLog {
    hits: Mutex<HashMap<Subject, Vec<LimitHit>>>,
    /// Subjects kept at most; refusals of new subjects beyond it are not recorded (the counters
    /// still count them), so a flood of refused phones cannot grow memory.
    subjects_max: usize,
    /// How long a subject's hits are kept after its latest refusal: the longest limit period
    /// (registrations and discovery are per day).
    keep_ms: u64,
}

/// Subjects a node keeps by default (a few MB at most).
pub const SUBJECTS_MAX: usize = 100_000;

/// A day: the longest period of any rate limit.
pub const KEEP_MS: u64 = 86_400_000;

impl Default for LimitLog {
    fn default() -> Self {
        Self::new(SUBJECTS_MAX, KEEP_MS)
    }
}

impl LimitLog {
    /// A record of at most `subjects_max` subjects, each kept `keep_ms` after its last refusal.
    pub fn new(subjects_max: usize, keep_ms: u64) -> Self {
        Self { hits: Mutex::default(), subjects_max, keep_ms }
    }

    /// Notes that `limit` refused `subject` at `now_ms`.
    pub fn record(&self, limit: &'static str, subject: Subject, now_ms: u64) {
        let mut hits = self.hits.lock().unwrap_or_else(PoisonError::into_inner);
        if !hits.contains_key(&subject) && hits.len() >= self.subjects_max {
            let keep_ms = self.keep_ms;
            hits.retain(|_, h| h.iter().any(|hit| hit.last_at_ms + keep_ms > now_ms));
            if hits.len() >= self.subjects_max {
                return;
            }
        }
        let list = hits.entry(subject).or_default();
        match list.iter_mut().find(|h| h.limit == limit) {
            Some(h) => {
                h.refusals += 1;
                h.last_at_ms = h.last_at_ms.max(now_ms);
            }
            None => list.push(LimitHit { limit, refusals: 1, first_at_ms: now_ms, last_at_ms: now_ms }),
        }
    }

    /// The limits that refused `subject` within the kept window before `now_ms`, latest first.
    pub fn hits(&self, subject: &Subject, now_ms: u64) -> Vec<LimitHit> {
        let hits = self.hits.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<LimitHit> = hits
            .get(subject)
            .map(|list| list.iter().filter(|h| h.last_at_ms + self.keep_ms > now_ms).cloned().collect())
            .unwrap_or_default();
        out.sort_by_key(|h| std::cmp::Reverse(h.last_at_ms));
        out
    }

    /// Forgets hits older than the window; called periodically.
    pub fn sweep(&self, now_ms: u64) {
        let mut hits = self.hits.lock().unwrap_or_else(PoisonError::into_inner);
        let keep_ms = self.keep_ms;
        hits.retain(|_, list| {
            list.retain(|h| h.last_at_ms + keep_ms > now_ms);
            !list.is_empty()
        });
        hits.shrink_to_fit();
    }
}

/// Now, in ms since the Unix epoch (the limits run on governor's monotonic clock; this record
/// shows operators wall-clock times).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_are_counted_per_limit_bounded_in_subjects_and_forgotten_after_the_window() {
        // Proves: repeated refusals of one limit add up, two limits are listed latest first, a
        // full record refuses new subjects until old ones age out, and the sweep forgets them.
        let log = LimitLog::new(2, 1_000);
        let alice = Subject::Account(1);
        log.record("sends", alice.clone(), 100);
        log.record("sends", alice.clone(), 200);
        log.record("typing", alice.clone(), 300);
        let hits = log.hits(&alice, 400);
        assert_eq!(hits.iter().map(|h| (h.limit, h.refusals)).collect::<Vec<_>>(), [("typing", 1), ("sends", 2)]);
        assert_eq!((hits[1].first_at_ms, hits[1].last_at_ms), (100, 200));

        log.record("codes", Subject::Phone("+15550000001".into()), 500);
        log.record("codes", Subject::Phone("+15550000002".into()), 600);
        assert!(log.hits(&Subject::Phone("+15550000002".into()), 600).is_empty(), "over subjects_max");
        log.record("codes", Subject::Phone("+15550000002".into()), 1_400);
        assert_eq!(log.hits(&Subject::Phone("+15550000002".into()), 1_400).len(), 1, "alice aged out");
        assert!(log.hits(&alice, 1_400).is_empty());
        log.sweep(2_400);
        assert!(log.hits.lock().unwrap().is_empty());
    }
}
