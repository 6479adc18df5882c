//! Shared group payloads: stored once per group message, referenced from every member's inbox.
//!
//! A group send puts the payload here (the store, and a small cache for sessions catching up);
//! a session reading its inbox gets references replaced by the full item through
//! [`GroupPayloads::resolve`]. Knows the store's group payloads; nothing of rosters or sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use iris_proto::pb::{self, inbox_item};
use iris_store::{GroupId, GroupStore};
use prost::Message as _;

use crate::error::ServiceError;

/// Group payloads kept in memory for sessions catching up from their inbox.
const CACHE_LEN_MAX: usize = 4096;

/// Payloads by (group, server msg id), in the store and in a bounded cache.
pub struct GroupPayloads {
    store: Arc<dyn GroupStore>,
    /// Recently sent payloads; cleared when full.
    cache: Mutex<HashMap<(GroupId, u64), Bytes>>,
}

impl GroupPayloads {
    /// Payloads kept in `store`.
    pub fn new(store: Arc<dyn GroupStore>) -> Self {
        Self { store, cache: Mutex::default() }
    }

    /// Stores a group message's payload (a buffered write, made durable by the synced commit of
    /// the references queued after it) and keeps it in the cache.
    pub async fn put(&self, group: GroupId, server_msg_id: u64, payload: Bytes) -> Result<(), ServiceError> {
        self.store.put_group_payload(group, server_msg_id, payload.clone()).await?;
        self.remember((group, server_msg_id), payload);
        Ok(())
    }

    /// Replaces group message references among inbox entries read from the store by the full
    /// item (payload from the cache or the store). Other entries pass through untouched.
    pub async fn resolve(&self, entries: Vec<(u64, Bytes)>) -> Vec<(u64, Bytes)> {
        let mut out = Vec::with_capacity(entries.len());
        for (seq, bytes) in entries {
            let Ok(mut item) = pb::InboxItem::decode(bytes.clone()) else {
                out.push((seq, bytes));
                continue;
            };
            let Some(inbox_item::Body::GroupMessage(m)) = &mut item.body else {
                out.push((seq, bytes));
                continue;
            };
            if !m.payload_by_ref {
                out.push((seq, bytes));
                continue;
            }
            let key = (m.group_id, item.server_msg_id);
            let payload = match self.cached(key) {
                Some(p) => Some(p),
                None => self.store.group_payload(key.0, key.1).await.ok().flatten(),
            };
            match payload {
                Some(p) => {
                    self.remember(key, p.clone());
                    m.payload = p;
                }
                None => tracing::warn!(group = key.0, msg_id = key.1, "group payload missing (expired?)"),
            }
            m.payload_by_ref = false;
            out.push((seq, item.encode_to_vec().into()));
        }
        out
    }

    fn remember(&self, key: (GroupId, u64), payload: Bytes) {
        let mut cache = self.cache.lock().expect("payload cache lock");
        if cache.len() >= CACHE_LEN_MAX {
            cache.clear();
        }
        cache.insert(key, payload);
    }

    fn cached(&self, key: (GroupId, u64)) -> Option<Bytes> {
        self.cache.lock().expect("payload cache lock").get(&key).cloned()
    }
}
