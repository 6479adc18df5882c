//! The admin bearer token: every admin request carries `Authorization: Bearer <token>`, compared
//! in constant time (both sides hashed with SHA-256 first, so neither the content nor the length
//! of the configured token leaks through timing).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{AdminError, AdminState};

/// The configured token, kept only as its hash.
pub struct AdminToken([u8; 32]);

impl AdminToken {
    /// The token operators were given (`[admin] token` or `token_file`).
    pub fn new(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let diff = self.0.iter().zip(presented.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

/// The bearer token of a request, if it has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// Refuses every request (known route or not) without the right token: 401 before any handler.
pub async fn require(State(state): State<Arc<AdminState>>, request: Request, next: Next) -> Response {
    match bearer(request.headers()) {
        Some(token) if state.token.matches(token) => next.run(request).await,
        _ => {
            state.ctx.metrics.admin_refused.inc();
            AdminError::Unauthorized.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        // Proves: the same token matches; a prefix, a longer string, another case or an empty
        // string do not.
        let t = AdminToken::new("0123456789abcdef");
        assert!(t.matches("0123456789abcdef"));
        for wrong in ["0123456789abcde", "0123456789abcdef0", "0123456789ABCDEF", ""] {
            assert!(!t.matches(wrong), "{wrong:?}");
        }
    }
}
