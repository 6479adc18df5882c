//! Typing indicators: ephemeral events to the devices of a conversation that are connected now.
//!
//! Never stored and never retried: a device that is offline, or whose ephemeral queue is full,
//! simply misses it. The server never sends "stopped" by itself; clients let an indicator expire
//! 5 s after the last `typing = true`. Rate-limited per account (`typing_per_account_per_second`).
//!
//! Knows the store's group records (who is in a group), the directory, blocks and the router;
//! nothing of inboxes or sessions.

use std::sync::Arc;

use iris_proto::pb::{self, server_event};
use iris_store::{AccountId, DeviceAddr, GroupStore};

use crate::blocks::Blocks;
use crate::directory::Directory;
use crate::error::ServiceError;
use crate::ratelimit::{self, KeyedLimit};
use crate::router::Router;

/// Offers typing indicators.
pub struct Typing {
    groups: Arc<dyn GroupStore>,
    directory: Arc<Directory>,
    blocks: Arc<Blocks>,
    router: Arc<Router>,
    /// Indicators per account.
    limit: Option<KeyedLimit<AccountId>>,
}

impl Typing {
    /// Indicators to the members of groups in `groups` or to 1:1 peers, through `router`.
    pub fn new(
        groups: Arc<dyn GroupStore>,
        directory: Arc<Directory>,
        blocks: Arc<Blocks>,
        router: Arc<Router>,
        limit: Option<KeyedLimit<AccountId>>,
    ) -> Self {
        Self { groups, directory, blocks, router, limit }
    }

    /// Forgets idle rate-limit buckets; called periodically.
    pub fn sweep(&self) {
        if let Some(l) = &self.limit {
            l.sweep();
        }
    }

    /// Offers the indicator to every connected device of the peer (or of the group's other
    /// members) and to the sender's other devices; returns once offered.
    pub async fn send(&self, sender: DeviceAddr, t: pb::Typing) -> Result<(), ServiceError> {
        if (t.to_account_id == 0) == (t.group_id == 0) {
            return Err(ServiceError::InvalidArgument("exactly one of to_account_id and group_id is required".into()));
        }
        ratelimit::check(&self.limit, &sender.account)?;
        let accounts: Vec<AccountId> = if t.group_id != 0 {
            let group = self.groups.group(t.group_id).await?.ok_or(ServiceError::NotFound("group"))?;
            if group.member(sender.account).is_none() {
                return Err(ServiceError::NotFound("group"));
            }
            group.members.iter().map(|m| m.account).collect()
        } else {
            self.directory.by_id(t.to_account_id).await?.ok_or(ServiceError::UnknownRecipient)?;
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
        let mut audience = Vec::with_capacity(accounts.len());
        for account in accounts {
            if account == sender.account || !self.blocks.is_blocked(account, sender.account).await? {
                audience.push(account);
            }
        }
        for addr in self.directory.devices_of(&audience).await? {
            if addr != sender {
                self.router.notify_ephemeral(addr, event.clone());
            }
        }
        Ok(())
    }
}
