//! Signed, time-limited download URLs: `GET /v1/media/{id}?exp=MS&sig=HEX` where `sig` is
//! HMAC-SHA256 over the id and the expiry under a key derived from the node's token key (the
//! same on every node of a cluster, so any node serves any URL). A URL needs no other
//! credential: whoever holds it until `exp` may fetch the blob, as with WhatsApp's CDN links.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks download URLs.
#[derive(Clone)]
pub struct UrlSigner {
    key: [u8; 32],
}

impl UrlSigner {
    /// A signer whose key is derived from `token_key` (never the token key itself).
    pub fn new(token_key: &[u8; 32]) -> Self {
        let mut mac = HmacSha256::new_from_slice(token_key).expect("HMAC takes any key length");
        mac.update(b"iris media download urls v1");
        Self { key: mac.finalize().into_bytes().into() }
    }

    fn mac(&self, id_hex: &str, expires_at_ms: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(id_hex.as_bytes());
        mac.update(b":");
        mac.update(&expires_at_ms.to_be_bytes());
        mac
    }

    /// The `sig` of blob `id_hex` until `expires_at_ms`.
    pub fn sign(&self, id_hex: &str, expires_at_ms: u64) -> String {
        hex::encode(self.mac(id_hex, expires_at_ms).finalize().into_bytes())
    }

    /// Whether `sig_hex` signs `id_hex` until `expires_at_ms` and that time is still ahead
    /// (compared in constant time).
    pub fn verify(&self, id_hex: &str, expires_at_ms: u64, sig_hex: &str, now_ms: u64) -> bool {
        let Ok(sig) = hex::decode(sig_hex) else { return false };
        now_ms < expires_at_ms && self.mac(id_hex, expires_at_ms).verify_slice(&sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_works_until_it_expires_and_only_for_its_blob() {
        let signer = UrlSigner::new(&[1; 32]);
        let sig = signer.sign("ab", 1_000);
        assert!(signer.verify("ab", 1_000, &sig, 999));
        assert!(!signer.verify("ab", 1_000, &sig, 1_000), "expired");
        assert!(!signer.verify("ac", 1_000, &sig, 0), "another blob");
        assert!(!signer.verify("ab", 2_000, &sig, 0), "another expiry");
        assert!(!UrlSigner::new(&[2; 32]).verify("ab", 1_000, &sig, 0), "another key");
        assert!(!signer.verify("ab", 1_000, "zz", 0));
    }
}
