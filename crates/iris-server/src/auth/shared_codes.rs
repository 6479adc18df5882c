//! One-time codes in Redis (cluster mode), so a code requested through one node can be verified
//! through another. Same rules as the in-memory [`super::codes::CodeBook`]: a code expires, is
//! single-use (taken with GETDEL when right), and allows a bounded number of wrong guesses.
//!
//! Soft state, like the book: a Redis failover may forget a code (the person asks again). Two
//! wrong guesses racing on two nodes may both be counted as one (read, then write); the per-IP
//! verify limit, also in Redis, bounds guessing regardless.

use bytes::Bytes;
use rand::Rng;

use super::codes::CodeError;
use crate::cluster::bus::Bus;
use crate::error::ServiceError;

/// Pending codes by phone, in Redis.
pub struct SharedCodes {
    bus: Bus,
    ttl_ms: u64,
    attempts_max: u32,
    fixed_code: Option<String>,
}

/// A pending code as stored: `code:attempts_left:expires_at_ms`.
struct Pending {
    code: String,
    attempts_left: u32,
    expires_at_ms: u64,
}

impl Pending {
    fn encode(&self) -> Bytes {
        format!("{}:{}:{}", self.code, self.attempts_left, self.expires_at_ms).into()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split(':');
        let code = parts.next()?.to_owned();
        let attempts_left = parts.next()?.parse().ok()?;
        let expires_at_ms = parts.next()?.parse().ok()?;
        Some(Self { code, attempts_left, expires_at_ms })
    }
}

fn key(phone: &str) -> String {
    format!("code:{phone}")
}

fn unavailable(e: crate::cluster::bus::BusError) -> ServiceError {
    tracing::warn!(error = %e, "one-time code store (Redis) unavailable");
    ServiceError::Unavailable
}

impl SharedCodes {
    /// Codes living `ttl_ms` with `attempts_max` guesses; `fixed_code` in dev mode.
    pub fn new(bus: Bus, ttl_ms: u64, attempts_max: u32, fixed_code: Option<String>) -> Self {
        Self { bus, ttl_ms, attempts_max, fixed_code }
    }

    /// Issues a fresh code for `phone` (replacing any pending one) and returns it.
    pub async fn issue(&self, phone: &str, now_ms: u64) -> Result<String, ServiceError> {
        let code = match &self.fixed_code {
            Some(c) => c.clone(),
            None => format!("{:06}", rand::rng().random_range(0..1_000_000u32)),
        };
        let pending =
            Pending { code: code.clone(), attempts_left: self.attempts_max, expires_at_ms: now_ms + self.ttl_ms };
        self.bus.set_px(&key(phone), pending.encode(), self.ttl_ms).await.map_err(unavailable)?;
        Ok(code)
    }

    /// Checks a guess: a right code is consumed; a wrong one uses up an attempt.
    pub async fn check(&self, phone: &str, guess: &str, now_ms: u64) -> Result<Result<(), CodeError>, ServiceError> {
        let k = key(phone);
        let stored = self.bus.get(&k).await.map_err(unavailable)?;
        let Some(mut p) = stored.as_deref().and_then(Pending::decode) else { return Ok(Err(CodeError::NoneIssued)) };
        if p.expires_at_ms <= now_ms {
            return Ok(Err(CodeError::NoneIssued));
        }
        if super::codes::constant_time_eq(p.code.as_bytes(), guess.trim().as_bytes()) {
            // Single use: only the caller that takes it wins.
            return match self.bus.take(&k).await.map_err(unavailable)? {
                Some(_) => Ok(Ok(())),
                None => Ok(Err(CodeError::NoneIssued)),
            };
        }
        p.attempts_left = p.attempts_left.saturating_sub(1);
        if p.attempts_left == 0 {
            self.bus.del(&k).await.map_err(unavailable)?;
        } else {
            let left_ms = p.expires_at_ms - now_ms;
            self.bus.set_px(&k, p.encode(), left_ms.max(1)).await.map_err(unavailable)?;
        }
        Ok(Err(CodeError::Wrong { attempts_left: p.attempts_left }))
    }
}
