//! The end-to-end payload formats, as JSON so a browser with libolm can speak them
//! (PROTOCOL.md "End-to-end encryption" is their reference):
//!
//! - [`Envelope`]: what a message's `payload` holds. `{"v":1,"alg":"olm.v1","sender_key":…,
//!   "type":0|1,"body":…}` for a pairwise Olm message (`type` and `body` exactly as libolm's
//!   `Session.encrypt` returns them), `{"v":1,"alg":"megolm.v1","sender_key":…,
//!   "session_id":…,"body":…}` for a group message (`body` is libolm's
//!   `OutboundGroupSession.encrypt` output), or `{"v":1,"alg":"none"}` for a device that
//!   published no keys and so cannot read it.
//! - [`Content`]: the plaintext inside, which names its sender and conversation so the server
//!   cannot pass one ciphertext off as another (a recipient checks them against the envelope's
//!   routing): a text, an edit, a reaction, or a group's room key.
//!
//! Knows JSON only; no keys, no I/O.

use serde::{Deserialize, Serialize};

/// Format version of both.
pub const VERSION: u32 = 1;
/// `alg` of pairwise Olm envelopes.
pub const OLM: &str = "olm.v1";
/// `alg` of Megolm (group) envelopes.
pub const MEGOLM: &str = "megolm.v1";
/// `alg` of the placeholder for a device without keys.
pub const NONE: &str = "none";

/// A payload as sent (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// [`VERSION`].
    pub v: u32,
    /// [`OLM`], [`MEGOLM`] or [`NONE`].
    pub alg: String,
    /// The sender device's Curve25519 identity key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sender_key: String,
    /// Olm: 0 pre-key message, 1 normal message.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub message_type: Option<u32>,
    /// Megolm: the group session's id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session_id: String,
    /// The ciphertext, unpadded base64.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
}

impl Envelope {
    /// Parses a payload; `None` when it is not an envelope (a plaintext message).
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let envelope: Self = serde_json::from_slice(payload).ok()?;
        (envelope.v == VERSION).then_some(envelope)
    }

    /// The bytes to send.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope always serialises")
    }

    /// The placeholder for a device that cannot decrypt.
    pub fn none() -> Self {
        Self {
            v: VERSION,
            alg: NONE.into(),
            sender_key: String::new(),
            message_type: None,
            session_id: String::new(),
            body: String::new(),
        }
    }
}

/// A device, as contents name their sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Addr {
    /// Account id.
    pub account: u64,
    /// Device id.
    pub device: u32,
}

/// What an envelope carries, once decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// [`VERSION`].
    pub v: u32,
    /// The device that encrypted it (checked against the inbox item's sender).
    pub sender: Addr,
    /// The conversation: the 1:1 peer's account (from the sender's view), or 0 in a group.
    #[serde(default)]
    pub to_account: u64,
    /// The group, or 0 for 1:1.
    #[serde(default)]
    pub group: u64,
    /// What it is.
    #[serde(flatten)]
    pub body: Body,
}

/// The kinds of content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// A text message.
    Text {
        /// The text.
        text: String,
    },
    /// The new text of an edited message.
    Edit {
        /// The server id of the message edited (so the edit cannot be moved to another); a
        /// decimal string in JSON, as server ids pass 2^53.
        #[serde(with = "decimal")]
        target: u64,
        /// The text.
        text: String,
    },
    /// A reaction; empty removes it.
    React {
        /// The server id of the message reacted to (a decimal string in JSON).
        #[serde(with = "decimal")]
        target: u64,
        /// The emoji.
        emoji: String,
    },
    /// A message with media: the `pb::MediaMessage` (blob ids, keys, hashes, caption) as
    /// standard base64 of its protobuf bytes, so each blob's key travels only inside the
    /// ciphertext.
    Media {
        /// Base64 of the encoded `pb::MediaMessage`.
        media: String,
    },
    /// A group's Megolm session key (sent pairwise to each member device).
    RoomKey {
        /// The Megolm session id.
        session_id: String,
        /// libolm's `OutboundGroupSession.session_key()`.
        session_key: String,
    },
}

/// A `u64` as a decimal JSON string (as protobuf's JSON mapping writes them), so a browser's
/// `JSON.parse` keeps every digit.
mod decimal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl Content {
    /// The bytes to encrypt.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a content always serialises")
    }

    /// Parses decrypted bytes.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let content: Self = serde_json::from_slice(bytes).ok()?;
        (content.v == VERSION).then_some(content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_and_contents_have_the_documented_json() {
        // Proves the JSON a browser must produce and read (PROTOCOL.md shows the same).
        let olm = Envelope {
            v: 1,
            alg: OLM.into(),
            sender_key: "K".into(),
            message_type: Some(0),
            session_id: String::new(),
            body: "B".into(),
        };
        assert_eq!(
            String::from_utf8(olm.to_bytes()).unwrap(),
            r#"{"v":1,"alg":"olm.v1","sender_key":"K","type":0,"body":"B"}"#
        );
        assert_eq!(Envelope::parse(&olm.to_bytes()), Some(olm));
        assert_eq!(Envelope::parse(b"hello"), None, "plaintext is no envelope");
        let text = Content {
            v: 1,
            sender: Addr { account: 7, device: 2 },
            to_account: 9,
            group: 0,
            body: Body::Text { text: "hi".into() },
        };
        assert_eq!(
            String::from_utf8(text.to_bytes()).unwrap(),
            r#"{"v":1,"sender":{"account":7,"device":2},"to_account":9,"group":0,"type":"text","text":"hi"}"#
        );
        assert_eq!(Content::parse(&text.to_bytes()), Some(text));
        let edit = Content { body: Body::Edit { target: 7_534_543_487_471_977_472, text: "x".into() }, ..text_of(0) };
        assert!(String::from_utf8(edit.to_bytes())
            .unwrap()
            .contains(r#""type":"edit","target":"7534543487471977472","text":"x""#));
        assert_eq!(Content::parse(&edit.to_bytes()), Some(edit));
    }

    fn text_of(to_account: u64) -> Content {
        Content {
            v: 1,
            sender: Addr { account: 7, device: 2 },
            to_account,
            group: 0,
            body: Body::Text { text: "hi".into() },
        }
    }
}
