//! The one place mapping admin API failures to an HTTP status and the JSON error body
//! (`iris_proto::http::ApiError`, as on the public API): internal details are logged, never sent.
//!
//! Admin errors are HTTP-only: no wire code of their own; the body's `code` reuses the names of
//! `ErrorCode` (UNAUTHENTICATED, NOT_FOUND, …) so clients parse one error shape everywhere.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use iris_proto::http::ApiError as ErrorBody;
use iris_proto::pb::ErrorCode;

use crate::error::ServiceError;

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No `Authorization: Bearer` token, or not the configured one (401; which of the two is
    /// not said).
    #[error("missing or wrong admin token")]
    Unauthorized,
    /// No account has this id or phone number (404).
    #[error("no account {0}")]
    UnknownAccount(String),
    /// The account has no active device with this number (404).
    #[error("account {account} has no active device {device}")]
    UnknownDevice {
        /// The account.
        account: u64,
        /// The device asked for.
        device: u32,
    },
    /// No such admin route (404).
    #[error("no such admin route")]
    UnknownRoute,
    /// A path segment or body that cannot be what the route needs (400).
    #[error("{0}")]
    InvalidArgument(String),
    /// A service failed (its own status: 503 when the store is unavailable, …).
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<iris_store::StoreError> for AdminError {
    fn from(e: iris_store::StoreError) -> Self {
        Self::Service(e.into())
    }
}

impl AdminError {
    /// The status and the code of the body: the only place that decides them.
    fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated),
            Self::UnknownAccount(_) | Self::UnknownDevice { .. } | Self::UnknownRoute => {
                (StatusCode::NOT_FOUND, ErrorCode::NotFound)
            }
            Self::InvalidArgument(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument),
            Self::Service(e) => (crate::http::status_of(e.code()), e.code()),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(error = %self, "admin request failed");
        }
        let body = ErrorBody {
            code: code.as_str_name().to_owned(),
            message: self.to_string(),
            retry_after_ms: match &self {
                Self::Service(e) => e.retry_after_ms().map(u64::from),
                _ => None,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}
