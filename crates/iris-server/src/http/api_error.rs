//! Maps every service error to an HTTP status and the JSON body `iris_proto::http::ApiError`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use iris_proto::http;
use iris_proto::pb::ErrorCode;

use crate::error::ServiceError;

/// An error answered over HTTP.
#[derive(Debug)]
pub struct ApiError(pub ServiceError);

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self(e)
    }
}

impl From<iris_store::StoreError> for ApiError {
    fn from(e: iris_store::StoreError) -> Self {
        Self(e.into())
    }
}

/// The HTTP status for a wire error code: the only place that decides it.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidArgument
        | ErrorCode::BadFrame
        | ErrorCode::PayloadTooLarge
        | ErrorCode::UnsupportedSubprotocol => StatusCode::BAD_REQUEST,
        ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ErrorCode::Unauthenticated | ErrorCode::InvalidCode | ErrorCode::CodeExpired => StatusCode::UNAUTHORIZED,
        ErrorCode::AccountDeleted => StatusCode::GONE,
        ErrorCode::AccountDeleting => StatusCode::CONFLICT,
        ErrorCode::DeviceRevoked | ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::NotFound | ErrorCode::UnknownRecipient => StatusCode::NOT_FOUND,
        ErrorCode::DeviceLimit | ErrorCode::StaleDevices => StatusCode::CONFLICT,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Overloaded | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::MediaTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::MediaHashMismatch | ErrorCode::MediaRejected => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::MediaKindMismatch => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::MediaOffsetMismatch => StatusCode::CONFLICT,
        ErrorCode::MediaQuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::MediaUrlExpired => StatusCode::FORBIDDEN,
        ErrorCode::CodeDeliveryFailed => StatusCode::BAD_GATEWAY,
        ErrorCode::InvalidTimer => StatusCode::BAD_REQUEST,
        ErrorCode::PushProviderUnavailable | ErrorCode::PushTokenInvalid => StatusCode::BAD_REQUEST,
        ErrorCode::PushDeliveryFailed => StatusCode::BAD_GATEWAY,
        ErrorCode::PushTargetForbidden => StatusCode::FORBIDDEN,
        ErrorCode::LinkExpired => StatusCode::GONE,
        ErrorCode::LinkRefused => StatusCode::FORBIDDEN,
        ErrorCode::LinkLimit | ErrorCode::PinLocked => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::PinRequired => StatusCode::UNAUTHORIZED,
        ErrorCode::ProfileInvalid => StatusCode::BAD_REQUEST,
        ErrorCode::AccountSuspended | ErrorCode::SendingRestricted | ErrorCode::ForwardingLimited => {
            StatusCode::FORBIDDEN
        }
        ErrorCode::ReportInvalid => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.code();
        let body = http::ApiError {
            code: code.as_str_name().to_owned(),
            message: self.0.to_string(),
            retry_after_ms: self.0.retry_after_ms().map(u64::from),
        };
        let mut response = (status_of(code), Json(body)).into_response();
        if let Some(ms) = self.0.retry_after_ms() {
            let secs = ms.div_ceil(1000).max(1).to_string();
            if let Ok(v) = secs.parse() {
                response.headers_mut().insert("retry-after", v);
            }
        }
        response
    }
}
