//! State shared by the client handles, the event stream and the background connection task:
//! current credentials (and the one place that refreshes them), the ack cursor, the last
//! `Welcome`, the presence subscriptions to restore after a reconnect and why the client stopped.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use iris_proto::http::Credentials;
use iris_proto::pb;
use tokio::sync::Notify;

use crate::config::CredentialsHook;
use crate::error::ClientError;
use crate::http::HttpApi;

/// See the module doc. Locks are held only for a clone or an assignment, never across `.await`.
pub(crate) struct Shared {
    pub(crate) http: HttpApi,
    credentials: Mutex<Credentials>,
    /// Serialises refreshes: a refresh token is single-use, so two concurrent refreshes would
    /// lock the device out.
    refresh_lock: tokio::sync::Mutex<()>,
    on_credentials: Option<CredentialsHook>,
    welcome: Mutex<Option<pb::Welcome>>,
    /// Highest seq the app acked (or the resume cursor it started from).
    acked_seq: AtomicU64,
    /// Wakes the connection task to send an ack.
    pub(crate) ack_notify: Notify,
    /// The fatal error that stopped the client, reported to later calls.
    terminal: Mutex<Option<pb::Error>>,
    /// Accounts the app watches: the server forgets subscriptions with the connection, so the
    /// connection task subscribes to these again after every reconnect.
    watched: Mutex<BTreeSet<u64>>,
    /// The app set this device away: the server forgets it with the connection, so the
    /// connection task sets it again after every reconnect.
    away: AtomicBool,
}

impl Shared {
    pub(crate) fn new(
        http: HttpApi,
        credentials: Credentials,
        resume_after_seq: u64,
        on_credentials: Option<CredentialsHook>,
    ) -> Self {
        Self {
            http,
            credentials: Mutex::new(credentials),
            refresh_lock: tokio::sync::Mutex::new(()),
            on_credentials,
            welcome: Mutex::new(None),
            acked_seq: AtomicU64::new(resume_after_seq),
            ack_notify: Notify::new(),
            terminal: Mutex::new(None),
            watched: Mutex::new(BTreeSet::new()),
            away: AtomicBool::new(false),
        }
    }

    pub(crate) fn credentials(&self) -> Credentials {
        lock(&self.credentials).clone()
    }

    /// Replaces the credentials whose access token is `stale_token` with refreshed ones. If
    /// another caller refreshed meanwhile, returns theirs without spending the refresh token.
    pub(crate) async fn refresh(&self, stale_token: &str) -> Result<Credentials, ClientError> {
        let _one_at_a_time = self.refresh_lock.lock().await;
        let current = self.credentials();
        if current.access_token != stale_token {
            return Ok(current);
        }
        let fresh = self.http.refresh(&current.refresh_token).await?;
        *lock(&self.credentials) = fresh.clone();
        tracing::debug!(device_id = fresh.device_id, "access token refreshed");
        if let Some(hook) = &self.on_credentials {
            (hook.0)(&fresh);
        }
        Ok(fresh)
    }

    pub(crate) fn ack(&self, up_to_seq: u64) {
        if self.acked_seq.fetch_max(up_to_seq, Ordering::AcqRel) < up_to_seq {
            self.ack_notify.notify_one();
        }
    }

    pub(crate) fn acked_seq(&self) -> u64 {
        self.acked_seq.load(Ordering::Acquire)
    }

    pub(crate) fn welcome(&self) -> Option<pb::Welcome> {
        lock(&self.welcome).clone()
    }

    pub(crate) fn set_welcome(&self, welcome: pb::Welcome) {
        *lock(&self.welcome) = Some(welcome);
    }

    /// Adds accounts to the watched set; returns those that were not in it yet.
    pub(crate) fn watch(&self, account_ids: &[u64]) -> Vec<u64> {
        let mut watched = lock(&self.watched);
        account_ids.iter().copied().filter(|&id| watched.insert(id)).collect()
    }

    /// Removes accounts from the watched set.
    pub(crate) fn unwatch(&self, account_ids: &[u64]) {
        let mut watched = lock(&self.watched);
        for id in account_ids {
            watched.remove(id);
        }
    }

    /// The watched accounts, in id order.
    pub(crate) fn watched(&self) -> Vec<u64> {
        lock(&self.watched).iter().copied().collect()
    }

    pub(crate) fn set_away(&self, away: bool) {
        self.away.store(away, Ordering::Release);
    }

    pub(crate) fn away(&self) -> bool {
        self.away.load(Ordering::Acquire)
    }

    pub(crate) fn terminal(&self) -> Option<pb::Error> {
        lock(&self.terminal).clone()
    }

    pub(crate) fn set_terminal(&self, err: pb::Error) {
        *lock(&self.terminal) = Some(err);
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens stay out of logs.
        f.debug_struct("Shared").field("acked_seq", &self.acked_seq()).finish_non_exhaustive()
    }
}

/// A poisoned lock only means a panic elsewhere; the data (a clone-able value) is still whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
