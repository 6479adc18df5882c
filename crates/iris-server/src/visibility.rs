//! What the presence hub must know before it shows an account to anyone: each account's
//! privacy choice (durable first, then the hub), and the blocks and contacts between a watcher
//! and the accounts it subscribes to.
//!
//! The hub itself ([`crate::presence`]) is soft state and never reads the store; this service
//! loads what it needs. Knows the store's contact lists and privacy codes, blocks, contacts and
//! the hub; nothing of inboxes or sessions.

use std::sync::Arc;

use iris_proto::pb;
use iris_store::{AccountId, ContactStore, DeviceAddr};
use tokio::sync::mpsc;

use crate::blocks::Blocks;
use crate::contacts::Contacts;
use crate::error::ServiceError;
use crate::presence::{self, PresenceHub, Privacy};
use crate::router::Ephemeral;

/// Loads privacy, blocks and contacts into the presence hub.
pub struct Visibility {
    store: Arc<dyn ContactStore>,
    blocks: Arc<Blocks>,
    contacts: Arc<Contacts>,
    presence: Arc<PresenceHub>,
}

impl Visibility {
    /// Privacy codes kept in `store`, shown through `presence`.
    pub fn new(
        store: Arc<dyn ContactStore>,
        blocks: Arc<Blocks>,
        contacts: Arc<Contacts>,
        presence: Arc<PresenceHub>,
    ) -> Self {
        Self { store, blocks, contacts, presence }
    }

    /// Loads `account`'s privacy choice into the hub, before its first device counts as
    /// connected (accounts not seen since the start show as offline anyway).
    pub async fn load_privacy(&self, account: AccountId) -> Result<(), ServiceError> {
        let code = self.store.presence_privacy(account).await?;
        self.presence.load_privacy(account, code.map_or(Privacy::Everyone, Privacy::from_code));
        Ok(())
    }

    /// `SetPresence`: away for this connection, and the account's privacy when given (durable
    /// first, so a restart never shows more than the person chose).
    pub async fn set(
        &self,
        device: DeviceAddr,
        conn_id: u64,
        set: pb::SetPresence,
        now_ms: u64,
    ) -> Result<(), ServiceError> {
        let privacy = match pb::PresencePrivacy::try_from(set.privacy) {
            Ok(pb::PresencePrivacy::Everyone) => Some(Privacy::Everyone),
            Ok(pb::PresencePrivacy::Nobody) => Some(Privacy::Nobody),
            Ok(pb::PresencePrivacy::Contacts) => Some(Privacy::Contacts),
            _ => None,
        };
        if let Some(p) = privacy {
            self.store.set_presence_privacy(device.account, p.code()).await?;
        }
        self.presence.set(device, conn_id, set.away, privacy, now_ms);
        Ok(())
    }

    /// Loads the blocks and contacts that decide what `viewer` may see of `accounts`, then
    /// subscribes connection `conn_id` (pushes go to `tx`); answers the current state.
    pub async fn subscribe(
        &self,
        viewer: AccountId,
        conn_id: u64,
        tx: &mpsc::Sender<Ephemeral>,
        accounts: &[AccountId],
    ) -> Result<pb::PresenceState, ServiceError> {
        if accounts.len() > presence::SUBSCRIPTIONS_MAX {
            return Err(too_many_subscriptions(accounts.len()));
        }
        self.blocks.load_for_presence(viewer, accounts).await?;
        self.contacts.load_for_presence(viewer, accounts).await?;
        self.presence.subscribe(viewer, conn_id, tx, accounts).map_err(too_many_subscriptions)
    }

    /// Ends these subscriptions of connection `conn_id`.
    pub fn unsubscribe(&self, conn_id: u64, accounts: &[AccountId]) {
        self.presence.unsubscribe(conn_id, accounts);
    }
}

fn too_many_subscriptions(n: usize) -> ServiceError {
    ServiceError::InvalidArgument(format!(
        "{n} presence subscriptions exceed the limit of {} per connection",
        presence::SUBSCRIPTIONS_MAX
    ))
}
