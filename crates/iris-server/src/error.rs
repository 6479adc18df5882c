//! The one error type of the services, and the single place that picks its wire code.
//!
//! Internal details (store messages) are logged where they happen and never sent to clients.

use iris_proto::pb::{self, ErrorCode};
use iris_store::StoreError;

/// Why a request failed, from the client's point of view.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// A field is missing or malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The payload exceeds the limit.
    #[error("payload of {size} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge {
        /// Size sent.
        size: usize,
        /// Limit in force.
        max: u32,
    },
    /// No account with that id or phone.
    #[error("unknown recipient")]
    UnknownRecipient,
    /// Per-device payloads do not match the current devices.
    #[error("device list is stale")]
    StaleDevices(Vec<pb::DeviceMismatch>),
    /// A rate limit was hit.
    #[error("rate limit exceeded: {what}")]
    RateLimited {
        /// Which limit.
        what: &'static str,
        /// When a retry can succeed.
        retry_after_ms: u32,
    },
    /// The server is overloaded; nothing was stored.
    #[error("server overloaded")]
    Overloaded {
        /// When a retry can succeed.
        retry_after_ms: u32,
    },
    /// Storage failed; nothing was acknowledged.
    #[error("storage unavailable")]
    Unavailable,
    /// Bad, expired or missing credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The device was revoked.
    #[error("device revoked")]
    DeviceRevoked,
    /// The object does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// Too many devices.
    #[error("account already has the maximum of {max} devices")]
    DeviceLimit {
        /// The limit.
        max: u32,
    },
    /// Wrong, expired or exhausted one-time code.
    #[error("{0}")]
    InvalidCode(String),
    /// The group already has the maximum number of members.
    #[error("the group already has the maximum of {max} members")]
    GroupFull {
        /// The limit.
        max: u32,
    },
    /// A bug; details are in the log.
    #[error("internal error")]
    Internal,
    /// An HTTP request body over `limits.http_body_bytes_max`.
    #[error("request body exceeds the limit of {max} bytes")]
    BodyTooLarge {
        /// The limit.
        max: usize,
    },
    /// HTTP request headers over `limits.http_header_bytes_max`.
    #[error("request headers exceed the limit of {max} bytes")]
    HeadersTooLarge {
        /// The limit.
        max: usize,
    },
    /// A WebSocket upgrade that offered no subprotocol this server speaks; says which it does.
    #[error("{0}")]
    UnsupportedSubprotocol(String),
}

impl ServiceError {
    /// The wire code of this error: the only place that decides it.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Self::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Self::UnknownRecipient => ErrorCode::UnknownRecipient,
            Self::StaleDevices(_) => ErrorCode::StaleDevices,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Overloaded { .. } => ErrorCode::Overloaded,
            Self::Unavailable => ErrorCode::Unavailable,
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::DeviceRevoked => ErrorCode::DeviceRevoked,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Self::DeviceLimit { .. } => ErrorCode::DeviceLimit,
            Self::InvalidCode(_) => ErrorCode::InvalidCode,
            Self::GroupFull { .. } => ErrorCode::GroupFull,
            Self::Internal => ErrorCode::Internal,
            Self::BodyTooLarge { .. } => ErrorCode::BodyTooLarge,
            Self::HeadersTooLarge { .. } => ErrorCode::HeadersTooLarge,
            Self::UnsupportedSubprotocol(_) => ErrorCode::UnsupportedSubprotocol,
        }
    }

    /// When a retry can succeed, for the retryable errors.
    pub fn retry_after_ms(&self) -> Option<u32> {
        match self {
            Self::RateLimited { retry_after_ms, .. } | Self::Overloaded { retry_after_ms } => Some(*retry_after_ms),
            Self::Unavailable => Some(1000),
            _ => None,
        }
    }

    /// The error as sent on the wire.
    pub fn to_wire(&self) -> pb::Error {
        let mut e = pb::Error::new(self.code(), self.to_string());
        e.retry_after_ms = self.retry_after_ms().unwrap_or(0);
        if let Self::StaleDevices(m) = self {
            e.device_mismatches = m.clone();
        }
        e
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DeviceLimit { max } => Self::DeviceLimit { max },
            StoreError::Overloaded { retry_after_ms } => Self::Overloaded { retry_after_ms },
            StoreError::Unavailable(why) => {
                tracing::warn!(error = %why, "store unavailable");
                Self::Unavailable
            }
            StoreError::Closed => Self::Unavailable,
            StoreError::Corrupt(why) => {
                tracing::error!(error = %why, "corrupt record in store");
                Self::Internal
            }
        }
    }
}
