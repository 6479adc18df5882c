//! The device's end-to-end state and the file that keeps it: the Olm account, the pairwise
//! sessions, the pinned identities of the devices it talks to, and the group (Megolm) sessions.
//!
//! At rest every secret is a vodozemac pickle encrypted with a 32-byte key that
//! [`pickle_key`] derives (HKDF-SHA-256) from a secret the caller keeps elsewhere (the CLI keeps
//! it in the profile). The file is JSON, written whole through a temporary file, fsync and
//! rename, and locked (an exclusive lock on `<file>.lock`) for as long as a process holds it, so
//! two processes never fork one ratchet. What is not encrypted: which devices and groups it has
//! sessions with and their public keys (the server knows those too).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vodozemac::megolm::{GroupSession, GroupSessionPickle, InboundGroupSession, InboundGroupSessionPickle};
use vodozemac::olm::{Account, AccountPickle, Session, SessionPickle};

use super::envelope::Addr;
use super::E2eError;

/// How long opening waits for another process to let go of the file.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// Message → conversation entries remembered (for edits and reactions by message id).
const CONVERSATIONS_MAX: usize = 10_000;
/// Version of the file format.
const FILE_VERSION: u32 = 1;

/// The 32-byte pickle key for `secret`: HKDF-SHA-256, info `iris e2e store v1`.
pub fn pickle_key(secret: &[u8]) -> [u8; 32] {
    let mut key = [0; 32];
    hkdf::Hkdf::<sha2_11::Sha256>::new(None, secret)
        .expand(b"iris e2e store v1", &mut key)
        .expect("32 bytes is a valid HKDF-SHA-256 length");
    key
}

/// The identity keys a device is known by (pinned the first time they are seen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinned {
    /// Curve25519 identity key.
    pub curve25519: String,
    /// Ed25519 key.
    pub ed25519: String,
}

/// Which conversation a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Conversation {
    /// 1:1 with this account.
    Direct(u64),
    /// This group.
    Group(u64),
}

/// My Megolm session of a group and who has its key.
pub struct Outbound {
    /// The session.
    pub session: GroupSession,
    /// The devices it was shared with (every member device but mine, when it was made).
    pub shared_with: BTreeSet<Addr>,
}

/// A group session someone shared with me.
pub struct Inbound {
    /// The session.
    pub session: InboundGroupSession,
    /// Its group.
    pub group: u64,
    /// The device that shared it (and alone may send with it).
    pub sender: Addr,
}

/// Everything the device knows, in memory.
pub struct State {
    /// The Olm account (identity keys, one-time and fallback keys).
    pub account: Account,
    /// Pairwise sessions by the peer device's Curve25519 key, most recently used last.
    pub sessions: HashMap<String, Vec<Session>>,
    /// Pinned identities by device.
    pub devices: BTreeMap<Addr, Pinned>,
    /// My group sessions, by group.
    pub outbound: HashMap<u64, Outbound>,
    /// Others' group sessions, by (sender key, session id).
    pub inbound: HashMap<(String, String), Inbound>,
    /// Recent messages' conversations, by server id (ids grow with time: the smallest is the
    /// oldest).
    pub conversations: BTreeMap<u64, Conversation>,
}

impl State {
    fn new() -> Self {
        Self {
            account: Account::new(),
            sessions: HashMap::new(),
            devices: BTreeMap::new(),
            outbound: HashMap::new(),
            inbound: HashMap::new(),
            conversations: BTreeMap::new(),
        }
    }

    /// Remembers a message's conversation (bounded; the oldest go first).
    pub fn remember(&mut self, server_msg_id: u64, conversation: Conversation) {
        self.conversations.insert(server_msg_id, conversation);
        while self.conversations.len() > CONVERSATIONS_MAX {
            self.conversations.pop_first();
        }
    }
}

/// The file's JSON.
#[derive(Serialize, Deserialize)]
struct Document {
    v: u32,
    account: String,
    sessions: Vec<(String, Vec<String>)>,
    devices: Vec<(Addr, Pinned)>,
    outbound: Vec<OutboundRow>,
    inbound: Vec<InboundRow>,
    conversations: Vec<(u64, Conversation)>,
}

#[derive(Serialize, Deserialize)]
struct OutboundRow {
    group: u64,
    session: String,
    shared_with: Vec<Addr>,
}

#[derive(Serialize, Deserialize)]
struct InboundRow {
    sender_key: String,
    group: u64,
    sender: Addr,
    session: String,
}

/// The state's file, held locked.
pub struct StoreFile {
    path: PathBuf,
    key: [u8; 32],
    /// Held open for the lock.
    _lock: fs::File,
}

impl StoreFile {
    /// Opens (or, when missing, creates with a new account) the store at `path`, waiting up to
    /// 30 s for another process to release it.
    pub fn open(path: &Path, secret: &[u8]) -> Result<(Self, State), E2eError> {
        let lock = lock(path)?;
        let file = Self { path: path.to_owned(), key: pickle_key(secret), _lock: lock };
        let state = match fs::read(path) {
            Ok(bytes) => file.decode(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let state = State::new();
                file.save(&state)?;
                state
            }
            Err(e) => return Err(E2eError::Store(format!("reading {}: {e}", path.display()))),
        };
        Ok((file, state))
    }

    fn decode(&self, bytes: &[u8]) -> Result<State, E2eError> {
        let bad = |what: &str| E2eError::Store(format!("{}: {what}", self.path.display()));
        let doc: Document = serde_json::from_slice(bytes).map_err(|e| bad(&format!("not a key store ({e})")))?;
        if doc.v != FILE_VERSION {
            return Err(bad("unknown format version"));
        }
        let key = &self.key;
        let wrong_key = |_| bad("cannot decrypt (wrong profile secret, or damaged)");
        let account = Account::from_pickle(AccountPickle::from_encrypted(&doc.account, key).map_err(wrong_key)?);
        let mut sessions = HashMap::new();
        for (peer, pickles) in doc.sessions {
            let list = pickles
                .iter()
                .map(|p| SessionPickle::from_encrypted(p, key).map(Session::from_pickle).map_err(wrong_key))
                .collect::<Result<Vec<_>, _>>()?;
            sessions.insert(peer, list);
        }
        let mut outbound = HashMap::new();
        for row in doc.outbound {
            let pickle = GroupSessionPickle::from_encrypted(&row.session, key).map_err(wrong_key)?;
            let shared_with = row.shared_with.into_iter().collect();
            outbound.insert(row.group, Outbound { session: GroupSession::from_pickle(pickle), shared_with });
        }
        let mut inbound = HashMap::new();
        for row in doc.inbound {
            let pickle = InboundGroupSessionPickle::from_encrypted(&row.session, key).map_err(wrong_key)?;
            let session = InboundGroupSession::from_pickle(pickle);
            let id = (row.sender_key, session.session_id());
            inbound.insert(id, Inbound { session, group: row.group, sender: row.sender });
        }
        Ok(State {
            account,
            sessions,
            devices: doc.devices.into_iter().collect(),
            outbound,
            inbound,
            conversations: doc.conversations.into_iter().collect(),
        })
    }

    /// Writes `state` durably (temporary file, fsync, rename, directory fsync).
    pub fn save(&self, state: &State) -> Result<(), E2eError> {
        let key = &self.key;
        let doc = Document {
            v: FILE_VERSION,
            account: state.account.pickle().encrypt(key),
            sessions: state
                .sessions
                .iter()
                .map(|(peer, list)| (peer.clone(), list.iter().map(|s| s.pickle().encrypt(key)).collect()))
                .collect(),
            devices: state.devices.iter().map(|(a, p)| (*a, p.clone())).collect(),
            outbound: state
                .outbound
                .iter()
                .map(|(&group, o)| OutboundRow {
                    group,
                    session: o.session.pickle().encrypt(key),
                    shared_with: o.shared_with.iter().copied().collect(),
                })
                .collect(),
            inbound: state
                .inbound
                .iter()
                .map(|((sender_key, _), i)| InboundRow {
                    sender_key: sender_key.clone(),
                    group: i.group,
                    sender: i.sender,
                    session: i.session.pickle().encrypt(key),
                })
                .collect(),
            conversations: state.conversations.iter().map(|(&id, &c)| (id, c)).collect(),
        };
        let bytes = serde_json::to_vec(&doc).map_err(|e| E2eError::Store(e.to_string()))?;
        crate::files::write_private_atomically(&self.path, &bytes)
            .map_err(|e| E2eError::Store(format!("writing {}: {e}", self.path.display())))
    }
}

/// Takes the exclusive lock beside `path`, waiting up to [`LOCK_WAIT`].
fn lock(path: &Path) -> Result<fs::File, E2eError> {
    let lock_path = with_suffix(path, ".lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| E2eError::Store(format!("opening {}: {e}", lock_path.display())))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(E2eError::Store(format!("locking {}: {e}", lock_path.display()))),
        }
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_round_trips_and_refuses_the_wrong_secret() {
        // Proves: the account survives a reopen with the same secret; another secret cannot read
        // it (a typed error, not a new account); the file holds no unencrypted key material.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice.keys");
        let curve = {
            let (file, mut state) = StoreFile::open(&path, b"secret one").unwrap();
            state.remember(5, Conversation::Direct(9));
            file.save(&state).unwrap();
            state.account.curve25519_key().to_base64()
        };
        let (_file, state) = StoreFile::open(&path, b"secret one").unwrap();
        assert_eq!(state.account.curve25519_key().to_base64(), curve);
        assert_eq!(state.conversations.get(&5), Some(&Conversation::Direct(9)));
        drop(_file);
        assert!(matches!(StoreFile::open(&path, b"secret two"), Err(E2eError::Store(_))));
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains("secret"), "no secret in the file");
    }
}
