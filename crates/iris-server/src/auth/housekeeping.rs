//! The devices' periodic housekeeping: expired links dropped (a device approved but never
//! collected revoked with its link) and revocations a crash or a failure cut short finished.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::context::Ctx;
use crate::error::ServiceError;

use super::{link, revocation};

/// Runs both sweeps at start and every `devices.link_code_ttl_s` until shutdown, so a device
/// whose link was never collected is gone at most two link lifetimes after its approval, and a
/// revocation cut short is finished within one period of its first ten seconds.
pub async fn run(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(Duration::from_secs(ctx.config.devices.link_code_ttl_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        drain("expired device links", link::SWEEP_BATCH, || link::sweep(&ctx, ctx.clock.now_ms())).await;
        drain("unfinished revocations", revocation::RESUME_BATCH, || revocation::resume(&ctx, ctx.clock.now_ms()))
            .await;
    }
}

/// Repeats `pass` while it comes back with a full `batch`; logs what it did or why it stopped.
async fn drain<F, Fut>(what: &str, batch: usize, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, ServiceError>>,
{
    loop {
        match pass().await {
            Ok(n) if n == batch => continue,
            Ok(0) => {}
            Ok(n) => tracing::info!(handled = n, "{what}: handled"),
            Err(e) => tracing::warn!(error = %e, "{what}: sweep failed"),
        }
        return;
    }
}
