//! Errors of every store engine.

/// Why a store call failed. Engines map their own errors into these.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The account already has the maximum number of active devices.
    #[error("account already has {max} devices")]
    DeviceLimit {
        /// The limit in force.
        max: u32,
    },
    /// The commit queue stayed full past its deadline; nothing was stored.
    #[error("store is overloaded, retry in {retry_after_ms} ms")]
    Overloaded {
        /// Suggested wait.
        retry_after_ms: u32,
    },
    /// Disk or database failure (disk full, fsync error, connection lost); nothing was stored.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded: a bug or disk corruption.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The store was closed (shutdown).
    #[error("store is closed")]
    Closed,
    /// A device's pool of one-time keys would exceed its bound; nothing was added.
    #[error("one-time key pool would hold {would_hold} keys, more than {max}")]
    PoolFull {
        /// The bound in force.
        max: u32,
        /// What the pool would have held.
        would_hold: u32,
    },
    /// The phone's account is being deleted; it can register again once that finished.
    #[error("the account of this phone is being deleted")]
    AccountDeleting,
}
