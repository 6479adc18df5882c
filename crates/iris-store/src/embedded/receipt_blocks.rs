//! Group receipt rows gathered into one record per message as they settle.
//!
//! Each member's first ack of a group message changes its receipt row (`groups.rs`): a
//! 1024-member group makes 1024 row records per message. Written one by one into fjall, each
//! is a memtable insert at the settle and a record for the flush and the compactions to carry;
//! in the fanout bench those took half of the server's CPU. So a settle writes the rows it
//! holds of one message as one **block** (key `msg ‖ group ‖ BLOCK`, value the rows, 24 bytes
//! each, in account order), merged into the block already on disk. When a settle holds only a
//! few rows of a message whose block is large (members reading it later, one by one), it
//! writes those as rows instead, so a block is not rewritten whole for each of them.
//!
//! A row only moves forward: each of its times goes from 0 to when it happened, once. So two
//! records of one account merge by keeping each time that is set (the earlier, should both be),
//! in any order: a block, a row beside it, a row replayed from the log after a crash, a staged
//! change. Readers merge every record of a message the same way. Only erasure takes a row out
//! of a block; it rewrites the block through the log while no settle runs
//! (`Groups::erase_receipts`).

use std::collections::BTreeMap;

use fjall::{Database, Keyspace, PersistMode};

use super::staged::Values;
use super::{keys, unavailable};
use crate::{AccountId, GroupReceiptRow, StoreError, StoreResult};

/// The receipt record holding a message's counters (no account has id 0).
pub(super) const COUNTERS: AccountId = 0;
/// The receipt record holding a message's recipients, sorted account ids (no account has this id).
pub(super) const RECIPIENTS: AccountId = AccountId::MAX;
/// The receipt record holding a message's block of rows (no account has this id).
pub(super) const BLOCK: AccountId = AccountId::MAX - 1;
/// Bytes of one row in a block: account ‖ delivered ‖ read.
const ROW_BYTES: usize = 24;
/// A settle folds its rows of a message into the block when they are at least this fraction
/// (1/n) of the block's rows; fewer are written as rows. Bounds the bytes rewritten per row
/// to ~n rows' worth.
const FOLD_FRACTION: usize = 16;

/// The key of `message`'s block, `message` being a receipt key's first 16 bytes (msg ‖ group).
pub(super) fn block_key(message: &[u8; 16]) -> [u8; 24] {
    let mut key = [0; 24];
    key[..16].copy_from_slice(message);
    key[16..].copy_from_slice(&BLOCK.to_be_bytes());
    key
}

/// A block's value: the rows, in account order.
pub(super) fn encode(rows: &[GroupReceiptRow]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * ROW_BYTES);
    for r in rows {
        out.extend_from_slice(&r.account.to_be_bytes());
        out.extend_from_slice(&r.delivered_at_ms.to_be_bytes());
        out.extend_from_slice(&r.read_at_ms.to_be_bytes());
    }
    out
}

/// The rows of a block's value.
pub(super) fn decode(v: &[u8]) -> StoreResult<Vec<GroupReceiptRow>> {
    if !v.len().is_multiple_of(ROW_BYTES) {
        return Err(StoreError::Corrupt(format!("group receipt block of {} bytes", v.len())));
    }
    v.chunks_exact(ROW_BYTES)
        .map(|c| {
            let word = |i: usize| keys::array(&c[i * 8..i * 8 + 8]).map(u64::from_be_bytes);
            Ok(GroupReceiptRow { account: word(0)?, delivered_at_ms: word(1)?, read_at_ms: word(2)? })
        })
        .collect()
}

/// `account`'s row in a block's value, if it has one (a linear search: a block is written in
/// account order but never trusted to be, and a mark looks up one row only when it keeps a
/// time the row already has).
pub(super) fn find(v: &[u8], account: AccountId) -> StoreResult<Option<GroupReceiptRow>> {
    if !v.len().is_multiple_of(ROW_BYTES) {
        return Err(StoreError::Corrupt(format!("group receipt block of {} bytes", v.len())));
    }
    let wanted = account.to_be_bytes();
    let Some(c) = v.chunks_exact(ROW_BYTES).find(|c| c[..8] == wanted) else { return Ok(None) };
    let word = |i: usize| keys::array(&c[i * 8..i * 8 + 8]).map(u64::from_be_bytes);
    Ok(Some(GroupReceiptRow { account, delivered_at_ms: word(1)?, read_at_ms: word(2)? }))
}

/// One time of two records of the same row: the one that is set (the earlier if both are).
fn merged_time(a: u64, b: u64) -> u64 {
    match (a, b) {
        (0, t) | (t, 0) => t,
        (a, b) => a.min(b),
    }
}

/// Merges `row`, another record of the same account, into `into`: every time either has.
pub(super) fn merge_row(into: &mut GroupReceiptRow, row: GroupReceiptRow) {
    into.delivered_at_ms = merged_time(into.delivered_at_ms, row.delivered_at_ms);
    into.read_at_ms = merged_time(into.read_at_ms, row.read_at_ms);
}

/// Merges `row` into `rows` (keyed by account), keeping every time either record has.
pub(super) fn merge_into(rows: &mut BTreeMap<AccountId, GroupReceiptRow>, row: GroupReceiptRow) {
    rows.entry(row.account).and_modify(|r| merge_row(r, row)).or_insert(row);
}

/// A recipient's row record as stored alone (not in a block): delivered ‖ read, ms, big-endian.
pub(super) fn row_value(delivered_at_ms: u64, read_at_ms: u64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&delivered_at_ms.to_be_bytes());
    out[8..].copy_from_slice(&read_at_ms.to_be_bytes());
    out
}

/// Inverse of [`row_value`]: (delivered, read).
pub(super) fn parse_row_value(v: &[u8]) -> StoreResult<(u64, u64)> {
    if v.len() != 16 {
        return Err(StoreError::Corrupt(format!("group receipt row of {} bytes", v.len())));
    }
    Ok((u64::from_be_bytes(keys::array(&v[..8])?), u64::from_be_bytes(keys::array(&v[8..])?)))
}

/// A staged record that is a recipient's row: its message (msg ‖ group) and the row.
fn row_of(key: &[u8], value: &[u8]) -> StoreResult<Option<([u8; 16], GroupReceiptRow)>> {
    let (Some(message), Some(account)) = (key.get(..16), key.get(16..)) else { return Ok(None) };
    let account = u64::from_be_bytes(keys::array(account)?);
    if account == COUNTERS || account == RECIPIENTS || account == BLOCK {
        return Ok(None);
    }
    let (delivered_at_ms, read_at_ms) = parse_row_value(value)?;
    Ok(Some((keys::array(message)?, GroupReceiptRow { account, delivered_at_ms, read_at_ms })))
}

/// The settle of the receipts keyspace (see the module doc): rows folded into their message's
/// block, or written as rows when few; the counters and recipient lists as they are. One
/// unsynced batch, like every settle (the log holds the values until a checkpoint persists).
pub(super) fn settle(db: &Database, ks: &Keyspace, values: &Values) -> StoreResult<()> {
    let mut batch = db.batch();
    let mut rows: Vec<([u8; 16], GroupReceiptRow)> = Vec::with_capacity(values.len());
    for (key, value) in values {
        match row_of(key, value)? {
            Some(row) => rows.push(row),
            None => batch.insert(ks, &key[..], &value[..]),
        }
    }
    // One sort puts each message's rows together in account order, the block's order, so a
    // fold is one linear merge (the values come from a hash map, in no order).
    rows.sort_unstable_by_key(|(message, row)| (*message, row.account));
    for run in rows.chunk_by(|a, b| a.0 == b.0) {
        let key = block_key(&run[0].0);
        let new = run.iter().map(|(_, row)| *row);
        let block = ks.get(key).map_err(unavailable)?;
        let old_rows = block.as_ref().map_or(0, |b| b.len() / ROW_BYTES);
        if run.len() * FOLD_FRACTION < old_rows {
            for row in new {
                let mut row_key = key;
                row_key[16..].copy_from_slice(&row.account.to_be_bytes());
                batch.insert(ks, row_key, row_value(row.delivered_at_ms, row.read_at_ms));
            }
            continue;
        }
        let mut old = block.as_deref().map(decode).transpose()?.unwrap_or_default();
        if !old.is_sorted_by_key(|r| r.account) {
            old.sort_by_key(|r| r.account); // written sorted; never trusted to be
        }
        batch.insert(ks, key, encode(&merge_sorted(old, new)));
    }
    batch.durability(Some(PersistMode::Buffer)).commit().map_err(unavailable)
}

/// Merges two lists of rows, each in account order, into one in account order with one row
/// per account (two records of an account merged as [`merge_into`] does).
fn merge_sorted(a: Vec<GroupReceiptRow>, b: impl Iterator<Item = GroupReceiptRow>) -> Vec<GroupReceiptRow> {
    let mut out: Vec<GroupReceiptRow> = Vec::with_capacity(a.len() + b.size_hint().0);
    let (mut a, mut b) = (a.into_iter().peekable(), b.peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.account <= y.account => a.next(),
            (Some(_), None) => a.next(),
            (_, Some(_)) => b.next(),
            (None, None) => None,
        };
        let Some(row) = next else { return out };
        match out.last_mut() {
            Some(last) if last.account == row.account => merge_row(last, row),
            _ => out.push(row),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(account: u64, delivered_at_ms: u64, read_at_ms: u64) -> GroupReceiptRow {
        GroupReceiptRow { account, delivered_at_ms, read_at_ms }
    }

    #[test]
    fn blocks_round_trip_and_a_torn_one_is_corrupt() {
        let rows = vec![row(2, 5, 0), row(9, 6, 7)];
        assert_eq!(decode(&encode(&rows)).unwrap(), rows);
        assert!(decode(&encode(&rows)[..30]).is_err());
    }

    #[test]
    fn a_sorted_merge_keeps_one_row_per_account_in_order_as_the_map_merge_does() {
        // Proves the settle's linear merge agrees with `merge_into` on blocks and staged rows
        // that share accounts, including a repeat within one side.
        let block = vec![row(1, 5, 0), row(4, 6, 0), row(9, 7, 8)];
        let staged = vec![row(0, 3, 0), row(4, 0, 0), row(4, 6, 11), row(9, 9, 0), row(12, 1, 0)];
        let merged = merge_sorted(block.clone(), staged.iter().copied());
        let mut by_map = BTreeMap::new();
        block.iter().chain(&staged).for_each(|r| merge_into(&mut by_map, *r));
        assert_eq!(merged, by_map.into_values().collect::<Vec<_>>());
        assert_eq!(merged[2], row(4, 6, 11));
        assert_eq!(merge_sorted(Vec::new(), staged[..1].iter().copied()), vec![row(0, 3, 0)]);
    }

    #[test]
    fn two_records_of_a_row_merge_to_every_time_set_in_any_order() {
        // Proves the merge readers and settles rely on: order does not matter, a set time is
        // never lost to an unset one, and merging a record twice changes nothing.
        let records = [row(3, 5, 0), row(3, 0, 0), row(3, 6, 9), row(3, 5, 0)];
        let mut forward = BTreeMap::new();
        records.iter().for_each(|r| merge_into(&mut forward, *r));
        let mut backward = BTreeMap::new();
        records.iter().rev().for_each(|r| merge_into(&mut backward, *r));
        assert_eq!(forward, backward);
        assert_eq!(forward[&3], row(3, 5, 9));
    }
}
