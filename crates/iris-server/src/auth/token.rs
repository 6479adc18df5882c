//! Signed access tokens: `v1.<payload>.<mac>`, both base64url, payload = account ‖ device ‖
//! expiry (big-endian), mac = HMAC-SHA256 over the payload with the node's token key.
//!
//! Stateless to check (no store lookup per connection); revocation is checked separately
//! against the device record.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use iris_store::DeviceAddr;
use sha2::Sha256;

const PREFIX: &str = "v1.";
const PAYLOAD_BYTES: usize = 8 + 4 + 8;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of the token format, or the signature does not match.
    #[error("malformed or forged token")]
    Invalid,
    /// Correctly signed but past its expiry.
    #[error("token expired")]
    Expired,
}

/// What a valid access token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenClaims {
    /// The device it was issued to.
    pub device: DeviceAddr,
    /// Expiry, ms since the Unix epoch.
    pub expires_at_ms: u64,
}

/// Signs and checks access tokens with one 32-byte key.
#[derive(Clone)]
pub struct TokenSigner {
    key: [u8; 32],
}

impl TokenSigner {
    /// A signer with this key.
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// A token for `claims`.
    pub fn sign(&self, claims: TokenClaims) -> String {
        let mut payload = [0u8; PAYLOAD_BYTES];
        payload[..8].copy_from_slice(&claims.device.account.to_be_bytes());
        payload[8..12].copy_from_slice(&claims.device.device.to_be_bytes());
        payload[12..].copy_from_slice(&claims.expires_at_ms.to_be_bytes());
        let mac = self.mac(&payload).finalize().into_bytes();
        format!("{PREFIX}{}.{}", B64.encode(payload), B64.encode(mac))
    }

    /// The claims of `token` if it is well-formed, signed with this key and not expired at `now_ms`.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<TokenClaims, TokenError> {
        let rest = token.strip_prefix(PREFIX).ok_or(TokenError::Invalid)?;
        let (payload_b64, mac_b64) = rest.split_once('.').ok_or(TokenError::Invalid)?;
        let payload = B64.decode(payload_b64).map_err(|_| TokenError::Invalid)?;
        let mac = B64.decode(mac_b64).map_err(|_| TokenError::Invalid)?;
        if payload.len() != PAYLOAD_BYTES {
            return Err(TokenError::Invalid);
        }
        self.mac(&payload).verify_slice(&mac).map_err(|_| TokenError::Invalid)?;
        let claims = TokenClaims {
            device: DeviceAddr {
                account: u64::from_be_bytes(payload[..8].try_into().expect("8 bytes")),
                device: u32::from_be_bytes(payload[8..12].try_into().expect("4 bytes")),
            },
            expires_at_ms: u64::from_be_bytes(payload[12..].try_into().expect("8 bytes")),
        };
        if claims.expires_at_ms <= now_ms {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload);
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_expire_and_resist_tampering() {
        let signer = TokenSigner::new([7; 32]);
        let claims = TokenClaims { device: DeviceAddr::new(42, 3), expires_at_ms: 1_000 };
        let token = signer.sign(claims);
        assert_eq!(signer.verify(&token, 999), Ok(claims));
        assert_eq!(signer.verify(&token, 1_000), Err(TokenError::Expired));
        assert_eq!(TokenSigner::new([8; 32]).verify(&token, 0), Err(TokenError::Invalid));
        let forged = token.replacen('A', "B", 1);
        assert!(forged == token || signer.verify(&forged, 0).is_err());
        for bad in ["", "v1.", "v1.abc", "v2.AAAA.BBBB", "v1.!!!.???"] {
            assert_eq!(signer.verify(bad, 0), Err(TokenError::Invalid), "{bad}");
        }
    }
}
