//! Account deletion, the HTTP flow over `Ctx` (root layer, like the rest of auth's flows).
//!
//! `request_code(me)` sends a one-time code to the account's phone (the same code book as
//! logins, under a key of its own, so a login code never deletes an account and the other way
//! round); `delete(me, code)` checks it and erases the account. The order, and why it is
//! crash-safe (ARCHITECTURE.md "Account deletion"):
//! 1. the durable mark ([`ErasureStore::begin_erasure`](iris_store::ErasureStore::begin_erasure)): from now on the phone cannot register
//!    and a restart finishes the deletion ([`resume`]);
//! 2. every device revoked (tokens gone) and its connections closed with `ACCOUNT_DELETED`;
//! 3. the account leaves every group, with events (and the join requests it left go);
//! 4. the store erases everything else ([`ErasureStore::erase_account`](iris_store::ErasureStore::erase_account)), the mark last.
//!
//! Every step is idempotent, so running [`finish`] again after a crash completes it.

use iris_store::{DeviceAddr, PendingErasure};

use super::codes::CodeError;
use crate::context::Ctx;
use crate::error::ServiceError;
use crate::ratelimit;
use crate::router::Kick;

/// The code book key of `phone`'s deletion code, apart from its login code.
fn code_key(phone: &str) -> String {
    format!("delete:{phone}")
}

/// Sends a deletion code to the caller's phone. Returns its lifetime in seconds.
pub async fn request_code(ctx: &Ctx, me: DeviceAddr) -> Result<u64, ServiceError> {
    let account = ctx.store.account(me.account).await?.ok_or(ServiceError::DeviceRevoked)?;
    let auth = &ctx.auth;
    ratelimit::check_shared(&auth.deletion_codes, &me.account).await?;
    let key = code_key(&account.phone);
    let now = ctx.clock.now_ms();
    let code = match &auth.shared_codes {
        Some(shared) => shared.issue(&key, now).await?,
        None => auth.codes.issue(&key, now).map_err(|_| ServiceError::Overloaded { retry_after_ms: 60_000 })?,
    };
    // The sender logs (without the code) and counts its own failures.
    auth.sender.send(&account.phone, &code).await.map_err(|e| ServiceError::CodeDeliveryFailed {
        why: e.to_string(),
        retry_after_ms: super::CODE_DELIVERY_RETRY_AFTER_MS,
    })?;
    Ok(auth.code_ttl_s)
}

/// Checks the deletion code, then deletes the caller's account (see the module doc).
pub async fn delete(ctx: &Ctx, me: DeviceAddr, code: &str) -> Result<(), ServiceError> {
    if code.is_empty() || code.len() > 16 {
        return Err(ServiceError::InvalidArgument("code must be 1 to 16 characters".into()));
    }
    let account = ctx.store.account(me.account).await?.ok_or(ServiceError::DeviceRevoked)?;
    let key = code_key(&account.phone);
    let now = ctx.clock.now_ms();
    let checked = match &ctx.auth.shared_codes {
        Some(shared) => shared.check(&key, code, now).await?,
        None => ctx.auth.codes.check(&key, code, now),
    };
    checked.map_err(|e| match e {
        CodeError::BookFull => ServiceError::Overloaded { retry_after_ms: 60_000 },
        CodeError::NoneIssued => ServiceError::CodeExpired(e.to_string()),
        CodeError::Wrong { .. } => ServiceError::InvalidCode(e.to_string()),
    })?;
    ctx.store.begin_erasure(&account, now).await?;
    ctx.metrics.account_deletions_started.inc();
    let erasure = PendingErasure { account: account.id, phone: account.phone, started_at_ms: now };
    finish(ctx, &erasure).await
}

/// Runs every step after the mark; idempotent (see the module doc).
pub async fn finish(ctx: &Ctx, erasure: &PendingErasure) -> Result<(), ServiceError> {
    let id = erasure.account;
    let now = ctx.clock.now_ms();
    for device in ctx.store.devices(id).await? {
        ctx.store.revoke_device(device.addr, now, None).await?;
        ctx.router.kick(device.addr, Kick::AccountDeleted);
    }
    ctx.account_changed(id);
    let mut groups = ctx.store.groups_of(id).await?;
    groups.extend(ctx.store.groups_pending_for(id).await?);
    groups.sort_unstable();
    groups.dedup();
    for group in groups {
        if ctx.sessions.groups.remove_erased(id, group).await? {
            ctx.store.delete_group(group).await?;
        }
    }
    ctx.store.erase_account(erasure).await?;
    ctx.presence.forget_account(id);
    ctx.account_changed(id);
    ctx.metrics.account_deletions_finished.inc();
    tracing::info!(account = id, "account deleted");
    Ok(())
}

/// Finishes the deletions a crash interrupted (called once at start; a failure is logged and
/// left for the next start, the mark keeping the phone from registering meanwhile).
pub async fn resume(ctx: &Ctx) {
    let pending = match ctx.store.erasures_pending().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list interrupted account deletions");
            return;
        }
    };
    for erasure in pending {
        match finish(ctx, &erasure).await {
            Ok(()) => tracing::info!(account = erasure.account, "finished an interrupted account deletion"),
            Err(e) => {
                tracing::warn!(account = erasure.account, error = %e, "interrupted account deletion failed again")
            }
        }
    }
}
