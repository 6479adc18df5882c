//! State shared by the client handles, the event stream and the background connection task:
//! current credentials (and the one place that refreshes them), the ack cursor, the last
//! `Welcome` and why the client stopped.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
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
