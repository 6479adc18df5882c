//! The dedup records of the log's live segments, one map per segment: a retry is checked here
//! first (newest segment first), then in the cold store, where the checkpoint moves the maps of
//! retired segments. Rebuilt at recovery by replaying the live segments.
//!
//! Each segment's map is split into [`SHARDS`] tables by a hash of the key. A hash table grows
//! by rehashing into a table twice its size. For one table per segment, the last doublings copied
//! tens of MB into fresh memory on the committer's thread. Faulting that memory in (huge pages,
//! zeroed by the kernel) stopped every commit for 100–350 ms on the benchmark host (BENCHMARKS.md,
//! "Huge pages off, dedup maps in shards"). Shards grow one at a time, each 1/64 of that work, and a
//! lookup still probes one table.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher as _;

use crate::DedupKey;

/// Tables per segment map.
const SHARDS: usize = 64;

type Table = HashMap<DedupKey, (u64, u64), foldhash::fast::RandomState>;

/// One segment's records, in [`SHARDS`] tables.
struct Map {
    shards: Vec<Table>,
}

impl Map {
    /// A map for about `n` records.
    fn with_capacity(n: usize) -> Self {
        let each = n.div_ceil(SHARDS);
        let shards = (0..SHARDS)
            .map(|_| Table::with_capacity_and_hasher(each, foldhash::fast::RandomState::default()))
            .collect();
        Self { shards }
    }

    /// The table of `key`. The shard is picked by a fixed hash of its own, independent of the
    /// tables' (seeded) hashers, so a table's buckets stay evenly used.
    fn shard(&self, key: &DedupKey) -> usize {
        const SEED: u64 = 0x9e37_79b9_7f4a_7c15;
        foldhash::fast::FixedState::with_seed(SEED).hash_one(key) as usize % SHARDS
    }

    fn get(&self, key: &DedupKey) -> Option<&(u64, u64)> {
        self.shards[self.shard(key)].get(key)
    }

    fn insert(&mut self, key: DedupKey, value: (u64, u64)) {
        let i = self.shard(&key);
        self.shards[i].insert(key, value);
    }

    fn iter(&self) -> impl Iterator<Item = (&DedupKey, &(u64, u64))> {
        self.shards.iter().flatten()
    }

    fn retain(&mut self, mut keep: impl FnMut(&DedupKey, &(u64, u64)) -> bool) {
        for t in &mut self.shards {
            t.retain(|k, v| keep(k, v));
        }
    }

    fn len(&self) -> usize {
        self.shards.iter().map(Table::len).sum()
    }

    fn capacity(&self) -> usize {
        self.shards.iter().map(Table::capacity).sum()
    }

    fn clear(&mut self) {
        self.shards.iter_mut().for_each(Table::clear);
    }
}

/// (sender device, client message id) → (server msg id, server time), per live segment.
#[derive(Default)]
pub(crate) struct DedupWindow {
    segments: VecDeque<(u64, Map)>,
    /// The map of the last segment dropped, emptied, for the next segment: a new segment's map
    /// then starts at the size segments need instead of growing to it by rehashing (and
    /// faulting in fresh memory) on the committer's path, segment after segment.
    spare: Option<Map>,
}

impl DedupWindow {
    /// The original (id, time) of a retry, if a live segment recorded it.
    pub fn get(&self, key: &DedupKey) -> Option<(u64, u64)> {
        self.segments.iter().rev().find_map(|(_, m)| m.get(key).copied())
    }

    /// Records a send made in `segment` (segments only grow).
    pub fn insert(&mut self, segment: u64, key: DedupKey, value: (u64, u64)) {
        if self.segments.back().is_none_or(|(s, _)| *s < segment) {
            let map = match self.spare.take() {
                Some(map) => map,
                // No segment dropped yet: start at the size of the last one.
                None => Map::with_capacity(self.segments.back().map_or(0, |(_, m)| m.len())),
            };
            self.segments.push_back((segment, map));
        }
        let (_, map) = self.segments.back_mut().expect("pushed");
        map.insert(key, value);
    }

    /// Copies of the records of segments before `segment`, for the cold store.
    pub fn before(&self, segment: u64) -> Vec<(DedupKey, u64, u64)> {
        self.segments
            .iter()
            .take_while(|(s, _)| *s < segment)
            .flat_map(|(_, m)| m.iter().map(|(k, &(id, ts))| (k.clone(), id, ts)))
            .collect()
    }

    /// Forgets the segments before `segment` (their records are in the cold store now).
    pub fn drop_before(&mut self, segment: u64) {
        while self.segments.front().is_some_and(|(s, _)| *s < segment) {
            if let Some((_, mut map)) = self.segments.pop_front() {
                if map.capacity() > self.spare.as_ref().map_or(0, |m| m.capacity()) {
                    map.clear();
                    self.spare = Some(map);
                }
            }
        }
    }

    /// Forgets records of sends made before `older_than_ms`; returns how many.
    pub fn expire(&mut self, older_than_ms: u64) -> u64 {
        let mut removed = 0;
        for (_, m) in &mut self.segments {
            let before = m.len();
            m.retain(|_, &(_, ts)| ts >= older_than_ms);
            removed += (before - m.len()) as u64;
        }
        removed
    }

    /// Forgets every record of sends by `sender` (its account was deleted).
    pub fn forget_sender(&mut self, sender: crate::DeviceAddr) {
        for (_, m) in &mut self.segments {
            m.retain(|k, _| k.sender != sender);
        }
    }

    /// Whether a record of a send by `sender` is held (audits, tests).
    pub fn has_sender(&self, sender: crate::DeviceAddr) -> bool {
        self.segments.iter().any(|(_, m)| m.iter().any(|(k, _)| k.sender == sender))
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.segments.iter().map(|(_, m)| m.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceAddr;

    fn key(sender: u64, n: u64) -> DedupKey {
        DedupKey { sender: DeviceAddr { account: sender, device: 1 }, client_msg_id: format!("c{n}") }
    }

    #[test]
    fn records_spread_over_shards_answer_like_one_map() {
        let mut w = DedupWindow::default();
        for n in 0..10_000 {
            w.insert(1 + n / 5_000, key(n % 7, n), (n, 100 + n));
        }
        assert_eq!(w.len(), 10_000);
        let used = w.segments[0].1.shards.iter().filter(|t| !t.is_empty()).count();
        assert!(used > SHARDS / 2, "keys reach most shards ({used})");
        for n in (0..10_000).step_by(97) {
            assert_eq!(w.get(&key(n % 7, n)), Some((n, 100 + n)));
        }
        assert_eq!(w.get(&key(0, 10_001)), None);
        assert_eq!(w.before(2).len(), 5_000, "segment 1's records go to the cold store");

        assert_eq!(w.expire(100 + 2_000), 2_000);
        assert_eq!(w.get(&key(1, 1)), None);
        assert!(w.has_sender(DeviceAddr { account: 3, device: 1 }));
        w.forget_sender(DeviceAddr { account: 3, device: 1 });
        assert!(!w.has_sender(DeviceAddr { account: 3, device: 1 }));

        w.drop_before(2);
        assert!(w.spare.as_ref().is_some_and(|m| m.len() == 0 && m.capacity() > 0), "the map is kept, emptied");
        w.insert(3, key(1, 20_000), (1, 1));
        assert!(w.spare.is_none(), "and reused by the next segment");
        assert_eq!(w.get(&key(1, 20_000)), Some((1, 1)));
    }
}
