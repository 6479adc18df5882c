//! What follows a device's revocation, and finishing it when a crash or a failure cut it short.
//!
//! The store revokes a device (its tokens deleted) and records the revocation as unfinished in
//! one durable step. The follow-ups here come after: the connection closed, the inbox deleted,
//! the push target forgotten, the keys withdrawn (partners told), the account's other devices
//! told (`DeviceChange REMOVED`); then the record is dropped. Each step is idempotent and the
//! notices are deduplicated per change, so [`resume`] may run them again for any revocation
//! still recorded: none is left half done, and none is announced twice.

use iris_proto::pb::DeviceChangeType;
use iris_store::{Device, DeviceId};

use crate::context::Ctx;
use crate::device_notices::DeviceChange;
use crate::error::ServiceError;
use crate::router::Kick;

/// How old an unfinished revocation must be before [`resume`] takes it: the revoking request
/// is most likely still running its follow-ups before that.
const RESUME_AFTER_MS: u64 = 10_000;
/// How many unfinished revocations one pass of [`resume`] takes (the next pass, the rest).
pub(super) const RESUME_BATCH: usize = 1000;

/// Runs the follow-ups of `device`'s revocation (the store revoked it already) and drops its
/// record. `announce_by`: the device that revoked it, told to the account's other devices
/// (0: the device itself or the server); `None` tells nobody (a re-registration, an erasure).
pub(super) async fn follow_up(
    ctx: &Ctx,
    device: &Device,
    announce_by: Option<DeviceId>,
    kick: Kick,
) -> Result<(), ServiceError> {
    let addr = device.addr;
    // Every node's directory forgets the device (again, after a crash: the first may be lost).
    ctx.account_changed(addr.account);
    ctx.router.kick(addr, kick);
    ctx.store.purge(addr).await?;
    // A revoked device is never woken again (issue 19).
    ctx.store.delete_push_target(addr, None).await?;
    ctx.sessions.keys.revoked(addr).await?;
    if let Some(by) = announce_by {
        let change = DeviceChange { device: addr, name: device.name.clone(), kind: DeviceChangeType::Removed, by };
        ctx.sessions.device_notices.announce(change).await?;
    }
    ctx.store.finish_revocation(addr).await?;
    Ok(())
}

/// Finishes the revocations recorded at least [`RESUME_AFTER_MS`] before `now_ms` and still
/// unfinished, at most [`RESUME_BATCH`]. One that fails again stays for the next pass and does
/// not hold up the others. Returns how many it finished.
pub async fn resume(ctx: &Ctx, now_ms: u64) -> Result<usize, ServiceError> {
    let unfinished = ctx.store.unfinished_revocations(now_ms.saturating_sub(RESUME_AFTER_MS), RESUME_BATCH).await?;
    let mut finished = 0;
    for revocation in &unfinished {
        let device = revocation.device.addr;
        match follow_up(ctx, &revocation.device, revocation.announce_by, Kick::Revoked).await {
            Ok(()) => {
                finished += 1;
                ctx.metrics.devices_revocations_resumed.inc();
                tracing::info!(%device, "finished a revocation that was cut short");
            }
            Err(e) => tracing::warn!(%device, error = %e, "a revocation's follow-ups failed again"),
        }
    }
    Ok(finished)
}
