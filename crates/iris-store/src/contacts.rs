//! Contact lists: which accounts an account keeps as contacts (drives the "my contacts"
//! presence privacy), and the presence privacy choice itself.

use async_trait::async_trait;

use crate::{AccountId, StoreResult};

/// Per-account contact lists: durable, low-rate.
#[async_trait]
pub trait ContactStore: Send + Sync + 'static {
    /// Adds (`on`) or removes `contacts` from `owner`'s list, in one step. Durable when it
    /// returns.
    async fn set_contacts(&self, owner: AccountId, contacts: &[AccountId], on: bool) -> StoreResult<()>;

    /// `owner`'s contacts, ordered by id.
    async fn contacts(&self, owner: AccountId) -> StoreResult<Vec<AccountId>>;

    /// Whether `owner` keeps `contact` as a contact.
    async fn is_contact(&self, owner: AccountId, contact: AccountId) -> StoreResult<bool>;

    /// Records `account`'s presence privacy (a code the server chooses; the store does not
    /// interpret it). Durable when it returns.
    async fn set_presence_privacy(&self, account: AccountId, code: u8) -> StoreResult<()>;

    /// `account`'s presence privacy code, if it ever set one.
    async fn presence_privacy(&self, account: AccountId) -> StoreResult<Option<u8>>;
}
