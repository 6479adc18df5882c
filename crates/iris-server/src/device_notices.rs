//! "A device was added to / removed from your account": one durable `DeviceChange` inbox item
//! for every other active device of the account, through the send kernel, so a device that was
//! offline when a SIM swap linked or re-registered a device still learns of it. Each change is
//! announced at most once per dedup window (device ids are never reused, so a device is added
//! and removed once each): a flow may announce again whatever a failure may have lost.
//!
//! Knows the kernel and the directory; nothing of how devices are linked or revoked.

use std::sync::Arc;

use iris_proto::pb::{self, inbox_item, DeviceChangeType};
use iris_store::{AppendRequest, DeviceAddr, DeviceId};

use crate::clock::Clock;
use crate::directory::Directory;
use crate::error::ServiceError;
use crate::fanout::{encode_item, entries_for, server_notice_key, Fanout};
use crate::ids::IdGenerator;

/// Tells an account's devices about changes of its device set.
pub struct DeviceNotices {
    fanout: Fanout,
    directory: Arc<Directory>,
    ids: Arc<IdGenerator>,
    clock: Arc<dyn Clock>,
}

/// One change to announce.
#[derive(Debug, Clone)]
pub struct DeviceChange {
    /// The device added or removed.
    pub device: DeviceAddr,
    /// Its label.
    pub name: String,
    /// Added or removed.
    pub kind: DeviceChangeType,
    /// The device that approved or revoked it (0: the server, or itself).
    pub by: DeviceId,
}

impl DeviceNotices {
    /// Notices over these parts.
    pub fn new(fanout: Fanout, directory: Arc<Directory>, ids: Arc<IdGenerator>, clock: Arc<dyn Clock>) -> Self {
        Self { fanout, directory, ids, clock }
    }

    /// Puts `change` in the inbox of every active device of its account but the device itself,
    /// unless it was announced already ([`server_notice_key`]). Call after the directory learnt of the change. Returns once
    /// the notices are durable.
    pub async fn announce(&self, change: DeviceChange) -> Result<(), ServiceError> {
        let account = change.device.account;
        let Some(view) = self.directory.by_id(account).await? else { return Ok(()) };
        let targets: Vec<DeviceAddr> =
            view.devices.iter().filter(|&&d| d != change.device.device).map(|&d| DeviceAddr::new(account, d)).collect();
        if targets.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let id = self.ids.next(now);
        let item = encode_item(
            id,
            now,
            inbox_item::Body::DeviceChange(pb::DeviceChange {
                account_id: account,
                device_id: change.device.device,
                device_name: change.name,
                r#type: change.kind as i32,
                by_device_id: change.by,
            }),
        );
        let entries = entries_for(targets, &item);
        let kind = if change.kind == DeviceChangeType::Added { "added" } else { "removed" };
        let dedup = server_notice_key(account, format!("device/{kind}/{}", change.device.device));
        self.fanout.append(AppendRequest { dedup: Some(dedup), ..AppendRequest::event(id, now, entries) }).await?;
        Ok(())
    }
}
