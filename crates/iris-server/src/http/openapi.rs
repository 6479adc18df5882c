//! The OpenAPI document of the HTTP API, generated from the handlers' `#[utoipa::path]`
//! annotations and the body types of `iris_proto::http`: served at `/v1/openapi.json` and
//! committed as `docs/openapi.json`, which a test compares with [`document`] (so the file
//! cannot drift from the code).
//!
//! What the annotations cannot say is added here, once for every route: the bearer scheme,
//! the closed list of error codes in `ApiError.code`, and the 413/431 that `limits.rs` answers
//! before any handler runs.

use axum::Json;
use iris_proto::pb::ErrorCode;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr};

/// The parts of the document that are not about one route.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Iris HTTP API",
        description = "Accounts, one-time-code login, device credentials and device management, push targets, media uploads \
            and downloads, server information, health and metrics. The messaging protocol itself runs over framed TCP or the \
            WebSocket at /v1/ws and is described in PROTOCOL.md and iris.proto. Every error is a status with \
            the ApiError body; its `code` names an ErrorCode of the schema. Integers are JSON numbers here \
            (the socket's JSON mapping writes 64-bit integers as strings)."
    ),
    tags(
        (name = "auth", description = "Phone number → one-time code → device credentials; refresh"),
        (name = "devices", description = "The caller's account's devices, the links waiting for its primary's \
            approval and its registration PIN (Authorization: Bearer <access token>)"),
        (name = "profiles", description = "Display name, about text and photo, shown by the owner's privacy choice"),
        (name = "push", description = "The devices' push targets (webhook / UnifiedPush, FCM, APNs) that wake them \
            while they have no open connection"),
        (name = "accounts", description = "Looking up other accounts"),
        (name = "info", description = "Where and how to connect; this document"),
        (name = "socket", description = "The WebSocket endpoint of the socket protocol"),
        (name = "media", description = "Resumable uploads into content-addressed blobs, signed downloads with ranges"),
        (name = "operations", description = "Health and metrics for operators"),
    )
)]
pub struct ApiDoc;

/// `GET /v1/openapi.json`: this document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "info",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json")))]
pub async fn serve() -> Json<OpenApi> {
    Json(super::openapi())
}

/// Completes the generated document: the bearer scheme, the error codes, the common refusals.
pub fn complete(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    if let Some(RefOr::T(Schema::Object(api_error))) = components.schemas.get_mut("ApiError") {
        let code = ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("Stable error name: one of the ErrorCode values of iris.proto"))
            .enum_values(Some(error_code_names()))
            .examples(["ERROR_CODE_RATE_LIMITED"]);
        api_error.properties.insert("code".into(), code.into());
    }
    for item in doc.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.post, &mut item.delete, &mut item.put, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            add_common_refusals(operation);
        }
    }
}

/// Every `ErrorCode` name but UNSPECIFIED, in number order.
fn error_code_names() -> Vec<&'static str> {
    // Every defined code, gaps in the numbering included (an unused number must not hide the
    // codes after it).
    (1..=i32::from(u8::MAX)).filter_map(|n| ErrorCode::try_from(n).ok()).map(|c| c.as_str_name()).collect()
}

fn add_common_refusals(operation: &mut Operation) {
    let refusals = [
        ("413", "BODY_TOO_LARGE: the body exceeds limits.http_body_bytes_max"),
        ("431", "HEADERS_TOO_LARGE: the headers exceed limits.http_header_bytes_max"),
    ];
    for (status, description) in refusals {
        let response = ResponseBuilder::new()
            .description(description)
            .content("application/json", Content::new(Some(Ref::from_schema_name("ApiError"))))
            .build();
        operation.responses.responses.entry(status.into()).or_insert(response.into());
    }
}
