//! Disappearing-messages timers on fjall: conversation key → seconds ‖ set by ‖ set at,
//! written with fdatasync ([`TimerStore`]). Keys: 0 ‖ lower account ‖ higher account for a 1:1
//! pair, 1 ‖ group id for a group. Every send reads its conversation's timer, so timers
//! read are kept in a [`ReadCache`] that `set_timer` invalidates. A 1:1 send first asks a
//! second cache whether the pair's lower account has any 1:1 timer at all (one entry per
//! account, and most have none) before the pair's own entry (one per pair: many more, and
//! each lookup a likely cache miss).

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::read_cache::ReadCache;
use super::{has_prefix, keys, unavailable, FjallStore};
use crate::{AccountId, Chat, ChatTimer, StoreError, StoreResult, TimerStore};

/// Timer-side state of [`FjallStore`].
pub(super) struct Timers {
    db: Database,
    /// Conversation key → timer record.
    timers: Keyspace,
    /// Timers read, by conversation, asked for 1:1 chats only when the lower account has any.
    cache: ReadCache<Chat, ChatTimer>,
    /// Whether each account is the lower account of any 1:1 timer record.
    lower_with_timers: ReadCache<AccountId, bool>,
}

impl Timers {
    pub(super) fn open(db: &Database) -> StoreResult<Self> {
        let timers = db.keyspace("chat_timers", KeyspaceCreateOptions::default).map_err(unavailable)?;
        Ok(Self { db: db.clone(), timers, cache: ReadCache::new(), lower_with_timers: ReadCache::new() })
    }

    /// Whether `lower` is the lower account of any 1:1 timer record (a read of the first).
    fn has_direct_timers(&self, lower: AccountId) -> StoreResult<bool> {
        self.lower_with_timers.get_or_read(lower, |&a| {
            let mut prefix = [DIRECT; 9];
            prefix[1..].copy_from_slice(&keys::account(a));
            has_prefix(&self.timers, &prefix)
        })
    }
}

/// Key tag of a 1:1 conversation's timer.
const DIRECT: u8 = 0;
/// Key tag of a group's timer.
const GROUP: u8 = 1;

fn key(chat: Chat) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    match chat {
        Chat::Direct(a, b) => {
            k.push(DIRECT);
            k.extend_from_slice(&a.to_be_bytes());
            k.extend_from_slice(&b.to_be_bytes());
        }
        Chat::Group(g) => {
            k.push(GROUP);
            k.extend_from_slice(&g.to_be_bytes());
        }
    }
    k
}

fn encode(t: ChatTimer) -> [u8; 20] {
    let mut v = [0; 20];
    v[..4].copy_from_slice(&t.seconds.to_be_bytes());
    v[4..12].copy_from_slice(&t.set_by.to_be_bytes());
    v[12..].copy_from_slice(&t.set_at_ms.to_be_bytes());
    v
}

fn decode(v: &[u8]) -> StoreResult<ChatTimer> {
    if v.len() != 20 {
        return Err(StoreError::Corrupt(format!("chat timer of {} bytes", v.len())));
    }
    Ok(ChatTimer {
        seconds: u32::from_be_bytes(keys::array(&v[..4])?),
        set_by: u64::from_be_bytes(keys::array(&v[4..12])?),
        set_at_ms: u64::from_be_bytes(keys::array(&v[12..])?),
    })
}

#[async_trait]
impl TimerStore for FjallStore {
    async fn set_timer(&self, chat: Chat, timer: ChatTimer) -> StoreResult<()> {
        let t = &self.timers;
        let mut batch = t.db.batch();
        batch.insert(&t.timers, key(chat), encode(timer));
        let committed = batch.durability(Some(PersistMode::SyncData)).commit().map_err(unavailable);
        // Even after a failed commit: the timer is then unknown.
        t.cache.invalidate(&chat);
        if let Chat::Direct(lower, _) = chat {
            t.lower_with_timers.invalidate(&lower);
        }
        committed
    }

    async fn timer(&self, chat: Chat) -> StoreResult<ChatTimer> {
        if let Chat::Direct(lower, _) = chat {
            if !self.timers.has_direct_timers(lower)? {
                return Ok(ChatTimer::default());
            }
        }
        let timers = &self.timers.timers;
        self.timers.cache.get_or_read(chat, |&chat| match timers.get(key(chat)).map_err(unavailable)? {
            Some(v) => decode(&v),
            None => Ok(ChatTimer::default()),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::embedded::{FjallConfig, FjallStore};
    use crate::{Chat, ChatTimer, TimerStore};

    #[tokio::test]
    async fn a_chat_read_as_timerless_sees_a_timer_set_later_and_its_neighbours_do_not() {
        // Proves the lower-account cache: reads answered "no timers" before a set are not
        // kept after it, and a timer of (1, 5) is not one of (1, 6), (2, 5) or of group 1.
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path(), FjallConfig::default()).unwrap();
        let day = ChatTimer { seconds: 86_400, set_by: 5, set_at_ms: 10 };
        assert_eq!(store.timer(Chat::direct(5, 1)).await.unwrap(), ChatTimer::default());
        store.set_timer(Chat::direct(5, 1), day).await.unwrap();
        assert_eq!(store.timer(Chat::direct(1, 5)).await.unwrap(), day);
        for other in [Chat::direct(1, 6), Chat::direct(2, 5), Chat::Group(1)] {
            assert_eq!(store.timer(other).await.unwrap(), ChatTimer::default(), "{other:?}");
        }
        let off = ChatTimer { seconds: 0, set_by: 1, set_at_ms: 20 };
        store.set_timer(Chat::direct(1, 5), off).await.unwrap();
        assert_eq!(store.timer(Chat::direct(5, 1)).await.unwrap(), off);
    }
}
