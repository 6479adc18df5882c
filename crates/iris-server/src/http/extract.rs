//! Extractors whose rejections are [`ApiError`]s, so malformed bodies and paths get the same
//! typed JSON error as everything else (axum's own rejections are plain text).

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::limits::HttpLimits;
use super::ApiError;
use crate::error::ServiceError;

/// A JSON request body.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limits = req.extensions().get::<HttpLimits>().copied();
        axum::Json::<T>::from_request(req, state).await.map(|axum::Json(v)| Self(v)).map_err(|e: JsonRejection| {
            match limits {
                // A body without a length that grew past `DefaultBodyLimit` (see `limits.rs`).
                Some(l) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    ServiceError::BodyTooLarge { max: l.body_bytes_max }.into()
                }
                _ => ServiceError::InvalidArgument(e.body_text()).into(),
            }
        })
    }
}

/// A typed path parameter.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Self(v))
            .map_err(|e: PathRejection| ServiceError::InvalidArgument(e.body_text()).into())
    }
}

/// Answer for unknown routes.
pub async fn not_found() -> ApiError {
    ServiceError::NotFound("route").into()
}
