//! Checks the signatures of published end-to-end keys: an identity's self-signature, and each
//! one-time or fallback key's signature by its device's Ed25519 key (the messages are
//! `iris_proto::e2e`'s). The verification itself is vodozemac's (Ed25519, strict); nothing here
//! is cryptography of our own.
//!
//! Pure functions of the keys; they know no store and no service.

use iris_proto::{e2e, pb};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey, Ed25519Signature};

use crate::error::ServiceError;

/// Longest key id a client may choose.
pub const KEY_ID_BYTES_MAX: usize = 32;

/// Checks that `identity` is well-formed and signed by its own Ed25519 key.
pub fn check_identity(identity: &pb::IdentityKeys) -> Result<(), ServiceError> {
    Curve25519PublicKey::from_base64(&identity.curve25519)
        .map_err(|_| invalid("identity.curve25519 is not a Curve25519 key (unpadded base64 of 32 bytes)"))?;
    let ed25519 = ed25519(&identity.ed25519)?;
    verify(&ed25519, &e2e::identity_message(&identity.curve25519, &identity.ed25519), &identity.signature, "identity")
}

/// Checks a one-time key (or, with `fallback`, the fallback key) of `device` against the device's
/// Ed25519 key `ed25519`.
pub fn check_signed_key(
    ed25519_b64: &str,
    account_id: u64,
    device_id: u32,
    key: &pb::SignedKey,
    fallback: bool,
) -> Result<(), ServiceError> {
    if key.key_id.is_empty() || key.key_id.len() > KEY_ID_BYTES_MAX {
        return Err(invalid(&format!("a key_id is 1 to {KEY_ID_BYTES_MAX} bytes")));
    }
    Curve25519PublicKey::from_base64(&key.key)
        .map_err(|_| invalid("a key is not a Curve25519 key (unpadded base64 of 32 bytes)"))?;
    let message = if fallback {
        e2e::fallback_key_message(account_id, device_id, &key.key_id, &key.key)
    } else {
        e2e::one_time_key_message(account_id, device_id, &key.key_id, &key.key)
    };
    verify(&ed25519(ed25519_b64)?, &message, &key.signature, &key.key_id)
}

fn ed25519(b64: &str) -> Result<Ed25519PublicKey, ServiceError> {
    Ed25519PublicKey::from_base64(b64)
        .map_err(|_| invalid("ed25519 is not an Ed25519 key (unpadded base64 of 32 bytes)"))
}

fn verify(key: &Ed25519PublicKey, message: &str, signature: &str, what: &str) -> Result<(), ServiceError> {
    let signature = Ed25519Signature::from_base64(signature)
        .map_err(|_| ServiceError::InvalidSignature(format!("the signature of {what} is not base64 of 64 bytes")))?;
    key.verify(message.as_bytes(), &signature)
        .map_err(|_| ServiceError::InvalidSignature(format!("the signature of {what} does not verify")))
}

fn invalid(why: &str) -> ServiceError {
    ServiceError::InvalidArgument(why.to_owned())
}

#[cfg(test)]
mod tests {
    use vodozemac::olm::Account;

    use super::*;

    fn identity_of(account: &Account) -> pb::IdentityKeys {
        let keys = account.identity_keys();
        let (curve25519, ed25519) = (keys.curve25519.to_base64(), keys.ed25519.to_base64());
        let signature = account.sign(e2e::identity_message(&curve25519, &ed25519)).to_base64();
        pb::IdentityKeys { curve25519, ed25519, signature }
    }

    #[test]
    fn good_signatures_pass_and_tampered_ones_are_typed_refusals() {
        // Proves: what a vodozemac account signs verifies; a key swapped under its signature, or
        // signed for another device, is INVALID_SIGNATURE; garbage is INVALID_ARGUMENT.
        let mut account = Account::new();
        let identity = identity_of(&account);
        check_identity(&identity).unwrap();
        let forged = pb::IdentityKeys { curve25519: identity_of(&Account::new()).curve25519, ..identity.clone() };
        assert_eq!(check_identity(&forged).unwrap_err().code(), pb::ErrorCode::InvalidSignature);
        account.generate_one_time_keys(1);
        let (key_id, key) = account.one_time_keys().into_iter().next().unwrap();
        let (key_id, key) = (key_id.to_base64(), key.to_base64());
        let signature = account.sign(e2e::one_time_key_message(7, 2, &key_id, &key)).to_base64();
        let signed = pb::SignedKey { key_id, key, signature };
        check_signed_key(&identity.ed25519, 7, 2, &signed, false).unwrap();
        let code = |r: Result<(), ServiceError>| r.unwrap_err().code();
        assert_eq!(code(check_signed_key(&identity.ed25519, 7, 3, &signed, false)), pb::ErrorCode::InvalidSignature);
        assert_eq!(code(check_signed_key(&identity.ed25519, 7, 2, &signed, true)), pb::ErrorCode::InvalidSignature);
        let garbage = pb::SignedKey { key: "not a key".into(), ..signed };
        assert_eq!(code(check_signed_key(&identity.ed25519, 7, 2, &garbage, false)), pb::ErrorCode::InvalidArgument);
    }
}
