//! Groups with Megolm sender keys: my outbound session per group (rotated whenever the set of
//! member devices differs from the one its key was shared with, so a member that left or was
//! removed never gets a key to what follows), and the inbound sessions others shared with me.
//! Synchronous functions over [`State`]; the key distribution (pairwise, over Olm) is `mod.rs`'s.

use std::collections::BTreeSet;

use vodozemac::megolm::{GroupSession, InboundGroupSession, MegolmMessage, SessionConfig, SessionKey};

use super::envelope::{Addr, Envelope, MEGOLM, VERSION};
use super::store::{Inbound, Outbound, State};
use super::E2eError;

/// Messages one outbound session encrypts before it is replaced anyway.
const MESSAGES_PER_SESSION_MAX: u32 = 100;

impl State {
    /// Whether the group's outbound session may encrypt for `members` (every member device but
    /// mine): only if its key went to exactly these devices and it is not worn out; otherwise a
    /// new one must be shared.
    pub fn usable_outbound(&self, group: u64, members: &BTreeSet<Addr>) -> bool {
        self.outbound
            .get(&group)
            .is_some_and(|o| o.shared_with == *members && o.session.message_index() < MESSAGES_PER_SESSION_MAX)
    }

    /// Makes `session` the group's outbound session, shared with `members`.
    pub fn set_outbound(&mut self, group: u64, session: GroupSession, members: BTreeSet<Addr>) {
        self.outbound.insert(group, Outbound { session, shared_with: members });
    }

    /// A new group session (not yet anyone's).
    pub fn new_group_session() -> GroupSession {
        GroupSession::new(SessionConfig::version_1())
    }

    /// Encrypts `plaintext` with the group's outbound session.
    pub fn encrypt_megolm(&mut self, group: u64, plaintext: &[u8]) -> Result<Envelope, E2eError> {
        let sender_key = self.account.curve25519_key().to_base64();
        let outbound = self.outbound.get_mut(&group).ok_or_else(|| E2eError::Encrypt("no group session".into()))?;
        let message = outbound.session.encrypt(plaintext);
        Ok(Envelope {
            v: VERSION,
            alg: MEGOLM.into(),
            sender_key,
            message_type: None,
            session_id: outbound.session.session_id(),
            body: message.to_base64(),
        })
    }

    /// Keeps a group session `sender` shared with me over our pairwise session.
    pub fn add_inbound(
        &mut self,
        sender_key: &str,
        sender: Addr,
        group: u64,
        session_key: &str,
    ) -> Result<(), E2eError> {
        let key = SessionKey::from_base64(session_key).map_err(|e| E2eError::Decrypt(e.to_string()))?;
        let session = InboundGroupSession::new(&key, SessionConfig::version_1());
        let id = (sender_key.to_owned(), session.session_id());
        self.inbound.entry(id).or_insert(Inbound { session, group, sender });
        Ok(())
    }

    /// Decrypts a group envelope that `from` sent to `group`; only the device that shared the
    /// session, in that group, may have sent it.
    pub fn decrypt_megolm(&mut self, envelope: &Envelope, from: Addr, group: u64) -> Result<Vec<u8>, E2eError> {
        let bad = |why: &str| E2eError::Decrypt(why.into());
        let id = (envelope.sender_key.clone(), envelope.session_id.clone());
        let inbound = self
            .inbound
            .get_mut(&id)
            .ok_or_else(|| bad("no key for this group session (not shared with this device)"))?;
        if inbound.sender != from || inbound.group != group {
            return Err(bad("the group session belongs to another sender or group"));
        }
        let message =
            MegolmMessage::from_base64(&envelope.body).map_err(|_| bad("the body is not a Megolm message"))?;
        let decrypted = inbound.session.decrypt(&message).map_err(|e| E2eError::Decrypt(e.to_string()))?;
        Ok(decrypted.plaintext)
    }
}
