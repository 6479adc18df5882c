//! Who is who: a read-through cache of accounts and their active devices.
//!
//! Every send needs the recipient's and the sender's device lists; reading them from the store
//! each time would cost more than the append. Entries are dropped when devices change on this
//! node (`invalidate`, also on other nodes' word in cluster mode) and the cache is bounded
//! (cleared when full). In cluster mode entries also age out (`max_age`), because another node's
//! invalidation can be lost with its bus message.
//!
//! It is also the one place that turns accounts into their devices ([`Directory::devices_of`],
//! [`AccountView::addrs`]): every fan-out (sends, receipts, events, actions, typing) asks here.
//! Knows the account records of the store, nothing of inboxes, groups or sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iris_store::{AccountId, AccountStore, DeviceAddr, DeviceId};

use crate::error::ServiceError;

/// An account as the message path needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    /// Internal id.
    pub id: AccountId,
    /// E.164 phone.
    pub phone: String,
    /// Active devices, ascending.
    pub devices: Vec<DeviceId>,
    /// When it was read from the store.
    pub fetched_at: Instant,
}

impl AccountView {
    /// The addresses of its active devices, ascending.
    pub fn addrs(&self) -> impl Iterator<Item = DeviceAddr> + '_ {
        self.devices.iter().map(move |&d| DeviceAddr::new(self.id, d))
    }
}

/// Cached account views.
pub struct Directory {
    store: Arc<dyn AccountStore>,
    /// Read on every send and receipt: foldhash (ids are server-assigned), not SipHash.
    by_id: Mutex<foldhash::HashMap<AccountId, Arc<AccountView>>>,
    by_phone: Mutex<HashMap<String, AccountId>>,
    capacity: usize,
    max_age: Option<Duration>,
}

impl Directory {
    /// A directory over `store` caching at most `capacity` accounts, each for at most
    /// `max_age` when set.
    pub fn new(store: Arc<dyn AccountStore>, capacity: usize, max_age: Option<Duration>) -> Self {
        Self { store, by_id: Mutex::default(), by_phone: Mutex::default(), capacity, max_age }
    }

    /// The account with this id, if it exists.
    pub async fn by_id(&self, id: AccountId) -> Result<Option<Arc<AccountView>>, ServiceError> {
        if let Some(v) = self.by_id.lock().expect("directory lock").get(&id) {
            if self.max_age.is_none_or(|age| v.fetched_at.elapsed() < age) {
                return Ok(Some(v.clone()));
            }
        }
        let Some(account) = self.store.account(id).await? else { return Ok(None) };
        let devices = self.store.devices(id).await?;
        let view = Arc::new(AccountView {
            id,
            phone: account.phone,
            devices: devices.iter().map(|d| d.addr.device).collect(),
            fetched_at: Instant::now(),
        });
        self.remember(view.clone());
        Ok(Some(view))
    }

    /// The account registered under `phone`, if any.
    pub async fn by_phone(&self, phone: &str) -> Result<Option<Arc<AccountView>>, ServiceError> {
        let cached = self.by_phone.lock().expect("directory lock").get(phone).copied();
        let id = match cached {
            Some(id) => id,
            None => match self.store.account_by_phone(phone).await? {
                Some(a) => a.id,
                None => return Ok(None),
            },
        };
        self.by_id(id).await
    }

    /// Every active device of these accounts, account by account (unknown accounts have none).
    pub async fn devices_of(&self, accounts: &[AccountId]) -> Result<Vec<DeviceAddr>, ServiceError> {
        let mut out = Vec::with_capacity(accounts.len());
        for &account in accounts {
            if let Some(view) = self.by_id(account).await? {
                out.extend(view.addrs());
            }
        }
        Ok(out)
    }

    /// Whether `addr` is an active device.
    pub async fn is_active(&self, addr: DeviceAddr) -> Result<bool, ServiceError> {
        Ok(self.by_id(addr.account).await?.is_some_and(|v| v.devices.contains(&addr.device)))
    }

    /// Forgets an account after its devices changed.
    pub fn invalidate(&self, id: AccountId) {
        self.by_id.lock().expect("directory lock").remove(&id);
    }

    fn remember(&self, view: Arc<AccountView>) {
        {
            let mut by_phone = self.by_phone.lock().expect("directory lock");
            if by_phone.len() >= self.capacity {
                by_phone.clear();
            }
            by_phone.insert(view.phone.clone(), view.id);
        }
        let mut by_id = self.by_id.lock().expect("directory lock");
        if by_id.len() >= self.capacity {
            by_id.clear();
        }
        by_id.insert(view.id, view);
    }
}
