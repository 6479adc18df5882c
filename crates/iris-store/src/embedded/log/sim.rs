//! A simulated disk for the inbox log's crash tests (and, with the `sim` feature, for the
//! server's simulation): [`SimFs`] holds files in memory and knows which bytes an fsync made
//! durable; it can fail at any mutating operation (the disk then stays dead until the crash),
//! tear the failing write, and on [`SimFs::crash`] keep only what a real disk must keep, plus a
//! random part of the rest, possibly damaged. [`SimCold`] models the cold store the same way:
//! batches since the last `persist` survive a crash only as a random prefix.
//! Everything random is drawn from a seed, so a failing history replays exactly.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::cold::{Cold, ColdBatch, ColdCursor, ColdEntry};
use super::fs::{LogFile, LogFs};
use crate::{DedupKey, DeviceAddr, StoreError, StoreResult};

/// One simulated file: its bytes, of which the first `durable` survive any crash.
#[derive(Debug, Clone, Default)]
struct SimFile {
    data: Vec<u8>,
    durable: usize,
}

#[derive(Debug, Default)]
struct FsState {
    files: BTreeMap<String, SimFile>,
    /// Names the directory holds durably (as of the last directory sync).
    durable_names: BTreeSet<String>,
    /// Files removed since the last directory sync: a crash may bring them back.
    removed: BTreeMap<String, SimFile>,
    /// Mutating operations left before the disk fails (`None`: never).
    fail_in: Option<u64>,
    /// The disk failed: every mutating operation fails until the crash.
    dead: bool,
    /// Mutating operations so far (for choosing where to fail).
    ops: u64,
    rng: Option<StdRng>,
}

/// The simulated directory; clones share it (the log holds one, the test another).
#[derive(Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<FsState>>,
}

impl SimFs {
    /// An empty disk whose random choices come from `seed`.
    pub fn new(seed: u64) -> Self {
        let fs = Self::default();
        fs.lock().rng = Some(StdRng::seed_from_u64(seed));
        fs
    }

    fn lock(&self) -> MutexGuard<'_, FsState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the disk fail at the `n`-th mutating operation from now (1 = the next one).
    pub fn fail_after(&self, n: u64) {
        self.lock().fail_in = Some(n.max(1));
    }

    /// Mutating operations done so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Whether the disk has failed and not yet been through a crash.
    pub fn is_dead(&self) -> bool {
        self.lock().dead
    }

    /// The power goes out: every file keeps its durable bytes plus a random part of the rest
    /// (sometimes with a damaged byte); files whose creation or removal was not made durable by
    /// a directory sync may or may not exist. The disk then works again.
    pub fn crash(&self) {
        let mut st = self.lock();
        let mut rng = st.rng.take().unwrap_or_else(|| StdRng::seed_from_u64(0));
        let files = std::mem::take(&mut st.files);
        let removed = std::mem::take(&mut st.removed);
        let mut after = BTreeMap::new();
        for (name, file) in files {
            if st.durable_names.contains(&name) || rng.random_bool(0.5) {
                after.insert(name, crashed(file, &mut rng));
            }
        }
        for (name, file) in removed {
            if st.durable_names.contains(&name) && !after.contains_key(&name) && rng.random_bool(0.5) {
                after.insert(name, crashed(file, &mut rng));
            }
        }
        st.durable_names = after.keys().cloned().collect();
        st.files = after;
        st.fail_in = None;
        st.dead = false;
        st.rng = Some(rng);
    }

    /// Every byte of every file, for tests that look for data on the disk.
    pub fn contents(&self) -> Vec<(String, Vec<u8>)> {
        self.lock().files.iter().map(|(n, f)| (n.clone(), f.data.clone())).collect()
    }

    /// Counts a mutating operation; fails it if the disk is (now) dead.
    fn mutate(&self) -> io::Result<()> {
        let mut st = self.lock();
        st.ops += 1;
        if let Some(n) = st.fail_in {
            if n <= 1 {
                st.fail_in = None;
                st.dead = true;
            } else {
                st.fail_in = Some(n - 1);
            }
        }
        if st.dead {
            return Err(io::Error::other("simulated disk failure"));
        }
        Ok(())
    }
}

/// A file after a crash: durable bytes kept, a random prefix of the rest, maybe one bad byte.
fn crashed(mut file: SimFile, rng: &mut StdRng) -> SimFile {
    let volatile = file.data.len() - file.durable;
    if volatile > 0 {
        let keep = match rng.random_range(0..4) {
            0 => 0,
            1 => volatile,
            _ => rng.random_range(0..=volatile),
        };
        file.data.truncate(file.durable + keep);
        if keep > 0 && rng.random_bool(0.3) {
            let at = file.durable + rng.random_range(0..keep);
            file.data[at] ^= 1 << rng.random_range(0..8);
        }
    }
    file.durable = file.data.len();
    file
}

impl LogFs for SimFs {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.lock().files.keys().cloned().collect())
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        self.lock().files.get(name).map(|f| f.data.clone()).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn LogFile>> {
        self.mutate()?;
        let mut st = self.lock();
        st.removed.remove(name);
        st.files.insert(name.to_owned(), SimFile::default());
        Ok(Box::new(SimHandle { fs: self.clone(), name: name.to_owned() }))
    }

    fn open_append(&self, name: &str) -> io::Result<Box<dyn LogFile>> {
        if !self.lock().files.contains_key(name) {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok(Box::new(SimHandle { fs: self.clone(), name: name.to_owned() }))
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        self.mutate()?;
        let mut st = self.lock();
        let file = st.files.get_mut(name).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        file.data.truncate(len as usize);
        file.durable = file.data.len();
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.mutate()?;
        let mut st = self.lock();
        let file = st.files.remove(name).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        st.removed.insert(name.to_owned(), file);
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.mutate()?;
        let mut st = self.lock();
        st.durable_names = st.files.keys().cloned().collect();
        st.removed.clear();
        Ok(())
    }
}

/// An open simulated file.
struct SimHandle {
    fs: SimFs,
    name: String,
}

impl LogFile for SimHandle {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let failed = self.fs.mutate();
        let mut st = self.fs.lock();
        let torn = match &failed {
            // A failing write may still have put a part of its bytes into the file.
            Err(_) => {
                let rng = st.rng.get_or_insert_with(|| StdRng::seed_from_u64(0));
                rng.random_range(0..=buf.len())
            }
            Ok(()) => buf.len(),
        };
        let file = st.files.get_mut(&self.name).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        file.data.extend_from_slice(&buf[..torn]);
        failed
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.fs.mutate()?;
        let mut st = self.fs.lock();
        if let Some(file) = st.files.get_mut(&self.name) {
            file.durable = file.data.len();
        }
        Ok(())
    }
}

/// What the simulated cold store holds.
#[derive(Debug, Clone, Default)]
struct ColdData {
    cursors: BTreeMap<DeviceAddr, ColdCursor>,
    entries: BTreeMap<(DeviceAddr, u64), ColdEntry>,
    dedup: HashMap<DedupKey, (u64, u64)>,
    kv: BTreeMap<(u8, Vec<u8>), Vec<u8>>,
    checkpoint: u64,
}

impl ColdData {
    fn apply(&mut self, b: &ColdBatch) {
        for (d, e) in &b.entries {
            self.entries.insert((*d, e.seq), e.clone());
        }
        for &(d, from, to) in &b.deletes {
            let doomed: Vec<_> = self.entries.range((d, from)..=(d, to)).map(|(k, _)| *k).collect();
            for k in doomed {
                self.entries.remove(&k);
            }
        }
        for &(d, c) in &b.cursors {
            self.cursors.insert(d, c);
        }
        for (k, id, ts) in &b.dedup {
            self.dedup.insert(k.clone(), (*id, *ts));
        }
        for w in &b.writes {
            match &w.value {
                Some(v) => self.kv.insert((w.space, w.key.clone()), v.clone()),
                None => self.kv.remove(&(w.space, w.key.clone())),
            };
        }
        for d in &b.forget {
            self.cursors.remove(d);
            self.entries.retain(|(e, _), _| e != d);
            self.dedup.retain(|k, _| k.sender != *d);
        }
        if let Some(p) = b.checkpoint {
            self.checkpoint = p;
        }
    }
}

#[derive(Default)]
struct ColdState {
    durable: ColdData,
    current: ColdData,
    /// Batches written since the last persist, oldest first.
    pending: Vec<ColdBatch>,
    /// Held side writes (write-behind): logged, kept in memory until `settle` writes them.
    held: BTreeMap<(u8, Vec<u8>), Option<Vec<u8>>>,
    /// Fail every call from now on until the crash.
    dead: bool,
}

/// The simulated cold store; clones share it.
#[derive(Clone, Default)]
pub struct SimCold {
    state: Arc<Mutex<ColdState>>,
}

impl SimCold {
    fn lock(&self) -> MutexGuard<'_, ColdState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The power goes out: a prefix (of random length, drawn from `rng_seed`) of the batches
    /// written since the last persist survives.
    pub fn crash(&self, rng_seed: u64) {
        let mut st = self.lock();
        let mut rng = StdRng::seed_from_u64(rng_seed);
        let keep = rng.random_range(0..=st.pending.len());
        let mut data = st.durable.clone();
        for b in &st.pending[..keep] {
            data.apply(b);
        }
        st.durable = data.clone();
        st.current = data;
        st.pending.clear();
        st.held.clear();
        st.dead = false;
    }

    /// Holds `writes` of a durable batch for the next settle, as the engine's staging does.
    pub fn hold(&self, writes: &[super::KvWrite]) {
        let mut st = self.lock();
        for w in writes {
            st.held.insert((w.space, w.key.clone()), w.value.clone());
        }
    }

    /// The process dies: what was held in memory is gone (the log still has it).
    pub fn drop_held(&self) {
        self.lock().held.clear();
    }

    /// Makes every later call fail until the crash.
    pub fn kill(&self) {
        self.lock().dead = true;
    }

    /// Whether [`kill`](Self::kill) made it fail.
    pub fn is_dead(&self) -> bool {
        self.lock().dead
    }

    /// A side-keyspace value, for tests.
    pub fn kv(&self, space: u8, key: &[u8]) -> Option<Vec<u8>> {
        self.lock().current.kv.get(&(space, key.to_vec())).cloned()
    }

    fn alive(&self) -> StoreResult<MutexGuard<'_, ColdState>> {
        let st = self.lock();
        if st.dead {
            return Err(StoreError::Unavailable("simulated cold store failure".into()));
        }
        Ok(st)
    }
}

impl Cold for SimCold {
    fn cursor(&self, device: DeviceAddr) -> StoreResult<Option<ColdCursor>> {
        Ok(self.alive()?.current.cursors.get(&device).copied())
    }

    fn read(&self, device: DeviceAddr, from: u64, to: u64, limit: usize) -> StoreResult<Vec<ColdEntry>> {
        if from > to {
            return Ok(Vec::new());
        }
        Ok(self
            .alive()?
            .current
            .entries
            .range((device, from)..=(device, to))
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    fn dedup(&self, key: &DedupKey) -> StoreResult<Option<(u64, u64)>> {
        Ok(self.alive()?.current.dedup.get(key).copied())
    }

    fn write(&self, batch: ColdBatch) -> StoreResult<()> {
        let mut st = self.alive()?;
        st.current.apply(&batch);
        st.pending.push(batch);
        Ok(())
    }

    fn settle(&self) -> StoreResult<()> {
        let mut st = self.alive()?;
        let held = std::mem::take(&mut st.held);
        let writes = held.into_iter().map(|((space, key), value)| super::KvWrite { space, key, value }).collect();
        let batch = ColdBatch { writes, ..ColdBatch::default() };
        st.current.apply(&batch);
        st.pending.push(batch);
        Ok(())
    }

    fn persist(&self) -> StoreResult<()> {
        let mut st = self.alive()?;
        st.durable = st.current.clone();
        st.pending.clear();
        Ok(())
    }

    fn checkpoint(&self) -> StoreResult<u64> {
        Ok(self.alive()?.current.checkpoint)
    }

    fn expire_due(&self, now_ms: u64, limit: usize) -> StoreResult<u64> {
        let mut st = self.alive()?;
        let doomed: Vec<_> = st
            .current
            .entries
            .iter()
            .filter(|(_, e)| e.expires_at_ms.is_some_and(|at| at <= now_ms))
            .map(|(k, _)| *k)
            .take(limit)
            .collect();
        let batch =
            ColdBatch { deletes: doomed.iter().map(|&(d, seq)| (d, seq, seq)).collect(), ..ColdBatch::default() };
        st.current.apply(&batch);
        st.pending.push(batch);
        Ok(doomed.len() as u64)
    }

    fn expire(&self, older_than_ms: u64, dedup_older_than_ms: u64) -> StoreResult<u64> {
        let mut st = self.alive()?;
        let doomed: Vec<_> =
            st.current.entries.iter().filter(|(_, e)| e.ts_ms < older_than_ms).map(|(k, _)| *k).collect();
        let dedup: Vec<_> =
            st.current.dedup.iter().filter(|(_, &(_, ts))| ts < dedup_older_than_ms).map(|(k, _)| k.clone()).collect();
        let n = (doomed.len() + dedup.len()) as u64;
        let batch =
            ColdBatch { deletes: doomed.iter().map(|&(d, seq)| (d, seq, seq)).collect(), ..ColdBatch::default() };
        for k in dedup {
            st.current.dedup.remove(&k);
        }
        st.current.apply(&batch);
        st.pending.push(batch);
        Ok(n)
    }
}
