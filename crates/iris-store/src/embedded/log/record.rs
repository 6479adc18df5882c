//! The records of the inbox log and their bytes: what one group-committed batch writes.
//!
//! A record on disk is `len: u32 LE | checksum: u64 LE | body` where the checksum is xxh3-64 of
//! `len` and `body` together, so a torn length is caught as surely as a torn body. The checksum
//! is seeded with the number of the segment the record is written in (`segment.rs`), so the old
//! records a recycled segment file still holds past the new ones never check. The body
//! starts with a kind byte. Knows nothing of files, threads or the store's state: it turns
//! records into bytes and bytes back into records, and refuses anything that does not check.

use bytes::Bytes;

use crate::{DedupKey, DeviceAddr};

/// Bytes before a record's body: length and checksum.
pub(crate) const FRAME_BYTES: usize = 4 + 8;
/// Largest body a record may have: a batch of 1024 group targets with 64 KiB payloads fits many
/// times over; anything larger in a length field is a torn or corrupt tail, not data.
pub(crate) const BODY_BYTES_MAX: usize = 64 << 20;

const KIND_APPEND: u8 = 1;
const KIND_ACK: u8 = 2;
const KIND_WRITES: u8 = 3;
const KIND_FORGET: u8 = 4;

/// A write to one of the engine's side keyspaces (message index, group records, payloads,
/// receipts), logged so that it is durable with the batch and re-applied at recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvWrite {
    /// Which keyspace (the engine's own numbering; the log does not interpret it).
    pub space: u8,
    /// The key.
    pub key: Vec<u8>,
    /// The new value, or `None` to delete the key.
    pub value: Option<Vec<u8>>,
}

/// One inbox entry an append record creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    /// The inbox.
    pub device: DeviceAddr,
    /// Its seq in that inbox.
    pub seq: u64,
    /// Index into the record's items.
    pub item: u32,
}

/// What the log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// One logical message (or receipt, or group event) stored in many inboxes: each distinct
    /// item once, each target with its seq. `writes` commit atomically with it (a group record).
    Append {
        /// Server time of the message; also the entries' age for expiry.
        ts_ms: u64,
        /// Server id of the message (answers a retry).
        msg_id: u64,
        /// The retry key, when the send is deduplicated.
        dedup: Option<DedupKey>,
        /// Distinct encoded items.
        items: Vec<Bytes>,
        /// Who gets which item under which seq.
        targets: Vec<Target>,
        /// Side writes made atomic with the append.
        writes: Vec<KvWrite>,
        /// A cumulative ack made atomic with it: an ack and the receipts it produces.
        ack: Option<(DeviceAddr, u64)>,
        /// When its entries disappear (disappearing messages). Encoded last and only when set,
        /// so records written before it existed read as `None`.
        expires_at_ms: Option<u64>,
    },
    /// A device acknowledged (or its inbox was purged) up to a seq.
    Ack {
        /// The inbox.
        device: DeviceAddr,
        /// Cumulative: everything up to and including this seq is gone.
        up_to: u64,
    },
    /// Side writes with no append of their own (index records, receipt rows).
    Writes(Vec<KvWrite>),
    /// A device is gone for good (its account was deleted): its cursor, entries and the dedup
    /// records of its sends are forgotten. Replayed after the records it follows, so a
    /// recovery forgets them again.
    Forget {
        /// The device.
        device: DeviceAddr,
    },
}

/// Appends `record`, framed and checksummed with `seed` (its segment's), to `out`.
pub(crate) fn encode(record: &Record, seed: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_BYTES]);
    match record {
        Record::Append { ts_ms, msg_id, dedup, items, targets, writes, ack, expires_at_ms } => {
            out.push(KIND_APPEND);
            put_u64(out, *ts_ms);
            put_u64(out, *msg_id);
            match dedup {
                None => out.push(0),
                Some(key) => {
                    out.push(1);
                    put_device(out, key.sender);
                    put_bytes(out, key.client_msg_id.as_bytes());
                }
            }
            put_u32(out, items.len() as u32);
            for item in items {
                put_bytes(out, item);
            }
            put_u32(out, targets.len() as u32);
            for t in targets {
                put_device(out, t.device);
                put_u64(out, t.seq);
                put_u32(out, t.item);
            }
            put_writes(out, writes);
            match ack {
                None => out.push(0),
                Some((device, up_to)) => {
                    out.push(1);
                    put_device(out, *device);
                    put_u64(out, *up_to);
                }
            }
            if let Some(at) = expires_at_ms {
                put_u64(out, *at);
            }
        }
        Record::Ack { device, up_to } => {
            out.push(KIND_ACK);
            put_device(out, *device);
            put_u64(out, *up_to);
        }
        Record::Writes(writes) => {
            out.push(KIND_WRITES);
            put_writes(out, writes);
        }
        Record::Forget { device } => {
            out.push(KIND_FORGET);
            put_device(out, *device);
        }
    }
    let body_len = out.len() - start - FRAME_BYTES;
    assert!(body_len <= BODY_BYTES_MAX, "log record of {body_len} bytes exceeds the limit");
    let len = (body_len as u32).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    // The checksum covers `len | body`. With `len` also written just before the body, into the
    // last bytes of the checksum's own slot (overwritten below), the two are one slice, hashed
    // in one call: the streaming hasher's set-up cost more than hashing a small record.
    out[start + FRAME_BYTES - 4..start + FRAME_BYTES].copy_from_slice(&len);
    let sum = xxhash_rust::xxh3::xxh3_64_with_seed(&out[start + FRAME_BYTES - 4..], seed);
    out[start + 4..start + FRAME_BYTES].copy_from_slice(&sum.to_le_bytes());
}

/// The checksum of a record: its length bytes and its body, seeded (seed 0 is plain xxh3-64,
/// which segments of the first format used for every record). The reader's form, over the two
/// slices as they lie; [`encode`] gets the same value in one call over a contiguous copy.
fn checksum(seed: u64, len: &[u8], body: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::with_seed(seed);
    h.update(len);
    h.update(body);
    h.digest()
}

/// What reading one record at a position found.
#[derive(Debug)]
pub(crate) enum Scan {
    /// A valid record and the number of bytes it took.
    Record(Record, usize),
    /// Nothing more: the buffer ends exactly here.
    End,
    /// The bytes here are not a whole, valid record: a torn or corrupt tail (or corruption).
    Bad(&'static str),
}

/// Reads the record at `whole[offset..]`, whose checksum must be seeded with `seed`. `items`
/// are sliced from `whole` without copying.
pub(crate) fn decode(whole: &Bytes, offset: usize, seed: u64) -> Scan {
    let buf = &whole[offset..];
    if buf.is_empty() {
        return Scan::End;
    }
    if buf.len() < FRAME_BYTES {
        return Scan::Bad("truncated record header");
    }
    let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if len == 0 || len > BODY_BYTES_MAX {
        return Scan::Bad("impossible record length");
    }
    if buf.len() < FRAME_BYTES + len {
        return Scan::Bad("truncated record body");
    }
    let sum = u64::from_le_bytes(buf[4..FRAME_BYTES].try_into().expect("8 bytes"));
    let body = &buf[FRAME_BYTES..FRAME_BYTES + len];
    if checksum(seed, &buf[..4], body) != sum {
        return Scan::Bad("record checksum mismatch");
    }
    let body_at = offset + FRAME_BYTES;
    match parse(whole, body_at, body_at + len) {
        Some(record) => Scan::Record(record, FRAME_BYTES + len),
        // The checksum held, so these bytes were written as they are: a bug, not a torn write.
        None => Scan::Bad("record does not parse"),
    }
}

/// Parses the body at `whole[from..to]`.
fn parse(whole: &Bytes, from: usize, to: usize) -> Option<Record> {
    let mut r = Reader { whole, at: from, end: to };
    let record = match r.u8()? {
        KIND_APPEND => {
            let ts_ms = r.u64()?;
            let msg_id = r.u64()?;
            let dedup = match r.u8()? {
                0 => None,
                1 => {
                    let sender = r.device()?;
                    let id = r.bytes()?;
                    Some(DedupKey { sender, client_msg_id: String::from_utf8(id.to_vec()).ok()? })
                }
                _ => return None,
            };
            let n_items = r.u32()? as usize;
            let mut items = Vec::with_capacity(n_items.min(1024));
            for _ in 0..n_items {
                items.push(r.bytes()?);
            }
            let n_targets = r.u32()? as usize;
            let mut targets = Vec::with_capacity(n_targets.min(4096));
            for _ in 0..n_targets {
                let device = r.device()?;
                let seq = r.u64()?;
                let item = r.u32()?;
                if item as usize >= items.len() {
                    return None;
                }
                targets.push(Target { device, seq, item });
            }
            let writes = r.writes()?;
            let ack = match r.u8()? {
                0 => None,
                1 => Some((r.device()?, r.u64()?)),
                _ => return None,
            };
            let expires_at_ms = if r.at < r.end { Some(r.u64()?) } else { None };
            Record::Append { ts_ms, msg_id, dedup, items, targets, writes, ack, expires_at_ms }
        }
        KIND_ACK => Record::Ack { device: r.device()?, up_to: r.u64()? },
        KIND_WRITES => Record::Writes(r.writes()?),
        KIND_FORGET => Record::Forget { device: r.device()? },
        _ => return None,
    };
    (r.at == r.end).then_some(record)
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_device(out: &mut Vec<u8>, d: DeviceAddr) {
    put_u64(out, d.account);
    put_u32(out, d.device);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

fn put_writes(out: &mut Vec<u8>, writes: &[KvWrite]) {
    put_u32(out, writes.len() as u32);
    for w in writes {
        out.push(w.space);
        put_bytes(out, &w.key);
        match &w.value {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                put_bytes(out, v);
            }
        }
    }
}

/// A cursor over one record's body.
struct Reader<'a> {
    whole: &'a Bytes,
    at: usize,
    end: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let to = self.at.checked_add(n).filter(|&to| to <= self.end)?;
        let out = &self.whole[self.at..to];
        self.at = to;
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn device(&mut self) -> Option<DeviceAddr> {
        Some(DeviceAddr::new(self.u64()?, self.u32()?))
    }

    /// A length-prefixed byte string, sliced from the buffer without a copy.
    fn bytes(&mut self) -> Option<Bytes> {
        let len = self.u32()? as usize;
        let from = self.at;
        self.take(len)?;
        Some(self.whole.slice(from..from + len))
    }

    fn writes(&mut self) -> Option<Vec<KvWrite>> {
        let n = self.u32()? as usize;
        let mut writes = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let space = self.u8()?;
            let key = self.bytes()?.to_vec();
            let value = match self.u8()? {
                0 => None,
                1 => Some(self.bytes()?.to_vec()),
                _ => return None,
            };
            writes.push(KvWrite { space, key, value });
        }
        Some(writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record::Append {
                ts_ms: 7,
                msg_id: 99,
                dedup: Some(DedupKey { sender: DeviceAddr::new(1, 2), client_msg_id: "c-1".into() }),
                items: vec![Bytes::from_static(b"hello"), Bytes::from_static(b"")],
                targets: vec![
                    Target { device: DeviceAddr::new(3, 1), seq: 10, item: 0 },
                    Target { device: DeviceAddr::new(1, 1), seq: 4, item: 1 },
                ],
                writes: vec![KvWrite { space: 4, key: b"k".to_vec(), value: Some(b"v".to_vec()) }],
                ack: Some((DeviceAddr::new(1, 1), 3)),
                expires_at_ms: None,
            },
            // A disappearing message: the expiry rides last, after the (absent) ack.
            Record::Append {
                ts_ms: 8,
                msg_id: 100,
                dedup: None,
                items: vec![Bytes::from_static(b"gone soon")],
                targets: vec![Target { device: DeviceAddr::new(3, 1), seq: 11, item: 0 }],
                writes: vec![],
                ack: None,
                expires_at_ms: Some(86_400_008),
            },
            Record::Ack { device: DeviceAddr::new(3, 1), up_to: 10 },
            Record::Writes(vec![KvWrite { space: 1, key: vec![1, 2], value: None }]),
        ]
    }

    const SEED: u64 = 42;

    fn decode_all(bytes: &Bytes) -> (Vec<Record>, Option<&'static str>) {
        decode_seeded(bytes, SEED)
    }

    fn decode_seeded(bytes: &Bytes, seed: u64) -> (Vec<Record>, Option<&'static str>) {
        let (mut at, mut out) = (0, Vec::new());
        loop {
            match decode(bytes, at, seed) {
                Scan::Record(r, n) => {
                    out.push(r);
                    at += n;
                }
                Scan::End => return (out, None),
                Scan::Bad(why) => return (out, Some(why)),
            }
        }
    }

    #[test]
    fn records_round_trip() {
        // Proves every kind decodes to what was encoded, back to back in one buffer.
        let mut buf = Vec::new();
        for r in sample() {
            encode(&r, SEED, &mut buf);
        }
        let (back, bad) = decode_all(&Bytes::from(buf));
        assert_eq!(back, sample());
        assert_eq!(bad, None);
    }

    #[test]
    fn records_of_every_size_check_as_written() {
        // Proves the writer's one-call checksum (over `len` copied next to the body) equals the
        // reader's streamed one over `len` and the body, through every length class of xxh3
        // (up to 16, 128 and 240 bytes, then long inputs), at seed 0 and a segment's seed.
        for seed in [0, SEED] {
            for size in (0..300).chain([511, 1024, 1025, 4096, 70_000]) {
                let record = Record::Append {
                    ts_ms: 1,
                    msg_id: size as u64,
                    dedup: None,
                    items: vec![Bytes::from(vec![size as u8; size])],
                    targets: vec![Target { device: DeviceAddr::new(1, 1), seq: 1, item: 0 }],
                    writes: vec![],
                    ack: None,
                    expires_at_ms: None,
                };
                let mut buf = Vec::new();
                encode(&record, seed, &mut buf);
                assert_eq!(decode_seeded(&Bytes::from(buf), seed), (vec![record], None), "size {size}");
            }
        }
        // The smallest body (a `Forget`: kind and device) is hashed whole too.
        let mut buf = Vec::new();
        encode(&Record::Forget { device: DeviceAddr::new(1, 1) }, SEED, &mut buf);
        assert_eq!(decode_seeded(&Bytes::from(buf), SEED).1, None);
    }

    #[test]
    fn a_record_checks_only_under_its_own_seed() {
        // Proves what makes a recycled segment safe: records written in an older segment (another
        // seed) are refused, not replayed, when read as part of a newer one; and seed 0 is plain
        // xxh3-64, so segments of the first format still read.
        let mut buf = Vec::new();
        for r in sample() {
            encode(&r, SEED, &mut buf);
        }
        let bytes = Bytes::from(buf);
        assert_eq!(decode_seeded(&bytes, SEED + 1), (vec![], Some("record checksum mismatch")));
        let mut first_format = Vec::new();
        encode(&sample()[2], 0, &mut first_format);
        let sum = xxhash_rust::xxh3::xxh3_64(&[&first_format[..4], &first_format[FRAME_BYTES..]].concat());
        assert_eq!(first_format[4..FRAME_BYTES], sum.to_le_bytes());
    }

    #[test]
    fn every_cut_and_every_flipped_byte_is_refused_not_read() {
        // Proves a torn tail at any byte, or any corrupted byte, never yields a wrong record:
        // decoding returns the intact prefix and then reports the damage.
        let mut buf = Vec::new();
        for r in sample() {
            encode(&r, SEED, &mut buf);
        }
        let mut boundaries = vec![0];
        let mut one = Vec::new();
        for r in sample() {
            encode(&r, SEED, &mut one);
            boundaries.push(one.len());
        }
        for cut in 0..buf.len() {
            let (back, bad) = decode_all(&Bytes::copy_from_slice(&buf[..cut]));
            assert_eq!(back[..], sample()[..back.len()], "cut at {cut}");
            assert_eq!(bad.is_none(), boundaries.contains(&cut), "cut at {cut}");
        }
        for i in 0..buf.len() {
            let mut bent = buf.clone();
            bent[i] ^= 0x5a;
            let (back, bad) = decode_all(&Bytes::from(bent));
            assert!(bad.is_some(), "flip at {i} went unnoticed");
            assert_eq!(back[..], sample()[..back.len()]);
        }
    }
}
