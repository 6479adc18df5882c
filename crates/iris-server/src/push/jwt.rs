//! The JSON Web Tokens the push providers ask for: RS256 (an FCM service account's assertion)
//! and ES256 (APNs provider tokens), signed with ring from PKCS#8 PEM keys.
//!
//! Knows nothing of HTTP or the providers' claims.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256};

use super::PushError;

/// A signing key and its JWT algorithm.
pub enum JwtKey {
    /// ECDSA P-256 with SHA-256 (APNs).
    Es256(EcdsaKeyPair),
    /// RSASSA-PKCS1-v1_5 with SHA-256 (Google service accounts).
    Rs256(RsaKeyPair),
}

impl JwtKey {
    /// An ES256 key from a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, an APNs `.p8` file).
    pub fn es256_pem(pem: &str) -> Result<Self, PushError> {
        let der = pem_der(pem)?;
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &SystemRandom::new())
            .map(Self::Es256)
            .map_err(|e| PushError::Key(format!("not a PKCS#8 P-256 key: {e}")))
    }

    /// An RS256 key from a PKCS#8 PEM (a service account's `private_key`).
    pub fn rs256_pem(pem: &str) -> Result<Self, PushError> {
        let der = pem_der(pem)?;
        RsaKeyPair::from_pkcs8(&der).map(Self::Rs256).map_err(|e| PushError::Key(format!("not a PKCS#8 RSA key: {e}")))
    }

    /// `alg` of the JWT header.
    fn alg(&self) -> &'static str {
        match self {
            Self::Es256(_) => "ES256",
            Self::Rs256(_) => "RS256",
        }
    }

    /// A signed compact JWT: `header.claims.signature`, `header` completed with `alg`.
    pub fn sign(&self, mut header: serde_json::Value, claims: &serde_json::Value) -> Result<String, PushError> {
        header["alg"] = self.alg().into();
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let rng = SystemRandom::new();
        let fail = |_| PushError::Key("signing failed".into());
        let signature = match self {
            Self::Es256(k) => k.sign(&rng, input.as_bytes()).map_err(fail)?.as_ref().to_vec(),
            Self::Rs256(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig).map_err(fail)?;
                sig
            }
        };
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// The DER inside the first `PRIVATE KEY` PEM block.
fn pem_der(pem: &str) -> Result<Vec<u8>, PushError> {
    let body = pem
        .split("-----BEGIN PRIVATE KEY-----")
        .nth(1)
        .and_then(|rest| rest.split("-----END PRIVATE KEY-----").next())
        .ok_or_else(|| PushError::Key("no PKCS#8 PEM block (-----BEGIN PRIVATE KEY-----)".into()))?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(b64).map_err(|e| PushError::Key(format!("bad PEM base64: {e}")))
}

#[cfg(test)]
mod tests {
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    use super::*;

    #[test]
    fn an_es256_token_verifies_with_the_public_key() {
        // Proves: header and claims are base64url JSON with the algorithm set, and the
        // signature is the 64-byte r‖s that JWS wants, over "header.claims".
        let key = rcgen::KeyPair::generate().unwrap();
        let jwt = JwtKey::es256_pem(&key.serialize_pem()).unwrap();
        let token = jwt.sign(serde_json::json!({"kid": "K"}), &serde_json::json!({"iss": "T"})).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, serde_json::json!({"kid": "K", "alg": "ES256"}));
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert_eq!(sig.len(), 64);
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key_raw());
        public.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig).expect("valid signature");
        assert!(public.verify(b"other", &sig).is_err());
    }

    #[test]
    fn a_key_that_is_not_pem_is_a_typed_error() {
        assert!(matches!(JwtKey::es256_pem("nonsense"), Err(PushError::Key(_))));
        assert!(matches!(
            JwtKey::rs256_pem("-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----"),
            Err(PushError::Key(_))
        ));
    }
}
