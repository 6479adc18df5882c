//! JSON handlers of profiles; the rules are in `profiles.rs`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use iris_proto::http::{ApiError as ErrorBody, ProfileUpdate, ProfileView};

use super::extract::{ApiJson, ApiPath};
use super::handlers::caller;
use super::ApiError;
use crate::context::Ctx;

type Shared = State<Arc<Ctx>>;

/// `PUT /v1/profile`.
#[utoipa::path(put, path = "/v1/profile", tag = "profiles", security(("bearer" = [])), request_body = ProfileUpdate,
    responses(
        (status = 200, description = "Stored; the owner's other devices and the contacts who may see it get a \\
            `ProfileChange`", body = ProfileView),
        (status = 400, description = "PROFILE_INVALID (a field over its bound, a photo that is no uploaded image) \\
            or INVALID_ARGUMENT (not this JSON body)", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody)))]
pub async fn update(
    State(ctx): Shared,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ProfileUpdate>,
) -> Result<Json<ProfileView>, ApiError> {
    let me = caller(&ctx, &headers).await?;
    Ok(Json(ctx.sessions.profiles.update(me, req).await?))
}

/// `GET /v1/profiles/{account_id}`.
#[utoipa::path(get, path = "/v1/profiles/{account_id}", tag = "profiles", security(("bearer" = [])),
    params(("account_id" = u64, Path, description = "Whose profile")),
    responses(
        (status = 200, description = "The profile as the caller may see it (`visible` false and empty fields \\
            when its privacy hides it)", body = ProfileView),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: no such account", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: a read of a profile that is neither the caller's nor one of its \
            contacts', found or not, counts as a contact discovery request \
            (`rate_limits.discover_requests_per_account_per_day`); `retry_after_ms` says when to retry", body = ErrorBody)))]
pub async fn view(
    State(ctx): Shared,
    headers: HeaderMap,
    ApiPath(account_id): ApiPath<u64>,
) -> Result<Json<ProfileView>, ApiError> {
    let me = caller(&ctx, &headers).await?;
    Ok(Json(ctx.sessions.profiles.view(me.account, account_id).await?))
}
