//! Contact lists and contact discovery. The durable lists live in the store; this service
//! changes them, tells the presence hub (which applies the "my contacts" privacy), and answers
//! which phone numbers are registered, hiding accounts that blocked the asker.

use std::collections::BTreeSet;

use iris_proto::pb;
use iris_store::{AccountId, DeviceAddr};

use crate::blocks;
use crate::context::Ctx;
use crate::error::ServiceError;
use crate::ratelimit;

/// Most contacts one account keeps.
pub const CONTACTS_MAX: usize = 10_000;
/// Most phone numbers in one discovery request.
pub const DISCOVER_PHONES_MAX: usize = 1000;

/// Adds and removes contacts of `me`'s account; answers the new list.
pub async fn update(ctx: &Ctx, me: DeviceAddr, op: pb::ContactsUpdate) -> Result<pb::ContactList, ServiceError> {
    let add: BTreeSet<AccountId> = op.add_account_ids.iter().copied().collect();
    let remove: BTreeSet<AccountId> = op.remove_account_ids.iter().copied().collect();
    if add.len() > CONTACTS_MAX || remove.len() > CONTACTS_MAX {
        return Err(too_many());
    }
    if add.contains(&me.account) || !add.is_disjoint(&remove) {
        return Err(ServiceError::InvalidArgument("cannot add oneself, or add and remove the same account".into()));
    }
    for &id in &add {
        ctx.directory.by_id(id).await?.ok_or(ServiceError::NotFound("no such account"))?;
    }
    let current: BTreeSet<AccountId> = ctx.store.contacts(me.account).await?.into_iter().collect();
    if current.union(&add).count() > CONTACTS_MAX {
        return Err(too_many());
    }
    let add: Vec<AccountId> = add.into_iter().collect();
    let remove: Vec<AccountId> = remove.into_iter().collect();
    if !add.is_empty() {
        ctx.store.set_contacts(me.account, &add, true).await?;
    }
    if !remove.is_empty() {
        ctx.store.set_contacts(me.account, &remove, false).await?;
    }
    for &id in &add {
        ctx.presence.set_contact(me.account, id, true);
    }
    for &id in &remove {
        ctx.presence.set_contact(me.account, id, false);
    }
    list(ctx, me.account).await
}

fn too_many() -> ServiceError {
    ServiceError::InvalidArgument(format!("an account keeps at most {CONTACTS_MAX} contacts"))
}

/// `owner`'s contacts with their phone numbers (accounts that no longer exist are skipped).
pub async fn list(ctx: &Ctx, owner: AccountId) -> Result<pb::ContactList, ServiceError> {
    let mut contacts = Vec::new();
    for id in ctx.store.contacts(owner).await? {
        if let Some(view) = ctx.directory.by_id(id).await? {
            contacts.push(pb::Contact { account_id: id, phone: view.phone.clone() });
        }
    }
    Ok(pb::ContactList { contacts })
}

/// Which of `op.phones` are registered, as seen by `me`: rate-limited per account per day,
/// malformed numbers and accounts that blocked `me` answered as not registered.
pub async fn discover(ctx: &Ctx, me: DeviceAddr, op: pb::Discover) -> Result<pb::DiscoverResult, ServiceError> {
    if op.phones.len() > DISCOVER_PHONES_MAX {
        return Err(ServiceError::InvalidArgument(format!(
            "{} numbers exceed the limit of {DISCOVER_PHONES_MAX} per request",
            op.phones.len()
        )));
    }
    ratelimit::check_shared(&ctx.discover_limit, &me.account).await?;
    let mut registered = Vec::new();
    let mut seen = BTreeSet::new();
    for phone in op.phones {
        let Ok(phone) = iris_proto::phone::validate(&phone) else { continue };
        if !seen.insert(phone.clone()) {
            continue;
        }
        let Some(view) = ctx.directory.by_phone(&phone).await? else { continue };
        if blocks::is_blocked(ctx, view.id, me.account).await? {
            continue;
        }
        registered.push(pb::Contact { account_id: view.id, phone: view.phone.clone() });
    }
    Ok(pb::DiscoverResult { registered })
}

/// Records in the presence hub which of `accounts` keep `viewer` as a contact, so the "my
/// contacts" privacy can be applied. Called before subscribing.
pub async fn load_for_presence(ctx: &Ctx, viewer: AccountId, accounts: &[AccountId]) -> Result<(), ServiceError> {
    for &account in accounts {
        if account != viewer && ctx.store.is_contact(account, viewer).await? {
            ctx.presence.set_contact(account, viewer, true);
        }
    }
    Ok(())
}
