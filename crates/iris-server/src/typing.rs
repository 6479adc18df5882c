//! Typing indicators: ephemeral events to the devices of a conversation that are connected now.
//!
//! Never stored and never retried: a device that is offline, or whose ephemeral queue is full,
//! simply misses it. The server never sends "stopped" by itself; clients let an indicator expire
//! 5 s after the last `typing = true`. Rate-limited per account (`typing_per_account_per_second`).

use iris_proto::pb::{self, server_event};
use iris_store::{AccountId, DeviceAddr};

use crate::blocks;
use crate::context::Ctx;
use crate::error::ServiceError;
use crate::ratelimit;

/// Offers the indicator to every connected device of the peer (or of the group's other members)
/// and to the sender's other devices; returns once offered.
pub async fn send(ctx: &Ctx, sender: DeviceAddr, t: pb::Typing) -> Result<(), ServiceError> {
    if (t.to_account_id == 0) == (t.group_id == 0) {
        return Err(ServiceError::InvalidArgument("exactly one of to_account_id and group_id is required".into()));
    }
    ratelimit::check(&ctx.typing_limit, &sender.account)?;
    let accounts: Vec<AccountId> = if t.group_id != 0 {
        let group = ctx.store.group(t.group_id).await?.ok_or(ServiceError::NotFound("group"))?;
        if group.member(sender.account).is_none() {
            return Err(ServiceError::NotFound("group"));
        }
        group.members.iter().map(|m| m.account).collect()
    } else {
        ctx.directory.by_id(t.to_account_id).await?.ok_or(ServiceError::UnknownRecipient)?;
        vec![t.to_account_id, sender.account]
    };
    let event = pb::ServerEvent {
        request_id: 0,
        event: Some(server_event::Event::Typing(pb::TypingEvent {
            from_account_id: sender.account,
            from_device_id: sender.device,
            group_id: t.group_id,
            typing: t.typing,
        })),
    };
    for account in accounts {
        if account != sender.account && blocks::is_blocked(ctx, account, sender.account).await? {
            continue;
        }
        let Some(view) = ctx.directory.by_id(account).await? else { continue };
        for &device in &view.devices {
            let addr = DeviceAddr::new(account, device);
            if addr != sender {
                ctx.router.notify_ephemeral(addr, event.clone());
            }
        }
    }
    Ok(())
}
