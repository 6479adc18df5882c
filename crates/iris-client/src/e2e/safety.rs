//! Numbers two people read out to each other to compare keys: a device's fingerprint and a
//! conversation's safety number (as WhatsApp's "security code"). Each is digits from SHA-256
//! over public keys; changing any device key of either account changes the number.

use std::collections::BTreeSet;

use sha2_11::{Digest, Sha256};

use super::envelope::Addr;
use crate::error::ClientError;

/// Digits per group.
const GROUP_DIGITS: usize = 5;
/// Groups in a fingerprint (30 digits).
const GROUPS: usize = 6;

/// 30 digits (six groups of five) from a device's Ed25519 key (unpadded base64).
pub fn fingerprint(ed25519: &str) -> String {
    digits(&Sha256::digest(ed25519.as_bytes()))
}

/// 60 digits for the conversation of accounts `a` and `b`: the lower account's 30 digits, then
/// the other's, each from SHA-256 over its devices' `account|device|ed25519` lines in device
/// order. `devices` holds the keyed devices of both accounts.
pub fn safety_number(a: u64, b: u64, devices: &[(u64, u32, String)]) -> String {
    let (low, high) = (a.min(b), a.max(b));
    let of = |account: u64| {
        let mut lines: Vec<String> =
            devices.iter().filter(|d| d.0 == account).map(|(a, d, k)| format!("{a}|{d}|{k}\n")).collect();
        lines.sort();
        digits(&Sha256::digest(lines.concat().as_bytes()))
    };
    format!("{} {}", of(low), of(high))
}

/// Six groups of five decimal digits from the first 24 bytes of a digest.
fn digits(digest: &[u8]) -> String {
    digest
        .chunks(4)
        .take(GROUPS)
        .map(|c| {
            let n = u32::from_be_bytes([c[0], c[1], c[2], c[3]]) % 100_000;
            format!("{n:0width$}", width = GROUP_DIGITS)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl super::E2e {
    /// This device's fingerprint: 30 digits from its Ed25519 key, to read out and compare.
    pub async fn fingerprint(&self) -> String {
        let (_, ed25519) = self.identity_keys().await;
        fingerprint(&ed25519)
    }

    /// The safety number of my conversation with `peer`: 60 digits from both accounts' device
    /// keys (the directory's, checked against those pinned), the same on both sides.
    pub async fn safety_number(&self, peer: u64) -> Result<String, ClientError> {
        let accounts: Vec<u64> = BTreeSet::from([peer, self.me.account]).into_iter().collect();
        let mut devices = self.client.keys_query(accounts).await?;
        devices.retain(|d| d.identity.is_some());
        let mut keyed = Vec::new();
        let mut inner = self.inner.lock().await;
        for d in &devices {
            let a = Addr { account: d.account_id, device: d.device_id };
            let pinned = inner.state.pin(a, d.identity.as_ref().expect("kept only those with keys"))?;
            keyed.push((a.account, a.device, pinned.ed25519));
        }
        inner.save()?;
        Ok(safety_number(self.me.account, peer, &keyed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_digits_equal_on_both_sides() {
        let f = fingerprint("Fg6Tf+3EuwKTnELT0Yb2yb+B7AaMf4+aJQ8sImS0bAg");
        assert_eq!(f.len(), 6 * 5 + 5);
        assert!(f.split(' ').all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())));
        let devices = vec![(1, 1, "A".to_owned()), (2, 1, "B".to_owned()), (2, 2, "C".to_owned())];
        assert_eq!(safety_number(1, 2, &devices), safety_number(2, 1, &devices));
        let mut changed = devices.clone();
        changed[2].2 = "D".into();
        assert_ne!(safety_number(1, 2, &devices), safety_number(1, 2, &changed));
    }
}
