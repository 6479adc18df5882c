//! The dedup records of the log's live segments, one map per segment: a retry is checked here
//! first (newest segment first), then in the cold store, where the checkpoint moves the maps of
//! retired segments. Rebuilt at recovery by replaying the live segments.

use std::collections::{HashMap, VecDeque};

use crate::DedupKey;

type Map = HashMap<DedupKey, (u64, u64), foldhash::fast::RandomState>;

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
                None => Map::with_capacity_and_hasher(
                    self.segments.back().map_or(0, |(_, m)| m.len()),
                    foldhash::fast::RandomState::default(),
                ),
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
            m.retain(|_, &mut (_, ts)| ts >= older_than_ms);
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
        self.segments.iter().any(|(_, m)| m.keys().any(|k| k.sender == sender))
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.segments.iter().map(|(_, m)| m.len()).sum()
    }
}
