//! A group's disappearing-messages timer: set by any member, or only by admins when the
//! group's `admins_only_edit` setting is on (WhatsApp treats the timer as a group setting), and
//! announced to every member device as a `TimerChanged` event, under the group's lock so it is
//! ordered with the group's sends and membership changes.

use iris_proto::pb::{self, inbox_item};
use iris_store::{AppendRequest, Chat, DeviceAddr};

use super::{denied, member_accounts, role_of, Groups};
use crate::chat_timers::ChatTimers;
use crate::error::ServiceError;
use crate::fanout::{encode_item, entries_for};

impl Groups {
    /// Sets group `msg.group_id`'s timer; returns once the event is durable in every member
    /// device's inbox (the setter's other devices included).
    pub async fn set_timer(&self, sender: DeviceAddr, msg: pb::SetTimer) -> Result<pb::TimerResult, ServiceError> {
        ChatTimers::check(msg.seconds)?;
        let me = self.directory.by_id(sender.account).await?.ok_or(ServiceError::DeviceRevoked)?;
        let queued = {
            let _order = self.lock(msg.group_id).lock().await;
            let hold = self.store.hold_group_order(msg.group_id).await?;
            let group = self.load(msg.group_id).await?;
            let role = role_of(&group, sender.account)?;
            if group.settings.admins_only_edit && !role.is_admin() {
                return Err(denied("only admins may change this group's disappearing-messages timer"));
            }
            let now = self.clock.now_ms();
            self.timers.set(Chat::Group(group.id), msg.seconds, sender.account, now).await?;
            let server_msg_id = self.ids.next(now);
            let item = encode_item(
                server_msg_id,
                now,
                inbox_item::Body::TimerChanged(pb::TimerChanged {
                    by_account_id: sender.account,
                    by_device_id: sender.device,
                    by_phone: me.phone.clone(),
                    to_account_id: 0,
                    to_phone: String::new(),
                    group_id: group.id,
                    seconds: msg.seconds,
                }),
            );
            let mut targets = self.directory.devices_of(&member_accounts(&group)).await?;
            targets.retain(|&d| d != sender);
            let entries = entries_for(targets, &item);
            let req = AppendRequest::event(server_msg_id, now, entries);
            (self.fanout.enqueue(req, None).await?.holding(hold), server_msg_id, now)
        };
        let (queued, server_msg_id, now) = queued;
        queued.durable().await?;
        Ok(pb::TimerResult { seconds: msg.seconds, server_msg_id, server_ts_ms: now })
    }
}
