//! Error codes as clients see them: what is fatal, what can be retried, and how to build one.

use crate::pb::{self, ErrorCode};

/// Properties of an [`ErrorCode`] that both sides need to agree on. `ErrorCode` is `Copy`, so
/// the methods take it by value.
#[allow(clippy::wrong_self_convention)]
pub trait ErrorCodeExt {
    /// Whether the server closes the connection after sending this error.
    fn is_fatal(self) -> bool;
    /// Whether the same request can succeed later without change.
    fn is_retryable(self) -> bool;
    /// The stable name used in JSON (`ERROR_CODE_RATE_LIMITED`).
    fn name(self) -> &'static str;
}

impl ErrorCodeExt for ErrorCode {
    fn is_fatal(self) -> bool {
        matches!(
            self,
            ErrorCode::BadFrame
                | ErrorCode::FrameTooLarge
                | ErrorCode::UnsupportedVersion
                | ErrorCode::Unauthenticated
                | ErrorCode::HandshakeRequired
                | ErrorCode::DeviceRevoked
                | ErrorCode::TooManyOps
                | ErrorCode::HeartbeatTimeout
                | ErrorCode::SessionReplaced
                | ErrorCode::Timeout
                | ErrorCode::AccountDeleted
        )
    }

    fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited
                | ErrorCode::Overloaded
                | ErrorCode::Unavailable
                | ErrorCode::MediaQuotaExceeded
                | ErrorCode::CodeDeliveryFailed
                | ErrorCode::PinLocked
                | ErrorCode::AccountDeleting
        )
    }

    fn name(self) -> &'static str {
        self.as_str_name()
    }
}

impl pb::Error {
    /// An error with `code` and a human message; `fatal` follows from the code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code: code as i32, message: message.into(), fatal: code.is_fatal(), ..Default::default() }
    }

    /// Adds `retry_after_ms`.
    pub fn with_retry_after(mut self, retry_after_ms: u32) -> Self {
        self.retry_after_ms = retry_after_ms;
        self
    }

    /// The code, with unknown numbers mapped to `Unspecified`.
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::try_from(self.code).unwrap_or(ErrorCode::Unspecified)
    }
}

impl std::fmt::Display for pb::Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_code().as_str_name(), self.message)
    }
}

impl std::error::Error for pb::Error {}
