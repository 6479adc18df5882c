//! Contact lists and contact discovery. The durable lists live in the store; this service
//! changes them, tells the presence hub (which applies the "my contacts" privacy), and answers
//! which phone numbers are registered, hiding accounts that blocked the asker.
//!
//! Knows the store's contact lists, the directory, blocks and the presence hub; nothing of
//! inboxes or sessions.

use std::collections::BTreeSet;
use std::sync::Arc;

use iris_proto::pb;
use iris_store::{AccountId, ContactStore, DeviceAddr};

use crate::blocks::Blocks;
use crate::directory::{AccountView, Directory};
use crate::error::ServiceError;
use crate::presence::PresenceHub;
use crate::ratelimit::{self, KeyedLimit};

/// Most contacts one account keeps.
pub const CONTACTS_MAX: usize = 10_000;
/// Most phone numbers in one discovery request.
pub const DISCOVER_PHONES_MAX: usize = 1000;

/// Contact lists and discovery.
pub struct Contacts {
    store: Arc<dyn ContactStore>,
    directory: Arc<Directory>,
    blocks: Arc<Blocks>,
    presence: Arc<PresenceHub>,
    /// Discovery requests per account (shared in Redis in cluster mode).
    discover_limit: Option<KeyedLimit<AccountId>>,
}

impl Contacts {
    /// Lists kept in `store`, mirrored into `presence`; discovery limited by `discover_limit`.
    pub fn new(
        store: Arc<dyn ContactStore>,
        directory: Arc<Directory>,
        blocks: Arc<Blocks>,
        presence: Arc<PresenceHub>,
        discover_limit: Option<KeyedLimit<AccountId>>,
    ) -> Self {
        Self { store, directory, blocks, presence, discover_limit }
    }

    /// Forgets idle rate-limit buckets; called periodically.
    pub fn sweep(&self) {
        if let Some(l) = &self.discover_limit {
            l.sweep();
        }
    }

    /// Adds and removes contacts of `me`'s account; answers the new list. Accounts not yet
    /// contacts count against the discovery limit (`charge_additions`).
    pub async fn update(&self, me: DeviceAddr, op: pb::ContactsUpdate) -> Result<pb::ContactList, ServiceError> {
        let add: BTreeSet<AccountId> = op.add_account_ids.iter().copied().collect();
        let remove: BTreeSet<AccountId> = op.remove_account_ids.iter().copied().collect();
        if add.len() > CONTACTS_MAX || remove.len() > CONTACTS_MAX {
            return Err(too_many());
        }
        if add.contains(&me.account) || !add.is_disjoint(&remove) {
            return Err(ServiceError::InvalidArgument("cannot add oneself, or add and remove the same account".into()));
        }
        for &id in &add {
            self.directory.by_id(id).await?.ok_or(ServiceError::NotFound("no such account"))?;
        }
        let current: BTreeSet<AccountId> = self.store.contacts(me.account).await?.into_iter().collect();
        if current.union(&add).count() > CONTACTS_MAX {
            return Err(too_many());
        }
        self.charge_additions(me.account, add.difference(&current).count()).await?;
        let add: Vec<AccountId> = add.into_iter().collect();
        let remove: Vec<AccountId> = remove.into_iter().collect();
        if !add.is_empty() {
            self.store.set_contacts(me.account, &add, true).await?;
        }
        if !remove.is_empty() {
            self.store.set_contacts(me.account, &remove, false).await?;
        }
        for &id in &add {
            self.presence.set_contact(me.account, id, true);
        }
        for &id in &remove {
            self.presence.set_contact(me.account, id, false);
        }
        self.list(me.account).await
    }

    /// Takes discovery requests for `n_new` accounts becoming `me`'s contacts: one per
    /// [`DISCOVER_PHONES_MAX`] started, as if they had been discovered by phone. A contact's
    /// phone is answered by the contact list and its profile is read free, so without this
    /// charge adding sequential account ids in bulk would learn every phone and profile.
    async fn charge_additions(&self, me: AccountId, n_new: usize) -> Result<(), ServiceError> {
        for _ in 0..n_new.div_ceil(DISCOVER_PHONES_MAX) {
            ratelimit::check_shared(&self.discover_limit, &me).await?;
        }
        Ok(())
    }

    /// `owner`'s contacts with their phone numbers (accounts that no longer exist are skipped).
    pub async fn list(&self, owner: AccountId) -> Result<pb::ContactList, ServiceError> {
        let mut contacts = Vec::new();
        for id in self.store.contacts(owner).await? {
            if let Some(view) = self.directory.by_id(id).await? {
                contacts.push(pb::Contact { account_id: id, phone: view.phone.clone() });
            }
        }
        Ok(pb::ContactList { contacts })
    }

    /// Which of `op.phones` are registered, as seen by `me`: rate-limited per account per day,
    /// malformed numbers and accounts that blocked `me` answered as not registered.
    pub async fn discover(&self, me: DeviceAddr, op: pb::Discover) -> Result<pb::DiscoverResult, ServiceError> {
        if op.phones.len() > DISCOVER_PHONES_MAX {
            return Err(ServiceError::InvalidArgument(format!(
                "{} numbers exceed the limit of {DISCOVER_PHONES_MAX} per request",
                op.phones.len()
            )));
        }
        ratelimit::check_shared(&self.discover_limit, &me.account).await?;
        let mut registered = Vec::new();
        let mut seen = BTreeSet::new();
        for phone in op.phones {
            let Ok(phone) = iris_proto::phone::validate(&phone) else { continue };
            if !seen.insert(phone.clone()) {
                continue;
            }
            let Some(view) = self.directory.by_phone(&phone).await? else { continue };
            if self.blocks.is_blocked(view.id, me.account).await? {
                continue;
            }
            registered.push(pb::Contact { account_id: view.id, phone: view.phone.clone() });
        }
        Ok(pb::DiscoverResult { registered })
    }

    /// The account behind `phone` as `me` may see it (`GET /v1/accounts/{phone}`). Free for
    /// `me`'s own account and its contacts; any other lookup, found or not, is one discovery
    /// request, so asking one number at a time is no way around the discovery limit.
    pub async fn lookup(&self, me: AccountId, phone: &str) -> Result<Option<Arc<AccountView>>, ServiceError> {
        let view = self.directory.by_phone(phone).await?;
        self.charge_unless_known(me, view.as_ref().map(|v| v.id)).await?;
        Ok(view)
    }

    /// Takes one discovery request from `me` for learning about `target` (`None`: no such
    /// account), unless `target` is `me` or one of `me`'s contacts. Every way of asking about a
    /// stranger (by phone, by account id for a profile) shares the one discovery limit, so
    /// walking phone numbers or sequential account ids costs the same as discovery does.
    pub async fn charge_unless_known(&self, me: AccountId, target: Option<AccountId>) -> Result<(), ServiceError> {
        let known = match target {
            Some(t) => t == me || self.store.is_contact(me, t).await?,
            None => false,
        };
        if !known {
            ratelimit::check_shared(&self.discover_limit, &me).await?;
        }
        Ok(())
    }

    /// Records in the presence hub which of `accounts` keep `viewer` as a contact, so the "my
    /// contacts" privacy can be applied. Called before subscribing.
    pub async fn load_for_presence(&self, viewer: AccountId, accounts: &[AccountId]) -> Result<(), ServiceError> {
        for &account in accounts {
            if account != viewer && self.store.is_contact(account, viewer).await? {
                self.presence.set_contact(account, viewer, true);
            }
        }
        Ok(())
    }
}

fn too_many() -> ServiceError {
    ServiceError::InvalidArgument(format!("an account keeps at most {CONTACTS_MAX} contacts"))
}
