//! Segment files: their names, their header, and reading one back as records up to the first
//! byte that is not a whole, valid record.
//!
//! A retired segment file may be kept as a *spare* and later renamed to become a new segment,
//! written over from its first byte (recycling, as PostgreSQL does with its WAL): an
//! `fdatasync` that does not grow the file has no size to write, which on a journaled file
//! system spares a journal commit per batch. The records a recycled file still holds past the
//! new ones were checksummed with their old segment's number, so they never check as records
//! of the new one (`record.rs`).

use bytes::Bytes;

use super::record::{self, Record, Scan};

/// The first bytes of every segment: a magic and format version, then the segment's number.
/// Version 2 seeds each record's checksum with the segment's number.
const MAGIC: &[u8; 8] = b"IRISLOG2";
/// The first format's magic: its records' checksums are unseeded (seed 0). Still read, never
/// written.
const MAGIC_V1: &[u8; 8] = b"IRISLOG1";
/// Length of the header.
pub(crate) const HEADER_BYTES: u64 = 16;

/// The file name of segment `n`: zero-padded so names sort as numbers.
pub(crate) fn name(n: u64) -> String {
    format!("{n:020}.log")
}

/// The file name of the spare made of retired segment `n`.
pub(crate) fn spare_name(n: u64) -> String {
    format!("{n:020}.spare")
}

/// The number of a segment file name, or `None` for any other file.
pub(crate) fn number(name: &str) -> Option<u64> {
    digits(name.strip_suffix(".log")?)
}

/// The number of a spare's file name, or `None` for any other file.
pub(crate) fn spare_number(name: &str) -> Option<u64> {
    digits(name.strip_suffix(".spare")?)
}

fn digits(digits: &str) -> Option<u64> {
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

/// The header of segment `n`.
pub(crate) fn header(n: u64) -> [u8; HEADER_BYTES as usize] {
    let mut h = [0; HEADER_BYTES as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&n.to_le_bytes());
    h
}

/// What a segment file holds.
pub(crate) struct Scanned {
    /// Its records, in order.
    pub records: Vec<Record>,
    /// Bytes of header and whole records: where the next record goes.
    pub valid_len: u64,
    /// Why reading stopped before the end of the file, if it did.
    pub damage: Option<&'static str>,
    /// The checksum seed its records use (0 for the first format): records appended to it
    /// must use the same.
    pub seed: u64,
}

/// The checksum seed of segment `n`'s records, from its header; `None` for a missing or wrong
/// header (another segment's, as a recycled file has until its new header is written).
fn seed(n: u64, whole: &[u8]) -> Option<u64> {
    let h = whole.get(..HEADER_BYTES as usize)?;
    if h[8..] != n.to_le_bytes() {
        return None;
    }
    match &h[..8] {
        m if m == MAGIC => Some(n),
        m if m == MAGIC_V1 => Some(0),
        _ => None,
    }
}

/// Reads segment `n` from its bytes. A missing or wrong header is damage at byte 0.
pub(crate) fn scan(n: u64, bytes: Vec<u8>) -> Scanned {
    let whole = Bytes::from(bytes);
    let Some(seed) = seed(n, &whole) else {
        let damage = (!whole.is_empty()).then_some("missing or wrong segment header").or(Some("empty segment"));
        return Scanned { records: Vec::new(), valid_len: 0, damage, seed: n };
    };
    let mut at = HEADER_BYTES as usize;
    let mut records = Vec::new();
    loop {
        match record::decode(&whole, at, seed) {
            Scan::Record(r, n) => {
                records.push(r);
                at += n;
            }
            Scan::End => return Scanned { records, valid_len: at as u64, damage: None, seed },
            Scan::Bad(why) => return Scanned { records, valid_len: at as u64, damage: Some(why), seed },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_as_numbers_and_parse_back() {
        // Proves the naming scheme round-trips and ignores foreign files.
        assert_eq!(number(&name(42)), Some(42));
        assert!(name(9) < name(10));
        assert_eq!(number("00000000000000000042.tmp"), None);
        assert_eq!(number("42.log"), None);
        assert_eq!(spare_number(&spare_name(42)), Some(42));
        assert_eq!(number(&spare_name(42)), None);
        assert_eq!(spare_number(&name(42)), None);
    }

    #[test]
    fn a_segment_of_the_first_format_still_reads() {
        // Proves an upgrade keeps a data directory's live segments: a segment whose header says
        // version 1 is read with unseeded checksums, and another segment's header is refused.
        let ack = Record::Ack { device: crate::DeviceAddr::new(1, 1), up_to: 3 };
        let mut bytes = MAGIC_V1.to_vec();
        bytes.extend_from_slice(&7u64.to_le_bytes());
        record::encode(&ack, 0, &mut bytes);
        let scanned = scan(7, bytes.clone());
        assert_eq!((scanned.records, scanned.damage, scanned.seed), (vec![ack.clone()], None, 0));
        assert_eq!(scan(8, bytes).damage, Some("missing or wrong segment header"));
        let mut v2 = header(7).to_vec();
        record::encode(&ack, 0, &mut v2);
        assert_eq!(scan(7, v2).damage, Some("record checksum mismatch"));
    }
}
