//! Contact operations of [`Client`]: the durable contact list (which drives the "my contacts"
//! presence privacy) and contact discovery.

use iris_proto::pb::{self, client_op, server_event};

use crate::client::Client;
use crate::error::unexpected;
use crate::error::ClientError;

impl Client {
    /// Adds accounts to my contacts; answers the whole new list.
    pub async fn contacts_add(&self, account_ids: Vec<u64>) -> Result<Vec<pb::Contact>, ClientError> {
        self.contacts_update(pb::ContactsUpdate { add_account_ids: account_ids, remove_account_ids: vec![] }).await
    }

    /// Removes accounts from my contacts; answers the whole new list.
    pub async fn contacts_remove(&self, account_ids: Vec<u64>) -> Result<Vec<pb::Contact>, ClientError> {
        self.contacts_update(pb::ContactsUpdate { add_account_ids: vec![], remove_account_ids: account_ids }).await
    }

    /// My contacts, ordered by account id.
    pub async fn contacts(&self) -> Result<Vec<pb::Contact>, ClientError> {
        match self.op(client_op::Op::ContactsList(pb::ContactsListRequest {})).await? {
            server_event::Event::ContactList(l) => Ok(l.contacts),
            other => Err(unexpected(&other)),
        }
    }

    /// Which of these phone numbers (at most 1,000) are registered, with their accounts.
    /// Rate-limited per account per day (`RATE_LIMITED` with `retry_after_ms`).
    pub async fn discover(&self, phones: Vec<String>) -> Result<Vec<pb::Contact>, ClientError> {
        match self.op(client_op::Op::Discover(pb::Discover { phones })).await? {
            server_event::Event::DiscoverResult(r) => Ok(r.registered),
            other => Err(unexpected(&other)),
        }
    }

    async fn contacts_update(&self, op: pb::ContactsUpdate) -> Result<Vec<pb::Contact>, ClientError> {
        match self.op(client_op::Op::ContactsUpdate(op)).await? {
            server_event::Event::ContactList(l) => Ok(l.contacts),
            other => Err(unexpected(&other)),
        }
    }
}
