//! A node's auth state: the token signer, the one-time codes (here or, in cluster mode, in
//! Redis) and the auth rate limits. Held by the server's context; the flows that use it
//! (`auth/mod.rs`, `link.rs`, `pin.rs`, `erasure.rs`) sit above the context and reach it there.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::codes::{CodeBook, CodeSender};
use super::shared_codes::SharedCodes;
use super::token::TokenSigner;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::ratelimit::KeyedLimit;

/// Auth state of one node.
pub struct AuthService {
    pub(super) signer: TokenSigner,
    pub(super) codes: CodeBook,
    /// Cluster mode: codes in Redis instead of `codes`.
    pub(super) shared_codes: Option<SharedCodes>,
    pub(super) sender: Arc<dyn CodeSender>,
    pub(super) code_per_phone: Option<KeyedLimit<String>>,
    pub(super) code_per_ip: Option<KeyedLimit<IpAddr>>,
    pub(super) verify_per_ip: Option<KeyedLimit<IpAddr>>,
    /// New accounts per IP: taken only when a verified code creates an account.
    pub(super) register_per_ip: Option<KeyedLimit<IpAddr>>,
    /// Deletion codes per account (`[account]`, `erasure.rs`).
    pub(super) deletion_codes: Option<KeyedLimit<iris_store::AccountId>>,
    pub(super) access_ttl_ms: u64,
    pub(super) refresh_ttl_ms: u64,
    pub(super) code_ttl_s: u64,
}

impl AuthService {
    /// Auth configured by `config`, signing with `token_key`, sending codes through `sender`.
    /// With a `bus` (cluster mode) codes and the auth rate limits live in Redis, shared by all
    /// nodes.
    pub fn new(
        config: &Config,
        token_key: [u8; 32],
        sender: Arc<dyn CodeSender>,
        metrics: &Metrics,
        bus: Option<&crate::cluster::bus::Bus>,
    ) -> Self {
        let a = &config.auth;
        let r = &config.rate_limits;
        let hour = Duration::from_secs(3600);
        let fixed_code = config.dev.then(|| "000000".to_owned());
        Self {
            shared_codes: bus
                .map(|b| SharedCodes::new(b.clone(), a.code_ttl_s * 1000, a.code_attempts_max, fixed_code.clone())),
            signer: TokenSigner::new(token_key),
            codes: CodeBook::new(a.code_ttl_s * 1000, a.code_attempts_max, a.pending_codes_max, fixed_code),
            sender,
            code_per_phone: KeyedLimit::new_shared(
                "code requests per phone",
                r.code_requests_per_phone_per_hour,
                hour,
                metrics,
                bus,
            ),
            code_per_ip: KeyedLimit::new_shared(
                "code requests per IP",
                r.code_requests_per_ip_per_hour,
                hour,
                metrics,
                bus,
            ),
            verify_per_ip: KeyedLimit::new_shared(
                "verify attempts per IP",
                r.verify_attempts_per_ip_per_minute,
                Duration::from_secs(60),
                metrics,
                bus,
            ),
            register_per_ip: KeyedLimit::new_shared(
                "registrations per IP",
                r.registrations_per_ip_per_day,
                Duration::from_secs(86_400),
                metrics,
                bus,
            ),
            deletion_codes: KeyedLimit::new_shared(
                "deletion codes per account",
                config.account.deletion_codes_per_account_per_hour,
                hour,
                metrics,
                bus,
            ),
            access_ttl_ms: a.access_token_ttl_s * 1000,
            refresh_ttl_ms: a.refresh_token_ttl_s * 1000,
            code_ttl_s: a.code_ttl_s,
        }
    }

    /// The signer of this node's access tokens (shared with the [`Authenticator`](super::access::Authenticator)).
    pub fn signer(&self) -> &TokenSigner {
        &self.signer
    }

    /// Drops expired codes and idle rate-limit buckets.
    pub fn sweep(&self, now_ms: u64) {
        self.codes.sweep(now_ms);
        for l in [&self.code_per_ip, &self.verify_per_ip, &self.register_per_ip].into_iter().flatten() {
            l.sweep();
        }
        if let Some(l) = &self.code_per_phone {
            l.sweep();
        }
        if let Some(l) = &self.deletion_codes {
            l.sweep();
        }
    }
}
