//! A simulated disk for the inbox log's crash tests (and, with the `sim` feature, for the
//! server's simulation): [`SimFs`] holds files in memory and knows which bytes an fsync made
//! durable; it can fail at any mutating operation (the disk then stays dead until the crash),
//! tear the failing write, and on [`SimFs::crash`] keep only what a real disk must keep, plus a
//! random part of the rest, possibly damaged. [`SimCold`] models the cold store the same way:
//! batches since the last `persist` survive a crash only as a random prefix.
//! Everything random is drawn from a seed, so a failing history replays exactly.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::cold::{Cold, ColdBatch, ColdCursor, ColdEntry};
use super::fs::{LogFile, LogFs};
use crate::{DedupKey, DeviceAddr, StoreError, StoreResult};

/// Bytes the page cache writes back as one unit, for crashes that keep some of a file's
/// unsynced writes and not others.
const PIECE_BYTES: usize = 32;

/// One simulated file (an inode: renames move names, not files): its bytes now, the bytes the
/// last fsync made durable, and the ranges written since, which a crash keeps only in part.
#[derive(Debug, Clone, Default)]
struct SimFile {
    data: Vec<u8>,
    synced: Vec<u8>,
    unsynced: Vec<(usize, usize)>,
}

/// A change to the directory not yet made durable by a directory sync.
#[derive(Debug, Clone)]
enum DirOp {
    Create(String, u64),
    Remove(String),
    Rename(String, String),
}

#[derive(Debug, Default)]
struct FsState {
    files: HashMap<u64, SimFile>,
    next_file: u64,
    /// The directory now: name to file.
    names: BTreeMap<String, u64>,
    /// The directory as of the last directory sync.
    durable_names: BTreeMap<String, u64>,
    /// Directory changes since the last sync, in order: a crash keeps a prefix of them.
    dir_ops: Vec<DirOp>,
    /// Mutating operations left before the disk fails (`None`: never).
    fail_in: Option<u64>,
    /// The disk failed: every mutating operation fails until the crash.
    dead: bool,
    /// Mutating operations so far (for choosing where to fail).
    ops: u64,
    rng: Option<StdRng>,
}

impl SimFile {
    /// An fsync: what was written since the last one becomes durable.
    fn sync(&mut self) {
        for &(from, to) in &self.unsynced {
            if self.synced.len() < to {
                self.synced.resize(to, 0);
            }
            self.synced[from..to].copy_from_slice(&self.data[from..to]);
        }
        self.unsynced.clear();
    }
}

impl FsState {
    fn file(&mut self, name: &str) -> io::Result<&mut SimFile> {
        let id = *self.names.get(name).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(self.files.get_mut(&id).expect("a named file exists"))
    }
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

    /// The file named `name`: its id and its current length (what an open sees).
    fn lookup(&self, name: &str) -> io::Result<(u64, usize)> {
        let mut st = self.lock();
        let len = st.file(name)?.data.len();
        Ok((st.names[name], len))
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

    /// The power goes out: the directory keeps its durable names plus a prefix of the changes
    /// made since (a rename happens wholly or not at all); every file keeps its durable bytes
    /// plus some of the pieces written since, in or out of order (a piece not kept reads as
    /// the bytes it overwrote, or as zeros past the durable end), sometimes with a damaged byte.
    /// The disk then works again.
    pub fn crash(&self) {
        let mut st = self.lock();
        let mut rng = st.rng.take().unwrap_or_else(|| StdRng::seed_from_u64(0));
        let mut names = std::mem::take(&mut st.durable_names);
        let ops = std::mem::take(&mut st.dir_ops);
        let kept = match rng.random_range(0..3) {
            0 => 0,
            1 => ops.len(),
            _ => rng.random_range(0..=ops.len()),
        };
        for op in ops.into_iter().take(kept) {
            match op {
                DirOp::Create(name, id) => {
                    names.insert(name, id);
                }
                DirOp::Remove(name) => {
                    names.remove(&name);
                }
                DirOp::Rename(from, to) => {
                    if let Some(id) = names.remove(&from) {
                        names.insert(to, id);
                    }
                }
            }
        }
        let mut files = std::mem::take(&mut st.files);
        st.files = names.values().filter_map(|id| Some((*id, crashed(files.remove(id)?, &mut rng)))).collect();
        st.names = names.clone();
        st.durable_names = names;
        st.fail_in = None;
        st.dead = false;
        st.rng = Some(rng);
    }

    /// Every byte of every file, for tests that look for data on the disk.
    pub fn contents(&self) -> Vec<(String, Vec<u8>)> {
        let st = self.lock();
        st.names.iter().map(|(n, id)| (n.clone(), st.files[id].data.clone())).collect()
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

/// A file after a crash: its durable bytes, then the unsynced pieces a crash kept (none, all,
/// the first few in order, or any of them), maybe with one bad byte.
fn crashed(file: SimFile, rng: &mut StdRng) -> SimFile {
    let mut out = file.synced;
    let pieces: Vec<(usize, usize)> = file
        .unsynced
        .iter()
        .flat_map(|&(from, to)| (from..to).step_by(PIECE_BYTES).map(move |at| (at, (at + PIECE_BYTES).min(to))))
        .collect();
    let mode = rng.random_range(0..4);
    let prefix = rng.random_range(0..=pieces.len());
    let mut kept = Vec::new();
    for (i, &(from, to)) in pieces.iter().enumerate() {
        let keep = match mode {
            0 => false,
            1 => true,
            2 => i < prefix,
            _ => rng.random_bool(0.5),
        };
        if keep && to <= file.data.len() {
            if out.len() < to {
                out.resize(to, 0);
            }
            out[from..to].copy_from_slice(&file.data[from..to]);
            kept.push((from, to));
        }
    }
    if !kept.is_empty() && rng.random_bool(0.3) {
        let (from, to) = kept[rng.random_range(0..kept.len())];
        let at = rng.random_range(from..to);
        out[at] ^= 1 << rng.random_range(0..8);
    }
    SimFile { data: out.clone(), synced: out, unsynced: Vec::new() }
}

impl LogFs for SimFs {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.lock().names.keys().cloned().collect())
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        Ok(self.lock().file(name)?.data.clone())
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn LogFile>> {
        self.mutate()?;
        let mut st = self.lock();
        let id = st.next_file;
        st.next_file += 1;
        st.files.insert(id, SimFile::default());
        st.names.insert(name.to_owned(), id);
        st.dir_ops.push(DirOp::Create(name.to_owned(), id));
        Ok(Box::new(SimHandle { fs: self.clone(), id, at: 0 }))
    }

    fn open_append(&self, name: &str) -> io::Result<Box<dyn LogFile>> {
        let (id, len) = self.lookup(name)?;
        Ok(Box::new(SimHandle { fs: self.clone(), id, at: len }))
    }

    fn open_over(&self, name: &str) -> io::Result<(Box<dyn LogFile>, u64)> {
        let (id, len) = self.lookup(name)?;
        Ok((Box::new(SimHandle { fs: self.clone(), id, at: 0 }), len as u64))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.mutate()?;
        let mut st = self.lock();
        let id = st.names.remove(from).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        st.names.insert(to.to_owned(), id);
        st.dir_ops.push(DirOp::Rename(from.to_owned(), to.to_owned()));
        Ok(())
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        self.mutate()?;
        let mut st = self.lock();
        let file = st.file(name)?;
        file.data.truncate(len as usize);
        file.synced = file.data.clone();
        file.unsynced.clear();
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.mutate()?;
        let mut st = self.lock();
        st.names.remove(name).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        st.dir_ops.push(DirOp::Remove(name.to_owned()));
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.mutate()?;
        let mut st = self.lock();
        st.durable_names = st.names.clone();
        st.dir_ops.clear();
        Ok(())
    }
}

/// An open simulated file and where its next write goes.
struct SimHandle {
    fs: SimFs,
    id: u64,
    at: usize,
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
        let file = st.files.get_mut(&self.id).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let (from, to) = (self.at, self.at + torn);
        if file.data.len() < to {
            file.data.resize(to, 0);
        }
        file.data[from..to].copy_from_slice(&buf[..torn]);
        if to > from {
            file.unsynced.push((from, to));
        }
        self.at = to;
        failed
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.fs.mutate()?;
        let mut st = self.fs.lock();
        if let Some(file) = st.files.get_mut(&self.id) {
            file.sync();
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
