//! One-time codes: issued per phone, expiring, with a bounded number of guesses.
//!
//! Soft state kept in memory (a restart only means asking for a new code). The book is bounded:
//! past `pending_codes_max` new requests are refused rather than growing without limit.

use std::collections::HashMap;
use std::sync::Mutex;

use rand::Rng;

/// Delivers a code to a person (SMS, voice, ...). Pluggable: the HTTP SMS gateway
/// (`sms.rs`) when `[sms]` is configured, else the [`LogCodeSender`].
#[async_trait::async_trait]
pub trait CodeSender: Send + Sync + 'static {
    /// Sends `code` to `phone`, retrying as the sender sees fit; an error is final and reaches
    /// the client as `CODE_DELIVERY_FAILED`.
    async fn send(&self, phone: &str, code: &str) -> Result<(), CodeSendError>;
}

/// A code that could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why} (after {attempts} attempts)")]
pub struct CodeSendError {
    /// What the last attempt met; never the code itself.
    pub why: String,
    /// Attempts made.
    pub attempts: u32,
}

/// The stand-in for an SMS gateway on a laptop. In dev mode (or with `auth.log_codes`, an
/// operator's explicit choice) it writes each code to the log; otherwise it never does (whoever
/// reads the logs could take over any account): it logs only that a code was issued and the
/// phone's last two digits, so the code reaches nobody and a real gateway is needed.
pub struct LogCodeSender {
    reveal_codes: bool,
}

impl LogCodeSender {
    /// A sender that logs the codes themselves only when `reveal_codes` is set (dev mode or
    /// `auth.log_codes`).
    pub fn new(reveal_codes: bool) -> Self {
        Self { reveal_codes }
    }
}

#[async_trait::async_trait]
impl CodeSender for LogCodeSender {
    async fn send(&self, phone: &str, code: &str) -> Result<(), CodeSendError> {
        if self.reveal_codes {
            tracing::info!(%phone, %code, "one-time code (log sender)");
        } else {
            let phone_tail = phone_tail(phone);
            tracing::info!(%phone_tail, "one-time code issued; the log sender does not log it outside dev mode");
        }
        Ok(())
    }
}

/// `…NN`: the last two digits of a phone number, all a log line outside dev mode may show.
pub(crate) fn phone_tail(phone: &str) -> String {
    let start = phone.len().saturating_sub(2);
    format!("…{}", phone.get(start..).unwrap_or(""))
}

/// Why a code was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// No code pending for this phone (never requested, expired or used up).
    #[error("no pending code for this phone; request a new one")]
    NoneIssued,
    /// The code is wrong; `attempts_left` more guesses are allowed.
    #[error("wrong code, {attempts_left} attempts left")]
    Wrong {
        /// Guesses remaining for this code.
        attempts_left: u32,
    },
    /// Too many codes pending on this node.
    #[error("too many pending codes")]
    BookFull,
}

struct Pending {
    code: String,
    expires_at_ms: u64,
    attempts_left: u32,
}

/// Pending codes by phone number.
pub struct CodeBook {
    pending: Mutex<HashMap<String, Pending>>,
    ttl_ms: u64,
    attempts_max: u32,
    capacity: usize,
    fixed_code: Option<String>,
}

impl CodeBook {
    /// A book whose codes live `ttl_ms`, allow `attempts_max` guesses, at most `capacity` pending.
    /// With `fixed_code` (dev mode) every code is that string.
    pub fn new(ttl_ms: u64, attempts_max: u32, capacity: usize, fixed_code: Option<String>) -> Self {
        Self { pending: Mutex::new(HashMap::new()), ttl_ms, attempts_max, capacity, fixed_code }
    }

    /// Issues a fresh code for `phone` (replacing any pending one) and returns it.
    pub fn issue(&self, phone: &str, now_ms: u64) -> Result<String, CodeError> {
        let code = match &self.fixed_code {
            Some(c) => c.clone(),
            None => format!("{:06}", rand::rng().random_range(0..1_000_000u32)),
        };
        let mut pending = self.pending.lock().expect("code book lock");
        if pending.len() >= self.capacity && !pending.contains_key(phone) {
            pending.retain(|_, p| p.expires_at_ms > now_ms);
            if pending.len() >= self.capacity {
                return Err(CodeError::BookFull);
            }
        }
        let entry =
            Pending { code: code.clone(), expires_at_ms: now_ms + self.ttl_ms, attempts_left: self.attempts_max };
        pending.insert(phone.to_owned(), entry);
        Ok(code)
    }

    /// Checks a guess. A right code is consumed; a wrong one uses up an attempt, and the last
    /// wrong attempt discards the code.
    pub fn check(&self, phone: &str, guess: &str, now_ms: u64) -> Result<(), CodeError> {
        let mut pending = self.pending.lock().expect("code book lock");
        let Some(p) = pending.get_mut(phone) else { return Err(CodeError::NoneIssued) };
        if p.expires_at_ms <= now_ms {
            pending.remove(phone);
            return Err(CodeError::NoneIssued);
        }
        if constant_time_eq(p.code.as_bytes(), guess.trim().as_bytes()) {
            pending.remove(phone);
            return Ok(());
        }
        p.attempts_left -= 1;
        let attempts_left = p.attempts_left;
        if attempts_left == 0 {
            pending.remove(phone);
        }
        Err(CodeError::Wrong { attempts_left })
    }

    /// Drops expired codes; called periodically.
    pub fn sweep(&self, now_ms: u64) {
        self.pending.lock().expect("code book lock").retain(|_, p| p.expires_at_ms > now_ms);
    }
}

/// Compares without stopping at the first difference (no timing hint about the code).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_expire_are_single_use_and_allow_limited_guesses() {
        let book = CodeBook::new(1000, 2, 10, None);
        let code = book.issue("+15550000001", 0).unwrap();
        assert_eq!(code.len(), 6);
        assert_eq!(book.check("+15550000001", &code, 1000), Err(CodeError::NoneIssued));

        let code = book.issue("+15550000001", 0).unwrap();
        assert_eq!(book.check("+15550000001", &code, 10), Ok(()));
        assert_eq!(book.check("+15550000001", &code, 10), Err(CodeError::NoneIssued));

        let code = book.issue("+15550000001", 0).unwrap();
        let wrong = if code == "000001" { "000002" } else { "000001" };
        assert_eq!(book.check("+15550000001", wrong, 1), Err(CodeError::Wrong { attempts_left: 1 }));
        assert_eq!(book.check("+15550000001", wrong, 1), Err(CodeError::Wrong { attempts_left: 0 }));
        assert_eq!(book.check("+15550000001", &code, 1), Err(CodeError::NoneIssued));
    }

    #[test]
    fn the_book_is_bounded() {
        let book = CodeBook::new(1000, 5, 2, Some("000000".into()));
        book.issue("+15550000001", 0).unwrap();
        book.issue("+15550000002", 0).unwrap();
        assert_eq!(book.issue("+15550000003", 0), Err(CodeError::BookFull));
        assert!(book.issue("+15550000003", 2000).is_ok(), "expired codes make room");
    }
}
