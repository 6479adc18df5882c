//! Disappearing-messages timers: per conversation (a 1:1 pair or a group), how long messages
//! sent from now on live. A low-rate, durable setting read on every send of the conversation.

use async_trait::async_trait;

use crate::{AccountId, GroupId, StoreResult};

/// The conversation a timer belongs to. A 1:1 pair is one conversation whichever side asks, so
/// it is kept in a canonical order ([`Chat::direct`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Chat {
    /// The 1:1 conversation of two accounts, the lower id first.
    Direct(AccountId, AccountId),
    /// A group.
    Group(GroupId),
}

impl Chat {
    /// The 1:1 conversation of `a` and `b`, in either order.
    pub fn direct(a: AccountId, b: AccountId) -> Self {
        Self::Direct(a.min(b), a.max(b))
    }
}

/// A conversation's timer: how long messages sent while it holds live, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChatTimer {
    /// Lifetime of messages sent from now on, in seconds; 0 is off.
    pub seconds: u32,
    /// Who set it (0: never set).
    pub set_by: AccountId,
    /// When it was set, ms since the Unix epoch.
    pub set_at_ms: u64,
}

/// Disappearing-messages timers by conversation.
#[async_trait]
pub trait TimerStore: Send + Sync + 'static {
    /// Records `timer` as the conversation's timer (replacing any earlier one; `seconds == 0`
    /// turns it off). Durable when it returns.
    async fn set_timer(&self, chat: Chat, timer: ChatTimer) -> StoreResult<()>;

    /// The conversation's timer; the default (off, never set) if none was set.
    async fn timer(&self, chat: Chat) -> StoreResult<ChatTimer>;
}
