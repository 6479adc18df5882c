//! The inbox check that makes lost hints harmless: every `cluster.inbox_poll_interval_ms`, the
//! node reads the cursors of its connected devices (one query per store shard and chunk) and
//! wakes every session whose inbox holds entries beyond its ack; the session then fetches what
//! it has not delivered yet. Runs whenever the store is shared by several nodes, with or without
//! Redis: without Redis it is how messages from other nodes arrive.

use std::sync::Arc;
use std::time::Duration;

use crate::context::Ctx;

/// Devices per cursor query.
const CHUNK: usize = 1000;

/// Checks inboxes until shutdown.
pub async fn run(ctx: Arc<Ctx>, interval: Duration) {
    let mut ticker = super::Ticker::new(&ctx.shutdown, interval.max(Duration::from_millis(50)));
    while ticker.next().await {
        let devices = ctx.router.devices();
        for chunk in devices.chunks(CHUNK) {
            match ctx.store.cursors(chunk).await {
                Ok(cursors) => {
                    for (addr, c) in chunk.iter().zip(cursors) {
                        if c.last > c.acked {
                            ctx.router.poke(*addr);
                            ctx.metrics.inbox_check_wakeups.inc();
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "inbox check failed");
                    break;
                }
            }
        }
    }
}
