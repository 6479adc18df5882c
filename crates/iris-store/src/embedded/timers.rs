//! Disappearing-messages timers on fjall: conversation key → seconds ‖ set by ‖ set at,
//! written with fdatasync ([`TimerStore`]). Keys: 0 ‖ lower account ‖ higher account for a 1:1
//! pair, 1 ‖ group id for a group. Every send reads its conversation's timer, so timers
//! read are kept in a [`ReadCache`] that `set_timer` invalidates.

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::read_cache::ReadCache;
use super::{keys, unavailable, FjallStore};
use crate::{Chat, ChatTimer, StoreError, StoreResult, TimerStore};

/// Timer-side state of [`FjallStore`].
pub(super) struct Timers {
    db: Database,
    /// Conversation key → timer record.
    timers: Keyspace,
    /// Timers read, by conversation.
    cache: ReadCache<Chat, ChatTimer>,
}

impl Timers {
    pub(super) fn open(db: &Database) -> StoreResult<Self> {
        let timers = db.keyspace("chat_timers", KeyspaceCreateOptions::default).map_err(unavailable)?;
        Ok(Self { db: db.clone(), timers, cache: ReadCache::new() })
    }
}

fn key(chat: Chat) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    match chat {
        Chat::Direct(a, b) => {
            k.push(0);
            k.extend_from_slice(&a.to_be_bytes());
            k.extend_from_slice(&b.to_be_bytes());
        }
        Chat::Group(g) => {
            k.push(1);
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
        committed
    }

    async fn timer(&self, chat: Chat) -> StoreResult<ChatTimer> {
        let timers = &self.timers.timers;
        self.timers.cache.get_or_read(chat, |&chat| match timers.get(key(chat)).map_err(unavailable)? {
            Some(v) => decode(&v),
            None => Ok(ChatTimer::default()),
        })
    }
}
