//! Server message ids: unique across nodes, roughly time-ordered, no coordination.
//!
//! Layout (most to least significant): 42 bits of ms since the Unix epoch, 12 bits of
//! per-ms counter, 10 bits of node id. More than 4096 ids in one ms borrow from the next ms, so
//! ids stay unique and increasing on a node; the node bits keep nodes apart.

use std::sync::atomic::{AtomicU64, Ordering};

const NODE_BITS: u32 = 10;
const COUNTER_BITS: u32 = 12;

/// Hands out server message ids for one node.
pub struct IdGenerator {
    node: u64,
    last: AtomicU64,
}

impl IdGenerator {
    /// A generator for node `node` (0–1023).
    pub fn new(node: u16) -> Self {
        assert!(u32::from(node) < (1 << NODE_BITS), "node id must fit in {NODE_BITS} bits");
        Self { node: u64::from(node), last: AtomicU64::new(0) }
    }

    /// The smallest id any node can give at `ms` or later: a time cutoff for ids.
    pub fn floor_of(ms: u64) -> u64 {
        ms << (NODE_BITS + COUNTER_BITS)
    }

    /// The node that made `id` (its low bits): where a call whose id it is lives.
    pub fn node_of(id: u64) -> u16 {
        (id & ((1 << NODE_BITS) - 1)) as u16
    }

    /// The next id, greater than every id this generator returned before.
    pub fn next(&self, now_ms: u64) -> u64 {
        let floor = (now_ms << (NODE_BITS + COUNTER_BITS)) | self.node;
        let step = 1 << NODE_BITS;
        let prev = self
            .last
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| Some(floor.max(last + step)))
            .expect("closure always returns Some");
        floor.max(prev + step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_keep_the_node_and_survive_bursts() {
        let ids = IdGenerator::new(5);
        let mut prev = 0;
        for _ in 0..10_000 {
            let id = ids.next(1_000);
            assert!(id > prev);
            assert_eq!(id & 1023, 5);
            prev = id;
        }
        assert_ne!(IdGenerator::new(6).next(1_000), IdGenerator::new(5).next(1_000));
    }
}
