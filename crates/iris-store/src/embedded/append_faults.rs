//! Append faults on demand (feature `sim`): a switch that makes the embedded engine's appends
//! (`enqueue_append`, and the receipts of `ack_with_receipts`) fail the way a full disk or an
//! overloaded committer does, for the tests of
//! what the server does then (UNAVAILABLE, OVERLOADED, a red `/readyz`, receipts retried). A
//! second switch makes inbox reads fail as a store that stopped answering does (a PostgreSQL
//! shard down), for the tests of a session that must outlive it.
//!
//! Why in the engine and not a wrapper: a wrapper store restates every method of every store
//! trait only to pass them through; the switch is one check on the append path.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::{StoreError, StoreResult};

/// How appends fail while the switch is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendFault {
    /// `Overloaded { retry_after_ms }`: the committer queue stayed full past its deadline.
    Overloaded {
        /// The wait the store suggests.
        retry_after_ms: u32,
    },
    /// `Unavailable`, and `is_healthy()` is false meanwhile: disk full or an fsync error.
    Unavailable,
}

/// The switch of one store (cheap to clone; every clone turns the same switch).
#[derive(Debug, Clone, Default)]
pub struct AppendFaults {
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    fault: Mutex<Option<AppendFault>>,
    injected: AtomicU64,
    reads_fail: AtomicBool,
    reads_failed: AtomicU64,
}

impl AppendFaults {
    /// Appends fail with `fault` from now on (`None`: they succeed again).
    pub fn set(&self, fault: Option<AppendFault>) {
        *self.state.fault.lock().expect("fault switch poisoned") = fault;
    }

    /// How many appends failed on purpose so far: the event a test waits for when it needs the
    /// fault to have struck before it turns the switch off.
    pub fn injected(&self) -> u64 {
        self.state.injected.load(Ordering::SeqCst)
    }

    /// The error an append gets now, counted, if the switch is on.
    pub(crate) fn check(&self) -> StoreResult<()> {
        let fault = *self.state.fault.lock().expect("fault switch poisoned");
        let Some(fault) = fault else { return Ok(()) };
        self.state.injected.fetch_add(1, Ordering::SeqCst);
        Err(match fault {
            AppendFault::Overloaded { retry_after_ms } => StoreError::Overloaded { retry_after_ms },
            AppendFault::Unavailable => StoreError::Unavailable("injected: no space left on device".into()),
        })
    }

    /// Inbox reads fail with `Unavailable` from now on (`false`: they succeed again).
    pub fn set_reads_fail(&self, fail: bool) {
        self.state.reads_fail.store(fail, Ordering::SeqCst);
    }

    /// How many inbox reads failed on purpose so far.
    pub fn reads_failed(&self) -> u64 {
        self.state.reads_failed.load(Ordering::SeqCst)
    }

    /// The error an inbox read gets now, counted, if its switch is on.
    pub(crate) fn check_read(&self) -> StoreResult<()> {
        if !self.state.reads_fail.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.state.reads_failed.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::Unavailable("injected: the store does not answer".into()))
    }

    /// Whether the store is to say it is unhealthy (an `Unavailable` fault is on).
    pub(crate) fn unhealthy(&self) -> bool {
        *self.state.fault.lock().expect("fault switch poisoned") == Some(AppendFault::Unavailable)
    }
}
