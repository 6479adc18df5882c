//! The soft counts the abuse rules read: counters and capped sets of distinct members, each in
//! a fixed window (the clock hour, the UTC day). In cluster mode they live in Redis, so every
//! node adds to one count; when Redis does not answer, this node's own count decides (it sees
//! only this node's share, so a rule can only fire later, never wrongly). In single-node mode
//! the node's count is the count.
//!
//! Knows the bus and the clock's number; nothing of accounts, stores or rules.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::cluster::bus::Bus;

/// Keys held in memory at most; beyond it, the windows that ended are dropped first and then,
/// if still full, everything (counts restart: a rule can fire later, never wrongly).
const LOCAL_KEYS_MAX: usize = 1 << 20;

/// One key's count in its window.
#[derive(Default)]
struct Local {
    /// Which window (`now_ms / window_ms`) the count is of.
    window: u64,
    /// The window's length.
    window_ms: u64,
    count: u64,
    members: HashSet<u64>,
    /// Cluster mode: adds not sent to Redis yet ([`Counters::add`] batches them).
    unsent: u64,
}

/// What [`Counters::add_member`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    /// Members of the set after the call (at most the cap).
    pub members: u64,
    /// Whether the member was in the set before the call (then nothing changed).
    pub was_member: bool,
}

/// Windowed counts, shared through Redis when there is a bus.
pub struct Counters {
    bus: Option<Bus>,
    local: Mutex<HashMap<String, Local>>,
}

/// The window `now_ms` falls in, and the ms left in it (how long a new shared key must live).
fn window_of(now_ms: u64, window_ms: u64) -> (u64, u64) {
    let window_ms = window_ms.max(1);
    (now_ms / window_ms, window_ms - now_ms % window_ms)
}

impl Counters {
    /// Counts kept in Redis through `bus` (cluster mode), else on this node.
    pub fn new(bus: Option<Bus>) -> Self {
        Self { bus, local: Mutex::default() }
    }

    /// Runs `f` on the local count of `key` for the window of `now_ms` (a new window starts at 0).
    fn with_local<T>(&self, key: &str, now_ms: u64, window_ms: u64, f: impl FnOnce(&mut Local) -> T) -> T {
        let (window, _) = window_of(now_ms, window_ms);
        let mut local = self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if local.len() >= LOCAL_KEYS_MAX && !local.contains_key(key) {
            local.retain(|_, l| (l.window + 1) * l.window_ms > now_ms);
            if local.len() >= LOCAL_KEYS_MAX {
                local.clear();
            }
        }
        let fresh = || Local { window, window_ms: window_ms.max(1), ..Local::default() };
        let entry = local.entry(key.to_owned()).or_insert_with(fresh);
        if entry.window != window {
            *entry = Local { window, window_ms: window_ms.max(1), ..Local::default() };
        }
        f(entry)
    }

    /// Adds one to counter `key` in the window of `now_ms` and returns its total (cluster-wide
    /// when shared). Shared adds go to Redis in batches of `batch` (each node holds back fewer
    /// than `batch` adds, so a cluster-wide total can lag by that many per node); a batch of 1
    /// sends every add.
    pub async fn add(&self, key: &str, now_ms: u64, window_ms: u64, batch: u64) -> u64 {
        let (window, ttl_ms) = window_of(now_ms, window_ms);
        let (local_total, to_send) = self.with_local(key, now_ms, window_ms, |l| {
            l.count += 1;
            l.unsent += 1;
            let send = l.unsent >= batch.max(1);
            (l.count, if send { std::mem::take(&mut l.unsent) } else { 0 })
        });
        let Some(bus) = &self.bus else { return local_total };
        if to_send == 0 {
            return local_total;
        }
        match bus.count_add(&format!("abuse:{key}:{window}"), to_send, ttl_ms).await {
            Ok(total) => total.max(local_total),
            Err(e) => {
                tracing::debug!(error = %e, "shared abuse count unavailable; this node's count used");
                local_total
            }
        }
    }

    /// Adds `member` to the set `key` in the window of `now_ms` unless it already has `cap`
    /// members, and returns how many it has (cluster-wide when shared) and whether `member` was
    /// one of them before this call.
    pub async fn add_member(&self, key: &str, member: u64, cap: u32, now_ms: u64, window_ms: u64) -> Membership {
        let (window, ttl_ms) = window_of(now_ms, window_ms);
        let local = self.with_local(key, now_ms, window_ms, |l| {
            let was_member = l.members.contains(&member);
            if !was_member && l.members.len() < cap as usize {
                l.members.insert(member);
            }
            Membership { members: l.members.len() as u64, was_member }
        });
        let Some(bus) = &self.bus else { return local };
        match bus.set_add_capped(&format!("abuse:{key}:{window}"), member, cap, ttl_ms).await {
            Ok((n, was_member)) => Membership { members: n.max(local.members), was_member },
            Err(e) => {
                tracing::debug!(error = %e, "shared abuse set unavailable; this node's set used");
                local
            }
        }
    }

    /// Drops the counts of windows that ended; called periodically.
    pub fn sweep(&self, now_ms: u64) {
        let mut local = self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        local.retain(|_, l| (l.window + 1) * l.window_ms > now_ms);
        local.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;

    #[tokio::test]
    async fn counts_restart_with_each_window() {
        let c = Counters::new(None);
        assert_eq!(c.add("m:1", 10, HOUR, 1).await, 1);
        assert_eq!(c.add("m:1", 20, HOUR, 1).await, 2);
        assert_eq!(c.add("m:2", 20, HOUR, 1).await, 1, "keys are counted apart");
        assert_eq!(c.add("m:1", HOUR + 5, HOUR, 1).await, 1, "a new hour starts at 0");
    }

    #[tokio::test]
    async fn sets_count_distinct_members_up_to_the_cap() {
        let c = Counters::new(None);
        let m = |members, was_member| Membership { members, was_member };
        assert_eq!(c.add_member("r:1", 7, 3, 0, HOUR).await, m(1, false));
        assert_eq!(c.add_member("r:1", 7, 3, 1, HOUR).await, m(1, true), "the same member counts once");
        assert_eq!(c.add_member("r:1", 8, 3, 2, HOUR).await, m(2, false));
        assert_eq!(c.add_member("r:1", 9, 3, 3, HOUR).await, m(3, false));
        assert_eq!(c.add_member("r:1", 10, 3, 4, HOUR).await, m(3, false), "capped, and not a member");
        assert_eq!(c.add_member("r:1", 9, 3, 5, HOUR).await, m(3, true));
        assert_eq!(c.add_member("r:1", 10, 3, HOUR, HOUR).await, m(1, false), "a new window");
    }
}
