//! A bounded memory of point reads for keyspaces that every send reads and few requests
//! write (blocks, chat timers): a hit answers in a hash lookup instead of a search of fjall's
//! memtable and tables (about 1,000 instructions each, twice per message).
//!
//! Writers change fjall first and then call [`ReadCache::invalidate`] (or
//! [`ReadCache::clear`]); a reader that missed fills the cache only if no invalidation
//! happened since it looked ([`ReadCache::generation`]), so a value read before a write can
//! never be cached after it. At [`CAPACITY`] entries the cache starts over empty:
//! memory stays bounded whatever the number of pairs, at the price of misses after a clear.

use std::hash::Hash;
use std::sync::Mutex;

use foldhash::{HashMap, HashMapExt as _};

/// Entries a cache holds at most.
const CAPACITY: usize = 65_536;

/// Cached point reads of one keyspace (see the module doc).
pub(super) struct ReadCache<K, V> {
    inner: Mutex<Inner<K, V>>,
}

struct Inner<K, V> {
    entries: HashMap<K, V>,
    /// Bumped by every invalidation; a fill from an older generation is dropped.
    generation: u64,
}

impl<K: Eq + Hash, V: Clone> ReadCache<K, V> {
    /// An empty cache.
    pub(super) fn new() -> Self {
        Self { inner: Mutex::new(Inner { entries: HashMap::new(), generation: 0 }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        // The guarded map is valid after any panic of a holder (no invariant spans calls).
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached value of `key`, if any.
    pub(super) fn get(&self, key: &K) -> Option<V> {
        self.lock().entries.get(key).cloned()
    }

    /// The generation to pass to [`Self::fill`]; read it before reading the store.
    pub(super) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Remembers `value`, read from the store after [`Self::generation`] returned
    /// `generation`, unless a write invalidated the cache since.
    pub(super) fn fill(&self, key: K, value: V, generation: u64) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.entries.len() >= CAPACITY {
            inner.entries.clear();
        }
        inner.entries.insert(key, value);
    }

    /// Forgets `key`: call after writing it to the store.
    pub(super) fn invalidate(&self, key: &K) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.remove(key);
    }

    /// Forgets everything: call after writes whose keys are not known one by one.
    pub(super) fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.clear();
    }

    /// The value of `key`: the cached one, or `read()`'s, which is then cached.
    pub(super) fn get_or_read<E>(&self, key: K, read: impl FnOnce(&K) -> Result<V, E>) -> Result<V, E> {
        if let Some(v) = self.get(&key) {
            return Ok(v);
        }
        let generation = self.generation();
        let value = read(&key)?;
        self.fill(key, value.clone(), generation);
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_skips_the_read() {
        let cache = ReadCache::<u8, u32>::new();
        assert_eq!(cache.get_or_read(1, |_| Ok::<_, ()>(7)), Ok(7));
        assert_eq!(cache.get_or_read(1, |_| Err(())), Ok(7));
    }

    #[test]
    fn an_invalidation_forgets_the_key() {
        let cache = ReadCache::<u8, u32>::new();
        cache.get_or_read(1, |_| Ok::<_, ()>(7)).unwrap();
        cache.invalidate(&1);
        assert_eq!(cache.get_or_read(1, |_| Ok::<_, ()>(8)), Ok(8));
    }

    #[test]
    fn a_value_read_before_a_write_is_not_cached_after_it() {
        let cache = ReadCache::<u8, u32>::new();
        // A reader looks, misses and reads the old value; a writer writes and invalidates
        // before the reader fills.
        let generation = cache.generation();
        cache.invalidate(&1);
        cache.fill(1, 7, generation);
        assert_eq!(cache.get(&1), None);
        // A clear counts as an invalidation too.
        let generation = cache.generation();
        cache.clear();
        cache.fill(1, 7, generation);
        assert_eq!(cache.get(&1), None);
    }

    #[test]
    fn memory_is_bounded_by_starting_over() {
        let cache = ReadCache::<u32, ()>::new();
        for k in 0..CAPACITY as u32 + 10 {
            cache.get_or_read(k, |_| Ok::<_, ()>(())).unwrap();
        }
        let held = cache.lock().entries.len();
        assert!(held <= CAPACITY, "{held} entries");
        assert_eq!(held, 10);
    }
}
