//! TURN credentials per call, in the scheme of coturn's REST API (`use-auth-secret` with
//! `static-auth-secret`): the username is `expiry_unix:account_id`, the password
//! base64(HMAC-SHA1(secret, username)). coturn recomputes the password from the username and
//! refuses it after the expiry, so the server never talks to coturn and nothing is stored.
//!
//! Knows the config's secret, TTL and URIs; nothing of calls or connections.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use iris_proto::pb;
use iris_store::AccountId;
use sha1::Sha1;

/// Issues credentials from the secret shared with the TURN servers.
pub struct TurnIssuer {
    secret: Vec<u8>,
    ttl_s: u32,
    uris: Vec<String>,
}

impl TurnIssuer {
    /// An issuer for `uris`, valid `ttl_s` seconds; `None` without a secret (STUN-only setups:
    /// offers and incoming calls carry no credentials).
    pub fn new(secret: Option<&str>, ttl_s: u32, uris: &[String]) -> Option<Self> {
        let secret = secret.filter(|s| !s.is_empty())?;
        Some(Self { secret: secret.as_bytes().to_vec(), ttl_s, uris: uris.to_vec() })
    }

    /// Credentials for `account`, valid from `now_ms` for the TTL.
    pub fn credentials(&self, account: AccountId, now_ms: u64) -> pb::TurnCredentials {
        let expiry = now_ms / 1000 + u64::from(self.ttl_s);
        let username = format!("{expiry}:{account}");
        let mut mac = Hmac::<Sha1>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(username.as_bytes());
        let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        pb::TurnCredentials { username, password, ttl_s: self.ttl_s, uris: self.uris.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_what_coturn_recomputes() {
        let uris = vec!["turn:turn.example.com:3478".to_owned()];
        let issuer = TurnIssuer::new(Some("north"), 3600, &uris).unwrap();
        let c = issuer.credentials(1001, 1_796_375_152_462);
        assert_eq!(c.username, "1796378752:1001", "expiry = now + ttl, in Unix seconds");
        // python3: base64.b64encode(hmac.new(b"north", b"1796378752:1001", hashlib.sha1).digest())
        assert_eq!(c.password, "CwpUdwoSTN4yGo/sWMqDkikUdlI=");
        assert_eq!((c.ttl_s, c.uris), (3600, uris));
        assert!(TurnIssuer::new(None, 3600, &[]).is_none() && TurnIssuer::new(Some(""), 3600, &[]).is_none());
    }
}
