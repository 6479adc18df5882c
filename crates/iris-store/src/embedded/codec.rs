//! Hand-written value encodings of the fjall engine: fixed-width big-endian integers and
//! u32-length-prefixed strings. Account, device and token records start with a version byte so
//! they can grow; hot records (inbox, cursor, dedup) are fixed layouts. Any decoding failure is
//! [`StoreError::Corrupt`].

use bytes::Bytes;

use super::keys;
use crate::{Account, Device, DeviceAddr, DeviceId, InboxCursor, RefreshTokenRecord, StoreError, StoreResult};

/// Version byte of the account, device and token record layouts below.
pub(super) const RECORD_V1: u8 = 1;
/// Length of the append-time prefix of an inbox value.
const INBOX_TIME_LEN: usize = 8;

/// An account plus the engine's bookkeeping for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AccountRecord {
    /// The account as the traits expose it.
    pub account: Account,
    /// Id of the next device to link; only grows, so device ids are never reused.
    pub next_device_id: DeviceId,
}

/// Appends fields to a value being encoded.
pub(super) struct Writer(pub(super) Vec<u8>);

impl Writer {
    pub(super) fn new(version: u8) -> Self {
        Self(vec![version])
    }

    pub(super) fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }

    pub(super) fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(super) fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(super) fn str(self, s: &str) -> Self {
        let len = u32::try_from(s.len()).expect("strings in records are far below 4 GiB");
        let mut w = self.u32(len);
        w.0.extend_from_slice(s.as_bytes());
        w
    }
}

/// Reads fields of a value being decoded, naming the record in errors.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Starts reading a versioned record.
    pub(super) fn versioned(buf: &'a [u8], what: &'static str) -> StoreResult<Self> {
        let mut r = Self { buf, what };
        match r.u8()? {
            RECORD_V1 => Ok(r),
            v => Err(StoreError::Corrupt(format!("{what}: unknown record version {v}"))),
        }
    }

    pub(super) fn take(&mut self, n: usize) -> StoreResult<&'a [u8]> {
        if self.buf.len() < n {
            return Err(StoreError::Corrupt(format!("{}: truncated", self.what)));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(super) fn u8(&mut self) -> StoreResult<u8> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u32(&mut self) -> StoreResult<u32> {
        Ok(u32::from_be_bytes(keys::array(self.take(4)?)?))
    }

    pub(super) fn u64(&mut self) -> StoreResult<u64> {
        Ok(u64::from_be_bytes(keys::array(self.take(8)?)?))
    }

    pub(super) fn bool(&mut self) -> StoreResult<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(StoreError::Corrupt(format!("{}: bad flag {v}", self.what))),
        }
    }

    pub(super) fn str(&mut self) -> StoreResult<String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| StoreError::Corrupt(format!("{}: invalid UTF-8", self.what)))
    }

    /// Fails if bytes are left over: a layout mismatch, not something to ignore.
    pub(super) fn end(self) -> StoreResult<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!("{}: {} trailing bytes", self.what, self.buf.len())))
        }
    }
}

/// Value of the accounts keyspace.
pub(super) fn encode_account(rec: &AccountRecord) -> Vec<u8> {
    Writer::new(RECORD_V1).str(&rec.account.phone).u64(rec.account.created_at_ms).u32(rec.next_device_id).0
}

/// Inverse of [`encode_account`]; the id comes from the key.
pub(super) fn decode_account(id: u64, value: &[u8]) -> StoreResult<AccountRecord> {
    let mut r = Reader::versioned(value, "account")?;
    let phone = r.str()?;
    let created_at_ms = r.u64()?;
    let next_device_id = r.u32()?;
    r.end()?;
    Ok(AccountRecord { account: Account { id, phone, created_at_ms }, next_device_id })
}

/// Value of the devices keyspace.
pub(super) fn encode_device(d: &Device) -> Vec<u8> {
    Writer::new(RECORD_V1)
        .str(&d.name)
        .u8(u8::from(d.primary))
        .u64(d.created_at_ms)
        .u8(u8::from(d.revoked_at_ms.is_some()))
        .u64(d.revoked_at_ms.unwrap_or(0))
        .0
}

/// Inverse of [`encode_device`]; the address comes from the key.
pub(super) fn decode_device(addr: DeviceAddr, value: &[u8]) -> StoreResult<Device> {
    let mut r = Reader::versioned(value, "device")?;
    let name = r.str()?;
    let primary = r.bool()?;
    let created_at_ms = r.u64()?;
    let revoked = r.bool()?;
    let revoked_at = r.u64()?;
    r.end()?;
    let revoked_at_ms = revoked.then_some(revoked_at);
    Ok(Device { addr, name, primary, created_at_ms, revoked_at_ms })
}

/// Value of the refresh-tokens keyspace.
pub(super) fn encode_token(t: &RefreshTokenRecord) -> Vec<u8> {
    Writer::new(RECORD_V1).u64(t.device.account).u32(t.device.device).u64(t.expires_at_ms).0
}

/// Inverse of [`encode_token`]; the hash comes from the key.
pub(super) fn decode_token(hash: [u8; 32], value: &[u8]) -> StoreResult<RefreshTokenRecord> {
    let mut r = Reader::versioned(value, "refresh token")?;
    let device = DeviceAddr::new(r.u64()?, r.u32()?);
    let expires_at_ms = r.u64()?;
    r.end()?;
    Ok(RefreshTokenRecord { hash, device, expires_at_ms })
}

/// Value of a revocation mark (`device_revocations`): when, and who announces it
/// (`u32::MAX`: nobody).
pub(super) fn encode_revocation_mark(revoked_at_ms: u64, announce_by: Option<DeviceId>) -> Vec<u8> {
    Writer::new(RECORD_V1).u64(revoked_at_ms).u32(announce_by.unwrap_or(u32::MAX)).0
}

/// Inverse of [`encode_revocation_mark`].
pub(super) fn decode_revocation_mark(value: &[u8]) -> StoreResult<(u64, Option<DeviceId>)> {
    let mut r = Reader::versioned(value, "revocation mark")?;
    let (at, by) = (r.u64()?, r.u32()?);
    r.end()?;
    Ok((at, (by != u32::MAX).then_some(by)))
}

/// Value of the cursors keyspace before the inbox log: acked ‖ last (`cold.rs` reads it).
#[cfg(test)]
pub(super) fn encode_cursor(c: InboxCursor) -> [u8; 16] {
    pair(c.acked, c.last)
}

/// Inverse of `encode_cursor`.
pub(super) fn decode_cursor(value: &[u8]) -> StoreResult<InboxCursor> {
    let (acked, last) = unpair(value, "cursor")?;
    Ok(InboxCursor { acked, last })
}

/// Value of the dedup keyspace: server_msg_id ‖ server_ts_ms.
pub(super) fn encode_dedup(server_msg_id: u64, server_ts_ms: u64) -> [u8; 16] {
    pair(server_msg_id, server_ts_ms)
}

/// Inverse of [`encode_dedup`].
pub(super) fn decode_dedup(value: &[u8]) -> StoreResult<(u64, u64)> {
    unpair(value, "dedup")
}

/// Flag in the append-time word of an inbox value: an expiry word follows. Times are far below
/// 2^63 ms, so values written before disappearing messages never have it.
const INBOX_EXPIRES_FLAG: u64 = 1 << 63;

/// Value of the inbox keyspace: append time (for expiry) ‖ the item bytes; with a
/// disappearing-messages expiry: (append time | flag) ‖ expiry ‖ the item bytes.
pub(super) fn encode_inbox(appended_at_ms: u64, expires_at_ms: Option<u64>, item: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 * INBOX_TIME_LEN + item.len());
    match expires_at_ms {
        None => out.extend_from_slice(&appended_at_ms.to_be_bytes()),
        Some(at) => {
            out.extend_from_slice(&(appended_at_ms | INBOX_EXPIRES_FLAG).to_be_bytes());
            out.extend_from_slice(&at.to_be_bytes());
        }
    }
    out.extend_from_slice(item);
    out
}

/// The first word of an inbox value.
fn inbox_word(value: &[u8], at: usize) -> StoreResult<u64> {
    let word =
        value.get(at..at + INBOX_TIME_LEN).ok_or_else(|| StoreError::Corrupt("inbox value: truncated".into()))?;
    Ok(u64::from_be_bytes(keys::array(word)?))
}

/// The append time of an inbox value.
pub(super) fn inbox_time(value: &[u8]) -> StoreResult<u64> {
    Ok(inbox_word(value, 0)? & !INBOX_EXPIRES_FLAG)
}

/// The disappearing-messages expiry of an inbox value, if it has one.
pub(super) fn inbox_expiry(value: &[u8]) -> StoreResult<Option<u64>> {
    if inbox_word(value, 0)? & INBOX_EXPIRES_FLAG == 0 {
        return Ok(None);
    }
    inbox_word(value, INBOX_TIME_LEN).map(Some)
}

/// The item bytes of an inbox value.
pub(super) fn inbox_item(value: &[u8]) -> StoreResult<Bytes> {
    let at = if inbox_expiry(value)?.is_some() { 2 * INBOX_TIME_LEN } else { INBOX_TIME_LEN };
    let item = value.get(at..).ok_or_else(|| StoreError::Corrupt("inbox value: truncated".into()))?;
    Ok(Bytes::copy_from_slice(item))
}

fn pair(a: u64, b: u64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&a.to_be_bytes());
    out[8..].copy_from_slice(&b.to_be_bytes());
    out
}

fn unpair(value: &[u8], what: &'static str) -> StoreResult<(u64, u64)> {
    let mut r = Reader { buf: value, what };
    let pair = (r.u64()?, r.u64()?);
    r.end()?;
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        // Proves every record decodes to what was encoded.
        let account = AccountRecord {
            account: Account { id: 7, phone: "+15551234567".into(), created_at_ms: 42 },
            next_device_id: 3,
        };
        assert_eq!(decode_account(7, &encode_account(&account)).unwrap(), account);
        let device = Device {
            addr: DeviceAddr::new(7, 2),
            name: "laptop".into(),
            primary: false,
            created_at_ms: 5,
            revoked_at_ms: Some(9),
        };
        assert_eq!(decode_device(device.addr, &encode_device(&device)).unwrap(), device);
        let token = RefreshTokenRecord { hash: [3; 32], device: device.addr, expires_at_ms: 77 };
        assert_eq!(decode_token([3; 32], &encode_token(&token)).unwrap(), token);
        let cursor = InboxCursor { acked: 4, last: 10 };
        assert_eq!(decode_cursor(&encode_cursor(cursor)).unwrap(), cursor);
        assert_eq!(decode_dedup(&encode_dedup(1, 2)).unwrap(), (1, 2));
        let inbox = encode_inbox(99, None, b"item");
        assert_eq!((inbox_time(&inbox).unwrap(), inbox_item(&inbox).unwrap()), (99, Bytes::from("item")));
        assert_eq!(inbox_expiry(&inbox).unwrap(), None);
        let expiring = encode_inbox(99, Some(500), b"item");
        assert_eq!(inbox_time(&expiring).unwrap(), 99);
        assert_eq!(inbox_expiry(&expiring).unwrap(), Some(500));
        assert_eq!(inbox_item(&expiring).unwrap(), Bytes::from("item"));
    }

    #[test]
    fn damaged_records_are_corrupt() {
        // Proves truncation, trailing bytes and unknown versions are errors, not garbage.
        let device = Device {
            addr: DeviceAddr::new(1, 1),
            name: "phone".into(),
            primary: true,
            created_at_ms: 1,
            revoked_at_ms: None,
        };
        let bytes = encode_device(&device);
        let corrupt = |r: StoreResult<Device>| matches!(r, Err(StoreError::Corrupt(_)));
        assert!(corrupt(decode_device(device.addr, &bytes[..bytes.len() - 1])));
        assert!(corrupt(decode_device(device.addr, &[bytes.as_slice(), &[0]].concat())));
        assert!(corrupt(decode_device(device.addr, &[&[9u8][..], &bytes[1..]].concat())));
        assert!(matches!(decode_cursor(&[0; 15]), Err(StoreError::Corrupt(_))));
        assert!(matches!(inbox_time(&[0; 7]), Err(StoreError::Corrupt(_))));
    }
}
