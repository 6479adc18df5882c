//! Block lists: the durable pairs live in the store; this service changes them, answers "did A
//! block B" for every fan-out that must skip a blocker, and tells the presence hub, which hides
//! presence in both directions between the two accounts.
//!
//! Knows the store's block list, the directory (a block names an existing account) and the
//! presence hub; nothing of inboxes or sessions.

use std::sync::Arc;

use iris_proto::pb;
use iris_store::{AccountId, BlockStore, DeviceAddr};

use crate::directory::Directory;
use crate::error::ServiceError;
use crate::presence::PresenceHub;

/// Who blocked whom.
pub struct Blocks {
    store: Arc<dyn BlockStore>,
    directory: Arc<Directory>,
    presence: Arc<PresenceHub>,
}

impl Blocks {
    /// Blocks kept in `store`, mirrored into `presence`.
    pub fn new(store: Arc<dyn BlockStore>, directory: Arc<Directory>, presence: Arc<PresenceHub>) -> Self {
        Self { store, directory, presence }
    }

    /// Blocks or unblocks `op.account_id` for `me`'s account.
    pub async fn set(&self, me: DeviceAddr, op: pb::BlockAccount) -> Result<(), ServiceError> {
        if op.account_id == 0 || op.account_id == me.account {
            return Err(ServiceError::InvalidArgument("account_id must name another account".into()));
        }
        self.directory.by_id(op.account_id).await?.ok_or(ServiceError::UnknownRecipient)?;
        self.store.set_blocked(me.account, op.account_id, !op.unblock).await?;
        self.presence.set_block(me.account, op.account_id, !op.unblock);
        Ok(())
    }

    /// Whether `blocker` blocked `blocked`.
    pub async fn is_blocked(&self, blocker: AccountId, blocked: AccountId) -> Result<bool, ServiceError> {
        if blocker == blocked {
            return Ok(false);
        }
        Ok(self.store.is_blocked(blocker, blocked).await?)
    }

    /// Records in the presence hub every block between `viewer` and `accounts` (either way), so
    /// subscribe answers and pushes hide them. Called before subscribing.
    pub async fn load_for_presence(&self, viewer: AccountId, accounts: &[AccountId]) -> Result<(), ServiceError> {
        for &account in accounts {
            if self.is_blocked(viewer, account).await? {
                self.presence.set_block(viewer, account, true);
            }
            if self.is_blocked(account, viewer).await? {
                self.presence.set_block(account, viewer, true);
            }
        }
        Ok(())
    }
}
