//! Pairwise Olm: trusting a device's published keys (self-signature, signed one-time keys,
//! identities pinned the first time they are seen), starting sessions from claimed keys, and
//! encrypting and decrypting one device's envelopes. Synchronous functions over [`State`]; the
//! network calls are `mod.rs`'s.

use iris_proto::{e2e, pb};
use vodozemac::olm::{OlmMessage, SessionConfig};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey, Ed25519Signature};

use super::envelope::{Addr, Envelope, OLM, VERSION};
use super::store::{Pinned, State};
use super::E2eError;

/// Checks an identity's self-signature and returns the keys to pin.
pub fn verify_identity(addr: Addr, identity: &pb::IdentityKeys) -> Result<Pinned, E2eError> {
    let untrusted = |why: &str| E2eError::UntrustedKey { account: addr.account, device: addr.device, why: why.into() };
    Curve25519PublicKey::from_base64(&identity.curve25519).map_err(|_| untrusted("bad Curve25519 identity key"))?;
    let ed25519 = Ed25519PublicKey::from_base64(&identity.ed25519).map_err(|_| untrusted("bad Ed25519 key"))?;
    let message = e2e::identity_message(&identity.curve25519, &identity.ed25519);
    verify(&ed25519, &message, &identity.signature).map_err(|_| untrusted("identity signature does not verify"))?;
    Ok(Pinned { curve25519: identity.curve25519.clone(), ed25519: identity.ed25519.clone() })
}

fn verify(key: &Ed25519PublicKey, message: &str, signature: &str) -> Result<(), ()> {
    let signature = Ed25519Signature::from_base64(signature).map_err(|_| ())?;
    key.verify(message.as_bytes(), &signature).map_err(|_| ())
}

impl State {
    /// Trust on first use: pins `identity` for `addr` the first time, afterwards insists on it
    /// (device ids are never reused and identities are published once, so a different key for
    /// a known device means the directory lies).
    pub fn pin(&mut self, addr: Addr, identity: &pb::IdentityKeys) -> Result<Pinned, E2eError> {
        let seen = verify_identity(addr, identity)?;
        match self.devices.get(&addr) {
            Some(pinned) if *pinned != seen => Err(E2eError::UntrustedKey {
                account: addr.account,
                device: addr.device,
                why: "its identity keys differ from the ones pinned for it".into(),
            }),
            Some(pinned) => Ok(pinned.clone()),
            None => {
                self.devices.insert(addr, seen.clone());
                Ok(seen)
            }
        }
    }

    /// Whether a pairwise session with the device of this identity key exists.
    pub fn has_session(&self, curve25519: &str) -> bool {
        self.sessions.get(curve25519).is_some_and(|s| !s.is_empty())
    }

    /// Starts a session with `addr` from a claimed key, after checking the key's signature by
    /// the pinned Ed25519 key.
    pub fn start_session(
        &mut self,
        addr: Addr,
        pinned: &Pinned,
        key: &pb::SignedKey,
        fallback: bool,
    ) -> Result<(), E2eError> {
        let untrusted =
            |why: &str| E2eError::UntrustedKey { account: addr.account, device: addr.device, why: why.into() };
        let ed25519 = Ed25519PublicKey::from_base64(&pinned.ed25519).map_err(|_| untrusted("bad Ed25519 key"))?;
        let message = if fallback {
            e2e::fallback_key_message(addr.account, addr.device, &key.key_id, &key.key)
        } else {
            e2e::one_time_key_message(addr.account, addr.device, &key.key_id, &key.key)
        };
        verify(&ed25519, &message, &key.signature).map_err(|_| untrusted("claimed key signature does not verify"))?;
        let identity =
            Curve25519PublicKey::from_base64(&pinned.curve25519).map_err(|_| untrusted("bad identity key"))?;
        let one_time = Curve25519PublicKey::from_base64(&key.key).map_err(|_| untrusted("bad claimed key"))?;
        let session = self
            .account
            .create_outbound_session(SessionConfig::version_1(), identity, one_time)
            .map_err(|e| untrusted(&e.to_string()))?;
        self.sessions.entry(pinned.curve25519.clone()).or_default().push(session);
        Ok(())
    }

    /// Encrypts `plaintext` for the device whose identity key is `curve25519`, with the session
    /// used most recently.
    pub fn encrypt_olm(&mut self, curve25519: &str, plaintext: &[u8]) -> Result<Envelope, E2eError> {
        let sender_key = self.account.curve25519_key().to_base64();
        let session = self
            .sessions
            .get_mut(curve25519)
            .and_then(|s| s.last_mut())
            .ok_or_else(|| E2eError::Encrypt("no session with that device".into()))?;
        let message = session.encrypt(plaintext).map_err(|e| E2eError::Encrypt(e.to_string()))?;
        let (message_type, body) = message.to_parts();
        Ok(Envelope {
            v: VERSION,
            alg: OLM.into(),
            sender_key,
            message_type: Some(message_type as u32),
            session_id: String::new(),
            body: vodozemac::base64_encode(body),
        })
    }

    /// Decrypts an Olm envelope from the device whose identity key is `envelope.sender_key`
    /// (the caller checked it against the directory). A pre-key message that no session knows
    /// starts a new inbound session (using up my one-time key). The session that decrypted
    /// becomes the one used for replies.
    pub fn decrypt_olm(&mut self, envelope: &Envelope) -> Result<Vec<u8>, E2eError> {
        let bad = |why: String| E2eError::Decrypt(why);
        let body = vodozemac::base64_decode(&envelope.body).map_err(|_| bad("the body is not base64".into()))?;
        let message_type = envelope.message_type.ok_or_else(|| bad("an Olm envelope without a type".into()))?;
        let message = OlmMessage::from_parts(message_type as usize, &body).map_err(|e| bad(e.to_string()))?;
        let sessions = self.sessions.entry(envelope.sender_key.clone()).or_default();
        for i in (0..sessions.len()).rev() {
            if let OlmMessage::PreKey(pre_key) = &message {
                if pre_key.session_id() != sessions[i].session_id() {
                    continue;
                }
            }
            if let Ok(plaintext) = sessions[i].decrypt(&message) {
                let session = sessions.remove(i);
                sessions.push(session);
                return Ok(plaintext);
            }
        }
        let OlmMessage::PreKey(pre_key) = &message else {
            return Err(bad("no session with the sender decrypts it".into()));
        };
        let sender =
            Curve25519PublicKey::from_base64(&envelope.sender_key).map_err(|_| bad("bad sender key".into()))?;
        let created = self
            .account
            .create_inbound_session(SessionConfig::version_1(), sender, pre_key)
            .map_err(|e| bad(e.to_string()))?;
        self.sessions.entry(envelope.sender_key.clone()).or_default().push(created.session);
        Ok(created.plaintext)
    }
}
