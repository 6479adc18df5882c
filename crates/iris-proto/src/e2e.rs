//! What end-to-end keys sign: the exact UTF-8 strings a device signs with its Ed25519 key when
//! it publishes keys, and that the server and every client verify. One place, so the server, the
//! Rust SDK and the browser (PROTOCOL.md repeats them) agree byte for byte.
//!
//! Keys appear as given on the wire: unpadded standard base64. Ids are decimal. Knows no
//! cryptography: it only builds the messages.

/// The string an identity's `signature` signs: binds the Curve25519 identity key to the Ed25519
/// key that signs everything else.
pub fn identity_message(curve25519: &str, ed25519: &str) -> String {
    format!("iris.v1.identity|{curve25519}|{ed25519}")
}

/// The string a one-time key's `signature` signs, for device `device_id` of `account_id`.
pub fn one_time_key_message(account_id: u64, device_id: u32, key_id: &str, key: &str) -> String {
    format!("iris.v1.otk|{account_id}|{device_id}|{key_id}|{key}")
}

/// The string a fallback key's `signature` signs, for device `device_id` of `account_id`.
pub fn fallback_key_message(account_id: u64, device_id: u32, key_id: &str, key: &str) -> String {
    format!("iris.v1.fallback|{account_id}|{device_id}|{key_id}|{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_the_documented_strings() {
        assert_eq!(identity_message("C", "E"), "iris.v1.identity|C|E");
        assert_eq!(one_time_key_message(7, 2, "AAAAAQ", "K"), "iris.v1.otk|7|2|AAAAAQ|K");
        assert_eq!(fallback_key_message(7, 2, "AAAAAg", "K"), "iris.v1.fallback|7|2|AAAAAg|K");
    }
}
