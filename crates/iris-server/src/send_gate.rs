//! Admission toward hot devices: a 1:1 send to an online device that is draining a backlog
//! larger than `session.hot_backlog_max` waits (at most `session.hot_hold_ms`) for that
//! backlog to shrink before it is committed.
//!
//! Without it, one device that thousands of others write to (a celebrity, a bot) loses the
//! core to its senders: each sender's session is one task among many, accepting far faster than
//! the one hot session delivers, and the backlog only grows (BENCHMARKS.md, "Hotspot"). Holding
//! the send before its commit gives the core back to the device that drains it, and pushes back
//! on the senders the way a full TCP window would: the sender's session handles nothing else
//! meanwhile, so its sends keep their order.
//!
//! Bounded by design: a send is held at most `hot_hold_ms`, then goes through; a device that
//! acked nothing for `hot_hold_ms` is not draining (a stalled or absent reader) and holds no one,
//! so a client that never acks cannot slow its senders down; a device that disconnects releases
//! its waiters at once. Only client `SendMessage`s are held: receipts, group sends, forwards and
//! message actions never wait here (an ack's receipts must never wait for another ack).
//!
//! The counts are the router's hints and the session's acks, so only devices connected to this
//! node are seen (in cluster mode a send toward a hot device on another node is not held).

use std::sync::Arc;
use std::time::Duration;

use iris_store::{AccountId, NewEntry};
use tokio::time::Instant;

use crate::backlog::Backlog;
use crate::metrics::Metrics;
use crate::router::Router;

/// Holds 1:1 sends toward hot devices (see the module doc).
pub struct SendGate {
    router: Arc<Router>,
    metrics: Arc<Metrics>,
    /// Backlog above which a draining device holds its senders; 0 turns holding off.
    backlog_max: u64,
    /// Longest one send is held, and how recent a device's last ack must be for it to hold.
    hold: Duration,
}

impl SendGate {
    /// A gate over the router's backlogs with these bounds (`backlog_max` 0: never holds).
    pub fn new(router: Arc<Router>, metrics: Arc<Metrics>, backlog_max: u64, hold: Duration) -> Self {
        Self { router, metrics, backlog_max, hold }
    }

    /// Returns once no device of `entries` outside the sender's own account is a hot device
    /// over its bound, or after the hold limit. The sender's own devices (their sent-sync
    /// copies) never hold it: one sender is not what makes a device hot, and a linked device
    /// catching up on a long backlog must not slow its own phone down.
    pub async fn admit(&self, entries: &[NewEntry], sender: AccountId) {
        if self.backlog_max == 0 {
            return;
        }
        let mut deadline = None;
        for entry in entries.iter().filter(|e| e.device.account != sender) {
            let holds = |b: &Backlog| b.holds(self.backlog_max, self.hold);
            let Some(backlog) = self.router.backlog_if(entry.device, holds) else { continue };
            let deadline = *deadline.get_or_insert_with(|| {
                self.metrics.sends_held.inc();
                Instant::now() + self.hold
            });
            if backlog.wait(self.backlog_max, self.hold, deadline).await {
                self.metrics.send_holds_expired.inc();
                return;
            }
        }
    }
}
