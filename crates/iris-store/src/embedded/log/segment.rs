//! Segment files: their names, their header, and reading one back as records up to the first
//! byte that is not a whole, valid record.

use bytes::Bytes;

use super::record::{self, Record, Scan};

/// The first bytes of every segment: a magic and format version, then the segment's number.
const MAGIC: &[u8; 8] = b"IRISLOG1";
/// Length of the header.
pub(crate) const HEADER_BYTES: u64 = 16;

/// The file name of segment `n`: zero-padded so names sort as numbers.
pub(crate) fn name(n: u64) -> String {
    format!("{n:020}.log")
}

/// The number of a segment file name, or `None` for any other file.
pub(crate) fn number(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
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
}

/// Reads segment `n` from its bytes. A missing or wrong header is damage at byte 0.
pub(crate) fn scan(n: u64, bytes: Vec<u8>) -> Scanned {
    let whole = Bytes::from(bytes);
    if whole.len() < HEADER_BYTES as usize || whole[..HEADER_BYTES as usize] != header(n) {
        let damage = (!whole.is_empty()).then_some("missing or wrong segment header").or(Some("empty segment"));
        return Scanned { records: Vec::new(), valid_len: 0, damage };
    }
    let mut at = HEADER_BYTES as usize;
    let mut records = Vec::new();
    loop {
        match record::decode(&whole, at) {
            Scan::Record(r, n) => {
                records.push(r);
                at += n;
            }
            Scan::End => return Scanned { records, valid_len: at as u64, damage: None },
            Scan::Bad(why) => return Scanned { records, valid_len: at as u64, damage: Some(why) },
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
    }
}
