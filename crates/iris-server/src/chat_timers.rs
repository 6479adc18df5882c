//! Disappearing messages as the services use them: which timer values are allowed, each
//! conversation's timer, and the expiry a message sent now gets. 1:1 sends and group sends ask
//! it for the expiry of every message; setting a timer (messaging for 1:1, groups for groups)
//! records it here.
//!
//! Knows only the store's timers ([`TimerStore`]); nothing of inboxes, rosters or sessions.

use std::sync::Arc;

use iris_store::{AccountId, Chat, ChatTimer, TimerStore};

use crate::error::ServiceError;

/// The timers a conversation may have, in seconds: off, 24 hours, 7 days, 90 days (WhatsApp's
/// set).
pub const ALLOWED_SECONDS: [u32; 4] = [0, 86_400, 604_800, 7_776_000];

/// Conversations' disappearing-messages timers.
pub struct ChatTimers {
    store: Arc<dyn TimerStore>,
}

impl ChatTimers {
    /// Timers kept in `store`.
    pub fn new(store: Arc<dyn TimerStore>) -> Self {
        Self { store }
    }

    /// `INVALID_TIMER` unless `seconds` is one of [`ALLOWED_SECONDS`].
    pub fn check(seconds: u32) -> Result<(), ServiceError> {
        if ALLOWED_SECONDS.contains(&seconds) {
            Ok(())
        } else {
            Err(ServiceError::InvalidTimer { seconds })
        }
    }

    /// When a message sent in `chat` at `now_ms` disappears; `None` while the timer is off.
    /// The timer applies to messages sent after it changed: a message takes the timer in force
    /// when it is sent, and keeps that expiry whatever happens to the timer later.
    pub async fn expires_at(&self, chat: Chat, now_ms: u64) -> Result<Option<u64>, ServiceError> {
        let timer = self.store.timer(chat).await?;
        Ok((timer.seconds > 0).then(|| now_ms + u64::from(timer.seconds) * 1000))
    }

    /// Records `seconds` as `chat`'s timer, set by `by` at `now_ms` (already checked).
    pub async fn set(&self, chat: Chat, seconds: u32, by: AccountId, now_ms: u64) -> Result<(), ServiceError> {
        Ok(self.store.set_timer(chat, ChatTimer { seconds, set_by: by, set_at_ms: now_ms }).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_four_whatsapp_timers_are_allowed() {
        for s in ALLOWED_SECONDS {
            ChatTimers::check(s).unwrap();
        }
        for s in [1, 3600, 86_399, 86_401, 2_592_000, u32::MAX] {
            assert!(matches!(ChatTimers::check(s), Err(ServiceError::InvalidTimer { seconds }) if seconds == s));
        }
    }
}
