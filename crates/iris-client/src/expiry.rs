//! When an inbox item disappears (disappearing messages): read by the connection's driver,
//! which drops items that arrive already expired, and by apps through [`crate::timers`].

use iris_proto::pb;

/// When `item` disappears, in ms since the Unix epoch; `None` if it does not.
pub fn expires_at(item: &pb::InboxItem) -> Option<u64> {
    (item.expires_at_ms != 0).then_some(item.expires_at_ms)
}

/// Whether `item` has disappeared at `now_ms`.
pub fn is_expired(item: &pb::InboxItem, now_ms: u64) -> bool {
    expires_at(item).is_some_and(|at| at <= now_ms)
}
