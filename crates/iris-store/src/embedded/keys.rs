//! Key encodings of the fjall engine. Integers are fixed-width big-endian, so byte order is
//! numeric order and one device's inbox is one contiguous range sorted by seq. Knows nothing of
//! values or of fjall.

use crate::{AccountId, DedupKey, DeviceAddr, StoreError, StoreResult};

/// Length of an encoded [`DeviceAddr`]: account u64 ‖ device u32.
pub(super) const ADDR_LEN: usize = 12;
/// Length of an inbox key: device address ‖ seq u64.
pub(super) const INBOX_KEY_LEN: usize = ADDR_LEN + 8;
/// Length of a refresh-token index key: device address ‖ token hash.
pub(super) const TOKEN_INDEX_KEY_LEN: usize = ADDR_LEN + 32;
/// Meta key of the next account id to hand out.
pub(super) const NEXT_ACCOUNT_ID: &[u8] = b"next_account_id";

/// Key of an account record (and value of a phone record).
pub(super) fn account(id: AccountId) -> [u8; 8] {
    id.to_be_bytes()
}

/// Key of a device record, of a cursor, and the prefix of the device's inbox and token index.
pub(super) fn device(addr: DeviceAddr) -> [u8; ADDR_LEN] {
    let mut key = [0; ADDR_LEN];
    key[..8].copy_from_slice(&addr.account.to_be_bytes());
    key[8..].copy_from_slice(&addr.device.to_be_bytes());
    key
}

/// Inverse of [`device`], for keys that start with a device address.
pub(super) fn parse_device(key: &[u8]) -> StoreResult<DeviceAddr> {
    let (account, device) = key.get(..8).zip(key.get(8..ADDR_LEN)).ok_or_else(|| corrupt("device key", key))?;
    Ok(DeviceAddr::new(u64::from_be_bytes(array(account)?), u32::from_be_bytes(array(device)?)))
}

/// Key of one inbox entry.
pub(super) fn inbox(addr: DeviceAddr, seq: u64) -> [u8; INBOX_KEY_LEN] {
    let mut key = [0; INBOX_KEY_LEN];
    key[..ADDR_LEN].copy_from_slice(&device(addr));
    key[ADDR_LEN..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The seq of an inbox key.
pub(super) fn inbox_seq(key: &[u8]) -> StoreResult<u64> {
    if key.len() != INBOX_KEY_LEN {
        return Err(corrupt("inbox key", key));
    }
    Ok(u64::from_be_bytes(array(&key[ADDR_LEN..])?))
}

/// Key of a dedup record: sender address ‖ client message id (last, so it needs no length).
pub(super) fn dedup(key: &DedupKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(ADDR_LEN + key.client_msg_id.len());
    out.extend_from_slice(&device(key.sender));
    out.extend_from_slice(key.client_msg_id.as_bytes());
    out
}

/// Key of the index entry that lets revocation find a device's refresh tokens without a scan.
pub(super) fn token_index(addr: DeviceAddr, hash: &[u8; 32]) -> [u8; TOKEN_INDEX_KEY_LEN] {
    let mut key = [0; TOKEN_INDEX_KEY_LEN];
    key[..ADDR_LEN].copy_from_slice(&device(addr));
    key[ADDR_LEN..].copy_from_slice(hash);
    key
}

/// The token hash of a [`token_index`] key.
pub(super) fn token_index_hash(key: &[u8]) -> StoreResult<[u8; 32]> {
    if key.len() != TOKEN_INDEX_KEY_LEN {
        return Err(corrupt("token index key", key));
    }
    array(&key[ADDR_LEN..])
}

/// A fixed-size copy of `bytes`, which must have exactly `N` bytes.
pub(super) fn array<const N: usize>(bytes: &[u8]) -> StoreResult<[u8; N]> {
    bytes.try_into().map_err(|_| corrupt("fixed-width field", bytes))
}

fn corrupt(what: &str, key: &[u8]) -> StoreError {
    StoreError::Corrupt(format!("{what} of {} bytes", key.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_keys_sort_by_device_then_seq() {
        // Proves byte order equals (account, device, seq) order, which range reads rely on.
        let a = inbox(DeviceAddr::new(1, 2), 255);
        let b = inbox(DeviceAddr::new(1, 2), 256);
        let c = inbox(DeviceAddr::new(1, 3), 0);
        let d = inbox(DeviceAddr::new(2, 0), 0);
        assert!(a < b && b < c && c < d);
        assert_eq!(inbox_seq(&b).unwrap(), 256);
        assert_eq!(parse_device(&c).unwrap(), DeviceAddr::new(1, 3));
    }

    #[test]
    fn token_index_round_trips() {
        // Proves the hash is recovered from an index key and short keys are reported corrupt.
        let key = token_index(DeviceAddr::new(7, 1), &[9; 32]);
        assert_eq!(token_index_hash(&key).unwrap(), [9; 32]);
        assert!(matches!(token_index_hash(&key[1..]), Err(StoreError::Corrupt(_))));
    }
}
