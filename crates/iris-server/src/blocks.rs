//! Block lists: the durable pairs live in the store; this service changes them and tells the
//! presence hub, which hides presence in both directions between the two accounts.

use iris_proto::pb;
use iris_store::{AccountId, DeviceAddr};

use crate::context::Ctx;
use crate::error::ServiceError;

/// Blocks or unblocks `op.account_id` for `me`'s account.
pub async fn set(ctx: &Ctx, me: DeviceAddr, op: pb::BlockAccount) -> Result<(), ServiceError> {
    if op.account_id == 0 || op.account_id == me.account {
        return Err(ServiceError::InvalidArgument("account_id must name another account".into()));
    }
    ctx.directory.by_id(op.account_id).await?.ok_or(ServiceError::UnknownRecipient)?;
    ctx.store.set_blocked(me.account, op.account_id, !op.unblock).await?;
    ctx.presence.set_block(me.account, op.account_id, !op.unblock);
    Ok(())
}

/// Whether `blocker` blocked `blocked`.
pub async fn is_blocked(ctx: &Ctx, blocker: AccountId, blocked: AccountId) -> Result<bool, ServiceError> {
    if blocker == blocked {
        return Ok(false);
    }
    Ok(ctx.store.is_blocked(blocker, blocked).await?)
}

/// Records in the presence hub every block between `viewer` and `accounts` (either way), so
/// subscribe answers and pushes hide them. Called before subscribing.
pub async fn load_for_presence(ctx: &Ctx, viewer: AccountId, accounts: &[AccountId]) -> Result<(), ServiceError> {
    for &account in accounts {
        if is_blocked(ctx, viewer, account).await? {
            ctx.presence.set_block(viewer, account, true);
        }
        if is_blocked(ctx, account, viewer).await? {
            ctx.presence.set_block(account, viewer, true);
        }
    }
    Ok(())
}
